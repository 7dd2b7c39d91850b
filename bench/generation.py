"""Batched generation (encoder-decoder or decoder-only, via `bench.lm`): evaluation outputs,
teacher PTs, student PTs.

Inputs are sorted by length so each batch pads little, and results come back in input order.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.distill.losses import IGNORE_INDEX
from bench.lm import generate_batch


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def generate_ids(
    model,
    sources: Sequence[Sequence[int]],
    *,
    pad_id: int,
    eos_id: int,
    max_new_tokens: int,
    num_beams: int = 1,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    batch_size: int = 64,
    device="cpu",
    **sampling,
) -> list[list[list[int]]]:
    """For every source, `num_return_sequences` outputs as token ids (eos and pad stripped).
    `sampling` passes temperature / top_p / top_k through to `generate`."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs: list[list[list[int]] | None] = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = pad_batch([sources[i] for i in idx], pad_id, device)
        out = generate_batch(
            model, ids, mask, pad_id=pad_id, eos_id=eos_id, sep_id=eos_id, max_new_tokens=max_new_tokens,
            num_beams=num_beams, num_return_sequences=num_return_sequences,
            do_sample=do_sample, early_stopping=num_beams > 1 or None, **sampling,
        )
        out = out.view(len(idx), num_return_sequences, -1).tolist()
        for j, i in enumerate(idx):
            outputs[i] = [_strip(seq, pad_id, eos_id) for seq in out[j]]
    if was_training:
        model.train()
    return outputs  # type: ignore[return-value]


def _strip(seq: list[int], pad_id: int, eos_id: int) -> list[int]:
    """Drop the decoder start token and everything from the first eos on."""
    body = seq[1:]
    if eos_id in body:
        body = body[: body.index(eos_id)]
    return [t for t in body if t != pad_id]


def labels_from_targets(targets: Sequence[Sequence[int]], eos_id: int, max_len: int, device) -> torch.Tensor:
    """Target id lists → (B, T) labels ending in eos, padded with IGNORE_INDEX."""
    seqs = [list(t[: max_len - 1]) + [eos_id] for t in targets]
    width = max(len(s) for s in seqs)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(seqs):
        labels[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return labels.to(device)
