"""reports.stats and reports.bootstrap on inputs with known answers: t-intervals, derived
ratios, the paired bootstrap with one seed per system (the two-level cases with several
seeds are in test_report_bootstrap.py)."""
from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from sacrebleu.metrics import BLEU, CHRF
from scipy import stats as scipy_stats

from reports.bootstrap import (
    SystemScores,
    compare,
    paired_bootstrap,
    resample_counts,
    system_scores,
)
from bench.example_stats import corpus_scores, streams, sufficient_stats
from reports.pareto import pareto_mask
from reports.stats import ci_bounds, gain, retained, summarize, t_interval
from reports.tables import best_mask, mean_ci

T_975_2 = 4.302652729749464  # Student's t, 97.5th percentile, 2 degrees of freedom (tables)


def test_t_interval_of_1_2_3():
    ci = t_interval([1.0, 2.0, 3.0])
    assert (ci.mean, ci.std, ci.n) == (2.0, 1.0, 3)
    assert ci.half_width == pytest.approx(T_975_2 * 1.0 / math.sqrt(3), rel=1e-12)
    assert ci.half_width == pytest.approx(scipy_stats.t.ppf(0.975, 2) / math.sqrt(3))
    assert (ci.low, ci.high) == pytest.approx((2 - 2.4841377, 2 + 2.4841377), abs=1e-6)
    assert ci_bounds([1.0, 2.0, 3.0]) == pytest.approx((ci.low, ci.high))


def test_t_interval_matches_scipy_for_random_samples():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        x = rng.normal(30, 2, size=n)
        low, high = scipy_stats.t.interval(0.95, n - 1, loc=x.mean(), scale=scipy_stats.sem(x))
        ci = t_interval(x)
        assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)


def test_one_seed_has_no_interval_and_missing_values_are_ignored():
    one = t_interval([19.0])
    assert one.mean == 19.0 and one.n == 1
    assert math.isnan(one.std) and math.isnan(one.half_width)  # undefined, not zero
    assert mean_ci(one.mean, one.half_width, one.n) == "19.00 ± n/a"
    assert ci_bounds([19.0]) == (19.0, 19.0)  # a band of zero width in plots, never NaN
    assert t_interval([1.0, None, float("nan"), pd.NA, 3.0]).n == 2
    empty = t_interval([])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_summarize_groups():
    data = pd.DataFrame({"m": ["a", "a", "a", "b"], "r": [2, 2, 2, 2],
                         "value": [1.0, 2.0, 3.0, 7.0]})
    out = summarize(data, ["m", "r"]).set_index("m")
    assert out.at["a", "mean"] == 2.0 and out.at["a", "n"] == 3
    assert out.at["a", "ci"] == pytest.approx(T_975_2 / math.sqrt(3))
    assert out.at["b", "n"] == 1 and math.isnan(out.at["b", "ci"])


def test_retained_and_gain_respect_the_metric_direction():
    assert retained(30.0, 40.0, "bleu") == 0.75
    assert retained(60.0, 45.0, "ter") == 0.75  # TER: lower is better, teacher / student
    assert math.isnan(retained(30.0, 0.0, "bleu"))
    assert gain(33.0, 30.0, "bleu") == 3.0
    assert gain(50.0, 55.0, "ter") == 5.0  # 5 TER points fewer errors = +5 better


def test_best_mask_ties_direction_and_teacher():
    mean = pd.DataFrame({2.0: [50.0, 30.0, 32.0, 32.0], 4.0: [50.0, 20.0, float("nan"), 25.0]},
                        index=["teacher", "ft", "seq_kd", "word_kd"])
    mask = best_mask(mean, "bleu")
    assert mask[2.0].tolist() == [False, False, True, True]  # tie: both; teacher never
    assert mask[4.0].tolist() == [False, False, False, True]
    assert best_mask(mean, "ter")[2.0].tolist() == [False, True, False, False]


def test_pareto_mask():
    latency = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    quality = np.array([10.0, 20.0, 15.0, 20.0, 30.0])
    # (3, 15) is dominated by (2, 20); the two (2, 20) tie and both stay
    assert pareto_mask(latency, quality).tolist() == [True, True, False, True, True]


# --- the paired bootstrap ----------------------------------------------------------------

WORDS = ["the", "a", "red", "blue", "pub", "cafe", "river", "city", "near", "serves", "cheap", "food", "family", "rated"]


def _corpus(n=80, seed=0):
    rng = random.Random(seed)
    refs = []
    for _ in range(n):
        base = [rng.choice(WORDS) for _ in range(10)]
        alt = list(base)
        alt[0] = rng.choice(WORDS)
        refs.append([" ".join(base)] + ([" ".join(alt)] if rng.random() < 0.5 else []))
    return refs


def _system(refs, quality, seed):
    rng = random.Random(seed)
    return [" ".join(w if rng.random() < quality else rng.choice(WORDS) for w in r[0].split())
            for r in refs]


def test_sufficient_stats_give_back_sacrebleus_corpus_scores():
    refs = _corpus()
    hyps = _system(refs, 0.6, 1)
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        expected = metric.corpus_score(hyps, streams(refs)).score
        stats = sufficient_stats(name, hyps, refs)
        assert corpus_scores(name, stats.sum(axis=0), len(refs)) == pytest.approx(expected)
    assert streams([["a"], ["b", "c"]]) == [["a", "b"], [None, "c"]]


def test_identical_systems_are_not_significant():
    refs = _corpus()
    hyps = _system(refs, 0.6, 1)
    result = paired_bootstrap([hyps], [list(hyps)], refs, n_samples=500)
    assert result.delta == 0.0 and result.p_value == 1.0
    assert not result.significant
    assert result.low == result.high == 0.0


def test_a_system_better_on_every_example_is_significant():
    refs = _corpus()
    good = [r[0] for r in refs]  # the first reference itself
    bad = _system(refs, 0.3, 2)
    result = paired_bootstrap([good], [bad], refs, n_samples=500)
    assert result.delta > 50 and result.significant
    assert result.p_value == pytest.approx(2 / 501)  # no resample favours the worse system
    assert result.low > 0
    reverse = paired_bootstrap([bad], [good], refs, n_samples=500)
    assert reverse.delta == pytest.approx(-result.delta) and reverse.p_value == result.p_value


def test_a_difference_on_one_example_is_not_significant():
    refs = _corpus()
    a = _system(refs, 0.6, 3)
    b = list(a)
    b[0] = refs[0][0]  # b fixes one of 80 examples
    result = paired_bootstrap([a], [b], refs, n_samples=500)
    assert result.delta < 0 and result.p_value > 0.05 and not result.significant


def test_seeds_are_averaged_and_resamples_are_shared():
    refs = _corpus()
    seeds = [_system(refs, 0.6, s) for s in (10, 11, 12)]
    counts = resample_counts(len(refs), 200, seed=7)
    assert counts.shape == (200, len(refs)) and (counts.sum(axis=1) == len(refs)).all()
    assert (counts == resample_counts(len(refs), 200, seed=7)).all()
    scored = system_scores("bleu", [sufficient_stats("bleu", h, refs) for h in seeds], counts)
    singles = [BLEU().corpus_score(h, streams(refs)).score for h in seeds]
    assert scored.mean == pytest.approx(np.mean(singles)) and scored.seeds == 3
    assert scored.observed == pytest.approx(singles)
    # each seed's resampled score is sacreBLEU's corpus score of the resampled examples
    first = sufficient_stats("bleu", seeds[0], refs)
    for b in (0, 99):
        resampled = [h for h, c in zip(seeds[0], counts[b]) for _ in range(c)]
        ref_rows = [r for r, c in zip(refs, counts[b]) for _ in range(c)]
        expected = BLEU().corpus_score(resampled, streams(ref_rows)).score
        assert scored.resampled[0, b] == pytest.approx(expected)
        assert corpus_scores("bleu", counts[b] @ first, len(refs)) == pytest.approx(expected)
    # a system compared with itself through the same resamples: exactly zero everywhere
    same = compare(scored, SystemScores(scored.observed.copy(), scored.resampled.copy(),
                                        len(refs)))
    assert same.p_value == 1.0 and same.delta == 0.0


def test_bootstrap_refuses_what_it_cannot_do():
    refs = _corpus(5)
    with pytest.raises(ValueError, match="bertscore_f1"):
        sufficient_stats("bertscore_f1", ["x"] * 5, refs)
    with pytest.raises(ValueError, match="4 hypotheses for 5 references"):
        sufficient_stats("bleu", ["x"] * 4, refs)
