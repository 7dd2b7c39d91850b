"""Result rows → one tidy DataFrame, so every table, plot and file reads the same data.

One row per trial result, flat scalar columns only: the nested `config`, `artifacts` and
`versions` dicts stay in `results.jsonl` (the report's header takes versions from `run.json`).
Metrics are read from the row's top level first, then from its `metrics` dict (and training
costs from `metrics["train"]`); any of them may be missing and is then NaN, never an error.
Several run dirs merge into one frame; a trial key repeated within a run keeps one row (an
`ok` row wins, as in `bench.results.read_rows`), while different run ids stay separate rows.

`label` is a row's name in tables and legends: "teacher", else the method, suffixed with the
student initialisation ("ft [shrink-alternating]") when the merged rows hold more than one
`student_init`, since students that start differently are different systems.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import read_rows
from reports.meta import run_meta

TEACHER = "teacher"
TEXT_COLUMNS = [
    "trial_key", "run_id", "run_dir", "status", "error", "role", "task", "method",
    "student_init", "label", "headline", "outputs_file", "finished_at", "pt_strategy",
]
# Quality metrics, in the order tables list them.
QUALITY_METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "dev_loss"]
# Efficiency metrics (from the row's `metrics`; latency_ms is greedy, batch 1, per example).
EFFICIENCY_METRICS = [
    "latency_ms", "latency_beam_ms", "throughput_eps", "peak_mem_mb", "disk_mb",
    "flops_per_token",
]
FLOAT_COLUMNS = [
    "ratio", "realized_ratio", *QUALITY_METRICS, *EFFICIENCY_METRICS,
    "train_seconds", "eval_seconds", "wall_seconds",
]
# Training costs from `metrics["train"]`, renamed where the plain name would be ambiguous.
TRAIN_COLUMNS = {
    "steps": "train_steps", "target_tokens": "target_tokens",
    "teacher_forwards": "teacher_forwards", "student_generated_tokens": "student_generated_tokens",
}
INT_COLUMNS = ["seed", "params", "params_non_embedding", "pt_k", *TRAIN_COLUMNS.values()]
COLUMNS = [
    "trial_key", "run_id", "status", "error", "role", "task", "method", "student_init",
    "label", "ratio", "seed", *QUALITY_METRICS, "headline", "params", "params_non_embedding",
    "realized_ratio", *EFFICIENCY_METRICS, *TRAIN_COLUMNS.values(),
    "train_seconds", "eval_seconds", "wall_seconds", "finished_at", "outputs_file", "run_dir",
    "pt_strategy", "pt_k",
]
# Columns that may also come from the row's `metrics` dict (never identity fields).
FROM_METRICS = frozenset({
    *QUALITY_METRICS, *EFFICIENCY_METRICS, "headline", "params", "params_non_embedding",
    "realized_ratio", "eval_seconds", "train_seconds", "pt_strategy", "pt_k",
})
# Where a column's value may also be found inside `metrics` under another name.
METRIC_ALIASES = {"latency_ms": "latency_greedy_ms", "params": "params_total"}


def rows_frame(
    rows: Iterable[dict[str, Any]], run_id: str | None = None, run_dir: Path | str | None = None
) -> pd.DataFrame:
    """Tidy frame of `rows`; `run_id` fills rows that lack one (e.g. the run dir's name) and
    `run_dir` is recorded so per-example outputs can be found again."""
    records = [_record(row) for row in rows]
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    if run_id is not None:
        frame["run_id"] = frame["run_id"].where(frame["run_id"].notna(), run_id)
    if run_dir is not None:
        frame["run_dir"] = str(run_dir)
    frame = _typed(frame)
    return _labelled(_dedupe(frame))


def load_frame(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """Tidy frame of every row in `run_dirs` (a row without a run id gets its run's id)."""
    frames = [
        rows_frame(read_rows(d), run_id=run_meta(d).run_id, run_dir=d) for d in run_dirs
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return rows_frame([])
    return _labelled(_dedupe(_typed(pd.concat(frames, ignore_index=True))))


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The successful trials."""
    return frame[frame["status"] == "ok"]


def method_label(frame: pd.DataFrame) -> pd.Series:
    """What a row is called in tables and legends (see the module docstring)."""
    if "label" in frame and frame["label"].notna().all():
        return frame["label"].astype("object")
    return _labels(frame)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
    train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
    config = row.get("config") if isinstance(row.get("config"), dict) else {}
    record = {}
    for col in COLUMNS:
        value = row.get(col)
        if value is None and col in FROM_METRICS:
            value = metrics.get(col)
        if value is None and col in METRIC_ALIASES:
            value = metrics.get(METRIC_ALIASES[col])
        record[col] = value
    for key, col in TRAIN_COLUMNS.items():
        if record[col] is None:
            record[col] = train.get(key)
    if record["student_init"] is None:
        record["student_init"] = config.get("student_init")
    record["label"] = None  # assigned over the whole frame, see `_labelled`
    return record


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    for col in TEXT_COLUMNS:
        values = frame[col].astype("object")
        frame[col] = values.where(values.notna(), None).map(
            lambda v: v if v is None else str(v))
    return frame


def _labels(frame: pd.DataFrame) -> pd.Series:
    is_teacher = frame["role"] == TEACHER
    labels = frame["method"].where(~is_teacher, TEACHER).fillna("?").astype("object")
    inits = frame.loc[~is_teacher, "student_init"].dropna().unique()
    if len(inits) > 1:
        with_init = ~is_teacher & frame["student_init"].notna()
        labels = labels.where(
            ~with_init, labels + " [" + frame["student_init"].astype("object") + "]")
    return labels


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame.assign(label=_labels(frame))


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, trial_key): the last `ok` row, else the last row."""
    if frame.empty:
        return frame.reset_index(drop=True)
    order = (frame["status"] == "ok").astype(int).rename("_ok")
    keep = (
        frame.assign(_ok=order, _pos=range(len(frame)))
        .sort_values("_ok", kind="stable")
        .drop_duplicates(subset=["run_id", "trial_key"], keep="last")
        .sort_values("_pos")
    )
    return keep.drop(columns=["_ok", "_pos"]).reset_index(drop=True)
