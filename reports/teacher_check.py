"""Is a task's teacher worth distilling? A check of its headline score against copying.

Retention ("the student keeps 95% of the teacher") and significance against KD baselines only
mean something when the teacher is a useful model. A teacher that is no better than copying
each test input as the output (the runner's `copy_input` baseline row), or that scores below
`TEACHER_FLOOR` points of a higher-is-better metric (it gets next to nothing right), passes on
nothing a student could not get for free: for such a task the report shows a warning, no
retention percentages and no significance markers, and says why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from reports.frame import BASELINE, TEACHER, ok_rows
from reports.headline import metric_name
from reports.stats import lower_is_better

COPY_INPUT = "copy_input"
TEACHER_FLOOR = 1.0  # headline points on the 0–100 scale (higher-is-better metrics only)


@dataclass(frozen=True)
class TeacherCheck:
    task: str
    metric: str
    teacher: float  # mean headline over the task's teacher rows; NaN without one
    copy_input: float  # the copy-input baseline's; NaN without one
    problem: str | None  # why the teacher is not meaningful, None when it is (or unknown)


def teacher_checks(frame: pd.DataFrame, metrics: dict[str, str]) -> dict[str, TeacherCheck]:
    """One check per task of `metrics`."""
    rows = ok_rows(frame)
    return {task: _check(rows[rows["task"] == task], task, metric)
            for task, metric in metrics.items()}


def _check(rows: pd.DataFrame, task: str, metric: str) -> TeacherCheck:
    values = rows[metric] if metric in rows.columns else pd.Series(dtype="float64")
    teacher = _mean(values[rows["role"] == TEACHER])
    copy = _mean(values[(rows["role"] == BASELINE) & (rows["method"] == COPY_INPUT)])
    name = metric_name(metric)
    problem = None
    if math.isnan(teacher):
        pass
    elif not math.isnan(copy) and not _better(teacher, copy, metric):
        problem = (f"the teacher's test {name} ({teacher:.2f}) is no better than copying each "
                   f"input as the output ({copy:.2f}), so what students keep of it, and how "
                   f"methods that learn from it compare, says nothing about distillation")
    elif not lower_is_better(metric) and teacher < TEACHER_FLOOR:
        problem = (f"the teacher's test {name} ({teacher:.2f}) is below the floor of "
                   f"{TEACHER_FLOOR:g}: it gets next to nothing right, so retention and "
                   f"comparisons of methods that learn from it say nothing about distillation")
    return TeacherCheck(task, metric, teacher, copy, problem)


def _better(a: float, b: float, metric: str) -> bool:
    return a < b if lower_is_better(metric) else a > b


def _mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan
