"""Which metric a task is judged by, and how metrics are named on the page.

A task's headline metric is BLEU unless its rows say otherwise (`metrics["headline"]`, the
most common value among the task's successful rows), so a summarisation task can be judged by
ROUGE-L without the report knowing about it in advance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reports.frame import method_label, ok_rows

HEADLINE = "bleu"
METRIC_NAMES = {
    "bleu": "BLEU", "chrf": "chrF", "ter": "TER", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L", "dev_loss": "dev loss", "latency_ms": "latency (greedy)",
    "dev_bleu": "dev BLEU", "loss": "training loss", "dev_metric": "dev headline",
}
# Units for axis labels; quality scores are on sacreBLEU's / rouge-score's 0–100 scale.
METRIC_UNITS = {
    "bleu": "0–100", "chrf": "0–100", "ter": "0–100+, lower is better", "rouge1": "0–100",
    "rouge2": "0–100", "rougeL": "0–100", "dev_loss": "nats/token", "loss": "nats/token",
    "dev_bleu": "0–100", "latency_ms": "ms/example, batch 1",
}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def axis_label(metric: str, prefix: str = "test ") -> str:
    unit = METRIC_UNITS.get(metric)
    return f"{prefix}{metric_name(metric)}" + (f" ({unit})" if unit else "")


def task_names(frame: pd.DataFrame) -> list[str]:
    """Tasks in the frame, sorted (rows without a task are left out)."""
    return sorted(str(t) for t in frame["task"].dropna().unique())


def headline_metric(frame: pd.DataFrame, task: str) -> str:
    """The task's headline metric: the rows' `headline` if they name one, else BLEU."""
    rows = ok_rows(frame)
    named = rows.loc[(rows["task"] == task), "headline"].dropna()
    if named.empty:
        return HEADLINE
    return str(named.value_counts().index[0])


def headlines(frame: pd.DataFrame) -> dict[str, str]:
    return {task: headline_metric(frame, task) for task in task_names(frame)}


QUALITY_COLUMNS = ["task", "label", "method", "student_init", "role", "ratio", "seed", "run_id",
                   "metric", "value", "latency_ms", "flops_total", "pt_strategy", "pt_k"]


def quality_frame(frame: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Long frame (QUALITY_COLUMNS) of successful rows with each task's headline score in
    `value`; rows whose headline score is missing are left out. The label is the frame's
    (teacher rows are "teacher", or "teacher · spec …" when teachers of several specs merged)."""
    rows = ok_rows(frame)
    rows = rows[rows["task"].isin(list(metrics))]
    if rows.empty:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    metric = rows["task"].map(metrics)
    value = pd.Series(np.nan, index=rows.index, dtype="float64")
    for name in metric.unique():
        if name in rows.columns:
            hit = metric == name
            value[hit] = pd.to_numeric(rows.loc[hit, name], errors="coerce")
    out = rows[[c for c in QUALITY_COLUMNS if c in rows.columns and c not in ("metric", "value")]]
    out = out.assign(label=method_label(rows), metric=metric, value=value)[QUALITY_COLUMNS]
    return out[out["value"].notna()].reset_index(drop=True)
