"""Paired bootstrap comparisons of every method against the baselines `ft` and `seq_kd`.

Reads the stored per-example outputs (`outputs_file` of a row, a JSON file
`{"trial_key", "hypotheses": [...]}` relative to its run dir) and the test references
(`RUN_DIR/references/<task>.json`: one list of reference strings per test example). A
comparison is made at one compression ratio, between the seed sets of two systems on one
test set; whatever prevents it (no outputs, a metric without sufficient statistics, runs
with different test sets) is reported as a note rather than silently dropped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.frame import TEACHER, ok_rows
from reports.headline import metric_name, task_names
from reports.stats import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    SACREBLEU_METRICS,
    BootstrapScores,
    PairedResult,
    bootstrap_scores,
    compare,
    corpus_score,
    resample_counts,
    sufficient_stats,
)

BASELINES = ("ft", "seq_kd")
REFERENCES_DIR = "references"
# A stored score and its recomputation from the stored outputs may differ by float noise only.
RECOMPUTE_TOLERANCE = 0.01
COLUMNS = [
    "task", "ratio", "label", "baseline", "metric", "score", "baseline_score", "delta",
    "delta_low", "delta_high", "p_value", "significant", "seeds", "baseline_seeds", "n_examples",
    "resamples", "bootstrap_seed",
]


@dataclass
class Significance:
    """All comparisons (one row each, `COLUMNS`) and why any were not made."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def result(self, task: str, label: str, ratio: float, baseline: str) -> dict | None:
        """The comparison row of (task, label, ratio) against the baseline method, if made."""
        t = self.table
        hit = t[(t["task"] == task) & (t["label"] == label) & (t["ratio"] == ratio)
                & (t["baseline_method"] == baseline)]
        return None if hit.empty else hit.iloc[0].to_dict()


class OutputsError(ValueError):
    """Stored outputs that cannot be used for a comparison (the message says why)."""


def load_references(run_dir: Path | str, task: str) -> list[list[str]] | None:
    """The task's test references of a run, None when the run did not store them."""
    data = _read_json(Path(run_dir) / REFERENCES_DIR / f"{task}.json")
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        return None
    return [[str(x) for x in refs] for refs in data]


def load_hypotheses(run_dir: Path | str, outputs_file: str, trial_key: str) -> list[str]:
    """A row's stored test outputs; raises OutputsError naming what is wrong."""
    path = Path(run_dir) / outputs_file
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("hypotheses"), list):
        raise OutputsError(f"{path}: missing or malformed (needs a 'hypotheses' list)")
    if data.get("trial_key") not in (None, trial_key):
        raise OutputsError(f"{path}: holds outputs of {data.get('trial_key')!r}, not {trial_key!r}")
    return [str(h) for h in data["hypotheses"]]


def significance(
    frame: pd.DataFrame, metrics: dict[str, str], n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Significance:
    """Paired bootstrap of every student (task, label, ratio) against `BASELINES` there."""
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    rows = ok_rows(frame)
    rows = rows[rows["role"] != TEACHER]
    for task in task_names(rows):
        metric = metrics.get(task, "bleu")
        task_rows = rows[rows["task"] == task]
        if not set(task_rows["method"]) & set(BASELINES):
            continue
        if metric not in SACREBLEU_METRICS:
            notes.append(f"{task}: no paired bootstrap for {metric_name(metric)} (it needs "
                         f"per-example sufficient statistics: BLEU, chrF or TER)")
            continue
        cells, cell_notes = _cells(task_rows, task, metric)
        notes += cell_notes
        records += _compare_cells(cells, task, metric, n_samples, seed)
    table = pd.DataFrame.from_records(records, columns=[*COLUMNS, "baseline_method"])
    return Significance(table, notes)


@dataclass
class _Cell:
    label: str
    method: str
    init: str | None
    ratio: float
    refs_digest: str
    stats: list[np.ndarray]


def _cells(rows: pd.DataFrame, task: str, metric: str) -> tuple[list[_Cell], list[str]]:
    """Per (label, ratio): the seeds' sufficient statistics, all on one test set."""
    notes: list[str] = []
    refs_cache: dict[str, tuple[str, list[list[str]]] | None] = {}
    missing = 0
    cells = []
    for (label, ratio), group in rows.groupby(["label", "ratio"], sort=True):
        stats, digests = [], set()
        for _, row in group.iterrows():
            if row["outputs_file"] is None or row["run_dir"] is None:
                missing += 1
                continue
            run_dir = row["run_dir"]
            if run_dir not in refs_cache:
                refs = load_references(run_dir, task)
                refs_cache[run_dir] = None if refs is None else (_digest(refs), refs)
            if refs_cache[run_dir] is None:
                missing += 1
                continue
            digest, refs = refs_cache[run_dir]
            where = f"{task} {label} ×{ratio:g} seed {row['seed']}"
            try:
                hyps = load_hypotheses(run_dir, row["outputs_file"], row["trial_key"])
                seed_stats = sufficient_stats(metric, hyps, refs)
            except ValueError as exc:
                notes.append(f"{where}: {exc}")
                continue
            recomputed, stored = corpus_score(metric, seed_stats), row[metric]
            if not abs(recomputed - stored) <= RECOMPUTE_TOLERANCE:  # also catches NaN
                notes.append(f"{where}: stored {metric_name(metric)} {stored:.2f}, recomputed "
                             f"from its stored outputs {recomputed:.2f}")
            stats.append(seed_stats)
            digests.add(digest)
        if len(digests) > 1:
            notes.append(f"{task} {label} ×{ratio:g}: seeds were tested on different test "
                         f"sets (runs with different references); not compared")
        elif stats:
            first = group.iloc[0]
            cells.append(_Cell(label, first["method"], first["student_init"], float(ratio),
                               digests.pop(), stats))
    if missing:
        notes.append(f"{task}: {missing} successful trial(s) without stored outputs or "
                     f"references; left out of the significance tests")
    return cells, notes


def _compare_cells(
    cells: list[_Cell], task: str, metric: str, n_samples: int, seed: int
) -> list[dict[str, Any]]:
    counts: dict[tuple[str, int], np.ndarray] = {}
    scores: dict[int, BootstrapScores] = {}

    def scored(i: int) -> BootstrapScores:
        if i not in scores:
            cell = cells[i]
            n = cell.stats[0].shape[0]
            key = (cell.refs_digest, n)
            if key not in counts:
                counts[key] = resample_counts(n, n_samples, seed)
            scores[i] = bootstrap_scores(metric, cell.stats, counts[key])
        return scores[i]

    index = {(c.method, c.init, c.ratio): i for i, c in enumerate(cells)}
    records = []
    for i, cell in enumerate(cells):
        for baseline in BASELINES:
            j = index.get((baseline, cell.init, cell.ratio))
            if j is None or cells[j].method == cell.method:
                continue
            if cells[j].refs_digest != cell.refs_digest:
                continue
            result: PairedResult = compare(scored(i), scored(j), cell.stats[0].shape[0])
            records.append({
                "task": task, "ratio": cell.ratio, "label": cell.label,
                "baseline": cells[j].label, "baseline_method": baseline, "metric": metric,
                "score": scored(i).observed, "baseline_score": scored(j).observed,
                "delta": result.delta, "delta_low": result.low, "delta_high": result.high,
                "p_value": result.p_value, "significant": result.significant,
                "seeds": len(cell.stats), "baseline_seeds": len(cells[j].stats),
                "n_examples": result.n_examples, "resamples": result.n_samples,
                "bootstrap_seed": seed,
            })
    return records


def _digest(refs: list[list[str]]) -> str:
    return hashlib.sha256(json.dumps(refs).encode("utf-8")).hexdigest()[:16]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
