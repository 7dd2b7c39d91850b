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
