"""The report's tables, built from the tidy frame; renderers only lay them out.

`metric_stats`/`metric_pivot` give the numbers (method × ratio: mean, std, n and the 95%
t-interval over seeds, teacher row first) for analysis and tests. The display functions give
strings ("31.00 ± 12.71 †", "—" for missing) plus a mask of the cells to set in bold, wrapped
in a `DisplayTable`, so Markdown, HTML and LaTeX show exactly the same text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.frame import BASELINE, TEACHER, method_label, ok_rows, reference_labels
from reports.headline import (  # noqa: F401  (re-exported: older callers import them here)
    HEADLINE,
    METRIC_NAMES,
    metric_name,
    task_names,
)
from reports.stats import lower_is_better, summarize

MISSING = "—"
NO_CI = "n/a"  # a one-seed cell: the interval is undefined, not zero
FLAT_ROWS_LIMIT = 500  # beyond this the per-trial listing is results.csv, not a page table


@dataclass
class DisplayTable:
    """A table of display strings; `bold` (same shape) marks each column's best cell."""

    title: str
    data: pd.DataFrame
    bold: pd.DataFrame | None = None
    note: str | None = None
    index: bool = True  # whether the index (e.g. "method") is shown as the first column
    css: str = ""
    latex: bool = True  # part of tables.tex (the long per-trial listing is not)


def metric_stats(frame: pd.DataFrame, task: str, metric: str = HEADLINE) -> pd.DataFrame:
    """Per (method label, ratio) of one task: mean, std (ddof 1), n and the 95% t-interval
    (ci = half-width; low, high) over successful rows with a non-null metric."""
    rows = ok_rows(frame)
    return summarize(metric_values(rows[rows["task"] == task], [metric]), ["method", "ratio"])


def metric_values(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long frame (task, method label, ratio, metric, value) of `rows`' values of `metrics`,
    the input of every seed summary (`summarize` leaves out the missing values)."""
    return pd.DataFrame({"task": rows["task"], "method": method_label(rows), "ratio": rows["ratio"],
                         **{m: rows[m] for m in metrics}}).melt(
        id_vars=["task", "method", "ratio"], value_vars=metrics, var_name="metric")


def metric_pivot(
    frame: pd.DataFrame, task: str, metric: str = HEADLINE, stat: str = "mean"
) -> pd.DataFrame:
    """Method × ratio table of `stat` (mean, std, n, ci, low or high) of `metric` for a task.

    Index: the teacher first (at its ratio 1.0), then the copy-input baseline, then the
    students sorted; columns: ratios ascending.
    """
    return metric_pivots(frame, task, metric, stat)[0]


def metric_pivots(frame: pd.DataFrame, task: str, metric: str, *stats: str) -> list[pd.DataFrame]:
    """`metric_pivot` of each of `stats`, from one computation of the statistics."""
    summary = metric_stats(frame, task, metric)
    if summary.empty:
        return [pd.DataFrame() for _ in stats]
    roles = _roles(frame)
    rank = {TEACHER: 0, BASELINE: 1}
    tables = []
    for stat in stats:
        table = summary.pivot(index="method", columns="ratio", values=stat)
        order = sorted(table.index, key=lambda m: (rank.get(roles.get(m), 2), str(m)))
        table = table.reindex(index=order, columns=sorted(table.columns))
        table.index.name, table.columns.name = "method", "ratio"
        tables.append(table)
    return tables


def best_mask(mean: pd.DataFrame, metric: str, exclude=(TEACHER,)) -> pd.DataFrame:
    """True at each ratio column's best student mean (ties all marked; the rows in
    `exclude` — the teacher, the copy-input baseline — never)."""
    mask = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    students = mean.drop(index=list(exclude), errors="ignore")
    for col in mean.columns:
        values = students[col].dropna()
        if values.empty:
            continue
        best = values.min() if lower_is_better(metric) else values.max()
        mask.loc[values.index[values == best], col] = True
    return mask


def results_display(
    frame: pd.DataFrame, task: str, metric: str = HEADLINE, significance=None
) -> DisplayTable:
    """Method × ratio cells "mean ± 95% CI" with significance markers; best per column bold."""
    mean, ci, n = metric_pivots(frame, task, metric, "mean", "ci", "n")
    name = metric_name(metric)
    title = f"{task}: test {name} by method and compression ratio"
    if mean.empty:
        return DisplayTable(title, pd.DataFrame())
    references = reference_labels(frame[frame["task"] == task]) | {TEACHER}
    students = n.drop(index=list(references), errors="ignore")
    full_n = int(students.max().max()) if students.notna().any().any() else 1
    cells = {}
    for ratio in mean.columns:
        column = []
        for label in mean.index:
            text = mean_ci(mean.at[label, ratio], ci.at[label, ratio], n.at[label, ratio])
            if text != MISSING and label not in references:
                count = n.at[label, ratio]
                if not _is_missing(count) and int(count) < full_n:
                    text += f" (n={int(count)})"
                if significance is not None:
                    text += significance.markers(task, label, ratio)
            column.append(text)
        cells[ratio_label(ratio)] = column
    data = pd.DataFrame(cells, index=pd.Index(mean.index, name="method"))
    bold = best_mask(mean, metric, references)
    bold.columns = data.columns
    direction = "lower" if lower_is_better(metric) else "higher"
    note = (f"Mean ± 95% t-interval over seeds (n = {full_n} unless marked; "
            f"\"± {NO_CI}\": one seed, interval undefined). Bold: best student mean per "
            f"column ({direction} is better). † / ‡: significantly different from ft / "
            f"seq_kd at the same ratio (two-level paired bootstrap over seeds and test "
            f"examples, p < 0.05, two or more seeds on both sides); in brackets with \"1 "
            f"seed\": significant over test examples only, training variance not covered, "
            f"so not a finding.")
    if (ok_rows(frame).loc[lambda f: f["task"] == task, "role"] == BASELINE).any():
        note += (" copy_input (baseline): every test input copied as the output, shown at ×1 "
                 "with the teacher (neither is a compressed student).")
    withheld = significance.withheld.get(task) if significance is not None else None
    if withheld:
        note += f" No markers for this task: {withheld}"
    return DisplayTable(title, data, bold, note)


def results_table(
    frame: pd.DataFrame, task: str, metric: str = HEADLINE, significance=None
) -> pd.DataFrame:
    """The display strings of `results_display` (columns "×ratio", index "method")."""
    return results_display(frame, task, metric, significance).data


def flat_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every successful row, teacher (then the copy-input baseline) first per task, as display
    strings. Optional metrics appear as columns only when some row has them."""
    rows = ok_rows(frame).assign(_label=lambda f: method_label(f))
    rows = rows.assign(_rank=rows["role"].map({TEACHER: 0, BASELINE: 1}).fillna(2))
    rows = rows.sort_values(["task", "_rank", "_label", "ratio", "seed", "run_id"])
    columns: dict[str, pd.Series] = {
        "task": rows["task"].map(_text),
        "method": rows["_label"].map(_text),
        "ratio": rows["ratio"].map(_ratio_text),
        "realized ratio": rows["realized_ratio"].map(lambda v: _num(v, 2)),
        "seed": rows["seed"].map(_text),
        "BLEU": rows["bleu"].map(lambda v: _num(v, 2)),
        "chrF": rows["chrf"].map(lambda v: _num(v, 2)),
    }
    for col, title, digits in OPTIONAL_FLAT[:5]:
        if rows[col].notna().any():
            columns[title] = rows[col].map(lambda v, d=digits: _num(v, d))
    columns["params"] = rows["params"].map(_thousands)
    columns["latency ms"] = rows["latency_ms"].map(lambda v: _num(v, 1))
    for col, title, digits in OPTIONAL_FLAT[5:]:
        if rows[col].notna().any():
            fmt = _thousands if digits is None else (lambda v, d=digits: _num(v, d))
            columns[title] = rows[col].map(fmt)
    table = pd.DataFrame(columns)
    if frame["run_id"].nunique() > 1:
        table.insert(0, "run", rows["run_id"].map(_text))
    return table.reset_index(drop=True)


# (frame column, display title, decimals or None for a thousands-separated integer)
OPTIONAL_FLAT = [
    ("ter", "TER", 2), ("rouge1", "ROUGE-1", 2), ("rouge2", "ROUGE-2", 2),
    ("rougeL", "ROUGE-L", 2), ("dev_loss", "dev loss", 3),
    ("latency_beam_ms", "beam latency ms", 1), ("throughput_eps", "examples/s", 1),
    ("peak_mem_mb", "peak mem MB", 0), ("train_steps", "train steps", None),
    ("teacher_forwards", "teacher forwards", None),
    ("student_generated_tokens", "student-generated tokens", None),
    ("train_seconds", "train s", 0),
]


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
    if frame["run_id"].nunique() > 1:
        table.insert(0, "run", rows["run_id"].map(_text))
    return table.reset_index(drop=True)


def ratio_label(ratio: Any) -> str:
    """Column header for a compression ratio: 2.0 → "×2", 1.5 → "×1.5"."""
    return MISSING if _is_missing(ratio) else f"×{float(ratio):g}"


def mean_ci(mean: Any, ci: Any, n: Any) -> str:
    """"31.00 ± 12.71"; "19.00 ± n/a" for one seed; "—" when there is no value."""
    if _is_missing(mean):
        return MISSING
    if _is_missing(ci):
        return f"{mean:.2f} ± {NO_CI}" if not _is_missing(n) and int(n) == 1 else f"{mean:.2f}"
    return f"{mean:.2f} ± {ci:.2f}"


def _roles(frame: pd.DataFrame) -> dict[str, str]:
    labels = method_label(frame)
    return dict(zip(labels, frame["role"]))


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


SUMMARY_METRICS = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "dev_loss", "latency_ms",
                   "latency_beam_ms", "throughput_eps", "params")


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Every task × method × ratio × metric with mean, std, n and the 95% t-interval over seeds:
    the numbers behind every table, as one flat file (`summary.csv`), all groups at once."""
    columns = ["task", "metric", "method", "ratio", "mean", "std", "n", "ci", "low", "high"]
    rows = ok_rows(frame)
    rows = rows[rows["task"].notna()]
    metrics = [m for m in SUMMARY_METRICS if m in frame.columns]
    if rows.empty or not metrics:
        return pd.DataFrame(columns=columns)
    stats = summarize(metric_values(rows, metrics), ["task", "metric", "method", "ratio"])
    if stats.empty:
        return pd.DataFrame(columns=columns)
    order = stats["metric"].map({m: i for i, m in enumerate(SUMMARY_METRICS)})
    stats = stats.assign(_order=order).sort_values(["task", "_order", "method", "ratio"], kind="stable")
    return stats[columns].reset_index(drop=True)
