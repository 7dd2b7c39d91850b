"""kdbench's speed, as ratios against baselines measured in the same run (never timed asserts).

  (a) a training step vs a minimal hand-written PyTorch loop on the same model and batches
  (b) word-level KD from the teacher cache vs the teacher run online (default sizes, and a
      12× teacher/student pair as in the paper)
  (c) batched PT generation vs naive per-example `generate`
  (d) a small grid through Ray Tune + Train vs the same trainings one after another in a plain
      process (one trial at a time, so both get the same CPUs), and the fixed cost per trial
  (e) `kdbench report` on 10,000 rows (benchmarks/report_scale.py)
  (f) batch-1 greedy latency of the default ×4 student vs its teacher (same output length)
  (g) Joint-Teaching's student PTs: sampling a batch in kdbench's loop (bench/sampling.py) vs
      `generate`, per generated token (no target in the issue; reported)

Usage: python -m benchmarks.perf [--quick | --tiny] [--only a,b,...]
`--quick` fits in 10 minutes on 2 CPUs; `--tiny` takes seconds (what the tests run).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

TARGETS = {"a": ("≥", 0.95), "b": ("≥", 1.30), "c": ("≥", 10.0), "d": ("≤", 1.10), "e": ("<", 10.0), "f": ("≥", 2.0),
           "g": None}


@dataclass
class Size:
    steps: int  # training steps timed in (a), (b)
    batch: int
    examples: int  # labeled examples of the synthetic task
    gen_inputs: int  # inputs of (c)
    grid_steps: int  # student steps of a trial in (d)
    report_rows: int
    latency_inputs: int
    latency_rounds: int  # (f) alternates teacher and student this many times
    tiny: bool = False  # seconds, not minutes: only shows that each benchmark runs (what the tests run)


SIZES = {
    "tiny": Size(steps=3, batch=8, examples=64, gen_inputs=8, grid_steps=4, report_rows=60, latency_inputs=2,
                 latency_rounds=1, tiny=True),
    "quick": Size(steps=30, batch=32, examples=2000, gen_inputs=128, grid_steps=1500, report_rows=10_000,
                  latency_inputs=16, latency_rounds=3),
    "full": Size(steps=100, batch=32, examples=2000, gen_inputs=256, grid_steps=3000, report_rows=10_000,
                 latency_inputs=32, latency_rounds=5),
}


def _task(size: Size, tmp: Path):
    """Tokenizer and tokenized d2t data (the built-in task's grammar), the default shapes."""
    from bench.data import encode
    from bench.spec import load_preset
    from bench.tokenizer import train_tokenizer
    from tasks import SplitSizes, get_task

    task = get_task("d2t")
    rows = task.build(SplitSizes(labeled=size.examples, unlabeled=0, dev=1, test=1, teacher_pool=0), 0).splits["labeled"]
    tok = train_tokenizer([r["source"] for r in rows] + [r["target"] for r in rows], 2000, tmp / "tok")
    inputs = encode(tok, [r["source"] for r in rows], task.max_source_tokens)
    targets = encode(tok, [r["target"] for r in rows], task.max_target_tokens, add_eos=False)
    return tok, inputs, targets, task, load_preset("default")


def _models(tok, spec, ratio: float = 4.0, teacher_spec=None):
    from bench.models import build_model, config_from_spec, plan_student

    teacher = build_model(config_from_spec(teacher_spec or spec.tasks[0].teacher.model, tok), 0)
    student = build_model(plan_student(teacher.config, ratio).config, 1)
    return teacher.eval(), student


def _stream(inputs, targets, batch):
    from bench.distill.methods import Source
    from bench.distill.streams import Stream

    s = Stream(Source("gold"), inputs, [[t] for t in targets], seed=0, keys=[("labeled", i) for i in range(len(inputs))])
    s.set_block(batch)
    return s


def bench_a(size: Size, tmp: Path) -> float:
    """Our training step (TrainingRun, cross-entropy) vs a minimal loop on the same batches. Each
    is warmed up by one untimed step, then both alternate in short blocks (A B, B A, A B, …) and
    the ratio is of the median block: a shared machine's speed drifts and jumps during a
    measurement, and this way neither side is timed only in a slow spell."""
    import statistics

    from bench.distill.loop import TrainingRun
    from bench.distill.losses import CrossEntropy
    from bench.generation import labels_from_targets, pad_batch
    from bench.lm import forward_logits
    from bench.spec import TrainSpec

    tok, inputs, targets, task, spec = _task(size, tmp)
    _, student = _models(tok, spec)
    rounds, block = (1, size.steps) if size.tiny else (11, max(1, size.steps // 3))  # quick: 11 × 10 steps each
    train = TrainSpec(steps=block, batch_size=size.batch, warmup_steps=1, dev_every=0, select="last",
                      checkpoint_every=0)
    base = copy.deepcopy(student)
    # ours: one run, warmed up by its first step, then continued `block` steps at a time
    ours = TrainingRun(student, [_stream(inputs, targets, size.batch)], [(CrossEntropy(), 1.0)],
                       train.model_copy(update={"steps": 1}), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                       max_target=task.max_target_tokens, device="cpu")
    plain = _stream(inputs, targets, size.batch)  # the same batches in the same order
    batches = [plain.take(size.batch) for _ in range(1 + rounds * block)]
    optim = torch.optim.AdamW(base.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)

    def minimal(chunk) -> None:
        base.train()
        for examples in chunk:
            ids, mask = pad_batch([e.source for e in examples], tok.pad_token_id, "cpu")
            labels = labels_from_targets([e.target for e in examples], tok.eos_token_id, task.max_target_tokens, "cpu")
            logits = forward_logits(base, ids, mask, labels, pad_id=tok.pad_token_id, sep_id=tok.eos_token_id)
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(base.parameters(), train.grad_clip)
            optim.step()
            sched.step()

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) / block

    def continue_ours(until: int) -> None:
        ours.spec = train.model_copy(update={"steps": until})
        ours.run()

    minimal(batches[:1])
    ours.run()
    t_min, t_ours = [], []
    for r in range(rounds):
        chunk = batches[1 + r * block: 1 + (r + 1) * block]
        for side in ("minimal", "ours") if r % 2 == 0 else ("ours", "minimal"):
            if side == "minimal":
                t_min.append(timed(lambda: minimal(chunk)))
            else:  # the LR schedule was sized for its first step: the floor (10%) from then on, same cost
                t_ours.append(timed(lambda: continue_ours(1 + (r + 1) * block)))
    ms_min, ms_ours = 1000 * statistics.median(t_min), 1000 * statistics.median(t_ours)
    ratio = ms_min / ms_ours
    print(f"(a) training step: kdbench {ms_ours:.1f} ms/step, minimal loop {ms_min:.1f} ms/step (medians of "
          f"{rounds} alternating blocks of {block} steps) → {ratio:.2f}× the minimal loop's speed")
    return ratio


def _word_kd_ratio(size: Size, tmp: Path, teacher_spec=None, ratio: float = 4.0, label: str = "") -> float:
    from bench.distill.loop import TrainingRun
    from bench.distill.losses import ForwardKL
    from bench.spec import TrainSpec
    from bench.teacher_cache import TeacherCache, TeacherCaches, build_teacher_cache

    tok, inputs, targets, task, spec = _task(size, tmp)
    teacher, student = _models(tok, spec, ratio, teacher_spec)
    train = TrainSpec(steps=size.steps, batch_size=size.batch, warmup_steps=1, dev_every=0, select="last",
                      checkpoint_every=0)
    t0 = time.perf_counter()
    build_teacher_cache(tmp / f"cache{label}", teacher, {"gold": {"labeled": (inputs, [[t] for t in targets])}},
                        k=32, temperature=1.0, dtype="float16", pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                        max_target=task.max_target_tokens, device="cpu")
    t_build = time.perf_counter() - t0
    cache = TeacherCaches({"gold": TeacherCache(tmp / f"cache{label}")})
    kw = dict(pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, max_target=task.max_target_tokens, device="cpu",
              target_sets=["gold"])
    times = {}
    for name, extra in (("online", {"teacher": teacher}), ("cached", {"teacher_cache": cache})):
        run = TrainingRun(copy.deepcopy(student), [_stream(inputs, targets, size.batch)], [(ForwardKL(), 1.0)],
                          train, **kw, **extra)
        t0 = time.perf_counter()
        run.run()
        times[name] = time.perf_counter() - t0
    speedup = times["online"] / times["cached"]
    t_params = sum(p.numel() for p in teacher.parameters())
    s_params = sum(p.numel() for p in student.parameters())
    print(f"(b) word-level KD{label} (teacher {t_params:,} / student {s_params:,} params): online "
          f"{1000 * times['online'] / size.steps:.1f} ms/step, from the cache {1000 * times['cached'] / size.steps:.1f} "
          f"ms/step → {speedup:.2f}× (cache built once in {t_build:.1f}s for {len(inputs)} targets)")
    return speedup


def bench_b(size: Size, tmp: Path) -> float:
    from bench.spec import ModelSpec

    ratio = _word_kd_ratio(size, tmp)
    big = ModelSpec(arch="t5", d_model=192, ffn_dim=768, encoder_layers=6, decoder_layers=6, heads=4)
    _word_kd_ratio(size, tmp, teacher_spec=big, ratio=12.0, label=" at 12×")
    return ratio


def bench_c(size: Size, tmp: Path) -> float:
    """Batched, length-sorted generation vs `generate` one input at a time."""
    from bench.generation import generate_ids

    tok, inputs, _, task, spec = _task(size, tmp)
    teacher, _ = _models(tok, spec)
    sources = inputs[: size.gen_inputs]
    kw = dict(max_new_tokens=task.max_target_tokens, min_new_tokens=30, do_sample=False)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for src in sources:
            teacher.generate(input_ids=torch.tensor([src]), pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, **kw)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate_ids(teacher, sources, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                 max_new_tokens=task.max_target_tokens, batch_size=256, device="cpu", min_new_tokens=30)
    t_batched = time.perf_counter() - t0
    ratio = t_naive / t_batched
    print(f"(c) PT generation for {len(sources)} inputs: per-example generate {t_naive:.1f}s, kdbench {t_batched:.2f}s "
          f"→ {ratio:.1f}×")
    return ratio


def bench_d(size: Size, tmp: Path) -> float:
    """Two trials through Ray Tune + Train (one at a time) vs the same two trainings in this process."""

    from bench.environment import library_versions, quiet_ray_env

    quiet_ray_env()
    from bench.grid import run_grid
    from bench.results import read_rows
    from bench.runner import init_ray, prepare_all
    from bench.spec import parse_spec
    from bench.trial import trial_context, worker_config
    from bench.worker import distill

    tiny = size.tiny  # one trial that needs no pseudo-targets, only to show the path works
    sizes = {"labeled": 64, "unlabeled": 0, "dev": 10, "test": 20, "teacher_pool": 64} if tiny else \
        {"labeled": 400, "unlabeled": 800, "dev": 50, "test": 100, "teacher_pool": 800}
    data = {
        "name": "perf-grid",
        "tasks": [{"name": "d2t", "sizes": sizes,
                   "teacher": {"model": {"arch": "t5", "d_model": 64, "ffn_dim": 256, "encoder_layers": 2,
                                         "decoder_layers": 2, "heads": 4},
                               "train": {"steps": 4 if tiny else 60, "batch_size": 32,
                                         "dev_every": 0}}}],
        "ratios": [2], "methods": ["ft"] if tiny else ["ft", "seq_kd"], "seeds": [0],
        "tokenizer": {"vocab_size": 800},
        "student_train": {"steps": size.grid_steps, "batch_size": 32, "dev_every": max(1, size.grid_steps // 5),
                          "checkpoint_every": max(1, size.grid_steps // 5)},
        "eval": {"batch_size": 100, "profile": "off"},
        "resources": {"max_concurrent_trials": 1, "cpus_per_worker": 1.0},
        "storage": {"runs_dir": str(tmp / "runs"), "artifacts_dir": str(tmp / "artifacts")},
    }
    spec = parse_spec(data)
    started = init_ray()  # False: a caller's Ray session (the tests') is left running
    try:
        artifacts, errors = prepare_all(spec, tmp / "artifacts")
        art = artifacts["d2t"]
        plain = 0.0
        for method in spec.methods:
            cfg = worker_config(spec.model_dump(mode="json"), art, task="d2t", method=method, ratio=2.0, seed=0)
            t0 = time.perf_counter()
            distill(cfg, 0, 1, torch.device("cpu"))
            plain += time.perf_counter() - t0
        run_dir = tmp / "runs" / "grid"
        context = trial_context(spec, run_dir, "grid", artifacts, errors, library_versions())
        t0 = time.perf_counter()
        run_grid(spec, run_dir, context)
        grid = time.perf_counter() - t0
        rows = [r for r in read_rows(run_dir) if r["role"] == "student"]
        ok = [r for r in rows if r["status"] == "ok"]
        overheads = [r["wall_seconds"] - r["metrics"]["overhead"]["train"] - r["metrics"]["overhead"]["evaluation"]
                     for r in ok]
        starts = [r["metrics"]["overhead"]["worker_start"] for r in ok]
        from benchmarks.train_floor import train_floor

        floor = train_floor(str(tmp / "floor"), spec.resources.model_dump(mode="json"), trials=1 if tiny else 2)
        ratio = grid / plain
        n = len(spec.methods)
        print(f"(d) {n} trials of ~{plain / n:.0f}s: Ray Tune + Train {grid:.1f}s, plain process {plain:.1f}s → "
              f"{ratio:.2f}×; fixed cost per trial {(grid - plain) / n:.1f}s (inside the Tune function: "
              f"{sum(overheads) / max(1, len(overheads)):.1f}s outside training and evaluation, of which "
              f"{sum(starts) / max(1, len(starts)):.1f}s from fit() to the train function running: Train's processes "
              f"and the worker's imports); Ray Tune + Train around an empty function: {floor:.1f}s")
    finally:
        if started:
            import ray

            ray.shutdown()
    return ratio


def bench_e(size: Size, tmp: Path) -> float:
    from benchmarks.report_scale import main as report_scale

    out = report_scale(["--tiny"] if size.tiny else ["--rows", str(size.report_rows)])
    print(f"(e) kdbench report on {out['rows']:,} rows: {out['cold']:.1f}s first build, {out['warm']:.1f}s rebuild")
    return max(out["cold"], out["warm"])


def bench_f(size: Size, tmp: Path) -> float:
    """The default spec's ×4 student vs its teacher: batch-1 greedy latency at the same output
    length (random weights: an architecture's speed, not its outputs' lengths)."""
    tok, inputs, _, task, spec = _task(size, tmp)
    teacher, student = _models(tok, spec)
    torch.set_num_threads(1)
    sources = inputs[: size.latency_inputs]

    def latency(model) -> float:
        kw = dict(max_new_tokens=30, min_new_tokens=30, do_sample=False, pad_token_id=tok.pad_token_id,
                  eos_token_id=tok.eos_token_id)
        with torch.inference_mode():
            model.generate(input_ids=torch.tensor([sources[0]]), **kw)
            t0 = time.perf_counter()
            for src in sources:
                model.generate(input_ids=torch.tensor([src]), **kw)
        return 1000 * (time.perf_counter() - t0) / len(sources)

    from bench.models import shape_of

    # alternate the two models and keep each one's best round: noise on a shared machine only adds
    rounds = [(latency(teacher), latency(student)) for _ in range(size.latency_rounds)]
    t, s = min(r[0] for r in rounds), min(r[1] for r in rounds)
    ratio = t / s
    print(f"(f) batch-1 greedy latency, 30 tokens: teacher {shape_of(teacher.config)} {t:.1f} ms, ×4 student "
          f"{shape_of(student.config)} {s:.1f} ms → {ratio:.2f}× faster")
    return ratio


def bench_g(size: Size, tmp: Path) -> float:
    """The default ×4 student samples a training batch of PTs as Joint-Teaching does (top-p 0.95,
    top-k 50), in kdbench's loop (`bench.lm.generate_batch`) and with `generate`, alternately, on
    the same padded batches; time per generated token (random weights: the outputs' lengths are
    whatever they are, on both sides)."""
    from bench.distill.methods import PAPER_SAMPLING
    from bench.generation import pad_batch
    from bench.lm import generate_batch

    tok, inputs, _, task, spec = _task(size, tmp)
    _, student = _models(tok, spec)
    student.eval()
    pad, eos = tok.pad_token_id, tok.eos_token_id
    kw = dict(max_new_tokens=task.max_target_tokens, **PAPER_SAMPLING.generate_kwargs())
    batches = [pad_batch(inputs[i:i + size.batch], pad, "cpu")
               for i in range(0, size.batch * max(1, size.steps // 3), size.batch)]
    sides = {"kdbench": lambda ids, mask: generate_batch(student, ids, mask, pad_id=pad, eos_id=eos, sep_id=eos, **kw),
             "generate": lambda ids, mask: student.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad,
                                                            eos_token_id=eos, **kw)}
    per_token: dict[str, list[float]] = {name: [] for name in sides}
    with torch.inference_mode():
        for ids, mask in batches:  # alternate, so that neither side is timed only in a slow spell
            for name, fn in sides.items():
                t0 = time.perf_counter()
                out = fn(ids, mask)
                per_token[name].append((time.perf_counter() - t0) / max(1, int(out[:, 1:].ne(pad).sum())))
    t_ours, t_hf = (1000 * sum(v) / len(v) for v in (per_token["kdbench"], per_token["generate"]))
    ratio = t_hf / t_ours
    print(f"(g) student PT sampling, {len(batches)} batches of {size.batch}: generate {t_hf:.3f} ms/token, "
          f"kdbench {t_ours:.3f} ms/token → {ratio:.2f}×")
    return ratio


BENCHES = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d, "e": bench_e, "f": bench_f, "g": bench_g}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="under 10 minutes on 2 CPUs")
    ap.add_argument("--tiny", action="store_true", help="seconds: only checks that every benchmark runs")
    ap.add_argument("--only", default="abcdefg", help="which benchmarks, e.g. abf")
    args = ap.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "quick" if args.quick else "full"]
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="kdbench-perf-") as d:
        for key in args.only.replace(",", ""):
            tmp = Path(d) / key
            tmp.mkdir()
            results[key] = BENCHES[key](size, tmp)
    print("\nsummary (target in brackets):")
    for key, value in results.items():
        unit = "s" if key == "e" else "×"
        if TARGETS[key] is None:
            print(f"  ({key}) {value:.2f}{unit}  (no target)")
            continue
        op, target = TARGETS[key]
        ok = {"≥": value >= target, "≤": value <= target, "<": value < target}[op]
        print(f"  ({key}) {value:.2f}{unit}  [{op} {target:g}{unit}]  {'meets' if ok else 'MISSES'} the target")
    return results


if __name__ == "__main__":
    main()
