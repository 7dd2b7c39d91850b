"""Per-example statistics of a test metric, and the corpus score as a function of their sums.

A resampling test rescores a system on thousands of resampled test sets. That is cheap only
when the corpus score is a function of per-example statistics that add up:

* sacreBLEU BLEU, chrF and TER: their own sufficient statistics (`_extract_corpus_statistics`,
  the routine sacreBLEU's significance tests use), so summed rows give back sacreBLEU's corpus
  score exactly; `corpus_scores` re-derives its score formulas vectorised over resamples.
* ROUGE-1/2/L: the per-example F1 (× 1), best over the example's references, as
  `bench.evaluate.rouge` computes it with rouge-score; the corpus score is their mean × 100.

Everything that depends on the references alone (sacreBLEU's reference n-grams, rouge-score's
tokenisation and stemming of every reference) is computed once per test set (`TestSet`), not
once per scored system: that was two thirds of the report's time on a large run.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from functools import cached_property, lru_cache
from importlib.metadata import version

import numpy as np
from rouge_score import tokenize as rouge_tokenize
from rouge_score.tokenizers import porter
from sacrebleu.metrics import BLEU, CHRF, TER

logging.getLogger("absl").setLevel(logging.WARNING)

SACREBLEU_METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}
ROUGE_ORDERS = {"rouge1": 1, "rouge2": 2, "rougeL": None}  # None: longest common subsequence
PER_EXAMPLE_METRICS = frozenset({*SACREBLEU_METRICS, *ROUGE_ORDERS})
DEFAULT_TOKENIZE = "13a"  # sacreBLEU's BLEU default, what rows without `sacrebleu_tokenize` used


def supported(metric: str) -> bool:
    return metric in PER_EXAMPLE_METRICS


def references_digest(references) -> str:
    """A short content hash of a test set's references (what per-example statistics belong to)."""
    import hashlib
    import json

    text = json.dumps(references, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def example_stats(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                  tokenize: str | None = None, ter: bool = False) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Every per-example metric's statistics for one system's test outputs (float32), and what
    they belong to (metric signatures, the references' digest): computed once, where the
    outputs are made, and stored beside them so that reports never rescore them."""
    test_set = TestSet(references, references_digest([list(r) for r in references]))
    stats = {m: sufficient_stats(m, hypotheses, test_set, tokenize).astype("float32")
             for m in sorted(PER_EXAMPLE_METRICS) if ter or m != "ter"}
    meta = {"references_digest": test_set.digest,
            "signatures": {m: signature(m, tokenize) for m in stats}}
    return stats, meta


@lru_cache(maxsize=None)
def signature(metric: str, tokenize: str | None = None) -> str:
    """What the statistics of `metric` depend on besides the texts (for cache keys)."""
    if metric in SACREBLEU_METRICS:
        tok = f"-tok.{tokenize or DEFAULT_TOKENIZE}" if metric == "bleu" else ""
        return f"{metric}{tok}-sacrebleu.{version('sacrebleu')}"
    return f"{metric}-stem-rouge-score.{version('rouge-score')}"


def streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists → sacreBLEU's reference streams (None pads short lists)."""
    width = max((len(r) for r in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


class _MemoStemmer:
    """rouge-score's Porter stemmer with a memo: the same words recur in every output, and
    stemming them again was most of rouge-score's time. Same stems, same tokens."""

    def __init__(self) -> None:
        self._stemmer = porter.PorterStemmer()
        self._memo: dict[str, str] = {}

    def stem(self, word: str) -> str:
        stem = self._memo.get(word)
        if stem is None:
            stem = self._memo[word] = self._stemmer.stem(word)
        return stem


_STEMMER = _MemoStemmer()


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation with stemming (what `bench.evaluate.rouge` uses)."""
    return rouge_tokenize.tokenize(text, _STEMMER)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _lcs_masks(tokens: list[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def lcs_length(masks: dict[str, int], length: int, tokens: Sequence[str]) -> int:
    """Length of the longest common subsequence of a reference (`masks`: token → bit set of
    its positions, `length` tokens) and `tokens`, with the bit-parallel recurrence of Allison
    & Dix (1986): one integer operation per token instead of rouge-score's table per pair."""
    full = (1 << length) - 1
    v = full
    for tok in tokens:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return length - v.bit_count()


def _f1(overlap: float, hyp_total: float, ref_total: float) -> float:
    # rouge-score's scoring.fmeasure of (overlap / hyp, overlap / ref)
    precision, recall = overlap / hyp_total, overlap / ref_total
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


class TestSet:
    """One task's test references with their reference-side statistics, each built once."""

    __test__ = False  # not a pytest test class

    def __init__(self, references: Sequence[Sequence[str]], digest: str):
        if any(len(r) == 0 for r in references):
            raise ValueError("every test example needs at least one reference")
        self.references = [list(r) for r in references]
        self.digest = digest
        self._scorers: dict[tuple[str, str | None], object] = {}

    def __len__(self) -> int:
        return len(self.references)

    def sacrebleu_scorer(self, metric: str, tokenize: str | None = None):
        """A sacreBLEU metric (its defaults, as `bench.evaluate.score`) holding this test
        set's reference statistics."""
        key = (metric, tokenize if metric == "bleu" else None)
        if key not in self._scorers:
            cls = SACREBLEU_METRICS[metric]
            kwargs = {"tokenize": tokenize or DEFAULT_TOKENIZE} if metric == "bleu" else {}
            self._scorers[key] = cls(references=streams(self.references), **kwargs)
        return self._scorers[key]

    @cached_property
    def rouge_references(self) -> list[list[tuple[list[str], dict, Counter, Counter]]]:
        """Per example, per reference: tokens, LCS bit masks, unigram and bigram counts."""
        out = []
        for refs in self.references:
            parsed = []
            for ref in refs:
                toks = rouge_tokens(ref)
                parsed.append((toks, _lcs_masks(toks), _ngrams(toks, 1), _ngrams(toks, 2)))
            out.append(parsed)
        return out


def sufficient_stats(
    metric: str, hypotheses: Sequence[str], test_set: TestSet | Sequence[Sequence[str]],
    tokenize: str | None = None,
) -> np.ndarray:
    """Per-example statistics (examples × stats) of `metric` for `hypotheses`; summed (or, for
    ROUGE, averaged) over examples they give the corpus score (`corpus_scores`)."""
    if not supported(metric):
        raise ValueError(f"no per-example statistics for {metric!r} (one of "
                         f"{sorted(PER_EXAMPLE_METRICS)})")
    if not isinstance(test_set, TestSet):
        test_set = TestSet(test_set, "")
    if len(hypotheses) != len(test_set):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(test_set)} references")
    if metric in SACREBLEU_METRICS:
        scorer = test_set.sacrebleu_scorer(metric, tokenize)
        rows = scorer._extract_corpus_statistics(list(hypotheses), None)
        return np.asarray(rows, dtype="float64").reshape(len(hypotheses), -1)
    return _rouge_f1(metric, hypotheses, test_set)[:, None]


def _rouge_f1(metric: str, hypotheses: Sequence[str], test_set: TestSet) -> np.ndarray:
    order = ROUGE_ORDERS[metric]
    out = np.zeros(len(hypotheses), dtype="float64")
    for i, (hyp, refs) in enumerate(zip(hypotheses, test_set.rouge_references)):
        toks = rouge_tokens(hyp)
        best = 0.0
        if order is None:
            for ref_toks, masks, _, _ in refs:
                if ref_toks and toks:
                    lcs = lcs_length(masks, len(ref_toks), toks)
                    best = max(best, _f1(lcs, len(toks), len(ref_toks)))
        else:
            hyp_grams = _ngrams(toks, order)
            hyp_total = max(sum(hyp_grams.values()), 1)
            for ref in refs:
                ref_grams = ref[1 + order]
                overlap = sum(min(c, hyp_grams[g]) for g, c in ref_grams.items())
                best = max(best, _f1(overlap, hyp_total, max(sum(ref_grams.values()), 1)))
        out[i] = best
    return out


def corpus_scores(metric: str, sums: np.ndarray, n_examples: int) -> np.ndarray:
    """Corpus scores from per-example statistics summed over a (re)sampled test set of
    `n_examples` examples; `sums` is (..., stats), the result (...). Vectorised re-derivations
    of sacreBLEU's `_compute_score_from_stats` (BLEU with its default exp smoothing, chrF with
    its defaults, TER) and of ROUGE's mean F1 × 100; tested equal to them."""
    sums = np.asarray(sums, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if metric == "bleu":
            return _bleu(sums)
        if metric == "chrf":
            return _chrf(sums)
        if metric == "ter":
            edits, ref_len = sums[..., 0], sums[..., 1]
            return 100 * np.where(ref_len > 0, edits / np.where(ref_len > 0, ref_len, 1),
                                  np.where(edits > 0, 1.0, 0.0))
        if metric in ROUGE_ORDERS:
            return 100 * sums[..., 0] / n_examples
    raise ValueError(f"no corpus score from statistics for {metric!r}")


def _bleu(sums: np.ndarray, order: int = 4) -> np.ndarray:
    # one contiguous array per statistic: ~4× faster on (resamples × seeds × stats) inputs
    stat = np.ascontiguousarray(np.moveaxis(sums, -1, 0))
    sys_len, ref_len = stat[0], stat[1]
    bp = np.where(sys_len < ref_len, np.exp(1 - ref_len / sys_len), 1.0)
    bp = np.where(sys_len > 0, bp, 0.0)  # no output at all (then no n-grams either: score 0)
    log_precisions = np.zeros_like(sys_len)
    halvings = np.zeros_like(sys_len)
    any_match = np.zeros(sys_len.shape, dtype=bool)
    every_order = np.ones(sys_len.shape, dtype=bool)
    for n in range(order):
        correct, total = stat[2 + n], stat[2 + order + n]
        zero = correct == 0
        halvings += zero  # 'exp' smoothing: the k-th order without a match gets 1/2^k
        any_match |= ~zero
        every_order &= total > 0
        log_precisions += np.where(zero, -np.log(2.0) * halvings, np.log(correct)) - np.log(total)
    score = bp * np.exp(np.log(100.0) + log_precisions / order)
    # sacreBLEU: 0 when nothing matches, and 0 (a log floor) once an order has no n-grams
    return np.where(any_match & every_order, score, 0.0)


def _chrf(sums: np.ndarray, beta: float = 2.0) -> np.ndarray:
    hyp, ref, match = sums[..., 0::3], sums[..., 1::3], sums[..., 2::3]
    effective = (hyp > 0) & (ref > 0)
    precision = np.where(effective, match / np.where(hyp > 0, hyp, 1), 0.0)
    recall = np.where(effective, match / np.where(ref > 0, ref, 1), 0.0)
    count = effective.sum(axis=-1)
    avg_p = np.where(count > 0, precision.sum(axis=-1) / np.maximum(count, 1), 0.0)
    avg_r = np.where(count > 0, recall.sum(axis=-1) / np.maximum(count, 1), 0.0)
    factor = beta ** 2
    denom = factor * avg_p + avg_r
    return np.where(avg_p + avg_r > 0,
                    100 * (1 + factor) * avg_p * avg_r / np.where(denom > 0, denom, 1), 0.0)
