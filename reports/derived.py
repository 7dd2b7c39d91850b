"""Tables derived from the seed means: teacher quality retained, gain over `ft`, and the
significance tests written out in full.

Derived numbers are computed from the same means the results tables show (so each can be
checked by hand against them); the teacher's score is the mean over its rows for the task.
"""
from __future__ import annotations

import math

import pandas as pd

from reports.frame import TEACHER, is_student, ok_rows, reference_labels
from reports.headline import metric_name
from reports.significance import NOT_COVERED
from reports.stats import gain, lower_is_better, retained
from reports.tables import MISSING, DisplayTable, best_mask, metric_stats, ratio_label

GAIN_BASELINE = "ft"


def retention_display(frame: pd.DataFrame, task: str, metric: str) -> DisplayTable | None:
    """Student × ratio: 100 × fraction of the teacher's score kept; None without a teacher."""
    stats = metric_stats(frame, task, metric)
    rows = ok_rows(frame)
    rows = rows[rows["task"] == task]
    teacher_labels = set(rows.loc[rows["role"] == TEACHER, "label"])
    teacher = stats.loc[stats["method"].isin(teacher_labels), "mean"]
    students = stats[~stats["method"].isin(reference_labels(rows))]
    if teacher.empty or students.empty or len(teacher_labels) > 1:
        return None  # several teachers (specs told apart): retention of which is ambiguous
    teacher_score = float(teacher.mean())
    values = students.assign(
        value=[retained(m, teacher_score, metric) for m in students["mean"]])
    pivot = _pivot(values)
    how = "teacher / student" if lower_is_better(metric) else "student / teacher"
    note = (f"100 × {how} test {metric_name(metric)} (seed means; teacher "
            f"{teacher_score:.2f}). 100% = as good as the teacher. Bold: best per column.")
    return DisplayTable(f"{task}: teacher quality retained (%)",
                        pivot.map(lambda v: MISSING if _nan(v) else f"{100 * v:.1f}%"),
                        _bold(pivot), note)


def gain_display(frame: pd.DataFrame, task: str, metric: str) -> DisplayTable | None:
    """Student × ratio: seed mean minus `ft`'s at the same ratio (and student init)."""
    rows = ok_rows(frame)
    rows = rows[(rows["task"] == task) & is_student(rows)]
    identity = rows.drop_duplicates("label").set_index("label")
    stats = metric_stats(frame, task, metric)
    stats = stats[stats["method"].isin(identity.index)]
    stats = stats.assign(
        base_method=stats["method"].map(identity["method"]),
        init=stats["method"].map(identity["student_init"]),
    )
    base = stats[stats["base_method"] == GAIN_BASELINE]
    if base.empty:
        return None
    base_mean = {(init, r): m for init, r, m in zip(base["init"], base["ratio"], base["mean"])}
    others = stats[stats["base_method"] != GAIN_BASELINE]
    if others.empty:
        return None
    values = others.assign(value=[
        gain(m, base_mean[(i, r)], metric) if (i, r) in base_mean else math.nan
        for i, r, m in zip(others["init"], others["ratio"], others["mean"])
    ])
    pivot = _pivot(values)
    note = (f"Seed mean minus {GAIN_BASELINE}'s seed mean at the same ratio, in "
            f"{metric_name(metric)} points" + (" (sign flipped: lower is better, so positive "
                                                "= better)" if lower_is_better(metric) else "")
            + ". Positive = better than fine-tuning. Bold: best per column.")
    return DisplayTable(f"{task}: gain over {GAIN_BASELINE} ({metric_name(metric)} points)",
                        pivot.map(lambda v: MISSING if _nan(v) else f"{v:+.2f}"),
                        _bold(pivot), note)


def significance_display(sig_table: pd.DataFrame, task: str, withheld: str | None = None
                         ) -> DisplayTable | None:
    """Every comparison of one task: Δ, its bootstrap interval, p and what it covers."""
    rows = sig_table[sig_table["task"] == task]
    if rows.empty:
        return None
    rows = rows.sort_values(["baseline_method", "ratio", "label"])
    metric = str(rows["metric"].iloc[0])
    data = pd.DataFrame({
        "ratio": rows["ratio"].map(ratio_label),
        "method": rows["label"],
        "vs": rows["baseline"],
        "score": rows["score"].map(lambda v: f"{v:.2f}"),
        "baseline score": rows["baseline_score"].map(lambda v: f"{v:.2f}"),
        "Δ": rows["delta"].map(lambda v: f"{v:+.2f}"),
        "95% CI of Δ": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in
                        zip(rows["delta_low"], rows["delta_high"])],
        "p": rows["p_value"].map(lambda p: f"{p:.3f}"),
        "significant": [_verdict(r) for r in rows.to_dict("records")],
        "seeds": [f"{a} vs {b}" for a, b in zip(rows["seeds"], rows["baseline_seeds"])],
        "test examples": rows["n_examples"].map(str),
    }).reset_index(drop=True)
    note = (f"Two-level paired bootstrap (up to {int(rows['resamples'].max()):,} resamples, "
            f"seed {int(rows['bootstrap_seed'].iloc[0])}): each resample draws the "
            f"{int(rows['n_examples'].iloc[0])} test examples with replacement (one draw for "
            f"every seed of both systems) and each system's seeds with replacement "
            f"(independently per system); a system's score is the mean over its drawn seeds of "
            f"test {metric_name(metric)} recomputed from the stored outputs. Δ = method − "
            f"baseline; two-sided p; significant when p < 0.05. With one seed on a side only "
            f"the test examples are resampled: such a result says nothing about another "
            f"training run.")
    if withheld:
        note += f" Not meaningful for this task: {withheld}"
    return DisplayTable(f"{task}: paired bootstrap against ft and seq_kd", data, None, note,
                        index=False)


def _verdict(row: dict) -> str:
    if not row["significant"]:
        return "no"
    return "yes" if row["training_variance"] else f"yes ({NOT_COVERED})"


def _pivot(values: pd.DataFrame) -> pd.DataFrame:
    pivot = values.pivot(index="method", columns="ratio", values="value")
    pivot = pivot.reindex(index=sorted(pivot.index), columns=sorted(pivot.columns))
    pivot.columns = [ratio_label(r) for r in pivot.columns]
    pivot.index.name = "method"
    return pivot


def _bold(pivot: pd.DataFrame) -> pd.DataFrame:
    # Retention and gain are both "bigger is better" whatever the metric's direction.
    return best_mask(pivot, "bleu")


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
