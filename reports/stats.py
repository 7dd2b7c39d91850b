"""The report's statistics over seeds, and the quantities derived from seed means.

Two different uncertainties, kept apart on purpose:

* **Over seeds** (`t_interval`, `summarize`): a method's score varies with the student's
  seed. The 95% interval is mean ± t_{0.975, n-1}·s/√n (Student's t, because n is 2–5
  seeds, far too few for a normal approximation). With one seed the interval is undefined
  and stays NaN: shown as "n/a", never as ± 0, which would claim certainty.
* **Between two systems, over seeds and test examples together**: the two-level paired
  bootstrap of `reports.bootstrap`, on per-example statistics (`reports.metric_stats`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

CONFIDENCE = 0.95

# Metrics where a smaller number is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({
    "ter", "dev_loss", "loss", "latency_ms", "latency_beam_ms", "peak_mem_mb", "disk_mb",
    "flops_per_token", "params",
})


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


# --- over seeds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """Mean of n values with a two-sided t confidence interval; NaN where undefined."""

    mean: float
    std: float  # sample standard deviation (ddof 1); NaN for n < 2
    n: int
    half_width: float  # t_{(1+c)/2, n-1} · std / √n; NaN for n < 2

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean of the finite `values` (NaN/None/NA are left out)."""
    values = list(values)
    try:  # numbers and None (the common case: a thousand calls in a large report)
        x = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):  # pd.NA, unparsable text: coerced to NaN
        x = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce")
        x = x.to_numpy(dtype="float64", na_value=np.nan)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, 1, math.nan)
    std = float(x.std(ddof=1))
    return Interval(mean, std, n, _t_critical(n - 1, confidence) * std / math.sqrt(n))


@lru_cache(maxsize=128)
def _t_critical(df: int, confidence: float) -> float:
    return float(scipy_stats.t.ppf((1 + confidence) / 2, df=df))


def ci_bounds(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of `t_interval`, for seaborn's `errorbar=` so plots show the tables' CIs.

    With one value the band collapses to the point (seaborn needs finite numbers); tables
    and the plot captions say that such a cell has no interval.
    """
    ci = t_interval(values)
    if math.isnan(ci.half_width):
        return ci.mean, ci.mean
    return ci.low, ci.high


def summarize(data: pd.DataFrame, by: Sequence[str], value: str = "value") -> pd.DataFrame:
    """One row per group of `by`: mean, std, n, ci (half-width), low, high of `value` — the
    numbers of `t_interval`, computed for all groups at once (large runs have thousands)."""
    columns = [*by, "mean", "std", "n", "ci", "low", "high"]
    values = pd.to_numeric(data[value], errors="coerce").astype("float64")
    data = data.assign(**{value: values})[np.isfinite(values)]
    if data.empty:
        return pd.DataFrame(columns=columns)
    groups = data.groupby(list(by), sort=True, dropna=False)[value]
    out = groups.agg(["mean", "std", "count"]).reset_index()
    n = out.pop("count").astype(int)
    std = out["std"].where(n > 1)
    t = pd.Series(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, np.maximum(n - 1, 1)), index=out.index)
    half = (t * std / np.sqrt(n)).where(n > 1)
    out = out.assign(std=std, n=n, ci=half, low=out["mean"] - half, high=out["mean"] + half)
    return out[columns]


# --- derived quantities ---------------------------------------------------------------------

def retained(score: float, teacher: float, metric: str) -> float:
    """Fraction of the teacher's quality a student keeps (1.0 = as good as the teacher).

    score / teacher for higher-is-better metrics, teacher / score for lower-is-better ones
    (so it stays "bigger is better"); NaN when undefined.
    """
    num, den = (teacher, score) if lower_is_better(metric) else (score, teacher)
    if not (np.isfinite(num) and np.isfinite(den)) or den == 0:
        return math.nan
    return float(num / den)


def gain(score: float, baseline: float, metric: str) -> float:
    """Improvement over a baseline in the metric's units; positive = better than it."""
    delta = float(score) - float(baseline)
    return -delta if lower_is_better(metric) else delta
