"""The distillation loop: draw a batch from the sources, score it with weighted loss terms, step.
The same loop trains the teacher (one gold source, cross-entropy).

A `TrainingRun` holds everything that decides what happens next — weights, optimizer, LR
schedule, stream positions, the batch planner, replay buffers, RNG states, statistics and the
best dev checkpoint so far — and can save it (`state_dict`) and continue from it
(`load_state_dict`), so a run resumed from a checkpoint ends exactly as an undisturbed one
(same seed, same machine). Every `dev_every` steps it evaluates on dev (the mean token
cross-entropy, and the task's headline metric of greedy outputs for a dev subset) and keeps
the weights of the best evaluation (`TrainSpec.select`): the paper's checkpoint selection.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.distill.losses import IGNORE_INDEX, TeacherOutputs
from bench.distill.relations import capture
from bench.distill.schedule import ReplayBuffer, StaticMix
from bench.distill.streams import Example, Stream, split_batch
from bench.generation import generate_ids, labels_from_targets, pad_batch
from bench.lm import bare, forward_logits
from bench.precision import autocast
from bench.seeding import rng_state, set_rng_state
from bench.spec import TrainSpec
from bench.teacher_cache import join_rows


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
    """Mean per-token cross-entropy (nats) of a model on (source ids, target ids) pairs,
    teacher-forced, dropout off: the dev loss of learning curves and DistiLLM's scheduler."""
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


@dataclass
class DevSet:
    """What the loop evaluates every `dev_every` steps: the mean token cross-entropy on `pairs`
    and, when `score` is given, a quality metric (higher is better) of the greedy outputs for
    `sources` (a small dev subset keeps the cost down): `score(list of output ids) -> float`."""

    pairs: list[tuple[list[int], list[int]]]
    sources: list[list[int]] = field(default_factory=list)
    score: Callable[[list[list[int]]], float] | None = None
    metric: str = "dev_metric"  # what `score` computes, e.g. "dev_bleu"


@dataclass
class Batch:
    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    keys: list[tuple[str, tuple[str, int, int]] | None]  # (target set, example key) of fixed targets


class TrainingRun:
    """One optimisation run of `spec.steps` steps; see the module docstring.

    `teacher_cache` (optional, `bench.teacher_cache.TeacherCache`) serves the teacher's
    distributions for fixed targets it was built for; the teacher runs online only for the
    rest (student PTs), or for every row when a term needs activations or a noisy teacher."""

    def __init__(self, model, streams: list[Stream], loss_terms: list[tuple[torch.nn.Module, float]],
                 spec: TrainSpec, *, pad_id: int, eos_id: int, max_target: int, device, teacher=None,
                 teacher_cache=None, autocast_dtype: torch.dtype | None = None, noisy_teacher: bool = False,
                 auto_scale=None, schedule=None, dev: DevSet | None = None, seed: int = 0,
                 target_sets: list[str | None] | None = None):
        self.model, self.streams, self.loss_terms, self.spec = model, streams, loss_terms, spec
        self.pad_id, self.eos_id, self.max_target, self.device = pad_id, eos_id, max_target, device
        self.teacher, self.teacher_cache, self.noisy_teacher = teacher, teacher_cache, noisy_teacher
        self.amp = autocast_dtype
        self.auto_scale, self.dev, self.seed = auto_scale, dev, seed
        # which stored target set each stream's targets are (for the teacher cache); None: student PTs
        self.target_sets = target_sets or [None] * len(streams)
        self.needs_teacher = any(getattr(term, "needs_teacher", False) for term, _ in loss_terms)
        self.uses_acts = [getattr(term, "needs_activations", False) for term, _ in loss_terms]
        self.vectors = tuple(dict.fromkeys(v for (term, _), a in zip(loss_terms, self.uses_acts) if a
                                           for v in term.vectors))
        if self.needs_teacher and teacher is None and teacher_cache is None:
            raise ValueError("a loss term needs the teacher's logits but no teacher was given")
        self.schedule = schedule or StaticMix()
        self.planner = self.schedule.planner([s.source for s in streams], seed)
        self.evaluating = bool(dev and dev.pairs) and spec.dev_every > 0
        if self.planner.needs_dev and not self.evaluating:
            raise ValueError(f"{type(self.schedule).__name__} adapts to the dev loss: give dev pairs and set "
                             f"train.dev_every > 0 (got dev_every={spec.dev_every})")
        self.buffers = [ReplayBuffer(s.source.replay.capacity, seed * 100 + i) if s.source.replay else None
                        for i, s in enumerate(streams)]
        self.optim = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lr_lambda(spec))
        self.step = 0
        self.scales: list[float] | None = None
        self.stats: dict[str, Any] = {
            "steps": 0, "rows": 0, "target_tokens": 0, "source_tokens": 0, "teacher_forwards": 0,
            "teacher_source_tokens": 0, "teacher_target_tokens": 0, "cached_teacher_rows": 0,
            "student_generated_tokens": 0, "student_generation_sources": 0, "student_generation_source_tokens": 0,
            "student_generation_steps": 0, "replayed_examples": 0, "curve": [],
            "loss_normalization": getattr(loss_terms[0][0], "normalization", "token") if loss_terms else "token",
            "train_seconds": 0.0,
        }
        self.best: dict[str, Any] | None = None  # {"step", "value", "state"} of the selected evaluation
        self._since_dev: list[float] = []
        self._running: list[float] = []

    # ------------------------------------------------------------------ batches

    def _next_batch(self, step: int) -> Batch:
        plan = self.planner.plan(step, self.spec.steps, self.buffers)
        counts = split_batch(self.spec.batch_size, plan.weights)
        examples: list[Example] = []
        keys: list = []
        for i, (stream, n) in enumerate(zip(self.streams, counts)):
            if n == 0:
                continue
            if plan.replay[i]:
                drawn = [Example(x, y) for x, y in self.buffers[i].sample(n)]
                self.stats["replayed_examples"] += n
            else:
                if n != stream.block:  # a share changed: group lengths in blocks of the new size
                    stream.set_block(n)
                drawn = stream.take(n)
                if stream.targets is None:  # student pseudo-targets from the current weights
                    with autocast(self.amp, self.device):
                        written = student_pseudo_targets(
                            self.model, [e.source for e in drawn], pad_id=self.pad_id, eos_id=self.eos_id,
                            max_new_tokens=self.max_target, device=self.device,
                            decoding=stream.source.pts.generate_kwargs())
                    drawn = [Example(e.source, w) for e, w in zip(drawn, written)]
                    self.stats["student_generated_tokens"] += sum(len(w) + 1 for w in written)
                    self.stats["student_generation_sources"] += len(drawn)
                    self.stats["student_generation_source_tokens"] += sum(len(e.source) for e in drawn)
                    self.stats["student_generation_steps"] += 1
                    if self.buffers[i] is not None:
                        self.buffers[i].push([(e.source, e.target) for e in drawn])
            examples += drawn
            keys += [(self.target_sets[i], e.key) if e.key is not None and self.target_sets[i] else None
                     for e in drawn]
        input_ids, mask = pad_batch([e.source for e in examples], self.pad_id, self.device)
        labels = labels_from_targets([e.target for e in examples], self.eos_id, self.max_target, self.device)
        return Batch(input_ids, mask, labels, keys)

    def _teacher_outputs(self, batch: Batch, t_acts: dict) -> TeacherOutputs | None:
        """Cached distributions where the cache has the row's target, the teacher run now for the rest
        (a model's logits, or the sparse distributions of a teacher with `sparse_outputs`)."""
        if not self.needs_teacher:
            return None
        n = batch.labels.shape[0]
        cached_rows: list[int] = []
        if self.teacher_cache is not None and not self.vectors and not self.noisy_teacher:
            cached_rows = [i for i, k in enumerate(batch.keys) if k is not None and self.teacher_cache.has(k[0])]
        online = [i for i in range(n) if i not in set(cached_rows)]
        out = TeacherOutputs()
        if cached_rows:
            rows = torch.tensor(cached_rows, device=batch.labels.device)
            out.cached = self.teacher_cache.lookup([batch.keys[i] for i in cached_rows],
                                                   batch.labels.index_select(0, rows), device=self.device)
            out.cached_rows = rows
            self.stats["cached_teacher_rows"] += len(cached_rows)
        if online:
            if self.teacher is None:
                raise ValueError("rows without cached teacher distributions need the teacher model")
            rows = torch.tensor(online, device=batch.labels.device)
            ids, mask, labels = (t.index_select(0, rows) for t in (batch.input_ids, batch.mask, batch.labels))
            self.stats["teacher_forwards"] += len(online)
            self.stats["teacher_source_tokens"] += int(mask.sum())
            self.stats["teacher_target_tokens"] += int(labels.ne(IGNORE_INDEX).sum())
            if callable(getattr(self.teacher, "sparse_outputs", None)):
                # a teacher that answers with sparse distributions (an API): joined to the cached rows
                parts = [(out.cached, out.cached_rows)] if out.cached is not None else []
                parts.append((self.teacher.sparse_outputs(ids, mask, labels), rows))
                out.cached, out.cached_rows = join_rows(parts)
                return out
            with capture(self.teacher, self.vectors) as acts:
                out.logits = teacher_forward(self.teacher, ids, mask, labels, pad_id=self.pad_id,
                                             sep_id=self.eos_id, noisy=self.noisy_teacher)
            t_acts.update({k: v.clone() for k, v in acts.items()})  # out of inference mode
            out.logit_rows = rows
        return out

    def _loss_values(self, batch: Batch) -> list[torch.Tensor]:
        t_acts: dict = {}
        teacher = self._teacher_outputs(batch, t_acts)
        with capture(self.model, self.vectors) as s_acts:
            logits = forward_logits(self.model, batch.input_ids, batch.mask, batch.labels,
                                    pad_id=self.pad_id, sep_id=self.eos_id)
        acts = {"student_acts": s_acts, "teacher_acts": t_acts, "source_mask": batch.mask}
        return [term(logits, batch.labels, teacher, **(acts if a else {}))
                for (term, _), a in zip(self.loss_terms, self.uses_acts)]

    # ------------------------------------------------------------------ auto-scaling

    def _calibrate_scales(self) -> list[float]:
        """KD4Gen's loss scales: each term's mean over the first `auto_scale.batches` batches, both
        models in eval mode, no update; the data state is put back so training sees the same
        batches it would have seen without calibration."""
        saved = copy.deepcopy(self._data_state())
        rng = rng_state()
        sums = [0.0] * len(self.loss_terms)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), autocast(self.amp, self.device):
            for step in range(self.auto_scale.batches):
                for i, v in enumerate(self._loss_values(self._next_batch(step))):
                    sums[i] += float(v)
        self.model.train(was_training)
        self._load_data_state(saved)
        set_rng_state(rng)
        for key in ("teacher_forwards", "teacher_source_tokens", "teacher_target_tokens", "cached_teacher_rows"):
            self.stats[f"calibration_{key}"] = self.stats[key]
            self.stats[key] = 0
        means = [s / self.auto_scale.batches for s in sums]
        return [1 / max(m, self.auto_scale.floor) for m in means]

    # ------------------------------------------------------------------ dev evaluation

    def _evaluate(self, train_loss: float | None) -> dict[str, Any]:
        kw = {"pad_id": self.pad_id, "eos_id": self.eos_id, "max_target": self.max_target, "device": self.device,
              "batch_size": max(self.spec.batch_size, 64)}
        with autocast(self.amp, self.device):
            loss = dev_loss(self.model, self.dev.pairs, **kw)
            metric = None
            if self.dev.score is not None and self.dev.sources and self.step > 0:  # step 0 is never selected
                outs = generate_ids(bare(self.model), self.dev.sources, pad_id=self.pad_id, eos_id=self.eos_id,
                                    max_new_tokens=self.max_target, batch_size=kw["batch_size"], device=self.device)
                metric = float(self.dev.score([o[0] for o in outs]))
        self.planner.observe_dev_loss(loss)
        point = {"step": self.step, "loss": train_loss, "dev_loss": loss, "dev_metric": metric}
        self.stats["curve"].append(point)
        self._select(point)
        return point

    def _selection_value(self, point: dict) -> float | None:
        rule = self.spec.select
        if rule == "dev_metric" and point["dev_metric"] is not None:
            return point["dev_metric"]
        if rule in ("dev_metric", "dev_loss"):
            return -point["dev_loss"]  # higher is better
        return None

    def _select(self, point: dict) -> None:
        value = self._selection_value(point)
        if value is None or point["step"] == 0:
            return
        if self.best is None or value > self.best["value"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in bare(self.model).state_dict().items()}
            self.best = {"step": point["step"], "value": value, "state": state}

    def selection(self) -> dict[str, Any]:
        """Which weights the run ends with, and why."""
        if self.best is None:
            return {"rule": "last", "metric": None, "selected_step": self.step, "value": None,
                    "steps_evaluated": len(self.stats["curve"])}
        metric = self.dev.metric if self.spec.select == "dev_metric" and self.dev and self.dev.score else "dev_loss"
        value = self.best["value"] if metric != "dev_loss" else -self.best["value"]
        return {"rule": self.spec.select, "metric": metric, "selected_step": self.best["step"], "value": value,
                "steps_evaluated": len(self.stats["curve"])}

    # ------------------------------------------------------------------ the loop

    def run(self, on_report: Callable[[dict[str, Any], TrainingRun], None] | None = None,
            log: Callable[[dict], None] | None = None, log_every: int = 50,
            checkpoint_every: int = 0) -> dict:
        """Train until `spec.steps` (continuing from `self.step`); returns the statistics. Calls
        `on_report(metrics, run)` after every dev evaluation and every `checkpoint_every` steps
        (the same steps on every rank: a place for `ray.train.report`); `metrics["checkpoint"]`
        says whether a checkpoint is due. At the end the selected weights are in the model."""
        spec = self.spec
        if self.step == 0 and self.scales is None:
            self.scales = self._calibrate_scales() if self.auto_scale else [1.0] * len(self.loss_terms)
            self.stats["loss_scales"] = self.scales
            if self.evaluating:
                self._evaluate(None)
        start = time.perf_counter()
        self.model.train()
        while self.step < spec.steps:
            batch = self._next_batch(self.step)
            with autocast(self.amp, self.device):
                values = self._loss_values(batch)
                loss = sum(w * s * v for (_, w), s, v in zip(self.loss_terms, self.scales, values))
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss became {loss.item()} at step {self.step}")
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), spec.grad_clip)
            self.optim.step()
            self.sched.step()
            self.step += 1
            st = self.stats
            st["steps"] += 1
            st["rows"] += batch.labels.shape[0]
            st["target_tokens"] += int(batch.labels.ne(IGNORE_INDEX).sum())
            st["source_tokens"] += int(batch.mask.sum())
            st["final_loss"] = loss.item()
            self._running.append(st["final_loss"])
            self._since_dev.append(st["final_loss"])
            point = None
            if self.evaluating and (self.step % spec.dev_every == 0 or self.step == spec.steps):
                point = self._evaluate(sum(self._since_dev) / len(self._since_dev))
                self._since_dev = []
            if log and (self.step % log_every == 0 or self.step == spec.steps):
                entry = {"step": self.step, "loss": sum(self._running) / len(self._running),
                         "lr": self.sched.get_last_lr()[0]}
                if point is not None:
                    entry["dev_loss"] = point["dev_loss"]
                log(entry)
                self._running = []
            due = bool(checkpoint_every) and (self.step % checkpoint_every == 0) and self.step < spec.steps
            if on_report and (point is not None or due):
                st["train_seconds"] += time.perf_counter() - start
                start = time.perf_counter()
                on_report(self.report_metrics(point, checkpoint=due), self)
        self.stats["train_seconds"] += time.perf_counter() - start
        if hasattr(self.planner, "history"):
            self.stats["sgo_prob_history"] = self.planner.history
        self.stats["selection"] = self.selection()
        pt = [s.pt_visits() for s in self.streams]
        self.stats["pt_visits"] = next((v for v in pt if v), None)
        if self.best is not None:
            bare(self.model).load_state_dict(self.best["state"])
        return self.stats

    def report_metrics(self, point: dict | None, checkpoint: bool) -> dict[str, Any]:
        """What a report at this step says (for Tune: schedulers, progress lines, trackers)."""
        last = point or (self.stats["curve"][-1] if self.stats["curve"] else {})
        sel = self.selection()
        return {"step": self.step, "total_steps": self.spec.steps, "loss": self.stats.get("final_loss"),
                "dev_loss": last.get("dev_loss"), "dev_metric": last.get("dev_metric"),
                "selected_step": sel["selected_step"], "best_dev": sel["value"],
                "train_seconds": self.stats["train_seconds"], "checkpoint": checkpoint,
                "evaluated": point is not None}

    # ------------------------------------------------------------------ checkpoints

    def _data_state(self) -> dict:
        return {"streams": [s.state_dict() for s in self.streams], "planner": self.planner.state_dict(),
                "buffers": [b.state_dict() if b is not None else None for b in self.buffers]}

    def _load_data_state(self, state: dict) -> None:
        for s, st in zip(self.streams, state["streams"]):
            s.load_state_dict(st)
        self.planner.load_state_dict(state["planner"])
        for b, st in zip(self.buffers, state["buffers"]):
            if b is not None:
                b.load_state_dict(st)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (see the module docstring)."""
        return {"step": self.step, "model": bare(self.model).state_dict(), "optimizer": self.optim.state_dict(),
                "scheduler": self.sched.state_dict(), "data": self._data_state(), "stats": copy.deepcopy(self.stats),
                "scales": self.scales, "best": self.best, "since_dev": list(self._since_dev),
                "running": list(self._running), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        bare(self.model).load_state_dict(state["model"])
        self.optim.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self._load_data_state(state["data"])
        self.stats, self.scales, self.best = state["stats"], state["scales"], state["best"]
        self._since_dev, self._running = list(state["since_dev"]), list(state["running"])
        set_rng_state(state["rng"])

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))


def train(model, streams: list[Stream], loss_terms: list[tuple[torch.nn.Module, float]], spec: TrainSpec, *,
          log: Callable[[dict], None] | None = None, log_every: int = 50, dev=None, **kwargs) -> dict:
    """Run a whole `TrainingRun` in one go; returns its statistics. `dev`: a `DevSet`, or
    (source ids, target ids) pairs for the dev loss alone."""
    if dev is not None and not isinstance(dev, DevSet):
        dev = DevSet(list(dev))
    return TrainingRun(model, streams, loss_terms, spec, dev=dev, **kwargs).run(log=log, log_every=log_every)
