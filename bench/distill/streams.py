"""Data sources turned into endless streams of training examples.

Each stream reshuffles every epoch with its own seeded RNG. With K stored pseudo-targets per
input, an input's PTs are used in turn, one per visit (visit v takes PT v mod K), so every PT
is used once the input has been seen K times, however epochs and batch shares fall. When the
loop tells a stream its share of each batch (`block`), consecutive blocks hold examples of
similar length (sorted within random pools of 50 blocks, then the blocks shuffled), which cuts
padding on the CPU. Student-PT streams carry inputs only; the training loop writes their
targets with the current student.

Every example carries its key — (split, input index, PT index) — so that stored teacher
distributions (`bench.teacher_cache`) are joined to examples by identity, never by position
in training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from bench.distill.methods import Method, Source


class Example(NamedTuple):
    source: list[int]
    target: list[int] | None  # None: the student writes it
    key: tuple[str, int, int] | None = None  # (split, input index, PT index)


@dataclass
class Stream:
    source: Source
    inputs: list[list[int]]
    targets: list[list[list[int]]] | None  # per input, its candidate targets; None: student writes them
    seed: int
    keys: list[tuple[str, int]] | None = None  # per input: (split, index within the split)
    block: int = 0  # examples this stream contributes per batch; 0 = plain shuffle
    epoch: int = 0
    _order: list[int] = field(default_factory=list)
    _pos: int = 0
    visits: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.inputs:
            raise ValueError(f"data source {self.source.origin} over {self.source.inputs} has no examples")
        if self.keys is None:
            self.keys = [("", i) for i in range(len(self.inputs))]
        self.visits = [0] * len(self.inputs)
        self._reshuffle()

    def _reshuffle(self) -> None:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        order = list(range(len(self.inputs)))
        rng.shuffle(order)
        if self.block > 1:
            pool = self.block * 50
            blocks = []
            for start in range(0, len(order), pool):
                chunk = sorted(order[start : start + pool], key=self._length)
                blocks += [chunk[i : i + self.block] for i in range(0, len(chunk), self.block)]
            rng.shuffle(blocks)
            order = [i for b in blocks for i in b]
        self._order = order
        self._pos = 0

    def _length(self, i: int) -> int:
        target = self.targets[i][0] if self.targets else []
        return len(self.inputs[i]) + len(target)

    def set_block(self, n: int) -> None:
        """Group by length in blocks of n (restarts the current epoch's order)."""
        self.block = n
        self._reshuffle()

    def take(self, n: int) -> list[Example]:
        out = []
        for _ in range(n):
            if self._pos == len(self._order):
                self.epoch += 1
                self._reshuffle()
            i = self._order[self._pos]
            self._pos += 1
            split, index = self.keys[i]
            if self.targets is None:
                out.append(Example(self.inputs[i], None, None))
                continue
            cands = self.targets[i]
            j = self.visits[i] % len(cands)
            self.visits[i] += 1
            out.append(Example(self.inputs[i], cands[j], (split, index, j)))
        return out

    def pt_visits(self) -> dict[str, float | int] | None:
        """How many distinct PTs the inputs received (teacher-PT streams only)."""
        if self.targets is None or self.source.origin != "teacher_pt":
            return None
        k = max(len(c) for c in self.targets)
        distinct = [min(v, len(c)) for v, c in zip(self.visits, self.targets)]
        return {"k": k, "distinct_mean": sum(distinct) / len(distinct), "distinct_min": min(distinct),
                "distinct_max": max(distinct), "all_k_share": sum(d == k for d in distinct) / len(distinct),
                "visits_mean": sum(self.visits) / len(self.visits)}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self._pos, "block": self.block, "visits": list(self.visits)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.block = state["epoch"], state["block"]
        self._reshuffle()
        self._pos = state["pos"]
        self.visits = list(state["visits"])


def split_batch(batch_size: int, weights: list[float]) -> list[int]:
    """Integer shares of a batch proportional to weights; every source with a positive
    weight gets at least one example, a zero weight gets none."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("at least one data source must have a positive weight")
    counts = [max(1, round(batch_size * w / total)) if w > 0 else 0 for w in weights]
    last = max(i for i, w in enumerate(weights) if w > 0)
    counts[last] = max(1, batch_size - sum(counts[:last]) - sum(counts[last + 1 :]))
    return counts


def build_streams(method: Method, encoded: dict, seed: int) -> list[Stream]:
    """Streams for a method's sources.

    `encoded` holds token ids: `inputs[split]` (list of source ids), `gold[split]` (one target
    per input) and `teacher_pts[pt_spec][split]` (K targets per input) for each PT set built.
    """
    streams = []
    for k, src in enumerate(method.sources):
        inputs: list[list[int]] = []
        keys: list[tuple[str, int]] = []
        targets: list[list[list[int]]] | None = None if src.origin == "student_pt" else []
        for split in src.inputs:
            inputs += encoded["inputs"][split]
            keys += [(split, i) for i in range(len(encoded["inputs"][split]))]
            if src.origin == "gold":
                targets += [[t] for t in encoded["gold"][split]]
            elif src.origin == "teacher_pt":
                built = encoded.get("teacher_pts", {})
                if src.pts not in built:
                    raise ValueError(f"method {method.name!r} needs teacher pseudo-targets "
                                     f"{src.pts.slug}; built: {[p.slug for p in built] or 'none'}")
                targets += built[src.pts][split]
        streams.append(Stream(src, inputs, targets, seed=seed * 1000 + k, keys=keys))
    return streams
