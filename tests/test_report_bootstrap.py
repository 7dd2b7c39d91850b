"""The two-level paired bootstrap (reports.bootstrap) and the per-example statistics it
resamples (reports.metric_stats), on inputs with known answers."""
from __future__ import annotations

import random

import numpy as np
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF, TER

from reports.bootstrap import compare, paired_bootstrap, resample_counts, system_scores
from bench.example_stats import (
    TestSet,
    corpus_scores,
    lcs_length,
    rouge_tokens,
    streams,
    sufficient_stats,
)

WORDS = ["the", "a", "red", "blue", "pub", "cafe", "river", "city", "near", "serves",
         "cheap", "food", "family", "rated", "running", "runs", "Eagle's", "."]


def _corpus(n=80, seed=0, max_refs=4):
    rng = random.Random(seed)
    refs = []
    for _ in range(n):
        base = [rng.choice(WORDS) for _ in range(10)]
        alts = []
        for _ in range(rng.randrange(max_refs)):
            alt = list(base)
            alt[rng.randrange(10)] = rng.choice(WORDS)
            alts.append(" ".join(alt))
        refs.append([" ".join(base), *alts])
    return refs


def _system(refs, quality, seed):
    rng = random.Random(seed)
    return [" ".join(w if rng.random() < quality else rng.choice(WORDS) for w in r[0].split())
            for r in refs]


# --- per-example statistics -----------------------------------------------------------------

@pytest.mark.parametrize("name, metric", [("bleu", BLEU), ("chrf", CHRF), ("ter", TER)])
def test_vectorised_corpus_scores_equal_sacrebleu_on_every_subset(name, metric):
    """The resampled scores are sacreBLEU's own `_compute_score_from_stats`, including the
    edge cases of tiny resamples (no match, an n-gram order with no n-grams, empty outputs)."""
    refs = _corpus(60, seed=1)
    hyps = _system(refs, 0.5, 2)
    hyps[:3] = ["", "a", "the red"]
    stats = sufficient_stats(name, hyps, refs)
    scorer = metric()
    assert corpus_scores(name, stats.sum(axis=0), len(refs)) == pytest.approx(
        scorer.corpus_score(hyps, streams(refs)).score)
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 7, 60):
        for _ in range(40):
            sums = stats[rng.integers(0, len(refs), size=size)].sum(axis=0)
            expected = scorer._compute_score_from_stats(list(sums)).score
            assert corpus_scores(name, sums, size) == pytest.approx(expected, abs=1e-9)


def test_rouge_per_example_f1_equals_rouge_score(engine_rouge):
    """Max over references of rouge-score's F1 (stemming), as bench.evaluate.rouge computes."""
    refs = _corpus(50, seed=3)
    hyps = _system(refs, 0.5, 4)
    hyps[0] = ""
    hyps[1] = "!!!"  # no token survives rouge-score's tokenizer
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = [scorer.score_multi(r, h) for h, r in zip(hyps, refs)]
    test_set = TestSet(refs, "d")
    engine = engine_rouge(hyps, refs)
    for kind in ("rouge1", "rouge2", "rougeL"):
        got = sufficient_stats(kind, hyps, test_set)[:, 0]
        assert got == pytest.approx([e[kind].fmeasure for e in expected], abs=1e-12)
        mean = 100 * np.mean([e[kind].fmeasure for e in expected])
        assert corpus_scores(kind, np.array([got.sum()]), len(refs)) == pytest.approx(mean)
        assert mean == pytest.approx(engine[kind])  # what the trials store


@pytest.fixture(scope="module")
def engine_rouge():
    from bench.evaluate import rouge  # the engine's ROUGE, which fills the rows
    return rouge


def test_bit_parallel_lcs_equals_rouge_scores_table():
    rng = random.Random(5)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randrange(1, 15))]
        b = [rng.choice("abcde") for _ in range(rng.randrange(0, 15))]
        masks = {}
        for i, tok in enumerate(a):
            masks[tok] = masks.get(tok, 0) | (1 << i)
        assert lcs_length(masks, len(a), b) == rouge_scorer._lcs_table(a, b)[-1][-1]
    assert rouge_tokens("The Eagle's runners ran!") == ["the", "eagl", "s", "runner", "ran"]


# --- the two-level bootstrap ----------------------------------------------------------------

def _stats(metric, systems, refs):
    return [sufficient_stats(metric, h, refs) for h in systems]


def _compare(metric, a, b, refs, n_samples=1000):
    counts = resample_counts(len(refs), n_samples)
    return compare(system_scores(metric, _stats(metric, a, refs), counts),
                   system_scores(metric, _stats(metric, b, refs), counts))


def test_a_difference_in_one_seed_only_is_not_significant():
    """System a equals b in two of three seeds and is much better in the third. Over test
    examples alone that seed's gap is overwhelming; once seeds are resampled too, a third of
    the draws miss it and the difference is not significant."""
    refs = _corpus()
    b = [_system(refs, 0.5, s) for s in (1, 2, 3)]
    a = [[r[0] for r in refs], b[1], b[2]]  # seed 0: the first reference itself
    example_level = _compare("bleu", a[:1], b[:1], refs)
    assert example_level.significant and not example_level.covers_training_variance
    result = _compare("bleu", a, b, refs)
    assert result.delta > 10 and result.low < 0 < result.high
    assert result.p_value > 0.05 and not result.significant
    assert (result.seeds_a, result.seeds_b) == (3, 3) and result.covers_training_variance


def test_a_consistent_difference_over_three_seeds_is_significant():
    refs = _corpus()
    a = [_system(refs, 0.75, s) for s in (10, 11, 12)]
    b = [_system(refs, 0.5, s) for s in (20, 21, 22)]
    result = _compare("bleu", a, b, refs)
    assert result.significant and result.covers_training_variance
    assert 0 < result.low < result.delta < result.high
    expected = (np.mean([BLEU().corpus_score(h, streams(refs)).score for h in a])
                - np.mean([BLEU().corpus_score(h, streams(refs)).score for h in b]))
    assert result.delta == pytest.approx(expected)
    assert result.n_samples == 2000  # each example draw with two (antithetic) seed draws


@pytest.mark.parametrize("metric", ["bleu", "chrf", "rougeL"])
def test_identical_systems_with_several_seeds_get_p_one(metric):
    refs = _corpus()
    seeds = [_system(refs, 0.6, s) for s in (1, 2, 3)]
    result = _compare(metric, seeds, [list(h) for h in seeds], refs)
    assert result.delta == 0.0 and result.p_value == 1.0 and not result.significant
    assert result.low == pytest.approx(-result.high)  # δ* exactly symmetric around 0


def test_seed_level_known_answer():
    """All test examples alike: resampling them changes nothing, so δ* is the seed bootstrap
    alone. a's seeds score ROUGE-1 100 and 25, b's one seed 50: a's drawn mean is 100, 62.5 or
    25 with probabilities 1/4, 1/2, 1/4, so δ* is +50, +12.5 or −25 and P(δ* ≤ 0) = 1/4."""
    refs = [["a b c d"]] * 30
    a = [["a b c d"] * 30, ["a x y z"] * 30]
    b = [["a b x y"] * 30]
    result = _compare("rouge1", a, b, refs)
    assert result.delta == pytest.approx(12.5)
    assert (result.low, result.high) == pytest.approx((-25.0, 50.0))
    assert result.p_value == pytest.approx(0.5, abs=0.06)
    # one seed on each side: nothing varies, δ* is the observed difference every time
    single = _compare("rouge1", a[:1], b, refs)
    assert (single.delta, single.low, single.high) == pytest.approx((50.0, 50.0, 50.0))
    assert single.n_samples == 1000 and not single.covers_training_variance


def test_seeds_of_the_two_systems_are_drawn_independently():
    """With seeds paired across systems (the same index drawn for both), a seed-by-seed equal
    pair would always cancel; drawn independently, a (2 seeds: 100, 25) vs b (the same 2
    seeds) gives δ* ≠ 0 on most draws, symmetric around 0."""
    refs = [["a b c d"]] * 20
    seeds = [["a b c d"] * 20, ["a x y z"] * 20]
    result = _compare("rouge1", seeds, [list(s) for s in seeds], refs)
    assert result.p_value == 1.0
    # a drawn mean of 100 against one of 25 (or back) has probability 1/16 each: the tails
    assert (result.low, result.high) == pytest.approx((-75.0, 75.0))


def test_paired_bootstrap_is_reproducible_and_antisymmetric():
    refs = _corpus()
    a = [_system(refs, 0.6, s) for s in (1, 2)]
    b = [_system(refs, 0.55, s) for s in (3, 4, 5)]
    one = paired_bootstrap(a, b, refs, n_samples=300)
    assert one == paired_bootstrap(a, b, refs, n_samples=300)
    reverse = paired_bootstrap(b, a, refs, n_samples=300)
    assert reverse.delta == pytest.approx(-one.delta)
    assert (reverse.seeds_a, reverse.seeds_b) == (3, 2)
