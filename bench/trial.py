"""One trial of the grid: a Tune function that runs the distillation in a Ray Train
`TorchTrainer` and stores exactly one result row, whatever happens.

Tune process (tiny CPU share) → TorchTrainer (`num_workers` workers, DDP when > 1) →
`distill_worker` on every rank; rank 0 evaluates and returns the metrics.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import ray.tune
import torch
from ray.train.torch import TorchTrainer

from bench.cost import relative_costs
from bench.data import Lengths, encode, load_splits
from bench.distill.declare import resolve_method
from bench.distill.loop import train
from bench.distill.methods import RELATION_KINDS
from bench.distill.streams import build_streams
from bench.evaluate import dev_pairs, evaluate_model
from bench.lm import bare, is_seq2seq
from bench.models import shape_of
from bench.precision import autocast, autocast_dtype
from bench.pretrained import load_config, load_model, load_tokenizer, same_tokenizer
from bench.results import append_row, finished_row, slug, write_outputs
from bench.spec import TrainSpec
from bench.stages import pt_label, seed_everything
from bench.student_init import make_student, parse_init

REPORTED = ("bleu", "chrf", "params", "realized_ratio", "latency_ms")


def trial_key(task: str, method: str, ratio: float, seed: int, init: str = "random") -> str:
    return f"{task}|student|{method}|{init}|r{ratio:g}|s{seed}"


def teacher_key(task: str) -> str:
    return f"{task}|teacher"


def distill_worker(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train entry point on every rank; rank 0 returns the test metrics."""
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device() if cfg["device"] == "cuda" else torch.device("cpu")
    return distill(cfg, ctx.get_world_rank(), ctx.get_world_size(), device,
                   wrap=ray.train.torch.prepare_model)


def distill(cfg: dict[str, Any], rank: int, world: int, device, wrap=None) -> dict[str, Any] | None:
    """Train one student with one KD method (plain function: Ray-free, so it can be tested)."""
    torch.set_num_threads(max(1, round(cfg["cpus_per_worker"])))
    seed_everything(cfg["seed"])
    amp = autocast_dtype(cfg["precision"])
    method = resolve_method(cfg["method"], cfg["custom_methods"])
    paths, lengths = cfg["paths"], Lengths(**cfg["lengths"])

    init = parse_init(cfg["student_init"])
    student, plan = make_student(init, paths["teacher"], cfg["ratio"], cfg["seed"])
    teacher_tok = load_tokenizer(paths["tokenizer"])
    tok = load_tokenizer(init.source) if init.kind == "pretrained" else teacher_tok
    check_method_fits(method, student, paths["teacher"], shared_tokenizer=same_tokenizer(tok, teacher_tok),
                      student_name=init.label)

    # every text (gold targets, teacher PTs, dev, test) is tokenized with the student's tokenizer
    splits = load_splits(paths["data"])
    enc = {
        "inputs": {s: encode(tok, splits.sources(s), lengths.max_source) for s in ("labeled", "unlabeled")},
        "gold": {"labeled": encode(tok, [r["target"] for r in splits.splits["labeled"]],
                                   lengths.max_target, add_eos=False)},
    }
    enc["teacher_pts"] = {}
    for pt in method.pt_specs:
        pts = json.loads((Path(paths[pt_label(pt)]) / "pseudo_targets.json").read_text())
        enc["teacher_pts"][pt] = {
            s: _encode_candidates(tok, pts[s], lengths.max_target) for s in ("labeled", "unlabeled")
        }

    student = student.to(device)
    if world > 1 and wrap is not None:
        student = wrap(student)
    teacher = None
    if method.needs_teacher_model:
        teacher = load_model(paths["teacher"], "teacher").to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    spec = TrainSpec(**cfg["train"])
    streams = build_streams(method, enc, seed=cfg["seed"] * 1000 + rank)
    losses = [(term.build(spec.label_smoothing), term.weight) for term in method.losses]
    stats = train(student, streams, losses, spec, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                  max_target=lengths.max_target,
                  device=device, teacher=teacher, autocast_dtype=amp,
                  noisy_teacher=method.noisy_teacher, auto_scale=method.auto_scale,
                  schedule=method.schedule, dev=dev_pairs(tok, splits.splits["dev"][: spec.dev_examples], lengths),
                  seed=cfg["seed"] * 1000 + rank, log=cfg.get("log"))
    if rank != 0:
        return None
    ev = cfg["eval"]
    with autocast(amp, device):
        metrics = evaluate_model(bare(student), tok, splits.splits["test"], lengths, device=device, **ev)
    metrics.update(realized_ratio=plan.realized_ratio, teacher_params=plan.teacher_params,
                   student_shape=_shape(plan.config), train=stats,
                   dev_loss=stats["curve"][-1]["dev_loss"] if stats["curve"] else None)
    if (pts := method.sequence_level_pts) is not None:  # for the report's PT ablation
        metrics.update(pt_strategy=pts.strategy, pt_k=pts.k)
    if cfg.get("save_to"):  # the distilled student, usable with from_pretrained
        bare(student).save_pretrained(cfg["save_to"])
        tok.save_pretrained(cfg["save_to"])
        metrics["student_dir"] = cfg["save_to"]
    return metrics


def check_method_fits(method, student, teacher_path: str, *, shared_tokenizer: bool, student_name: str) -> None:
    """Refuse, before any training, a method that cannot work with this teacher-student pair."""
    if method.needs_teacher_model and not shared_tokenizer:
        raise ValueError(
            f"{method.name} compares teacher and student token distributions (word-level KD), which "
            f"needs one tokenizer, but student {student_name!r} has its own; use a sequence-level "
            f"method (ft, seq_kd, seq_kd_multi, sampling_pts) or a student with the teacher's tokenizer")
    if any(term.kind in RELATION_KINDS for term in method.losses):
        teacher_config = load_config(teacher_path, "teacher")
        if not (is_seq2seq(student) and is_seq2seq(teacher_config)):
            raise ValueError(f"{method.name} distils encoder self-relations: it needs an encoder-decoder "
                             f"teacher and student (student {student_name!r} is "
                             f"{'decoder-only' if not is_seq2seq(student) else 'encoder-decoder'})")


def _shape(config) -> dict[str, int]:
    return asdict(shape_of(config))


def _encode_candidates(tok, texts_per_input: list[list[str]], max_len: int) -> list[list[list[int]]]:
    flat = [t for cands in texts_per_input for t in cands]
    ids = encode(tok, flat, max_len, add_eos=False)
    out, i = [], 0
    for cands in texts_per_input:
        out.append(ids[i : i + len(cands)])
        i += len(cands)
    return out


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function: train one (task, ratio, method, seed) and store its row."""
    run_dir = Path(context["run_dir"])
    task, method, ratio, seed = config["task"], config["method"], config["ratio"], config["seed"]
    init = config["student_init"]
    key = trial_key(task, method, ratio, seed, init)
    done = finished_row(run_dir, key)
    if done is not None:  # finished earlier (resume, or a retry after completion)
        ray.tune.report({**_summary(done), "status": "ok", "reused": True})
        return
    art = context["artifacts"][task]
    spec = context["spec"]
    res = spec["resources"]
    start = time.time()
    row: dict[str, Any] = {"trial_key": key, "role": "student", "task": task, "method": method,
                           "ratio": ratio, "seed": seed, "student_init": init,
                           "config": {"spec_name": spec["name"]}, "artifacts": art["hashes"] if art else {}, "versions": context["versions"],
                           "run_id": context["run_id"]}
    try:  # everything from here on ends in a stored row, whatever fails
        if art is None:
            raise RuntimeError(f"shared stages of task {task!r} failed: {context['stage_errors'][task]}")
        worker_cfg = {
            "task": task, "method": method, "ratio": ratio, "seed": seed, "student_init": init,
            "custom_methods": [d for d in spec["custom_methods"] if d["name"] == method],
            "paths": art["paths"], "lengths": art["lengths"],
            "train": spec["student_train"], "eval": spec["eval"], "device": res["device"],
            "precision": res["precision"], "cpus_per_worker": res["cpus_per_worker"],
        }
        if spec["storage"]["save_students"]:
            worker_cfg["save_to"] = str(run_dir / "students" / slug(key))
        row["config"].update(worker_cfg)
        trial_id = ray.tune.get_context().get_trial_id()
        resources = {"CPU": res["cpus_per_worker"]}
        if res["device"] == "cuda":
            resources["GPU"] = 1
        trainer = TorchTrainer(
            distill_worker,
            train_loop_config=worker_cfg,
            scaling_config=ray.train.ScalingConfig(num_workers=res["num_workers"],
                                                   use_gpu=res["device"] == "cuda",
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(name=f"train-{trial_id}", storage_path=str(run_dir / "train"),
                                           logging_config=ray.train.LoggingConfig(log_level="WARNING"),
                                           failure_config=ray.train.FailureConfig(max_failures=0)),
        )
        metrics = trainer.fit().return_value
        row["outputs_file"] = write_outputs(run_dir, key, metrics.pop("hypotheses"))
        metrics["headline"] = art["metric"]
        metrics["relative"] = relative_costs(metrics, art["teacher_profile"])
        row.update(status="ok", error=None, **{k: metrics.get(k) for k in REPORTED},
                   eval_seconds=metrics["eval_seconds"], train_seconds=metrics["train"]["train_seconds"],
                   metrics=metrics)
    except Exception as exc:  # recorded with its reason; the grid goes on
        row.update(status="error", error=_reason(exc), traceback=traceback.format_exc()[-4000:])
    row["wall_seconds"] = time.time() - start
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_row(run_dir, row)
    ray.tune.report({**_summary(row), "status": row["status"], "error": row.get("error"),
                     "wall_seconds": row["wall_seconds"], "reused": False})


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
