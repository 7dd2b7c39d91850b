"""Result rows → one tidy DataFrame, so every table, plot and file reads the same data.

One row per trial result, flat scalar columns only: the nested `config`, `artifacts` and
`versions` dicts stay in `results.jsonl` (the report's header takes versions from `run.json`).
Metrics are read from the row's top level first, then from its `metrics` dict (and training
costs from `metrics["train"]`); any of them may be missing and is then NaN, never an error.
Several run dirs merge into one frame (`merge_frames`). One trial is counted once: a trial
key repeated within a run keeps one row (an `ok` row wins, as in `bench.results.read_rows`),
and rows with the same `config_hash` (the same trial, e.g. a run dir merged twice or copied)
keep one row across runs. Rows of older runs have no `config_hash`; they stay apart per run.

`label` is a row's name in tables and legends: "teacher", "copy_input (baseline)" for the
copy-input baseline, else the method, suffixed with the student initialisation ("ft
[shrink-alternating]") when the merged rows hold more than one `student_init`, since students
that start differently are different systems. Seeds are pooled per label, so rows of one
(task, method, init, ratio) with different `system_hash`es (different specs) get a suffix
"· spec <spec name, run id or 6-char hash>" that tells them apart, and a note says so.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import read_rows
from reports.meta import run_meta

TEACHER = "teacher"
BASELINE = "baseline"  # role of the copy-input baseline row (method "copy_input")
REFERENCE_ROLES = (TEACHER, BASELINE)  # rows that are not distilled students
SPEC_MARK = " · spec "
TEXT_COLUMNS = [
    "trial_key", "run_id", "run_dir", "status", "error", "role", "task", "method",
    "student_init", "label", "headline", "outputs_file", "finished_at", "pt_strategy",
    "config_hash", "system_hash", "sacrebleu_tokenize",
]
# Quality metrics, in the order tables list them.
QUALITY_METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "dev_loss"]
# Efficiency metrics (from the row's `metrics`; latency_ms is greedy, batch 1, per example).
EFFICIENCY_METRICS = [
    "latency_ms", "latency_beam_ms", "throughput_eps", "peak_mem_mb", "disk_mb",
    "flops_per_token",
]
# Training compute in FLOPs, from `metrics["compute"]` (rows of older runs have none).
COMPUTE_COLUMNS = {
    "total": "flops_total", "student_forward": "flops_student_forward",
    "student_backward": "flops_student_backward", "teacher_forward": "flops_teacher_forward",
    "student_generation": "flops_student_generation",
    "teacher_generation": "flops_teacher_generation",
}
FLOAT_COLUMNS = [
    "ratio", "realized_ratio", *QUALITY_METRICS, *EFFICIENCY_METRICS,
    "train_seconds", "eval_seconds", "wall_seconds", *COMPUTE_COLUMNS.values(),
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
    "train_seconds", "eval_seconds", "wall_seconds", *COMPUTE_COLUMNS.values(), "finished_at",
    "outputs_file", "run_dir", "pt_strategy", "pt_k", "config_hash", "system_hash",
    "sacrebleu_tokenize",
]
# Columns that may also come from the row's `metrics` dict (never identity fields).
FROM_METRICS = frozenset({
    *QUALITY_METRICS, *EFFICIENCY_METRICS, "headline", "params", "params_non_embedding",
    "realized_ratio", "eval_seconds", "train_seconds", "pt_strategy", "pt_k",
    "sacrebleu_tokenize",
})
# Where a column's value may also be found inside `metrics` under another name.
METRIC_ALIASES = {"latency_ms": "latency_greedy_ms", "params": "params_total"}


def rows_frame(
    rows: Iterable[dict[str, Any]], run_id: str | None = None, run_dir: Path | str | None = None
) -> pd.DataFrame:
    """Tidy frame of `rows`; `run_id` fills rows that lack one (e.g. the run dir's name) and
    `run_dir` is recorded so per-example outputs can be found again."""
    return merge_frames([_run_frame(rows, run_id, run_dir)])[0]


def load_frame(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """Tidy frame of every row in `run_dirs` (a row without a run id gets its run's id)."""
    return load_runs({d: read_rows(d) for d in run_dirs})[0]


def load_runs(rows_by_dir: dict[Path | str, list[dict[str, Any]]]
              ) -> tuple[pd.DataFrame, list[str]]:
    """Tidy frame of already-read rows per run dir, and notes on what merging them did."""
    metas = {d: run_meta(d) for d in rows_by_dir}
    frames = [_run_frame(rows, metas[d].run_id, d) for d, rows in rows_by_dir.items()]
    spec_names = {m.run_id: m.spec_name for m in metas.values()}
    return merge_frames(frames, spec_names)


def merge_frames(frames: list[pd.DataFrame], spec_names: dict[str, str | None] | None = None
                 ) -> tuple[pd.DataFrame, list[str]]:
    """One frame of several runs' frames: deduplicated and labelled (see the module
    docstring), with notes naming what was merged or told apart."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _run_frame([], None, None), []
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame, notes = _dedupe_trials(frame)
    frame = frame.assign(label=_labels(frame))
    frame, spec_notes = _split_specs(frame, spec_names or {})
    return frame, notes + spec_notes


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The successful trials."""
    return frame[frame["status"] == "ok"]


def is_student(frame: pd.DataFrame) -> pd.Series:
    """Rows of distilled students (not the teacher, not the copy-input baseline)."""
    return ~frame["role"].isin(REFERENCE_ROLES)


def reference_labels(frame: pd.DataFrame) -> set[str]:
    """Labels of the rows that are not students (teacher, copy-input baseline)."""
    return set(frame.loc[~is_student(frame), "label"].dropna())


def method_label(frame: pd.DataFrame) -> pd.Series:
    """What a row is called in tables and legends (see the module docstring)."""
    if "label" in frame and frame["label"].notna().all():
        return frame["label"].astype("object")
    return _labels(frame)


def _run_frame(rows: Iterable[dict[str, Any]], run_id: str | None,
               run_dir: Path | str | None) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([_record(row) for row in rows], columns=COLUMNS)
    if run_id is not None:
        frame["run_id"] = frame["run_id"].where(frame["run_id"].notna(), run_id)
    if run_dir is not None:
        frame["run_dir"] = str(run_dir)
    return _dedupe(_typed(frame))


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
    compute = metrics.get("compute") if isinstance(metrics.get("compute"), dict) else {}
    for key, col in COMPUTE_COLUMNS.items():
        record[col] = compute.get(key)
    if record["student_init"] is None:
        record["student_init"] = config.get("student_init")
    if record["role"] == BASELINE and record["ratio"] is None:
        record["ratio"] = 1.0  # no model, no compression: shown with the teacher at ×1
    record["label"] = None  # assigned over the whole merged frame, see `merge_frames`
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
    is_baseline = frame["role"] == BASELINE
    labels = frame["method"].where(~is_teacher, TEACHER).fillna("?").astype("object")
    labels = labels.where(~is_baseline, labels + f" ({BASELINE})")
    student = ~(is_teacher | is_baseline)
    inits = frame.loc[student, "student_init"].dropna().unique()
    if len(inits) > 1:
        with_init = student & frame["student_init"].notna()
        labels = labels.where(
            ~with_init, labels + " [" + frame["student_init"].astype("object") + "]")
    return labels


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


def _dedupe_trials(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per trial across run dirs — per `config_hash` where rows have one, else per
    (run id, trial key) — an `ok` row winning, then the first run dir's."""
    key = frame["config_hash"].where(
        frame["config_hash"].notna(),
        "run:" + frame["run_id"].fillna("?") + "|" + frame["trial_key"].fillna("?"))
    dup = key.duplicated(keep=False)
    if not dup.any():
        return frame, []
    ranked = frame.assign(_key=key, _bad=(frame["status"] != "ok").astype(int),
                          _pos=range(len(frame)))
    ranked = ranked.sort_values(["_bad", "_pos"], kind="stable")
    drop = ranked.index[ranked["_key"].duplicated(keep="first")]
    dirs = sorted({Path(str(d)).name for d in frame.loc[dup, "run_dir"].dropna()})
    note = (f"{len(drop)} row(s) repeat a trial already read from another run dir (same "
            f"config_hash, or same run id and trial key; run dirs {', '.join(dirs)}): each "
            f"trial is counted once, not as another seed.")
    return frame.drop(index=drop).reset_index(drop=True), [note]


def _split_specs(frame: pd.DataFrame, spec_names: dict[str, str | None]
                 ) -> tuple[pd.DataFrame, list[str]]:
    """Suffix the labels of rows whose (task, label, ratio) holds several system hashes."""
    rows = frame[frame["system_hash"].notna()]
    if rows.empty:
        return frame, []
    counts = rows.groupby(["task", "label", "ratio"], dropna=False)["system_hash"].nunique()
    conflicts = counts[counts > 1]
    if conflicts.empty:
        return frame, []
    labels = frame["label"].copy()
    notes = []
    by_label: dict[tuple[str, str], list[str]] = {}
    for task, label, ratio in conflicts.index:
        part = rows[(rows["task"] == task) & (rows["label"] == label) & (rows["ratio"] == ratio)]
        tags = _spec_tags(part, spec_names)
        for idx, hash_ in zip(part.index, part["system_hash"]):
            labels.at[idx] = f"{label}{SPEC_MARK}{tags[hash_]}"
        runs = part.groupby("system_hash")["run_id"].unique()
        where = ", ".join(f"{h[:6]} ({'/'.join(sorted(runs[h]))})" for h in sorted(tags))
        by_label.setdefault((task, label), []).append(f"×{ratio:g}: {where}")
    for (task, label), parts in by_label.items():
        notes.append(f"{task} {label}: rows of different specs (system_hash, runs) are not "
                     f"pooled as seeds of one system but shown apart as “{label}{SPEC_MARK}…” — "
                     + "; ".join(parts))
    return frame.assign(label=labels), notes


def _spec_tags(part: pd.DataFrame, spec_names: dict[str, str | None]) -> dict[str, str]:
    """system_hash → the shortest readable name that tells the specs apart: the runs' spec
    name, else the run id, else the first 6 characters of the hash."""
    hashes = sorted(part["system_hash"].unique())
    for name_of in (lambda run: spec_names.get(run), lambda run: run):
        names = {}
        for h in hashes:
            found = {name_of(r) for r in part.loc[part["system_hash"] == h, "run_id"]}
            names[h] = found.pop() if len(found) == 1 else None
        values = list(names.values())
        if None not in values and len(set(values)) == len(values):
            return {h: str(v) for h, v in names.items()}
    return {h: h[:6] for h in hashes}
