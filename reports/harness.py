"""A run-level `results.json` in the shape lm-evaluation-harness writes, so tools that read
harness results (leaderboards, comparison scripts) can read kdbench runs too.

The harness keys results by task, then metric (`"acc,none"`, `"acc_stderr,none"`); kdbench
compares many models per task, so one level is added: `results[task][model]`, where a model
is the teacher, a baseline (`copy_input`) or a student system (`method|r<ratio>[|init]`).
Each metric is the mean over the model's seeds with its standard error (std/√n, ddof 1) and
95% t-interval; with one seed both are "N/A", as the harness writes for undefined stderrs.

Rows are counted as the results contract says: rows with one `config_hash` are one trial
(counted once); seeds pool only within one `system_hash`, and a model label that spans
several systems (different specs merged) is split by hash, with a note, never pooled.
"""
from __future__ import annotations

import json
import math
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

import bench
from bench.modelcard import metric_value
from reports.stats import lower_is_better, t_interval

METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "bertscore_f1", "dev_loss"]
FILTER = "none"  # the harness's filter name; kdbench applies no output filters
NA = "N/A"


def model_label(row: Mapping[str, Any]) -> str:
    """How a row's model is named in `results[task]`."""
    role = row.get("role")
    if role == "teacher":
        return "teacher"
    if role == "baseline":
        return str(row.get("method"))
    label = f"{row.get('method')}|r{float(row.get('ratio')):g}"
    init = _text(row.get("student_init"))
    return label if init in (None, "random") else f"{label}|{init}"


def write_results_json(frame_or_rows: Any, out_path: Path | str, run_meta: Any) -> Path:
    """Write `results.json` for the rows (a list of row dicts, or the report's tidy frame);
    `run_meta` is a `reports.meta.RunMeta` or a dict with the same fields."""
    rows = _ok_rows(frame_or_rows)
    meta = _meta(run_meta)
    spec = meta.get("spec") or {}
    groups, notes = _systems(rows)
    results: dict[str, dict[str, Any]] = defaultdict(dict)
    higher: dict[str, dict[str, bool]] = defaultdict(dict)
    seeds: dict[str, dict[str, int]] = defaultdict(dict)
    for (task, label), members in sorted(groups.items()):
        entry: dict[str, Any] = {"alias": label, "role": members[0].get("role"),
                                 "method": members[0].get("method"),
                                 "ratio": _number(members[0].get("ratio")),
                                 "student_init": _text(members[0].get("student_init")),
                                 "system_hash": _text(members[0].get("system_hash")),
                                 "seeds": sorted(s for s in map(_seed, members) if s is not None),
                                 "n_seeds": len(members)}
        for metric in METRICS:
            values = [v for v in (metric_value(r, metric) for r in members) if v is not None]
            if not values:
                continue
            ci = t_interval(values)
            stderr = ci.std / math.sqrt(ci.n) if ci.n > 1 else None
            entry[f"{metric},{FILTER}"] = ci.mean
            entry[f"{metric}_stderr,{FILTER}"] = NA if stderr is None else stderr
            entry[f"{metric}_ci95,{FILTER}"] = NA if ci.n < 2 else [ci.low, ci.high]
            entry[f"{metric}_n,{FILTER}"] = ci.n
            higher[task][metric] = not lower_is_better(metric)
        results[task][label] = entry
        seeds[task][label] = len(members)
    tasks = sorted(results)
    n_test = {task: _test_size(meta, rows, task) for task in tasks}
    out = {
        "results": dict(results),
        "higher_is_better": dict(higher),
        "n-samples": {t: {"original": n_test[t], "effective": n_test[t], "seeds": seeds[t]} for t in tasks},
        "configs": {t: _task_config(spec, rows, t) for t in tasks},
        "versions": {t: _data_version(rows, t) for t in tasks},
        "config": spec,
        "git_hash": git_hash(),
        "date": time.time(),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("started_at"),
        "finished_at": meta.get("finished_at"),
        "kdbench_version": bench.__version__,
        "library_versions": meta.get("versions") or {},
        "hardware": meta.get("hardware") or {},
        "notes": notes,
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(json.dumps(out, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(out_path)
    return out_path


def git_hash() -> str | None:
    """HEAD of the kdbench checkout this code runs from; None when it is not one (an
    installed wheel: a git repo that merely encloses site-packages is not kdbench's)."""
    package = Path(bench.__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        if Path(top).resolve() != package.parent:
            return None
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --- rows → systems ------------------------------------------------------------------------

ROW_FIELDS = ["status", "trial_key", "run_id", "config_hash", "system_hash", "role", "task",
              "method", "ratio", "seed", "student_init", "headline"]  # what is read of a row


def _ok_rows(frame_or_rows: Any) -> list[dict[str, Any]]:
    if hasattr(frame_or_rows, "to_dict"):  # the report's tidy DataFrame: its ok rows, the columns read
        frame = frame_or_rows[frame_or_rows["status"] == "ok"]
        rows = frame[[c for c in ROW_FIELDS + METRICS if c in frame.columns]].to_dict("records")
    else:
        rows = [dict(r) for r in frame_or_rows if r.get("status") == "ok"]
    seen, unique = set(), []
    for row in rows:  # one trial once, even when a run was merged twice
        key = _text(row.get("config_hash")) or (row.get("trial_key"), row.get("run_id"))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def _systems(rows: Iterable[dict[str, Any]]) -> tuple[dict[tuple[str, str], list], list[str]]:
    """(task, label) -> the rows pooled as seeds of one system, and notes on split labels."""
    by_label: dict[tuple[str, str], dict[str | None, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_label[(row["task"], model_label(row))][_text(row.get("system_hash"))].append(row)
    groups, notes = {}, []
    for (task, label), systems in by_label.items():
        if len(systems) == 1:
            groups[(task, label)] = next(iter(systems.values()))
            continue
        names = []
        width = _unique_prefix([s for s in systems if s])
        for system, members in systems.items():
            name = f"{label}#{system[:width] if system else 'nohash'}"
            groups[(task, name)] = members
            names.append(name)
        notes.append(f"{task}: {label} comes from {len(systems)} different systems (different specs); "
                     f"reported apart as {', '.join(sorted(names))}, not pooled")
    return groups, notes


def _unique_prefix(hashes: list[str], width: int = 8) -> int:
    """The shortest prefix length (at least `width`) that still tells the hashes apart."""
    longest = max(map(len, hashes), default=width)
    while width < longest and len({h[:width] for h in hashes}) < len(hashes):
        width += 1
    return width


# --- metadata ------------------------------------------------------------------------------

def _meta(run_meta: Any) -> dict[str, Any]:
    if isinstance(run_meta, Mapping):
        meta = dict(run_meta)
    else:  # reports.meta.RunMeta
        meta = {k: getattr(run_meta, k, None) for k in (
            "run_dir", "run_id", "spec_name", "started_at", "finished_at", "hardware", "versions", "spec_text")}
    if not isinstance(meta.get("spec"), Mapping):
        try:
            spec = yaml.safe_load(meta.get("spec_text") or "") or {}
        except yaml.YAMLError:
            spec = {}
        meta["spec"] = spec if isinstance(spec, dict) else {}
    return meta


def _task_config(spec: Mapping[str, Any], rows: list[dict[str, Any]], task: str) -> dict[str, Any]:
    entry = next((t for t in spec.get("tasks") or [] if isinstance(t, Mapping) and t.get("name") == task), {})
    mine = [r for r in rows if r["task"] == task]
    headlines = [(r.get("metrics") or {}).get("headline") if isinstance(r.get("metrics"), Mapping)
                 else _text(r.get("headline")) for r in mine]
    headline = next((h for h in headlines if h), None)
    return {"task": task, "headline": headline, "task_spec": dict(entry),
            "eval": spec.get("eval"), "student_train": spec.get("student_train"),
            "artifacts": _artifacts(mine)}


def _artifacts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The shared artifacts every row of a task used (stage -> content hash)."""
    common: dict[str, str] | None = None
    for row in rows:
        arts = row.get("artifacts")
        if not isinstance(arts, Mapping):
            continue
        common = dict(arts) if common is None else {k: v for k, v in common.items() if arts.get(k) == v}
    return common or {}


def _data_version(rows: list[dict[str, Any]], task: str) -> str | None:
    """The task's version: the content hash of its data artifact (None if rows disagree)."""
    hashes = {r["artifacts"].get("data") for r in rows
              if r["task"] == task and isinstance(r.get("artifacts"), Mapping)}
    hashes.discard(None)
    return hashes.pop() if len(hashes) == 1 else None


def _test_size(meta: Mapping[str, Any], rows: list[dict[str, Any]], task: str) -> int | None:
    """Test examples of a task: from the stored references when the run dir is known, else
    the teacher row's configured test size."""
    from bench.results import load_references

    refs = load_references(meta["run_dir"], task) if meta.get("run_dir") else None
    if refs is not None:
        return len(refs)
    for row in rows:
        sizes = (row.get("config") or {}).get("sizes") if isinstance(row.get("config"), Mapping) else None
        if row["task"] == task and isinstance(sizes, Mapping) and isinstance(sizes.get("test"), int):
            return sizes["test"]
    return None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _seed(row: Mapping[str, Any]) -> int | None:
    value = _number(row.get("seed"))
    return None if value is None else int(value)
