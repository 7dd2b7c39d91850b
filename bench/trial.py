"""One trial of the grid: a Tune function that runs the distillation in a Ray Train
`TorchTrainer` and stores exactly one result row, whatever happens.

Tune process (tiny CPU share) → TorchTrainer (`num_workers` workers, DDP when > 1) →
`bench.worker.distill_worker` on every rank (through `train_loop`). This module is the Tune
side only and imports no modelling code, so the processes that schedule trials start fast.
Every dev evaluation is reported (`ray.train.report`, forwarded to Tune by
`TuneReportCallback` through one queue per Tune trial process: schedulers, progress
lines and trackers see the learning curve), with a checkpoint every `checkpoint_every` steps and one at the end holding the final
metrics. Train's `FailureConfig` restarts a failed worker group from the latest checkpoint;
the Train run is named after the trial key, so a re-run of the trial (a Tune retry, or a
resumed run) continues from its own checkpoints too. Errors that a retry cannot cure (a bad
config, a NaN loss) are not retried: they become the row's reason.
"""
from __future__ import annotations

import functools
import time
import traceback
from typing import Any

import ray.train
import ray.tune

from bench.data import TOKENIZED
from bench.profiling import student_dir
from bench.results import append_row, finished_row, load_references, slug, write_outputs
from bench.spec import TrainSpec, quality_settings
from bench.storage import Location

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
    # token ids follow from the data, tokenizer and PT hashes: left out, so rows from before they were
    # stored keep their identity (a resume reuses them; the report pools their seeds)
    ident["artifacts"] = {k: v for k, v in artifact_hashes.items() if k.split("/")[0] != TOKENIZED}
    system = content_hash({**ident, "seed": None})
    return content_hash(ident), system


def teacher_key(task: str) -> str:
    return f"{task}|teacher"


def trial_context(spec, run_dir, run_id: str, artifacts: dict[str, Any], stage_errors: dict[str, str],
                  versions: dict[str, str], **extra) -> dict[str, Any]:
    """What every trial of a grid or search reads (`run_trial`'s `context`; `spec`: a `Spec`)."""
    return {"run_dir": str(run_dir), "run_id": run_id, "spec": spec.model_dump(mode="json"), "artifacts": artifacts,
            "stage_errors": stage_errors, "versions": versions, "method_definitions": method_definitions(spec),
            **extra}


def method_definitions(spec) -> dict[str, dict[str, Any]]:
    """Each method of `spec` (a `Spec`) as plain data, made once by the driver: a trial's Tune
    process then needs no method classes, whose loss terms would import torch there (~1.3 s per
    trial process)."""
    from bench.distill.declare import method_to_dict

    return {m: method_to_dict(spec.method(m)) for m in spec.methods}


def worker_config(spec: dict[str, Any], art: dict[str, Any], *, task: str, method: str, ratio: float, seed: int,
                  student_init: str = "random", overrides: dict[str, Any] | None = None,
                  definitions: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The plain-data config of one trial's workers (`spec`: the spec as JSON, `art`: the task's
    `TaskArtifacts` as a dict). `overrides` (from a search or a tuned config): {"student_train":
    {field: value}, "method": {dotted path: value}}. `definitions`: `method_definitions(spec)`,
    used where no method override applies."""
    res = spec["resources"]
    overrides = overrides or {}
    if definitions and method in definitions and not overrides.get("method"):
        definition = definitions[method]
    else:
        from bench.distill.declare import method_to_dict, resolve_method, with_overrides

        resolved = resolve_method(method, spec["custom_methods"])
        if overrides.get("method"):
            resolved = with_overrides(resolved, overrides["method"])
        definition = method_to_dict(resolved)
    train = TrainSpec(**{**spec["student_train"], **overrides.get("student_train", {})}).model_dump()
    return {
        "task": task, "method": method, "ratio": ratio, "seed": seed, "student_init": student_init,
        "method_definition": definition, "overrides": overrides,
        "paths": art["paths"], "lengths": art["lengths"], "metric": art["metric"], "flops": art.get("flops", {}),
        "bleu_tokenize": art.get("bleu_tokenize", "13a"),
        "train": train, "eval": spec["eval"], "teacher_cache": spec["teacher_cache"],
        "evaluate_test": True, "device": res["device"], "precision": res["precision"],
        "cpus_per_worker": res["cpus_per_worker"],
    }


def train_loop(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """What the Train workers run: `bench.worker.distill_worker`, imported there, so that the
    Tune process, which only builds the trainer, never loads the model and metric libraries
    (about 3 s per trial process)."""
    from bench.worker import distill_worker

    return distill_worker(cfg)


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function: train one (task, ratio, method, init, seed) — with `overrides` from a search
    or a tuned config, if any — and store its row."""
    config = config.get("trial", config)  # the grid passes {"trial": {...}}
    run_dir = Location.of(context["run_dir"])
    task, method, ratio, seed = config["task"], config["method"], config["ratio"], config["seed"]
    init = config["student_init"]
    key = trial_key(task, method, ratio, seed, init)
    art = context["artifacts"][task]
    spec = context["spec"]
    res = spec["resources"]
    start = time.time()
    row: dict[str, Any] = {"trial_key": key, "role": "student", "task": task,
                           "method": method, "ratio": ratio, "seed": seed, "student_init": init,
                           "config": {"spec_name": spec["name"]}, "artifacts": art["hashes"] if art else {},
                           "versions": context["versions"], "run_id": context["run_id"]}
    try:  # everything from here on ends in a stored row, whatever fails
        if art is None:
            raise PermanentError(f"shared stages of task {task!r} failed: {context['stage_errors'][task]}")
        worker_cfg = worker_config(spec, art, task=task, method=method, ratio=ratio, seed=seed, student_init=init,
                                   overrides=config.get("overrides"), definitions=context.get("method_definitions"))
        worker_cfg["evaluate_test"] = context.get("evaluate_test", True)
        config_hash, system_hash = trial_identity(worker_cfg, art["hashes"])
        key = trial_key(task, method, ratio, seed, init, config_hash)
        row.update(trial_key=key, config_hash=config_hash, system_hash=system_hash)
        if config.get("tuning"):
            row["tuning"] = config["tuning"]
        done = finished_row(run_dir, key)
        if done is not None:  # finished earlier (resume, or a retry after completion)
            ray.tune.report({**_summary(done), "status": "ok", "reused": True,
                             "selection_value": (done.get("metrics") or {}).get("selection", {}).get("value")})
            return
        worker_cfg["save_to"] = str(student_dir(run_dir, key))
        worker_cfg["keep_student"] = spec["storage"]["save_students"]
        row["config"].update(worker_cfg)
        trainer = make_trainer(train_loop, worker_cfg, res, f"train-{slug(key)}", str(run_dir.join("train")))
        fit_started = time.time()
        metrics = trainer.fit().return_value
        if metrics.get("permanent_error"):
            raise PermanentError(metrics["permanent_error"])
        metrics["overhead"] = overhead(start, fit_started, metrics.pop("timing"), time.time())
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
    try:
        append_row(run_dir, row)
    except OSError as err:  # the run dir cannot be written: the grid stops, nothing written is lost
        ray.tune.report({"status": "storage_error", "error": f"cannot store the row of {key}: "
                         f"{str(err).splitlines()[0]}", "wall_seconds": row["wall_seconds"]})
        return
    ray.tune.report({**_summary(row), "status": row["status"], "error": row.get("error"),
                     "wall_seconds": row["wall_seconds"], "reused": False,
                     "selection_value": (row.get("metrics") or {}).get("selection", {}).get("value")})


def make_trainer(loop, loop_config: dict[str, Any], res: dict[str, Any], name: str, storage_path: str):
    """One trial's Ray Train run (`res`: the spec's `resources`). benchmarks/train_floor.py runs
    it around an empty loop, so Ray's own cost is timed on the grid's path."""
    # each worker's share (the trial's Tune process holds `bench.grid.TRIAL_CPU` besides)
    worker = {"CPU": res["cpus_per_worker"], **({"GPU": 1.0} if res["device"] == "cuda" else {})}
    return _trainer_class(res["num_workers"] > 1)(  # DDP when > 1
        loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=res["num_workers"], use_gpu=res["device"] == "cuda",
                                               resources_per_worker=worker),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path,
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            failure_config=ray.train.FailureConfig(max_failures=res["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[_report_callback()]),
    )


def _report_callback():
    """Ray Tune's `TuneReportCallback` (the controller sends each report to the trial's Tune
    session through a Ray queue actor), with one queue actor per Tune trial process instead of
    one per trial: a grid reuses its trial processes (`reuse_actors`), and each new queue is one
    more fresh Python process on a trial's path (Ray 2.60 starts it from the callback's
    constructor; ~0.5 s per empty trial on 2 CPUs, benchmarks/train_floor.py). The queue lives
    on this process's node, so it is lost only with this process."""
    from ray.train._internal.session import get_session
    from ray.tune.integration.ray_train import TuneReportCallback

    session = get_session()
    if session is not None and session._inter_actor_queue is None:
        session._inter_actor_queue = _process_queue()
    return TuneReportCallback()  # takes the session's queue


def _process_queue():
    """This process's report queue, emptied of what an earlier trial left in it unread."""
    global _QUEUE
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    job = ray.get_runtime_context().get_job_id()
    if _QUEUE is None or _QUEUE[0] != job:
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        _QUEUE = (job, Queue(1, actor_options={"num_cpus": 0, "scheduling_strategy": here}))
        return _QUEUE[1]  # new and empty (not waited for: it starts while the trial does)
    queue = _QUEUE[1]
    queue.get_nowait_batch(queue.qsize())
    return queue


_QUEUE = None


@functools.cache
def _trainer_class(ddp: bool) -> type:
    """Ray Train's trainer without the two actors that serve kdbench nothing (Ray 2.60, pinned: it
    overrides a private method, checked by tests/test_grid.py and tests/test_e2e.py; Ray's cost
    of an empty trial on 2 CPUs, benchmarks/train_floor.py in perf (d): 7.5 → 4.9–5.1 s):
    - `PlacementGroupCleanerCallback` starts a detached actor per run that asks the State API
      whether the controller lives, which needs the dashboard kdbench's Ray runs without, so it
      never acts (`bench.janitor` does that job); the controller also waits for it to register
      the group and to stop (up to 12 s with Ray's defaults; ~1 s measured);
    - `DatasetsCallback` starts a `DatasetManager` actor per run for Ray Datasets, and kdbench
      passes none (the callback stays if a caller passes some).
    Each actor is a fresh Python process, and Ray starts at most one per CPU at a time.
    DDP needs torch.distributed (TorchTrainer); one worker does not, and skipping the process
    group saves ~2 s per trial (and importing torch here, in the Tune process)."""
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    if ddp:
        from ray.train.torch import TorchTrainer as base
    else:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer as base

    def _create_default_callbacks(self):
        unused = (PlacementGroupCleanerCallback,) + (() if self.datasets else (DatasetsCallback,))
        return [c for c in base._create_default_callbacks(self) if not isinstance(c, unused)]

    return type(f"Lean{base.__name__}", (base,), {"_create_default_callbacks": _create_default_callbacks,
                                                  "__module__": __name__})


def overhead(trial_started: float, fit_started: float, timing: dict[str, float], fit_returned: float) -> dict[str, float]:
    """Where a trial's wall time went outside training and evaluation, in seconds (wall clocks
    of the Tune process and of rank 0; one machine's clock, or NTP-close nodes')."""
    return {
        "before_trainer": fit_started - trial_started,  # the Tune function until TorchTrainer.fit
        "worker_start": timing["worker_entered"] - fit_started,  # controller, placement group, worker, its imports
        "worker_setup": timing["train_started"] - timing["setup_started"],  # models, data, tokenization
        "train": timing["train_finished"] - timing["train_started"],
        "evaluation": timing["evaluated"] - timing["train_finished"],
        "after_evaluation": timing["finished"] - timing["evaluated"],  # saving the student, metrics
        "worker_teardown": fit_returned - timing["finished"],  # final checkpoint, controller shutdown
    }


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
