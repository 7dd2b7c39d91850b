"""The headline figure: quality vs. compression, one line per method, one panel per task.

It answers the benchmark's question at a glance: how much test quality does each
distillation method keep as the student shrinks, relative to the teacher (dashed line).
Drawn on an explicit Agg canvas, so it never needs a display nor touches pyplot's state.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from reports.frame import TEACHER, method_label, ok_rows
from reports.tables import HEADLINE, METRIC_NAMES, task_names

PLOT_FILE = "quality_vs_ratio.png"
X_LABEL = "compression ratio (teacher params / student params)"
MAX_COLUMNS = 3


def quality_plot(
    frame: pd.DataFrame, path: Path | str, metric: str = HEADLINE, dpi: int = 110
) -> Path | None:
    """Save the figure to `path` (PNG); None, and no (stale) file, when nothing to plot."""
    data = ok_rows(frame)
    data = data[data[metric].notna() & data["ratio"].notna() & (data["ratio"] > 0)]
    data = data.assign(label=method_label(data))
    tasks = task_names(data)
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    students = data[data["role"] != TEACHER]
    methods = sorted(students["label"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", max(len(methods), 1))))
    several_seeds = bool((students.groupby(["task", "label", "ratio"]).size() > 1).any())

    ncols = min(len(tasks), MAX_COLUMNS)
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(5.0 * ncols + 1.8, 4.0 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        _panel(ax, data[data["task"] == task], task, metric, methods, palette, several_seeds)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)

    handles = [
        Line2D([], [], color=palette[m], marker="o", label=m) for m in methods
    ] + [Line2D([], [], color="0.3", linestyle="--", label=TEACHER)]
    fig.legend(handles=handles, loc="outside right upper", title="method", frameon=False)
    name = METRIC_NAMES.get(metric, metric)
    seeds = " (mean ± sd over seeds)" if several_seeds else ""
    fig.suptitle(f"Test {name} vs. compression ratio{seeds}", fontweight="bold")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _panel(ax, data, task, metric, methods, palette, several_seeds) -> None:
    students = data[data["role"] != TEACHER]
    present = [m for m in methods if m in set(students["label"])]
    if present:
        sns.lineplot(
            data=students, x="ratio", y=metric, hue="label", hue_order=present,
            palette=palette, marker="o", markersize=7, estimator="mean",
            errorbar="sd" if several_seeds else None, err_style="bars",
            err_kws={"capsize": 3}, ax=ax, legend=False,
        )
    teacher = data.loc[data["role"] == TEACHER, metric]
    if not teacher.empty:
        ax.axhline(teacher.mean(), color="0.3", linestyle="--", linewidth=1.2)
    ratios = sorted(set(students["ratio"]) | ({1.0} if not teacher.empty else set()))
    ax.set_xscale("log", base=2)
    if ratios:
        ax.xaxis.set_major_locator(FixedLocator(ratios))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        lo, hi = min(ratios), max(ratios)
        ax.set_xlim(lo / 2**0.3, hi * 2**0.3)
    ax.set_title(task)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(f"test {METRIC_NAMES.get(metric, metric)}")
    ax.grid(True, alpha=0.3)
