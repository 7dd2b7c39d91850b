"""Cost of one model on the device it is given: size, analytic FLOPs, latency, throughput, memory.

`profile_model` returns flat scalar fields whose names carry their unit; `relative_costs` turns
a student's and a teacher's profiles into speed-ups and compression ratios.

Units: `_ms` milliseconds, `_eps` examples per second, `_mb` mebibytes (2**20 bytes), FLOPs as
floating-point operations (one multiply-add = 2 FLOPs). Timings are wall-clock on the given
device (CUDA is synchronised before a clock is read) and always follow a warm-up; they are
measurements of this machine at this moment, so compare them only within one run.

Memory (`peak_mem_mb`) is the peak *growth* of memory while the model generates for the
profiled sources at `batch_size`, above what was in use just before (weights are not in it;
they are `weights_mb`). On CUDA it is `torch.cuda.max_memory_allocated` (reset first) minus
`torch.cuda.memory_allocated` before: exact tensor memory, allocator caching excluded. On CPU
it is the growth of the process's resident set size (RSS) over its level before: on Linux
the kernel's peak-RSS mark (VmHWM, reset through /proc/self/clear_refs) when the kernel lets
us reset it, otherwise the RSS sampled every millisecond by a thread (which can miss a short
spike). Before the level is read, garbage is collected and glibc's allocator hands its free heap
pages back to the kernel (`malloc_trim`), since a block the allocator kept from earlier work is
otherwise reused without growing RSS and the growth reads as zero (seen in a long-lived test
process). CPU figures stay a lower bound where the allocator is not glibc's, which is also why
memory is measured on the first generation of the profile.
`peak_mem_method` records which measurement a row holds; where none is possible (no /proc)
`peak_mem_mb` is None. (Resetting VmHWM also resets the max RSS `getrusage` reports for this
process.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.generation import generate_ids

MB = 2**20


# ---------------------------------------------------------------------------- parameters, size

def param_counts(model) -> dict[str, int]:
    """Unique parameters (tied weights once), split into embedding and non-embedding.

    Embedding parameters are every `nn.Embedding` (token embeddings, learned positions, T5's
    relative-position buckets) plus the LM head when it is not tied to the token embeddings;
    a tied head shares the embedding's parameter and is counted once. Works on meta-device
    models (no memory)."""
    unique = {id(p): p for p in model.parameters()}
    embedding = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        embedding |= {id(p) for p in head.parameters()}
    decoder = _decoder_params(model)
    encoder = ({id(p) for p in model.get_encoder().parameters()}
               if getattr(model.config, "is_encoder_decoder", False) else set())

    def n(ids) -> int:
        return sum(unique[i].numel() for i in ids)

    return {
        "params_total": n(unique),
        "params_embedding": n(embedding),
        "params_non_embedding": n(unique.keys() - embedding),
        "params_encoder_non_embedding": n(encoder - embedding),
        "params_decoder_non_embedding": n(decoder - embedding),
    }


def _decoder_params(model) -> set[int]:
    """Ids of the parameters a decoding step runs through (the whole model if decoder-only)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return {id(p) for p in model.get_decoder().parameters()}
    return {id(p) for p in model.parameters()}


def weights_mb(model) -> float:
    """In-memory size of parameters and buffers (tied weights once)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / MB


def disk_mb(model) -> float:
    """Size of every file `save_pretrained` writes (safetensors weights, config and generation
    config) in a temporary directory; tied weights are stored once."""
    with tempfile.TemporaryDirectory(prefix="kdbench-size-") as tmp:
        model.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / MB


# ---------------------------------------------------------------------------- analytic FLOPs

def decoding_dims(config) -> dict[str, int]:
    """The sizes the FLOPs formula needs: decoder layers, attention width, model width, vocab."""
    kind = config.model_type
    if kind in ("t5", "mt5"):
        layers, d_attn, d_model = config.num_decoder_layers, config.num_heads * config.d_kv, config.d_model
    elif kind in ("bart", "mbart"):
        layers, d_attn, d_model = config.decoder_layers, config.d_model, config.d_model
    elif kind == "gpt2":
        layers, d_attn, d_model = config.n_layer, config.n_embd, config.n_embd
    else:
        raise ValueError(f"no FLOPs formula for model type {kind!r}; allowed: t5, mt5, bart, mbart, gpt2")
    return {"decoder_layers": layers, "d_attn": d_attn, "d_model": d_model, "vocab_size": config.vocab_size}


def flops_per_token(config, *, source_len: float, output_len: float,
                    decoder_non_embedding: int | None = None) -> float:
    """Analytic forward FLOPs to generate one output token with a KV cache (how `generate`
    decodes), for one sequence (one beam; beam search of width k costs about k times this):

        F = 2·N_dec + 4·L·d_attn·(S + C) + 2·d_model·V

    - 2·N_dec: every non-embedding decoder weight is used once per token, one multiply-add
      (2 FLOPs) each. N_dec excludes embeddings and the LM head (see `param_counts`).
    - 4·L·d_attn·(S + C): attention in each of the L decoder layers; the new token's query is
      scored against every key (d_attn multiply-adds each) and the values are summed with those
      weights (d_attn multiply-adds each), so 2·2·d_attn FLOPs per attended position. An
      encoder-decoder attends the S source positions by cross-attention and the C decoder
      positions by self-attention; a decoder-only model (GPT-2) attends the S prompt positions
      and the C generated positions by self-attention alone, so the same expression covers both.
      C is the mean self-attention context while generating `output_len` = T tokens: the t-th
      step attends t positions (the start token and the tokens so far), so C = (T + 1) / 2.
    - 2·d_model·V: the LM-head projection onto the V-word vocabulary.

    Assumptions: matrix multiplications only (layer norms, softmax, activations, biases and
    position biases are O(d) per token and left out); the encoder's cost is paid once per
    source, not per generated token, and is not in F; the cross-attention key/value
    projections are inside N_dec, i.e. counted once per generated token, while `generate`
    computes them once per source (S times), so F is exact per token only when S = T.

    `decoder_non_embedding` may be given (e.g. from `param_counts` of a real model); otherwise
    the model is instantiated from `config` on the meta device (no memory) and counted."""
    dims = decoding_dims(config)
    if decoder_non_embedding is None:
        decoder_non_embedding = param_counts(_meta_model(config))["params_decoder_non_embedding"]
    context = (output_len + 1) / 2
    attention = 4 * dims["decoder_layers"] * dims["d_attn"] * (source_len + context)
    return float(2 * decoder_non_embedding + attention + 2 * dims["d_model"] * dims["vocab_size"])


def _meta_model(config):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


# ---------------------------------------------------------------------------- timing, memory

def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def latency_ms(model, sources: Sequence[Sequence[int]], *, num_beams: int, pad_id: int, eos_id: int,
               max_new_tokens: int, device) -> tuple[float, float]:
    """Mean wall time per example and per generated token (eos included) when decoding one
    example at a time (batch 1), after one warm-up example."""
    kw = {"pad_id": pad_id, "eos_id": eos_id, "max_new_tokens": max_new_tokens, "num_beams": num_beams,
          "batch_size": 1, "device": device}
    generate_ids(model, sources[:1], **kw)
    _sync(device)
    start = time.perf_counter()
    outputs = generate_ids(model, sources, **kw)
    _sync(device)
    ms = (time.perf_counter() - start) * 1000
    tokens = sum(len(o[0]) + 1 for o in outputs)  # with the eos
    return ms / max(1, len(sources)), ms / max(1, tokens)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _hwm_bytes() <= _rss_bytes() + 64 * 1024  # the reset really took effect
    except OSError:
        return False


def _release_free_heap() -> str:
    """Collect garbage and return glibc's free heap pages to the kernel, so that memory the
    measured code reuses from earlier work shows up as RSS growth; says what it did."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return ", after malloc_trim"
    except (OSError, AttributeError):  # not glibc: freed memory may be reused unseen
        return ""


@contextmanager
def peak_memory(device) -> Iterator[dict[str, Any]]:
    """Measures the peak memory growth of the enclosed code (see the module docstring); the
    yielded dict is filled on exit with `peak_mem_mb` and `peak_mem_method`."""
    out: dict[str, Any] = {}
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out.update(peak_mem_mb=(torch.cuda.max_memory_allocated(device) - before) / MB,
                   peak_mem_method="cuda max_memory_allocated minus allocated before")
        return
    if not os.path.exists("/proc/self/statm"):
        yield out
        out.update(peak_mem_mb=None, peak_mem_method="unavailable: no /proc/self/statm on this OS")
        return
    trimmed = _release_free_heap()
    before = _rss_bytes()
    if _reset_hwm():
        yield out
        out.update(peak_mem_mb=max(0, _hwm_bytes() - before) / MB,
                   peak_mem_method="cpu peak RSS (VmHWM) minus RSS before" + trimmed)
        return
    peak, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
    peak[0] = max(peak[0], _rss_bytes())
    out.update(peak_mem_mb=(peak[0] - before) / MB,
               peak_mem_method="cpu RSS sampled every 1 ms minus RSS before" + trimmed)


# ---------------------------------------------------------------------------- the profile

def profile_model(model, tokenizer, sources_ids: Sequence[Sequence[int]], *, device, num_beams: int,
                  batch_size: int, latency_examples: int, max_new_tokens: int) -> dict[str, Any]:
    """Cost profile of `model` (already on `device`, not DDP-wrapped) on tokenized sources.

    In order: peak memory while generating all `sources_ids` at `batch_size` with `num_beams`
    (first, so the CPU measurement is as cold as it can be; it doubles as the warm-up);
    throughput of the same generation (examples/s); batch-1 latency per example on the first
    `latency_examples` sources, greedy and with `num_beams` beams (with `num_beams` = 1 the
    beam latency is the greedy one); parameter counts, in-memory and on-disk size; analytic
    FLOPs per generated token (`flops_per_token`) at the mean source length and the mean
    output length of the profiled generation. Run it inside the caller's autocast context to
    profile mixed precision. Returns flat scalars:

    `params_total`, `params_embedding`, `params_non_embedding`, `params_encoder_non_embedding`,
    `params_decoder_non_embedding`, `weights_mb`, `disk_mb`, `param_dtype`, `flops_per_token`,
    `source_tokens_mean`, `output_tokens_mean`, `latency_greedy_ms`, `latency_beam_ms`,
    `throughput_eps`, `peak_mem_mb`, `peak_mem_method`, `profile_device`, `profile_num_beams`,
    `profile_batch_size`, `profile_examples`, `latency_examples`, `max_new_tokens`.
    """
    if not sources_ids:
        raise ValueError("profile_model needs at least one tokenized source")
    if latency_examples < 1 or batch_size < 1 or num_beams < 1:
        raise ValueError(f"latency_examples, batch_size and num_beams must be >= 1; got "
                         f"{latency_examples}, {batch_size}, {num_beams}")
    kw = {"pad_id": tokenizer.pad_token_id, "eos_id": tokenizer.eos_token_id, "max_new_tokens": max_new_tokens,
          "device": device}
    with peak_memory(device) as mem:
        outputs = generate_ids(model, sources_ids, num_beams=num_beams, batch_size=batch_size, **kw)
    _sync(device)
    start = time.perf_counter()
    generate_ids(model, sources_ids, num_beams=num_beams, batch_size=batch_size, **kw)
    _sync(device)
    throughput = len(sources_ids) / (time.perf_counter() - start)

    timed = sources_ids[:latency_examples]
    greedy, greedy_per_token = latency_ms(model, timed, num_beams=1, **kw)
    beam = greedy if num_beams == 1 else latency_ms(model, timed, num_beams=num_beams, **kw)[0]

    counts = param_counts(model)
    source_len = sum(map(len, sources_ids)) / len(sources_ids)
    output_len = sum(len(o[0]) for o in outputs) / len(outputs)
    return {
        **counts,
        "weights_mb": weights_mb(model),
        "disk_mb": disk_mb(model),
        "param_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "flops_per_token": flops_per_token(model.config, source_len=source_len, output_len=output_len,
                                           decoder_non_embedding=counts["params_decoder_non_embedding"]),
        "source_tokens_mean": source_len,
        "output_tokens_mean": output_len,
        "latency_greedy_ms": greedy,
        # per generated token: comparable between models that stop at different lengths
        "latency_greedy_ms_per_token": greedy_per_token,
        "latency_beam_ms": beam,
        "throughput_eps": throughput,
        **mem,
        "profile_device": str(device),
        "profile_num_beams": num_beams,
        "profile_batch_size": batch_size,
        "profile_examples": len(sources_ids),
        "latency_examples": len(timed),
        "max_new_tokens": max_new_tokens,
    }


# teacher / student for sizes and times (bigger is better for the student), student / teacher
# for throughput
_TEACHER_OVER_STUDENT = {
    "speedup_greedy": "latency_greedy_ms",
    "speedup_greedy_per_token": "latency_greedy_ms_per_token",
    "speedup_beam": "latency_beam_ms",
    "compression_params": "params_total",
    "compression_non_embedding": "params_non_embedding",
    "compression_disk": "disk_mb",
    "compression_flops": "flops_per_token",
    "compression_peak_mem": "peak_mem_mb",
}
_STUDENT_OVER_TEACHER = {"throughput_gain": "throughput_eps"}


def relative_costs(student: dict[str, Any], teacher: dict[str, Any]) -> dict[str, float | None]:
    """The student's costs relative to the teacher's, each > 1 when the student is cheaper:
    `speedup_greedy` / `speedup_beam` = teacher latency / student latency; `throughput_gain` =
    student throughput / teacher throughput; `compression_params`, `compression_non_embedding`,
    `compression_disk`, `compression_flops` (per token), `compression_peak_mem` = teacher /
    student. A ratio is None when either profile lacks its field or a divisor is not positive
    (e.g. a CPU memory growth of 0); compare profiles measured on the same device."""

    def ratio(num: Any, den: Any) -> float | None:
        if num is None or den is None or den <= 0:
            return None
        return num / den

    out = {name: ratio(teacher.get(key), student.get(key)) for name, key in _TEACHER_OVER_STUDENT.items()}
    out.update({name: ratio(student.get(key), teacher.get(key)) for name, key in _STUDENT_OVER_TEACHER.items()})
    return out
