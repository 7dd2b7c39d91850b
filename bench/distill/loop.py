"""The distillation loop: draw a mixed batch from the sources, score it with weighted loss
terms, step. The same loop trains the teacher (one gold source, cross-entropy)."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from bench.distill.losses import IGNORE_INDEX
from bench.distill.relations import capture
from bench.distill.streams import Stream, split_batch
from bench.precision import autocast
from bench.generation import generate_ids, labels_from_targets, pad_batch
from bench.spec import TrainSpec


def unwrap(model):
    """The bare model behind a DDP wrapper (for generation and saving)."""
    return getattr(model, "module", model)


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    dec = labels.new_full(labels.shape, pad_id)
    dec[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1].eq(IGNORE_INDEX), pad_id)
    dec[:, 0] = start_id
    return dec


def student_pseudo_targets(model, inputs, *, pad_id, eos_id, max_new_tokens, device) -> list[list[int]]:
    """Greedy outputs of the student as it is now (no gradient, dropout off, then back to
    training mode): the on-the-fly PTs of Joint-Teaching / on-policy methods."""
    outs = generate_ids(unwrap(model), inputs, pad_id=pad_id, eos_id=eos_id,
                        max_new_tokens=max_new_tokens, batch_size=len(inputs), device=device)
    return [o[0] for o in outs]


def teacher_forward(teacher, input_ids, mask, dec_in, noisy: bool = False) -> torch.Tensor:
    """Teacher logits without gradient. `noisy` keeps dropout active (noisy-teacher KD,
    Calderon et al. 2023 after Xie et al. 2020); the teacher is back in eval mode after."""
    teacher.train(noisy)
    try:
        with torch.inference_mode():
            logits = teacher(input_ids=input_ids, attention_mask=mask, decoder_input_ids=dec_in).logits
    finally:
        teacher.eval()
    return logits.clone()  # a normal tensor again, usable next to autograd


def lr_lambda(spec: TrainSpec) -> Callable[[int], float]:
    """Linear warm-up, then linear decay to 10% of the peak."""

    def f(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
        return max(0.1, 1.0 - 0.9 * progress)

    return f


def train(
    model,
    streams: list[Stream],
    loss_terms: list[tuple[torch.nn.Module, float]],
    spec: TrainSpec,
    *,
    pad_id: int,
    eos_id: int,
    start_id: int,
    max_target: int,
    device,
    teacher=None,
    autocast_dtype: torch.dtype | None = None,
    noisy_teacher: bool = False,
    auto_scale: bool = False,
    log: Callable[[dict], None] | None = None,
    log_every: int = 50,
) -> dict:
    """Run `spec.steps` optimisation steps; returns training statistics (costs, last loss)."""
    needs_teacher = any(getattr(term, "needs_teacher", False) for term, _ in loss_terms)
    uses_acts = [getattr(term, "needs_activations", False) for term, _ in loss_terms]  # once, not per step
    vectors = tuple(dict.fromkeys(v for (term, _), a in zip(loss_terms, uses_acts) if a for v in term.vectors))
    if needs_teacher and teacher is None:
        raise ValueError("a loss term needs the teacher's logits but no teacher was given")
    counts: list[int] = []
    scales: list[float] | None = None
    optim = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda(spec))
    amp = autocast(autocast_dtype, device)
    stats = {"steps": 0, "target_tokens": 0, "teacher_forwards": 0, "student_generated_tokens": 0}
    start, running = time.perf_counter(), []
    model.train()
    for step in range(spec.steps):
        weights = [s.source.weight if s.source.active(step, spec.steps) else 0.0 for s in streams]
        if (new := split_batch(spec.batch_size, weights)) != counts:  # a scheduled source joined
            counts = new
            for stream, n in zip(streams, counts):
                stream.set_block(n)
        sources, targets = [], []
        for stream, n in zip(streams, counts):
            if n == 0:
                continue
            examples = stream.take(n)
            if stream.targets is None:  # student pseudo-targets from the current weights
                with amp:
                    written = student_pseudo_targets(model, [x for x, _ in examples], pad_id=pad_id,
                                                     eos_id=eos_id, max_new_tokens=max_target, device=device)
                examples = [(x, w) for (x, _), w in zip(examples, written)]
                stats["student_generated_tokens"] += sum(len(w) + 1 for w in written)
            sources += [x for x, _ in examples]
            targets += [y for _, y in examples]
        input_ids, mask = pad_batch(sources, pad_id, device)
        labels = labels_from_targets(targets, eos_id, max_target, device)
        dec_in = shift_right(labels, start_id, pad_id)
        teacher_logits, t_acts, s_acts = None, {}, {}
        with amp:
            if needs_teacher:
                with capture(teacher, vectors) as t_acts:
                    teacher_logits = teacher_forward(teacher, input_ids, mask, dec_in, noisy=noisy_teacher)
                t_acts = {k: v.clone() for k, v in t_acts.items()}  # out of inference mode
                stats["teacher_forwards"] += len(sources)
            with capture(model, vectors) as s_acts:
                logits = model(input_ids=input_ids, attention_mask=mask, decoder_input_ids=dec_in).logits
            acts = {"student_acts": s_acts, "teacher_acts": t_acts, "source_mask": mask}
            values = [term(logits, labels, teacher_logits, **(acts if a else {}))
                      for (term, _), a in zip(loss_terms, uses_acts)]
            if scales is None:  # auto-scaling: every term starts near its weight (paper's recipe)
                scales = [1 / max(v.item(), 1e-8) if auto_scale else 1.0 for v in values]
                stats["loss_scales"] = scales
            loss = sum(w * s * v for (_, w), s, v in zip(loss_terms, scales, values))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optim.step()
        sched.step()
        stats["steps"] += 1
        stats["target_tokens"] += int(labels.ne(IGNORE_INDEX).sum())
        last_loss = loss.item()
        running.append(last_loss)
        if log and ((step + 1) % log_every == 0 or step + 1 == spec.steps):
            log({"step": step + 1, "loss": sum(running) / len(running), "lr": sched.get_last_lr()[0]})
            running = []
    stats["train_seconds"] = time.perf_counter() - start
    stats["final_loss"] = last_loss
    return stats
