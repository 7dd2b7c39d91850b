"""The results store: one JSON file per trial in `RUN_DIR/rows/`, on any storage `bench.storage`
reaches (a local or NFS directory, or an object store).

As safe as a database write, and as cheap: appending a row writes one file (O(1), whatever
the store holds), atomically (a reader sees the whole row or none), and a trial key that
already has an `ok` row is never written again, so a retried or resumed trial can neither
duplicate nor overwrite a finished result. Run dirs of older kdbench versions keep their rows
in `results.jsonl` (one JSON row per line); they are still read.

Row schema (documented in README, read by `reports/`):
  trial_key   str   task|role|method|init|r<ratio>|s<seed>|<config hash> (students), task|teacher, …
  config_hash, system_hash  hashes of the full trial config (with and without the seed)
  status      "ok" | "error";  error: str | null (the reason when status is "error")
  role        "teacher" | "student" | "baseline"
  task, method, ratio (requested compression; 1.0 for the teacher), seed
  student_init  "random" | "random/width" | … | "pretrained:<name>" (students)
  bleu, chrf  test-set metrics (multi-reference sacreBLEU); null when failed
  params, realized_ratio, latency_ms (per example, batch 1, greedy: from the profiles)
  train_seconds, eval_seconds, wall_seconds
  config      dict  the full trial config
  artifacts   dict  stage name -> content hash of every shared artifact used
  versions    dict  library versions
  run_id, finished_at (ISO 8601, UTC)
  metrics     dict  everything the evaluation returned (all metrics, signatures, `train`
                    statistics with the learning curve, `selection`, `compute`, `overhead`),
                    and, joined on read, the cost profile and `relative` costs vs the teacher
  outputs_file str  path (relative to the run dir) of the test outputs, aligned with
                    `references/<task>.json`; per-example statistics beside it (`.stats.<metric>.<hash>.npy`)
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import orjson

from bench.storage import Location

ROWS_DIR = "rows"
LEGACY_RESULTS_FILE = "results.jsonl"
OUTPUTS_DIR = "outputs"
REFERENCES_DIR = "references"
PROFILES_DIR = "profiles"
STUDENTS_DIR = "students"

RunDir = str | Path | Location


def slug(trial_key: str) -> str:
    """A file name for a trial key: readable, and unique through a short hash."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", trial_key)[:80]
    return f"{name}-{hashlib.sha1(trial_key.encode()).hexdigest()[:10]}"


def _row_file(run_dir: RunDir, trial_key: str) -> Location:
    return Location.of(run_dir).join(ROWS_DIR, f"{slug(trial_key)}.json")


def read_rows(run_dir: RunDir, profiles: bool = True) -> list[dict[str, Any]]:
    """All rows of a run, one per trial key (an `ok` row wins over an error), with the cost
    profiles measured after the grid joined in (`profiles=False`: the rows as stored)."""
    rows = _stored_rows(run_dir)
    return with_profiles(rows, run_dir) if profiles else rows


def _stored_rows(run_dir: RunDir) -> list[dict[str, Any]]:
    loc = Location.of(run_dir)
    by_key: dict[str, dict[str, Any]] = {}

    def keep(row: Any) -> None:
        if isinstance(row, dict) and isinstance(row.get("trial_key"), str):
            key = row["trial_key"]
            if by_key.get(key, {}).get("status") != "ok":
                by_key[key] = row

    legacy = loc.join(LEGACY_RESULTS_FILE)
    try:
        for line in legacy.read_bytes().splitlines():
            try:
                keep(_parse(line))
            except ValueError:
                continue  # a torn write of an older kdbench
    except FileNotFoundError:
        pass
    rows_dir = loc.join(ROWS_DIR)
    files = rows_dir.files(".json")
    for data in loc.read_many(files):
        if data is not None:
            try:
                keep(_parse(data))
            except ValueError:
                continue
    return list(by_key.values())


def _parse(data: bytes | str) -> Any:
    """A stored row: orjson (3× faster on 10,000 rows) where it can, else the json module, which
    also reads what orjson refuses and Python's json writes (NaN, Infinity, huge integers)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def finished_row(run_dir: RunDir, trial_key: str) -> dict[str, Any] | None:
    """The stored `ok` row of a trial, if it already finished (one read, not a scan)."""
    try:
        row = json.loads(_row_file(run_dir, trial_key).read_bytes())
    except (FileNotFoundError, ValueError):
        row = None
    if row is not None and row.get("status") == "ok":
        return row
    if Location.of(run_dir).join(LEGACY_RESULTS_FILE).exists():
        return next((r for r in _stored_rows(run_dir) if r["trial_key"] == trial_key and r["status"] == "ok"), None)
    return None


def append_row(run_dir: RunDir, row: dict[str, Any]) -> bool:
    """Store `row` unless its trial already has an `ok` row. Returns whether it was written.
    Raises `bench.storage.StorageError` when the store cannot be written."""
    if finished_row(run_dir, row["trial_key"]) is not None:
        return False
    _row_file(run_dir, row["trial_key"]).write_text(json.dumps(row, sort_keys=True, default=str))
    return True


def with_profiles(rows: list[dict[str, Any]], run_dir: RunDir) -> list[dict[str, Any]]:
    """Rows with their model's profile (`bench.profiling`) in `metrics` and `latency_ms`."""
    from bench.profiling import read_profiles

    found = read_profiles(run_dir)
    if not found:
        return rows
    out = []
    for row in rows:
        profile = found.get(row["trial_key"])
        if profile is not None and row.get("status") == "ok":
            row = {**row, "metrics": {**(row.get("metrics") or {}), **profile},
                   "latency_ms": profile.get("latency_greedy_ms")}
        out.append(row)
    return out


def write_outputs(run_dir: RunDir, trial_key: str, hypotheses: list[str],
                  references: list[list[str]] | None = None, bleu_tokenize: str | None = None) -> str:
    """Store a trial's test outputs (aligned with `references/<task>.json`, for paired
    significance tests) and, given the references, their per-example statistics
    (`bench.example_stats`, `<outputs>.stats.<metric>.<hash>.npy`); returns the outputs' path relative to the
    run dir, recorded in the row as `outputs_file`. Each file is written atomically."""
    rel = f"{OUTPUTS_DIR}/{slug(trial_key)}.json"
    Location.of(run_dir).join(rel).write_json({"trial_key": trial_key, "hypotheses": hypotheses})
    if references is not None:
        from bench.example_stats import example_stats

        write_example_stats(run_dir, rel, trial_key, *example_stats(hypotheses, references, bleu_tokenize))
    return rel


def write_example_stats(run_dir: RunDir, outputs_file: str, trial_key: str, stats: dict, meta: dict) -> None:
    """Per-example statistics of an outputs file (`bench.example_stats`), beside it: one .npy per
    metric, named by the metric and what it was computed with (signature, references), so a
    reader opens only the array it wants (a .npy loads in a third of the time of an .npz member:
    a cold report of 10,000 rows reads 10,000 of them)."""
    import numpy as np

    for metric, array in stats.items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        _stats_file(run_dir, outputs_file, metric, meta["signatures"][metric],
                    meta["references_digest"]).write_bytes(buffer.getvalue())


def _stats_file(run_dir: RunDir, outputs_file: str, metric: str, signature: str, references_digest: str) -> Location:
    digest = hashlib.sha1(f"{signature}|{references_digest}".encode()).hexdigest()[:12]
    return Location.of(run_dir).join(f"{outputs_file.removesuffix('.json')}.stats.{metric}.{digest}.npy")


def load_example_stats(run_dir: RunDir, row: dict[str, Any], metric: str, signature: str,
                       references_digest: str):
    """A row's stored per-example statistics of `metric`, if they were computed with this
    signature against these references (else None: the caller computes them)."""
    if not row.get("outputs_file"):
        return None
    loc = _stats_file(run_dir, str(row["outputs_file"]), metric, signature, references_digest)
    try:  # missing (other references, or a run older than these files) or unreadable: None
        return read_npy(loc.local_path.read_bytes() if loc.is_local else loc.read_bytes())
    except (OSError, ValueError):
        return None


def read_npy(data: bytes):
    """The array of a .npy file's bytes, as `np.load(..., allow_pickle=False)` reads it, with
    each distinct header parsed once (numpy parses every header with `ast.literal_eval`: a
    third of the time of a cold report's 10,000 reads, whose headers are all alike)."""
    import numpy as np

    if data[:6] != b"\x93NUMPY" or data[6:7] != b"\x01" or len(data) < 10:  # other versions: numpy
        return np.load(io.BytesIO(data), allow_pickle=False)
    end = 10 + int.from_bytes(data[8:10], "little")
    dtype, shape, fortran = _npy_header(data[10:end])
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=end)
    return array.reshape(shape, order="F" if fortran else "C")


@functools.lru_cache(maxsize=64)
def _npy_header(header: bytes):
    import numpy as np

    try:
        fields = ast.literal_eval(header.decode("latin1"))
        dtype = np.dtype(fields["descr"])
        shape, fortran = tuple(int(n) for n in fields["shape"]), bool(fields["fortran_order"])
    except (SyntaxError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a .npy header: {header[:80]!r}") from err
    if dtype.hasobject:
        raise ValueError("a .npy of Python objects (pickles are not read)")
    return dtype, shape, fortran


def write_references(run_dir: RunDir, task: str, references: list[list[str]]) -> str:
    """Store a task's test references once per run dir (`references/<task>.json`)."""
    rel = f"{REFERENCES_DIR}/{task}.json"
    Location.of(run_dir).join(rel).write_json(references)
    return rel


def load_references(run_dir: RunDir, task: str) -> list[list[str]] | None:
    """A task's test references as a run stored them (None when it did not)."""
    try:
        data = Location.of(run_dir).join(REFERENCES_DIR, f"{task}.json").read_json()
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        return None
    return [[str(x) for x in refs] for refs in data]


def load_hypotheses(run_dir: RunDir, row: dict[str, Any]) -> list[str] | None:
    """A row's stored test outputs (None when missing or not the row's own)."""
    if not row.get("outputs_file"):
        return None
    try:
        data = Location.of(run_dir).join(row["outputs_file"]).read_json()
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("hypotheses"), list):
        return None
    if data.get("trial_key") not in (None, row.get("trial_key")):
        return None
    return [str(h) for h in data["hypotheses"]]


def same_system(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Seeds of one system (see the results contract: equal `system_hash`, when recorded)."""
    keys = ("task", "method", "ratio", "student_init")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    if a.get("system_hash") or b.get("system_hash"):
        return a.get("system_hash") == b.get("system_hash")
    return a.get("run_id") == b.get("run_id")
