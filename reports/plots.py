"""The headline figures: quality vs. compression ratio, and quality per method as bars.

They answer the benchmark's question at a glance: how much test quality each distillation
method keeps as the student shrinks, relative to the teacher (dashed line). Bands and error
bars are the tables' 95% t-intervals over seeds (`stats.ci_bounds`), not seaborn's own
bootstrap, so a figure never disagrees with a table. Everything is drawn on an explicit Agg
canvas, so it never needs a display nor touches pyplot's global state; the helpers here are
shared by the other figure modules.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from reports.frame import TEACHER
from reports.headline import axis_label
from reports.stats import ci_bounds

PLOT_FILE = "quality_vs_ratio.png"
BARS_FILE = "quality_by_method.png"
X_LABEL = "compression ratio (teacher params / student params, log scale)"
MAX_COLUMNS = 3
DPI = 110


def palette(labels: Sequence[str]) -> dict[str, tuple]:
    """One stable, distinguishable colour per label (colour-blind safe up to 10)."""
    labels = sorted(set(labels))
    colors = sns.color_palette("colorblind" if len(labels) <= 10 else "husl", max(len(labels), 1))
    return dict(zip(labels, colors))


def figure_grid(n_panels: int, width: float = 5.0, height: float = 4.0):
    """A constrained-layout figure with `n_panels` axes (wrapped at MAX_COLUMNS)."""
    ncols = min(max(n_panels, 1), MAX_COLUMNS)
    nrows = math.ceil(max(n_panels, 1) / ncols)
    fig = Figure(figsize=(width * ncols + 2.2, height * nrows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def ratio_axis(ax, ratios: Sequence[float]) -> None:
    """Log-2 x axis with a tick at every ratio of the grid."""
    ax.set_xscale("log", base=2)
    ratios = sorted(set(ratios))
    if ratios:
        ax.xaxis.set_major_locator(FixedLocator(ratios))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.set_xlim(min(ratios) / 2**0.3, max(ratios) * 2**0.3)
    ax.set_xlabel(X_LABEL)


def several_seeds(quality: pd.DataFrame) -> bool:
    students = quality[quality["role"] != TEACHER]
    return bool((students.groupby(["task", "label", "ratio"]).size() > 1).any())


def quality_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    """Quality vs. ratio per task (`quality`: `headline.quality_frame`); None, and no stale
    file, when there is nothing to plot."""
    data = quality[quality["ratio"].notna() & (quality["ratio"] > 0)]
    tasks = sorted(data["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    students = data[data["role"] != TEACHER]
    colors = palette(students["label"])
    seeds = several_seeds(data)
    fig, axes = figure_grid(len(tasks))
    for ax, task in zip(axes, tasks):
        panel = data[data["task"] == task]
        part = panel[panel["role"] != TEACHER]
        if not part.empty:
            sns.lineplot(
                data=part, x="ratio", y="value", hue="label",
                hue_order=[m for m in colors if m in set(part["label"])], palette=colors,
                marker="o", markersize=7, estimator="mean",
                errorbar=ci_bounds if seeds else None, err_style="band", ax=ax, legend=False,
            )
        teacher = panel.loc[panel["role"] == TEACHER, "value"]
        if not teacher.empty:
            ax.axhline(teacher.mean(), color="0.3", linestyle="--", linewidth=1.2)
        ratios = list(part["ratio"]) + ([1.0] if not teacher.empty else [])
        ratio_axis(ax, ratios)
        ax.set_title(task)
        ax.set_ylabel(axis_label(str(panel["metric"].iloc[0])))
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in colors.items()]
    handles.append(Line2D([], [], color="0.3", linestyle="--", label=TEACHER))
    fig.legend(handles=handles, loc="outside right center", title="method", frameon=False)
    band = "\nmean over seeds; band: 95% t-interval" if seeds else ""
    fig.suptitle(f"Test quality vs. compression ratio{band}", fontweight="bold")
    return save(fig, path)


def bars_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    """Per task, one bar per method and ratio (mean over seeds, 95% t-interval whiskers)."""
    students = quality[(quality["role"] != TEACHER) & quality["ratio"].notna()]
    tasks = sorted(students["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    ratios = sorted(students["ratio"].unique())
    ratio_names = [f"×{r:g}" for r in ratios]
    ratio_colors = dict(zip(ratio_names, sns.color_palette("crest", len(ratios))))
    seeds = several_seeds(quality)
    n_methods = students.groupby("task")["label"].nunique().max()
    fig, axes = figure_grid(len(tasks), width=max(5.0, 0.55 * n_methods * max(len(ratios), 1)))
    for ax, task in zip(axes, tasks):
        part = students[students["task"] == task]
        part = part.assign(ratio_name=part["ratio"].map(lambda r: f"×{r:g}"))
        sns.barplot(
            data=part, x="label", y="value", hue="ratio_name",
            order=sorted(part["label"].unique()),
            hue_order=[r for r in ratio_names if r in set(part["ratio_name"])],
            palette=ratio_colors, estimator="mean", errorbar=ci_bounds if seeds else None,
            capsize=0.15, err_kws={"linewidth": 1.0}, ax=ax, legend=False,
        )
        teacher = quality.loc[(quality["task"] == task) & (quality["role"] == TEACHER), "value"]
        if not teacher.empty:
            ax.axhline(teacher.mean(), color="0.3", linestyle="--", linewidth=1.2)
        ax.set_title(task)
        ax.set_xlabel("method")
        ax.set_ylabel(axis_label(str(part["metric"].iloc[0])))
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], color=c, linewidth=8, label=r) for r, c in ratio_colors.items()]
    handles.append(Line2D([], [], color="0.3", linestyle="--", label=TEACHER))
    fig.legend(handles=handles, loc="outside right center", title="compression ratio",
               frameon=False)
    whiskers = "\nmean over seeds; whiskers: 95% t-interval" if seeds else ""
    fig.suptitle(f"Test quality per method{whiskers}", fontweight="bold")
    return save(fig, path)
