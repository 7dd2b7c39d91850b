"""The rows' stored test outputs and their test references, as the report reads them.

The engine stores each trial's outputs (`outputs_file` of a row) and each task's references
(`references/<task>.json`, one list of reference strings per test example). The contract
with `bench/` is that they are read through `bench.results.load_hypotheses(run_dir, row)` and
`bench.results.load_references(run_dir, task)`, because run dirs may become URIs (and the
files are read here, with the same layout, only where `bench.results` lacks them). A problem
becomes an `OutputsError` whose message says what is wrong, for the report to print; when
bench's reader declines a local file, the file is looked at once more only to say why.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bench.results as store
from bench.example_stats import references_digest

REFERENCES_DIR = "references"


class OutputsError(ValueError):
    """Stored outputs or references that cannot be used (the message says why)."""


def load_references(run_dir: Path | str, task: str) -> list[list[str]] | None:
    """The task's test references of a run; None when the run did not store them."""
    reader = getattr(store, "load_references", None)
    if reader is not None:
        try:
            data = reader(run_dir, task)
        except (OSError, ValueError):
            return None
    else:
        data = _read_json(Path(run_dir) / REFERENCES_DIR / f"{task}.json")
    if not isinstance(data, list) or not all(isinstance(r, (list, tuple)) for r in data):
        return None
    return [[str(x) for x in refs] for refs in data]


def load_hypotheses(run_dir: Path | str, row: Mapping[str, Any]) -> list[str]:
    """A row's stored test outputs; raises OutputsError naming what is wrong."""
    reader = getattr(store, "load_hypotheses", None)
    if reader is None:
        return _read_hypotheses(run_dir, row)
    try:
        hyps = reader(run_dir, dict(row))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputsError(str(exc)) from exc
    if not isinstance(hyps, list):
        _read_hypotheses(run_dir, row)  # raises with the reason when the file is local
        raise OutputsError(f"{row.get('outputs_file')}: missing, malformed or not the outputs "
                           f"of {row.get('trial_key')!r}")
    return [str(h) for h in hyps]


def _read_hypotheses(run_dir: Path | str, row: Mapping[str, Any]) -> list[str]:
    path = Path(run_dir) / str(row.get("outputs_file"))
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("hypotheses"), list):
        raise OutputsError(f"{path}: missing or malformed (needs a 'hypotheses' list)")
    key = row.get("trial_key")
    if data.get("trial_key") not in (None, key):
        raise OutputsError(f"{path}: holds outputs of {data.get('trial_key')!r}, not {key!r}")
    return [str(h) for h in data["hypotheses"]]


def outputs_stamp(run_dir: Path | str, outputs_file: str) -> list[int] | None:
    """(size, mtime in ns) of a local outputs file, None when it is not a local file: part of
    the key under which its per-example scores are cached, so an edited file is rescored."""
    try:
        info = (Path(run_dir) / outputs_file).stat()
    except (OSError, ValueError):
        return None
    return [info.st_size, info.st_mtime_ns]


def digest(data: Any) -> str:
    """A short content hash of JSON-able data (e.g. a test set's references)."""
    return references_digest(data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
