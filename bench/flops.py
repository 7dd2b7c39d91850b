"""Training compute in FLOPs, from token counts: what a trial spent, so that methods can be
compared at equal cost (the report's compute-matched view).

Analytic, matrix multiplications only (one multiply-add = 2 FLOPs), as `bench.cost`:

- a teacher-forced forward pass over S source and T target tokens costs
  2·N_enc·S + 2·N_dec·T + 2·d·V·T (LM head) + attention (4·d_attn per attended position:
  encoder self-attention over S̄ keys, decoder self-attention over (T̄+1)/2, cross-attention
  over S̄), N = non-embedding parameters; a decoder-only model reads S + T tokens through its
  one stack;
- a backward pass costs twice its forward pass;
- generating T tokens for a source of S tokens costs the encoder once plus T times
  `bench.cost.flops_per_token` (KV-cached decoding).
"""
from __future__ import annotations

from typing import Any

from bench.cost import _meta_model, decoding_dims, flops_per_token, param_counts


_DIMS: dict[str, dict[str, Any]] = {}


def dims_of(config) -> dict[str, Any]:
    """The sizes the formulas need (parameter counts on the meta device, once per config)."""
    key = config.to_json_string(use_diff=False)
    if key not in _DIMS:
        counts = param_counts(_meta_model(config))
        seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        enc_layers = config.num_layers if config.model_type in ("t5", "mt5") else getattr(config, "encoder_layers", 0)
        _DIMS[key] = {**decoding_dims(config), "seq2seq": seq2seq, "encoder_layers": enc_layers if seq2seq else 0,
                      "n_enc": counts["params_encoder_non_embedding"],
                      "n_dec": counts["params_decoder_non_embedding"], "config": config}
    return _DIMS[key]


def forward_flops(config, source_tokens: float, target_tokens: float, rows: int) -> float:
    """One teacher-forced forward pass over `rows` examples holding these many real tokens."""
    if rows <= 0:
        return 0.0
    d = dims_of(config)
    s_len, t_len = source_tokens / rows, target_tokens / rows
    head = 2 * d["d_model"] * d["vocab_size"] * target_tokens
    if not d["seq2seq"]:  # one stack reads prompt + target
        tokens = source_tokens + target_tokens
        attention = 4 * d["decoder_layers"] * d["d_attn"] * tokens * (s_len + t_len + 1) / 2
        return float(2 * d["n_dec"] * tokens + head + attention)
    attention = 4 * d["d_attn"] * (d["encoder_layers"] * source_tokens * s_len
                                   + d["decoder_layers"] * target_tokens * ((t_len + 1) / 2 + s_len))
    return float(2 * d["n_enc"] * source_tokens + 2 * d["n_dec"] * target_tokens + head + attention)


def generation_flops(config, sources: int, source_tokens: float, generated_tokens: float, beams: int = 1) -> float:
    """Generating `generated_tokens` in all for `sources` inputs (beam search: × beams)."""
    if sources <= 0:
        return 0.0
    d = dims_of(config)
    s_len, out_len = source_tokens / sources, generated_tokens / sources
    per_token = flops_per_token(d["config"], source_len=s_len, output_len=out_len,
                                decoder_non_embedding=d["n_dec"])
    encoder = 2 * d["n_enc"] * source_tokens + 4 * d["encoder_layers"] * d["d_attn"] * source_tokens * s_len
    return float(encoder + beams * per_token * generated_tokens)


def training_compute(stats: dict[str, Any], student_config, teacher_config=None,
                     shared: dict[str, float] | None = None) -> dict[str, float]:
    """The FLOPs breakdown of one training run from its loop statistics (`TrainingRun.stats`);
    `shared`: costs of shared artifacts this run used (teacher PT generation, the teacher
    cache), counted in full."""
    rows = stats.get("rows", 0)
    fwd = forward_flops(student_config, stats.get("source_tokens", 0), stats.get("target_tokens", 0), rows)
    out = {"student_forward": fwd, "student_backward": 2 * fwd}
    teacher_rows = stats.get("teacher_forwards", 0)
    out["teacher_forward"] = forward_flops(teacher_config, stats.get("teacher_source_tokens", 0),
                                           stats.get("teacher_target_tokens", 0), teacher_rows) \
        if teacher_config is not None and teacher_rows else 0.0
    gen_sources = stats.get("student_generation_sources", 0)
    out["student_generation"] = generation_flops(student_config, gen_sources,
                                                 stats.get("student_generation_source_tokens", 0),
                                                 stats.get("student_generated_tokens", 0)) if gen_sources else 0.0
    out.update({k: float(v) for k, v in (shared or {}).items()})
    out.setdefault("teacher_generation", 0.0)
    out.setdefault("teacher_cache", 0.0)
    out["total"] = sum(v for k, v in out.items() if k != "total")
    return out
