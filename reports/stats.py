"""The report's statistics: seed aggregates with t-intervals, derived ratios, paired bootstrap.

Two different uncertainties, kept apart on purpose:

* **Over seeds** (`t_interval`, `summarize`): a method's score varies with the student's
  seed. The 95% interval is mean ± t_{0.975, n-1}·s/√n (Student's t, because n is 2–5
  seeds, far too few for a normal approximation). With one seed the interval is undefined
  and stays NaN: shown as "n/a", never as ± 0, which would claim certainty.
* **Over test examples** (`paired_bootstrap`, Koehn 2004): are two systems' corpus scores
  different beyond what another draw of test examples could do? Both systems are scored on
  the *same* resampled examples (paired), from sacreBLEU's per-example sufficient
  statistics, so the resampled scores are exactly sacreBLEU's corpus scores. We do not call
  `sacrebleu.significance.PairedTest`: its p-value for two identical systems is 1/(B+1)
  ("significant"), because it counts strict exceedances of a zero difference. Here
  p = min(1, 2·min(P(δ* ≤ 0), P(δ* ≥ 0))) with the +1 correction, so identical systems get
  p = 1 and a system better on every resample gets p = 2/(B+1). With several seeds a
  system's score on a resample is the mean over its seeds, so the test compares the same
  seed-averaged numbers the tables show.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF, TER
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of the markers
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 12345  # sacreBLEU's default seed, so resamples are reproducible

# Metrics where a smaller number is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({
    "ter", "dev_loss", "loss", "latency_ms", "latency_beam_ms", "peak_mem_mb", "disk_mb",
    "flops_per_token", "params",
})
# Metrics the paired bootstrap can recompute from sacreBLEU's sufficient statistics. The
# constructors take sacreBLEU's defaults, the same as `bench.evaluate.score`.
SACREBLEU_METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


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
    x = pd.to_numeric(pd.Series(list(values), dtype="object"), errors="coerce")
    x = x.to_numpy(dtype="float64", na_value=np.nan)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, 1, math.nan)
    std = float(x.std(ddof=1))
    t = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1))
    return Interval(mean, std, n, t * std / math.sqrt(n))


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
    """One row per group of `by`: mean, std, n, ci (half-width), low, high of `value`."""
    columns = [*by, "mean", "std", "n", "ci", "low", "high"]
    data = data[data[value].notna()]
    if data.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for key, group in data.groupby(list(by), sort=True, dropna=False):
        ci = t_interval(group[value])
        key = key if isinstance(key, tuple) else (key,)
        records.append((*key, ci.mean, ci.std, ci.n, ci.half_width, ci.low, ci.high))
    return pd.DataFrame.from_records(records, columns=columns)


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


# --- paired bootstrap over test examples ----------------------------------------------------

def streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists → sacreBLEU's reference streams (None pads short lists)."""
    width = max((len(r) for r in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def sufficient_stats(
    metric: str, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> np.ndarray:
    """Per-example sufficient statistics (examples × stats) of a sacreBLEU metric.

    Uses sacreBLEU's `_extract_corpus_statistics`, the same routine its own significance
    tests use, so summed rows give back sacreBLEU's corpus score exactly.
    """
    if metric not in SACREBLEU_METRICS:
        raise ValueError(f"no paired bootstrap for metric {metric!r}: it needs sacreBLEU "
                         f"sufficient statistics (one of {sorted(SACREBLEU_METRICS)})")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    scorer = SACREBLEU_METRICS[metric]()
    rows = scorer._extract_corpus_statistics(list(hypotheses), streams(references))
    return np.asarray(rows, dtype="float64")


def corpus_score(metric: str, stats: np.ndarray) -> float:
    """sacreBLEU's corpus score from summed sufficient statistics."""
    scorer = SACREBLEU_METRICS[metric]()
    return float(scorer._compute_score_from_stats(list(stats.sum(axis=0))).score)


def resample_counts(
    n_examples: int, n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """(n_samples × n_examples) multiplicities of each example in each bootstrap resample.

    Every system of a test set is scored on these same resamples, which is what makes the
    comparisons paired.
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_samples)


@dataclass(frozen=True)
class BootstrapScores:
    """A system's score on the full test set and on every resample (mean over its seeds)."""

    observed: float
    samples: np.ndarray  # (n_samples,)
    seeds: int


def bootstrap_scores(
    metric: str, stats_per_seed: Sequence[np.ndarray], counts: np.ndarray
) -> BootstrapScores:
    """Score every seed's outputs on every resample and average over seeds."""
    if not stats_per_seed:
        raise ValueError("bootstrap_scores needs at least one seed's statistics")
    scorer = SACREBLEU_METRICS[metric]()
    observed, samples = [], []
    for stats in stats_per_seed:
        if stats.shape[0] != counts.shape[1]:
            raise ValueError(f"{stats.shape[0]} examples, resamples are over {counts.shape[1]}")
        observed.append(float(scorer._compute_score_from_stats(list(stats.sum(axis=0))).score))
        sums = counts @ stats
        samples.append([scorer._compute_score_from_stats(list(s)).score for s in sums])
    return BootstrapScores(
        float(np.mean(observed)), np.asarray(samples, dtype="float64").mean(axis=0),
        len(stats_per_seed),
    )


@dataclass(frozen=True)
class PairedResult:
    """System a − system b on one test set."""

    delta: float  # observed difference a − b, metric units
    low: float  # 95% percentile interval of the resampled differences
    high: float
    p_value: float  # two-sided
    n_examples: int
    n_samples: int

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def compare(a: BootstrapScores, b: BootstrapScores, n_examples: int) -> PairedResult:
    """Paired bootstrap test of a against b (both scored on the same resamples)."""
    diffs = a.samples - b.samples
    n = diffs.size
    at_most_zero = (np.count_nonzero(diffs <= 0) + 1) / (n + 1)
    at_least_zero = (np.count_nonzero(diffs >= 0) + 1) / (n + 1)
    p = min(1.0, 2.0 * min(at_most_zero, at_least_zero))
    low, high = np.percentile(diffs, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return PairedResult(a.observed - b.observed, float(low), float(high), p, n_examples, n)


def paired_bootstrap(
    hypotheses_a: Sequence[Sequence[str]],
    hypotheses_b: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    metric: str = "bleu",
    n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedResult:
    """Paired bootstrap of system a against b; each system is a list of seeds' hypotheses."""
    counts = resample_counts(len(references), n_samples, seed)
    a = bootstrap_scores(metric, [sufficient_stats(metric, h, references) for h in hypotheses_a],
                         counts)
    b = bootstrap_scores(metric, [sufficient_stats(metric, h, references) for h in hypotheses_b],
                         counts)
    return compare(a, b, len(references))
