"""The pseudo-target ablation: how many teacher PTs per input, and beam search vs. sampling.

Shown for a task when at least two of the PT methods below ran on it. Their PT sets mirror
`bench/distill/methods.py` (the rows do not store them); every other setting of these
methods is the same, so their differences isolate the PT count and strategy.
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
# method → (PT strategy, PTs per input), as defined in bench/distill/methods.py
PT_SETS = {
    "seq_kd": ("beam search (top-1)", 1),
    "seq_kd_multi": ("beam search (top-4)", 4),
    "sampling_pts": ("sampling", 8),
}


def ablation_tasks(quality: pd.DataFrame) -> list[str]:
    """Tasks on which at least two PT-ablation methods have results."""
    students = quality[quality["role"] != TEACHER]
    counts = students[students["method"].isin(list(PT_SETS))].groupby("task")["method"].nunique()
    return sorted(counts[counts >= 2].index)


def ablation_display(frame: pd.DataFrame, task: str, metric: str, significance=None
                     ) -> DisplayTable | None:
    """The results table restricted to the PT methods, with their PT set spelled out."""
    full = results_display(frame, task, metric, significance)
    labels = frame.loc[(frame["task"] == task) & frame["method"].isin(list(PT_SETS)),
                       ["label", "method"]].drop_duplicates()
    method_of = dict(zip(labels["label"], labels["method"]))
    rows = [label for label in full.data.index if label in method_of]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda label: (PT_SETS[method_of[label]][1], label))
    data = full.data.loc[rows]
    empty = [c for c in data.columns if (data[c] == MISSING).all()]  # e.g. the teacher's ×1
    data = data.drop(columns=empty)
    data.insert(0, "PTs per input", [str(PT_SETS[method_of[r]][1]) for r in rows])
    data.insert(0, "PT strategy", [PT_SETS[method_of[r]][0] for r in rows])
    # Bold here marks the best of the PT methods, not of all methods.
    bold = best_mask(metric_pivot(frame, task, metric, "mean").loc[rows], metric)
    bold.columns = full.data.columns
    bold = bold.drop(columns=empty)
    bold.insert(0, "PTs per input", False)
    bold.insert(0, "PT strategy", False)
    note = (f"Test {metric_name(metric)}, mean ± 95% t-interval over seeds; bold: best PT "
            f"set per column; ‡: significantly different from seq_kd (paired bootstrap, "
            f"p < 0.05). All other settings of these methods are identical.")
    return DisplayTable(f"{task}: pseudo-target count and strategy", data, bold, note)


def ablation_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    tasks = ablation_tasks(quality)
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    data = quality[(quality["role"] != TEACHER) & quality["method"].isin(list(PT_SETS))]
    data = data.assign(pt_set=data["method"].map(
        lambda m: f"{m}\n{PT_SETS[m][1]} × {PT_SETS[m][0].split(' (')[0]}"))
    order = [f"{m}\n{k} × {s.split(' (')[0]}" for m, (s, k) in PT_SETS.items()]
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
