"""Learning curves: the dev metrics the training loop logged (`metrics["train"]["curve"]`).

They show whether a student had converged within its budget and whether a method's gain is
a head start or lasts; a run whose rows carry no curve simply has no such figure. Points are
averaged over seeds at each logged step.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.results import read_rows
from reports.frame import TEACHER
from reports.headline import axis_label
from reports.plots import MAX_COLUMNS, palette, save

CURVES_FILE = "learning_curves.png"
CURVE_METRICS = ("dev_bleu", "dev_loss")  # plotted when present; else the training loss
COLUMNS = ["task", "label", "ratio", "seed", "run_id", "step", "loss", "dev_loss", "dev_bleu"]


def curves_frame(run_dirs: list[Path], frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame (COLUMNS) of every logged point of the frame's successful student rows."""
    keep = frame[(frame["status"] == "ok") & (frame["role"] != TEACHER)]
    labels = {(r, k): (lab, ratio, seed) for r, k, lab, ratio, seed in zip(
        keep["run_id"], keep["trial_key"], keep["label"], keep["ratio"], keep["seed"])}
    tasks = dict(zip(zip(keep["run_id"], keep["trial_key"]), keep["task"]))
    run_ids = dict(zip(keep["run_dir"], keep["run_id"]))
    records = []
    for run_dir in run_dirs:
        for row in read_rows(run_dir):
            run_id = row.get("run_id") or run_ids.get(str(run_dir))
            key = (run_id, row.get("trial_key"))
            if key not in labels or row.get("status") != "ok":
                continue
            train = (row.get("metrics") or {}).get("train") or {}
            curve = train.get("curve") if isinstance(train, dict) else None
            for point in curve if isinstance(curve, list) else []:
                if not isinstance(point, dict) or point.get("step") is None:
                    continue
                label, ratio, seed = labels[key]
                records.append({
                    "task": tasks[key], "label": label, "ratio": ratio, "seed": seed,
                    "run_id": run_id, "step": point.get("step"), "loss": point.get("loss"),
                    "dev_loss": point.get("dev_loss"), "dev_bleu": point.get("dev_bleu"),
                })
    curves = pd.DataFrame.from_records(records, columns=COLUMNS)
    for col in ("step", "loss", "dev_loss", "dev_bleu", "ratio"):
        curves[col] = pd.to_numeric(curves[col], errors="coerce").astype("float64")
    return curves


def curves_plot(curves: pd.DataFrame, path: Path | str) -> Path | None:
    """One row of panels per curve metric, one column per (task, ratio); None when empty."""
    metrics = [m for m in CURVE_METRICS if curves[m].notna().any()]
    if not metrics and curves["loss"].notna().any():
        metrics = ["loss"]
    if not metrics:
        Path(path).unlink(missing_ok=True)
        return None
    combos = sorted({(t, r) for t, r in zip(curves["task"], curves["ratio"])})
    colors = palette(curves["label"])
    # Each curve metric starts a new row of panels, wrapped at MAX_COLUMNS per row.
    ncols = min(len(combos), MAX_COLUMNS)
    rows_per_metric = math.ceil(len(combos) / ncols)
    fig = Figure(figsize=(4.8 * ncols + 2.4, 3.6 * rows_per_metric * len(metrics) + 0.8),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows_per_metric * len(metrics), ncols, squeeze=False)
    for m, metric in enumerate(metrics):
        for k in range(rows_per_metric * ncols):
            ax = axes[m * rows_per_metric + k // ncols][k % ncols]
            if k >= len(combos):
                ax.set_visible(False)
                continue
            task, ratio = combos[k]
            part = curves[(curves["task"] == task) & (curves["ratio"] == ratio)
                          & curves[metric].notna()]
            if not part.empty:
                sns.lineplot(data=part, x="step", y=metric, hue="label",
                             hue_order=[m for m in colors if m in set(part["label"])],
                             palette=colors, estimator="mean", errorbar=None, marker=".",
                             ax=ax, legend=False)
            ax.set_title(f"{task}, ratio ×{ratio:g}" if not math.isnan(ratio) else task)
            ax.set_xlabel("training step")
            ax.set_ylabel(axis_label(metric, prefix=""))
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, label=m) for m, c in colors.items()]
    fig.legend(handles=handles, loc="outside right center", title="method", frameon=False)
    fig.suptitle("Learning curves (mean over seeds)", fontweight="bold")
    return save(fig, path)
