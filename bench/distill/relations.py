"""Relation KD (MiniLM / MiniLMv2, Wang et al. 2020, 2021): the student matches the teacher's
self-relations of encoder activations — how every position relates to every other — which do
not depend on model width, so teacher and student may differ in d_model and head count.

For a vector type A ∈ {Q, K, V, hidden} of a layer, A (B, T, d) is split into R relation heads
(regrouping heads when the models' head counts differ), and the relation is
softmax(A_r A_rᵀ / √(d/R)) over non-padding key positions. The loss compares teacher and
student relations per query position (KL(teacher ‖ student) or RMSE), averaged over valid
queries, relation heads and vector types.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def encoder_layers(model) -> list[nn.Module]:
    """The encoder blocks of a T5- or BART-style model."""
    model = getattr(model, "module", model)
    if hasattr(model, "encoder") and hasattr(model.encoder, "block"):  # T5
        return list(model.encoder.block)
    return list(model.model.encoder.layers)  # BART


def _qkv(layer: nn.Module) -> dict[str, nn.Module]:
    if hasattr(layer, "layer"):  # T5 block
        att = layer.layer[0].SelfAttention
        return {"q": att.q, "k": att.k, "v": att.v}
    att = layer.self_attn
    return {"q": att.q_proj, "k": att.k_proj, "v": att.v_proj}


@contextlib.contextmanager
def capture(model, vectors: tuple[str, ...], layer_index: int = -1) -> Iterator[dict[str, torch.Tensor]]:
    """Record the chosen vector types ("q", "k", "v", "hidden") of one encoder layer during the
    forward passes inside the block."""
    acts: dict[str, torch.Tensor] = {}
    if not vectors:
        yield acts
        return
    layer = encoder_layers(model)[layer_index]
    handles = []
    modules = _qkv(layer)
    for name in vectors:
        target = layer if name == "hidden" else modules[name]

        def hook(mod, inputs, output, name=name):
            acts[name] = output[0] if isinstance(output, tuple) else output

        handles.append(target.register_forward_hook(hook))
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


def relation_log_probs(a: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, d) activations → (B, R, T, T) log relation distributions over key positions."""
    b, t, d = a.shape
    if d % heads:
        raise ValueError(f"relation heads {heads} must divide the hidden size {d}")
    a = a.float().view(b, t, heads, d // heads).transpose(1, 2)
    scores = a @ a.transpose(-1, -2) / (d // heads) ** 0.5
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def common_heads(wanted: int, *sizes: int) -> int:
    """The most relation heads ≤ `wanted` that divide every hidden size (regrouping heads)."""
    return next(r for r in range(wanted, 0, -1) if all(d % r == 0 for d in sizes))


class RelationKD(nn.Module):
    """Self-relation distillation over one encoder layer's vector types (needs activations)."""

    needs_teacher = True
    needs_activations = True

    def __init__(self, vectors: tuple[str, ...] = ("q", "k", "v"), relation_heads: int = 4,
                 kind: str = "kl"):
        super().__init__()
        if kind not in ("kl", "rmse"):
            raise ValueError(f"relation loss kind {kind!r}; allowed: kl, rmse")
        self.vectors, self.relation_heads, self.kind = vectors, relation_heads, kind

    def forward(self, student_logits, labels, teacher_logits=None, *, student_acts, teacher_acts, source_mask):
        valid = source_mask.bool()[:, None, :, None]  # (B, 1, T, 1): real query positions
        total = 0.0
        for name in self.vectors:
            heads = common_heads(self.relation_heads, student_acts[name].shape[-1], teacher_acts[name].shape[-1])
            n = valid.sum() * heads
            log_s = relation_log_probs(student_acts[name], source_mask, heads)
            log_t = relation_log_probs(teacher_acts[name].detach(), source_mask, heads)
            pad_key = ~source_mask.bool()[:, None, None, :]
            if self.kind == "kl":
                per_query = (log_t.exp() * (log_t - log_s)).masked_fill(pad_key, 0).sum(-1, keepdim=True)
                total = total + (per_query * valid).sum() / n
            else:  # mean over the real keys of each query (padding must not dilute it)
                keys = source_mask.sum(-1)[:, None, None, None].clamp_min(1)
                sq = ((log_t.exp() - log_s.exp()) ** 2).masked_fill(pad_key, 0).sum(-1, keepdim=True) / keys
                total = total + ((sq * valid).sum() / n).sqrt()
        return total / len(self.vectors)
