"""Loss terms. Each is a small module over student logits, labels and (optionally) teacher logits.

Shapes: logits (B, T, V); labels (B, T) with `IGNORE_INDEX` at padding. Every term averages
over the non-ignored target tokens of the batch (one normalisation rule for all terms).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def _token_mean(per_token: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of a (B, T) tensor over positions whose label is not ignored."""
    mask = labels.ne(IGNORE_INDEX)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


class CrossEntropy(nn.Module):
    """Token-level cross-entropy against the batch's targets (gold or pseudo-targets)."""

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student_logits, labels, teacher_logits=None):
        per_token = F.cross_entropy(
            student_logits.transpose(1, 2).float(),
            labels,
            ignore_index=IGNORE_INDEX,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        return _token_mean(per_token, labels)


class ForwardKL(nn.Module):
    """Word-level KD (Kim & Rush 2016; the paper's "logits KD"): KL(p_teacher || p_student)
    at every target position, both softened by temperature τ; multiplied by τ² so gradient
    magnitudes do not shrink as τ grows (Hinton et al. 2015)."""

    needs_teacher = True

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, labels, teacher_logits=None):
        if teacher_logits is None:
            raise ValueError("ForwardKL needs teacher logits")
        tau = self.temperature
        log_p_s = F.log_softmax(student_logits.float() / tau, dim=-1)
        log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=-1)
        per_token = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
        return _token_mean(per_token, labels) * tau**2
