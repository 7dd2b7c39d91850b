"""Ray's own fixed cost of a kdbench trial: the grid's path (`bench.grid.trial_trainable`
starting `bench.trial.make_trainer`'s one-worker Train run) around a function that does
nothing. perf (d) prints it beside kdbench's per-trial cost, so the part kdbench can cut (its
worker's imports and setup) is told apart from the part it cannot while it keeps Tune → Train
(the controller and worker processes Train starts).

This module imports nothing heavy, so a worker that unpickles `empty_loop` loads only Ray.
"""
from __future__ import annotations

import time


def empty_loop(config: dict) -> None:
    return None


def _trial(config: dict, context: dict) -> None:
    from ray import tune

    from bench.trial import make_trainer

    make_trainer(empty_loop, {}, context["resources"], f"floor-{config['i']}", context["storage"]).fit()
    tune.report({"status": "ok"})


def train_floor(storage: str, resources: dict, trials: int = 2) -> float:
    """Seconds per trial of `trials` empty trials, one at a time, as `bench.grid` runs trials
    (`resources`: a spec's, as JSON; Ray must be initialised)."""
    from ray import tune

    from bench.grid import trial_trainable

    tuner = tune.Tuner(
        trial_trainable(_trial, {"storage": storage, "resources": resources}),
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name="floor", storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    return (time.perf_counter() - start) / trials
