"""`kdbench run`: spec → shared artifacts (Ray tasks, one per task) → grid → rows → report."""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

from bench.environment import hardware, library_versions, quiet_ray_env
from bench.errors import RunStopped
from bench.spec import Spec, SpecError, spec_to_yaml
from bench.storage import Location, writable


def new_run_dir(spec: Spec) -> Location:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Location.of(spec.storage.runs_dir).join(f"{spec.name}-{stamp}")


def artifacts_dir(spec: Spec) -> Location:
    return Location.of(spec.storage.artifacts_dir or Location.of(spec.storage.runs_dir).join("artifacts"))


SPEC_FILE = "spec.yaml"
CELLS_FILE = "cells.json"  # the grid's cells when they are not the spec's own (a tuned run)


def stored_cells(run_dir: Location) -> list[dict[str, Any]] | None:
    """The cells a run dir's grid was started with, when they were not the spec's (None: the spec's)."""
    try:
        return run_dir.join(CELLS_FILE).read_json()
    except FileNotFoundError:
        return None
# spec fields that change where and how a run goes, never what its trials compute
NOT_RESULTS = ("storage", "tracking", "resources.max_concurrent_trials", "resources.stage_cpus", "resources.autoscale",
               "resources.max_failures")


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths where two specs (as plain data) differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed_fields(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [prefix or "(top level)"]


def check_resume(run_dir: Location, spec: Spec, allow_changed: bool, remedy: str | None = None) -> bool:
    """Whether `run_dir` holds an earlier run of this spec (so this one resumes it). A run dir
    whose stored spec differs is refused, naming the fields that changed, unless
    `allow_changed` (the changed trials then run under new keys: keys include config hashes).
    `remedy`: what the refusal tells the user to do instead (default: a `kdbench run`'s options)."""
    import yaml

    stored = run_dir.join(SPEC_FILE)
    try:
        old = yaml.safe_load(stored.read_text())
    except FileNotFoundError:
        return False
    new = spec.model_dump(mode="json")
    fields = [f for f in changed_fields(old, new) if not f.startswith(NOT_RESULTS)]
    if fields and not allow_changed:
        shown = ", ".join(fields[:12]) + (f" and {len(fields) - 12} more" if len(fields) > 12 else "")
        remedy = remedy or (f"resume it with its own spec (kdbench run --resume {run_dir}), choose another "
                            f"--run-dir, or pass --allow-changed-spec to run the changed trials under new keys "
                            f"beside the old rows")
        raise SpecError(f"run dir {run_dir} holds a run of another spec (changed: {shown}); {remedy}")
    return True


def init_ray(address: str | None = None, verbose: bool = False) -> bool:
    """Connect to `address`, or start a local Ray; a no-op when this process is connected already.
    True when this call connected (the caller then owns the session)."""
    env = quiet_ray_env(verbose)
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(
        logging_level=logging.INFO if verbose else logging.WARNING,
        runtime_env={"env_vars": env},
        log_to_driver=True,
    )
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(object_store_memory=1_000_000_000, include_dashboard=False, **kwargs)
    return True


def largest_node_cpus() -> float:
    """The CPUs of the cluster's largest live node (a Train worker or a stage job runs on one)."""
    import ray

    return max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)


def check_resources(spec: Spec) -> None:
    """Fail before any work, with a one-line SpecError naming the field, when the cluster cannot
    host one trial: a Train worker needs `cpus_per_worker` CPUs on one node, a trial
    `num_workers` of them, and `device: cuda` one GPU per worker — unless `resources.autoscale`
    says the cluster's autoscaler can add GPU nodes (trials then wait for them)."""
    import ray

    from bench.grid import TRIAL_CPU

    res = spec.resources
    cpus, gpus = ray.cluster_resources().get("CPU", 0), ray.cluster_resources().get("GPU", 0)
    node_cpus = largest_node_cpus() or cpus
    if res.cpus_per_worker > node_cpus + 1e-9:
        raise SpecError(f"resources.cpus_per_worker = {res.cpus_per_worker:g}: a Train worker runs on one node and "
                        f"the largest node has {node_cpus:g} CPUs; allowed: at most {node_cpus:g}")
    need = TRIAL_CPU + res.num_workers * res.cpus_per_worker
    if need > cpus + 1e-9:
        most = max(1, math.floor((cpus - TRIAL_CPU) / res.cpus_per_worker + 1e-9))
        raise SpecError(f"resources.num_workers = {res.num_workers}: one trial needs {need:g} CPUs (num_workers × "
                        f"cpus_per_worker {res.cpus_per_worker:g} + {TRIAL_CPU:g}) but the cluster has {cpus:g}; "
                        f"allowed: num_workers <= {most} at this cpus_per_worker, or fewer cpus_per_worker")
    if res.device == "cuda" and gpus < res.num_workers and not res.autoscale:
        raise SpecError(f"resources.device = 'cuda': the cluster has {gpus:g} GPU(s) for num_workers = "
                        f"{res.num_workers} (one GPU each); allowed: device: cpu, fewer workers, or "
                        f"resources.autoscale: true if the cluster's autoscaler adds GPU nodes")


def prepare_all(spec: Spec, store_root: Location) -> tuple[dict[str, Any], dict[str, str]]:
    """Build every task's shared stages, tasks in parallel as Ray tasks."""
    import ray

    from bench.janitor import Janitor
    from bench.stages import prepare_task

    cpus = largest_node_cpus() or 1  # a stage job runs on one node
    total = ray.cluster_resources().get("CPU", 1)
    stage_cpus = spec.resources.stage_cpus or max(1, math.floor(total / len(spec.tasks)))
    gpus = 1 if spec.resources.device == "cuda" else 0
    remote = ray.remote(prepare_task).options(num_cpus=min(stage_cpus, cpus), num_gpus=gpus, max_retries=0)
    spec_for_stages = spec.model_copy(update={"resources": spec.resources.model_copy(
        update={"stage_cpus": min(stage_cpus, cpus)})})
    refs = {e.name: remote.remote(spec_for_stages, e, str(store_root)) for e in spec.tasks}
    artifacts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    # a group that a dead trial of an earlier search or grid in this process left would starve
    # the stage jobs (they ask for every CPU of a node): give it back while they wait
    with Janitor():
        for name, ref in refs.items():
            try:
                art = ray.get(ref)
                artifacts[name] = dataclasses.asdict(art)
                states = ", ".join(f"{stage} {'reused' if art.reused[stage] else 'built'}" for stage in art.hashes)
                print(f"[{name}] shared stages: {states} ({sum(art.build_seconds.values()):.0f}s spent building)",
                      flush=True)
            except Exception as exc:  # this task's trials are recorded as failed; others go on
                errors[name] = str(exc).strip().splitlines()[-1][:500]
                artifacts[name] = None
                print(f"[{name}] shared stages FAILED: {errors[name]}", flush=True)
    return artifacts, errors


def teacher_row(spec: Spec, task: str, art: dict[str, Any], run_dir: Location, versions: dict,
                references: list[list[str]]) -> dict:
    """The teacher's row: quality from the cached evaluation (costs: profiled after the grid). An
    API teacher's row has no params or latency (nothing to profile) and records in
    `metrics.api_teacher` its model, endpoint, usage and cost, aligned and truncated shares,
    scoring support and which splits it saw."""
    from bench.results import write_outputs
    from bench.trial import teacher_key

    ev = {k: v for k, v in art["teacher_eval"].items() if k != "hypotheses"}
    ev.update(headline=art["metric"], compute=ev["train"].get("compute"), selection=ev["train"].get("selection"))
    entry = spec.task(task)
    key = teacher_key(task)
    api = art.get("api_teacher")
    params = None if api is not None else _params(str(local_artifact(art["paths"]["teacher"])))
    metrics = {**ev, "params": params}
    if api is not None:
        metrics["api_teacher"] = api
    return {
        "trial_key": key, "status": "ok", "error": None, "role": "teacher",
        "task": task, "method": "teacher", "ratio": 1.0, "seed": entry.data_seed,
        "bleu": ev["bleu"], "chrf": ev["chrf"], "params": params, "realized_ratio": 1.0,
        "latency_ms": None, "eval_seconds": ev["eval_seconds"],
        "train_seconds": ev["train"]["train_seconds"], "wall_seconds": None, "metrics": metrics,
        "outputs_file": write_outputs(run_dir, key, art["teacher_eval"]["hypotheses"], references,
                                      art.get("bleu_tokenize")),
        "config": {"teacher": entry.teacher.model_dump(mode="json"), "sizes": entry.sizes.model_dump(),
                   "eval": spec.eval.model_dump(), "spec_name": spec.name},
        "artifacts": art["hashes"], "versions": versions, "run_id": run_dir.name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def copy_input_row(spec: Spec, task: str, art: dict[str, Any], run_dir: Location, versions: dict,
                   test: list[dict]) -> dict:
    """The copy-the-input baseline: each test input (without the task's prompt) as its own
    output. A teacher below it has learned nothing worth distilling (the report says so)."""
    from bench.evaluate import score
    from bench.results import write_outputs

    prompt = art.get("prompt", "")
    hyps = [r["source"][len(prompt):] if prompt and r["source"].startswith(prompt) else r["source"] for r in test]
    references = [r["references"] for r in test]
    metrics = {k: v for k, v in score(hyps, references, art.get("bleu_tokenize", "13a")).items()}
    key = f"{task}|baseline|copy_input"
    return {
        "trial_key": key, "status": "ok", "error": None, "role": "baseline", "task": task, "method": "copy_input",
        "ratio": None, "seed": None, "bleu": metrics["bleu"], "chrf": metrics["chrf"], "params": None,
        "realized_ratio": None, "latency_ms": None, "metrics": {**metrics, "headline": art["metric"]},
        "outputs_file": write_outputs(run_dir, key, hyps, references, art.get("bleu_tokenize")),
        "config": {"spec_name": spec.name, "baseline": "copy the input (without the task prompt) as the output"},
        "artifacts": {"data": art["hashes"]["data"]}, "versions": versions, "run_id": run_dir.name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def local_artifact(where):
    from bench.artifacts import local_artifact as local

    return local(where)


def _params(model_dir: str) -> int:
    from bench.models import count_params
    from bench.pretrained import load_config

    return count_params(load_config(model_dir, "teacher"))


def start_run_dir(spec: Spec, run_dir: Location, store_root: Location, allow_changed: bool,
                  remedy: str | None = None, **extra) -> tuple[bool, dict[str, Any]]:
    """Before any work (a run's or a search's): both storage places are writable, a resumed
    run dir holds this spec (`check_resume`); then the spec and run.json (`extra` added) are
    stored. Returns (resumed, the run.json dict)."""
    for what, loc in (("run dir", run_dir), ("artifacts dir", store_root)):
        problem = writable(loc)
        if problem:
            raise SpecError(f"the {what} {loc} cannot be written: {problem}")
    resumed = check_resume(run_dir, spec, allow_changed, remedy)
    run_dir.join(SPEC_FILE).write_text(spec_to_yaml(spec))
    meta = {"run_id": run_dir.name, "spec_name": spec.name, **extra, "started_at": now(),
            "hardware": hardware(), "versions": library_versions(), "artifacts_dir": str(store_root)}
    write_meta(run_dir, meta)
    return resumed, meta


def run(spec: Spec, run_dir: str | Path | Location | None = None, address: str | None = None, verbose: bool = False,
        cells: list[dict[str, Any]] | None = None, allow_changed_spec: bool = False) -> Path | str:
    """Run the whole experiment; returns the report's path (or URI). `run_dir` (a path or a
    storage URI): a new one by default; an existing one resumes (finished trials are kept,
    interrupted ones continue from their checkpoints). `cells`: the grid's cells (default:
    every cell of the spec; `kdbench run --tuned` passes cells with tuned overrides)."""
    from bench.data import load_splits
    from bench.grid import grid_size, run_grid
    from bench.profiling import profile_run
    from bench.results import STUDENTS_DIR, append_row, read_rows, write_references
    from reports import build_report

    from bench.tracking import check_tracking, tune_callbacks
    from bench.trial import trial_context

    check_tracking(spec.tracking)  # a missing tracking backend fails before any work
    run_dir = Location.of(run_dir) if run_dir is not None else new_run_dir(spec)
    store_root = artifacts_dir(spec)
    resumed, meta = start_run_dir(spec, run_dir, store_root, allow_changed_spec,
                                  **({"study": spec.study} if spec.study else {}))
    if cells is not None:  # a tuned run: `--resume` must run the same cells, not the plain grid
        run_dir.join(CELLS_FILE).write_json(cells, indent=2)
    elif resumed:
        cells = stored_cells(run_dir)
    versions = meta["versions"]
    print(f"run {run_dir.name}{' (resumed)' if resumed else ''}: {grid_size(spec)} trials + {len(spec.tasks)} "
          f"teacher(s); run dir {run_dir}; shared artifacts in {store_root}", flush=True)

    t0 = time.time()
    init_ray(address, verbose)
    check_resources(spec)
    check_storage(run_dir, store_root, spec)
    print(f"ray ready in {time.time() - t0:.1f}s; building shared stages", flush=True)
    t1 = time.time()
    artifacts, errors = prepare_all(spec, store_root)
    print(f"shared stages ready in {time.time() - t1:.1f}s", flush=True)
    for task, art in artifacts.items():
        if art is not None:
            test = load_splits(local_artifact(art["paths"]["data"])).splits["test"]
            references = [r["references"] for r in test]
            write_references(run_dir, task, references)
            append_row(run_dir, teacher_row(spec, task, art, run_dir, versions, references))
            append_row(run_dir, copy_input_row(spec, task, art, run_dir, versions, test))
            ev, metric = art["teacher_eval"], art["metric"]
            headline = "" if metric == "bleu" else f"{metric} {ev[metric]:.2f}, "
            print(f"[{task}] teacher: {headline}BLEU {ev['bleu']:.2f}, chrF {ev['chrf']:.2f}", flush=True)

    context = trial_context(spec, run_dir, run_dir.name, artifacts, errors, versions)
    tracking_dir = run_dir.local_path if run_dir.is_local else Path.cwd() / "kdbench-tracking" / run_dir.name
    trackers = tune_callbacks(spec.tracking, tracking_dir, verbose=verbose,
                              shared_params={"student_train": spec.student_train.model_dump(),
                                             "spec_name": spec.name})
    stopped = run_grid(spec, run_dir, context, verbose=verbose, on_progress=lambda: build_report([run_dir]),
                       cells=cells, callbacks=trackers)
    if stopped:
        raise RunStopped(f"{stopped}; every row written so far is kept: once the run dir is writable again, "
                         f"finish the grid with `kdbench run --resume {run_dir}`")
    t2 = time.time()
    profile_run(run_dir, read_rows(run_dir, profiles=False), artifacts, spec,
                say=lambda m: print(m, flush=True))
    if spec.storage.save_students:
        from bench.modelcard import write_run_cards

        print(f"model cards: {write_run_cards(run_dir, read_rows(run_dir))} saved student(s)", flush=True)
    else:
        run_dir.join(STUDENTS_DIR).delete()
    print(f"profiles done in {time.time() - t2:.1f}s", flush=True)
    meta.update(finished_at=now(), wall_seconds=time.time() - t0)
    write_meta(run_dir, meta)
    report = build_report([run_dir])
    if spec.tracking.mlflow is not None:
        print(f"report logged to MLflow run {_log_report(spec, tracking_dir, run_dir)}", flush=True)
    print(f"report: {report}", flush=True)
    return report


def _log_report(spec: Spec, tracking_dir: Path, run_dir: Location) -> str | None:
    """The report folder as an MLflow artifact (a local copy first when the run dir is remote)."""
    import tempfile

    from bench.tracking import log_report

    report_dir = run_dir.join("report")
    if report_dir.is_local:
        return log_report(spec.tracking, tracking_dir, report_dir.local_path)
    with tempfile.TemporaryDirectory(prefix="kdbench-report-") as d:
        report_dir.download_dir(Path(d))
        return log_report(spec.tracking, tracking_dir, d)


def check_storage(run_dir: Location, store_root: Location, spec: Spec) -> None:
    """A cluster of several nodes must share its run dir and artifacts: an object store URI, or
    a local path the spec declares shared (NFS: `storage.shared_filesystem`)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1 or spec.storage.shared_filesystem:
        return
    local = [f"{what} {loc}" for what, loc in (("run dir", run_dir), ("artifacts dir", store_root)) if loc.is_local]
    if local:
        raise SpecError(f"the cluster has {len(nodes)} nodes but the {' and the '.join(local)} is a local path, "
                        f"which the other nodes cannot see: use an object store (storage.runs_dir: "
                        f"s3://bucket/runs) or, on NFS, set storage.shared_filesystem: true")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_meta(run_dir: Location, meta: dict) -> None:
    run_dir.join("run.json").write_json(meta, indent=2)
