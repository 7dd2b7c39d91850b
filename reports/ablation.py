"""The pseudo-target ablation: how many teacher PTs per input, and beam search vs. sampling.

The compared methods are the plain sequence-level ones — teacher PTs only, cross-entropy only
(`seq_kd`, `seq_kd_multi`, `sampling_pts`, or your own, e.g. 48 sampled PTs) — whose rows
record their PT set (`pt_strategy`, `pt_k`); every other setting of these methods is the
same, so their differences isolate the PT count and strategy. Shown for a task when at least
two such methods ran on it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from reports.frame import TEACHER
from reports.headline import axis_label, metric_name
from reports.plots import figure_grid, save, several_seeds
from reports.stats import ci_bounds
from reports.tables import (
    MISSING,
    DisplayTable,
    best_mask,
    metric_pivot,
    results_display,
)

ABLATION_FILE = "pt_ablation.png"


def pt_sets(frame: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """Method label → (PT strategy in words, PTs per input), for the student rows that record
    a PT set."""
    rows = frame[(frame["role"] != TEACHER) & frame["pt_k"].notna()]
    out = {}
    for label, strategy, k in zip(rows["label"], rows["pt_strategy"], rows["pt_k"]):
        k = int(k)
        out[label] = (f"beam search (top-{k})" if strategy == "beam" else "sampling", k)
    return out


def ablation_tasks(quality: pd.DataFrame) -> list[str]:
    """Tasks on which at least two plain sequence-level methods (different PT sets) have results."""
    students = quality[(quality["role"] != TEACHER) & quality["pt_k"].notna()]
    counts = students.groupby("task")["label"].nunique()
    return sorted(counts[counts >= 2].index)


def ablation_display(frame: pd.DataFrame, task: str, metric: str, significance=None
                     ) -> DisplayTable | None:
    """The results table restricted to the PT methods, with their PT set spelled out."""
    full = results_display(frame, task, metric, significance)
    sets = pt_sets(frame[frame["task"] == task])
    rows = [label for label in full.data.index if label in sets]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda label: (sets[label][1], label))
    data = full.data.loc[rows]
    empty = [c for c in data.columns if (data[c] == MISSING).all()]  # e.g. the teacher's ×1
    data = data.drop(columns=empty)
    data.insert(0, "PTs per input", [str(sets[r][1]) for r in rows])
    data.insert(0, "PT strategy", [sets[r][0] for r in rows])
    # Bold here marks the best of the PT methods, not of all methods.
    bold = best_mask(metric_pivot(frame, task, metric, "mean").loc[rows], metric)
    bold.columns = full.data.columns
    bold = bold.drop(columns=empty)
    bold.insert(0, "PTs per input", False)
    bold.insert(0, "PT strategy", False)
    note = (f"Test {metric_name(metric)}, mean ± 95% t-interval over seeds; bold: best PT "
            f"set per column; ‡: significantly different from seq_kd (two-level paired "
            f"bootstrap over seeds and test examples, p < 0.05). All other settings of these "
            f"methods are identical.")
    return DisplayTable(f"{task}: pseudo-target count and strategy", data, bold, note)


def ablation_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    tasks = ablation_tasks(quality)
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    data = quality[(quality["role"] != TEACHER) & quality["pt_k"].notna()]
    sets = pt_sets(data)
    set_names = {label: f"{label}\n{k} × {strategy.split(' (')[0]}" for label, (strategy, k) in sets.items()}
    data = data.assign(pt_set=data["label"].map(set_names))
    order = [set_names[label] for label in sorted(sets, key=lambda lab: (sets[lab][1], lab))]
    ratios = sorted(data["ratio"].unique())
    names = [f"×{r:g}" for r in ratios]
    colors = dict(zip(names, sns.color_palette("crest", len(ratios))))
    seeds = several_seeds(quality)
    fig, axes = figure_grid(len(tasks), width=4.5)
    for ax, task in zip(axes, tasks):
        part = data[data["task"] == task]
        part = part.assign(ratio_name=part["ratio"].map(lambda r: f"×{r:g}"))
        sns.barplot(data=part, x="pt_set", y="value", hue="ratio_name",
                    order=[o for o in order if o in set(part["pt_set"])],
                    hue_order=[n for n in names if n in set(part["ratio_name"])],
                    palette=colors, errorbar=ci_bounds if seeds else None, capsize=0.15,
                    err_kws={"linewidth": 1.0}, ax=ax, legend=False)
        ax.set_title(task)
        ax.set_xlabel("teacher pseudo-targets per input")
        ax.set_ylabel(axis_label(str(part["metric"].iloc[0])))
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], color=c, linewidth=8, label=n) for n, c in colors.items()]
    fig.legend(handles=handles, loc="outside right center", title="compression ratio",
               frameon=False)
    fig.suptitle("Pseudo-target ablation: count and strategy\nmean over seeds", fontweight="bold")
    return save(fig, path)
