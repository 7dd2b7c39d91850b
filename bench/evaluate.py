"""Quality of one model: generate the test split once, then score it against every reference.

Owns the quality metrics and their signatures — multi-reference sacreBLEU BLEU, chrF and TER,
ROUGE-1/2/L (rouge-score), optional BERTScore from a local model — the decoded test outputs
(kept whole, for paired bootstrap later), and the dev-set cross-entropy of a model.
Cost metrics (latency, throughput, memory, FLOPs, size) are in `bench/cost.py`.

All corpus scores are on a 0–100 scale (TER: lower is better, the others higher).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF, TER

from bench.cost import profile_model
from bench.data import Lengths, encode
from bench.distill.loop import dev_loss as loop_dev_loss
from bench.generation import generate_ids

logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." per call

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


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Corpus BLEU, chrF and TER (sacreBLEU defaults) and ROUGE-1/2/L with a variable number of
    references per example. Returns `bleu`, `chrf`, `ter`, `rouge1`, `rouge2`, `rougeL` and
    `bleu_signature`, `chrf_signature`, `ter_signature`, `rouge_signature`."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference list per hypothesis and at least one of each; got "
                         f"{len(hypotheses)} hypotheses, {len(references)} reference lists")
    hyps, streams = list(hypotheses), _reference_streams(references)
    bleu, chrf, ter = BLEU(), CHRF(), TER()
    return {
        "bleu": bleu.corpus_score(hyps, streams).score,
        "chrf": chrf.corpus_score(hyps, streams).score,
        "ter": ter.corpus_score(hyps, streams).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "ter_signature": str(ter.get_signature()),
        **rouge(hyps, references),
    }


def rouge(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """ROUGE-1/2/L F1 × 100 (rouge-score, Porter stemming, its default tokenizer, which lower-
    cases and keeps only [a-z0-9] tokens). With several references an example scores, for each
    ROUGE type, against the reference that gives it the highest F1 (the usual max over
    references; rouge-score's `score_multi`); the corpus score is the mean over examples."""
    if not hypotheses:
        raise ValueError("ROUGE needs at least one hypothesis")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, refs in zip(hypotheses, references, strict=True):
        best = scorer.score_multi(list(refs), hyp)
        for kind in ROUGE_TYPES:
            totals[kind] += best[kind].fmeasure
    return {**{k: 100 * v / len(hypotheses) for k, v in totals.items()}, "rouge_signature": ROUGE_SIGNATURE}


def check_bertscore_model(model_path: str | Path) -> Path:
    """The local BERTScore model directory, or a FileNotFoundError saying how to provide it.
    kdbench never downloads a scoring model: evaluation must not depend on the network."""
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"BERTScore model {str(model_path)!r} is not available locally (no config.json in that "
            f"directory). kdbench does not download scoring models: on a machine with network run e.g. "
            f"`huggingface-cli download roberta-large --local-dir {model_path}`, make the directory "
            f"readable on every node, and point the BERTScore model setting at it (or leave BERTScore off)")
    return path


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
                   batch_size: int, latency_examples: int, device, profile_examples: int = 128,
                   profile_num_beams: int = 4, bertscore_model: str | None = None,
                   bertscore_num_layers: int | None = None) -> dict[str, Any]:
    """Generate for the test split, score against all references, profile the model's costs.

    Returns the `score` fields; `bertscore_*` when `bertscore_model` (a local directory) is
    given (off by default; a missing model fails before any generation); `hypotheses` (every
    decoded output, aligned with `test_rows`); the generation settings `eval_num_beams`,
    `eval_batch_size`, `max_new_tokens`; the `bench.cost.profile_model` fields over the first
    `profile_examples` test inputs (batch-1 latencies over the first `latency_examples`, beam
    latency with `profile_num_beams`); `latency_ms` (= `latency_greedy_ms`), `params`,
    `eval_seconds` and five `samples`."""
    if bertscore_model is not None:
        check_bertscore_model(bertscore_model)
    start = time.perf_counter()
    sources = encode(tokenizer, [r["source"] for r in test_rows], lengths.max_source)
    references = [r["references"] for r in test_rows]
    outputs = generate_ids(model, sources, num_beams=num_beams, batch_size=batch_size,
                           pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                           max_new_tokens=lengths.max_target, device=device)
    hyps = decode(tokenizer, [o[0] for o in outputs])
    metrics = score(hyps, references)
    if bertscore_model is not None:
        metrics.update(bertscore(hyps, references, bertscore_model, num_layers=bertscore_num_layers,
                                 batch_size=batch_size, device=device))
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics.update(profile_model(model, tokenizer, sources[:profile_examples], device=device,
                                 num_beams=profile_num_beams, batch_size=batch_size,
                                 latency_examples=latency_examples, max_new_tokens=lengths.max_target))
    metrics["latency_ms"] = metrics["latency_greedy_ms"]
    metrics["params"] = metrics["params_total"]
    metrics.update(eval_num_beams=num_beams, eval_batch_size=batch_size, max_new_tokens=lengths.max_target)
    metrics["hypotheses"] = hyps
    metrics["samples"] = [{"source": r["source"], "output": h} for r, h in zip(test_rows[:5], hyps[:5])]
    return metrics


def dev_pairs(tokenizer, rows: list[dict], lengths: Lengths) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) of `rows`: the target is a row's `target`, or else its first
    reference; truncated as in training (targets without eos: the loss adds it)."""
    sources = encode(tokenizer, [r["source"] for r in rows], lengths.max_source)
    targets = encode(tokenizer, [r["target"] if "target" in r else r["references"][0] for r in rows],
                     lengths.max_target, add_eos=False)
    return list(zip(sources, targets))


def dev_loss(model, tokenizer, rows: list[dict], lengths: Lengths, *, batch_size: int, device) -> float:
    """Mean per-token cross-entropy (nats) of a seq2seq model on `rows`, teacher-forced
    (`bench.distill.loop.dev_loss` on `dev_pairs`): the mean is over all target tokens of all
    rows, eos included, padding excluded; dropout off, training mode restored after."""
    if not rows:
        raise ValueError("dev_loss needs at least one row")
    return loop_dev_loss(model, dev_pairs(tokenizer, rows, lengths), pad_id=tokenizer.pad_token_id,
                         eos_id=tokenizer.eos_token_id, max_target=lengths.max_target, device=device, batch_size=batch_size)
