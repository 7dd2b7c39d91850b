"""Run metadata for the report header: who ran what, when, on which hardware and versions.

Read from `run.json` (and `spec.yaml` for the spec name) when present; both may be missing
(an interrupted or hand-assembled run), so every field falls back to what the result rows
say, or to None, and nothing here ever raises on a malformed file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.results import read_rows
from bench.storage import Location

RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"
SPEC_TEXT_LIMIT = 20_000


@dataclass
class RunMeta:
    run_dir: Path | str  # a local run dir, or its storage URI
    run_id: str
    spec_name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    spec_text: str | None = None  # the run's spec.yaml, verbatim (truncated if huge)
    wall_seconds: float | None = None  # from run.json, when the timestamps are missing
    study: dict[str, Any] | None = None  # run.json `study`: the claims the run tests

    @property
    def duration(self) -> str | None:
        """Wall time of the run as "1h 02m 03s", from its start and end (else run.json's
        wall_seconds); None when unknown."""
        try:
            start = datetime.fromisoformat(str(self.started_at))
            end = datetime.fromisoformat(str(self.finished_at))
            seconds = int((end - start).total_seconds())
        except (TypeError, ValueError):
            seconds = None
        if seconds is None and isinstance(self.wall_seconds, (int, float)):
            seconds = int(self.wall_seconds)
        if seconds is None or seconds < 0:
            return None
        h, rest = divmod(seconds, 3600)
        m, s = divmod(rest, 60)
        return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"

    def items(self) -> list[tuple[str, str]]:
        """The header's (title, text) pairs, in display order, empty fields left out."""
        items = [("run", self.run_id), ("spec", self.spec_name), ("started", self.started_at),
                 ("finished", self.finished_at), ("run time", self.duration)]
        for title, values in (("hardware", self.hardware), ("versions", self.versions)):
            if values:
                items.append((title, ", ".join(f"{k} {v}" for k, v in flatten(values).items())))
        return [(k, str(v)) for k, v in items if v]


def run_meta(run_dir: Path | str) -> RunMeta:
    """Metadata of one run dir (a path or a storage URI), from `run.json`/`spec.yaml`, else from
    its result rows."""
    loc = Location.of(run_dir)
    info = _read_json(loc.join(RUN_FILE))
    rows = read_rows(run_dir) if not info else []
    first = rows[0] if rows else {}
    finished = [str(r["finished_at"]) for r in rows if r.get("finished_at")]
    return RunMeta(
        run_dir=loc.local_path if loc.is_local else loc.uri,
        run_id=str(info.get("run_id") or first.get("run_id") or loc.name),
        spec_name=info.get("spec_name") or _spec_name(loc.join(SPEC_FILE)),
        started_at=info.get("started_at"),
        finished_at=info.get("finished_at") or (max(finished) if finished else None),
        hardware=_as_dict(info.get("hardware")),
        versions=_as_dict(info.get("versions")) or _as_dict(first.get("versions")),
        spec_text=_read_text(loc.join(SPEC_FILE)),
        wall_seconds=info.get("wall_seconds") if isinstance(
            info.get("wall_seconds"), (int, float)) else None,
        study=info.get("study") if isinstance(info.get("study"), dict) else None,
    )


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dict → {"a.b": "v"} so hardware/versions render as one key-value list."""
    if not isinstance(value, dict):
        return {prefix or "value": str(value)}
    out: dict[str, str] = {}
    for key, sub in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(sub, dict):
            out.update(flatten(sub, name))
        elif isinstance(sub, (list, tuple)):
            out[name] = ", ".join(map(str, sub))
        else:
            out[name] = str(sub)
    return out


def _read_json(loc: Location) -> dict[str, Any]:
    try:
        data = json.loads(loc.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_text(loc: Location, limit: int = SPEC_TEXT_LIMIT) -> str | None:
    try:
        text = loc.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    return text if len(text) <= limit else text[:limit] + "\n… (truncated)\n"


def _spec_name(loc: Location) -> str | None:
    try:
        spec = yaml.safe_load(loc.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    name = spec.get("name") if isinstance(spec, dict) else None
    return str(name) if name else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
