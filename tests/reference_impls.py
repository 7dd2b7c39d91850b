"""Independent re-derivations of the KD losses of four reference codebases, used only by
`tests/test_reference_losses.py` to check `bench/distill/losses.py` and `relations.py`.

Each function re-derives (it does not copy) the formula as the cited codebase defines it:
the same mixing-weight names and conventions, the same temperature handling and the same
reduction, so that a test can state the exact relation to ours. They compute in the dtype
of their inputs (the tests pass float64) and share nothing with `bench/`.

References read (commit in brackets):
* Calderon et al. 2023, `nitaytech/KD4Gen` [2efc318], `src/kd_utils.py`.
* DistiLLM, `jongwooko/distillm` [17c0f98], `distillm/losses.py`.
* GKD in TRL, `huggingface/trl`, `trl/trainer/gkd_trainer.py`, `GKDTrainer.generalized_jsd_loss`
  (the version with `labels`, β endpoints and a log-sum-exp mixture).
* MiniLMv2, `bloomberg/minilmv2.bb` [0d78e20], `minilmv2/minilmv2.py`, `MiniLM`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def _kl_rows(log_target: torch.Tensor, log_input: torch.Tensor) -> torch.Tensor:
    """Σ_v target·(log target − log input) over the last dim, terms with target == 0 being 0
    (what `torch.kl_div(input, target)` does through xlogy)."""
    target = log_target.exp()
    return torch.where(target > 0, target * (log_target - log_input), torch.zeros_like(target)).sum(-1)


# --------------------------------------------------------------------------------------
# KD4Gen (the paper's code), src/kd_utils.py
# --------------------------------------------------------------------------------------


def hf_top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Teacher nucleus filter of KD4Gen's `src/hf_transformers/top_p_logits_warper.py`
    (`TopPLogitsWarper.__call__`, HF's warper): sort descending, a token is removed when the
    cumulative probability *before* it already exceeds top_p (the right shift keeps the first
    token over the threshold, and the top token always); removed logits become −inf."""
    sorted_logits, order = logits.sort(-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], -1)
    remove_sorted = before > top_p
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def kd4gen_kl_with_masks(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`kl_with_masks(..., is_relations=False)`: for logits (B, T, V) and a (B, T) 0/1 mask.

    Masked rows get −10000 added to every entry (a shift, so their softmax is unchanged and
    their KL is zeroed afterwards anyway); the row KL is the *true* KL (torch.kl_div with a
    probability target includes the teacher's entropy); then a mean over the valid tokens of
    *each example* (length clamped to ≥ 1) and only then a mean over the batch.
    """
    m = mask.to(student.dtype)[..., None]
    student = student + (1 - m) * -10000.0
    teacher = teacher + (1 - m) * -10000.0
    per_token = _kl_rows(F.log_softmax(teacher, -1), F.log_softmax(student, -1)) * mask
    lengths = mask.sum(-1).clamp_min(1)
    return (per_token.sum(-1) / lengths).mean()


def kd4gen_distil_logits_loss(student_logits, teacher_logits, labels_mask, temperature: float = 1.0):
    """`distil_logits_loss`: τ > 0 divides both logits by τ; τ ≤ 0 means "teacher top-p with
    top_p = |τ|" and no softening; either way the result is multiplied by τ²."""
    if temperature > 0:
        student_logits = student_logits / temperature
        teacher_logits = teacher_logits / temperature
    else:
        teacher_logits = hf_top_p_filter(teacher_logits, abs(temperature))
    return kd4gen_kl_with_masks(student_logits, teacher_logits, labels_mask) * temperature**2


def _kd4gen_self_relations(states: torch.Tensor) -> torch.Tensor:
    """`_self_relations`: states·statesᵀ / √(last dim)."""
    return states @ states.transpose(-1, -2) / math.sqrt(states.shape[-1])


def kd4gen_relation_kl(student_rel: torch.Tensor, teacher_rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`kl_with_masks(..., is_relations=True, causal_mask=False)` on (N, T, T) relation scores:
    the mask matrix is the outer product mask_i·mask_j; masked entries get −10000 added before
    the softmax over keys; the pointwise KL is zeroed outside the matrix, summed over keys,
    then a per-example mean over valid queries and a mean over the N rows."""
    mm = (mask[:, :, None] * mask[:, None, :]).to(student_rel.dtype)
    log_s = F.log_softmax(student_rel + (1 - mm) * -10000.0, -1)
    log_t = F.log_softmax(teacher_rel + (1 - mm) * -10000.0, -1)
    pointwise = torch.where(mm > 0, log_t.exp() * (log_t - log_s), torch.zeros_like(mm))
    per_query = pointwise.sum(-1)
    lengths = mask.sum(-1).clamp_min(1)
    return (per_query.sum(-1) / lengths).mean()


def kd4gen_attention_relations_kl(student_states, teacher_states, mask):
    """`distil_attention_relations_loss(kl_loss=True)`: states (B, H, T, d_head). The student's
    heads are concatenated and re-split into the *teacher's* head count, relations are scaled by
    each side's (regrouped) head width, and heads are flattened into the batch (the mask
    repeated per head), so the KL is averaged per (example, head) row."""
    b, heads_t, t, _ = teacher_states.shape
    s = student_states.permute(0, 2, 1, 3).reshape(b, t, heads_t, -1).permute(0, 2, 1, 3)
    rel_s = _kd4gen_self_relations(s).reshape(b * heads_t, t, t)
    rel_t = _kd4gen_self_relations(teacher_states).reshape(b * heads_t, t, t)
    return kd4gen_relation_kl(rel_s, rel_t, mask.repeat_interleave(heads_t, dim=0))


def kd4gen_hidden_relations_kl(student_hidden, teacher_hidden, mask):
    """`distil_hidden_loss(kl_loss=True)` on the encoder: one relation head over the full width."""
    return kd4gen_relation_kl(_kd4gen_self_relations(student_hidden), _kd4gen_self_relations(teacher_hidden), mask)


# --------------------------------------------------------------------------------------
# DistiLLM, distillm/losses.py. No temperature argument; per-token mean over label != -100.
# --------------------------------------------------------------------------------------


def _distillm_token_mean(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    mask = labels.ne(IGNORE).to(x.dtype).reshape(-1)
    return (x.reshape(-1) * mask).sum() / mask.sum()


def distillm_forward_kl(logits, teacher_logits, labels):
    """`forward_kl`: −Σ p·log q, i.e. the cross-entropy H(p, q) = KL(p‖q) + H(p). Entries where
    the *student* logit is ±inf are dropped."""
    p = teacher_logits.softmax(-1)
    log_q = logits.log_softmax(-1)
    prod = (p * log_q).masked_fill(torch.isinf(logits), 0)
    return -_distillm_token_mean(prod.sum(-1), labels)


def distillm_reverse_kl(logits, teacher_logits, labels):
    """`reverse_kl`: Σ q·(log q − log p) = KL(q‖p) (a true KL)."""
    q, log_q, log_p = logits.softmax(-1), logits.log_softmax(-1), teacher_logits.log_softmax(-1)
    inf = torch.isinf(logits) | torch.isinf(teacher_logits)
    prod = (q * log_p).masked_fill(inf, 0) - (q * log_q).masked_fill(inf, 0)
    return -_distillm_token_mean(prod.sum(-1), labels)


def distillm_js_distance(logits, teacher_logits, labels, lam: float = 0.9):
    """`js_distance`: m = (1−lam)·p + lam·q; lam·KL(q‖m) + (1−lam)·KL(p‖m) (the mixture log is
    taken directly: torch.log(m)). At lam ∈ {0, 1} this is 0, not a KL."""
    p, q = teacher_logits.softmax(-1), logits.softmax(-1)
    log_m = ((1 - lam) * p + lam * q).log()
    kl_q_m = _distillm_token_mean((q * (logits.log_softmax(-1) - log_m)).sum(-1), labels)
    kl_p_m = _distillm_token_mean((p * (teacher_logits.log_softmax(-1) - log_m)).sum(-1), labels)
    return lam * kl_q_m + (1 - lam) * kl_p_m


def distillm_tv_distance(logits, teacher_logits, labels):
    """`tv_distance`: ½ Σ |p − q|."""
    tv = 0.5 * (teacher_logits.softmax(-1) - logits.softmax(-1)).abs().sum(-1)
    return _distillm_token_mean(tv, labels)


def distillm_skewed_forward_kl(logits, teacher_logits, labels, lam: float = 0.1):
    """`skewed_forward_kl`: −Σ p·log(lam·p + (1−lam)·q), a cross-entropy H(p, m) =
    KL(p‖m) + H(p) (no teacher-entropy term subtracted)."""
    p, q = teacher_logits.softmax(-1), logits.softmax(-1)
    log_m = (lam * p + (1 - lam) * q).log()
    return -_distillm_token_mean((p * log_m).sum(-1), labels)


def distillm_skewed_reverse_kl(logits, teacher_logits, labels, lam: float = 0.1):
    """`skewed_reverse_kl`: Σ q·(log q − log((1−lam)·p + lam·q)) = KL(q‖m) (a true KL)."""
    p, q = teacher_logits.softmax(-1), logits.softmax(-1)
    log_m = ((1 - lam) * p + lam * q).log()
    return _distillm_token_mean((q * (logits.log_softmax(-1) - log_m)).sum(-1), labels)


# --------------------------------------------------------------------------------------
# GKD in TRL, GKDTrainer.generalized_jsd_loss
# --------------------------------------------------------------------------------------


def trl_generalized_jsd_loss(student_logits, teacher_logits, labels=None, beta: float = 0.5,
                             temperature: float = 1.0):
    """Both logits divided by τ (no τ² factor). β == 0: KL(p‖q); β == 1: KL(q‖p); otherwise
    m = β·p + (1−β)·q (as a log-sum-exp of the two weighted log-probabilities) and
    β·KL(p‖m) + (1−β)·KL(q‖m). Reduction "batchmean": with labels, sum over the kept tokens
    / their count; without, sum / (B·T)."""
    log_q = F.log_softmax(student_logits / temperature, -1)
    log_p = F.log_softmax(teacher_logits / temperature, -1)
    if beta == 0:
        per_token = _kl_rows(log_p, log_q)
    elif beta == 1:
        per_token = _kl_rows(log_q, log_p)
    else:
        log_m = torch.logsumexp(torch.stack([log_q + math.log1p(-beta), log_p + math.log(beta)]), 0)
        per_token = beta * _kl_rows(log_p, log_m) + (1 - beta) * _kl_rows(log_q, log_m)
    if labels is None:
        return per_token.sum() / (per_token.shape[0] * per_token.shape[1])
    keep = labels.ne(IGNORE)
    return per_token[keep].sum() / keep.sum()


# --------------------------------------------------------------------------------------
# MiniLMv2, bloomberg/minilmv2.bb, minilmv2/minilmv2.py
# --------------------------------------------------------------------------------------


def minilmv2_relation_vectors(x: torch.Tensor, relation_heads: int) -> torch.Tensor:
    """`_transpose_for_scores_relation`: (B, T, d) → (B, A_r, T, d / A_r)."""
    b, t, d = x.shape
    return x.view(b, t, relation_heads, d // relation_heads).permute(0, 2, 1, 3)


def minilmv2_kl(rel_t: torch.Tensor, rel_s: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`_get_kl_loss`: per example, keep the first L_b (right-padded) rows and columns,
    KL(softmax(teacher) ‖ softmax(student)) summed over all A_r·L_b query rows (KLDivLoss
    "sum"), divided by A_r·L_b; then the mean over the batch."""
    relation_heads = rel_t.shape[1]
    total = 0.0
    lengths = attention_mask.sum(-1).tolist()
    for b, n in enumerate(lengths):
        log_t = F.log_softmax(rel_t[b, :, :n, :n], -1)
        log_s = F.log_softmax(rel_s[b, :, :n, :n], -1)
        total = total + _kl_rows(log_t, log_s).sum() / (relation_heads * n)
    return total / len(lengths)


def minilmv2_loss(teacher_qkv: dict, student_qkv: dict, attention_mask: torch.Tensor, relation_heads: int,
                  relations: dict | None = None) -> torch.Tensor:
    """`MiniLM.forward`: for each (teacher, student) relation pair with its weight (default the
    Q-Q, K-K, V-V relations with weight 1/3 each), scaled dot products over relation heads
    (√ of each side's relation-head width) compared with `minilmv2_kl`, weighted and summed."""
    relations = relations or {("q", "q"): 1 / 3, ("k", "k"): 1 / 3, ("v", "v"): 1 / 3}
    loss = 0.0
    for (m, n), weight in relations.items():
        rel = {}
        for side, acts in (("t", teacher_qkv), ("s", student_qkv)):
            a = minilmv2_relation_vectors(acts[m], relation_heads)
            c = minilmv2_relation_vectors(acts[n], relation_heads)
            rel[side] = a @ c.transpose(-1, -2) / math.sqrt(a.shape[-1])
        loss = loss + weight * minilmv2_kl(rel["t"].detach(), rel["s"], attention_mask)
    return loss
