"""Comparisons of every student against the baselines `ft` and `seq_kd`, in the headline
metric of its task, by the two-level paired bootstrap over seeds and test examples.

A *cell* is one system (label) at one compression ratio of one task: its seeds' per-example
statistics on one test set (`ScoreStore`), scored on the task's shared example resamples.
Cells are built once per report and shared with the Findings (`reports.findings`). A
comparison is made between two cells on the same test set; whatever prevents one (no stored
outputs, a metric without per-example statistics, seeds or runs with different test sets, a
stored score that its outputs do not give back) is reported as a note, never dropped silently.

What a result may claim depends on its seeds: a marker († ft, ‡ seq_kd) needs p < 0.05 with
two seeds or more on both sides; with one seed on a side the example-level result is still
shown, next to the words "1 seed: training variance not covered", and is never a finding.
For a task whose teacher is no better than copying the input (`reports.teacher_check`), no
marker is shown at all: the comparisons are listed with the reason instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.bootstrap import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    PairedResult,
    SystemScores,
    compare,
    resample_counts,
    score_seeds,
)
from reports.frame import SPEC_MARK, is_student, ok_rows
from reports.headline import metric_name, task_names
from bench.example_stats import TestSet, supported
from reports.outputs import OutputsError
from reports.score_store import ScoreStore

BASELINES = ("ft", "seq_kd")
MARKERS = {"ft": "†", "seq_kd": "‡"}
NOT_COVERED = "1 seed: training variance not covered"
# A stored score and its recomputation from the stored outputs may differ by float noise only.
RECOMPUTE_TOLERANCE = 0.01
# The frame columns a cell needs of a row (to_dict of only these is much faster on big runs).
ROW_FIELDS = ["task", "label", "method", "student_init", "ratio", "seed", "run_dir",
              "outputs_file", "trial_key", "finished_at", "config_hash", "sacrebleu_tokenize"]
COLUMNS = [
    "task", "ratio", "label", "baseline", "baseline_method", "metric", "score",
    "baseline_score", "delta", "delta_low", "delta_high", "p_value", "significant", "seeds",
    "baseline_seeds", "n_examples", "resamples", "bootstrap_seed", "training_variance",
    "marked",
]


@dataclass
class Cell:
    """One system at one ratio of one task, on one test set."""

    task: str
    label: str
    method: str
    init: str | None
    ratio: float
    test_key: tuple[str, str | None]  # (references digest, sacreBLEU tokenizer)
    scores: SystemScores

    @property
    def spec(self) -> str | None:
        """The spec tag of a label told apart by spec (see `reports.frame`), else None."""
        return self.label.split(SPEC_MARK, 1)[1] if SPEC_MARK in self.label else None


@dataclass
class Cells:
    """Every cell of the report, per task, with the task's metric and what could not be used."""

    metrics: dict[str, str]
    by_task: dict[str, list[Cell]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_samples: int = BOOTSTRAP_SAMPLES
    seed: int = BOOTSTRAP_SEED

    def compare(self, a: Cell, b: Cell) -> PairedResult | None:
        """a − b, or None when the two were tested on different test sets."""
        if a.test_key != b.test_key:
            return None
        return compare(a.scores, b.scores, self.seed)


def build_cells(frame: pd.DataFrame, metrics: dict[str, str], store: ScoreStore | None = None,
                n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> Cells:
    """Score the stored outputs of every successful student row in its task's headline."""
    store = store or ScoreStore()
    cells = Cells(metrics, n_samples=n_samples, seed=seed)
    rows = ok_rows(frame)
    rows = rows[is_student(rows)]
    for task in task_names(rows):
        metric = metrics.get(task, "bleu")
        if not supported(metric):
            cells.notes.append(f"{task}: no paired bootstrap for {metric_name(metric)} (it "
                               f"needs per-example statistics: BLEU, chrF, TER or ROUGE)")
            continue
        task_cells, notes = _task_cells(rows[rows["task"] == task], task, metric, store,
                                        n_samples, seed)
        cells.by_task[task] = task_cells
        cells.notes += notes
    return cells


@dataclass
class _Seed:
    """One row of a cell: its test set and either its cached scores or its statistics."""

    row: dict
    test_set: TestSet
    test_key: tuple[str, str | None]
    tokenize: str | None
    stats: np.ndarray | None  # (examples × k), only when `scores` had to be computed
    scores: np.ndarray | None  # full-test-set score, then one per resample


def _task_cells(rows: pd.DataFrame, task: str, metric: str, store: ScoreStore,
                n_samples: int, seed: int) -> tuple[list[Cell], list[str]]:
    notes: list[str] = []
    missing = 0
    protocol = f"{n_samples}x{seed}"
    seeds: dict[tuple[str, float], list[_Seed]] = {}
    for row in rows[ROW_FIELDS].assign(stored=rows[metric]).to_dict("records"):
        test_set = store.test_set(row["run_dir"], task) if row["run_dir"] else None
        if test_set is None or not row["outputs_file"]:
            missing += 1
            continue
        tokenize = row.get("sacrebleu_tokenize") if metric == "bleu" else None
        scores = store.scores(row, test_set, metric, tokenize, protocol)
        stats = None
        if scores is None or scores.shape != (n_samples + 1,):
            scores = None
            try:
                stats = store.stats(row, test_set, metric, tokenize)
            except (OutputsError, ValueError) as exc:
                notes.append(f"{_where(row)}: {exc}")
                continue
        seeds.setdefault((row["label"], float(row["ratio"])), []).append(
            _Seed(row, test_set, (test_set.digest, tokenize), tokenize, stats, scores))
    if missing:
        notes.append(f"{task}: {missing} successful trial(s) without stored outputs or "
                     f"references; left out of the significance tests")
    groups = []
    for (label, ratio), members in sorted(seeds.items()):
        if len({m.test_key for m in members}) > 1:
            notes.append(f"{task} {label} ×{ratio:g}: seeds were tested on different test "
                         f"sets (runs with different references or tokenizers); not compared")
        else:
            groups.append((label, ratio, members))
    _fill_scores([m for _, _, members in groups for m in members], metric, store, protocol,
                 n_samples, seed)
    cells = []
    for label, ratio, members in groups:
        scores = np.stack([m.scores for m in members])
        first = members[0]
        cells.append(Cell(task, label, first.row["method"], first.row["student_init"], ratio,
                          first.test_key, SystemScores(scores[:, 0], scores[:, 1:],
                                                       len(first.test_set))))
        for m in members:
            recomputed, stored = m.scores[0], m.row["stored"]
            if not abs(recomputed - stored) <= RECOMPUTE_TOLERANCE:  # also catches NaN
                notes.append(f"{_where(m.row)}: stored {metric_name(metric)} {stored:.2f}, "
                             f"recomputed from its stored outputs {recomputed:.2f}")
    return cells, notes


def _fill_scores(members: list[_Seed], metric: str, store: ScoreStore, protocol: str,
                 n_samples: int, seed: int) -> None:
    """Score the seeds without cached scores: per test set, all in one batch."""
    by_test: dict[tuple, list[_Seed]] = {}
    for m in members:
        if m.scores is None:
            by_test.setdefault(m.test_key, []).append(m)
    for todo in by_test.values():
        counts = resample_counts(len(todo[0].test_set), n_samples, seed)
        observed, resampled = score_seeds(metric, [m.stats for m in todo], counts)
        for m, full, resamples in zip(todo, observed, resampled):
            m.scores = np.concatenate([[full], resamples])
            store.put_scores(m.row, m.test_set, metric, m.tokenize, protocol, m.scores)


def _where(row: dict) -> str:
    return f"{row['task']} {row['label']} ×{row['ratio']:g} seed {row['seed']}"


@dataclass
class Significance:
    """All comparisons against the baselines (one row each, `COLUMNS`), why any were not
    made, and the tasks whose markers are withheld (task → reason)."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    withheld: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {
            (r["task"], r["label"], r["ratio"], r["baseline_method"]): r
            for r in self.table.to_dict("records")}

    def result(self, task: str, label: str, ratio: float, baseline: str) -> dict | None:
        """The comparison row of (task, label, ratio) against the baseline method, if made."""
        return self._index.get((task, label, float(ratio), baseline))

    def markers(self, task: str, label: str, ratio: float) -> str:
        """" †‡" for marked differences; "(† 1 seed: training variance not covered)" for
        example-level ones with a single seed on a side; "" otherwise or when withheld."""
        if task in self.withheld:
            return ""
        marked, uncovered = "", ""
        for baseline, mark in MARKERS.items():
            r = self.result(task, label, ratio, baseline)
            if r is None or not r["significant"]:
                continue
            if r["marked"]:
                marked += mark
            elif not r["training_variance"]:
                uncovered += mark
        text = f" {marked}" if marked else ""
        return text + (f" ({uncovered} {NOT_COVERED})" if uncovered else "")


def significance(
    frame: pd.DataFrame, metrics: dict[str, str], store: ScoreStore | None = None,
    withheld: dict[str, str] | None = None, cells: Cells | None = None,
    n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
) -> Significance:
    """Every student cell against `BASELINES` at its ratio and student init (and spec, when
    specs were told apart)."""
    cells = cells or build_cells(frame, metrics, store, n_samples, seed)
    withheld = dict(withheld or {})
    records: list[dict[str, Any]] = []
    notes = list(cells.notes)
    for task, task_cells in cells.by_task.items():
        by_system: dict[tuple, list[Cell]] = {}  # the candidates of each comparison, found at once
        for cell in task_cells:
            by_system.setdefault((cell.method, cell.init, cell.ratio, cell.test_key), []).append(cell)
        for cell in task_cells:
            for baseline in BASELINES:
                if cell.method == baseline:
                    continue
                base = _baseline_cell(by_system.get((baseline, cell.init, cell.ratio, cell.test_key), []),
                                      cell, baseline, notes)
                if base is None:
                    continue
                result = cells.compare(cell, base)
                if result is not None:
                    records.append(_record(cell, base, baseline, result, cells, task in withheld))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    return Significance(table, notes, withheld)


def _baseline_cell(candidates: list[Cell], cell: Cell, baseline: str, notes: list[str]
                   ) -> Cell | None:
    """The cell of `baseline` to compare `cell` with, among the baseline's cells at the same
    ratio, init and test set (several when specs were told apart: the one of the same spec)."""
    if len(candidates) > 1:
        candidates = [c for c in candidates if c.spec == cell.spec]
        if len(candidates) != 1:
            notes.append(f"{cell.task} {cell.label} ×{cell.ratio:g}: {baseline} ran with "
                         f"several specs and none matches this one; not compared with it")
            return None
    return candidates[0] if candidates else None


def _record(cell: Cell, base: Cell, baseline: str, result: PairedResult, cells: Cells,
            withheld: bool) -> dict[str, Any]:
    return {
        "task": cell.task, "ratio": cell.ratio, "label": cell.label, "baseline": base.label,
        "baseline_method": baseline, "metric": cells.metrics[cell.task],
        "score": cell.scores.mean, "baseline_score": base.scores.mean,
        "delta": result.delta, "delta_low": result.low, "delta_high": result.high,
        "p_value": result.p_value, "significant": result.significant,
        "seeds": result.seeds_a, "baseline_seeds": result.seeds_b,
        "n_examples": result.n_examples, "resamples": result.n_samples,
        "bootstrap_seed": cells.seed, "training_variance": result.covers_training_variance,
        "marked": result.significant and result.covers_training_variance and not withheld,
    }
