"""Test-set evaluation of one model: multi-reference sacreBLEU and chrF, size and latency."""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF

from bench.data import Lengths, encode
from bench.generation import generate_ids


def score(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Corpus BLEU and chrF with a variable number of references per example."""
    width = max(len(r) for r in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    bleu, chrf = BLEU(), CHRF()
    return {
        "bleu": bleu.corpus_score(list(hypotheses), streams).score,
        "chrf": chrf.corpus_score(list(hypotheses), streams).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def decode(tokenizer, id_lists: list[list[int]]) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(id_lists, skip_special_tokens=True)]


def evaluate_model(model, tokenizer, test_rows: list[dict], lengths: Lengths, *, num_beams: int,
                   batch_size: int, latency_examples: int, device) -> dict[str, Any]:
    """Generate for the test split, score against all references, time batch-1 decoding."""
    start = time.perf_counter()
    sources = encode(tokenizer, [r["source"] for r in test_rows], lengths.max_source)
    kw = dict(pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
              max_new_tokens=lengths.max_target, device=device)
    outputs = generate_ids(model, sources, num_beams=num_beams, batch_size=batch_size, **kw)
    hyps = decode(tokenizer, [o[0] for o in outputs])
    metrics = score(hyps, [r["references"] for r in test_rows])
    metrics["latency_ms"] = batch1_latency_ms(model, sources[:latency_examples], **kw)
    metrics["params"] = sum(p.numel() for p in model.parameters())
    metrics["eval_num_beams"] = num_beams
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics["samples"] = [{"source": r["source"], "output": h} for r, h in zip(test_rows[:5], hyps[:5])]
    return metrics


def batch1_latency_ms(model, sources, **kw) -> float:
    """Mean greedy decoding time per example at batch size 1 (after one warm-up example)."""
    generate_ids(model, sources[:1], batch_size=1, **kw)
    if str(kw.get("device", "cpu")).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    generate_ids(model, sources, batch_size=1, **kw)
    if str(kw.get("device", "cpu")).startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / max(1, len(sources))
