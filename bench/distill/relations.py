"""Relation KD (MiniLM / MiniLMv2, Wang et al. 2020, 2021; KD4Gen's attention- and hidden-state
relation KD): the student matches the teacher's self-relations of activations — how every
position relates to every other — which do not depend on model width, so teacher and student
may differ in d_model and head count.

A *site* names the activations of the last layer that a relation is taken over:

| site | activations | positions | causal |
|---|---|---|---|
| `enc_self_q/k/v` | encoder self-attention Q/K/V | source | no |
| `dec_self_q/k/v` | decoder self-attention Q/K/V | target | yes |
| `dec_cross_q` | decoder cross-attention Q | target | no (as KD4Gen's code) |
| `dec_cross_k/v` | decoder cross-attention K/V | source | no |
| `enc_hidden` / `dec_hidden` | last hidden states (after the final norm) | source / target | no / yes |

For a site, A (B, L, d) is split into R relation heads (regrouping heads when the models' head
counts differ) and the relation is softmax(A_r A_rᵀ / √(d/R)) over the valid key positions
(and, for causal sites, keys at or before the query). The loss compares teacher and student
relations per query row — KL(teacher ‖ student) or RMSE — and averages over valid queries
(`token`: over all of them; `example`: per (example, head), then over those, as KD4Gen does)
and over the term's sites.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.distill.losses import IGNORE_INDEX, _check_normalization

ATTENTION_SITES = ("enc_self_q", "enc_self_k", "enc_self_v", "dec_self_q", "dec_self_k", "dec_self_v",
                   "dec_cross_q", "dec_cross_k", "dec_cross_v")
HIDDEN_SITES = ("enc_hidden", "dec_hidden")
SITES = ATTENTION_SITES + HIDDEN_SITES
# (positions, causal) of each site
_GEOMETRY = {
    **{f"enc_self_{v}": ("source", False) for v in "qkv"},
    **{f"dec_self_{v}": ("target", True) for v in "qkv"},
    "dec_cross_q": ("target", False), "dec_cross_k": ("source", False), "dec_cross_v": ("source", False),
    "enc_hidden": ("source", False), "dec_hidden": ("target", True),
}
# Sites of the last encoder layer under their earlier names (encoder-only relation KD).
LEGACY = {"q": "enc_self_q", "k": "enc_self_k", "v": "enc_self_v", "hidden": "enc_hidden"}


def _stacks(model):
    model = getattr(model, "module", model)
    if hasattr(model, "encoder") and hasattr(model.encoder, "block"):  # T5
        return "t5", model.encoder, model.decoder
    return "bart", model.model.encoder, model.model.decoder


def encoder_layers(model) -> list[nn.Module]:
    """The encoder blocks of a T5- or BART-style model."""
    arch, enc, _ = _stacks(model)
    return list(enc.block if arch == "t5" else enc.layers)


def site_module(model, site: str) -> nn.Module:
    """The module whose output holds a site's activations (see the module docstring)."""
    arch, enc, dec = _stacks(model)
    if site not in _GEOMETRY:
        raise ValueError(f"unknown relation site {site!r}; allowed: {', '.join(SITES)}")
    if site == "enc_hidden":
        return enc.final_layer_norm if arch == "t5" else enc.layers[-1]
    if site == "dec_hidden":
        return dec.final_layer_norm if arch == "t5" else dec.layers[-1]
    stack, kind, vec = site.split("_")
    layer = (enc if stack == "enc" else dec)
    layer = (layer.block if arch == "t5" else layer.layers)[-1]
    if arch == "t5":
        att = layer.layer[0].SelfAttention if kind == "self" else layer.layer[1].EncDecAttention
        return getattr(att, vec)
    att = layer.self_attn if kind == "self" else layer.encoder_attn
    return getattr(att, f"{vec}_proj")


@contextlib.contextmanager
def capture(model, sites: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the activations of the given sites during the forward passes inside the block."""
    acts: dict[str, torch.Tensor] = {}
    if not sites:
        yield acts
        return
    handles = []
    for site in sites:
        def hook(mod, inputs, output, site=site):
            acts[site] = output[0] if isinstance(output, tuple) else output

        handles.append(site_module(model, LEGACY.get(site, site)).register_forward_hook(hook))
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


def relation_log_probs(a: torch.Tensor, mask: torch.Tensor, heads: int, causal: bool = False) -> torch.Tensor:
    """(B, T, d) activations → (B, R, T, T) log relation distributions over the valid keys (and,
    if causal, the keys at or before each query)."""
    b, t, d = a.shape
    if d % heads:
        raise ValueError(f"relation heads {heads} must divide the hidden size {d}")
    a = a.float().view(b, t, heads, d // heads).transpose(1, 2)
    scores = a @ a.transpose(-1, -2) / (d // heads) ** 0.5
    return F.log_softmax(scores.masked_fill(~_keys(mask, causal), torch.finfo(scores.dtype).min), dim=-1)


def _keys(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) True where key j is visible from query i."""
    keys = mask.bool()[:, None, None, :]
    if causal:
        t = mask.shape[-1]
        keys = keys & torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()
    return keys


def common_heads(wanted: int, *sizes: int) -> int:
    """The most relation heads ≤ `wanted` that divide every hidden size (regrouping heads)."""
    return next(r for r in range(wanted, 0, -1) if all(d % r == 0 for d in sizes))


class RelationKD(nn.Module):
    """Self-relation distillation over one or more sites (needs activations), averaged over them.

    `relation_heads`: heads of the Q/K/V relations (regrouped to divide both widths; hidden
    sites use one head over the full width, as KD4Gen). `kind`: `kl` (KL(teacher‖student) per
    query row) or `rmse`."""

    needs_teacher = True
    needs_activations = True

    def __init__(self, sites: tuple[str, ...] = ("enc_self_q", "enc_self_k", "enc_self_v"),
                 relation_heads: int = 4, kind: str = "kl", normalization: str = "token"):
        super().__init__()
        if kind not in ("kl", "rmse"):
            raise ValueError(f"relation loss kind {kind!r}; allowed: kl, rmse")
        unknown = [s for s in sites if LEGACY.get(s, s) not in _GEOMETRY]
        if unknown or not sites:
            raise ValueError(f"unknown relation site(s) {unknown or sites}; allowed: {', '.join(SITES)}")
        self.vectors = tuple(sites)  # the capture keys
        self.relation_heads, self.kind = relation_heads, kind
        self.normalization = _check_normalization(normalization)

    def forward(self, student_logits, labels, teacher=None, *, student_acts, teacher_acts, source_mask):
        total = 0.0
        for name in self.vectors:
            site = LEGACY.get(name, name)
            positions, causal = _GEOMETRY[site]
            if positions == "source":
                mask = source_mask
            else:
                mask = labels.ne(IGNORE_INDEX).long()
            s, t = student_acts[name], teacher_acts[name].detach()
            s, t = s[:, : mask.shape[1]], t[:, : mask.shape[1]]
            wanted = 1 if site in HIDDEN_SITES else self.relation_heads
            heads = common_heads(wanted, s.shape[-1], t.shape[-1])
            total = total + self._site_loss(s, t, mask, heads, causal)
        return total / len(self.vectors)

    def _site_loss(self, s, t, mask, heads: int, causal: bool) -> torch.Tensor:
        log_s = relation_log_probs(s, mask, heads, causal)
        log_t = relation_log_probs(t, mask, heads, causal)
        hidden = ~_keys(mask, causal)
        valid = mask.bool()[:, None, :]  # (B, 1, T) real query positions
        if self.kind == "kl":
            per_query = (log_t.exp() * (log_t - log_s)).masked_fill(hidden, 0).sum(-1)
        else:  # mean over the visible keys of each query (padding must not dilute it)
            keys = (~hidden).sum(-1).clamp_min(1)
            per_query = ((log_t.exp() - log_s.exp()) ** 2).masked_fill(hidden, 0).sum(-1) / keys
        per_query = per_query * valid  # (B, R, T)
        if self.normalization == "token":
            value = per_query.sum() / (valid.sum() * heads).clamp_min(1)
        else:
            lengths = valid.sum(-1).clamp_min(1)  # (B, 1)
            value = (per_query.sum(-1) / lengths).mean()
        return value.sqrt() if self.kind == "rmse" else value
