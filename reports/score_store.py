"""Per-example statistics of every row's stored outputs, and its scores on the bootstrap's
resamples, each computed once.

Scoring a row's outputs example by example (sacreBLEU's statistics, rouge-score's F1) costs
tens of milliseconds per row, far more than everything else the report does with it, and the
runner rebuilds the report every minute while a grid runs. So a row's statistics are kept in
memory for the build (significance, findings and the recompute check share them) and on disk
under the report's `.cache/example_scores/`, where the runs' own report caches are read too,
so a report that merges runs reuses what their reports computed. Deleting the folder only
costs time.

An entry is keyed by the metric's signature (library version, tokenizer), the references'
content hash and the row's outputs file (run dir, trial key, finish time, config hash and, for
a local file, its size and modification time): an edited or replaced outputs file is rescored.
Entries are float32 (the statistics are small integer counts, or F1 values where float32's
1e-7 is far below any digit the report shows); the results of a fresh build are rounded the
same way, so a cached build gives the same numbers. A row's corpus scores on the standard
example resamples (`scores`, float64, keyed by the same row key and the resampling protocol)
are kept as well: a rebuild then never touches the statistics of an unchanged row at all.
Per (metric, test set, kind) the entries live in
one memory-mapped pack (`pack-<token>.npy` + `.json` keys, named by `current.json`, which is
replaced atomically) plus loose `.npy` files for new rows, folded into a new pack when there
are `REPACK_AFTER` of them: ten thousand rows load in milliseconds, not one file each.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.example_stats import TestSet, signature, sufficient_stats
from bench.results import load_example_stats
from bench.storage import Location
from reports.outputs import OutputsError, digest, load_hypotheses, load_references, outputs_stamp

CACHE_DIR = Path(".cache") / "example_scores"
REPACK_AFTER = 64


class _Shelf:
    """The cached entries of one (metric signature, test set): a pack and loose files."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs  # dirs[0] is written; the others (the runs' caches) are only read
        self.packs: list[tuple[dict[str, int], np.ndarray]] = [_open_pack(d) for d in dirs]
        # listed once: a cold build of 10,000 rows would otherwise try to open 10,000 missing files
        self.loose = [{p.stem for p in (d / "loose").glob("*.npy")} for d in dirs]
        self.new: dict[str, np.ndarray] = {}

    def get(self, key: str) -> np.ndarray | None:
        for index, pack in self.packs:
            if key in index:
                return pack[index[key]]
        for d, names in zip(self.dirs, self.loose):
            if key in names:
                try:
                    return np.load(d / "loose" / f"{key}.npy", allow_pickle=False)
                except (OSError, ValueError):
                    continue
        return None

    def put(self, key: str, stats: np.ndarray) -> None:
        self.new[key] = stats

    def flush(self) -> None:
        """Write this build's entries: as loose files while there are few, else folded with the
        loose ones into one new pack (a first build of a large run writes one file, not one per row)."""
        loose_dir = self.dirs[0] / "loose"
        loose = sorted(loose_dir.glob("*.npy")) if loose_dir.is_dir() else []
        if len(loose) + len(self.new) < REPACK_AFTER:
            for key, stats in self.new.items():
                _save(loose_dir / f"{key}.npy", stats)
            self.loose[0] |= set(self.new)
            self.new = {}
            return
        index, pack = self.packs[0]
        keys = list(index)
        arrays = [pack[i] for i in range(len(keys))]
        fresh = [k for k in self.new if k not in index]
        keys += fresh
        arrays += [self.new[k] for k in fresh]
        self.new = {}
        known = set(keys)
        for path in loose:
            if path.stem in known:
                continue
            try:
                arrays.append(np.load(path, allow_pickle=False))
                keys.append(path.stem)
            except (OSError, ValueError):
                continue
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:  # a corrupt entry: start the shelf again rather than guess
            keys, arrays = [], []
        token = uuid.uuid4().hex[:12]
        target = self.dirs[0]
        try:
            if arrays:
                _save(target / f"pack-{token}.npy", np.stack(arrays))
            (target / f"pack-{token}.json").write_text(json.dumps(keys))
            _write_text(target / "current.json", json.dumps({"token": token}))
        except OSError:
            return
        for path in loose:
            path.unlink(missing_ok=True)
        for old in target.glob("pack-*"):
            if token not in old.name:
                old.unlink(missing_ok=True)
        self.packs[0], self.loose[0] = _open_pack(target), set()  # what get() finds from now on


def _open_pack(d: Path) -> tuple[dict[str, int], np.ndarray]:
    try:
        token = json.loads((d / "current.json").read_text())["token"]
        keys = json.loads((d / f"pack-{token}.json").read_text())
        pack = np.load(d / f"pack-{token}.npy", mmap_mode="r") if keys else np.empty((0,))
    except (OSError, ValueError, KeyError, TypeError):
        return {}, np.empty((0,))
    if len(keys) != len(pack):
        return {}, np.empty((0,))
    return {k: i for i, k in enumerate(keys)}, pack


def _save(path: Path, array: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only report dir loses the cache, never the report


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ScoreStore:
    """Test sets and per-example statistics of the rows of one report build."""

    def __init__(self, cache_dir: Path | str | None = None,
                 read_dirs: list[Path | str] = ()):
        """`cache_dir` is written (None: memory only); `read_dirs` are other caches to reuse."""
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.read_dirs = [Path(d) for d in read_dirs if Path(d) != self.cache_dir]
        self._test_sets: dict[tuple[str, str], TestSet | None] = {}
        self._by_digest: dict[str, TestSet] = {}
        self._shelves: dict[tuple[str, str], _Shelf] = {}
        self._memo: dict[str, np.ndarray] = {}
        self._keys: dict[tuple, str] = {}
        self._run_dirs: dict[str, Location] = {}  # resolved once per build, not once per row
        self.computed = 0  # rows scored in this build (the rest came from the caches)

    def test_set(self, run_dir: Path | str, task: str) -> TestSet | None:
        """The task's references in a run, None when the run did not store them. Runs with
        the same references share one TestSet, hence one set of reference statistics."""
        key = (str(run_dir), task)
        if key not in self._test_sets:
            refs = load_references(run_dir, task)
            test_set = None
            if refs is not None:
                ref_digest = digest(refs)
                try:
                    test_set = self._by_digest.setdefault(ref_digest, TestSet(refs, ref_digest))
                except ValueError:
                    test_set = None
            self._test_sets[key] = test_set
        return self._test_sets[key]

    def stats(self, row: Mapping[str, Any], test_set: TestSet, metric: str,
              tokenize: str | None = None) -> np.ndarray:
        """(examples × stats) float32 statistics of a row's outputs; raises OutputsError /
        ValueError saying why they cannot be had."""
        if not row.get("outputs_file") or not row.get("run_dir"):
            raise OutputsError("no stored outputs")
        key = self._key(row, test_set, metric, tokenize)
        if key in self._memo:
            return self._memo[key]
        shelf = self._shelf(metric, tokenize, test_set, "stats")
        stats = shelf.get(key) if shelf is not None else None
        if stats is None or stats.shape[0] != len(test_set):  # computed by the evaluation, stored with the outputs
            run_dir = self._run_dirs.get(str(row["run_dir"]))
            if run_dir is None:
                run_dir = self._run_dirs[str(row["run_dir"])] = Location.of(row["run_dir"])
            stats = load_example_stats(run_dir, row, metric, signature(metric, tokenize), test_set.digest)
        if stats is None or stats.shape[0] != len(test_set):
            hyps = load_hypotheses(row["run_dir"], row)
            stats = sufficient_stats(metric, hyps, test_set, tokenize).astype("float32")
            self.computed += 1
            if shelf is not None:
                shelf.put(key, stats)
        self._memo[key] = stats
        return stats

    def scores(self, row: Mapping[str, Any], test_set: TestSet, metric: str,
               tokenize: str | None, protocol: str) -> np.ndarray | None:
        """A row's corpus score on the full test set followed by its scores on the resamples
        of `protocol` (e.g. "1000x12345"), if a build computed them before; else None."""
        if not row.get("outputs_file") or not row.get("run_dir"):
            return None
        shelf = self._shelf(metric, tokenize, test_set, f"scores-{protocol}")
        return shelf.get(self._key(row, test_set, metric, tokenize)) if shelf else None

    def put_scores(self, row: Mapping[str, Any], test_set: TestSet, metric: str,
                   tokenize: str | None, protocol: str, values: np.ndarray) -> None:
        shelf = self._shelf(metric, tokenize, test_set, f"scores-{protocol}")
        if shelf is not None:
            shelf.put(self._key(row, test_set, metric, tokenize), values)

    def flush(self) -> None:
        """Pack what this build added (call once, at the end of the build)."""
        for shelf in self._shelves.values():
            shelf.flush()

    def _shelf(self, metric: str, tokenize: str | None, test_set: TestSet, kind: str
               ) -> _Shelf | None:
        if self.cache_dir is None:
            return None
        sig = signature(metric, tokenize)
        key = (sig, test_set.digest, kind)
        if key not in self._shelves:
            dirs = [d / sig / test_set.digest / kind for d in [self.cache_dir, *self.read_dirs]]
            self._shelves[key] = _Shelf(dirs)
        return self._shelves[key]

    def _key(self, row, test_set: TestSet, metric: str, tokenize: str | None) -> str:
        ident = (metric, tokenize, test_set.digest, str(row["run_dir"])) + tuple(
            None if row.get(f) is None else str(row.get(f))
            for f in ("trial_key", "outputs_file", "finished_at", "config_hash"))
        key = self._keys.get(ident)
        if key is None:  # the file's stamp is read once per build
            fields = [signature(metric, tokenize), *ident[2:]]
            stamp = outputs_stamp(row["run_dir"], str(row["outputs_file"]))
            key = self._keys[ident] = hashlib.sha1(
                json.dumps([*fields, stamp]).encode("utf-8")).hexdigest()
        return key
