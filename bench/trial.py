"""One trial of the grid: a Tune function that runs the distillation in a Ray Train
`TorchTrainer` and stores exactly one result row, whatever happens.

Tune process (tiny CPU share) → TorchTrainer (`num_workers` workers, DDP when > 1) →
`distill_worker` on every rank. Every dev evaluation is reported (`ray.train.report`, forwarded
to Tune by `TuneReportCallback`: schedulers, progress lines and trackers see the learning
curve), with a checkpoint every `checkpoint_every` steps and one at the end holding the final
metrics. Train's `FailureConfig` restarts a failed worker group from the latest checkpoint;
the Train run is named after the trial key, so a re-run of the trial (a Tune retry, or a
resumed run) continues from its own checkpoints too. Errors that a retry cannot cure (a bad
config, a NaN loss) are not retried: they become the row's reason.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import ray.tune
import torch
from ray.train import Checkpoint
from ray.train.torch import TorchTrainer

from bench.data import Lengths, encode, load_splits
from bench.distill.declare import method_from_definition, resolve_method
from bench.distill.loop import TrainingRun
from bench.distill.methods import RELATION_KINDS
from bench.distill.streams import build_streams
from bench.evaluate import dev_set, evaluate_model, quality_settings
from bench.flops import training_compute
from bench.lm import bare, is_seq2seq
from bench.models import shape_of
from bench.precision import autocast, autocast_dtype
from bench.profiling import student_dir
from bench.pretrained import load_config, load_model, load_tokenizer, same_tokenizer
from bench.results import append_row, finished_row, load_references, slug, write_outputs
from bench.seeding import seed_everything
from bench.spec import TrainSpec
from bench.stages import pt_label
from bench.student_init import make_student, parse_init
from bench.teacher_cache import TeacherCache, TeacherCaches, cache_label

REPORTED = ("bleu", "chrf", "params", "realized_ratio", "latency_ms")
STATE_FILE = "state-rank{rank}.pt"
RESULT_FILE = "result.json"


class PermanentError(Exception):
    """A failure that retrying cannot cure (bad configuration, NaN loss): recorded, not retried."""


def trial_key(task: str, method: str, ratio: float, seed: int, init: str = "random",
              config_hash: str | None = None) -> str:
    """A trial's identity: readable fields plus the hash of its full config (`trial_identity`),
    so a changed config is a different trial, never mistaken for a finished one."""
    key = f"{task}|student|{method}|{init}|r{ratio:g}|s{seed}"
    return f"{key}|{config_hash[:10]}" if config_hash else key


def trial_identity(worker_cfg: dict[str, Any], artifact_hashes: dict[str, str]) -> tuple[str, str]:
    """(config_hash, system_hash): hashes of everything that determines a trial's result — the
    exact method, training and evaluation settings, runtime, and the shared artifacts it used
    (by content hash, not by path) — with and without the seed. Rows with equal config hashes
    are the same trial; rows with equal system hashes are seeds of one system."""
    from bench.artifacts import content_hash

    ident = {k: v for k, v in worker_cfg.items() if k not in ("paths", "flops", "save_to", "keep_student", "log",
                                                              "cpus_per_worker")}
    ident["eval"] = quality_settings(worker_cfg["eval"])
    ident["artifacts"] = artifact_hashes
    system = content_hash({**ident, "seed": None})
    return content_hash(ident), system


def teacher_key(task: str) -> str:
    return f"{task}|teacher"


def worker_config(spec: dict[str, Any], art: dict[str, Any], *, task: str, method: str, ratio: float, seed: int,
                  student_init: str = "random", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plain-data config of one trial's workers (`spec`: the spec as JSON, `art`: the task's
    `TaskArtifacts` as a dict). `overrides` (from a search or a tuned config): {"student_train":
    {field: value}, "method": {dotted path: value}}."""
    from bench.distill.declare import method_to_dict, with_overrides

    res = spec["resources"]
    overrides = overrides or {}
    resolved = resolve_method(method, spec["custom_methods"])
    if overrides.get("method"):
        resolved = with_overrides(resolved, overrides["method"])
    train = TrainSpec(**{**spec["student_train"], **overrides.get("student_train", {})}).model_dump()
    return {
        "task": task, "method": method, "ratio": ratio, "seed": seed, "student_init": student_init,
        "method_definition": method_to_dict(resolved), "overrides": overrides,
        "paths": art["paths"], "lengths": art["lengths"], "metric": art["metric"], "flops": art.get("flops", {}),
        "bleu_tokenize": art.get("bleu_tokenize", "13a"),
        "train": train, "eval": spec["eval"], "teacher_cache": spec["teacher_cache"],
        "evaluate_test": True, "device": res["device"], "precision": res["precision"],
        "cpus_per_worker": res["cpus_per_worker"],
    }


def distill_worker(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train entry point on every rank; rank 0 returns the test metrics."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg["device"] == "cuda" else torch.device("cpu")
    restored = ray.train.get_checkpoint()
    local = Path(tempfile.mkdtemp(prefix="kdbench-restore-"))
    try:
        state = None
        if restored is not None:
            with restored.as_directory() as d:
                if (Path(d) / RESULT_FILE).exists():  # finished before a failure: report what it found
                    return json.loads((Path(d) / RESULT_FILE).read_text()) if rank == 0 else None
                src = Path(d) / STATE_FILE.format(rank=rank)
                if src.exists():
                    state = local / src.name
                    shutil.copy(src, state)

        def report(metrics: dict, run: TrainingRun) -> None:
            due = metrics.pop("checkpoint")
            if not due:
                ray.train.report(metrics)
                return
            with tempfile.TemporaryDirectory() as d:
                run.save(Path(d) / STATE_FILE.format(rank=rank))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

        try:
            result = distill(cfg, rank, world, device, wrap=ray.train.torch.prepare_model, report=report,
                             state=state)
        except (ValueError, KeyError, FloatingPointError, PermanentError) as exc:
            # deterministic: a retry would fail the same way, so it is recorded instead
            return {"permanent_error": _reason(exc), "traceback": traceback.format_exc()[-4000:]} if rank == 0 else None
        with tempfile.TemporaryDirectory() as d:  # the final metrics, so a retry after this point trains nothing
            if rank == 0:
                (Path(d) / RESULT_FILE).write_text(json.dumps(result, default=str))
            ray.train.report({"step": cfg["train"]["steps"], "final": True},  # ("done" is reserved by Tune)
                             checkpoint=Checkpoint.from_directory(d) if rank == 0 else None)
        return result
    finally:
        shutil.rmtree(local, ignore_errors=True)


def distill(cfg: dict[str, Any], rank: int, world: int, device, wrap=None, report=None,
            state: Path | None = None) -> dict[str, Any] | None:
    """Train one student with one KD method (plain function: Ray-free, so it can be tested).
    `report(metrics, run)` is called at every dev evaluation and checkpoint step; `state`: a
    saved `TrainingRun` state to continue from."""
    torch.set_num_threads(max(1, round(cfg["cpus_per_worker"])))
    seed_everything(cfg["seed"])
    amp = autocast_dtype(cfg["precision"])
    method = method_from_definition(cfg["method_definition"])
    paths, lengths = cfg["paths"], Lengths(**cfg["lengths"])
    spec = TrainSpec(**cfg["train"])

    init = parse_init(cfg["student_init"])
    student, plan = make_student(init, paths["teacher"], cfg["ratio"], cfg["seed"])
    teacher_tok = load_tokenizer(paths["tokenizer"])
    tok = load_tokenizer(init.source) if init.kind == "pretrained" else teacher_tok
    teacher_config = load_config(paths["teacher"], "teacher")
    check_method_fits(method, student, teacher_config, shared_tokenizer=same_tokenizer(tok, teacher_tok),
                      student_name=init.label)

    # every text (gold targets, teacher PTs, dev, test) is tokenized with the student's tokenizer
    splits = load_splits(paths["data"])
    enc = {
        "inputs": {s: encode(tok, splits.sources(s), lengths.max_source) for s in ("labeled", "unlabeled")},
        "gold": {"labeled": encode(tok, [r["target"] for r in splits.splits["labeled"]],
                                   lengths.max_target, add_eos=False)},
        "teacher_pts": {},
    }
    for pt in method.pt_specs:
        pts = _read_pts(Path(paths[pt_label(pt)]))
        enc["teacher_pts"][pt] = {
            s: _encode_candidates(tok, pts[s], lengths.max_target) for s in ("labeled", "unlabeled")
        }
    streams = build_streams(method, enc, seed=cfg["seed"] * 1000 + rank)
    target_sets = [None if s.origin == "student_pt" else "gold" if s.origin == "gold" else s.pts.slug
                   for s in method.sources]
    cache = _teacher_cache(method, paths) if cfg["teacher_cache"]["enabled"] else None
    online_rows = any(t is None or cache is None or not cache.has(t) for t in target_sets)

    student = student.to(device)
    if world > 1 and wrap is not None:
        student = wrap(student)
    teacher = None
    if method.needs_teacher_model and online_rows:
        teacher = load_model(paths["teacher"], "teacher").to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    losses = [(term.build(spec.label_smoothing, spec.loss_normalization, shape_of(teacher_config).heads),
               term.weight) for term in method.losses]
    run = TrainingRun(student, streams, losses, spec, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                      max_target=lengths.max_target, device=device, teacher=teacher, teacher_cache=cache,
                      autocast_dtype=amp, noisy_teacher=method.noisy_teacher, auto_scale=method.auto_scale,
                      schedule=method.schedule,
                      dev=dev_set(tok, splits.splits["dev"], lengths, spec, cfg["metric"], cfg["bleu_tokenize"]),
                      seed=cfg["seed"] * 1000 + rank, target_sets=target_sets)
    if state is not None:
        run.load(state)
    stats = run.run(on_report=report, checkpoint_every=spec.checkpoint_every, log=cfg.get("log"))
    if rank != 0:
        return None
    metrics: dict[str, Any] = {}
    if cfg.get("evaluate_test", True):  # a search selects on dev only and never looks at test
        with autocast(amp, device):
            metrics = evaluate_model(bare(student), tok, splits.splits["test"], lengths, device=device,
                                     bleu_tokenize=cfg["bleu_tokenize"], **quality_settings(cfg["eval"]))
    shared = {"teacher_generation": sum(cfg["flops"].get(pt_label(pt), 0.0) for pt in method.pt_specs),
              "teacher_cache": sum(v for k, v in cfg["flops"].items() if k.startswith("teacher_cache/")
                                   and cache is not None and k in _cache_labels(method))}
    metrics.update(realized_ratio=plan.realized_ratio, teacher_params=plan.teacher_params, params=plan.params,
                   student_shape=asdict(shape_of(plan.config)), train=stats, selection=stats["selection"],
                   pt_visits=stats.get("pt_visits"),
                   teacher_cache=cache.stats if cache is not None else None,
                   compute=training_compute(stats, bare(student).config, teacher_config, shared),
                   dev_loss=stats["curve"][-1]["dev_loss"] if stats["curve"] else None)
    if (pts := method.sequence_level_pts) is not None:  # for the report's PT ablation
        metrics.update(pt_strategy=pts.strategy, pt_k=pts.k)
    if cfg.get("save_to"):  # the distilled student, usable with from_pretrained (profiled after the grid)
        bare(student).save_pretrained(cfg["save_to"])
        tok.save_pretrained(cfg["save_to"])
        if cfg.get("keep_student", True):
            metrics["student_dir"] = cfg["save_to"]
    return metrics


def _cache_labels(method) -> list[str]:
    temps = method.cache_temperatures
    return [cache_label(t, temps[0]) for t in method.cached_targets] if len(temps) == 1 else []


def _teacher_cache(method, paths) -> TeacherCaches | None:
    """The caches built for this method's fixed targets (None when it has none or cannot use them)."""
    labels = [lab for lab in _cache_labels(method) if lab in paths]
    if not labels:
        return None
    return TeacherCaches({lab.removeprefix("teacher_cache/").rsplit("-t", 1)[0]: TeacherCache(paths[lab])
                          for lab in labels})


def _read_pts(path: Path) -> dict:
    try:
        return json.loads((path / "pseudo_targets.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"pseudo-targets {path / 'pseudo_targets.json'} are unreadable ({err}); the artifact is "
                         f"corrupt: delete {path} to rebuild it") from None


def check_method_fits(method, student, teacher_config, *, shared_tokenizer: bool, student_name: str) -> None:
    """Refuse, before any training, a method that cannot work with this teacher-student pair."""
    if method.needs_teacher_model and not shared_tokenizer:
        raise ValueError(
            f"{method.name} compares teacher and student token distributions (word-level KD), which "
            f"needs one tokenizer, but student {student_name!r} has its own; use a sequence-level "
            f"method (ft, seq_kd, seq_kd_multi, sampling_pts) or a student with the teacher's tokenizer")
    if any(term.kind in RELATION_KINDS for term in method.losses):
        if not (is_seq2seq(student) and is_seq2seq(teacher_config)):
            raise ValueError(f"{method.name} distils attention/hidden-state relations: it needs an encoder-decoder "
                             f"teacher and student (student {student_name!r} is "
                             f"{'decoder-only' if not is_seq2seq(student) else 'encoder-decoder'})")


def _encode_candidates(tok, texts_per_input: list[list[str]], max_len: int) -> list[list[list[int]]]:
    flat = [t for cands in texts_per_input for t in cands]
    ids = encode(tok, flat, max_len, add_eos=False)
    out, i = [], 0
    for cands in texts_per_input:
        out.append(ids[i : i + len(cands)])
        i += len(cands)
    return out


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function: train one (task, ratio, method, init, seed) — with `overrides` from a search
    or a tuned config, if any — and store its row."""
    from ray.tune.integration.ray_train import TuneReportCallback

    config = config.get("trial", config)  # the grid passes {"trial": {...}}
    run_dir = Path(context["run_dir"])
    task, method, ratio, seed = config["task"], config["method"], config["ratio"], config["seed"]
    init = config["student_init"]
    art = context["artifacts"][task]
    spec = context["spec"]
    res = spec["resources"]
    start = time.time()
    row: dict[str, Any] = {"trial_key": trial_key(task, method, ratio, seed, init), "role": "student", "task": task,
                           "method": method, "ratio": ratio, "seed": seed, "student_init": init,
                           "config": {"spec_name": spec["name"]}, "artifacts": art["hashes"] if art else {},
                           "versions": context["versions"], "run_id": context["run_id"]}
    try:  # everything from here on ends in a stored row, whatever fails
        if art is None:
            raise PermanentError(f"shared stages of task {task!r} failed: {context['stage_errors'][task]}")
        worker_cfg = worker_config(spec, art, task=task, method=method, ratio=ratio, seed=seed, student_init=init,
                                   overrides=config.get("overrides"))
        worker_cfg["evaluate_test"] = context.get("evaluate_test", True)
        config_hash, system_hash = trial_identity(worker_cfg, art["hashes"])
        key = trial_key(task, method, ratio, seed, init, config_hash)
        row.update(trial_key=key, config_hash=config_hash, system_hash=system_hash)
        if config.get("tuning"):
            row["tuning"] = config["tuning"]
        done = finished_row(run_dir, key)
        if done is not None:  # finished earlier (resume, or a retry after completion)
            ray.tune.report({**_summary(done), "status": "ok", "reused": True})
            return
        worker_cfg["save_to"] = str(student_dir(run_dir, key))
        worker_cfg["keep_student"] = spec["storage"]["save_students"]
        row["config"].update(worker_cfg)
        resources = {"CPU": res["cpus_per_worker"]}
        if res["device"] == "cuda":
            resources["GPU"] = 1
        trainer = TorchTrainer(
            distill_worker,
            train_loop_config=worker_cfg,
            scaling_config=ray.train.ScalingConfig(num_workers=res["num_workers"],
                                                   use_gpu=res["device"] == "cuda",
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=f"train-{slug(key)}", storage_path=str(run_dir / "train"),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
                failure_config=ray.train.FailureConfig(max_failures=res.get("max_failures", 1)),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                callbacks=[TuneReportCallback()]),
        )
        metrics = trainer.fit().return_value
        if metrics.get("permanent_error"):
            raise PermanentError(metrics["permanent_error"])
        if "hypotheses" in metrics:
            row["outputs_file"] = write_outputs(run_dir, key, metrics.pop("hypotheses"),
                                                load_references(run_dir, task), art.get("bleu_tokenize"))
        metrics["headline"] = art["metric"]
        row.update(status="ok", error=None, **{k: metrics.get(k) for k in REPORTED},
                   eval_seconds=metrics.get("eval_seconds"), train_seconds=metrics["train"]["train_seconds"],
                   metrics=metrics)
    except Exception as exc:  # recorded with its reason; the grid goes on
        row.update(status="error", error=_reason(exc), traceback=traceback.format_exc()[-4000:])
    row["wall_seconds"] = time.time() - start
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_row(run_dir, row)
    ray.tune.report({**_summary(row), "status": row["status"], "error": row.get("error"),
                     "wall_seconds": row["wall_seconds"], "reused": False,
                     "selection_value": (row.get("metrics") or {}).get("selection", {}).get("value")})


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """What Tune reports of a row (for the progress line): the headline metric and sizes."""
    metrics = row.get("metrics") or {}
    headline = metrics.get("headline", "bleu")
    return {**{k: row.get(k) for k in REPORTED}, "headline": headline, "headline_value": metrics.get(headline)}


def _reason(exc: BaseException) -> str:
    """The root cause in one line (Train wraps worker errors in several layers)."""
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln.strip()[:500]
    return f"{type(exc).__name__}: {lines[-1][:500] if lines else ''}"
