"""One interface over the two model families: encoder-decoder (T5, BART) and decoder-only
(GPT-2 style). Everything that runs a model on (source, target) pairs goes through here, so
losses, the training loop and evaluation never ask which family they hold.

Decoder-only models read `source ids + [sep] + target ids` as one sequence (sep = eos, unless
the source already ends with it). Their logits are gathered at the positions that predict the
target tokens, so both families return logits aligned with the labels — the prompt is never
part of the loss, and word-level KD between an encoder-decoder teacher and a decoder-only
student (same tokenizer) compares the same target positions.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.distill.losses import IGNORE_INDEX
from bench.sampling import plain_sampling, sample


def bare(model):
    """The model behind a DDP wrapper."""
    return getattr(model, "module", model)


def is_seq2seq(model_or_config) -> bool:
    config = getattr(bare(model_or_config), "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs of an encoder-decoder: the labels shifted right behind the start token."""
    dec = labels.new_full(labels.shape, pad_id)
    dec[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1].eq(IGNORE_INDEX), pad_id)
    dec[:, 0] = start_id
    return dec


def with_separator(source: Sequence[int], sep_id: int) -> list[int]:
    """A decoder-only prompt: the source ids ending with the separator."""
    return list(source) if source and source[-1] == sep_id else [*source, sep_id]


def forward_logits(model, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, *,
                   pad_id: int, sep_id: int) -> torch.Tensor:
    """Next-token logits (B, T, V) aligned with `labels` (B, T), teacher-forced.

    `input_ids`/`mask` are right-padded sources; `labels` hold the target ids (ending in eos)
    with IGNORE_INDEX after each target's end. An encoder-decoder's decoder starts from its
    own config's `decoder_start_token_id`."""
    if is_seq2seq(model):
        start_id = bare(model).config.decoder_start_token_id
        return model(input_ids=input_ids, attention_mask=mask,
                     decoder_input_ids=shift_right(labels, start_id, pad_id)).logits
    sources = [with_separator(row[: int(m.sum())].tolist(), sep_id) for row, m in zip(input_ids, mask)]
    targets = [lab[lab.ne(IGNORE_INDEX)].tolist() for lab in labels]
    width = max(len(s) + len(t) for s, t in zip(sources, targets))
    ids = torch.full((len(sources), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(sources), width), dtype=torch.long)
    for i, (s, t) in enumerate(zip(sources, targets)):
        ids[i, : len(s) + len(t)] = torch.as_tensor(s + t, dtype=torch.long)
        attn[i, : len(s) + len(t)] = 1
    logits = model(input_ids=ids.to(input_ids.device), attention_mask=attn.to(input_ids.device)).logits
    # the logit that predicts target token j of row i sits at position len(source_i) - 1 + j
    starts = torch.tensor([len(s) - 1 for s in sources], device=logits.device)
    positions = (starts[:, None] + torch.arange(labels.shape[1], device=logits.device)).clamp_max(width - 1)
    return logits.gather(1, positions[:, :, None].expand(-1, -1, logits.shape[-1]))


def generate_batch(model, input_ids: torch.Tensor, mask: torch.Tensor, *, pad_id: int, eos_id: int,
                   sep_id: int, **generate_kwargs) -> torch.Tensor:
    """`model.generate` for one right-padded batch; returns only the generated tokens (for an
    encoder-decoder, behind its start token, as `generate` gives them). An encoder-decoder with
    a plain generation config samples in `bench.sampling`'s loop."""
    if is_seq2seq(model):
        if (plain := plain_sampling(model, generate_kwargs)) is not None:
            return sample(model, input_ids, mask, pad_id=pad_id, eos_id=eos_id, **plain)
        return model.generate(input_ids=input_ids, attention_mask=mask, pad_token_id=pad_id,
                              eos_token_id=eos_id, **generate_kwargs)
    prompts = [with_separator(row[: int(m.sum())].tolist(), sep_id) for row, m in zip(input_ids, mask)]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
        ids[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
        attn[i, width - len(p):] = 1
    out = model.generate(input_ids=ids.to(input_ids.device), attention_mask=attn.to(input_ids.device),
                         pad_token_id=pad_id, eos_token_id=eos_id, **generate_kwargs)
    new = out[:, width:]
    start = new.new_full((new.shape[0], 1), pad_id)  # the same shape as an encoder-decoder's output
    return torch.cat([start, new], dim=1)
