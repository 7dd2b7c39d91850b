"""kdbench: knowledge-distillation benchmarks for NLG on Ray.

The Python API is the command line's: `run(spec)` (a `Spec`, a path to a spec YAML, or a
preset name) → the report's path; `report(run_dirs)` → the report's path; `tune(spec)`;
`load_spec`, `load_study` and `read_rows` (one dict per trial) for everything in between.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["run", "report", "tune", "load_spec", "load_study", "read_rows", "results_frame"]


def _spec(spec):
    from bench.spec import PRESETS, Spec, load_preset, load_spec

    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return load_preset(spec)
    return load_spec(spec)


def run(spec="default", run_dir=None, address=None, verbose=False, allow_changed_spec=False):
    """Run an experiment (`kdbench run`); returns the report's path (or URI)."""
    from bench.environment import quiet_ray_env

    quiet_ray_env(verbose)
    from bench.runner import run as _run

    return _run(_spec(spec), run_dir=run_dir, address=address, verbose=verbose,
                allow_changed_spec=allow_changed_spec)


def tune(spec, run_dir=None, address=None, verbose=False, out=None):
    """Search hyperparameters (`kdbench tune`)."""
    from bench.environment import quiet_ray_env

    quiet_ray_env(verbose)
    from bench.tune import tune as _tune

    return _tune(_spec(spec), run_dir=run_dir, address=address, verbose=verbose, out=out)


def report(run_dirs, out_dir=None):
    """(Re)build the report of one or more run dirs (`kdbench report`); returns its path."""
    from reports import build_report

    return build_report(run_dirs, out_dir)


def load_spec(path):
    from bench.spec import load_spec as _load

    return _load(path)


def load_study(name, scale="cpu", tasks=None):
    from bench.studies import load_study as _load

    return _load(name, scale, tasks)


def read_rows(run_dir):
    """Every row of a run (one dict per trial; schema in `bench.results`)."""
    from bench.results import read_rows as _read

    return _read(run_dir)


def results_frame(run_dirs):
    """The tidy results DataFrame of one or more runs (what the report tables aggregate)."""
    from reports.frame import load_frame

    return load_frame([run_dirs] if isinstance(run_dirs, str) else run_dirs)
