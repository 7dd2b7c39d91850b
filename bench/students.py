"""Building a trial's student from its `StudentInit` (`bench.student_init`, the grid axis as
the spec spells it): a random student sized by `bench.models`, a shrunk copy of the teacher's
layers, or a pretrained model checked against the ratio. Kept apart from the axis itself so
that validating a spec never imports the modelling stack."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bench.models import (
    RATIO_TOLERANCE,
    StudentPlan,
    build_model,
    count_params,
    plan_decoder_only,
    plan_fewer_layers,
    plan_student,
    shape_of,
)
from bench.pretrained import load_config, load_model
from bench.student_init import StudentInit, kept_layers

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

_LAYER_KEY = re.compile(r"(?:^|\.)(encoder|decoder)\.(?:block|layers)\.(\d+)\.")


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
