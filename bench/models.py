"""Encoder-decoder models built from a config, and students sized by compression ratio.

A student keeps the teacher's architecture family, vocabulary and depth, and shrinks its
width (d_model, FFN) until its parameter count is within ±10% of teacher_params / ratio;
only when even the narrowest width is too big does it also drop layers. Parameter counts
come from instantiating the config on the meta device (exact for any architecture, no
memory).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    BartConfig,
    BartForConditionalGeneration,
    PretrainedConfig,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from bench.spec import ModelSpec

RATIO_TOLERANCE = 0.10
_CLASSES = {"bart": BartForConditionalGeneration, "t5": T5ForConditionalGeneration}


@dataclass(frozen=True)
class Shape:
    """The size knobs shared by the encoder-decoder families we build from configs."""

    d_model: int
    ffn_dim: int
    encoder_layers: int
    decoder_layers: int
    heads: int


def config_from_spec(spec: ModelSpec, tokenizer, max_positions: int = 512) -> PretrainedConfig:
    shape = Shape(spec.d_model, spec.ffn_dim, spec.encoder_layers, spec.decoder_layers, spec.heads)
    return _make_config(spec.arch, shape, tokenizer, spec.dropout, max_positions)


def _make_config(arch, shape: Shape, tokenizer, dropout: float, max_positions: int):
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.eos_token_id)
    vocab = len(tokenizer)
    if arch == "bart":
        return BartConfig(
            vocab_size=vocab, d_model=shape.d_model, encoder_layers=shape.encoder_layers,
            decoder_layers=shape.decoder_layers, encoder_attention_heads=shape.heads,
            decoder_attention_heads=shape.heads, encoder_ffn_dim=shape.ffn_dim,
            decoder_ffn_dim=shape.ffn_dim, dropout=dropout, attention_dropout=0.0,
            max_position_embeddings=max_positions, scale_embedding=True, forced_eos_token_id=None,
            **ids,
        )
    if arch == "t5":
        return T5Config(
            vocab_size=vocab, d_model=shape.d_model, d_kv=shape.d_model // shape.heads,
            d_ff=shape.ffn_dim, num_layers=shape.encoder_layers,
            num_decoder_layers=shape.decoder_layers, num_heads=shape.heads,
            dropout_rate=dropout, tie_word_embeddings=True, **ids,
        )
    raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(_CLASSES)}")


def arch_of(config: PretrainedConfig) -> str:
    return config.model_type


def shape_of(config: PretrainedConfig) -> Shape:
    if config.model_type == "bart":
        return Shape(config.d_model, config.encoder_ffn_dim, config.encoder_layers,
                     config.decoder_layers, config.encoder_attention_heads)
    if config.model_type == "t5":
        return Shape(config.d_model, config.d_ff, config.num_layers,
                     config.num_decoder_layers, config.num_heads)
    if config.model_type == "gpt2":  # decoder-only: described, not sized (students come pretrained)
        return Shape(config.n_embd, config.n_inner or 4 * config.n_embd, 0, config.n_layer, config.n_head)
    raise ValueError(f"cannot size a student for model type {config.model_type!r}; allowed: bart, t5")


def with_shape(config: PretrainedConfig, shape: Shape) -> PretrainedConfig:
    if config.model_type not in _CLASSES:
        raise ValueError(f"students are sized from encoder-decoder teachers (t5, bart), not "
                         f"{config.model_type!r}; for a decoder-only pair use student init "
                         f"'pretrained:<name or path>'")
    new = config.__class__.from_dict(config.to_dict())
    if config.model_type == "bart":
        new.d_model = shape.d_model
        new.encoder_ffn_dim = new.decoder_ffn_dim = shape.ffn_dim
        new.encoder_layers, new.decoder_layers = shape.encoder_layers, shape.decoder_layers
        new.num_hidden_layers = shape.encoder_layers
        new.encoder_attention_heads = new.decoder_attention_heads = shape.heads
    else:
        new.d_model, new.d_ff, new.d_kv = shape.d_model, shape.ffn_dim, shape.d_model // shape.heads
        new.num_layers, new.num_decoder_layers = shape.encoder_layers, shape.decoder_layers
        new.num_heads = shape.heads
    return new


def count_params(config: PretrainedConfig) -> int:
    """Unique parameters (tied embeddings counted once)."""
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_model(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    return AutoModelForSeq2SeqLM.from_config(config)


@dataclass(frozen=True)
class StudentPlan:
    config: PretrainedConfig
    params: int
    teacher_params: int
    requested_ratio: float

    @property
    def realized_ratio(self) -> float:
        return self.teacher_params / self.params


def plan_student(teacher_config: PretrainedConfig, ratio: float) -> StudentPlan:
    """The student config whose size is closest to teacher/ratio (within ±10%, or an error)."""
    teacher = shape_of(teacher_config)
    teacher_params = count_params(teacher_config)
    target = teacher_params / ratio

    def shaped(d: int, enc: int, dec: int) -> Shape:
        ffn = max(teacher.heads, round(teacher.ffn_dim * d / teacher.d_model))
        return Shape(d, ffn, enc, dec, teacher.heads)

    widths = list(range(teacher.heads, teacher.d_model + 1, teacher.heads))
    best: tuple[float, Shape, int] | None = None
    for enc, dec in _depths(teacher):
        lo, hi = 0, len(widths) - 1  # bisection: params grow with width
        while lo < hi:
            mid = (lo + hi) // 2
            if count_params(with_shape(teacher_config, shaped(widths[mid], enc, dec))) < target:
                lo = mid + 1
            else:
                hi = mid
        for i in {max(lo - 1, 0), lo}:
            shape = shaped(widths[i], enc, dec)
            n = count_params(with_shape(teacher_config, shape))
            err = abs(n - target) / target
            if best is None or err < best[0]:
                best = (err, shape, n)
        if best[0] <= RATIO_TOLERANCE:
            break
    err, shape, n = best
    if err > RATIO_TOLERANCE:
        raise ValueError(
            f"cannot build a student at compression ratio {ratio}: the closest has {n:,} params "
            f"(teacher {teacher_params:,}, target {target:,.0f}); the vocabulary embeddings bound "
            f"the smallest student — use a smaller ratio or a larger teacher"
        )
    return StudentPlan(with_shape(teacher_config, shape), n, teacher_params, ratio)


def _depths(teacher: Shape):
    """Keep the teacher's depth first; then shallower, decoder last (decoding is the cost)."""
    enc, dec = teacher.encoder_layers, teacher.decoder_layers
    yield enc, dec
    while enc > 1 or dec > 1:
        if dec >= enc and dec > 1:
            dec -= 1
        else:
            enc -= 1
        yield enc, dec
