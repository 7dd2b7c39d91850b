import math

import pytest
import torch
import torch.nn.functional as F

from bench.distill.losses import IGNORE_INDEX, CrossEntropy, ForwardKL


def _batch(seed=0, B=3, T=5, V=7):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, T, V, generator=g)
    t = torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, 3:] = IGNORE_INDEX
    labels[2, 1:] = IGNORE_INDEX
    return s, t, labels


def test_cross_entropy_matches_torch():
    s, _, labels = _batch()
    ref = F.cross_entropy(s.reshape(-1, s.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    assert CrossEntropy()(s, labels) == pytest.approx(ref.item(), rel=1e-6)


def test_forward_kl_closed_form_on_hand_made_distributions():
    p_t = torch.tensor([0.5, 0.25, 0.25])
    p_s = torch.tensor([0.25, 0.5, 0.25])
    expected = sum(a * math.log(a / b) for a, b in zip(p_t.tolist(), p_s.tolist()))
    kl = ForwardKL()(p_s.log().view(1, 1, 3), torch.zeros(1, 1, dtype=torch.long), p_t.log().view(1, 1, 3))
    assert kl.item() == pytest.approx(expected, rel=1e-6)


def test_forward_kl_zero_iff_equal_and_nonnegative():
    s, t, labels = _batch()
    assert ForwardKL()(t, labels, t).item() == pytest.approx(0.0, abs=1e-6)
    assert ForwardKL()(s, labels, t).item() > 0


def test_ignored_positions_change_nothing():
    s, t, labels = _batch()
    kl = ForwardKL()(s, labels, t)
    s2, t2 = s.clone(), t.clone()
    s2[labels.eq(IGNORE_INDEX)] = 100.0  # garbage at padding
    t2[labels.eq(IGNORE_INDEX)] = -50.0
    assert ForwardKL()(s2, labels, t2).item() == pytest.approx(kl.item(), rel=1e-6)
    assert CrossEntropy()(s2, labels).item() == pytest.approx(CrossEntropy()(s, labels).item(), rel=1e-6)


def test_temperature_scaling():
    s, t, labels = _batch()
    tau = 2.0
    plain = ForwardKL()(s / tau, labels, t / tau)
    assert ForwardKL(tau)(s, labels, t).item() == pytest.approx(plain.item() * tau**2, rel=1e-5)


def test_gradient_reaches_only_the_student():
    s, t, labels = _batch()
    s.requires_grad_(True)
    t.requires_grad_(True)
    ForwardKL()(s, labels, t.detach()).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


# ---------------------------------------------------------------------------------------
# Word-level divergences
# ---------------------------------------------------------------------------------------

import numpy as np

from bench.distill.losses import (
    DIVERGENCES,
    GKDJSD,
    GeneralizedJSD,
    ReverseKL,
    SkewKL,
    SkewReverseKL,
    TokenDivergence,
    TotalVariation,
    build_divergence,
)

ALL_DIVERGENCES = [
    ForwardKL(),
    ReverseKL(),
    GeneralizedJSD(0.0),
    GeneralizedJSD(0.3),
    GeneralizedJSD(0.5),
    GeneralizedJSD(1.0),
    GKDJSD(0.5),
    TotalVariation(),
    SkewKL(0.0),
    SkewKL(0.1),
    SkewReverseKL(0.0),
    SkewReverseKL(0.1),
]
IDS = [repr(d) for d in ALL_DIVERGENCES]

# Hand-made distributions: three positions, teacher p and student q over V=4 tokens.
P = np.array([[0.5, 0.25, 0.125, 0.125], [0.7, 0.1, 0.1, 0.1], [0.05, 0.15, 0.3, 0.5]])
Q = np.array([[0.25, 0.5, 0.125, 0.125], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])


def _np_kl(a, b):
    return float(np.sum(a * np.log(a / b)))


def _reference(name, p, q, param=None):
    """Independent closed forms, one (p, q) pair of 1-D numpy arrays."""
    if name == "forward_kl":
        return _np_kl(p, q)
    if name == "reverse_kl":
        return _np_kl(q, p)
    if name == "tv":
        return 0.5 * float(np.abs(p - q).sum())
    if name in ("jsd", "gkd_jsd"):
        b = param
        m = b * p + (1 - b) * q
        raw = b * _np_kl(p, m) + (1 - b) * _np_kl(q, m)
        return raw if name == "gkd_jsd" else raw / (b * (1 - b))
    if name == "skew_kl":
        return _np_kl(p, param * p + (1 - param) * q)
    if name == "skew_reverse_kl":
        return _np_kl(q, (1 - param) * p + param * q)
    raise AssertionError(name)


def _hand_made_inputs():
    """Logits = log-probs (softmax recovers them); the middle position is ignored, so the
    expected value averages positions 0 and 2 only."""
    s = torch.tensor(np.log(Q), dtype=torch.float32).unsqueeze(0)
    t = torch.tensor(np.log(P), dtype=torch.float32).unsqueeze(0)
    labels = torch.tensor([[0, IGNORE_INDEX, 3]])
    return s, t, labels


@pytest.mark.parametrize("name,param,module", [
    ("forward_kl", None, ForwardKL()),
    ("reverse_kl", None, ReverseKL()),
    ("tv", None, TotalVariation()),
    ("jsd", 0.5, GeneralizedJSD(0.5)),
    ("jsd", 0.3, GeneralizedJSD(0.3)),
    ("jsd", 0.9, GeneralizedJSD(0.9)),
    ("gkd_jsd", 0.5, GKDJSD(0.5)),
    ("gkd_jsd", 0.1, GKDJSD(0.1)),
    ("skew_kl", 0.1, SkewKL(0.1)),
    ("skew_kl", 0.5, SkewKL(0.5)),
    ("skew_reverse_kl", 0.1, SkewReverseKL(0.1)),
    ("skew_reverse_kl", 0.5, SkewReverseKL(0.5)),
])
def test_divergence_closed_forms_on_hand_made_distributions(name, param, module):
    s, t, labels = _hand_made_inputs()
    expected = np.mean([_reference(name, P[i], Q[i], param) for i in (0, 2)])
    assert expected > 0
    assert module(s, labels, t).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_jsd_half_is_the_classic_jensen_shannon():
    p, q = P[0], Q[0]
    m = 0.5 * (p + q)
    classic = 0.5 * float(np.sum(p * np.log(p / m))) + 0.5 * float(np.sum(q * np.log(q / m)))
    s, t, labels = _hand_made_inputs()
    labels = torch.tensor([[0, IGNORE_INDEX, IGNORE_INDEX]])
    assert GKDJSD(0.5)(s, labels, t).item() == pytest.approx(classic, rel=1e-5)
    assert GeneralizedJSD(0.5)(s, labels, t).item() == pytest.approx(4 * classic, rel=1e-5)
    assert classic <= math.log(2)


@pytest.mark.parametrize("div", ALL_DIVERGENCES, ids=IDS)
def test_divergences_nonnegative_and_zero_when_equal(div):
    for seed in range(3):
        s, t, labels = _batch(seed, B=4, T=6, V=11)
        s, t = 3 * s, 3 * t  # peakier distributions
        assert div(s, labels, t).item() > 0
        assert div(t, labels, t).item() == pytest.approx(0.0, abs=1e-6)
        assert div(s, labels, s).item() == pytest.approx(0.0, abs=1e-6)
    assert isinstance(div, TokenDivergence) and div.needs_teacher


def test_jsd_endpoints_are_the_kls_and_roles_swap_with_beta():
    s, t, labels = _batch(1)
    fkl, rkl = ForwardKL()(s, labels, t).item(), ReverseKL()(s, labels, t).item()
    for cls in (GeneralizedJSD, GKDJSD):
        assert cls(0.0)(s, labels, t).item() == fkl
        assert cls(1.0)(s, labels, t).item() == rkl
        # JSD_β(p, q) == JSD_{1-β}(q, p): swap teacher and student.
        assert cls(0.3)(s, labels, t).item() == pytest.approx(cls(0.7)(t, labels, s).item(), rel=1e-5)


@pytest.mark.parametrize("eps", [1e-3, 1e-4])
def test_jsd_is_continuous_at_its_ends(eps):
    s, t, labels = _batch(1)
    fkl, rkl = ForwardKL()(s, labels, t).item(), ReverseKL()(s, labels, t).item()
    assert GeneralizedJSD(eps)(s, labels, t).item() == pytest.approx(fkl, rel=5 * eps)
    assert GeneralizedJSD(1 - eps)(s, labels, t).item() == pytest.approx(rkl, rel=5 * eps)
    # GKD's raw value vanishes towards the ends: it differs by exactly β(1-β)
    raw = GKDJSD(eps)(s, labels, t).item()
    assert raw == pytest.approx(eps * (1 - eps) * GeneralizedJSD(eps)(s, labels, t).item(), rel=1e-5)
    assert raw < 10 * eps * fkl


def test_skew_kls_at_zero_are_the_plain_kls():
    s, t, labels = _batch(2)
    assert SkewKL(0.0)(s, labels, t).item() == ForwardKL()(s, labels, t).item()
    assert SkewReverseKL(0.0)(s, labels, t).item() == ReverseKL()(s, labels, t).item()
    # skewing bounds the divergence: KL(p || a p + (1-a) q) <= -log a
    s, t = 20 * s, 20 * t
    assert SkewKL(0.1)(s, labels, t).item() <= -math.log(0.1) + 1e-5
    assert SkewReverseKL(0.1)(s, labels, t).item() <= -math.log(0.1) + 1e-5


def test_total_variation_bounded_and_half_l1():
    s, t, labels = _batch(3)
    assert 0 < TotalVariation()(100 * s, labels, 100 * t).item() <= 1.0
    s, t, labels = _hand_made_inputs()
    labels = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX]])
    # position 1: |0.7-0.4| + |0.1-0.3| + |0.1-0.2| + 0 = 0.6 -> TV 0.3
    assert TotalVariation()(s, labels, t).item() == pytest.approx(0.3, rel=1e-5)


@pytest.mark.parametrize("div", ALL_DIVERGENCES + [ForwardKL(teacher_top_k=2), SkewKL(0.2, teacher_top_p=0.8)],
                         ids=IDS + ["fkl-top2", "skew-topp"])
def test_ignored_positions_change_nothing_for_divergences(div):
    s, t, labels = _batch(4)
    s.requires_grad_(True)
    ref = div(s, labels, t)
    ref.backward()
    ref_grad = s.grad.clone()
    pad = labels.eq(IGNORE_INDEX)
    s2, t2 = s.detach().clone(), t.clone()
    s2[pad] = 1e4
    t2[pad] = -1e4
    s2[0, 4, 0] = float("nan")  # even NaN / inf at padding is dropped
    t2[2, 3, 1] = float("inf")
    s2.requires_grad_(True)
    out = div(s2, labels, t2)
    out.backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(s2.grad, ref_grad, atol=1e-7) and s2.grad[pad].abs().sum() == 0


@pytest.mark.parametrize("name,kwargs", [("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"beta": 0.3}),
                                         ("tv", {}), ("skew_kl", {"alpha": 0.2}),
                                         ("skew_reverse_kl", {"alpha": 0.2})])
@pytest.mark.parametrize("tau", [0.5, 2.0, 4.0])
def test_temperature_scaling_for_divergences(name, kwargs, tau):
    s, t, labels = _batch(5)
    plain = build_divergence(name, **kwargs)(s / tau, labels, t / tau)
    hot = build_divergence(name, temperature=tau, **kwargs)(s, labels, t)
    assert hot.item() == pytest.approx(tau**2 * plain.item(), rel=1e-5)


def test_teacher_top1_forward_kl_is_ce_on_teacher_argmax():
    s, t, labels = _batch(6)
    mask = labels.ne(IGNORE_INDEX)
    log_q = torch.log_softmax(s, -1)
    nll = -log_q.gather(-1, t.argmax(-1, keepdim=True)).squeeze(-1)
    expected = nll[mask].mean()
    got = ForwardKL(teacher_top_k=1)(s, labels, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # same as cross-entropy with the teacher's argmax as pseudo-target
    pseudo = torch.where(mask, t.argmax(-1), torch.full_like(labels, IGNORE_INDEX))
    assert got.item() == pytest.approx(CrossEntropy()(s, pseudo).item(), rel=1e-6)
    # top_k >= V is no truncation
    assert ForwardKL(teacher_top_k=50)(s, labels, t).item() == pytest.approx(
        ForwardKL()(s, labels, t).item(), rel=1e-6)


@pytest.mark.parametrize("top_p,kept", [(0.45, [0]), (0.7, [0, 1]), (0.85, [0, 1, 2]), (0.97, [0, 1, 2, 3]),
                                        (1.0, [0, 1, 2, 3, 4])])
def test_teacher_top_p_keeps_the_right_tokens(top_p, kept):
    # teacher probabilities, deliberately not sorted by index: 0.5, 0.3, 0.15, 0.04, 0.01
    order = [2, 0, 4, 1, 3]
    p_sorted = np.array([0.5, 0.3, 0.15, 0.04, 0.01])
    p = np.zeros(5)
    p[order] = p_sorted
    q = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    keep_idx = [order[i] for i in kept]
    p_trunc = np.zeros(5)
    p_trunc[keep_idx] = p[keep_idx] / p[keep_idx].sum()
    expected = float(sum(p_trunc[i] * math.log(p_trunc[i] / q[i]) for i in keep_idx))
    s = torch.tensor(np.log(q), dtype=torch.float32).view(1, 1, 5)
    t = torch.tensor(np.log(p), dtype=torch.float32).view(1, 1, 5)
    labels = torch.zeros(1, 1, dtype=torch.long)
    got = ForwardKL(teacher_top_p=top_p)(s, labels, t)
    assert torch.isfinite(got) and got.item() == pytest.approx(expected, rel=1e-5)
    # truncated teacher tokens contribute exactly 0 to the skew KL too (finite, reference value)
    a = 0.3
    m = a * p_trunc + (1 - a) * q
    skew_expected = float(sum(p_trunc[i] * math.log(p_trunc[i] / m[i]) for i in keep_idx))
    assert SkewKL(a, teacher_top_p=top_p)(s, labels, t).item() == pytest.approx(skew_expected, rel=1e-5)


def test_truncated_teacher_gives_finite_values_and_gradients():
    s, t, labels = _batch(7, V=13)
    s.requires_grad_(True)
    for div in [ForwardKL(teacher_top_k=3), GeneralizedJSD(0.5, teacher_top_p=0.6), TotalVariation(teacher_top_k=2),
                SkewKL(0.1, teacher_top_k=1), SkewReverseKL(0.1, teacher_top_p=0.5), GeneralizedJSD(0.0, teacher_top_k=2)]:
        s.grad = None
        out = div(s, labels, t)
        out.backward()
        assert torch.isfinite(out) and out.item() > 0
        assert torch.isfinite(s.grad).all()


def test_reverse_kl_types_refuse_teacher_truncation():
    for make in [lambda: ReverseKL(teacher_top_k=5), lambda: GeneralizedJSD(1.0, teacher_top_p=0.9),
                 lambda: SkewReverseKL(0.0, teacher_top_k=2)]:
        with pytest.raises(ValueError, match="truncated"):
            make()
    ReverseKL(teacher_top_p=1.0)  # top_p = 1 keeps everything: allowed


@pytest.mark.parametrize("div", ALL_DIVERGENCES + [ForwardKL(2.0, teacher_top_k=3)], ids=IDS + ["fkl-t2-top3"])
def test_gradient_reaches_only_the_student_for_divergences(div):
    s, t, labels = _batch(8)
    s.requires_grad_(True)
    t.requires_grad_(True)
    div(s, labels, t).backward()  # teacher NOT detached by the caller
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("div", ALL_DIVERGENCES, ids=IDS)
def test_bfloat16_inputs_computed_in_float32(div):
    s, t, labels = _batch(9, V=32)
    out32 = div(s, labels, t)
    out16 = div(s.bfloat16(), labels, t.bfloat16())
    assert out16.dtype == torch.float32
    assert out16.item() == pytest.approx(out32.item(), rel=2e-2, abs=1e-4)
    # internal computation is float32: identical to float32 on the bf16-rounded logits
    rounded = div(s.bfloat16().float(), labels, t.bfloat16().float())
    assert out16.item() == pytest.approx(rounded.item(), rel=1e-6)


def test_registry_and_build_divergence():
    assert set(DIVERGENCES) == {"forward_kl", "reverse_kl", "jsd", "gkd_jsd", "tv", "skew_kl", "skew_reverse_kl"}
    assert DIVERGENCES["jsd"] is GeneralizedJSD and DIVERGENCES["tv"] is TotalVariation
    d = build_divergence("jsd", beta=0.2, temperature=2.0, teacher_top_k=5)
    assert isinstance(d, GeneralizedJSD) and (d.beta, d.temperature, d.teacher_top_k) == (0.2, 2.0, 5)
    assert isinstance(build_divergence("skew_reverse_kl", alpha=0.3), SkewReverseKL)
    # legacy positional constructor still works
    assert ForwardKL(2.0).temperature == 2.0


@pytest.mark.parametrize("name,kwargs,match", [
    ("kl", {}, "forward_kl, gkd_jsd, jsd, reverse_kl, skew_kl, skew_reverse_kl, tv"),
    ("jsd", {"beta": 1.5}, r"beta must be in \[0, 1\]"),
    ("jsd", {"beta": -0.1}, r"beta must be in \[0, 1\]"),
    ("skew_kl", {"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
    ("skew_reverse_kl", {"alpha": -0.5}, r"alpha must be in \[0, 1\)"),
    ("tv", {"temperature": 0.0}, "temperature must be a finite number > 0"),
    ("forward_kl", {"temperature": -1.0}, "temperature must be a finite number > 0"),
    ("forward_kl", {"teacher_top_p": 0.0}, r"teacher_top_p must be None or in \(0, 1\]"),
    ("forward_kl", {"teacher_top_p": 1.2}, r"teacher_top_p must be None or in \(0, 1\]"),
    ("forward_kl", {"teacher_top_k": 0}, "teacher_top_k must be None or an integer >= 1"),
    ("forward_kl", {"beta": 0.5}, "allowed arguments: temperature, teacher_top_k, teacher_top_p"),
])
def test_build_divergence_errors_name_the_allowed_values(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_divergence(name, **kwargs)


def test_divergence_needs_teacher_logits():
    s, _, labels = _batch()
    with pytest.raises(ValueError, match="needs teacher logits"):
        GeneralizedJSD()(s, labels)
