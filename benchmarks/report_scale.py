"""Time of `build_report` on a large synthetic run, against the 10-second target.

Writes a run dir of N result rows (default 10,000: tasks × ratios × methods × seeds, plus a
teacher and a copy-input baseline row per task) with everything a real run stores — rows with
metrics, training curves and compute, one outputs file per row, the references of each task
(`--examples` test examples with 1–4 references) and a `run.json` with a study — then builds
its report twice:

* **cold**: an empty report cache; every row's per-example statistics are read from where the
  evaluation stored them (`outputs/<row>.stats.<metric>.<hash>.npy`, as a run writes them).
* **warm**: the rebuild, with the report's own cache of resampled scores.

Both are held to the target.

The outputs are drawn from 16 variants per test example (so the rows' stored scores can be
computed from the variants' statistics without scoring every row twice); sacreBLEU's
tokenizer cache therefore helps the cold build more than with real outputs.

Usage: python benchmarks/report_scale.py [--rows 10000] [--examples 500] [--keep DIR]
       python benchmarks/report_scale.py --tiny     (a seconds-long smoke run, for tests)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from reports import build_report
from bench.example_stats import TestSet, corpus_scores, references_digest, signature, sufficient_stats
from bench.results import write_example_stats

TARGET_SECONDS = 10.0
VARIANTS = 16
TASKS = {"d2t": "bleu", "qg": "bleu", "mt": "bleu", "summ": "rougeL"}
RATIOS = (2.0, 4.0, 8.0, 16.0, 32.0)
BASE_METHODS = ("ft", "seq_kd", "word_kd", "joint_teaching", "gkd", "distillm", "noisy_kd",
                "seq_kd_multi", "sampling_pts", "word_kd_pts", "student_pts", "att_kd",
                "hidden_kd")


def plan(rows: int) -> tuple[list[str], list[str], list[float], list[int]]:
    """Tasks, methods, ratios and seeds whose product is about `rows` student rows."""
    tasks = list(TASKS) if rows >= 400 else ["d2t", "summ"]
    ratios = list(RATIOS) if rows >= 400 else [2.0, 4.0]
    cells = len(tasks) * len(ratios)
    seeds = max(1, min(20, round(math.sqrt(rows / cells / 1.25))))
    n_methods = max(2, round(rows / (cells * seeds)))
    methods = [BASE_METHODS[i] if i < len(BASE_METHODS) else f"custom_{i}"
               for i in range(n_methods)]
    return tasks, methods, ratios, list(range(seeds))


def make_run(run_dir: Path, rows: int, examples: int, seed: int = 0) -> int:
    """Write the synthetic run; returns the number of result rows."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(1500)] + ["the", "a", "near", "serves", "food", "."]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    tasks, methods, ratios, seeds = plan(rows)
    (run_dir / "references").mkdir(parents=True, exist_ok=True)
    (run_dir / "outputs").mkdir(exist_ok=True)
    lines, count = [], 0
    for task, metric in TASKS.items():
        if task not in tasks:
            continue
        refs, variants = _test_set(rng, words, zipf, examples)
        (run_dir / "references" / f"{task}.json").write_text(json.dumps(refs))
        test_set = TestSet(refs, task)
        # (variants, examples, k): each variant's per-example statistics, scored once here
        stats = np.stack([sufficient_stats(metric, [v[j] for v in variants], test_set)
                          for j in range(VARIANTS)])
        systems = [("teacher", "teacher", 1.0, 0, 0.9), ("baseline", "copy_input", 1.0, 0, 0.05)]
        systems += [("student", m, r, s, 0.25 + 0.5 * (i + 1) / (len(methods) + 1) - 0.02 * k)
                    for i, m in enumerate(methods) for k, r in enumerate(ratios) for s in seeds]
        for role, method, ratio, s, quality in systems:
            choice = np.clip(np.round(rng.normal((1 - quality) * (VARIANTS - 1), 2.5,
                                                 size=examples)), 0, VARIANTS - 1).astype(int)
            score = float(corpus_scores(metric, stats[choice, np.arange(examples)].sum(0),
                                        examples))
            key = f"{task}|{role}|{method}|r{ratio:g}|s{s}"
            outputs = f"outputs/{count:06d}.json"
            hyps = [variants[e][v] for e, v in enumerate(choice)]
            (run_dir / outputs).write_text(json.dumps({"trial_key": key, "hypotheses": hyps}))
            # as a real run stores them: the evaluation's per-example statistics beside the outputs
            write_example_stats(run_dir, outputs, key, {metric: stats[choice, np.arange(examples)].astype("float32")},
                                {"references_digest": references_digest(refs),
                                 "signatures": {metric: signature(metric)}})
            lines.append(json.dumps(_row(key, role, task, method, ratio, s, metric, score,
                                         outputs, rng)))
            count += 1
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": "scale", "spec_name": "scale", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T05:00:00+00:00", "hardware": {"cpus": 2},
        "study": {"id": "S1", "title": "KD beats fine-tuning", "claim": "seq_kd > ft",
                  "min_seeds": 3, "comparisons": [
                      {"id": "S1a", "system": "seq_kd", "baseline": "ft", "expect": "better"},
                      {"id": "S1b", "system": methods[-1], "baseline": "seq_kd",
                       "expect": "better"}]}}))
    return count


def _test_set(rng, words, zipf, examples):
    words = np.asarray(words)
    refs, variants = [], []
    for _ in range(examples):
        base = list(words[rng.choice(len(words), size=int(rng.integers(8, 25)), p=zipf)])
        alts = []
        for _ in range(int(rng.integers(0, 4))):
            alt = list(base)
            alt[int(rng.integers(len(alt)))] = str(words[rng.choice(len(words), p=zipf)])
            alts.append(" ".join(alt))
        refs.append([" ".join(base), *alts])
        # variant j keeps each reference word with probability 1 - j / VARIANTS
        keep = rng.random((VARIANTS, len(base))) > np.arange(VARIANTS)[:, None] / VARIANTS
        other = words[rng.integers(0, len(words), size=(VARIANTS, len(base)))]
        variants.append([" ".join(np.where(keep[j], base, other[j])) for j in range(VARIANTS)])
    return refs, variants


def _row(key, role, task, method, ratio, seed, metric, score, outputs, rng) -> dict:
    steps = 500 if role == "student" else 3000
    curve = [{"step": s, "loss": 5.0 * math.exp(-s / steps), "dev_loss": 4.0 * math.exp(-s / steps),
              "dev_metric": score * (1 - math.exp(-3 * s / steps))}
             for s in range(0, steps + 1, steps // 10)] if role != "baseline" else None
    compute = None if role == "baseline" else {
        "student_forward": 2e14 / ratio, "student_backward": 4e14 / ratio,
        "teacher_forward": float(rng.uniform(0, 3e14)), "student_generation": 0.0,
        "teacher_generation": 1e14}
    if compute:
        compute["total"] = sum(compute.values())
    return {
        "trial_key": key, "status": "ok", "error": None, "role": role, "task": task,
        "method": method, "ratio": ratio, "seed": seed, "student_init": "random",
        "bleu": score if metric == "bleu" else None, "chrf": score + 20,
        "params": int(6e7 / ratio), "realized_ratio": ratio, "latency_ms": 30.0 / ratio,
        "train_seconds": 100.0, "eval_seconds": 5.0, "wall_seconds": 110.0,
        "config": {"task": task, "method": method, "ratio": ratio, "seed": seed, "lr": 1e-3,
                   "steps": steps, "batch_size": 32, **{f"opt_{i}": i for i in range(20)}},
        "artifacts": {"data": "abc", "tokenizer": "def", "teacher": "ghi"},
        "versions": {"torch": "2.5", "sacrebleu": "2.6.0"}, "run_id": "scale",
        "finished_at": "2026-01-01T01:00:00+00:00", "outputs_file": outputs,
        "config_hash": _hash(key), "system_hash": _hash(key.rsplit("|", 1)[0]),
        "metrics": {"headline": metric, metric: score, "bleu_signature": "nrefs:var|13a",
                    "latency_greedy_ms": 30.0 / ratio, "compute": compute,
                    "train": {"steps": steps, "curve": curve, "target_tokens": 123456},
                    "samples": [{"source": "x " * 20, "output": "y " * 15}] * 5},
    }


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000, help="student rows (about)")
    ap.add_argument("--examples", type=int, default=500, help="test examples per task")
    ap.add_argument("--tiny", action="store_true", help="60 rows of 20 examples (for tests)")
    ap.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    args = ap.parse_args(argv)
    rows, examples = (60, 20) if args.tiny else (args.rows, args.examples)
    tmp = Path(tempfile.mkdtemp(prefix="report_scale-"))
    run_dir = args.keep or tmp / "run"
    try:
        start = time.perf_counter()
        n = make_run(run_dir, rows, examples)
        print(f"wrote {n:,} rows × {examples} test examples in "
              f"{time.perf_counter() - start:.1f}s: {run_dir}")
        timings = {}
        for phase in ("cold", "warm"):
            start = time.perf_counter()
            build_report([run_dir])
            timings[phase] = time.perf_counter() - start
        for phase, what in (("cold", "first build, statistics from the run"), ("warm", "the rebuild")):
            print(f"build_report {phase} ({what}): {timings[phase]:.1f}s = "
                  f"{timings[phase] / TARGET_SECONDS:.2f} × the {TARGET_SECONDS:g}s target "
                  f"({1000 * timings[phase] / n:.2f} ms/row)")
        return {"rows": n, **timings}
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
