"""Ray's own fixed cost of a kdbench trial: the grid's path (a Tune trial starting a one-worker
Train run) around a function that does nothing. perf (d) prints it beside kdbench's per-trial
cost, so the part kdbench can cut (its worker's imports and setup) is told apart from the part
it cannot while it keeps Tune → Train (the controller and worker processes Train starts).

This module imports nothing heavy, so a worker that unpickles `empty_loop` loads only Ray.
"""
from __future__ import annotations

import time


def empty_loop(config: dict) -> None:
    return None


def _trial(config: dict) -> None:
    import ray.train
    from ray import tune
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    trainer = DataParallelTrainer(
        empty_loop, scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": config["cpus"]}),
        run_config=ray.train.RunConfig(name=f"floor-{config['i']}", storage_path=config["storage"],
                                       logging_config=ray.train.LoggingConfig(log_level="WARNING")))
    trainer.fit()
    tune.report({"status": "ok"})


def train_floor(storage: str, trials: int = 2, cpus_per_worker: float = 1.0) -> float:
    """Seconds per trial of `trials` empty trials, one at a time, as `bench.grid` runs trials
    (Ray must be initialised)."""
    from ray import tune

    from bench.grid import TRIAL_CPU

    tuner = tune.Tuner(
        tune.with_resources(_trial, {"CPU": TRIAL_CPU}),
        param_space={"storage": storage, "cpus": cpus_per_worker, "i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name="floor", storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    return (time.perf_counter() - start) / trials
