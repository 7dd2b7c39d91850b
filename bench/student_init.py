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
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from transformers import (
    PretrainedConfig,
    PreTrainedModel,
)

from bench.models import (
    RATIO_TOLERANCE,
    SHAPES,
    StudentPlan,
    build_model,
    count_params,
    plan_decoder_only,
    plan_fewer_layers,
    plan_student,
    shape_of,
)
from bench.pretrained import load_config, load_model

SHRINK_PATTERNS = ("alternating", "first-last")
RANDOM_SHAPES = (*SHAPES, "decoder-only")
ALLOWED = ("random", *(f"random/{s}" for s in RANDOM_SHAPES if s != "balanced"),
           *(f"shrink-{p}" for p in SHRINK_PATTERNS), "pretrained:<hub name or path>")
_LAYER_KEY = re.compile(r"(?:^|\.)(encoder|decoder)\.(?:block|layers)\.(\d+)\.")


@dataclass(frozen=True)
class StudentInit:
    kind: Literal["random", "shrink", "pretrained"]
    pattern: str = ""  # shrink only
    source: str = ""  # pretrained only: hub name or local path
    shape: str = "balanced"  # random only: `bench.models.SHAPES`

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


def plan_shrink(teacher_config: PretrainedConfig, ratio: float) -> StudentPlan:
    """Shrink-and-fine-tune's student: the teacher's width with fewer layers (`plan_fewer_layers`)."""
    return plan_fewer_layers(teacher_config, ratio)


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel, pattern: str) -> dict[str, list[int]]:
    """Load the teacher's weights into a shallower student of the same width; returns which
    teacher layer each student layer came from, per stack."""
    s_shape, t_shape = shape_of(student.config), shape_of(teacher.config)
    mapping = {
        "encoder": kept_layers(t_shape.encoder_layers, s_shape.encoder_layers, pattern),
        "decoder": kept_layers(t_shape.decoder_layers, s_shape.decoder_layers, pattern),
    }
    source = teacher.state_dict()
    state = {}
    for key, value in student.state_dict().items():
        teacher_key = _LAYER_KEY.sub(lambda m: _renumber(m, mapping), key)
        if teacher_key not in source or source[teacher_key].shape != value.shape:
            raise ValueError(f"shrink: student weight {key} has no teacher counterpart of shape "
                             f"{tuple(value.shape)} (looked for {teacher_key})")
        state[key] = source[teacher_key].clone()
    student.load_state_dict(state, strict=True)
    return mapping


def _renumber(match: re.Match, mapping: dict[str, list[int]]) -> str:
    """`encoder.block.1.` → `encoder.block.<teacher layer of student layer 1>.`"""
    prefix = match.group(0)[: match.start(2) - match.start(0)]
    return f"{prefix}{mapping[match.group(1)][int(match.group(2))]}."


def load_pretrained(source: str, teacher_config: PretrainedConfig, ratio: float) -> tuple[PreTrainedModel, StudentPlan]:
    """A pretrained student (encoder-decoder or decoder-only), checked against the ratio. Its
    tokenizer is the trial's concern: word-level methods need the teacher's."""
    config = load_config(source, "pretrained student")
    teacher_params, params = count_params(teacher_config), count_params(config)
    plan = StudentPlan(config, params, teacher_params, ratio)
    if abs(plan.realized_ratio - ratio) / ratio > RATIO_TOLERANCE:
        raise ValueError(f"pretrained student {source!r} has {params:,} params: compression ratio "
                         f"{plan.realized_ratio:.2f}, not {ratio} (±{RATIO_TOLERANCE:.0%}); list it under "
                         f"the ratio it has")
    return load_model(source, "pretrained student"), plan


def make_student(init: StudentInit, teacher_path: str, ratio: float, seed: int,
                 max_positions: int = 512) -> tuple[PreTrainedModel, StudentPlan]:
    """The student model for one trial and the plan that sized it (`max_positions`: what a
    decoder-only student must hold, prompt + target)."""
    teacher_config = load_config(teacher_path, "teacher")
    if init.kind == "random" and init.shape == "decoder-only":
        plan = plan_decoder_only(teacher_config, ratio, max_positions)
        return build_model(plan.config, seed), plan
    if init.kind == "pretrained":
        return load_pretrained(init.source, teacher_config, ratio)
    if init.kind == "shrink":
        plan = plan_shrink(teacher_config, ratio)
        student = build_model(plan.config, seed)
        copy_teacher_layers(student, load_model(teacher_path, "teacher"), init.pattern)
        return student, plan
    plan = plan_student(teacher_config, ratio, init.shape)
    return build_model(plan.config, seed), plan
