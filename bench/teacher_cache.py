"""The teacher cache: the teacher's next-token distributions along fixed targets, computed once.

Word-level KD on fixed targets — gold targets, or the teacher's own stored pseudo-targets —
asks the teacher the same question every time an example comes round: every epoch, every
trial, every run. The cache asks once per (teacher, target set, k, τ, precision) and stores at
every target position the teacher's top-k tokens, their log-probabilities (at τ) and the log
of the probability mass left outside them (the tail, one bucket), sparsely:

    index.json                      k, τ, dtype, vocabulary, target sets, statistics, shards
    shard-00000/offsets.npy         int64 (entries + 1): entry e covers positions [o[e], o[e+1])
    shard-00000/target_ids.npy      int32 (positions): the label ids the entry was built for
    shard-00000/topk_ids.npy        int32 (positions, k), sorted from the most likely
    shard-00000/topk_logprobs.npy   float16/bfloat16/float32 (positions, k)
    shard-00000/log_tail.npy        float32 (positions)

An entry is one (target set, split, input index, PT index); it is found from the example's
key, never from its place in training, and a lookup checks that the stored label ids are the
batch's, so the cache is never read for a target it was not built for. Arrays are memory-
mapped. The divergence against a cached row is computed on the k tokens plus the tail bucket
(`bench.distill.losses.bucketed`): exact when k covers the vocabulary, a lower bound otherwise;
the index records the mean covered mass and the mean KL(full ‖ cached), where "cached" spreads
the tail mass evenly over the tokens outside the top-k.
"""
from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.distill.losses import NEG, SparseTopK
from bench.generation import labels_from_targets, pad_batch
from bench.lm import forward_logits
from bench.precision import autocast

INDEX_FILE = "index.json"
DTYPES = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}  # bf16 kept as raw bits
SHARD_ENTRIES = 1 << 16


def _to_storage(x: torch.Tensor, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return x.to(torch.float16 if dtype == "float16" else torch.float32).numpy()


def _from_storage(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.array(a, copy=True).view(np.int16)).view(torch.bfloat16).float()
    return torch.from_numpy(np.array(a, copy=True)).float()


@torch.inference_mode()
def teacher_top_k(teacher, input_ids, mask, labels, *, k: int, temperature: float, pad_id: int, sep_id: int):
    """(ids, logprobs, log_tail, covered, kl_full_cached) at every position of a batch: the
    teacher's top-k at τ and what the truncation loses."""
    logits = forward_logits(teacher, input_ids, mask, labels, pad_id=pad_id, sep_id=sep_id).float() / temperature
    logp = logits.log_softmax(-1)
    vocab = logp.shape[-1]
    k = min(k, vocab)
    top, ids = logp.topk(k, dim=-1)
    rest = logp.scatter(-1, ids, float("-inf"))
    log_tail = rest.logsumexp(-1)
    covered = top.exp().sum(-1)
    # KL(full || top-k + tail spread evenly over the V - k other tokens)
    if vocab > k:
        p_rest = rest.exp()
        tail = (1 - covered).clamp_min(0)
        even = torch.log(tail.clamp_min(1e-30) / (vocab - k))
        kl = (p_rest * (rest.clamp_min(-1e30) - even[..., None])).sum(-1)
    else:
        kl = torch.zeros_like(covered)
    return ids, top, log_tail, covered, kl.clamp_min(0)


def build_teacher_cache(out_dir: Path, teacher, target_sets: dict[str, dict[str, tuple[list, list]]], *,
                        k: int, temperature: float, dtype: str, pad_id: int, eos_id: int, max_target: int,
                        device, batch_size: int = 64, amp: torch.dtype | None = None,
                        say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Write the cache for `target_sets`: {set name: {split: (source ids per input, candidate
    target ids per input)}}; returns the index."""
    if dtype not in DTYPES:
        raise ValueError(f"teacher cache dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    teacher = teacher.eval()
    entries: list[tuple[list[int], list[int]]] = []  # (source, target) of entry e
    sets: dict[str, dict[str, list[int]]] = {}
    for name, splits in target_sets.items():
        sets[name] = {}
        for split, (sources, candidates) in splits.items():
            width = max((len(c) for c in candidates), default=1)
            if any(len(c) != width for c in candidates):
                raise ValueError(f"teacher cache: target set {name!r} split {split!r} has a varying number of "
                                 f"candidates per input")
            sets[name][split] = [len(entries), len(sources), width]
            entries += [(src, cand) for src, cands in zip(sources, candidates) for cand in cands]
    order = sorted(range(len(entries)), key=lambda e: len(entries[e][0]) + len(entries[e][1]))
    per_entry: list[tuple[np.ndarray, ...] | None] = [None] * len(entries)
    covered_sum = kl_sum = 0.0
    positions = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_batch([entries[e][0] for e in idx], pad_id, device)
        labels = labels_from_targets([entries[e][1] for e in idx], eos_id, max_target, device)
        with autocast(amp, device):
            top_ids, top, log_tail, covered, kl = teacher_top_k(
                teacher, ids, mask, labels, k=k, temperature=temperature, pad_id=pad_id, sep_id=eos_id)
        valid = labels.ne(-100)
        for row, e in enumerate(idx):
            n = int(valid[row].sum())
            per_entry[e] = (labels[row, :n].cpu().numpy().astype(np.int32), top_ids[row, :n].cpu().numpy().astype(np.int32),
                            top[row, :n].cpu(), log_tail[row, :n].cpu().numpy().astype(np.float32))
            covered_sum += float(covered[row, :n].sum())
            kl_sum += float(kl[row, :n].sum())
            positions += n
        if (start // batch_size) % 20 == 0:
            say(f"teacher cache: {min(start + batch_size, len(order))}/{len(order)} targets")
    width = min(k, int(top_ids.shape[-1])) if entries else k
    stats = {"covered_mass_mean": covered_sum / max(1, positions), "kl_full_cached_mean": kl_sum / max(1, positions)}
    return _write_index(out_dir, per_entry, sets, k=width, temperature=temperature, dtype=dtype,
                        vocab_size=int(teacher.config.vocab_size), max_target=max_target, stats=stats)


def _write_index(out_dir: Path, per_entry: Sequence[tuple], sets: dict[str, dict[str, list[int]]], *, k: int,
                 temperature: float, dtype: str, vocab_size: int, max_target: int,
                 stats: dict[str, Any]) -> dict[str, Any]:
    """The shards and `index.json` of a cache: `per_entry[e]` = (label ids, top-k ids, top-k
    log-probs as a float tensor, log tail) of entry e, positions first."""
    shards = []
    for s, first in enumerate(range(0, len(per_entry), SHARD_ENTRIES)):
        chunk = per_entry[first:first + SHARD_ENTRIES]
        shard = out_dir / f"shard-{s:05d}"
        shard.mkdir(parents=True)
        lengths = np.array([len(c[0]) for c in chunk], dtype=np.int64)
        np.save(shard / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        np.save(shard / "target_ids.npy", np.concatenate([c[0] for c in chunk]).astype(np.int32))
        np.save(shard / "topk_ids.npy", np.concatenate([c[1] for c in chunk]).astype(np.int32).reshape(-1, k))
        np.save(shard / "topk_logprobs.npy", _to_storage(torch.cat([c[2] for c in chunk]).reshape(-1, k), dtype))
        np.save(shard / "log_tail.npy", np.concatenate([c[3] for c in chunk]).astype(np.float32))
        shards.append({"dir": shard.name, "first_entry": first, "entries": len(chunk)})
    item = np.dtype(DTYPES[dtype]).itemsize
    positions = sum(len(c[0]) for c in per_entry)
    index = {
        "k": k, "temperature": temperature, "dtype": dtype, "vocab_size": vocab_size,
        "max_target": max_target, "sets": sets, "shards": shards, "entries": len(per_entry), "positions": positions,
        "stats": {**stats, "bytes_per_token": k * (4 + item) + 4 + 4},
    }
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return index


def write_teacher_cache(out_dir: Path, target_sets: dict[str, dict[str, list[list[tuple]]]], *, k: int,
                        dtype: str, vocab_size: int, max_target: int, temperature: float = 1.0,
                        stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """A cache from distributions computed elsewhere (an API teacher's log-probabilities aligned
    to the student's tokens, `bench.api_teacher.align`), in the same format as
    `build_teacher_cache`: {set name: {split: per input, per candidate target, (label ids (T,),
    top-k ids (T, k), top-k log-probs (T, k), log tail (T,))}}; label ids end in eos as the
    loop's labels do. `stats` joins the index's statistics (e.g. the aligned share);
    `covered_mass_mean` is computed here, `kl_full_cached_mean` is unknown (None): the full
    distribution was never seen."""
    if dtype not in DTYPES:
        raise ValueError(f"teacher cache dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    per_entry: list[tuple] = []
    sets: dict[str, dict[str, list[int]]] = {}
    covered, positions = 0.0, 0
    for name, splits in target_sets.items():
        sets[name] = {}
        for split, candidates in splits.items():
            width = max((len(c) for c in candidates), default=1)
            if any(len(c) != width for c in candidates):
                raise ValueError(f"teacher cache: target set {name!r} split {split!r} has a varying number of "
                                 f"candidates per input")
            sets[name][split] = [len(per_entry), len(candidates), width]
            for cands in candidates:
                for labels, ids, logprobs, log_tail in cands:
                    if np.shape(ids) != (len(labels), k) or np.shape(logprobs) != (len(labels), k) \
                            or len(log_tail) != len(labels):
                        raise ValueError(f"teacher cache: an entry of {name!r}/{split!r} has shapes "
                                         f"{np.shape(ids)}, {np.shape(logprobs)}, {np.shape(log_tail)} for "
                                         f"{len(labels)} labels and k={k}")
                    lp = torch.as_tensor(np.asarray(logprobs, dtype=np.float32))
                    covered += float(lp.exp().sum())
                    positions += len(labels)
                    per_entry.append((np.asarray(labels, dtype=np.int32), np.asarray(ids, dtype=np.int32), lp,
                                      np.asarray(log_tail, dtype=np.float32)))
    stats = {"covered_mass_mean": covered / max(1, positions), "kl_full_cached_mean": None, **(stats or {})}
    return _write_index(out_dir, per_entry, sets, k=k, temperature=temperature, dtype=dtype, vocab_size=vocab_size,
                        max_target=max_target, stats=stats)


def join_rows(parts: Sequence[tuple[SparseTopK, torch.Tensor]]) -> tuple[SparseTopK, torch.Tensor]:
    """Sparse distributions of several groups of a batch's rows as one (`(distributions, row
    indices)` per group, same positions T and temperature; k padded to the widest with NEG)."""
    if len(parts) == 1:
        return parts[0]
    k = max(p.ids.shape[-1] for p, _ in parts)

    def pad(x: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, k - x.shape[-1]), value=value)

    first = parts[0][0]
    joined = SparseTopK(torch.cat([pad(p.ids, 0) for p, _ in parts]), torch.cat([pad(p.logprobs, NEG) for p, _ in parts]),
                        torch.cat([p.log_tail for p, _ in parts]), first.temperature)
    return joined, torch.cat([rows for _, rows in parts])


class TeacherCache:
    """Read side of the cache (memory-mapped; `lookup` gathers a batch's rows)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.index = json.loads((self.path / INDEX_FILE).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"teacher cache {self.path}: unreadable index ({err}); rebuild it") from None
        self.k, self.temperature, self.dtype = self.index["k"], self.index["temperature"], self.index["dtype"]
        self._firsts = [s["first_entry"] for s in self.index["shards"]]
        self._arrays: dict[int, dict[str, np.ndarray]] = {}

    def has(self, target_set: str) -> bool:
        return target_set in self.index["sets"]

    @property
    def stats(self) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature, "dtype": self.dtype, **self.index["stats"]}

    def _shard(self, s: int) -> dict[str, np.ndarray]:
        if s not in self._arrays:
            d = self.path / self.index["shards"][s]["dir"]
            self._arrays[s] = {name: np.load(d / f"{name}.npy", mmap_mode="r") for name in
                               ("offsets", "target_ids", "topk_ids", "topk_logprobs", "log_tail")}
        return self._arrays[s]

    def entry(self, target_set: str, key: tuple[str, int, int]) -> int:
        split, i, j = key
        try:
            first, n, width = self.index["sets"][target_set][split]
        except KeyError:
            raise KeyError(f"the teacher cache has no {target_set!r} targets for split {split!r}") from None
        if not (0 <= i < n and 0 <= j < width):
            raise KeyError(f"the teacher cache has no entry {key} in {target_set!r}")
        return first + i * width + j

    def lookup(self, keys: Sequence[tuple[str, tuple[str, int, int]]], labels: torch.Tensor, device) -> SparseTopK:
        """Cached distributions for a batch's rows (`keys`: (target set, example key) per row),
        aligned with `labels` (rows, T); ValueError when a row's labels are not the ones the
        entry was built for."""
        rows, width = labels.shape
        ids = np.zeros((rows, width, self.k), dtype=np.int64)
        logp = torch.full((rows, width, self.k), NEG)
        tail = torch.full((rows, width), NEG)
        labels_np = labels.cpu().numpy()
        for r, (target_set, key) in enumerate(keys):
            e = self.entry(target_set, key)
            s = bisect.bisect_right(self._firsts, e) - 1
            a = self._shard(s)
            local = e - self._firsts[s]
            lo, hi = int(a["offsets"][local]), int(a["offsets"][local + 1])
            n = hi - lo
            real = labels_np[r][labels_np[r] != -100]
            if n != len(real) or not np.array_equal(a["target_ids"][lo:hi], real):
                raise ValueError(f"teacher cache {self.path.name}: entry {target_set}{key} was built for other "
                                 f"target tokens than this batch's; the cache does not belong to these targets")
            ids[r, :n] = a["topk_ids"][lo:hi]
            logp[r, :n] = _from_storage(a["topk_logprobs"][lo:hi], self.dtype)
            tail[r, :n] = torch.from_numpy(np.array(a["log_tail"][lo:hi], dtype=np.float32))
        return SparseTopK(torch.from_numpy(ids).to(device), logp.to(device), tail.to(device), self.temperature)


def cache_label(target_set: str, temperature: float) -> str:
    """Key of a cache in `TaskArtifacts.paths` (e.g. `teacher_cache/gold-t1`)."""
    return f"teacher_cache/{target_set}-t{temperature:g}"



class TeacherCaches:
    """Several caches at one temperature, one per target set (each its own artifact), read as one."""

    def __init__(self, caches: dict[str, TeacherCache]):
        temps = {c.temperature for c in caches.values()}
        if len(temps) > 1:
            raise ValueError(f"teacher caches at different temperatures {sorted(temps)} cannot serve one term")
        self.caches = caches

    def has(self, target_set: str) -> bool:
        return target_set in self.caches and self.caches[target_set].has(target_set)

    @property
    def stats(self) -> dict[str, Any]:
        return {name: c.stats for name, c in self.caches.items()}

    def lookup(self, keys, labels: torch.Tensor, device) -> SparseTopK:
        groups: dict[str, list[int]] = {}
        for r, (target_set, _) in enumerate(keys):
            groups.setdefault(target_set, []).append(r)
        if len(groups) == 1:
            return self.caches[next(iter(groups))].lookup(keys, labels, device)
        joined, rows = join_rows([(self.caches[s].lookup([keys[i] for i in idx], labels[idx], device),
                                   torch.tensor(idx, device=device)) for s, idx in groups.items()])
        order = torch.argsort(rows)  # back to the batch's row order
        return SparseTopK(joined.ids[order], joined.logprobs[order], joined.log_tail[order], joined.temperature)
