"""Two-level paired bootstrap: is system a better than system b beyond what another draw of
training seeds *and* of test examples could do?

A difference between two methods has two sources of noise: the test examples (another test
set of the same size) and training (another seed gives another student). Resampling only the
examples of seed-averaged outputs (Koehn 2004) ignores the second, so one lucky seed can make
a method "significantly better". Here every resample draws

* the training seeds of each system, with replacement and independently for the two systems
  (the seeds of two methods are different trainings, so they are not paired), and
* one shared multiset of test examples (`resample_counts`), the same for every seed of both
  systems, so the comparison stays paired over examples;

a system's score on a resample is the mean, over its drawn seeds, of each seed's corpus score
on the drawn examples (from per-example statistics: `metric_stats`), and δ* is a − b. Each
example draw is used with two seed draws, the second with the two systems' uniform draws
swapped (antithetic), so that two identical systems get a δ* distribution exactly symmetric
around 0. With one seed on both sides there is nothing to draw and δ* comes from the examples
alone; `PairedResult.covers_training_variance` is then False and the report says so.

p = min(1, 2·min(P(δ* ≤ 0), P(δ* ≥ 0))) with the +1 correction, so identical systems get
p = 1 and a system better on every resample gets 2/(R+1) for R resamples. We do not call
`sacrebleu.significance.PairedTest`: its p for two identical systems is 1/(B+1)
("significant"), because it counts strict exceedances of a zero difference. The interval is
the 2.5–97.5 percentile range of δ*. With n seeds the seed draw underestimates the seed
variance by the factor (n − 1)/n, which is one reason findings ask for 3 seeds or more.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bench.example_stats import SACREBLEU_METRICS, TestSet, corpus_scores, sufficient_stats

ALPHA = 0.05  # significance level of markers and findings
BOOTSTRAP_SAMPLES = 1000  # example resamples
BOOTSTRAP_SEED = 12345  # sacreBLEU's default seed, so resamples are reproducible
ROWS_PER_BATCH = 256  # seeds scored per matrix product (bounds memory on large runs)


def resample_counts(
    n_examples: int, n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """(n_samples × n_examples) multiplicities of each example in each resample. Every system
    of a test set is scored on these same resamples: that makes the comparisons paired."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_samples)


@dataclass(frozen=True)
class SystemScores:
    """One system on one test set: each seed's corpus score on the full test set and on every
    example resample."""

    observed: np.ndarray  # (seeds,)
    resampled: np.ndarray  # (seeds, resamples)
    n_examples: int

    @property
    def seeds(self) -> int:
        return int(self.observed.size)

    @property
    def mean(self) -> float:
        """The seed mean on the full test set: the number the results tables show."""
        return float(self.observed.mean())


def system_scores(metric: str, stats_per_seed: Sequence[np.ndarray], counts: np.ndarray
                  ) -> SystemScores:
    """Score each seed's per-example statistics on the full test set and on every resample."""
    if not stats_per_seed:
        raise ValueError("system_scores needs at least one seed's statistics")
    observed, resampled = score_seeds(metric, list(stats_per_seed), counts)
    return SystemScores(observed, resampled, counts.shape[1])


def score_seeds(metric: str, stats: Sequence[np.ndarray], counts: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Corpus scores of many seeds at once: `stats` holds each seed's (examples × k)
    statistics, `counts` the (resamples × examples) draws; returns (seeds,) and (seeds,
    resamples). One matrix product per batch of seeds; in float32 for sacreBLEU's statistics,
    small integers whose sums float32 holds exactly (it halves the time of the report's
    largest computation), in float64 for ROUGE's F1 values."""
    n_resamples, n = counts.shape
    dtype = "float32" if metric in SACREBLEU_METRICS else "float64"
    weights = counts.astype(dtype)
    observed = np.empty(len(stats), dtype="float64")
    resampled = np.empty((len(stats), n_resamples), dtype="float64")
    for start in range(0, len(stats), ROWS_PER_BATCH):
        part = np.stack(stats[start:start + ROWS_PER_BATCH])  # (seeds, examples, k)
        if part.shape[1] != n:
            raise ValueError(f"{part.shape[1]} examples, resamples are over {n}")
        size, _, k = part.shape
        observed[start:start + size] = corpus_scores(metric, part.sum(axis=1, dtype="float64"),
                                                     n)
        # statistic-major (k, seeds, resamples): each statistic's sums come out contiguous,
        # as the corpus scores read them (a view with the statistics last, no copy)
        flat = part.transpose(2, 0, 1).reshape(k * size, n).astype(dtype)
        sums = (flat @ weights.T).reshape(k, size, n_resamples)
        resampled[start:start + size] = corpus_scores(metric, np.moveaxis(sums, 0, -1), n)
    return observed, resampled


@dataclass(frozen=True)
class PairedResult:
    """System a − system b on one test set, over seeds and test examples."""

    delta: float  # observed difference of the seed means, a − b, metric units
    low: float  # 95% percentile interval of δ*
    high: float
    p_value: float  # two-sided
    n_examples: int
    n_samples: int  # resamples of δ* (example draws × seed draws)
    seeds_a: int
    seeds_b: int

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    @property
    def covers_training_variance(self) -> bool:
        """Whether both sides have several seeds, so δ* also varies with training."""
        return min(self.seeds_a, self.seeds_b) >= 2


@lru_cache(maxsize=256)
def seed_weights(n_a: int, n_b: int, n_samples: int, seed: int = BOOTSTRAP_SEED
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per resample, the weight of each seed of a and of b in its seed mean: (R, n_a) and
    (R, n_b), R = 2·n_samples (antithetic pairs, see the module docstring), or n_samples when
    both sides have a single seed. A function of the seed counts only, so it is computed once
    per pair of counts (and returned read-only)."""
    if n_a == 1 and n_b == 1:
        return _frozen(np.ones((n_samples, 1))), _frozen(np.ones((n_samples, 1)))
    rng = np.random.default_rng([seed, 1])  # a stream apart from the example draws
    width = max(n_a, n_b)
    first, second = rng.random((n_samples, width)), rng.random((n_samples, width))

    def weights(uniform: np.ndarray, n: int) -> np.ndarray:
        drawn = np.floor(uniform[:, :n] * n).astype(int)  # n seed indices, with replacement
        return (drawn[:, :, None] == np.arange(n)).sum(axis=1) / n

    return (_frozen(np.vstack([weights(first, n_a), weights(second, n_a)])),
            _frozen(np.vstack([weights(second, n_b), weights(first, n_b)])))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def compare(a: SystemScores, b: SystemScores, seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """Two-level paired bootstrap of a against b (scored on the same example resamples)."""
    if a.resampled.shape[1] != b.resampled.shape[1]:
        raise ValueError("a and b were not scored on the same resamples")
    n_samples = a.resampled.shape[1]
    w_a, w_b = seed_weights(a.seeds, b.seeds, n_samples, seed)
    repeat = w_a.shape[0] // n_samples  # each example draw is used with `repeat` seed draws
    score_a = np.einsum("kre,er->kr", w_a.reshape(repeat, n_samples, -1), a.resampled).ravel()
    score_b = np.einsum("kre,er->kr", w_b.reshape(repeat, n_samples, -1), b.resampled).ravel()
    diffs = score_a - score_b
    # Identical outputs give identical scores, but a matrix product may sum two equal columns
    # in different orders: differences at float-noise level are no evidence of either sign.
    diffs = np.where(np.isclose(diffs, 0.0, rtol=0.0, atol=1e-9), 0.0, diffs)
    n = diffs.size
    at_most_zero = (np.count_nonzero(diffs <= 0) + 1) / (n + 1)
    at_least_zero = (np.count_nonzero(diffs >= 0) + 1) / (n + 1)
    p = float(min(1.0, 2.0 * min(at_most_zero, at_least_zero)))
    low, high = np.percentile(diffs, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return PairedResult(a.mean - b.mean, float(low), float(high), p, a.n_examples, n,
                        a.seeds, b.seeds)


def paired_bootstrap(
    hypotheses_a: Sequence[Sequence[str]],
    hypotheses_b: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]] | TestSet,
    metric: str = "bleu",
    n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedResult:
    """The two-level bootstrap of system a against b, each a list of its seeds' outputs."""
    test_set = references if isinstance(references, TestSet) else TestSet(references, "")
    counts = resample_counts(len(test_set), n_samples, seed)
    a = system_scores(metric, [sufficient_stats(metric, h, test_set) for h in hypotheses_a],
                      counts)
    b = system_scores(metric, [sufficient_stats(metric, h, test_set) for h in hypotheses_b],
                      counts)
    return compare(a, b, seed)
