"""Encoder-decoder models built from a config, and students sized by compression ratio.

A student keeps the teacher's architecture family and vocabulary and has teacher_params /
ratio parameters (±10%), in one of three shapes:

* `balanced` (default) — deep encoder, shallow decoder: the encoder keeps
  round(L_enc / √ratio) layers, the decoder ⌊L_dec / ratio⌋ (at least one each), and the
  width is sized to hit the parameter target. Decoding runs the decoder once per output token
  and the encoder once per input, so the decoder takes the larger cut: that is where batch-1
  latency goes (the paper's decoder-pruning finding, S2; Kasai et al. 2021, "Deep encoder,
  shallow decoder"), and it is close to how the T5 family shrinks (T5-large → T5-small: 12.8×
  the parameters, 4× the depth).
* `width` — the teacher's depth at a narrower width (layers are dropped only when even the
  narrowest width is too big).
* `depth` — the teacher's width with fewer layers, decoder layers first (narrower only when
  one layer each is still too big).

Parameter counts come from instantiating the config on the meta device (exact for any
architecture, no memory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

from bench.student_init import SHAPES  # the spec's names for the shapes below

if TYPE_CHECKING:
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
    cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    return cls.from_config(config)


def plan_decoder_only(teacher_config: PretrainedConfig, ratio: float, max_positions: int) -> StudentPlan:
    """A GPT-2-style decoder-only student of teacher/ratio parameters (±10%) on the teacher's
    vocabulary: as many layers as the `balanced` encoder-decoder student has in its two stacks
    together (the same depth budget, S1's comparison), the width sized to the target. It reads
    prompt + target as one sequence (`bench.lm`), so `max_positions` covers both."""
    from transformers import GPT2Config

    teacher = shape_of(teacher_config)
    teacher_params = count_params(teacher_config)
    target = teacher_params / ratio
    layers = sum(balanced_depths(teacher, ratio))
    ids = dict(bos_token_id=teacher_config.bos_token_id, eos_token_id=teacher_config.eos_token_id,
               pad_token_id=teacher_config.pad_token_id)

    def config(d: int) -> GPT2Config:
        return GPT2Config(vocab_size=teacher_config.vocab_size, n_embd=d, n_layer=layers, n_head=teacher.heads,
                          n_inner=max(teacher.heads, round(teacher.ffn_dim * d / teacher.d_model)),
                          n_positions=max_positions, tie_word_embeddings=True, **ids)

    widths = list(range(teacher.heads, 4 * teacher.d_model + 1, teacher.heads))
    lo, hi = 0, len(widths) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count_params(config(widths[mid])) < target:
            lo = mid + 1
        else:
            hi = mid
    n, d = min((abs(count_params(config(w)) - target), w) for w in {widths[max(lo - 1, 0)], widths[lo]})
    n = count_params(config(d))
    if abs(n - target) / target > RATIO_TOLERANCE:
        raise ValueError(f"cannot build a decoder-only student at compression ratio {ratio}: the closest has "
                         f"{n:,} params (target {target:,.0f}); the position and token embeddings bound it")
    return StudentPlan(config(d), n, teacher_params, ratio)


@dataclass(frozen=True)
class StudentPlan:
    config: PretrainedConfig
    params: int
    teacher_params: int
    requested_ratio: float

    @property
    def realized_ratio(self) -> float:
        return self.teacher_params / self.params


def plan_student(teacher_config: PretrainedConfig, ratio: float, shape: str = "balanced") -> StudentPlan:
    """The student config of `shape` whose size is closest to teacher/ratio (within ±10%, or an error)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown student shape {shape!r}; allowed: {', '.join(SHAPES)}")
    teacher = shape_of(teacher_config)
    teacher_params = count_params(teacher_config)
    target = teacher_params / ratio
    if shape == "depth":
        try:
            return plan_fewer_layers(teacher_config, ratio)
        except ValueError:  # no layer count lands within ±10% at the teacher's width: narrow the closest above
            above = [d for d in _layer_pairs(teacher) if _params_at(teacher_config, teacher, teacher.d_model, *d) >= target]
            depths = [min(above, key=lambda d: _params_at(teacher_config, teacher, teacher.d_model, *d))] \
                if above else [(1, 1)]
    elif shape == "balanced":
        first = balanced_depths(teacher, ratio)
        depths = [first, *_shallower(*first)]
    else:
        depths = [(teacher.encoder_layers, teacher.decoder_layers),
                  *_shallower(teacher.encoder_layers, teacher.decoder_layers)]
    widths = list(range(teacher.heads, teacher.d_model + 1, teacher.heads))
    best: tuple[float, Shape, int] | None = None
    for enc, dec in depths:
        for d in _closest_widths(teacher_config, teacher, widths, target, enc, dec):
            n = _params_at(teacher_config, teacher, d, enc, dec)
            err = abs(n - target) / target
            if best is None or err < best[0]:
                best = (err, _shaped(teacher, d, enc, dec), n)
        if best[0] <= RATIO_TOLERANCE:
            break
    err, chosen, n = best
    if err > RATIO_TOLERANCE:
        raise ValueError(
            f"cannot build a student at compression ratio {ratio}: the closest has {n:,} params "
            f"(teacher {teacher_params:,}, target {target:,.0f}); the vocabulary embeddings bound "
            f"the smallest student — use a smaller ratio or a larger teacher"
        )
    return StudentPlan(with_shape(teacher_config, chosen), n, teacher_params, ratio)


def balanced_depths(teacher: Shape, ratio: float) -> tuple[int, int]:
    """The `balanced` shape's (encoder, decoder) layers: round(L_enc / √ratio) and ⌊L_dec / ratio⌋,
    at least 1 each and the decoder no deeper than the encoder. The decoder is rounded down because
    each of its layers is paid once per generated token (6+6 at ×4 → 3+1)."""
    enc = max(1, min(teacher.encoder_layers, round(teacher.encoder_layers / math.sqrt(ratio))))
    return enc, max(1, min(teacher.decoder_layers, math.floor(teacher.decoder_layers / ratio + 1e-9), enc))


def _shaped(teacher: Shape, d: int, enc: int, dec: int) -> Shape:
    ffn = max(teacher.heads, round(teacher.ffn_dim * d / teacher.d_model))
    return Shape(d, ffn, enc, dec, teacher.heads)


def _params_at(config, teacher: Shape, d: int, enc: int, dec: int) -> int:
    return count_params(with_shape(config, _shaped(teacher, d, enc, dec)))


def _closest_widths(config, teacher: Shape, widths: list[int], target: float, enc: int, dec: int) -> set[int]:
    """The widths around the one whose parameter count reaches `target` (bisection: params grow
    with width)."""
    lo, hi = 0, len(widths) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _params_at(config, teacher, widths[mid], enc, dec) < target:
            lo = mid + 1
        else:
            hi = mid
    return {widths[max(lo - 1, 0)], widths[lo]}


def _shallower(enc: int, dec: int):
    """Shallower and shallower, decoder layers first (decoding is the cost)."""
    while enc > 1 or dec > 1:
        if dec >= enc and dec > 1:
            dec -= 1
        else:
            enc -= 1
        yield enc, dec


def _layer_pairs(teacher: Shape) -> list[tuple[int, int]]:
    """Every (encoder, decoder) layer count up to the teacher's (decoder ≤ encoder: T5 cannot
    generate with a deeper decoder in transformers 5)."""
    return [(e, d) for e in range(1, teacher.encoder_layers + 1) for d in range(1, teacher.decoder_layers + 1)
            if d <= e or teacher.encoder_layers < teacher.decoder_layers]


def plan_fewer_layers(teacher_config: PretrainedConfig, ratio: float) -> StudentPlan:
    """The teacher's width with the layer counts closest to teacher/ratio parameters; among
    those within ±10%, the one that keeps the most encoder layers (so the decoder is cut
    first). ValueError when no layer count lands within ±10%."""
    teacher = shape_of(teacher_config)
    teacher_params = count_params(teacher_config)
    target = teacher_params / ratio

    def shaped(enc: int, dec: int):
        return Shape(teacher.d_model, teacher.ffn_dim, enc, dec, teacher.heads)

    # parameters are affine in the layer counts: three counts give every combination
    base = count_params(with_shape(teacher_config, shaped(1, 1)))
    per_enc = count_params(with_shape(teacher_config, shaped(2, 1))) - base if teacher.encoder_layers > 1 else 0
    per_dec = count_params(with_shape(teacher_config, shaped(1, 2))) - base if teacher.decoder_layers > 1 else 0
    candidates = []
    for enc, dec in _layer_pairs(teacher):
        if teacher_config.model_type == "t5" and dec > enc:
            continue
        n = base + (enc - 1) * per_enc + (dec - 1) * per_dec
        candidates.append((abs(n - target) / target, enc, shaped(enc, dec), n))
    within = [c for c in candidates if c[0] <= RATIO_TOLERANCE]
    if not within:
        err, _, _, n = min(candidates, key=lambda c: c[0])
        smallest = min(c[3] for c in candidates)
        raise ValueError(
            f"cannot shrink the teacher ({teacher_params:,} params, {teacher.encoder_layers}+"
            f"{teacher.decoder_layers} layers) to compression ratio {ratio} by dropping layers: the "
            f"closest has {n:,} params ({err:.0%} off); with one layer each it is "
            f"{teacher_params / smallest:.2f}x smaller at most — use init 'random' or a ratio "
            f"reachable by removing layers")
    _, _, chosen, n = max(within, key=lambda c: (c[1], -c[0]))
    config = with_shape(teacher_config, chosen)
    if count_params(config) != n:  # an architecture whose layers differ in size
        raise RuntimeError(f"shrink planning assumed equal-sized layers for {config.model_type}")
    return StudentPlan(config, n, teacher_params, ratio)
