"""Quality vs. latency: which (method, ratio) configurations are worth deploying.

A configuration is Pareto-optimal when no other one of the same task is both at least as
fast and at least as good (and strictly better in one). Points are seed means of the test
score and of greedy batch-1 latency per example; the teacher is a point like any other.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.frame import TEACHER
from reports.headline import axis_label, metric_name
from reports.plots import figure_grid, palette, save
from reports.stats import lower_is_better
from reports.tables import DisplayTable

PARETO_FILE = "quality_vs_latency.png"
LATENCY_LABEL = "latency (ms per example, greedy, batch 1, log scale)"


def latency_points(quality: pd.DataFrame) -> pd.DataFrame:
    """Seed means per (task, label, ratio) of quality and latency, with a `pareto` flag."""
    data = quality[quality["latency_ms"].notna() & (quality["latency_ms"] > 0)]
    if data.empty:
        return pd.DataFrame(columns=["task", "label", "ratio", "metric", "value", "latency_ms",
                                     "seeds", "pareto"])
    points = (
        data.groupby(["task", "label", "ratio", "metric"], as_index=False)
        .agg(value=("value", "mean"), latency_ms=("latency_ms", "mean"),
             seeds=("value", "size"))
    )
    flags = pd.Series(False, index=points.index)
    for _, part in points.groupby("task"):
        better = -part["value"] if lower_is_better(str(part["metric"].iloc[0])) else part["value"]
        flags[part.index] = pareto_mask(part["latency_ms"].to_numpy(), better.to_numpy())
    return points.assign(pareto=flags)


def pareto_mask(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True where no other point has cost ≤ and quality ≥ with one strict inequality."""
    mask = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (quality >= quality[i]) & (
            (cost < cost[i]) | (quality > quality[i]))
        mask[i] = not dominated.any()
    return mask


def pareto_display(points: pd.DataFrame, task: str) -> DisplayTable | None:
    part = points[(points["task"] == task) & points["pareto"]].sort_values("latency_ms")
    if part.empty:
        return None
    metric = str(part["metric"].iloc[0])
    data = pd.DataFrame({
        "method": part["label"],
        "ratio": part["ratio"].map(lambda r: f"×{r:g}"),
        "latency ms": part["latency_ms"].map(lambda v: f"{v:.2f}"),
        f"test {metric_name(metric)}": part["value"].map(lambda v: f"{v:.2f}"),
        "seeds": part["seeds"].map(str),
    }).reset_index(drop=True)
    note = ("Configurations no other one beats on both latency and quality (seed means; "
            "latency: greedy decoding, batch 1, per example), fastest first.")
    return DisplayTable(f"{task}: Pareto-optimal configurations (quality vs. latency)", data,
                        None, note, index=False)


def pareto_plot(points: pd.DataFrame, path: Path | str) -> Path | None:
    tasks = sorted(points["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    colors = palette([m for m in points["label"] if m != TEACHER])
    ratios = sorted(points.loc[points["label"] != TEACHER, "ratio"].unique())
    markers = dict(zip(ratios, ["o", "s", "^", "D", "v", "P", "X", "h"] * 4))
    fig, axes = figure_grid(len(tasks))
    for ax, task in zip(axes, tasks):
        part = points[points["task"] == task]
        teacher = part["label"] == TEACHER
        for ratio, group in part[~teacher].groupby("ratio"):
            ax.scatter(group["latency_ms"], group["value"], s=55, zorder=3,
                       color=[colors[label] for label in group["label"]],
                       marker=markers[ratio], edgecolor="white", linewidth=0.6)
        if teacher.any():
            ax.scatter(part.loc[teacher, "latency_ms"], part.loc[teacher, "value"], s=90,
                       zorder=3, color="black", marker="*", edgecolor="white", linewidth=0.6)
        front = part[part["pareto"]].sort_values("latency_ms")
        ax.step(front["latency_ms"], front["value"], where="post", color="0.25",
                linestyle=":", linewidth=1.4, zorder=2)
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.08)
        # Ticks at 1-2-5 steps labelled "20", not "2 × 10^1": readable at any span.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(task)
        ax.set_xlabel(LATENCY_LABEL)
        ax.set_ylabel(axis_label(str(part["metric"].iloc[0])))
        ax.grid(True, alpha=0.3, which="both")
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=m)
               for m, c in colors.items()]
    handles += [Line2D([], [], color="0.4", marker=mk, linestyle="", label=f"×{r:g}")
                for r, mk in markers.items()]
    handles += [Line2D([], [], color="black", marker="*", linestyle="", markersize=10,
                       label=TEACHER),
                Line2D([], [], color="0.25", linestyle=":", label="Pareto front")]
    fig.legend(handles=handles, loc="outside right center", title="method / ratio",
               frameon=False)
    fig.suptitle("Test quality vs. latency (seed means)", fontweight="bold")
    return save(fig, path)
