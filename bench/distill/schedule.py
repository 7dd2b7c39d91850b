"""Per-step batch plans: which sources fill a step's batch, and whether a student source's
examples are freshly generated or replayed from its buffer.

A method declares a schedule (configuration, frozen); the training loop asks the schedule
for a planner (runtime state, seeded) and calls `plan` once per step and `observe_dev_loss`
after every dev evaluation.

* `StaticMix` (default): every source takes its weight's share of each batch from its
  `start` fraction on; a student source with a replay buffer replays with probability
  `replay.share` once its buffer is full.
* `Alternate`: KD4Gen's Joint-Teaching schedule — every `every`-th step trains on the student
  sources only (once active), the other steps on the fixed sources only; the two never share
  a batch.
* `AdaptiveSGO`: DistiLLM's adaptive off-policy scheduler (Ko et al., ICML 2024). Each step
  trains either entirely on the fixed (off-policy) sources or entirely on student-generated
  outputs (SGO); the SGO probability φ starts at `init_prob` and rises by `prob_step`
  whenever the dev loss has grown by at least `loss_eps` since the last rise (the student
  drifting from the data is the signal to show it its own outputs). Of the SGO steps, a
  share φ·(1 − t/T) generates fresh outputs (pushed to the replay buffer), the rest reuse
  buffered ones once the buffer is full — sample efficiency from replay.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Replay:
    """A replay buffer of student pseudo-targets: the latest `capacity` (input, output) pairs
    this source generated. `share`: under `StaticMix`, the probability that a step's student
    examples are drawn from the (full) buffer instead of generated (`AdaptiveSGO` sets that
    probability itself)."""

    capacity: int = 1000
    share: float = 0.5

    def __post_init__(self):
        if self.capacity < 1 or not 0 <= self.share <= 1:
            raise ValueError(f"invalid replay buffer {self}: need capacity >= 1 and 0 <= share <= 1")


class ReplayBuffer:
    """FIFO store of (input ids, target ids); sampling without replacement, seeded."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self._items: deque[tuple[list[int], list[int]]] = deque(maxlen=capacity)
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) == self.capacity

    def push(self, examples: Sequence[tuple[list[int], list[int]]]) -> None:
        self._items.extend(examples)

    def sample(self, n: int) -> list[tuple[list[int], list[int]]]:
        if n > len(self._items):
            raise ValueError(f"cannot replay {n} examples from a buffer holding {len(self._items)}")
        return self._rng.sample(list(self._items), n)

    def state_dict(self) -> dict:
        return {"items": list(self._items), "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self._items.clear()
        self._items.extend(tuple(x) for x in state["items"])
        self._rng.setstate(_rng_state(state["rng"]))


def _rng_state(state):
    """A `random.Random` state back from its JSON/pickle form (lists instead of tuples)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


@dataclass(frozen=True)
class Plan:
    """One step: each source's share weight, and whether each student source replays."""

    weights: list[float]
    replay: list[bool]


class Planner(Protocol):
    needs_dev: bool

    def plan(self, step: int, total: int, buffers: Sequence[ReplayBuffer | None]) -> Plan: ...

    def observe_dev_loss(self, loss: float) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class StaticMix:
    """Fixed shares (each source's `weight` from its `start` on)."""

    def planner(self, sources, seed: int) -> StaticPlanner:
        return StaticPlanner(sources, seed)


class StaticPlanner:
    needs_dev = False

    def __init__(self, sources, seed: int):
        self.sources = list(sources)
        self._rng = random.Random(f"static-{seed}")

    def plan(self, step, total, buffers) -> Plan:
        weights = [s.weight if s.active(step, total) else 0.0 for s in self.sources]
        replay = [bool(b is not None and b.full and w > 0 and self._rng.random() < s.replay.share)
                  for s, b, w in zip(self.sources, buffers, weights)]
        return Plan(weights, replay)

    def observe_dev_loss(self, loss: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {"rng": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self._rng.setstate(_rng_state(state["rng"]))


@dataclass(frozen=True)
class Alternate:
    """Steps alternate between sources instead of sharing batches (KD4Gen's Joint-Teaching:
    student PTs on every second step). Step s trains on the student sources when
    (s + 1) % `every` == 0 and they are active (their `start` reached), else on the fixed ones."""

    every: int = 2

    def __post_init__(self):
        if not isinstance(self.every, int) or self.every < 2:
            raise ValueError(f"invalid alternate schedule {self}: need every >= 2")

    def planner(self, sources, seed: int) -> AlternatePlanner:
        return AlternatePlanner(self, sources)


class AlternatePlanner:
    needs_dev = False

    def __init__(self, schedule: Alternate, sources):
        self.every = schedule.every
        self.sources = list(sources)
        self.on = [i for i, s in enumerate(self.sources) if s.origin == "student_pt"]
        if not self.on or len(self.on) == len(self.sources):
            raise ValueError("the alternate schedule needs at least one student_pt source and one fixed "
                             "(gold or teacher_pt) source")
        if any(s.start > 0 for i, s in enumerate(self.sources) if i not in self.on):
            raise ValueError("under the alternate schedule only student_pt sources may start later")

    def plan(self, step, total, buffers) -> Plan:
        student_step = (step + 1) % self.every == 0 and any(self.sources[i].active(step, total) for i in self.on)
        chosen = [i for i in range(len(self.sources)) if (i in self.on) == student_step
                  and self.sources[i].active(step, total)]
        weights = [s.weight if i in chosen else 0.0 for i, s in enumerate(self.sources)]
        replay = [False] * len(self.sources)
        return Plan(weights, replay)

    def observe_dev_loss(self, loss: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass(frozen=True)
class AdaptiveSGO:
    """DistiLLM's adaptive SGO schedule (defaults: the paper's scripts — φ from 0, +0.1 per
    rise of the dev loss by ≥ 0.1). Needs dev evaluations (`TrainSpec.dev_every` > 0)."""

    init_prob: float = 0.0
    prob_step: float = 0.1
    loss_eps: float = 0.1

    def __post_init__(self):
        if not 0 <= self.init_prob <= 1 or not 0 < self.prob_step <= 1 or self.loss_eps < 0:
            raise ValueError(f"invalid adaptive SGO schedule {self}: need 0 <= init_prob <= 1, "
                             f"0 < prob_step <= 1, loss_eps >= 0")

    def planner(self, sources, seed: int) -> AdaptivePlanner:
        return AdaptivePlanner(self, sources, seed)


class AdaptivePlanner:
    needs_dev = True

    def __init__(self, schedule: AdaptiveSGO, sources, seed: int):
        self.schedule = schedule
        self.sources = list(sources)
        self.on = [i for i, s in enumerate(self.sources) if s.origin == "student_pt"]
        self.off = [i for i, s in enumerate(self.sources) if s.origin != "student_pt"]
        if not self.on or not self.off:
            raise ValueError("the adaptive SGO schedule needs at least one student_pt source and one "
                             "fixed (gold or teacher_pt) source")
        if any(s.start > 0 for s in self.sources):
            raise ValueError("the adaptive SGO schedule decides itself when student outputs are used; "
                             "its sources must have start = 0")
        self.prob = schedule.init_prob
        self.reference_loss: float | None = None
        self.history: list[float] = [self.prob]
        self._rng = random.Random(f"adaptive-{seed}")

    def plan(self, step, total, buffers) -> Plan:
        phi = self.prob
        fresh = phi * (1 - step / total)
        r = self._rng.random()
        full = all(buffers[i] is None or buffers[i].full for i in self.on)
        on_policy = r < phi
        replay = on_policy and not (r < fresh or not full)
        chosen = set(self.on if on_policy else self.off)
        weights = [s.weight if i in chosen else 0.0 for i, s in enumerate(self.sources)]
        return Plan(weights, [replay and i in self.on and buffers[i] is not None
                              for i in range(len(self.sources))])

    def observe_dev_loss(self, loss: float) -> None:
        """Raise φ when the dev loss exceeds the loss at the last rise (or the first
        evaluation) by `loss_eps`; that loss becomes the new reference."""
        if self.reference_loss is None:
            self.reference_loss = loss
        elif loss >= self.reference_loss + self.schedule.loss_eps:
            self.prob = min(1.0, self.prob + self.schedule.prob_step)
            self.reference_loss = loss
        self.history.append(self.prob)

    def state_dict(self) -> dict:
        return {"prob": self.prob, "reference_loss": self.reference_loss, "history": list(self.history),
                "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.prob, self.reference_loss = state["prob"], state["reference_loss"]
        self.history = list(state["history"])
        self._rng.setstate(_rng_state(state["rng"]))
