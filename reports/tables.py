"""The report's tables, built from the tidy frame; renderers only lay them out.

`metric_pivot` gives the numbers (method × ratio, mean or std over seeds, teacher row first)
for analysis and tests; `results_table`, `flat_table` and `failed_table` give the display
strings ("31.20 ± 0.45", "—" for missing), so Markdown and HTML show exactly the same text.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports.frame import TEACHER, method_label, ok_rows

HEADLINE = "bleu"
MISSING = "—"
METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF"}


def task_names(frame: pd.DataFrame) -> list[str]:
    """Tasks in the frame, sorted (rows without a task are left out)."""
    return sorted(str(t) for t in frame["task"].dropna().unique())


def metric_stats(frame: pd.DataFrame, task: str, metric: str = HEADLINE) -> pd.DataFrame:
    """Per (method, ratio) of one task: mean, std (ddof 1) and n over successful rows
    with a non-null metric. Columns: method, ratio, mean, std, n."""
    rows = ok_rows(frame)
    rows = rows[(rows["task"] == task) & rows[metric].notna()]
    data = pd.DataFrame(
        {"method": method_label(rows), "ratio": rows["ratio"], "value": rows[metric]}
    )
    if data.empty:
        return pd.DataFrame(columns=["method", "ratio", "mean", "std", "n"])
    stats = data.groupby(["method", "ratio"], dropna=False)["value"].agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


def metric_pivot(
    frame: pd.DataFrame, task: str, metric: str = HEADLINE, stat: str = "mean"
) -> pd.DataFrame:
    """Method × ratio table of `stat` ("mean", "std" or "n") of `metric` for one task.

    Index: "teacher" first (at its ratio 1.0), then methods sorted; columns: ratios ascending.
    """
    stats = metric_stats(frame, task, metric)
    if stats.empty:
        return pd.DataFrame()
    table = stats.pivot(index="method", columns="ratio", values=stat)
    order = sorted(table.index, key=lambda m: (m != TEACHER, str(m)))
    table = table.reindex(index=order, columns=sorted(table.columns))
    table.index.name, table.columns.name = "method", "ratio"
    return table


def results_table(frame: pd.DataFrame, task: str, metric: str = HEADLINE) -> pd.DataFrame:
    """Display version of `metric_pivot`: "mean ± std" when several seeds, columns "×ratio"."""
    mean = metric_pivot(frame, task, metric, "mean")
    if mean.empty:
        return mean
    std = metric_pivot(frame, task, metric, "std")
    n = metric_pivot(frame, task, metric, "n")
    cells = {
        ratio_label(ratio): [
            _mean_std(mean.at[m, ratio], std.at[m, ratio], n.at[m, ratio]) for m in mean.index
        ]
        for ratio in mean.columns
    }
    return pd.DataFrame(cells, index=pd.Index(mean.index, name="method"))


def flat_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every successful row, teacher first per task, as display strings."""
    rows = ok_rows(frame).assign(_label=lambda f: method_label(f))
    rows = rows.assign(_teacher=rows["role"] != TEACHER)
    rows = rows.sort_values(["task", "_teacher", "_label", "ratio", "seed", "run_id"])
    table = pd.DataFrame(
        {
            "task": rows["task"].map(_text),
            "method": rows["_label"].map(_text),
            "ratio": rows["ratio"].map(_ratio_text),
            "realized ratio": rows["realized_ratio"].map(lambda v: _num(v, 2)),
            "seed": rows["seed"].map(_text),
            "BLEU": rows["bleu"].map(lambda v: _num(v, 2)),
            "chrF": rows["chrf"].map(lambda v: _num(v, 2)),
            "params": rows["params"].map(_thousands),
            "latency ms": rows["latency_ms"].map(lambda v: _num(v, 1)),
        }
    )
    if frame["run_id"].nunique() > 1:
        table.insert(0, "run", rows["run_id"].map(_text))
    return table.reset_index(drop=True)


def failed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every failed row with its reason (raw text: renderers escape it)."""
    rows = frame[frame["status"] != "ok"]
    rows = rows.assign(_label=method_label(rows)).sort_values(["task", "_label", "ratio", "seed"])
    table = pd.DataFrame(
        {
            "task": rows["task"].map(_text),
            "method": rows["_label"].map(_text),
            "ratio": rows["ratio"].map(_ratio_text),
            "seed": rows["seed"].map(_text),
            "error": rows["error"].map(lambda e: MISSING if _is_missing(e) else str(e)),
        }
    )
    return table.reset_index(drop=True)


def ratio_label(ratio: Any) -> str:
    """Column header for a compression ratio: 2.0 → "×2", 1.5 → "×1.5"."""
    return MISSING if _is_missing(ratio) else f"×{float(ratio):g}"


def _mean_std(mean: Any, std: Any, n: Any) -> str:
    if _is_missing(mean):
        return MISSING
    if not _is_missing(n) and n > 1 and not _is_missing(std):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.2f}"


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _text(value: Any) -> str:
    return MISSING if _is_missing(value) else str(value)


def _num(value: Any, digits: int) -> str:
    return MISSING if _is_missing(value) else f"{float(value):.{digits}f}"


def _thousands(value: Any) -> str:
    return MISSING if _is_missing(value) else f"{int(value):,}"


def _ratio_text(value: Any) -> str:
    return MISSING if _is_missing(value) else f"{float(value):g}"
