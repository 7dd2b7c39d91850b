"""Task registry. Adding a task = one module that defines `TASK` (a `BuiltinTask` for a seeded
grammar, a `DatasetTask` for a Hub dataset), plus one entry here. Custom tasks from your own
files are declared in the spec instead (`tasks.custom`)."""
from __future__ import annotations

import importlib

from tasks.base import (
    METRICS,
    SPLITS,
    DataUnavailableError,
    SettingError,
    SplitSizes,
    Task,
    TaskDataError,
    TaskSplits,
)
from tasks.builtin import BuiltinTask

_MODULES = {
    "d2t": "tasks.d2t",  # built-in, generated
    "qg": "tasks.qg",  # built-in, generated
    "xsum": "tasks.xsum",  # Hub: EdinburghNLP/xsum
    "squad_qg": "tasks.squad_qg",  # Hub: rajpurkar/squad
    "art": "tasks.art",  # Hub: allenai/art
    "shakespeare": "tasks.shakespeare",  # local copy of the Xu et al. (2012) parallel corpus
}


def task_names() -> list[str]:
    return sorted(_MODULES)


def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name lists the allowed ones."""
    if name not in _MODULES:
        raise KeyError(f"unknown task {name!r}; allowed: {', '.join(task_names())}")
    return importlib.import_module(_MODULES[name]).TASK


__all__ = [
    "METRICS",
    "SPLITS",
    "BuiltinTask",
    "DataUnavailableError",
    "SettingError",
    "SplitSizes",
    "Task",
    "TaskDataError",
    "TaskSplits",
    "get_task",
    "task_names",
]
