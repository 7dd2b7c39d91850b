"""`kdbench tune SPEC`: a hyperparameter search per (task, ratio, method, student init), on dev only.

    spec (with `search:`) → shared stages (as `kdbench run`)
      → for each group, one after another: a Ray Tune `Tuner` (its own searcher, its own ASHA,
        the same budget) whose trials are ordinary `run_trial`s with `overrides` and no test set
      → RUN_DIR/tuning/: one record per search trial, one summary per group, `tuning.json`
      → RUN_DIR/best.yaml (the chosen configuration of each group) → the report

then `kdbench run --tuned RUN_DIR/best.yaml` trains each chosen configuration for every seed of
the spec and evaluates it on test, once.

Why one Tuner per group, run in turn: a group's searcher learns from that group only, and
ASHA compares a trial only with trials of the same method (one Tuner over every method would
let ASHA stop whole methods rather than weak configurations of each); and each group's budget
is its Tuner's own `num_samples` / `time_budget_s` at the same concurrency, so budgets are
equal by construction. The cost is a partly idle cluster at the end of each group.

Selection reads dev only: search trials run with `evaluate_test` False (their workers never
score the test split), and the choice is the completed trial with the best dev selection value
(`student_train.select`: the dev metric, or the dev loss). ASHA stops a trial at a rung when its
best dev value so far is below the rung's cutoff; stopped trials are never chosen (they did not
train the whole budget). Test is evaluated by `kdbench run --tuned`, once per chosen
configuration and seed; with the search's seed (the spec's first) that run retrains the chosen
trial exactly, so its dev value is the one the search saw.

Tune reads every trial's reports: intermediate ones (`step`, `best_dev` …, forwarded from the
Train workers) and the trial's final one (`status`, `selection_value`). `DevASHA` and
`DevSearch` turn either into one number, `objective` (higher is better: the dev metric, or
minus the dev loss), and skip reports that carry none (checkpoint-only reports before the
first dev evaluation, Train's last report). Tune's strict metric check would reject those
reports, so it is switched off for the driver (`TUNE_DISABLE_STRICT_METRIC_CHECKING`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml

import ray
from ray import tune as ray_tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from bench.errors import RunStopped
from bench.grid import TrialProgress, concurrency, trial_trainable
from bench.janitor import Janitor
from bench.search import (GROUPS_DIR, SUMMARY_FILE, TUNING_DIR, Group, Param, SearchSpec, budgets_equal, draw_random,
                          grid_points, groups, overrides_from, parse_search)
from bench.spec import Spec, SpecError
from bench.storage import Location
from bench.trial import run_trial, trial_context

OBJECTIVE = "objective"
BEST_FILE = "best.yaml"
RESOURCE_WAIT_S = 30.0


def dev_objective(result: dict | None, mode: str) -> float | None:
    """The dev objective of a Tune result (higher is better), or None when it carries none: the
    trial's final report gives `selection_value`, an intermediate one `best_dev` (the best dev
    evaluation so far, in the selection metric's own units)."""
    if not result:
        return None
    value = result.get("selection_value") if "status" in result else result.get("best_dev")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value) if mode == "max" else -float(value)


class DevASHA(AsyncHyperBandScheduler):
    """ASHA at training steps on the dev objective. A rung is a step count; there is none
    at the last step (`max_t` is one below it, and the last rung does not stop), so a trial
    that reaches the end is never stopped before it stores its row. `stopped` records the
    step of every trial it stopped."""

    def __init__(self, mode: str, grace_period: int, max_steps: int, reduction_factor: float, brackets: int):
        super().__init__(time_attr="step", metric=OBJECTIVE, mode="max", grace_period=grace_period,
                         max_t=max(grace_period, max_steps - 1), reduction_factor=reduction_factor,
                         brackets=brackets, stop_last_trials=False)
        self.dev_mode = mode
        self.stopped: dict[str, int] = {}

    def rungs(self) -> list[float]:
        return sorted({float(m) for b in self._brackets for m, _ in b._rungs})

    def _scored(self, result: dict | None) -> dict | None:
        value = dev_objective(result, self.dev_mode)
        if value is None or "step" not in (result or {}):
            return None
        return {**result, OBJECTIVE: value}

    def on_trial_result(self, tune_controller, trial, result):
        scored = self._scored(result)
        if scored is None:
            return TrialScheduler.CONTINUE
        decision = super().on_trial_result(tune_controller, trial, scored)
        if decision == TrialScheduler.STOP:
            self.stopped[trial.trial_id] = int(result["step"])
        return decision

    def on_trial_complete(self, tune_controller, trial, result):
        scored = self._scored(result)
        if scored is None:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, scored)


class DevSearch(Searcher):
    """Wraps a searcher so that it optimises the dev objective: its suggestions become
    `config["searched"]`; it sees `objective` on every report that has one; a completed trial
    is told with its final dev value, a failed one as an error, and one that ASHA or the
    time budget stopped without a value (Optuna then records it as pruned, with the
    intermediate values it saw)."""

    def __init__(self, inner: Searcher, mode: str):
        super().__init__(metric=OBJECTIVE, mode="max")
        self.inner, self.dev_mode = inner, mode

    def suggest(self, trial_id):
        found = self.inner.suggest(trial_id)
        if found is None or found == Searcher.FINISHED:
            return found
        return {"searched": dict(found)}

    def on_trial_result(self, trial_id, result):
        value = dev_objective(result, self.dev_mode)
        if value is not None:
            self.inner.on_trial_result(trial_id, {**result, OBJECTIVE: value})

    def save(self, checkpoint_path):  # a search resumes per group (a group restarts): no searcher state
        pass

    def restore(self, checkpoint_path):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        final = bool(result) and "status" in result
        # a configuration trained before reports its stored row's value (`run_trial`)
        value = dev_objective(result, self.dev_mode) if final else None
        error = error or (final and result.get("status") != "ok")
        self.inner.on_trial_complete(trial_id, {**result, OBJECTIVE: value} if value is not None else None,
                                     error=error)


class Draws(Searcher):
    """Built-in random and grid search: suggestion i is `draw(i)` (None: no more)."""

    def __init__(self, draw):
        super().__init__(metric=OBJECTIVE, mode="max")
        self.draw, self.count = draw, 0

    def suggest(self, trial_id):
        found = self.draw(self.count)
        if found is None:
            return Searcher.FINISHED
        self.count += 1
        return found

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def make_searcher(search: SearchSpec, params: tuple[Param, ...], samples: int | None):
    """The group's inner searcher: random draws (distinct configurations), a grid, or TPE."""
    if search.algorithm == "grid":
        points = grid_points(params, samples, search.seed)
        return Draws(lambda i: points[i] if i < len(points) else None)
    if search.algorithm == "random":
        seen: set[str] = set()
        cursor = [0]

        def draw(i: int) -> dict | None:
            for _ in range(1000):  # a finite space may run out of new points
                point = draw_random(params, search.seed, cursor[0])
                cursor[0] += 1
                key = json.dumps(point, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    return point
            return None

        return Draws(draw)
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space={p.path: p.dist.optuna() for p in params}, metric=OBJECTIVE, mode="max",
                        sampler=TPESampler(seed=search.seed, n_startup_trials=search.startup()))


def search_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function of a search trial: `run_trial` with the searched values as overrides (dev
    only: `context["evaluate_test"]` is False), the row recording which search it came from."""
    trial = dict(config["trial"])
    searched = dict(config.get("searched") or {})
    trial["overrides"] = overrides_from(searched)
    trial["tuning"] = {"tune_run": context["run_id"], "group": trial.pop("group"),
                       "trial": ray_tune.get_context().get_trial_id(), "searched": searched}
    run_trial({"trial": trial}, context)


class SearchProgress(TrialProgress):
    """The grid's progress lines, with each trial's searched values, and a line for every
    trial stopped before its end (by ASHA, or by the time budget)."""

    def __init__(self, total: int, scheduler):
        super().__init__(total)
        self.scheduler = scheduler
        self.finals: set[str] = set()

    @staticmethod
    def label(cfg: dict) -> str:
        searched = cfg.get("searched") or {}
        values = ", ".join(f"{path.split('.', 1)[1]}={_fmt(v)}" for path, v in searched.items())
        return f"{TrialProgress.label(cfg)} {{{values}}}"

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "status" in result:
            self.finals.add(trial.trial_id)
        super().on_trial_result(iteration, trials, trial, result, **info)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.finals:
            return
        self.done += 1
        step = getattr(self.scheduler, "stopped", {}).get(trial.trial_id)
        last = trial.last_result or {}
        why = f"stopped by ASHA at step {step}" if step is not None else \
            f"stopped at step {last.get('step', 0)} (time budget)"
        best = last.get("best_dev")
        what = why + (f", best dev value so far {best:.4g}" if isinstance(best, (int, float)) else "")
        print(f"[trial {self.done}/{self.total} · {time.time() - self.start:.0f}s] "
              f"{self.label(trial.config)}: {what}", flush=True)


class SearchRecorder(ray_tune.Callback):
    """One record per search trial: searched values, dev curve, how it ended (completed,
    stopped by ASHA at a step, failed, cut by the time budget), training seconds."""

    def __init__(self, group: Group, scheduler, mode: str, tune_run: str):
        self.group, self.scheduler, self.mode, self.tune_run = group, scheduler, mode, tune_run
        self.start = time.time()
        self.records: dict[str, dict[str, Any]] = {}

    def _record(self, trial) -> dict[str, Any]:
        if trial.trial_id not in self.records:
            searched = dict(trial.config.get("searched") or {})
            self.records[trial.trial_id] = {
                "tune_run": self.tune_run, "group": self.group.as_dict(), "group_key": self.group.key,
                "trial_id": trial.trial_id, "index": len(self.records), "searched": searched,
                "overrides": overrides_from(searched), "seed": trial.config["trial"]["seed"],
                "status": "running", "stopped_by": None, "stopped_at_step": None, "steps": 0,
                "total_steps": None, "curve": [], "objective": None, "dev_value": None,
                "selected_step": None, "train_seconds": 0.0, "error": None,
                "started_s": round(time.time() - self.start, 3), "ended_s": None}
        return self.records[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._record(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        if "status" in result:  # the trial's final report (its row is stored)
            rec.update(final_status=result.get("status"), error=result.get("error"),
                       reused=bool(result.get("reused")), objective=dev_objective(result, self.mode),
                       dev_value=result.get("selection_value"), wall_seconds=result.get("wall_seconds"))
            return
        rec["steps"] = max(rec["steps"], int(result.get("step") or 0))
        rec["total_steps"] = result.get("total_steps", rec["total_steps"])
        rec["train_seconds"] = max(rec["train_seconds"], float(result.get("train_seconds") or 0.0))
        if result.get("best_dev") is not None:
            rec["best_dev"] = result["best_dev"]
            rec["selected_step"] = result.get("selected_step")
        if result.get("evaluated", True) and result.get("dev_loss") is not None:
            rec["curve"].append({k: result.get(k) for k in ("step", "loss", "dev_loss", "dev_metric",
                                                            "best_dev", "train_seconds")})

    def _end(self, trial, status: str, error: str | None = None) -> None:
        rec = self._record(trial)
        rec["ended_s"] = round(time.time() - self.start, 3)
        if error:
            rec["error"] = error
        if status == "complete":
            if rec.get("final_status") == "ok":
                status = "completed"
            elif rec.get("final_status") == "error":
                status = "error"
            elif trial.trial_id in getattr(self.scheduler, "stopped", {}):
                status = "stopped"
                rec.update(stopped_by="asha", stopped_at_step=self.scheduler.stopped[trial.trial_id])
            else:
                status = "unfinished"
                rec.update(stopped_by="time_budget", stopped_at_step=rec["steps"])
        rec["status"] = status
        if status in ("stopped", "unfinished") and rec.get("best_dev") is not None:
            rec["dev_value"] = rec["best_dev"]  # its best dev value when stopped (never a candidate)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "complete")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "error", error=f"Ray error (see {trial.local_path})")


# ---------------------------------------------------------------------------- stages


def pt_variants(spec: Spec, search: SearchSpec) -> dict[str, list[dict[str, Any]]]:
    """Per method, every combination of searched teacher-PT values (method overrides): the PT
    sets a search may train on, built before it starts."""
    import itertools

    from bench.search import teacher_pt_params

    out: dict[str, list[dict[str, Any]]] = {}
    for m in spec.methods:
        params = teacher_pt_params(spec, m, search.space(m))
        if params:
            axes = [p.dist.grid_values() for p in params]
            out[m] = [{p.field: v for p, v in zip(params, combo)} for combo in itertools.product(*axes)]
    return out


def stage_spec(spec: Spec, method_overrides: dict[str, list[dict[str, Any]]]) -> Spec:
    """`spec` with one extra declared method per teacher pseudo-target set that the overrides
    need and the spec's methods do not build, so `prepare_all` builds it (and its teacher
    cache). The extra methods only carry PT sets: no trial runs them."""
    from bench.distill.declare import method_to_dict, with_overrides
    from bench.stages import pt_specs_needed

    have = set(pt_specs_needed(spec))
    carriers: list[dict[str, Any]] = []
    for method, variants in method_overrides.items():
        base = spec.method(method)
        for overrides in variants:
            pts_only = {path: v for path, v in overrides.items() if _is_teacher_pt_path(spec, method, path)}
            if not pts_only:
                continue
            variant = with_overrides(base, pts_only)
            new = [pt for pt in variant.pt_specs if pt not in have]
            if new:
                have.update(new)
                data = method_to_dict(variant)
                data["name"] = f"{method}~{'+'.join(pt.slug for pt in new)}"
                data["description"] = f"carries PT set(s) {', '.join(pt.slug for pt in new)} for tuned {method}"
                carriers.append(data)
    if not carriers:
        return spec
    return spec.model_copy(update={"custom_methods": [*spec.custom_methods, *carriers],
                                   "methods": [*spec.methods, *(c["name"] for c in carriers)]})


def _is_teacher_pt_path(spec: Spec, method: str, path: str) -> bool:
    from bench.search import Distribution, teacher_pt_params

    return bool(teacher_pt_params(spec, method, (Param(f"method.{path}", Distribution("choice", values=(0,))),)))


# ---------------------------------------------------------------------------- the search


def tune(spec: Spec, run_dir: str | Path | Location | None = None, address: str | None = None,
         verbose: bool = False, out: str | Path | None = None) -> Location:
    """Run the search of `spec` (its `search:` block); returns where best.yaml is. `run_dir`: a
    path or storage URI (an existing one resumes: finished groups are kept)."""
    from bench.runner import (artifacts_dir, check_resources, check_storage, init_ray, now, prepare_all,
                               start_run_dir, write_meta)
    from reports import build_report

    if spec.search is None:
        raise SpecError("this spec has no search: block; see README (Hyperparameter search) for one")
    search = parse_search(spec)
    run_dir = Location.of(run_dir) if run_dir is not None else \
        Location.of(spec.storage.runs_dir).join(f"{spec.name}-tune-{time.strftime('%Y%m%d-%H%M%S')}")
    tuning = run_dir.join(TUNING_DIR)
    store_root = artifacts_dir(spec)
    # finished groups are kept by (task, ratio, method, init) only: a changed spec would mix two searches
    _, meta = start_run_dir(spec, run_dir, store_root, allow_changed=False, kind="tune",
                            remedy="a search resumes only with the spec it started with; choose another --run-dir")
    versions = meta["versions"]
    todo = groups(spec)
    print(f"tune {run_dir.name}: {len(todo)} group(s) × {search.budget(spec.methods[0]).describe()} each "
          f"({search.algorithm} search, {'ASHA' if search.scheduler.kind == 'asha' else 'no early stopping'}, "
          f"selecting by {_metric_label(search)} on dev); run dir {run_dir}", flush=True)

    t0 = time.time()
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # see the module docstring
    if not verbose:  # trials cut by the time budget have no results: Tune warns about each
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    init_ray(address, verbose)
    check_resources(spec)
    check_storage(run_dir, store_root, spec)
    staged = stage_spec(spec, pt_variants(spec, search))
    artifacts, errors = prepare_all(staged, store_root)
    conc = concurrency(spec, ray.cluster_resources().get("CPU", 1))
    context = trial_context(staged, tuning, run_dir.name, artifacts, errors, versions, evaluate_test=False)
    outcomes = []
    for i, group in enumerate(todo, 1):
        done = tuning.join(GROUPS_DIR, f"{group.slug}.json").read_json_object()
        if done.get("outcome"):
            print(f"[search {i}/{len(todo)}] {group.label}: finished earlier (kept)", flush=True)
            outcomes.append(done["outcome"])
            continue
        print(f"[search {i}/{len(todo)}] {group.label}: {', '.join(p.path + ' ~ ' + p.dist.describe() for p in search.space(group.method))}",
              flush=True)
        try:
            outcomes.append(run_group(spec, search, group, context, conc, tuning, verbose))
        except RunStopped as stopped:
            raise RunStopped(f"{stopped}; every row and finished group so far is kept: once the run dir is writable "
                             f"again, resume the search with the same spec and `--run-dir {run_dir}`") from None
    summary = {"tune_run": run_dir.name, "tune_dir": str(run_dir), "spec_name": spec.name,
               "search": search.to_yaml(), "concurrency": conc, "groups": outcomes,
               "budgets_equal": budgets_equal(outcomes), "wall_seconds": time.time() - t0}
    tuning.join(SUMMARY_FILE).write_json(summary, indent=2)
    best = export_best(spec, search, summary, run_dir.join(BEST_FILE))
    if out is not None:
        copy = Location.of(out)
        copy.write_text(best.read_text())
        best = copy
    meta.update(finished_at=now(), wall_seconds=time.time() - t0)
    write_meta(run_dir, meta)
    report = build_report([run_dir])
    print(f"report: {report}", flush=True)
    print(f"best configurations: {best}\nnext: kdbench run --tuned {best}", flush=True)
    return best


def run_group(spec: Spec, search: SearchSpec, group: Group, context: dict[str, Any], conc: int, tuning: Location,
              verbose: bool = False) -> dict[str, Any]:
    """One group's search (its own Tuner); returns and stores its outcome and trial records."""
    budget = search.budget(group.method)
    params = search.space(group.method)
    train = spec.student_train
    if search.scheduler.kind == "asha":
        scheduler = DevASHA(search.mode, search.grace_period(train.dev_every), search.max_steps,
                            search.scheduler.reduction_factor, search.scheduler.brackets)
    else:
        scheduler = FIFOScheduler()
    searcher = DevSearch(make_searcher(search, params, budget.samples), search.mode)
    recorder = SearchRecorder(group, scheduler, search.mode, context["run_id"])
    progress = SearchProgress(budget.samples or "?", scheduler)  # "?": as many as the time budget allows
    group_conc = min(conc, budget.samples) if budget.samples else conc
    trainable = trial_trainable(search_trial, context)
    fixed = {**group.as_dict(), "seed": spec.seeds[0], "group": group.key}
    tuner = ray_tune.Tuner(
        trainable,
        param_space={"trial": fixed},
        tune_config=ray_tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=budget.samples or -1,
                                    max_concurrent_trials=group_conc, time_budget_s=budget.time_budget_s,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=ray_tune.RunConfig(name=group.slug, storage_path=str(tuning / "tune"), verbose=1 if verbose else 0,
                                  callbacks=[progress, recorder], failure_config=ray_tune.FailureConfig(max_failures=1),
                                  stop=progress.stop),  # the run dir cannot be written: stop (bench.grid)
    )
    start = time.time()
    # a stopped trial's actor is killed, and with it its Train controller: the janitor gives
    # back the workers' placement group, which would otherwise outlive it (bench/janitor.py)
    with Janitor() as janitor:
        try:
            tuner.fit()
        finally:
            progress.wait()
        wall = time.time() - start
        if progress.stop.reason:
            raise RunStopped(progress.stop.reason)
        resources = {**wait_for_resources(), "reclaimed_from_stopped_trials": janitor.removed}
    tuning.join("students").delete()  # search students are never used again
    for rec in recorder.records.values():
        if rec["status"] == "running":  # ended with the search without a word from Tune (time budget)
            rec.update(status="unfinished", stopped_by="time_budget", stopped_at_step=rec["steps"])
    records = _with_rows(list(recorder.records.values()), tuning, group)
    best = choose(records)
    stopped = [r for r in records if r["status"] == "stopped"]
    outcome = {
        "group": group.as_dict(), "group_key": group.key, "slug": group.slug,
        "params": {p.path: p.dist.describe() for p in params},
        "budget": {"samples": budget.samples, "time_budget_s": budget.time_budget_s, "concurrency": group_conc,
                   "scheduler": search.scheduler.model_dump(), "algorithm": search.algorithm, "seed": search.seed},
        "rungs": scheduler.rungs() if hasattr(scheduler, "rungs") else [],
        "trials": len(records), "completed": sum(r["status"] == "completed" for r in records),
        "stopped": len(stopped), "stopped_at_steps": sorted(r["stopped_at_step"] for r in stopped),
        "errors": sum(r["status"] == "error" for r in records),
        "unfinished": sum(r["status"] == "unfinished" for r in records),
        "steps_trained": sum(r["steps"] for r in records), "train_seconds": sum(r["train_seconds"] for r in records),
        "wall_seconds": wall, "resources": resources, "mode": search.mode,
        "metric": _metric_label(search, next((r.get("selection_metric") for r in records
                                              if r.get("selection_metric")), None)),
        "best": None if best is None else {k: best.get(k) for k in ("trial_id", "searched", "overrides", "dev_value",
                                                                     "objective", "selected_step", "seed",
                                                                     "config_hash", "trial_key")},
    }
    tuning.join(GROUPS_DIR, f"{group.slug}.json").write_json({"outcome": outcome, "trials": records}, indent=1)
    print(_group_line(outcome, search), flush=True)
    return outcome


def choose(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed trial with the highest dev objective (ties: the earlier trial). Stopped,
    failed and unfinished trials are never chosen; nothing here reads a test metric."""
    done = [r for r in records if r["status"] == "completed" and r.get("objective") is not None]
    return max(done, key=lambda r: (r["objective"], -r["index"])) if done else None


def wait_for_resources(timeout: float | None = None) -> dict[str, Any]:
    """Wait until the cluster's CPUs and GPUs are all free again (stopped trials give theirs
    back asynchronously); returns what was free and how long that took."""
    timeout = RESOURCE_WAIT_S if timeout is None else timeout
    start = time.time()
    while True:
        total, free = ray.cluster_resources(), ray.available_resources()
        back = all(free.get(k, 0.0) >= total.get(k, 0.0) - 1e-6 for k in ("CPU", "GPU"))
        if back or time.time() - start > timeout:
            break
        time.sleep(0.25)
    out = {"cpu_total": total.get("CPU", 0.0), "cpu_free": free.get("CPU", 0.0),
           "gpu_total": total.get("GPU", 0.0), "gpu_free": free.get("GPU", 0.0),
           "released": back, "waited_s": round(time.time() - start, 2)}
    if not back:
        print(f"WARNING: {out['cpu_total'] - out['cpu_free']:g} CPU(s) still held {timeout:g}s after the search "
              f"ended: a stopped trial did not release its resources", flush=True)
    return out


def _with_rows(records: list[dict], tuning: Location, group: Group) -> list[dict]:
    """Records joined with their stored rows (config hash, training compute, the selection's
    metric name; a duplicate of an earlier configuration takes that row's dev value)."""
    from bench.results import read_rows

    rows = [r for r in read_rows(tuning, profiles=False) if (r.get("tuning") or {}).get("group") == group.key]
    by_trial = {r["tuning"].get("trial"): r for r in rows}
    by_searched = {json.dumps(r["tuning"].get("searched"), sort_keys=True): r for r in rows if r["status"] == "ok"}
    for rec in records:
        row = by_trial.get(rec["trial_id"])
        if row is None and rec.get("reused"):
            row = by_searched.get(json.dumps(rec["searched"], sort_keys=True))
        if row is None:
            continue
        metrics = row.get("metrics") or {}
        selection = metrics.get("selection") or {}
        rec.update(config_hash=row.get("config_hash"), trial_key=row.get("trial_key"),
                   compute_flops=(metrics.get("compute") or {}).get("total"),
                   selection_metric=selection.get("metric"))
        if rec["status"] == "completed":
            rec["train_seconds"] = row.get("train_seconds") or rec["train_seconds"]
            rec["steps"] = (metrics.get("train") or {}).get("steps") or rec["steps"]
            if rec.get("objective") is None and selection.get("value") is not None:  # reused row
                rec["dev_value"] = selection["value"]
                rec["objective"] = dev_objective({"status": "ok", "selection_value": selection["value"]},
                                                 "max" if selection.get("metric") != "dev_loss" else "min")
                rec["selected_step"] = selection.get("selected_step")
            if not rec["curve"]:
                rec["curve"] = (metrics.get("train") or {}).get("curve") or []
    return sorted(records, key=lambda r: r["index"])


def _group_line(outcome: dict, search: SearchSpec) -> str:
    g = Group(**outcome["group"])
    steps = ", ".join(map(str, outcome["stopped_at_steps"])) or "-"
    res = outcome["resources"]
    line = (f"[search] {g.label}: {outcome['trials']} trial(s): {outcome['completed']} completed, "
            f"{outcome['stopped']} stopped by ASHA (at steps {steps}), {outcome['errors']} failed"
            + (f", {outcome['unfinished']} cut by the time budget" if outcome["unfinished"] else "")
            + f"; CPUs free after: {res['cpu_free']:g}/{res['cpu_total']:g}")
    best = outcome["best"]
    if best is None:
        return line + "; NO completed trial: nothing to choose"
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in best["searched"].items())
    return line + f"; best {outcome['metric']} {best['dev_value']:.4g} with {values} (trial {best['trial_id']})"


def _metric_label(search: SearchSpec, selection_metric: str | None = None) -> str:
    """E.g. "dev loss", "dev bleu" (from a row's `metrics.selection.metric`, "dev_bleu")."""
    if search.mode == "min":
        return "dev loss"
    return selection_metric.replace("_", " ", 1) if selection_metric else "the dev headline metric"


# ---------------------------------------------------------------------------- best.yaml


def export_best(spec: Spec, search: SearchSpec, summary: dict[str, Any], path: Location) -> Location:
    """best.yaml: the chosen configuration of every group, as `kdbench run --tuned` reads it."""
    configs, missing = [], []
    for o in summary["groups"]:
        if o["best"] is None:
            missing.append(o["group_key"])
            continue
        b = o["best"]
        configs.append({**o["group"], "overrides": b["overrides"], "searched": b["searched"], "trial": b["trial_id"],
                        "dev_value": b["dev_value"], "selected_step": b["selected_step"], "search_seed": b["seed"],
                        "config_hash": b.get("config_hash")})
    doc = {"tuned": {
        "tune_run": summary["tune_run"], "tune_dir": summary["tune_dir"],
        "spec": str(Location.of(summary["tune_dir"]).join("spec.yaml")), "spec_name": spec.name,
        "selection": {"rule": search.metric, "mode": search.mode},
        "search": {k: v for k, v in search.to_yaml().items() if k in ("algorithm", "samples", "time_budget_s",
                                                                         "seed", "scheduler")},
        "budgets_equal": summary["budgets_equal"], "untuned": missing, "configs": configs}}
    header = (f"# Tuned configurations from `kdbench tune` (run {summary['tune_run']}), chosen on dev only.\n"
              f"# Use: kdbench run --tuned {path}   (add a SPEC to run them with other seeds or settings)\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    if missing:
        print(f"WARNING: no completed trial in {len(missing)} group(s), left out of {path}: {', '.join(missing)}",
              flush=True)
    return path


def load_tuned(path: Path | str) -> dict[str, Any]:
    """The `tuned:` block of a best.yaml, checked."""
    path = Location.of(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError:
        raise SpecError(f"tuned configurations file not found: {path}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path} is not valid YAML: {err}") from None
    tuned = doc.get("tuned") if isinstance(doc, dict) else None
    if not isinstance(tuned, dict) or not isinstance(tuned.get("configs"), list):
        raise SpecError(f"{path} is not a best.yaml from `kdbench tune` (expected a `tuned:` mapping with `configs`)")
    for i, c in enumerate(tuned["configs"]):
        need = {"task", "ratio", "method", "overrides"}
        if not isinstance(c, dict) or not need <= set(c):
            raise SpecError(f"{path}: tuned.configs[{i}] needs {', '.join(sorted(need))}; got {c!r}")
    return tuned


def tuned_cells(spec: Spec, tuned: dict[str, Any], path: Path | str) -> list[dict[str, Any]]:
    """The spec's grid cells with the tuned overrides of each (task, ratio, method, init) and the
    `tuning` record its rows will carry. Every cell of the spec needs a tuned configuration;
    each is checked against the spec's method and student_train before any work."""
    from bench.distill.declare import with_overrides
    from bench.spec import TrainSpec

    path = Location.of(path)
    problems, cells = [], []
    for g in groups(spec):
        found = [c for c in tuned["configs"] if c["task"] == g.task and c["method"] == g.method
                 and math.isclose(float(c["ratio"]), g.ratio) and c.get("student_init", "random") == g.student_init]
        if not found:
            problems.append(f"no tuned configuration for {g.label} (tuned: "
                            f"{', '.join(Group(c['task'], float(c['ratio']), c['method'], c.get('student_init', 'random')).label for c in tuned['configs']) or 'none'})")
            continue
        c = found[0]
        overrides = c["overrides"] or {}
        unknown = set(overrides) - {"student_train", "method"}
        if unknown:
            problems.append(f"{g.label}: overrides has unknown section(s) {', '.join(sorted(unknown))}; allowed: "
                            f"student_train, method")
            continue
        try:
            if overrides.get("method"):
                with_overrides(spec.method(g.method), overrides["method"])
            TrainSpec(**{**spec.student_train.model_dump(), **overrides.get("student_train", {})})
        except Exception as err:  # noqa: BLE001 - reported with the group, before any work
            problems.append(f"{g.label}: the tuned overrides do not fit this spec: {str(err).strip()}")
            continue
        cells.append({**g.as_dict(), "overrides": overrides, "tuning": {
            "tune_run": tuned.get("tune_run"), "tune_dir": tuned.get("tune_dir"), "fragment": str(path),
            "trial": c.get("trial"), "searched": c.get("searched") or {}, "dev_value": c.get("dev_value"),
            "selection": tuned.get("selection"), "search_seed": c.get("search_seed")}})
    if problems:
        raise SpecError(f"{path} does not cover this spec:\n  " + "\n  ".join(problems))
    return cells


def tuned_stage_spec(spec: Spec, cells: list[dict[str, Any]]) -> Spec:
    """The spec `kdbench run --tuned` stages with: the PT sets the tuned methods train on."""
    variants: dict[str, list[dict]] = {}
    for c in cells:
        if c["overrides"].get("method"):
            variants.setdefault(c["method"], []).append(c["overrides"]["method"])
    return stage_spec(spec, variants)


# ---------------------------------------------------------------------------- small helpers


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
