"""How a student starts: an axis of the grid, next to method, ratio and seed.

* `random` — `bench.models.plan_student`: the teacher's family and vocabulary in the `balanced`
  shape (deep encoder, shallow decoder), random weights; `random/width` keeps the teacher's
  depth at a narrower width, `random/depth` the teacher's width with fewer layers; `random/decoder-only` is a GPT-2-style
  student of the same size (`bench.models.plan_decoder_only`).
* `shrink-alternating` / `shrink-first-last` — shrink-and-fine-tune (Shleifer & Rush 2020):
  the teacher's width with fewer layers (decoder layers go first, as in decoder pruning:
  decoding is where the time goes), every kept layer copied from a teacher layer — every
  other one from the first (`alternating`) or spread evenly from the first to the last
  (`first-last`) — plus the teacher's embeddings, norms and LM head.
* `pretrained:<hub name or local path>` — a given pretrained model, encoder-decoder or
  decoder-only (GPT-2 style); its size must match the requested ratio within ±10%. With its
  own tokenizer it takes sequence-level methods only (the trial checks).

This module is the axis as the spec spells it (what spec validation reads, so it imports no
modelling code); `bench.students` builds the student an init names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

SHAPES = ("balanced", "width", "depth")  # encoder-decoder students (`bench.models.plan_student`)
SHRINK_PATTERNS = ("alternating", "first-last")
RANDOM_SHAPES = (*SHAPES, "decoder-only")
ALLOWED = ("random", *(f"random/{s}" for s in RANDOM_SHAPES if s != "balanced"),
           *(f"shrink-{p}" for p in SHRINK_PATTERNS), "pretrained:<hub name or path>")


@dataclass(frozen=True)
class StudentInit:
    kind: Literal["random", "shrink", "pretrained"]
    pattern: str = ""  # shrink only
    source: str = ""  # pretrained only: hub name or local path
    shape: str = "balanced"  # random only: SHAPES or decoder-only

    @property
    def label(self) -> str:
        """The spec's spelling, used in trial keys and reports."""
        if self.kind == "shrink":
            return f"shrink-{self.pattern}"
        if self.kind == "pretrained":
            return f"pretrained:{self.source}"
        return "random" if self.shape == "balanced" else f"random/{self.shape}"


def parse_init(text: str) -> StudentInit:
    """`random` (a `balanced` student), `random/width`, `random/depth`, `shrink-alternating`,
    `shrink-first-last` or `pretrained:<name or path>`."""
    if text == "random":
        return StudentInit("random")
    if text.startswith("random/") and text.removeprefix("random/") in RANDOM_SHAPES:
        return StudentInit("random", shape=text.removeprefix("random/"))
    if text.startswith("shrink-") and text.removeprefix("shrink-") in SHRINK_PATTERNS:
        return StudentInit("shrink", pattern=text.removeprefix("shrink-"))
    if text.startswith("pretrained:") and text.removeprefix("pretrained:").strip():
        return StudentInit("pretrained", source=text.removeprefix("pretrained:").strip())
    raise ValueError(f"unknown student init {text!r}; allowed: {', '.join(ALLOWED)}")


def kept_layers(total: int, keep: int, pattern: str) -> list[int]:
    """Which of `total` teacher layers the `keep` student layers copy (increasing order)."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    if pattern == "alternating":  # strided from the first: every other layer at half depth
        return [math.floor(i * total / keep + 0.5) for i in range(keep)]
    if pattern == "first-last":  # evenly spread, both ends included
        return [0] if keep == 1 else [math.floor(i * (total - 1) / (keep - 1) + 0.5) for i in range(keep)]
    raise ValueError(f"unknown shrink pattern {pattern!r}; allowed: {', '.join(SHRINK_PATTERNS)}")
