"""Our KD losses against independent re-derivations of four reference codebases
(`tests/reference_impls.py`): the paper's own code (KD4Gen), DistiLLM, GKD as in TRL, and
MiniLMv2. Values and gradients w.r.t. the student are compared on random logits with padding
(-100 labels at the end, at the start and in the middle of rows; rows of different lengths),
at temperatures other than 1. The references run in float64, ours in float32.

Where a reference uses another convention, the test asserts the exact conversion:
* KD4Gen and MiniLMv2 average per example, then over the batch; we average over all target
  tokens (positions) of the batch: ours = Σ_b (n_b / N) · theirs(example b).
* DistiLLM's forward and skewed-forward KL are cross-entropies: theirs = ours + H(p), the
  teacher entropy (constant in the student, so the gradients are identical); no temperature.
* DistiLLM's `js_distance(lam)` is GKD's raw JSD with β = 1 − lam (and 0 at lam ∈ {0, 1}).
* TRL's `generalized_jsd_loss` softens by τ without the τ² factor: ours = τ² · theirs.
"""
from __future__ import annotations

import pytest
import reference_impls as ref
import torch

from bench.distill.losses import (
    GKDJSD,
    IGNORE_INDEX,
    CrossEntropy,
    ForwardKL,
    GeneralizedJSD,
    ReverseKL,
    SkewKL,
    SkewReverseKL,
    TotalVariation,
)
from bench.distill.relations import RelationKD

B, T, V = 4, 7, 50
TEMPERATURES = [1.0, 2.5, 0.7]

# Rows of *different* numbers of targets: full, right-padded, a masked prompt plus one
# right pad, a single target.
UNEQUAL = [list(range(7)), list(range(4)), [2, 3, 4, 5], [0]]
# Five targets in every row, at different positions (right pad, left pad, holes).
EQUAL = [[0, 1, 2, 3, 4], [2, 3, 4, 5, 6], [0, 2, 3, 5, 6], [1, 2, 3, 4, 5]]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors are tiny: intra-op thread fan-out costs more than it saves (10× on a busy
    2-CPU box), so run this module single-threaded and restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(kept: list[list[int]], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = 2.5 * torch.randn(len(kept), T, V, generator=g)
    teacher = 2.5 * torch.randn(len(kept), T, V, generator=g)
    labels = torch.full((len(kept), T), IGNORE_INDEX)
    for row, positions in enumerate(kept):
        labels[row, positions] = torch.randint(0, V, (len(positions),), generator=g)
    return student, teacher, labels


def _value_and_grad(fn, student: torch.Tensor):
    """fn(student) and its gradient w.r.t. the student, both as float64."""
    student = student.detach().clone().requires_grad_(True)
    value = fn(student)
    (grad,) = torch.autograd.grad(value, student)
    return value.detach().double(), grad.double()


def _assert_same(ours, theirs, rtol=2e-5, atol=2e-7):
    """Value and gradient pairs agree (float32 ours vs float64 reference)."""
    torch.testing.assert_close(ours[0], theirs[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(ours[1], theirs[1], rtol=rtol, atol=atol)


def _teacher_entropy(teacher64: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the target tokens of H(p) = −Σ p log p (p = 0 terms are 0)."""
    p = teacher64.softmax(-1)
    entropy = -torch.special.xlogy(p, p).sum(-1)
    keep = labels.ne(IGNORE_INDEX)
    return entropy[keep].mean()


# ======================================================================================
# 1. KD4Gen (Calderon et al. 2023), src/kd_utils.py: distil_logits_loss → kl_with_masks
# ======================================================================================


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_kd4gen_logits_kl_equals_ours_when_every_example_has_as_many_targets(tau):
    # Their KL is a true KL (torch.kl_div with a probability target), softened by τ and
    # scaled by τ² like ours; with equal lengths, mean-of-example-means == token mean.
    s, t, labels = _batch(EQUAL)
    mask = labels.ne(IGNORE_INDEX).long()
    ours = _value_and_grad(lambda z: ForwardKL(tau)(z, labels, t), s)
    theirs = _value_and_grad(lambda z: ref.kd4gen_distil_logits_loss(z, t.double(), mask, tau), s.double())
    _assert_same(ours, theirs)


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_kd4gen_per_example_mean_converts_exactly_to_our_token_mean(tau):
    kept = UNEQUAL + [[]]  # plus an example with no target at all
    s, t, labels = _batch(kept)
    mask = labels.ne(IGNORE_INDEX).long()
    n = mask.sum(-1).double()
    t64 = t.double()

    def per_example(z):
        return torch.stack([ref.kd4gen_distil_logits_loss(z[b:b + 1], t64[b:b + 1], mask[b:b + 1], tau)
                            for b in range(len(kept))])

    batch_value = ref.kd4gen_distil_logits_loss(s.double(), t64, mask, tau)
    # Their batch value is the plain mean of the example values (the empty one counting as 0).
    torch.testing.assert_close(batch_value, per_example(s.double()).mean())
    ours = _value_and_grad(lambda z: ForwardKL(tau)(z, labels, t), s)
    converted = _value_and_grad(lambda z: (n / n.sum() * per_example(z)).sum(), s.double())
    _assert_same(ours, converted)
    assert abs(ours[0].item() - batch_value.item()) > 1e-3  # the two normalisations do differ here


@pytest.mark.parametrize("top_p", [0.5, 0.8])
def test_kd4gen_negative_temperature_is_our_teacher_top_p_times_top_p_squared(top_p):
    # KD4Gen reads temperature = −top_p as "truncate the teacher with HF's top-p warper, do not
    # soften", yet still multiplies by temperature² = top_p². The kept set is the same as ours
    # (tokens whose strictly-more-likely mass is below top_p; ties at exactly top_p aside).
    s, t, labels = _batch(EQUAL, seed=1)
    mask = labels.ne(IGNORE_INDEX).long()
    kept = ref.hf_top_p_filter(t.double(), top_p).isfinite().sum(-1)
    assert kept.max() < V and kept.min() >= 1  # truncation really happens
    ours = _value_and_grad(lambda z: ForwardKL(teacher_top_p=top_p)(z, labels, t) * top_p**2, s)
    theirs = _value_and_grad(lambda z: ref.kd4gen_distil_logits_loss(z, t.double(), mask, -top_p), s.double())
    _assert_same(ours, theirs)


def _acts(width: int, lengths: list[int], seed: int):
    g = torch.Generator().manual_seed(seed)
    acts = {k: torch.randn(len(lengths), T, width, generator=g) for k in ("q", "k", "v", "hidden")}
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1  # encoder masks are right-padded
    return acts, mask


RELATION_LENGTHS = {"equal": [5, 5, 5], "unequal": [7, 4, 5, 2]}


def _grads(fn, acts: dict, names) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(acts) and the concatenated gradients w.r.t. acts[name] for the names, as float64."""
    leaves = {k: v.detach().clone().requires_grad_(k in names) for k, v in acts.items()}
    value = fn(leaves)
    grads = torch.autograd.grad(value, [leaves[k] for k in names])
    return value.detach().double(), torch.cat([g.double().flatten() for g in grads])


def _per_example_converted(fn, mask):
    """Σ_b (n_b / N) · fn(example b): their per-example mean turned into our token mean."""
    n = mask.sum(-1).double()

    def converted(acts):
        values = torch.stack([fn({k: v[b:b + 1] for k, v in acts.items()}, mask[b:b + 1])
                              for b in range(len(mask))])
        return (n / n.sum() * values).sum()

    return converted


@pytest.mark.parametrize("lengths", RELATION_LENGTHS.values(), ids=RELATION_LENGTHS.keys())
@pytest.mark.parametrize("name", ["q", "v"])
def test_kd4gen_attention_relation_kl(lengths, name):
    # distil_attention_relations_loss(kl_loss=True): the student (2 heads × 8) is regrouped into
    # the teacher's 4 heads (× 8); ours regroups into common_heads(4, 16, 32) = 4 relation heads.
    student, mask = _acts(16, lengths, seed=1)
    teacher, _ = _acts(32, lengths, seed=2)
    term = RelationKD((name,), relation_heads=4, kind="kl")

    def as_heads(x, heads):  # (B, T, d) → (B, heads, T, d / heads), as past_key_values hold them
        return x.view(x.shape[0], T, heads, -1).transpose(1, 2)

    def theirs(a, m):
        return ref.kd4gen_attention_relations_kl(as_heads(a[name], 2), as_heads(a["_t"], 4), m)

    ours = _grads(lambda a: term(None, None, None, student_acts=a, teacher_acts=teacher, source_mask=mask),
                  student, [name])
    # The teacher rides along under "_t" so that the per-example split slices it too.
    both = {name: student[name].double(), "_t": teacher[name].double()}
    ref_fn = (lambda a: theirs(a, mask)) if lengths == RELATION_LENGTHS["equal"] else _per_example_converted(theirs, mask)
    _assert_same(ours, _grads(ref_fn, both, [name]))


@pytest.mark.parametrize("lengths", RELATION_LENGTHS.values(), ids=RELATION_LENGTHS.keys())
def test_kd4gen_hidden_relation_kl(lengths):
    # distil_hidden_loss(kl_loss=True) on the encoder: one relation head over the full width,
    # scaled by √d of each side; ours with relation_heads=1. Widths differ (12 vs 20).
    student, mask = _acts(12, lengths, seed=3)
    teacher, _ = _acts(20, lengths, seed=4)
    term = RelationKD(("hidden",), relation_heads=1, kind="kl")
    ours = _grads(lambda a: term(None, None, None, student_acts=a, teacher_acts=teacher, source_mask=mask),
                  student, ["hidden"])
    both = {"hidden": student["hidden"].double(), "_t": teacher["hidden"].double()}

    def theirs(a, m):
        return ref.kd4gen_hidden_relations_kl(a["hidden"], a["_t"], m)

    ref_fn = (lambda a: theirs(a, mask)) if lengths == RELATION_LENGTHS["equal"] else _per_example_converted(theirs, mask)
    _assert_same(ours, _grads(ref_fn, both, ["hidden"]))


def test_kd4gen_forward_loss_is_our_cross_entropy():
    # KD4Gen's `forward_loss` is the model's own LM loss (HF: CrossEntropyLoss(ignore_index=-100),
    # mean over the target tokens). Re-derived: −log q[label], mean over the kept tokens.
    s, _, labels = _batch(UNEQUAL)
    keep = labels.ne(IGNORE_INDEX)

    def theirs(z):
        log_q = z.log_softmax(-1)
        return -log_q.gather(-1, labels.clamp_min(0)[..., None])[..., 0][keep].mean()

    _assert_same(_value_and_grad(lambda z: CrossEntropy()(z, labels), s), _value_and_grad(theirs, s.double()))

    # With label smoothing ε (torch's definition): (1 − ε)·NLL + ε·mean_v(−log q_v).
    eps = 0.1

    def smoothed(z):
        log_q = z.log_softmax(-1)
        nll = -log_q.gather(-1, labels.clamp_min(0)[..., None])[..., 0]
        return ((1 - eps) * nll - eps * log_q.mean(-1))[keep].mean()

    _assert_same(_value_and_grad(lambda z: CrossEntropy(label_smoothing=eps)(z, labels), s),
                 _value_and_grad(smoothed, s.double()))


# ======================================================================================
# 2. DistiLLM, distillm/losses.py (no temperature: we compare τ² · theirs(z/τ))
# ======================================================================================


def _distillm(fn, tau, t, labels, **kw):
    t64 = t.double() / tau
    return lambda z: tau**2 * fn(z / tau, t64, labels, **kw)


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_distillm_forward_kl_is_a_cross_entropy_ours_minus_teacher_entropy(tau):
    s, t, labels = _batch(UNEQUAL)
    ours = _value_and_grad(lambda z: ForwardKL(tau)(z, labels, t), s)
    theirs = _value_and_grad(_distillm(ref.distillm_forward_kl, tau, t, labels), s.double())
    entropy = tau**2 * _teacher_entropy(t.double() / tau, labels)
    assert entropy > 0.5  # the omitted term is not negligible
    torch.testing.assert_close(theirs[0] - ours[0], entropy, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=2e-5, atol=2e-7)  # same gradient


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_distillm_reverse_kl(tau):
    s, t, labels = _batch(UNEQUAL)
    _assert_same(_value_and_grad(lambda z: ReverseKL(tau)(z, labels, t), s),
                 _value_and_grad(_distillm(ref.distillm_reverse_kl, tau, t, labels), s.double()))


@pytest.mark.parametrize("tau", [1.0, 2.5])
@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9])
def test_distillm_js_distance_is_gkd_jsd_with_beta_one_minus_lam(lam, tau):
    # m = (1−lam)·p + lam·q, lam·KL(q‖m) + (1−lam)·KL(p‖m)  ==  GKD's raw JSD_β at β = 1 − lam.
    s, t, labels = _batch(UNEQUAL)
    beta = 1 - lam
    theirs = _value_and_grad(_distillm(ref.distillm_js_distance, tau, t, labels, lam=lam), s.double())
    _assert_same(_value_and_grad(lambda z: GKDJSD(beta, tau)(z, labels, t), s), theirs)
    normalised = (theirs[0] / (beta * (1 - beta)), theirs[1] / (beta * (1 - beta)))
    _assert_same(_value_and_grad(lambda z: GeneralizedJSD(beta, tau)(z, labels, t), s), normalised)


def test_distillm_js_distance_endpoints_vanish_where_ours_are_the_kls():
    # DistiLLM has no endpoint convention: its JSD is 0 at lam ∈ {0, 1}. GKD (and ours) define
    # those ends as reverse / forward KL; our normalised `jsd` is the limit of theirs / (β(1−β)).
    s, t, labels = _batch(UNEQUAL)
    s64, t64 = s.double(), t.double()
    for lam, beta, kl in ((0.0, 1.0, ReverseKL()), (1.0, 0.0, ForwardKL())):
        assert ref.distillm_js_distance(s64, t64, labels, lam=lam).item() == pytest.approx(0.0, abs=1e-12)
        expected = kl(s, labels, t).item()
        assert GKDJSD(beta)(s, labels, t).item() == pytest.approx(expected, rel=1e-6)
        assert GeneralizedJSD(beta)(s, labels, t).item() == pytest.approx(expected, rel=1e-6)
        # Approach the end from inside (float64; the approach is slow where p/q is tiny, so close).
        near = 1e-9 if lam == 0 else 1 - 1e-9
        limit = ref.distillm_js_distance(s64, t64, labels, lam=near) / (near * (1 - near))
        assert limit.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_distillm_tv_distance(tau):
    s, t, labels = _batch(UNEQUAL)
    _assert_same(_value_and_grad(lambda z: TotalVariation(tau)(z, labels, t), s),
                 _value_and_grad(_distillm(ref.distillm_tv_distance, tau, t, labels), s.double()))


@pytest.mark.parametrize("tau", [1.0, 2.5])
@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_distillm_skewed_forward_kl_is_a_cross_entropy_ours_minus_teacher_entropy(lam, tau):
    # −Σ p log(lam·p + (1−lam)·q) = KL(p‖m) + H(p); ours is SkewKL(α = lam) = KL(p ‖ α·p + (1−α)·q).
    s, t, labels = _batch(UNEQUAL)
    ours = _value_and_grad(lambda z: SkewKL(lam, tau)(z, labels, t), s)
    theirs = _value_and_grad(_distillm(ref.distillm_skewed_forward_kl, tau, t, labels, lam=lam), s.double())
    entropy = tau**2 * _teacher_entropy(t.double() / tau, labels)
    torch.testing.assert_close(theirs[0] - ours[0], entropy, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=2e-5, atol=2e-7)


@pytest.mark.parametrize("tau", [1.0, 2.5])
@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_distillm_skewed_reverse_kl(lam, tau):
    # KL(q ‖ (1−lam)·p + lam·q) == our SkewReverseKL(α = lam) (a true KL on both sides).
    s, t, labels = _batch(UNEQUAL)
    _assert_same(_value_and_grad(lambda z: SkewReverseKL(lam, tau)(z, labels, t), s),
                 _value_and_grad(_distillm(ref.distillm_skewed_reverse_kl, tau, t, labels, lam=lam), s.double()))


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_distillm_forward_kl_on_a_top_k_teacher(tau):
    # Teacher logits outside its top-k set to −inf: their p = 0 there (0·log q = 0); ours
    # truncates internally. Still CE vs KL: the difference is the truncated teacher's entropy.
    k = 5
    s, t, labels = _batch(UNEQUAL, seed=2)
    cut = t.topk(k, -1).values[..., -1:]
    t_trunc = t.double().masked_fill(t < cut, float("-inf"))
    ours = _value_and_grad(lambda z: ForwardKL(tau, teacher_top_k=k)(z, labels, t), s)
    fn = lambda z: tau**2 * ref.distillm_forward_kl(z / tau, t_trunc / tau, labels)
    theirs = _value_and_grad(fn, s.double())
    entropy = tau**2 * _teacher_entropy(t_trunc / tau, labels)
    torch.testing.assert_close(theirs[0] - ours[0], entropy, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=2e-5, atol=2e-7)


# ======================================================================================
# 3. GKD in TRL, GKDTrainer.generalized_jsd_loss (τ without the τ² factor)
# ======================================================================================


@pytest.mark.parametrize("tau", [1.0, 2.5])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_trl_generalized_jsd_is_our_gkd_jsd_over_tau_squared(beta, tau):
    s, t, labels = _batch(UNEQUAL)
    theirs = _value_and_grad(lambda z: tau**2 * ref.trl_generalized_jsd_loss(z, t.double(), labels, beta, tau),
                             s.double())
    _assert_same(_value_and_grad(lambda z: GKDJSD(beta, tau)(z, labels, t), s), theirs)
    scale = beta * (1 - beta) if 0 < beta < 1 else 1.0  # the ends are the KLs in both
    _assert_same(_value_and_grad(lambda z: GeneralizedJSD(beta, tau)(z, labels, t), s),
                 (theirs[0] / scale, theirs[1] / scale))


def test_trl_generalized_jsd_without_labels_is_our_mean_over_every_position():
    s, t, _ = _batch(UNEQUAL)
    everything = torch.zeros(B, T, dtype=torch.long)
    _assert_same(_value_and_grad(lambda z: GKDJSD(0.5)(z, everything, t), s),
                 _value_and_grad(lambda z: ref.trl_generalized_jsd_loss(z, t.double(), None, 0.5), s.double()))


# ======================================================================================
# 4. MiniLMv2 (bloomberg/minilmv2.bb, minilmv2/minilmv2.py, MiniLM._get_kl_loss / forward)
# ======================================================================================


@pytest.mark.parametrize("lengths", RELATION_LENGTHS.values(), ids=RELATION_LENGTHS.keys())
def test_minilmv2_qkv_relation_kl(lengths):
    # Q-Q, K-K, V-V relations with weight 1/3 each == our mean over the three vector types;
    # A_r = 4 relation heads on both sides (widths 16 and 32). Theirs: per example, KL summed
    # over A_r·L_b rows / (A_r·L_b), then the batch mean.
    names = ["q", "k", "v"]
    student, mask = _acts(16, lengths, seed=5)
    teacher, _ = _acts(32, lengths, seed=6)
    term = RelationKD(tuple(names), relation_heads=4, kind="kl")
    ours = _grads(lambda a: term(None, None, None, student_acts=a, teacher_acts=teacher, source_mask=mask),
                  student, names)
    both = {k: student[k].double() for k in names} | {"_" + k: teacher[k].double() for k in names}

    def theirs(a, m):
        return ref.minilmv2_loss({k: a["_" + k] for k in names}, {k: a[k] for k in names}, m, relation_heads=4)

    ref_fn = (lambda a: theirs(a, mask)) if lengths == RELATION_LENGTHS["equal"] else _per_example_converted(theirs, mask)
    _assert_same(ours, _grads(ref_fn, both, names))


# ======================================================================================
# Padding invariance of the RMSE relation loss (a bug this comparison found, now fixed:
# padded keys used to dilute the per-query mean, as KD4Gen's rmse_with_masks does not)
# ======================================================================================


def test_rmse_relation_loss_does_not_depend_on_how_much_the_batch_is_padded():
    student, mask = _acts(16, [5, 3], seed=7)
    teacher, _ = _acts(16, [5, 3], seed=8)
    term = RelationKD(("q", "hidden"), relation_heads=2, kind="rmse")
    base = term(None, None, None, student_acts=student, teacher_acts=teacher, source_mask=mask)

    def pad(acts):  # three more padded positions at the end of every example
        return {k: torch.cat([v, torch.zeros(v.shape[0], 3, v.shape[2])], 1) for k, v in acts.items()}

    longer = term(None, None, None, student_acts=pad(student), teacher_acts=pad(teacher),
                  source_mask=torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], 1))
    assert longer.item() == pytest.approx(base.item(), rel=1e-5)
