"""The distillation loop: draw a mixed batch from the sources, score it with weighted loss
terms, step. The same loop trains the teacher (one gold source, cross-entropy)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.distill.losses import IGNORE_INDEX
from bench.distill.relations import capture
from bench.distill.schedule import ReplayBuffer, StaticMix
from bench.distill.streams import Stream, split_batch
from bench.generation import generate_ids, labels_from_targets, pad_batch
from bench.lm import bare, forward_logits
from bench.precision import autocast
from bench.spec import TrainSpec


def student_pseudo_targets(model, inputs, *, pad_id, eos_id, max_new_tokens, device,
                           decoding: dict | None = None) -> list[list[int]]:
    """Outputs of the student as it is now (no gradient, dropout off, then back to training
    mode): the on-the-fly PTs of Joint-Teaching / on-policy methods. `decoding`: greedy by
    default, or e.g. `PTSpec("sample").generate_kwargs()`."""
    outs = generate_ids(bare(model), inputs, pad_id=pad_id, eos_id=eos_id,
                        max_new_tokens=max_new_tokens, batch_size=len(inputs), device=device,
                        **(decoding or {}))
    return [o[0] for o in outs]


@torch.inference_mode()
def dev_loss(model, pairs, *, pad_id: int, eos_id: int, max_target: int, device,
             batch_size: int = 64) -> float:
    """Mean per-token cross-entropy (nats) of a seq2seq model on (source ids, target ids)
    pairs, teacher-forced, dropout off: the dev loss of learning curves and DistiLLM's
    scheduler."""
    model = bare(model)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        input_ids, mask = pad_batch([x for x, _ in chunk], pad_id, device)
        labels = labels_from_targets([y for _, y in chunk], eos_id, max_target, device)
        logits = forward_logits(model, input_ids, mask, labels, pad_id=pad_id, sep_id=eos_id)
        total += F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE_INDEX,
                                 reduction="sum").item()
        tokens += int(labels.ne(IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(1, tokens)


def teacher_forward(teacher, input_ids, mask, labels, *, pad_id: int, sep_id: int,
                    noisy: bool = False) -> torch.Tensor:
    """Teacher logits aligned with `labels`, without gradient. `noisy` keeps dropout active
    (noisy-teacher KD, Calderon et al. 2023 after Xie et al. 2020); the teacher is back in eval
    mode after."""
    teacher.train(noisy)
    try:
        with torch.inference_mode():
            logits = forward_logits(teacher, input_ids, mask, labels, pad_id=pad_id, sep_id=sep_id)
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
    max_target: int,
    device,
    teacher=None,
    autocast_dtype: torch.dtype | None = None,
    noisy_teacher: bool = False,
    auto_scale: bool = False,
    schedule=None,
    dev: list[tuple[list[int], list[int]]] | None = None,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
    log_every: int = 50,
) -> dict:
    """Run `spec.steps` optimisation steps; returns training statistics (costs, last loss,
    and the learning curve when `dev` pairs are given and `spec.dev_every` > 0)."""
    needs_teacher = any(getattr(term, "needs_teacher", False) for term, _ in loss_terms)
    uses_acts = [getattr(term, "needs_activations", False) for term, _ in loss_terms]  # once, not per step
    vectors = tuple(dict.fromkeys(v for (term, _), a in zip(loss_terms, uses_acts) if a for v in term.vectors))
    if needs_teacher and teacher is None:
        raise ValueError("a loss term needs the teacher's logits but no teacher was given")
    schedule = schedule or StaticMix()
    planner = schedule.planner([s.source for s in streams], seed)
    evaluating = bool(dev) and spec.dev_every > 0
    if planner.needs_dev and not evaluating:
        raise ValueError(f"{type(schedule).__name__} adapts to the dev loss: give dev pairs and set "
                         f"train.dev_every > 0 (got dev_every={spec.dev_every})")
    buffers = [ReplayBuffer(s.source.replay.capacity, seed * 100 + i) if s.source.replay else None
               for i, s in enumerate(streams)]
    scales: list[float] | None = None
    optim = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda(spec))
    amp = autocast(autocast_dtype, device)
    stats = {"steps": 0, "target_tokens": 0, "teacher_forwards": 0, "student_generated_tokens": 0,
             "student_generation_steps": 0, "replayed_examples": 0, "curve": []}
    dev_kw = {"pad_id": pad_id, "eos_id": eos_id, "max_target": max_target, "device": device,
              "batch_size": max(spec.batch_size, 64)}

    def evaluate_dev(step: int, train_loss: float | None) -> None:
        with amp:
            loss = dev_loss(model, dev, **dev_kw)
        planner.observe_dev_loss(loss)
        stats["curve"].append({"step": step, "loss": train_loss, "dev_loss": loss})

    if evaluating:
        evaluate_dev(0, None)
    start, running, since_dev = time.perf_counter(), [], []
    model.train()
    for step in range(spec.steps):
        plan = planner.plan(step, spec.steps, buffers)
        counts = split_batch(spec.batch_size, plan.weights)
        sources, targets = [], []
        for i, (stream, n) in enumerate(zip(streams, counts)):
            if n == 0:
                continue
            if plan.replay[i]:
                examples = buffers[i].sample(n)
                stats["replayed_examples"] += n
            else:
                if n != stream.block:  # a share changed: group lengths in blocks of the new size
                    stream.set_block(n)
                examples = stream.take(n)
                if stream.targets is None:  # student pseudo-targets from the current weights
                    with amp:
                        written = student_pseudo_targets(
                            model, [x for x, _ in examples], pad_id=pad_id, eos_id=eos_id,
                            max_new_tokens=max_target, device=device,
                            decoding=stream.source.pts.generate_kwargs())
                    examples = [(x, w) for (x, _), w in zip(examples, written)]
                    stats["student_generated_tokens"] += sum(len(w) + 1 for w in written)
                    stats["student_generation_steps"] += 1
                    if buffers[i] is not None:
                        buffers[i].push(examples)
            sources += [x for x, _ in examples]
            targets += [y for _, y in examples]
        input_ids, mask = pad_batch(sources, pad_id, device)
        labels = labels_from_targets(targets, eos_id, max_target, device)
        teacher_logits, t_acts, s_acts = None, {}, {}
        with amp:
            if needs_teacher:
                with capture(teacher, vectors) as t_acts:
                    teacher_logits = teacher_forward(teacher, input_ids, mask, labels, pad_id=pad_id,
                                                     sep_id=eos_id, noisy=noisy_teacher)
                t_acts = {k: v.clone() for k, v in t_acts.items()}  # out of inference mode
                stats["teacher_forwards"] += len(sources)
            with capture(model, vectors) as s_acts:
                logits = forward_logits(model, input_ids, mask, labels, pad_id=pad_id, sep_id=eos_id)
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
        since_dev.append(last_loss)
        done = step + 1
        if evaluating and (done % spec.dev_every == 0 or done == spec.steps):
            evaluate_dev(done, sum(since_dev) / len(since_dev))
            since_dev = []
        if log and (done % log_every == 0 or done == spec.steps):
            entry = {"step": done, "loss": sum(running) / len(running), "lr": sched.get_last_lr()[0]}
            if evaluating:
                entry["dev_loss"] = stats["curve"][-1]["dev_loss"]
            log(entry)
            running = []
    stats["train_seconds"] = time.perf_counter() - start
    stats["final_loss"] = last_loss
    if hasattr(planner, "history"):
        stats["sgo_prob_history"] = planner.history
    return stats
