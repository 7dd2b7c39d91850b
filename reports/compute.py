"""Quality at equal training compute: what each method buys with its FLOPs.

Methods differ in what they spend: word-level KD runs the teacher forward every step,
Joint-Teaching generates student outputs, sequence-level KD needs the teacher's pseudo-targets
for every unlabeled input. Rows record the training compute of a trial in FLOPs
(`metrics.compute`: student forward/backward, teacher forward, student and teacher generation,
`total`; the teacher's PT generation counted in full for every trial, although the grid shares
it; the teacher's own training is not part of a student's total). Per (method, ratio) this
view gives the seed means of total FLOPs and of the headline, the compute relative to `ft` at
the same ratio, where the FLOPs go, and whether the configuration is on the compute–quality
Pareto front (no other one of the task reaches at least its quality with at most its FLOPs).

Quality per FLOP is deliberately not shown: quality does not grow linearly with compute, so
that ratio favours the cheapest method whatever it reaches. Rows of older runs carry no
compute; they are left out and counted in the section's note.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator

from reports.frame import COMPUTE_COLUMNS, TEACHER, is_student, ok_rows
from reports.headline import axis_label, metric_name
from reports.pareto import pareto_mask
from reports.plots import figure_grid, palette, save
from reports.stats import lower_is_better, summarize
from reports.tables import MISSING, DisplayTable, mean_ci, ratio_label

COMPUTE_FILE = "quality_vs_compute.png"
GAIN_BASELINE = "ft"
PARTS = {  # share of the total shown in the table, in this order
    "student": ("flops_student_forward", "flops_student_backward"),
    "teacher fwd": ("flops_teacher_forward",),
    "student gen": ("flops_student_generation",),
    "teacher PTs": ("flops_teacher_generation",),
}
POINT_COLUMNS = ["task", "label", "method", "init", "role", "ratio", "metric", "flops", "value",
                 "ci", "seeds", "pareto", "breakdown"]


def compute_points(frame: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Per (task, label, ratio) with a recorded compute: seed means of FLOPs and quality."""
    rows = ok_rows(frame)
    rows = rows[rows["task"].isin(list(metrics)) & rows["flops_total"].notna()
                & (rows["flops_total"] > 0)]
    parts = []
    for task, part in rows.groupby("task", sort=True):
        metric = metrics[task]
        if metric not in part.columns or part[metric].isna().all():
            continue
        parts.append(_task_points(part[part[metric].notna()], task, metric))
    if not parts:
        return pd.DataFrame(columns=POINT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[POINT_COLUMNS]


def _task_points(rows: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    keys = ["label", "ratio"]
    quality = summarize(rows.assign(value=rows[metric]), keys)
    flops = rows.groupby(keys)[list(COMPUTE_COLUMNS.values())].mean()
    first = rows.drop_duplicates(keys).set_index(keys)
    points = quality.set_index(keys).join(flops).join(first[["method", "student_init", "role"]])
    points = points.reset_index()
    better = -points["mean"] if lower_is_better(metric) else points["mean"]
    pareto = pareto_mask(points["flops_total"].to_numpy(), better.to_numpy())
    breakdown = [_breakdown(p) for p in points.to_dict("records")]
    return pd.DataFrame({
        "task": task, "label": points["label"], "method": points["method"],
        "init": points["student_init"], "role": points["role"], "ratio": points["ratio"],
        "metric": metric, "flops": points["flops_total"], "value": points["mean"],
        "ci": points["ci"], "seeds": points["n"], "pareto": pareto, "breakdown": breakdown,
    })


def _breakdown(point: dict) -> str:
    total = point["flops_total"]
    shares = []
    for name, cols in PARTS.items():
        values = [point.get(c) for c in cols]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        share = sum(0.0 if v is None or math.isnan(v) else v for v in values) / total
        if share >= 0.005:
            shares.append(f"{name} {100 * share:.0f}%")
    return " · ".join(shares) or MISSING


def missing_compute_note(frame: pd.DataFrame, task: str) -> str | None:
    """Why some of a task's trials are not in this view, or None when all are."""
    rows = ok_rows(frame)
    rows = rows[(rows["task"] == task) & (is_student(rows) | (rows["role"] == TEACHER))]
    lacking = int(rows["flops_total"].isna().sum())
    if not lacking:
        return None
    return (f"{task}: {lacking} of {len(rows)} successful trial(s) record no training compute "
            f"(metrics.compute; rows of older runs) and are left out of this view.")


def compute_display(points: pd.DataFrame, task: str) -> DisplayTable | None:
    part = points[points["task"] == task].sort_values(["ratio", "flops"])
    if part.empty:
        return None
    metric = str(part["metric"].iloc[0])
    base = {(p["init"], p["ratio"]): p["flops"] for p in part.to_dict("records")
            if p["method"] == GAIN_BASELINE and p["role"] != TEACHER}
    relative = [
        f"×{p['flops'] / base[(p['init'], p['ratio'])]:.2f}"
        if (p["init"], p["ratio"]) in base and p["role"] != TEACHER else MISSING
        for p in part.to_dict("records")]
    data = pd.DataFrame({
        "method": part["label"],
        "ratio": part["ratio"].map(ratio_label),
        "seeds": part["seeds"].map(str),
        "training FLOPs": part["flops"].map(lambda v: f"{v:.2e}"),
        f"vs {GAIN_BASELINE}": relative,
        f"test {metric_name(metric)}": [mean_ci(m, c, n) for m, c, n in
                                        zip(part["value"], part["ci"], part["seeds"])],
        "where the FLOPs go": part["breakdown"],
        "compute-Pareto": part["pareto"].map(lambda v: "yes" if v else ""),
    }).reset_index(drop=True)
    note = (f"Seed means of each trial's total training FLOPs and test {metric_name(metric)} "
            f"(± 95% t-interval over seeds). vs {GAIN_BASELINE}: FLOPs relative to "
            f"{GAIN_BASELINE} at the same ratio. Compute-Pareto: no other configuration of this "
            f"task reaches at least this quality with at most these FLOPs. The teacher row is "
            f"its own training; a student's total counts the teacher's forward passes and its "
            f"pseudo-targets for the inputs the student trains on, not the teacher's "
            f"training. Quality per FLOP is not shown: quality is not linear in compute.")
    return DisplayTable(f"{task}: test {metric_name(metric)} at its training compute", data,
                        None, note, index=False)


def compute_plot(points: pd.DataFrame, path: Path | str) -> Path | None:
    """Per task: headline vs. total training FLOPs (log x), one line per method over its
    ratios, whiskers: 95% t-interval over seeds; star: the teacher."""
    tasks = sorted(points["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    students = points[points["role"] != TEACHER]
    colors = palette(students["label"])
    ratios = sorted(students["ratio"].unique())
    markers = dict(zip(ratios, ["o", "s", "^", "D", "v", "P", "X", "h"] * 4))
    fig, axes = figure_grid(len(tasks))
    for ax, task in zip(axes, tasks):
        part = points[points["task"] == task]
        students = part[part["role"] != TEACHER]
        for label, line in students.groupby("label"):
            line = line.sort_values("flops")
            ax.plot(line["flops"], line["value"], color=colors[label], linewidth=1.2, zorder=2)
        ci = students["ci"].fillna(0.0)  # all whiskers of the panel as one collection
        ax.vlines(students["flops"], students["value"] - ci, students["value"] + ci,
                  colors=[colors[label] for label in students["label"]], linewidth=1.0,
                  zorder=2)
        for ratio, group in students.groupby("ratio"):  # one call per marker, not per point
            ax.scatter(group["flops"], group["value"], s=45, zorder=3, marker=markers[ratio],
                       color=[colors[label] for label in group["label"]], edgecolor="white",
                       linewidth=0.6)
        teacher = part[part["role"] == TEACHER]
        if not teacher.empty:
            ax.scatter(teacher["flops"], teacher["value"], color="black", marker="*", s=110,
                       zorder=4)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.margins(x=0.1, y=0.1)
        ax.set_title(task)
        ax.set_xlabel("training compute (total FLOPs, log scale)")
        ax.set_ylabel(axis_label(str(part["metric"].iloc[0])))
        ax.grid(True, alpha=0.3, which="both")
    handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in colors.items()]
    handles += [Line2D([], [], color="0.4", marker=mk, linestyle="", label=f"×{r:g}")
                for r, mk in markers.items()]
    handles.append(Line2D([], [], color="black", marker="*", linestyle="", markersize=10,
                          label=TEACHER))
    fig.legend(handles=handles, loc="outside right center", title="method / ratio",
               frameon=False)
    fig.suptitle("Test quality vs. training compute\nseed means; whiskers: 95% t-interval",
                 fontweight="bold")
    return save(fig, path)

