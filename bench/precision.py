"""Mixed precision in one place: the spec's `resources.precision` → an autocast context."""
from __future__ import annotations

import contextlib

import torch


def autocast_dtype(precision: str) -> torch.dtype | None:
    """bf16 → torch.bfloat16; fp32 → None (no autocast)."""
    return torch.bfloat16 if precision == "bf16" else None


def autocast(dtype: torch.dtype | None, device) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
