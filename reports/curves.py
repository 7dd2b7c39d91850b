"""Learning curves: the dev metrics the training loop logged (`metrics["train"]["curve"]`).

They show whether a student had converged within its budget and whether a method's gain is
a head start or lasts. The teacher's own curve (its row's curve, for a teacher trained in
the run) gets a panel of its own per task, since it trains far longer than a student. A run
whose rows carry no curve simply has no such figure. Points are averaged over seeds at each
logged step. `dev_metric` is the task's headline on the dev subset (older rows: `dev_bleu`).
A large grid gets one student panel per task, at its largest ratio (where methods part most),
instead of one per (task, ratio), and only the first of the curve metrics; every point of
every curve is in `learning_curves.csv`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports.frame import TEACHER
from reports.headline import axis_label, metric_name
from reports.plots import MAX_COLUMNS, palette, save

CURVES_FILE = "learning_curves.png"
CURVES_CSV = "learning_curves.csv"  # every (task, method, ratio, step) seed mean
MAX_STUDENT_PANELS = 6  # beyond this, one panel per task: its largest ratio
CURVE_METRICS = ("dev_metric", "dev_loss")  # plotted when present; else the training loss
COLUMNS = ["task", "label", "role", "ratio", "seed", "run_id", "step", "loss", "dev_loss",
           "dev_metric"]


def curves_frame(rows_by_dir: dict[Any, list[dict[str, Any]]], frame: pd.DataFrame
                 ) -> pd.DataFrame:
    """Long frame (COLUMNS) of every logged point of the frame's successful rows (students
    and teacher), read from the rows already loaded per run dir."""
    keep = frame[frame["status"] == "ok"]
    kept = {(r, k): (task, label, role, ratio, seed) for r, k, task, label, role, ratio, seed
            in zip(keep["run_id"], keep["trial_key"], keep["task"], keep["label"],
                   keep["role"], keep["ratio"], keep["seed"])}
    run_ids = dict(zip(keep["run_dir"], keep["run_id"]))
    records = []
    for run_dir, rows in rows_by_dir.items():
        for row in rows:
            run_id = row.get("run_id") or run_ids.get(str(run_dir))
            ident = kept.get((run_id, row.get("trial_key")))
            if ident is None or row.get("status") != "ok":
                continue
            train = (row.get("metrics") or {}).get("train") or {}
            curve = train.get("curve") if isinstance(train, dict) else None
            for point in curve if isinstance(curve, list) else []:
                if not isinstance(point, dict) or point.get("step") is None:
                    continue
                dev_metric = point.get("dev_metric", point.get("dev_bleu"))
                records.append((*ident, run_id, point.get("step"), point.get("loss"),
                                point.get("dev_loss"), dev_metric))
    curves = pd.DataFrame.from_records(
        records, columns=["task", "label", "role", "ratio", "seed", "run_id", "step", "loss",
                          "dev_loss", "dev_metric"])
    for col in ("step", "loss", "dev_loss", "dev_metric", "ratio"):
        curves[col] = pd.to_numeric(curves[col], errors="coerce").astype("float64")
    return curves[COLUMNS]


def curve_means(curves: pd.DataFrame) -> pd.DataFrame:
    """Seed means per (task, ratio, label, role, step) of the logged metrics."""
    metrics = ["loss", "dev_loss", "dev_metric"]
    return (curves.groupby(["task", "ratio", "label", "role", "step"], dropna=False)[metrics]
            .mean().reset_index())


def panels(means: pd.DataFrame) -> tuple[list[tuple[str, float]], bool]:
    """(task, ratio) panels to draw, teacher panels included, and whether students were cut
    down to each task's largest ratio."""
    students = sorted({(t, r) for t, r, role in zip(means["task"], means["ratio"], means["role"])
                       if role != TEACHER})
    teachers = sorted({(t, r) for t, r, role in zip(means["task"], means["ratio"], means["role"])
                       if role == TEACHER})
    cut = len(students) > MAX_STUDENT_PANELS
    if cut:
        largest: dict[str, float] = {}
        for task, ratio in students:
            largest[task] = max(ratio, largest.get(task, ratio))
        students = sorted(largest.items())
    return sorted(set(students) | set(teachers)), cut


def curves_plot(curves: pd.DataFrame, path: Path | str,
                metrics: dict[str, str] | None = None) -> Path | None:
    """One row of panels per curve metric, one column per (task, ratio) — the teacher's
    panel is (task, ×1) —; None when empty. `metrics` names each task's headline. The seed
    means of every curve are written next to the figure (`CURVES_CSV`)."""
    metrics = metrics or {}
    plotted = [m for m in CURVE_METRICS if curves[m].notna().any()]
    if not plotted and curves["loss"].notna().any():
        plotted = ["loss"]
    if not plotted:
        Path(path).unlink(missing_ok=True)
        return None
    means = curve_means(curves)
    means.to_csv(Path(path).with_name(CURVES_CSV), index=False)
    combos, cut = panels(means)
    if cut:
        plotted = plotted[:1]  # a large grid: the dev headline only (all curves in the CSV)
    colors = palette(means.loc[means["role"] != TEACHER, "label"])
    ncols = min(len(combos), MAX_COLUMNS)
    rows_per_metric = math.ceil(len(combos) / ncols)
    fig = Figure(figsize=(4.8 * ncols + 2.4, 3.6 * rows_per_metric * len(plotted) + 0.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows_per_metric * len(plotted), ncols, squeeze=False)
    for m, metric in enumerate(plotted):
        for k in range(rows_per_metric * ncols):
            ax = axes[m * rows_per_metric + k // ncols][k % ncols]
            if k >= len(combos):
                ax.set_visible(False)
                continue
            task, ratio = combos[k]
            part = means[(means["task"] == task) & (means["ratio"] == ratio)
                         & means[metric].notna()]
            teacher_only = bool(len(part)) and (part["role"] == TEACHER).all()
            for label, line in part.groupby("label"):
                teacher = (line["role"] == TEACHER).all()
                ax.plot(line["step"], line[metric], marker=".",
                        color="black" if teacher else colors.get(label, "0.5"),
                        linestyle="--" if teacher else "-")
            if teacher_only:
                ax.set_title(f"{task}, teacher")
            else:
                ax.set_title(f"{task}, ratio ×{ratio:g}" if not math.isnan(ratio) else task)
            ax.set_xlabel("training step")
            if metric == "dev_metric":
                ax.set_ylabel(f"dev {metric_name(metrics.get(task, 'bleu'))} (dev subset)")
            else:
                ax.set_ylabel(axis_label(metric, prefix=""))
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, label=m) for m, c in colors.items()]
    if (means["role"] == TEACHER).any():
        handles.append(Line2D([], [], color="black", linestyle="--", label=TEACHER))
    fig.legend(handles=handles, loc="outside right center", title="method", frameon=False)
    subtitle = (f"\nstudents at each task's largest ratio; every curve of every metric in "
                f"{CURVES_CSV}" if cut else "")
    fig.suptitle(f"Learning curves (mean over seeds){subtitle}", fontweight="bold")
    return save(fig, path)
