"""Result rows → one tidy DataFrame, so every table, plot and file reads the same data.

One row per trial result, flat scalar columns only: the nested `config`, `artifacts` and
`versions` dicts stay in `results.jsonl` (the report's header takes versions from `run.json`).
Several run dirs merge into one frame; a trial key repeated within a run keeps one row (an
`ok` row wins, as in `bench.results.read_rows`), while different run ids stay separate rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import read_rows
from reports.meta import run_meta

TEXT_COLUMNS = ["trial_key", "run_id", "status", "error", "role", "task", "method"]
FLOAT_COLUMNS = [
    "ratio", "bleu", "chrf", "realized_ratio", "latency_ms",
    "train_seconds", "eval_seconds", "wall_seconds",
]
INT_COLUMNS = ["seed", "params"]
COLUMNS = [
    "trial_key", "run_id", "status", "error", "role", "task", "method", "ratio", "seed",
    "bleu", "chrf", "params", "realized_ratio", "latency_ms",
    "train_seconds", "eval_seconds", "wall_seconds", "finished_at",
]
TEACHER = "teacher"


def rows_frame(rows: Iterable[dict[str, Any]], run_id: str | None = None) -> pd.DataFrame:
    """Tidy frame of `rows`; `run_id` fills rows that lack one (e.g. the run dir's name)."""
    records = [{col: row.get(col) for col in COLUMNS} for row in rows]
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    if run_id is not None:
        frame["run_id"] = frame["run_id"].where(frame["run_id"].notna(), run_id)
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    for col in TEXT_COLUMNS + ["finished_at"]:
        frame[col] = frame[col].astype("object").where(frame[col].notna(), None)
    return _dedupe(frame)


def load_frame(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """Tidy frame of every row in `run_dirs` (a row without a run id gets its run's id)."""
    frames = [rows_frame(read_rows(d), run_id=run_meta(d).run_id) for d in run_dirs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return rows_frame([])
    return _dedupe(pd.concat(frames, ignore_index=True))


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The successful trials."""
    return frame[frame["status"] == "ok"]


def method_label(frame: pd.DataFrame) -> pd.Series:
    """What a row is called in tables and legends: "teacher" for the teacher, else its method."""
    is_teacher = frame["role"] == TEACHER
    return frame["method"].where(~is_teacher, TEACHER).fillna("?").astype("object")


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
