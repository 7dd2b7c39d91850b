"""The Ray Tune grid: task × ratio × method × student init × seed, one `run_trial` per cell."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from bench.janitor import Janitor
from bench.spec import Spec
from bench.storage import Location
from bench.trial import run_trial

TRIAL_CPU = 0.01  # the Tune function only waits on its TorchTrainer


class StopFlag(tune.Stopper):
    """Stops every trial once it has a reason (set by the progress callback). Plain data, so
    Tune can save it with the experiment state."""

    def __init__(self):
        self.reason: str | None = None

    def __call__(self, trial_id, result) -> bool:
        return self.reason is not None

    def stop_all(self) -> bool:
        return self.reason is not None


class TrialProgress(tune.Callback):
    """Progress on the console (Ray's own tables are off by default): a line for each running
    trial's reports (step, loss, dev metric, ETA; at most one per `live_every` seconds per
    trial), one line per finished trial, and the interim report rebuilt as trials finish
    (`on_progress`, at most once per `report_every` seconds, in a background thread so Tune's
    event loop never waits for it). Only a trial trained in this run brings the interim report
    anything new: rows stored earlier (a resumed run) were in the report that ran with them."""

    def __init__(self, total: int, on_progress: Callable[[], Path] | None = None, report_every: float = 60.0,
                 live_every: float = 20.0):
        self.total, self.done, self.start = total, 0, time.time()
        self.on_progress, self.report_every, self.last_report = on_progress, report_every, 0.0
        self.live_every, self._last_live = live_every, {}
        self.unreported = 0  # trials trained in this run that no interim report has shown yet
        self._thread: threading.Thread | None = None
        self.stop = StopFlag()  # raised when the grid must stop (the run dir cannot be written)

    def _interim_report(self) -> None:
        if self.on_progress is None or self.done == self.total or not self.unreported:  # the final report
            return                                                                         # follows the grid
        if time.time() - self.last_report < self.report_every or (self._thread and self._thread.is_alive()):
            return
        self.last_report, self.unreported = time.time(), 0
        done = self.done

        def build() -> None:
            try:
                path = self.on_progress()
            except Exception as exc:  # an interim report must never stop the grid
                print(f"(interim report not written: {type(exc).__name__}: {exc})", flush=True)
                return
            print(f"interim report ({done}/{self.total} trials): {path}", flush=True)

        self._thread = threading.Thread(target=build, name="kdbench-interim-report", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Let a running interim report finish (before the final one is written)."""
        if self._thread is not None:
            self._thread.join()

    @staticmethod
    def label(cfg: dict) -> str:
        cfg = cfg.get("trial", cfg)
        init = "" if cfg.get("student_init", "random") == "random" else f" [{cfg['student_init']}]"
        return f"{cfg['task']} r={cfg['ratio']:g} {cfg['method']}{init} seed={cfg['seed']}"

    def _live(self, trial, result: dict) -> None:
        now = time.time()
        if now - self._last_live.get(trial.trial_id, 0.0) < self.live_every or "total_steps" not in result:
            return
        self._last_live[trial.trial_id] = now
        step, total = result.get("step", 0), result["total_steps"]
        parts = [f"step {step}/{total}"]
        if result.get("loss") is not None:
            parts.append(f"loss {result['loss']:.3f}")
        if result.get("dev_loss") is not None:
            parts.append(f"dev loss {result['dev_loss']:.3f}")
        if result.get("dev_metric") is not None:
            parts.append(f"dev metric {result['dev_metric']:.2f} (best @{result.get('selected_step')})")
        seconds = result.get("train_seconds") or 0
        if step and seconds:
            parts.append(f"ETA {seconds / step * (total - step):.0f}s")
        print(f"  [running] {self.label(trial.config)}: {' · '.join(parts)}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "status" not in result:  # an intermediate report forwarded from the Train workers
            self._live(trial, result)
            return
        if result["status"] == "storage_error":  # the run dir cannot be written: stop the grid
            if self.stop.reason is None:
                self.stop.reason = result["error"]
                print(f"STOPPING: {result['error']}", flush=True)
            return
        self.done += 1
        self.unreported += not result.get("reused")
        if result.get("status") == "ok":
            headline = result.get("headline") or "bleu"
            if result.get("bleu") is None:  # a search trial: dev only
                value = result.get("selection_value")
                what = f"dev selection value {value:.4g}" if isinstance(value, (int, float)) else \
                    f"dev selection value {value}"
            else:
                what = "" if headline == "bleu" else f"{headline} {result['headline_value']:.2f} "
                what += f"BLEU {result['bleu']:.2f} chrF {result['chrf']:.2f}"
            what += f" (params {result['params']:,}, ratio {result['realized_ratio']:.2f})"
            what += " [stored earlier]" if result.get("reused") else f" in {result.get('wall_seconds', 0):.0f}s"
        else:
            what = f"FAILED: {result.get('error')}"
        elapsed = time.time() - self.start
        print(f"[trial {self.done}/{self.total} · {elapsed:.0f}s] {self.label(trial.config)}: {what}", flush=True)
        self._interim_report()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        print(f"[trial {self.done}/{self.total}] {self.label(trial.config)}: Ray error (see {trial.local_path})",
              flush=True)


def trial_trainable(fn: Callable, context: dict[str, Any]):
    """A Tune trainable as kdbench runs every trial (grid, search, benchmarks/train_floor.py):
    `context` put in Ray's object store once, TRIAL_CPU for the Tune process (its Train workers
    hold the CPUs; shared/RAY_NOTES.md)."""
    return tune.with_resources(tune.with_parameters(fn, context=context), {"CPU": TRIAL_CPU})


def concurrency(spec: Spec, cluster_cpus: float) -> int:
    per_trial = TRIAL_CPU + spec.resources.num_workers * spec.resources.cpus_per_worker
    fit = max(1, math.floor(cluster_cpus / per_trial + 1e-9))
    return min(fit, spec.resources.max_concurrent_trials or fit)


def longest_first(spec: Spec) -> list[str]:
    """The spec's methods ordered by expected cost, so the grid ends with short trials (less
    idle CPU)."""
    return sorted(spec.methods, key=lambda m: -spec.method(m).relative_cost)


def grid_cells(spec: Spec) -> list[dict[str, Any]]:
    """Every (task, ratio, method, student init) of the spec, as plain trial configs without a seed."""
    return [{"task": t.name, "ratio": r, "method": m, "student_init": i}
            for t in spec.tasks for r in sorted(spec.ratios) for m in spec.methods for i in spec.student_inits]


def grid_trials(spec: Spec, cells: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every trial: each cell (default: `grid_cells`; a tuned run passes cells with `overrides`
    and `tuning`) × each seed, costliest methods first, so the grid ends with short trials."""
    cells = grid_cells(spec) if cells is None else cells
    trials = [{**cell, "seed": seed} for cell in cells for seed in spec.seeds]
    return sorted(trials, key=lambda t: -spec.method(t["method"]).relative_cost)


def grid_size(spec: Spec) -> int:
    return len(spec.tasks) * len(spec.ratios) * len(spec.methods) * len(spec.student_inits) * len(spec.seeds)


def run_grid(spec: Spec, run_dir, context: dict[str, Any], verbose: bool = False,
             on_progress: Callable[[], Path] | None = None, cells: list[dict[str, Any]] | None = None,
             callbacks: list | None = None) -> str | None:
    """Run every trial; returns why the grid stopped early (None when it ran to the end)."""
    trials = grid_trials(spec, cells)
    trainable = trial_trainable(run_trial, context)
    max_conc = concurrency(spec, ray.cluster_resources().get("CPU", 1))
    print(f"grid: {len(trials)} trials, up to {max_conc} at a time", flush=True)
    progress = TrialProgress(len(trials), on_progress)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_conc, reuse_actors=True),  # one trial process per slot
        run_config=tune.RunConfig(
            name="tune", storage_path=str(Location.of(run_dir).join("tune")),
            verbose=1 if verbose else 0, callbacks=[progress, *(callbacks or [])],
            failure_config=tune.FailureConfig(max_failures=1), stop=progress.stop,
        ),
    )
    try:
        with Janitor():  # a dead trial's Train workers' CPUs come back
            tuner.fit()
    finally:
        progress.wait()
    return progress.stop.reason
