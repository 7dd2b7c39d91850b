"""Quality of one model: generate the test split once, then score it against every reference.

Owns the quality metrics and their signatures — multi-reference sacreBLEU BLEU, chrF and TER,
ROUGE-1/2/L (rouge-score), optional BERTScore from a local model — the decoded test outputs
(kept whole, for paired bootstrap later), and the dev-set cross-entropy of a model.
Cost metrics (latency, throughput, memory, FLOPs, size) are in `bench/cost.py`.

All corpus scores are on a 0–100 scale (TER: lower is better, the others higher).
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER

from bench.data import Lengths, encode
from bench.generation import generate_ids
from bench.spec import check_bertscore_model

logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs at INFO per scorer
# sacreBLEU warns about pre-tokenized text on every call; the data stage says it once per task instead
logging.getLogger("sacrebleu").setLevel(logging.ERROR)


def looks_pretokenized(texts: Sequence[str]) -> bool:
    """Whether references look tokenized already (sacreBLEU's own hint: lines ending in " .")."""
    ends = sum(1 for t in texts if t.rstrip().endswith(" ."))
    return len(texts) > 0 and ends >= max(1, len(texts) // 10)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
ROUGE_SIGNATURE = (f"rouge-score {version('rouge-score')}, {'/'.join(ROUGE_TYPES)} F1 x100, stemmer=True, "
                   "default tokenizer, max over refs per example, mean over examples")


# ---------------------------------------------------------------------------- metrics

def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists → sacreBLEU's reference streams. Examples with fewer
    references than the widest are padded with None, which sacreBLEU skips (`nrefs:var`)."""
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every example needs at least one reference")
    width = max(len(r) for r in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]], bleu_tokenize: str = "13a",
          ter: bool = False) -> dict[str, Any]:
    """Corpus BLEU (sacreBLEU, tokenizer `bleu_tokenize`: 13a by default, `none` for
    pre-tokenized corpora), chrF and TER (sacreBLEU defaults) and ROUGE-1/2/L with a variable
    number of references per example. Returns `bleu`, `chrf`, `rouge1`, `rouge2`, `rougeL`,
    `sacrebleu_tokenize` and `bleu_signature`, `chrf_signature`, `rouge_signature`, and with
    `ter` also `ter` and `ter_signature` (TER's shift search is quadratic in the output length:
    seconds per evaluation on long or degenerate outputs, so it is asked for, not default)."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference list per hypothesis and at least one of each; got "
                         f"{len(hypotheses)} hypotheses, {len(references)} reference lists")
    hyps, streams = list(hypotheses), _reference_streams(references)
    bleu, chrf = BLEU(tokenize=bleu_tokenize), CHRF()
    out = {
        "sacrebleu_tokenize": bleu_tokenize,
        "bleu": bleu.corpus_score(hyps, streams).score,
        "chrf": chrf.corpus_score(hyps, streams).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        **rouge(hyps, references),
    }
    if ter:
        scorer = TER()
        out.update(ter=scorer.corpus_score(hyps, streams).score, ter_signature=str(scorer.get_signature()))
    return out


def rouge(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """ROUGE-1/2/L F1 × 100 (rouge-score, Porter stemming, its default tokenizer, which lower-
    cases and keeps only [a-z0-9] tokens). With several references an example scores, for each
    ROUGE type, against the reference that gives it the highest F1 (the usual max over
    references; rouge-score's `score_multi`); the corpus score is the mean over examples."""
    if not hypotheses:
        raise ValueError("ROUGE needs at least one hypothesis")
    from rouge_score import rouge_scorer  # here: it imports NLTK and SciPy (~1 s in every Ray worker otherwise)

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_MemoTokenizer())
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, refs in zip(hypotheses, references, strict=True):
        best = scorer.score_multi(list(refs), hyp)
        for kind in ROUGE_TYPES:
            totals[kind] += best[kind].fmeasure
    return {**{k: 100 * v / len(hypotheses) for k, v in totals.items()}, "rouge_signature": ROUGE_SIGNATURE}


class _MemoTokenizer:
    """rouge-score's default tokenizer with its Porter stemmer (`use_stemmer=True`: its own
    `tokenize` function and stemmer), remembering each text's tokens and each word's stem for
    one corpus: `score_multi` tokenizes the hypothesis again for every reference, and the same
    words recur across examples. Same tokens, so the same scores (tests/test_evaluate.py); on
    the default run's 500 test outputs × 4 references, 1.32 s → 0.43 s per evaluation."""

    def __init__(self):
        from nltk.stem import porter
        from rouge_score import tokenize

        self._tokenize, stemmer = tokenize.tokenize, porter.PorterStemmer()
        self.stem = functools.lru_cache(maxsize=None)(stemmer.stem)  # what `tokenize` asks of a stemmer
        self._texts: dict[str, list[str]] = {}

    def tokenize(self, text: str) -> list[str]:
        tokens = self._texts.get(text)
        if tokens is None:
            tokens = self._texts[text] = self._tokenize(text, self)
        return list(tokens)


def bertscore(hypotheses: Sequence[str], references: Sequence[Sequence[str]], model_path: str | Path, *,
              num_layers: int | None = None, batch_size: int = 32, device="cpu") -> dict[str, Any]:
    """BERTScore precision/recall/F1 × 100 (bert-score package, no idf, no baseline rescaling)
    from a model stored locally at `model_path`. With several references each of P, R and F1
    is the max over the example's references (bert-score's own multi-reference rule); corpus
    scores are means over examples. `num_layers` defaults to bert-score's recommended layer for
    a model whose directory is named like a known model (e.g. `roberta-large` → 17); otherwise
    it must be given. Returns `bertscore_precision`, `bertscore_recall`, `bertscore_f1`,
    `bertscore_signature`."""
    path = check_bertscore_model(model_path)
    try:
        import bert_score
    except ImportError as err:
        raise ImportError("BERTScore was requested but the `bert-score` package is not installed; "
                          "`pip install bert-score` (kdbench does not depend on it)") from err
    if num_layers is None:
        num_layers = bert_score.utils.model2layers.get(path.name)
        if num_layers is None:
            raise ValueError(f"BERTScore model {str(path)!r} has no known default layer; give num_layers "
                             f"(bert-score's recommended layer for the model it holds)")
    scorer = bert_score.BERTScorer(model_type=str(path), num_layers=num_layers, batch_size=batch_size,
                                   device=str(device))
    precision, recall, f1 = scorer.score(list(hypotheses), [list(r) for r in references])
    return {
        "bertscore_precision": 100 * precision.mean().item(),
        "bertscore_recall": 100 * recall.mean().item(),
        "bertscore_f1": 100 * f1.mean().item(),
        "bertscore_signature": f"{scorer.hash}, max over refs, x100",
    }


# ---------------------------------------------------------------------------- one model

def decode(tokenizer, id_lists: list[list[int]]) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(id_lists, skip_special_tokens=True)]


def evaluate_model(model, tokenizer, test_rows: list[dict], lengths: Lengths, *, num_beams: int,
                   batch_size: int, device, bertscore_model: str | None = None,
                   bertscore_num_layers: int | None = None, bleu_tokenize: str = "13a",
                   ter: bool = False) -> dict[str, Any]:
    """Generate for the test split and score against all references (quality only: costs are
    measured by `bench.profiling`, one model at a time, after the grid).

    Returns the `score` fields; `bertscore_*` when `bertscore_model` (a local directory) is
    given (off by default; a missing model fails before any generation); `hypotheses` (every
    decoded output, aligned with `test_rows`); the generation settings `eval_num_beams`,
    `eval_batch_size`, `max_new_tokens`; `eval_seconds` and five `samples`."""
    if bertscore_model is not None:
        check_bertscore_model(bertscore_model)
    start = time.perf_counter()
    sources = encode(tokenizer, [r["source"] for r in test_rows], lengths.max_source)
    references = [r["references"] for r in test_rows]
    outputs = generate_ids(model, sources, num_beams=num_beams, batch_size=batch_size,
                           pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                           max_new_tokens=lengths.max_target, device=device)
    hyps = decode(tokenizer, [o[0] for o in outputs])
    metrics = score(hyps, references, bleu_tokenize, ter)
    if bertscore_model is not None:
        metrics.update(bertscore(hyps, references, bertscore_model, num_layers=bertscore_num_layers,
                                 batch_size=batch_size, device=device))
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics.update(eval_num_beams=num_beams, eval_batch_size=batch_size, max_new_tokens=lengths.max_target)
    metrics["hypotheses"] = hyps
    metrics["samples"] = [{"source": r["source"], "output": h} for r, h in zip(test_rows[:5], hyps[:5])]
    return metrics


def headline_score(metric: str, hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                   bleu_tokenize: str = "13a") -> float:
    """One corpus metric (a key of `score`), computed alone: the dev metric of checkpoint
    selection."""
    if metric in ("bleu", "chrf", "ter"):
        scorer = BLEU(tokenize=bleu_tokenize) if metric == "bleu" else {"chrf": CHRF, "ter": TER}[metric]()
        value = scorer.corpus_score(list(hypotheses), _reference_streams(references)).score
        return -value if metric == "ter" else value
    if metric in ROUGE_TYPES:
        return rouge(hypotheses, references)[metric]
    raise ValueError(f"unknown metric {metric!r}; allowed: bleu, chrf, ter, {', '.join(ROUGE_TYPES)}")


def dev_pairs(tokenizer, rows: list[dict], lengths: Lengths) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) of `rows`: the target is a row's `target`, or else its first
    reference; truncated as in training (targets without eos: the loss adds it)."""
    sources = encode(tokenizer, [r["source"] for r in rows], lengths.max_source)
    targets = encode(tokenizer, [r["target"] if "target" in r else r["references"][0] for r in rows],
                     lengths.max_target, add_eos=False)
    return list(zip(sources, targets))


def dev_set(tokenizer, dev_rows: list[dict], lengths: Lengths, spec, metric: str, bleu_tokenize: str = "13a"):
    """What a training run evaluates on dev (`bench.distill.loop.DevSet`): the dev loss on the
    first `spec.dev_examples` rows and, unless selection is by loss or off, the task's headline
    `metric` of greedy outputs for the first `spec.dev_metric_examples` rows."""
    from bench.distill.loop import DevSet

    dev = DevSet(dev_pairs(tokenizer, dev_rows[: spec.dev_examples], lengths))
    if spec.select == "dev_metric":
        rows = dev_rows[: spec.dev_metric_examples]
        refs = [r["references"] if "references" in r else [r["target"]] for r in rows]
        dev.sources = encode(tokenizer, [r["source"] for r in rows], lengths.max_source)
        dev.score = lambda outputs: headline_score(metric, decode(tokenizer, outputs), refs, bleu_tokenize)
        dev.metric = f"dev_{metric}"
    return dev
