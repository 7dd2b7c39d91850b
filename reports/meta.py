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

RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"


@dataclass
class RunMeta:
    run_dir: Path
    run_id: str
    spec_name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> str | None:
        """Wall time of the run as "1h 02m 03s", when both ends are known."""
        try:
            start = datetime.fromisoformat(str(self.started_at))
            end = datetime.fromisoformat(str(self.finished_at))
            seconds = int((end - start).total_seconds())
        except (TypeError, ValueError):
            return None
        if seconds < 0:
            return None
        h, rest = divmod(seconds, 3600)
        m, s = divmod(rest, 60)
        return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def run_meta(run_dir: Path | str) -> RunMeta:
    """Metadata of one run dir, from `run.json`/`spec.yaml`, else from its result rows."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / RUN_FILE)
    rows = read_rows(run_dir) if not info else []
    first = rows[0] if rows else {}
    finished = [str(r["finished_at"]) for r in rows if r.get("finished_at")]
    return RunMeta(
        run_dir=run_dir,
        run_id=str(info.get("run_id") or first.get("run_id") or run_dir.resolve().name),
        spec_name=info.get("spec_name") or _spec_name(run_dir / SPEC_FILE),
        started_at=info.get("started_at"),
        finished_at=info.get("finished_at") or (max(finished) if finished else None),
        hardware=_as_dict(info.get("hardware")),
        versions=_as_dict(info.get("versions")) or _as_dict(first.get("versions")),
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _spec_name(path: Path) -> str | None:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    name = spec.get("name") if isinstance(spec, dict) else None
    return str(name) if name else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
