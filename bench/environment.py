"""Facts about the software and hardware a result came from, and Ray's console settings."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

_PACKAGES = ("kdbench", "torch", "transformers", "tokenizers", "ray", "sacrebleu", "datasets",
             "pandas", "seaborn", "numpy", "pydantic")

# Environment that keeps Ray's console to what a user needs (see shared/RAY_NOTES.md).
QUIET_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",  # explicit, so Ray does not warn about enabling it
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    # the raylet's "N PYTHON worker processes have been started ... 4x the maximum expected startup
    # concurrency" is about short-lived actors on few CPUs (a search: a Tune actor, a Train
    # controller and workers per trial, and a fresh process per profiled model), not a fault
    "RAY_DEDUP_LOGS_SKIP_REGEX": "State API may be temporarily unavailable|Reporting training result"
                                 "|PYTHON worker processes have been started",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    # trials wait for resources (a busy or shrinking cluster, an autoscaler adding GPU nodes)
    # instead of failing after Ray Train's default of 60 s
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "1800",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


def quiet_ray_env(verbose: bool = False) -> dict[str, str]:
    """Set the quiet-console environment (unless the user set a variable); returns it.

    Must run before `ray` is imported: Ray reads several of these at import time."""
    for k, v in QUIET_RAY_ENV.items():
        if not (verbose and k == "RAY_DEDUP_LOGS_SKIP_REGEX"):
            os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in QUIET_RAY_ENV if k in os.environ}


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def hardware() -> dict[str, str | int]:
    info: dict[str, str | int] = {"platform": platform.platform(), "machine": platform.machine(),
                                  "cpus": os.cpu_count() or 0}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpus"] = torch.cuda.device_count()
    except Exception:  # hardware facts are informative only
        pass
    return info
