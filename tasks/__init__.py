"""Task registry. Adding a task = one module that defines `TASK`, plus one entry here."""
from __future__ import annotations

from tasks.base import SPLITS, SplitSizes, TaskSplits
from tasks.builtin import BuiltinTask

_MODULES = {"d2t": "tasks.d2t", "qg": "tasks.qg"}


def task_names() -> list[str]:
    return sorted(_MODULES)


def get_task(name: str) -> BuiltinTask:
    """The registered task `name`; an unknown name lists the allowed ones."""
    if name not in _MODULES:
        raise KeyError(f"unknown task {name!r}; allowed: {', '.join(task_names())}")
    import importlib

    return importlib.import_module(_MODULES[name]).TASK


__all__ = ["SPLITS", "SplitSizes", "TaskSplits", "BuiltinTask", "get_task", "task_names"]
