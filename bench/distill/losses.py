"""Loss terms. Each is a small module over student logits, labels and (optionally) the teacher's
next-token distributions.

Shapes: logits (B, T, V); labels (B, T) with `IGNORE_INDEX` at padding. Every token-level term
computes one value per target position and reduces them with the same rule (`reduce_tokens`):
`token` — the mean over all non-ignored target tokens of the batch — or `example` — each
example's mean over its tokens, then the mean over examples (KD4Gen's word-level KD; short
targets then weigh as much as long ones).

The teacher's distributions come either as dense logits computed now (a (B, T, V) tensor) or
as `TeacherOutputs`, whose rows may come from the teacher cache (`SparseTopK`: the top-k
log-probs and the tail mass of every position, `bench.teacher_cache`).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
NORMALIZATIONS = ("token", "example")
# A log-probability of "no mass" that stays finite, so that 0 · (log 0 − log x) terms and their
# gradients are 0 rather than NaN in every divergence (exp(NEG) == 0 in float32).
NEG = -1e30


def reduce_tokens(per_token: torch.Tensor, labels: torch.Tensor, normalization: str = "token") -> torch.Tensor:
    """Reduce a (B, T) tensor over the positions whose label is not ignored: `token` = mean over
    every such position of the batch; `example` = per-example mean, then mean over the examples
    that have at least one target token."""
    mask = labels.ne(IGNORE_INDEX)
    if normalization == "token":
        return (per_token * mask).sum() / mask.sum().clamp_min(1)
    if normalization != "example":
        raise ValueError(f"unknown loss normalization {normalization!r}; allowed: {', '.join(NORMALIZATIONS)}")
    counts = mask.sum(1)
    per_example = (per_token * mask).sum(1) / counts.clamp_min(1)
    has = counts > 0
    return per_example[has].mean() if bool(has.any()) else (per_token * mask).sum()


def _check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown loss normalization {normalization!r}; allowed: {', '.join(NORMALIZATIONS)}")
    return normalization


class CrossEntropy(nn.Module):
    """Token-level cross-entropy against the batch's targets (gold or pseudo-targets)."""

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0, normalization: str = "token"):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.normalization = _check_normalization(normalization)

    def forward(self, student_logits, labels, teacher=None):
        per_token = F.cross_entropy(
            student_logits.transpose(1, 2).float(),
            labels,
            ignore_index=IGNORE_INDEX,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        return reduce_tokens(per_token, labels, self.normalization)


@dataclass
class SparseTopK:
    """Cached teacher next-token distributions aligned with a batch's labels: at every position
    the log-probabilities (at `temperature`) of the teacher's k most likely tokens, sorted from
    the most likely, and the log of the probability mass outside them (the tail, one bucket).
    Slots past a position's candidates hold `NEG`."""

    ids: torch.Tensor  # (B, T, k) token ids
    logprobs: torch.Tensor  # (B, T, k)
    log_tail: torch.Tensor  # (B, T)
    temperature: float


@dataclass
class TeacherOutputs:
    """The teacher's distributions for one batch, row by row from one of two places: `logits`
    computed now for the rows `logit_rows` (full vocabulary), and `cached` for the rows
    `cached_rows`. Every row with a target token is in exactly one of them."""

    logits: torch.Tensor | None = None  # (n_online, T, V)
    logit_rows: torch.Tensor | None = None  # (n_online,) row indices into the batch
    cached: SparseTopK | None = None  # (n_cached, T, k)
    cached_rows: torch.Tensor | None = None

    @classmethod
    def dense(cls, logits: torch.Tensor) -> TeacherOutputs:
        return cls(logits=logits, logit_rows=torch.arange(logits.shape[0], device=logits.device))


def bucketed(student_z: torch.Tensor, cached_ids: torch.Tensor, cached_logp: torch.Tensor,
             cached_log_tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher and student distributions over the k cached tokens plus one tail bucket, (N, k+1)
    log-probabilities each, from the student's tempered logits (N, V) and the cached top-k.

    Any divergence of these coarse distributions is a lower bound of the full one (it merges
    the tail into one outcome) and equals it when the cached tokens carry all of the teacher's
    mass and the student's tail is merged the same way, i.e. exactly when k covers the
    vocabulary."""
    logp = torch.where(torch.isfinite(cached_logp), cached_logp, torch.full_like(cached_logp, NEG)).clamp_min(NEG)
    valid = logp > NEG / 2
    ids = torch.where(valid, cached_ids, cached_ids[:, :1])  # a padded slot repeats slot 0 (masked below)
    lse = student_z.logsumexp(-1, keepdim=True)
    log_q = torch.where(valid, student_z.gather(-1, ids) - lse, torch.full_like(logp, NEG))
    floor = torch.finfo(student_z.dtype).min / 2  # finite, so a fully covered vocabulary gives no NaN
    rest = student_z.scatter(-1, ids, floor)
    log_q_tail = (rest.logsumexp(-1) - lse.squeeze(-1)).clamp_min(NEG)
    log_p_tail = torch.where(torch.isfinite(cached_log_tail), cached_log_tail,
                             torch.full_like(cached_log_tail, NEG)).clamp_min(NEG)
    return torch.cat([logp, log_p_tail[:, None]], -1), torch.cat([log_q, log_q_tail[:, None]], -1)


# --------------------------------------------------------------------------------------
# Word-level divergences between the teacher's (p) and the student's (q) next-token
# distributions.
# --------------------------------------------------------------------------------------


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) = Σ a (log a − log b) over the last dim, from log-probabilities.

    Entries with a == 0 (log a = −inf, e.g. truncated teacher tokens, or float underflow)
    contribute exactly 0, with a zero (not NaN) gradient. log b must be finite wherever a > 0.
    """
    a = log_a.exp()
    log_a = torch.where(a > 0, log_a, torch.zeros_like(log_a))
    return (a * (log_a - log_b)).sum(-1)


def _kl_to_mix(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """KL(a ‖ w·a + (1−w)·b) for 0 ≤ w < 1, from log-probabilities.

    Computed from the log-ratio log(m/a) = logaddexp(log w, log(1−w) + log b − log a) rather
    than from log m − log a: when m is close to a (w near 1, or a mixture weight near 0 in
    JSD) the difference of two rounded logs would swamp the tiny true value in float32.
    Entries with a == 0 contribute exactly 0.
    """
    a = log_a.exp()
    ratio = torch.where(a > 0, log_b - log_a, torch.zeros_like(log_a))
    log_w = math.log(w) if w > 0 else float("-inf")
    log_m_over_a = torch.logaddexp(torch.full_like(ratio, log_w), ratio + math.log1p(-w))
    return -(a * log_m_over_a).sum(-1)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class TokenDivergence(nn.Module):
    """Base of the word-level divergences D(p_teacher, q_student), averaged over the
    non-ignored target positions (`reduce_tokens`, by the term's `normalization`).

    * Temperature τ: both distributions are softened, p = softmax(z_t/τ), q = softmax(z_s/τ),
      and the result is multiplied by τ² so gradient magnitudes do not shrink as τ grows
      (Hinton et al. 2015). Hence D_τ(z_s, z_t) == τ² · D_1(z_s/τ, z_t/τ). The τ² factor is
      applied to every divergence, bounded ones (TV) included.
    * Teacher truncation (optional): `teacher_top_k` keeps the teacher's k most likely tokens,
      `teacher_top_p` the smallest set of most likely tokens whose cumulative probability is
      ≥ top_p; both are taken on the τ-softened teacher, top-k first when both are given, and
      the kept mass is renormalised. The student is never truncated. Truncated tokens have
      p = 0 exactly and contribute exactly 0 to KL(p‖·)-type terms. A term that needs
      KL(q‖p) on the raw teacher (reverse KL, JSD with β=1, skew reverse KL with α=0)
      would be +inf under truncation, so that combination is refused at construction.
    * Computation is in float32 whatever the input dtype (e.g. bf16); the result is float32.
    * Teacher logits are detached: gradients reach only the student.
    * Ignored positions (label == IGNORE_INDEX) are dropped before any computation, so any
      values there (even inf/NaN) change neither the value nor the gradient.

    Subclasses implement `_divergence(log_p, log_q) -> (N,)` on float32 log-probabilities
    of shape (N, V), and set `_reverse_on_raw_teacher` when they evaluate KL(q‖p).
    """

    needs_teacher = True
    name: str = ""
    _reverse_on_raw_teacher = False

    def __init__(self, temperature: float = 1.0, *, teacher_top_k: int | None = None,
                 teacher_top_p: float | None = None, normalization: str = "token"):
        super().__init__()
        if not _is_number(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if teacher_top_k is not None and (
                not isinstance(teacher_top_k, int) or isinstance(teacher_top_k, bool) or teacher_top_k < 1):
            raise ValueError(f"teacher_top_k must be None or an integer >= 1, got {teacher_top_k!r}")
        if teacher_top_p is not None and (not _is_number(teacher_top_p) or not 0 < teacher_top_p <= 1):
            raise ValueError(f"teacher_top_p must be None or in (0, 1], got {teacher_top_p!r}")
        self.temperature = float(temperature)
        self.teacher_top_k = teacher_top_k
        self.teacher_top_p = None if teacher_top_p is None else float(teacher_top_p)
        self.normalization = _check_normalization(normalization)

    @property
    def truncates_teacher(self) -> bool:
        return self.teacher_top_k is not None or (self.teacher_top_p is not None and self.teacher_top_p < 1)

    def _check_truncation(self) -> None:
        """Call at the end of a subclass __init__, once its own parameters are set."""
        if self._reverse_on_raw_teacher and self.truncates_teacher:
            raise ValueError(
                f"{type(self).__name__} evaluates KL(q||p) on the teacher distribution, which is "
                "infinite once the teacher is truncated; use teacher_top_k=None and teacher_top_p=None, "
                "or a skewed / JSD divergence")

    def _teacher_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the (τ-softened, optionally truncated) teacher; −inf at
        truncated tokens. `z` is the float32 teacher logits already divided by τ."""
        neg_inf = torch.tensor(float("-inf"), dtype=z.dtype, device=z.device)
        if self.teacher_top_k is not None and self.teacher_top_k < z.shape[-1]:
            idx = z.topk(self.teacher_top_k, dim=-1).indices
            keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, idx, True)
            z = torch.where(keep, z, neg_inf)
        if self.teacher_top_p is not None and self.teacher_top_p < 1:
            sorted_logp, idx = F.log_softmax(z, dim=-1).sort(dim=-1, descending=True)
            probs = sorted_logp.exp()
            mass_before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
            keep_sorted = mass_before < self.teacher_top_p  # always keeps the top token
            keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
            z = torch.where(keep, z, neg_inf)
        return F.log_softmax(z, dim=-1)

    def _truncate_buckets(self, log_p: torch.Tensor) -> torch.Tensor:
        """The same truncation on cached buckets (k sorted tokens + the tail, last): top-k keeps
        the first k cached tokens (the true top-k when k <= the cache's k) and drops the tail;
        top-p keeps cached tokens while the mass before them is < top_p, and the tail bucket as
        a whole when the cached tokens hold less than top_p (so it may keep a little more than
        the exact top-p set, which lies partly inside the tail). Renormalised."""
        if not self.truncates_teacher:
            return log_p
        keep = torch.ones_like(log_p, dtype=torch.bool)
        if self.teacher_top_k is not None:
            if self.teacher_top_k > log_p.shape[-1] - 1:
                raise ValueError(f"teacher_top_k={self.teacher_top_k} needs a teacher cache of at least that "
                                 f"many tokens (it holds {log_p.shape[-1] - 1})")
            keep[:, self.teacher_top_k:] = False
        if self.teacher_top_p is not None and self.teacher_top_p < 1:
            probs = log_p.exp()
            mass_before = probs.cumsum(-1) - probs
            keep &= mass_before < self.teacher_top_p
        kept = torch.where(keep, log_p, torch.full_like(log_p, NEG))
        return (kept - kept.logsumexp(-1, keepdim=True)).clamp_min(NEG)

    def _divergence(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def per_token(self, student_logits: torch.Tensor, labels: torch.Tensor, teacher) -> torch.Tensor:
        """(B, T) divergence at every target position (0 at ignored ones), before τ² and the
        reduction. `teacher`: dense (B, T, V) logits or `TeacherOutputs`."""
        if teacher is None:
            raise ValueError(f"{type(self).__name__} needs teacher logits")
        if isinstance(teacher, torch.Tensor):
            if student_logits.shape != teacher.shape:
                raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                                 f"{tuple(teacher.shape)} differ in shape")
            teacher = TeacherOutputs.dense(teacher)
        tau = self.temperature
        per_token = torch.zeros(labels.shape, dtype=torch.float32, device=student_logits.device)
        parts = []
        if teacher.logits is not None:
            parts.append((teacher.logit_rows, lambda z, m: (
                self._teacher_log_probs(teacher.logits.detach()[m].float() / tau),
                F.log_softmax(z, dim=-1))))
        if teacher.cached is not None:
            cached = teacher.cached
            if abs(cached.temperature - tau) > 1e-9:
                raise ValueError(f"the teacher cache holds distributions at temperature {cached.temperature}, "
                                 f"this term needs {tau}")

            def sparse(z, m, c=cached):
                log_p, log_q = bucketed(z, c.ids[m], c.logprobs[m].float(), c.log_tail[m].float())
                return self._truncate_buckets(log_p), log_q
            parts.append((teacher.cached_rows, sparse))
        for rows, distributions in parts:
            if rows is None or rows.numel() == 0:
                continue
            lab = labels.index_select(0, rows)
            mask = lab.ne(IGNORE_INDEX)
            z = student_logits.index_select(0, rows)[mask].float() / tau
            log_p, log_q = distributions(z, mask)
            part = torch.zeros(lab.shape, dtype=torch.float32, device=z.device)
            part = part.masked_scatter(mask, self._divergence(log_p, log_q))
            per_token = per_token.index_copy(0, rows, part)
        return per_token

    def forward(self, student_logits, labels, teacher=None):
        per_token = self.per_token(student_logits, labels, teacher)
        return reduce_tokens(per_token, labels, self.normalization) * self.temperature**2

    def extra_repr(self) -> str:
        parts = [f"temperature={self.temperature}"]
        if self.teacher_top_k is not None:
            parts.append(f"teacher_top_k={self.teacher_top_k}")
        if self.teacher_top_p is not None:
            parts.append(f"teacher_top_p={self.teacher_top_p}")
        if self.normalization != "token":
            parts.append(f"normalization={self.normalization}")
        return ", ".join(parts)


class ForwardKL(TokenDivergence):
    """Word-level KD (Kim & Rush 2016; the paper's "logits KD"): KL(p_teacher || q_student)
    at every target position, both softened by temperature τ; multiplied by τ² so gradient
    magnitudes do not shrink as τ grows (Hinton et al. 2015). Mode-covering.
    With `teacher_top_k=1` it is the cross-entropy on the teacher's argmax token."""

    name = "forward_kl"

    def _divergence(self, log_p, log_q):
        return _kl(log_p, log_q)


class ReverseKL(TokenDivergence):
    """KL(q_student || p_teacher): mode-seeking (e.g. MiniLLM, Gu et al. 2024, at word level).
    Incompatible with teacher truncation (infinite where the student has mass and p = 0)."""

    name = "reverse_kl"
    _reverse_on_raw_teacher = True

    def __init__(self, temperature: float = 1.0, *, teacher_top_k: int | None = None,
                 teacher_top_p: float | None = None, normalization: str = "token"):
        super().__init__(temperature, teacher_top_k=teacher_top_k, teacher_top_p=teacher_top_p,
                         normalization=normalization)
        self._check_truncation()

    def _divergence(self, log_p, log_q):
        return _kl(log_q, log_p)


class GeneralizedJSD(TokenDivergence):
    """Generalized Jensen-Shannon divergence, normalised so that it interpolates *continuously*
    between forward KL (β = 0) and reverse KL (β = 1):

        m = β·p + (1−β)·q,    JSD_β(p‖q) = β·KL(p‖m) + (1−β)·KL(q‖m),
        value = JSD_β(p‖q) / (β(1−β))   for 0 < β < 1;   KL(p‖q) at β = 0;   KL(q‖p) at β = 1.

    Why the normalisation: the raw JSD_β of GKD (Agarwal et al. 2024) is ≈ β·KL(p‖q) near
    β = 0 and ≈ (1−β)·KL(q‖p) near β = 1, so it vanishes at the ends; dividing by β(1−β) makes
    the limits exactly the two KLs. For a fixed β this is GKD's loss times the constant
    1/(β(1−β)) (4 at β = 0.5): the same minimiser and gradient direction. `gkd_jsd` gives GKD's
    own values. Symmetry: JSD_β(p‖q) == JSD_{1−β}(q‖p). β = 1 is refused with teacher
    truncation (reverse KL would be infinite); 0 < β < 1 is fine since m > 0.
    """

    name = "jsd"
    _normalised = True

    def __init__(self, beta: float = 0.5, temperature: float = 1.0, *, teacher_top_k: int | None = None,
                 teacher_top_p: float | None = None, normalization: str = "token"):
        super().__init__(temperature, teacher_top_k=teacher_top_k, teacher_top_p=teacher_top_p,
                         normalization=normalization)
        if not _is_number(beta) or not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        self.beta = float(beta)
        self._reverse_on_raw_teacher = self.beta == 1
        self._check_truncation()

    def _divergence(self, log_p, log_q):
        beta = self.beta
        if beta == 0:
            return _kl(log_p, log_q)
        if beta == 1:
            return _kl(log_q, log_p)
        # m = β·p + (1−β)·q, seen from p (weight β on p) and from q (weight 1−β on q)
        raw = beta * _kl_to_mix(log_p, log_q, beta) + (1 - beta) * _kl_to_mix(log_q, log_p, 1 - beta)
        return raw / (beta * (1 - beta)) if self._normalised else raw

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


class GKDJSD(GeneralizedJSD):
    """GKD's generalized JSD exactly as Agarwal et al. (2024) and TRL's `GKDTrainer` compute it:
    the raw JSD_β for 0 < β < 1, with the endpoints *defined* as forward KL (β = 0) and
    reverse KL (β = 1) — so, unlike `jsd`, it is discontinuous there (the raw value tends to
    0). Use it to reproduce GKD's loss values; `jsd` = this / (β(1−β))."""

    name = "gkd_jsd"
    _normalised = False


class TotalVariation(TokenDivergence):
    """Total variation distance ½ Σ |p − q| (in [0, 1] before the τ² factor)."""

    name = "tv"

    def _divergence(self, log_p, log_q):
        return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)


class _Skew(TokenDivergence):
    """Shared by the skew divergences: the mixture weight α in [0, 1)."""

    def __init__(self, alpha: float = 0.1, temperature: float = 1.0, *, teacher_top_k: int | None = None,
                 teacher_top_p: float | None = None, normalization: str = "token"):
        super().__init__(temperature, teacher_top_k=teacher_top_k, teacher_top_p=teacher_top_p,
                         normalization=normalization)
        if not _is_number(alpha) or not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, " + super().extra_repr()


class SkewKL(_Skew):
    """Skew KL of DistiLLM (Ko et al. 2024): KL(p ‖ α·p + (1−α)·q), α in [0, 1).
    α = 0 is plain forward KL(p‖q); larger α bounds the divergence (≤ −log α) and smooths
    its gradients."""

    name = "skew_kl"

    def _divergence(self, log_p, log_q):
        return _kl_to_mix(log_p, log_q, self.alpha)


class SkewReverseKL(_Skew):
    """Skew reverse KL of DistiLLM (Ko et al. 2024): KL(q ‖ (1−α)·p + α·q), α in [0, 1).
    α = 0 is plain reverse KL(q‖p) (refused with teacher truncation, being infinite there);
    α > 0 keeps the mixture positive, so truncation is allowed."""

    name = "skew_reverse_kl"

    def __init__(self, alpha: float = 0.1, temperature: float = 1.0, *, teacher_top_k: int | None = None,
                 teacher_top_p: float | None = None, normalization: str = "token"):
        super().__init__(alpha, temperature, teacher_top_k=teacher_top_k, teacher_top_p=teacher_top_p,
                         normalization=normalization)
        self._reverse_on_raw_teacher = self.alpha == 0
        self._check_truncation()

    def _divergence(self, log_p, log_q):
        return _kl_to_mix(log_q, log_p, self.alpha)


DIVERGENCES: dict[str, type[TokenDivergence]] = {
    cls.name: cls for cls in (ForwardKL, ReverseKL, GeneralizedJSD, GKDJSD, TotalVariation, SkewKL,
                           SkewReverseKL)
}


def build_divergence(name: str, **kwargs) -> TokenDivergence:
    """Instantiate the divergence registered under `name` (see `DIVERGENCES`).

    Raises ValueError for an unknown name (listing the allowed ones), for an argument the
    class does not take (listing those it takes) and for an out-of-range value
    (β ∉ [0, 1], α ∉ [0, 1), τ ≤ 0, top_p ∉ (0, 1], top_k < 1)."""
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; allowed: {', '.join(sorted(DIVERGENCES))}")
    cls = DIVERGENCES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name!r} does not take {', '.join(unknown)}; allowed arguments: {', '.join(accepted)}")
    return cls(**kwargs)
