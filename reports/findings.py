"""Findings: does each claim of the run's study hold, per task and compression ratio?

A study (`run.json` → `study`) names comparisons "system is better (or worse) than baseline".
For each comparison × task × ratio the verdict comes from the two-level paired bootstrap over
seeds and test examples (`reports.bootstrap`) of the task's headline metric, on the same
cells as the significance tests. The effect is system − baseline with the sign flipped for
lower-is-better metrics, so a positive effect always means "system better". Rules, in order:

1. *inconclusive* when either side has fewer than the study's `min_seeds` seeds (default 3):
   with fewer, the seed draw of the bootstrap is too coarse to speak for another training run;
   also when the task's teacher is no better than copying the input (`reports.teacher_check`).
2. *holds* when p < 0.05 and the effect has the expected sign.
3. *does not hold* when p < 0.05 and the effect has the opposite sign, or when the whole 95%
   interval of the effect lies within ±`NEGLIGIBLE` points: the data then rule out any
   difference worth the name, in either direction.
4. *inconclusive* otherwise: the interval is too wide to tell.

A comparison may instead expect *not worse* (non-inferiority, e.g. a faster design that should
cost no quality): it holds when the whole 95% interval lies above −`NEGLIGIBLE`, does not hold
when p < 0.05 with the system worse by more than `NEGLIGIBLE` at the interval's best, and is
inconclusive otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.bootstrap import ALPHA
from reports.headline import metric_name
from reports.significance import Cell, Cells
from reports.stats import lower_is_better
from reports.tables import DisplayTable, ratio_label

NEGLIGIBLE = 0.5  # metric points (0–100 scale): a difference this small changes no conclusion
MIN_SEEDS = 3
HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"
COLUMNS = ["study", "comparison", "task", "ratio", "system", "baseline", "metric", "expect",
           "effect", "low", "high", "p_value", "seeds", "baseline_seeds", "verdict", "reason"]


@dataclass(frozen=True)
class Comparison:
    id: str
    system: str
    baseline: str
    expect: str  # "better" | "worse" | "not worse"
    axis: str | None = None


@dataclass(frozen=True)
class Study:
    id: str
    title: str
    claim: str
    min_seeds: int
    comparisons: tuple[Comparison, ...]


def parse_study(data: Any) -> tuple[Study | None, list[str]]:
    """A run.json `study` → Study; a malformed one is reported, never half-used."""
    if data is None:
        return None, []
    if not isinstance(data, dict):
        return None, [f"study in run.json not used: not a mapping ({type(data).__name__})"]
    problems = []
    comparisons = []
    listed = data.get("comparisons") if isinstance(data.get("comparisons"), list) else []
    for i, c in enumerate(listed):
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str)
                                              for k in ("system", "baseline")):
            problems.append(f"comparison {i + 1} needs 'system' and 'baseline' method labels")
        elif c.get("expect", "better") not in ("better", "worse", "not worse"):
            problems.append(f"comparison {i + 1}: expect is {c.get('expect')!r}, "
                            f"not 'better', 'worse' or 'not worse'")
        else:
            comparisons.append(Comparison(str(c.get("id") or f"#{i + 1}"), c["system"],
                                          c["baseline"], c.get("expect", "better"),
                                          c.get("axis")))
    min_seeds = data.get("min_seeds", MIN_SEEDS)
    if not isinstance(min_seeds, int) or isinstance(min_seeds, bool) or min_seeds < 1:
        problems.append(f"min_seeds is {min_seeds!r}, not a positive integer")
    if not comparisons or problems:
        return None, [f"study {data.get('id') or '?'} in run.json not used: "
                      + ("; ".join(problems) or "it lists no comparisons")]
    return Study(str(data.get("id") or "study"), str(data.get("title") or ""),
                 str(data.get("claim") or ""), min_seeds, tuple(comparisons)), []


def findings(study: Study, cells: Cells, withheld: dict[str, str] | None = None
             ) -> pd.DataFrame:
    """One row (`COLUMNS`) per comparison × task × ratio at which the system has results."""
    withheld = withheld or {}
    records = []
    for comp in study.comparisons:
        for task, task_cells in cells.by_task.items():
            metric = cells.metrics[task]
            for sys_cell, base_cell, ratio in _pairs(task_cells, comp):
                record = {"study": study.id, "comparison": comp.id, "task": task,
                          "ratio": ratio, "system": comp.system, "baseline": comp.baseline,
                          "metric": metric, "expect": comp.expect}
                records.append(record | _verdict(sys_cell, base_cell, comp, metric, cells,
                                                 study.min_seeds, withheld.get(task)))
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def _matches(cell: Cell, name: str) -> bool:
    return cell.label == name or cell.method == name


def _pairs(task_cells: list[Cell], comp: Comparison):
    """(system cell, baseline cell or None, ratio) for every cell of the system: the baseline
    at the same ratio, init, spec and test set. Ratios the system did not run at are not
    part of the comparison."""
    bases = [c for c in task_cells if _matches(c, comp.baseline)]
    for s in (c for c in task_cells if _matches(c, comp.system)):
        partner = [b for b in bases if b.ratio == s.ratio and b.init == s.init
                   and b.spec == s.spec and b.test_key == s.test_key]
        yield s, (partner[0] if partner else None), s.ratio


def _verdict(sys_cell: Cell, base_cell: Cell | None, comp: Comparison, metric: str,
             cells: Cells, min_seeds: int, withheld: str | None) -> dict[str, Any]:
    result = cells.compare(sys_cell, base_cell) if base_cell is not None else None
    if result is None:
        return {"effect": float("nan"), "low": float("nan"), "high": float("nan"),
                "p_value": float("nan"), "seeds": sys_cell.scores.seeds, "baseline_seeds": 0,
                "verdict": OPEN, "reason": f"no comparable results of {comp.baseline}"}
    sign = -1.0 if lower_is_better(metric) else 1.0
    low, high = sorted((sign * result.low, sign * result.high))
    out = {"effect": sign * result.delta, "low": low, "high": high, "p_value": result.p_value,
           "seeds": result.seeds_a, "baseline_seeds": result.seeds_b}
    expected = -1.0 if comp.expect == "worse" else 1.0
    directional = expected * out["effect"]
    if min(result.seeds_a, result.seeds_b) < min_seeds:
        verdict, reason = OPEN, (f"needs ≥ {min_seeds} seeds on both sides "
                                 f"(has {result.seeds_a} vs {result.seeds_b})")
    elif withheld:
        verdict, reason = OPEN, withheld
    elif comp.expect == "not worse":
        if low > -NEGLIGIBLE:
            verdict, reason = HOLDS, f"the 95% interval lies above −{NEGLIGIBLE:g} points"
        elif result.p_value < ALPHA and high < -NEGLIGIBLE:
            verdict, reason = FAILS, f"p = {result.p_value:.3f}, worse by more than {NEGLIGIBLE:g} points"
        else:
            verdict, reason = OPEN, f"the 95% interval reaches below −{NEGLIGIBLE:g} points"
    elif result.p_value < ALPHA and directional > 0:
        verdict, reason = HOLDS, f"p = {result.p_value:.3f}, in the expected direction"
    elif result.p_value < ALPHA and directional < 0:
        verdict, reason = FAILS, f"p = {result.p_value:.3f}, in the opposite direction"
    elif -NEGLIGIBLE < low and high < NEGLIGIBLE:
        verdict, reason = FAILS, (f"negligible: the 95% interval lies within "
                                  f"±{NEGLIGIBLE:g} points")
    else:
        verdict, reason = OPEN, (f"p = {result.p_value:.3f} and the 95% interval reaches "
                                 f"beyond ±{NEGLIGIBLE:g} points")
    return out | {"verdict": verdict, "reason": reason}


def findings_display(study: Study, table: pd.DataFrame) -> DisplayTable:
    """The Findings table of one study, as display strings."""
    def num(v, fmt):
        return "—" if pd.isna(v) else format(v, fmt)

    data = pd.DataFrame({
        "comparison": table["comparison"],
        "task": table["task"],
        "ratio": table["ratio"].map(ratio_label),
        "claim": [f"{s} {e} than {b}" for s, e, b in
                  zip(table["system"], table["expect"], table["baseline"])],
        "effect": table["effect"].map(lambda v: num(v, "+.2f")),
        "95% CI": [f"[{num(lo, '+.2f')}, {num(hi, '+.2f')}]" for lo, hi in
                   zip(table["low"], table["high"])],
        "p": table["p_value"].map(lambda v: num(v, ".3f")),
        "seeds": [f"{a} vs {b}" for a, b in zip(table["seeds"], table["baseline_seeds"])],
        "verdict": table["verdict"],
        "why": table["reason"],
    }).reset_index(drop=True)
    metrics = sorted({metric_name(m) for m in table["metric"]})
    note = (f"Effect: system − baseline in the task's headline metric ({', '.join(metrics)}), "
            f"sign flipped where lower is better, so positive = system better; its 95% "
            f"interval and two-sided p from the two-level paired bootstrap over seeds and test "
            f"examples. Holds: p < {ALPHA:g} in the expected direction with ≥ "
            f"{study.min_seeds} seeds on both sides. Does not hold: p < {ALPHA:g} in the "
            f"opposite direction, or the whole interval within ±{NEGLIGIBLE:g} points. "
            f"Inconclusive: anything else, including fewer than {study.min_seeds} seeds. "
            f"\"Not worse\" holds when the whole interval lies above −{NEGLIGIBLE:g}.")
    title = f"Findings of {study.id}" + (f": {study.title}" if study.title else "")
    return DisplayTable(title, data, None, note, index=False)


def verdict_summary(table: pd.DataFrame) -> str:
    """"2 holds, 1 does not hold, 3 inconclusive" over the table's rows."""
    counts = table["verdict"].value_counts()
    return ", ".join(f"{int(counts.get(v, 0))} {v}" for v in (HOLDS, FAILS, OPEN))
