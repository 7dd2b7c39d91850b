"""The results store: one JSON row per trial in `RUN_DIR/results.jsonl`.

Crash-safe and idempotent: rows are appended under a file lock with a single `write` +
`fsync`, and a trial key that already has an `ok` row is never written again, so a retried or
resumed trial cannot duplicate or overwrite a finished result. A torn last line (a crash
mid-write) is skipped on read, never fatal.

Row schema (documented in README, read by `reports/`):
  trial_key   str   unique per (task, role, method, student init, ratio, seed)
  status      "ok" | "error";  error: str | null (the reason when status is "error")
  role        "teacher" | "student"
  task, method, ratio (requested compression; 1.0 for the teacher), seed
  student_init  "random" | "shrink-alternating" | "shrink-first-last" | "pretrained:<name>" (students)
  bleu, chrf  test-set metrics (multi-reference sacreBLEU); null when failed
  params, realized_ratio, latency_ms (per example, batch 1, greedy)
  train_seconds, eval_seconds, wall_seconds
  config      dict  the full trial config
  artifacts   dict  stage name -> content hash of every shared artifact used
  versions    dict  library versions
  run_id, finished_at (ISO 8601, UTC)
  metrics     dict  everything the evaluation returned (all metrics, signatures, cost profile,
                    `relative` costs vs the teacher, `train` statistics with the learning curve)
  outputs_file str  path (relative to the run dir) of the test outputs, aligned with
                    `references/<task>.json`
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from filelock import FileLock

RESULTS_FILE = "results.jsonl"


def results_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / RESULTS_FILE


def read_rows(run_dir: Path | str, profiles: bool = True) -> list[dict[str, Any]]:
    """All rows of a run, one per trial key (an `ok` row wins over earlier errors), with the
    cost profiles measured after the grid joined in (`profiles=False`: the rows as stored)."""
    rows = _stored_rows(run_dir)
    return with_profiles(rows, run_dir) if profiles else rows


def with_profiles(rows: list[dict[str, Any]], run_dir: Path | str) -> list[dict[str, Any]]:
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


def _stored_rows(run_dir: Path | str) -> list[dict[str, Any]]:
    path = results_path(run_dir)
    if not path.exists():
        return []
    by_key: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn write from a crash; the trial will be redone
            key = row["trial_key"]
            if by_key.get(key, {}).get("status") != "ok":
                by_key[key] = row
    return list(by_key.values())


def finished_row(run_dir: Path | str, trial_key: str) -> dict[str, Any] | None:
    """The stored `ok` row of a trial, if it already finished."""
    for row in _stored_rows(run_dir):
        if row["trial_key"] == trial_key and row["status"] == "ok":
            return row
    return None


def append_row(run_dir: Path | str, row: dict[str, Any]) -> bool:
    """Append `row` unless its trial already has an `ok` row. Returns whether it was written."""
    path = results_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if finished_row(run_dir, row["trial_key"]) is not None:
            return False
        data = (json.dumps(row, sort_keys=True, default=str) + "\n").encode("utf-8")
        if path.exists() and path.stat().st_size and not _ends_with_newline(path):
            data = b"\n" + data  # seal a torn line so the new row stays parseable
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


OUTPUTS_DIR = "outputs"
REFERENCES_DIR = "references"
PROFILES_DIR = "profiles"
STUDENTS_DIR = "students"


def slug(trial_key: str) -> str:
    """A file name for a trial key: readable, and unique through a short hash."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", trial_key)[:80]
    return f"{name}-{hashlib.sha1(trial_key.encode()).hexdigest()[:10]}"


def write_outputs(run_dir: Path | str, trial_key: str, hypotheses: list[str],
                  references: list[list[str]] | None = None, bleu_tokenize: str | None = None) -> str:
    """Store a trial's test outputs (aligned with `references/<task>.json`, for paired
    significance tests) and, given the references, their per-example statistics
    (`bench.example_stats`, `<outputs>.stats.npz`); returns the outputs' path relative to the
    run dir, recorded in the row as `outputs_file`. Written to temp files and renamed, so a
    reader never sees half a file."""
    rel = f"{OUTPUTS_DIR}/{slug(trial_key)}.json"
    write_json_atomic(Path(run_dir) / rel, {"trial_key": trial_key, "hypotheses": hypotheses})
    if references is not None:
        from bench.example_stats import example_stats

        write_example_stats(run_dir, rel, trial_key, *example_stats(hypotheses, references, bleu_tokenize))
    return rel


def write_example_stats(run_dir: Path | str, outputs_file: str, trial_key: str, stats: dict, meta: dict) -> None:
    """Per-example statistics of an outputs file (`bench.example_stats`), beside it: one array per
    metric, named by the metric and what it was computed with (signature, references), so a
    reader opens only the array it wants."""
    import numpy as np

    path = Path(run_dir) / (outputs_file.removesuffix(".json") + ".stats.npz")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    named = {_stats_name(m, meta["signatures"][m], meta["references_digest"]): a for m, a in stats.items()}
    np.savez(tmp, **named)
    os.replace(tmp, path)


def _stats_name(metric: str, signature: str, references_digest: str) -> str:
    return f"{metric}.{hashlib.sha1(f'{signature}|{references_digest}'.encode()).hexdigest()[:12]}"


def load_example_stats(run_dir: Path | str, row: dict[str, Any], metric: str, signature: str,
                       references_digest: str):
    """A row's stored per-example statistics of `metric`, if they were computed with this
    signature against these references (else None: the caller computes them)."""
    if not row.get("outputs_file"):
        return None
    import numpy as np

    path = Path(run_dir) / (str(row["outputs_file"]).removesuffix(".json") + ".stats.npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            name = _stats_name(metric, signature, references_digest)
            return data[name] if name in data.files else None
    except (OSError, ValueError, KeyError):
        return None


def write_references(run_dir: Path | str, task: str, references: list[list[str]]) -> str:
    """Store a task's test references once per run dir (`references/<task>.json`)."""
    rel = f"{REFERENCES_DIR}/{task}.json"
    write_json_atomic(Path(run_dir) / rel, references)
    return rel


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def load_references(run_dir: Path | str, task: str) -> list[list[str]] | None:
    """A task's test references as a run stored them (None when it did not)."""
    try:
        data = json.loads((Path(run_dir) / REFERENCES_DIR / f"{task}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        return None
    return [[str(x) for x in refs] for refs in data]


def load_hypotheses(run_dir: Path | str, row: dict[str, Any]) -> list[str] | None:
    """A row's stored test outputs (None when missing or not the row's own)."""
    if not row.get("outputs_file"):
        return None
    try:
        data = json.loads((Path(run_dir) / row["outputs_file"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("hypotheses"), list):
        return None
    if data.get("trial_key") not in (None, row.get("trial_key")):
        return None
    return [str(h) for h in data["hypotheses"]]
