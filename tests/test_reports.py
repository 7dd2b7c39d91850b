"""The reports package on synthetic runs: the numbers, the files, escaping, merging, failures."""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.results import append_row
from reports import build_report
from reports.frame import load_frame, rows_frame
from reports.tables import failed_table, flat_table, metric_pivot, results_table

METHODS = ["sft", "word_kd", "seq_kd"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XSS_ERROR = 'CUDA OOM <script>alert("x")</script> & more'

# BLEU per (task, method, ratio) for seeds 0 and 1; the means are worked out by hand below.
BLEU = {
    ("e2e", "sft", 2.0): (30.0, 32.0),
    ("e2e", "sft", 4.0): (25.0, 26.0),
    ("e2e", "word_kd", 2.0): (33.0, 34.0),
    ("e2e", "word_kd", 4.0): (28.0, 29.0),
    ("e2e", "seq_kd", 2.0): (35.0, 36.0),
    ("e2e", "seq_kd", 4.0): (31.0, 33.0),
    ("qa", "sft", 2.0): (20.0, 22.0),
    ("qa", "sft", 4.0): (15.0, 16.0),
    ("qa", "word_kd", 2.0): (21.0, 23.0),
    ("qa", "word_kd", 4.0): (17.0, 18.0),
    ("qa", "seq_kd", 2.0): (24.0, 25.0),
    ("qa", "seq_kd", 4.0): (19.0, None),  # seed 1 fails
}
TEACHER_BLEU = {("e2e", 0): 40.0, ("qa", 0): 50.0, ("qa", 1): 52.0}


def _row(run_id, task, role, method, ratio, seed, bleu, error=None, shift=0.0):
    ok = error is None
    return {
        "trial_key": f"{task}/{role}/{method}/{ratio:g}/{seed}",
        "status": "ok" if ok else "error",
        "error": error,
        "role": role,
        "task": task,
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "bleu": bleu + shift if ok else None,
        "chrf": bleu + 20.0 + shift if ok else None,
        "params": int(8_000_000 / ratio) if ok else None,
        "realized_ratio": ratio * 1.02 if ok else None,
        "latency_ms": 3.5 if ok else None,
        "train_seconds": 10.0,
        "eval_seconds": 2.0,
        "wall_seconds": 12.5,
        "config": {"lr": 1e-3, "task": task},
        "artifacts": {"data": "abc123"},
        "versions": {"torch": "2.4.0"},
        "run_id": run_id,
        "finished_at": "2025-01-01T10:00:00+00:00",
    }


def write_run(run_dir: Path, run_id: str, shift: float = 0.0, meta: bool = True) -> Path:
    for (task, seed), bleu in TEACHER_BLEU.items():
        append_row(run_dir, _row(run_id, task, "teacher", "teacher", 1.0, seed, bleu, shift=shift))
    for (task, method, ratio), values in BLEU.items():
        for seed, bleu in enumerate(values):
            error = XSS_ERROR if bleu is None else None
            append_row(run_dir, _row(run_id, task, "student", method, ratio, seed, bleu or 0.0,
                                     error=error, shift=shift))
    if meta:
        (run_dir / "run.json").write_text(json.dumps({
            "run_id": run_id, "spec_name": "smoke-spec",
            "started_at": "2025-01-01T09:00:00+00:00", "finished_at": "2025-01-01T10:01:05+00:00",
            "hardware": {"gpu": "H100", "cpus": 16}, "versions": {"torch": "2.4.0"},
        }))
        (run_dir / "spec.yaml").write_text("name: smoke-spec\n")
    return run_dir


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run_a"), "run-a")


@pytest.fixture(scope="module")
def report_a(run_a) -> Path:
    return build_report([run_a])


def test_frame_has_one_row_per_trial(run_a):
    frame = load_frame([run_a])
    assert len(frame) == 3 + 24  # 3 teacher rows, 3 methods x 2 ratios x 2 seeds
    assert (frame["status"] == "ok").sum() == 26
    assert set(frame["task"]) == {"e2e", "qa"}
    assert set(frame.loc[frame["role"] == "student", "method"]) == set(METHODS)
    assert frame["trial_key"].is_unique
    assert {"config", "artifacts", "versions"}.isdisjoint(frame.columns)
    failed = frame[frame["status"] == "error"].iloc[0]
    assert failed["error"] == XSS_ERROR and math.isnan(failed["bleu"])
    assert (failed["task"], failed["method"], failed["ratio"], failed["seed"]) == (
        "qa", "seq_kd", 4.0, 1)


def test_frame_dedupes_within_a_run_only():
    ok = _row("r1", "e2e", "student", "sft", 2.0, 0, 30.0)
    err = _row("r1", "e2e", "student", "sft", 2.0, 0, 0.0, error="boom")
    other_run = dict(ok, run_id="r2", bleu=31.0)
    frame = rows_frame([err, ok, err, other_run])
    assert len(frame) == 2
    assert sorted(frame["run_id"]) == ["r1", "r2"]
    assert set(frame["status"]) == {"ok"}  # an ok row wins over errors of the same trial


def test_pivot_means_and_teacher(run_a):
    frame = load_frame([run_a])
    e2e = metric_pivot(frame, "e2e")
    assert list(e2e.index) == ["teacher", "seq_kd", "sft", "word_kd"]
    assert list(e2e.columns) == [1.0, 2.0, 4.0]
    assert e2e.at["teacher", 1.0] == 40.0
    assert e2e.at["sft", 2.0] == 31.0 and e2e.at["sft", 4.0] == 25.5
    assert e2e.at["word_kd", 2.0] == 33.5 and e2e.at["word_kd", 4.0] == 28.5
    assert e2e.at["seq_kd", 2.0] == 35.5 and e2e.at["seq_kd", 4.0] == 32.0
    qa = metric_pivot(frame, "qa")
    assert qa.at["teacher", 1.0] == 51.0
    assert qa.at["sft", 2.0] == 21.0 and qa.at["word_kd", 4.0] == 17.5
    assert qa.at["seq_kd", 4.0] == 19.0  # the failed seed is not averaged in
    assert metric_pivot(frame, "qa", stat="n").at["seq_kd", 4.0] == 1
    assert metric_pivot(frame, "e2e", stat="std").at["sft", 2.0] == pytest.approx(math.sqrt(2))
    assert metric_pivot(frame, "e2e", "chrf").at["sft", 2.0] == 51.0


def test_display_tables(run_a):
    frame = load_frame([run_a])
    table = results_table(frame, "e2e")
    assert list(table.columns) == ["×1", "×2", "×4"]
    assert table.at["sft", "×2"] == "31.00 ± 1.41"
    assert table.at["teacher", "×1"] == "40.00" and table.at["teacher", "×2"] == "—"
    assert results_table(frame, "qa").at["seq_kd", "×4"] == "19.00"  # one seed: no ±
    flat = flat_table(frame)
    assert len(flat) == 26
    assert list(flat.columns) == ["task", "method", "ratio", "realized ratio", "seed", "BLEU",
                                  "chrF", "params", "latency ms"]
    assert flat.iloc[0].tolist() == ["e2e", "teacher", "1", "1.02", "0", "40.00", "60.00",
                                     "8,000,000", "3.5"]
    failed = failed_table(frame)
    assert failed.to_dict("records") == [
        {"task": "qa", "method": "seq_kd", "ratio": "4", "seed": "1", "error": XSS_ERROR}]


def test_html_report(report_a, run_a):
    assert report_a == run_a / "report" / "report.html"
    page = report_a.read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match, "the figure must be embedded"
    assert base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    for method in METHODS + ["teacher", "e2e", "qa"]:
        assert method in page
    assert "<script>" not in page
    cells = re.findall(r"<td>(CUDA OOM [^<]*)</td>", page)
    assert cells and html.unescape(cells[0]) == XSS_ERROR  # escaped text, not markup
    for text in ("run-a", "smoke-spec", "H100", "torch 2.4.0", "1h 01m 05s", "How to read"):
        assert text in page
    assert "31.00 ± 1.41" in page


def test_markdown_and_csv(report_a, run_a):
    out = report_a.parent
    md = (out / "report.md").read_text(encoding="utf-8")
    for method in METHODS + ["teacher"]:
        assert re.search(rf"^\| {method}\s+\|", md, re.M), method
    assert "![test BLEU vs. compression ratio](quality_vs_ratio.png)" in md
    assert (out / "quality_vs_ratio.png").read_bytes().startswith(PNG_MAGIC)
    assert "<script>" not in md and "&lt;script&gt;" in md
    csv = pd.read_csv(out / "results.csv")
    frame = load_frame([run_a])
    assert list(csv.columns) == list(frame.columns)
    assert len(csv) == len(frame)
    assert csv["trial_key"].tolist() == frame["trial_key"].tolist()
    pd.testing.assert_series_equal(csv["bleu"], frame["bleu"])
    assert csv.loc[csv["status"] == "error", "error"].tolist() == [XSS_ERROR]


def test_merging_two_runs(tmp_path, run_a):
    run_b = write_run(tmp_path / "run_b", "run-b", shift=2.0, meta=False)
    frame = load_frame([run_a, run_b])
    assert len(frame) == 2 * 27
    assert frame.groupby("run_id").size().to_dict() == {"run-a": 27, "run-b": 27}
    pivot = metric_pivot(frame, "e2e")
    assert pivot.at["sft", 2.0] == 32.0  # (30 + 32 + 32 + 34) / 4
    assert pivot.at["teacher", 1.0] == 41.0
    path = build_report([run_a, run_b], tmp_path / "merged")
    assert path == tmp_path / "merged" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "run-a" in page and "run-b" in page
    assert "32.00 ± 1.63" in page  # std of 30, 32, 32, 34
    assert len(pd.read_csv(tmp_path / "merged" / "results.csv")) == 54


def test_all_failed_and_empty_runs(tmp_path):
    failed_dir = tmp_path / "failed"
    append_row(failed_dir, _row("r", "e2e", "teacher", "teacher", 1.0, 0, 0.0, error="no <GPU>"))
    append_row(failed_dir, _row("r", "e2e", "student", "sft", 2.0, 0, 0.0, error="skipped"))
    page = build_report([failed_dir]).read_text(encoding="utf-8")
    assert "No successful results" in page
    assert "data:image/png" not in page
    assert "no &lt;GPU&gt;" in page and "skipped" in page
    assert not (failed_dir / "report" / "quality_vs_ratio.png").exists()
    assert "No successful results" in (failed_dir / "report" / "report.md").read_text()

    empty = tmp_path / "empty"
    empty.mkdir()
    page = build_report([empty], tmp_path / "empty_report").read_text(encoding="utf-8")
    assert "No successful results" in page
    assert pd.read_csv(tmp_path / "empty_report" / "results.csv").empty


def test_null_metrics(tmp_path):
    run = tmp_path / "nulls"
    append_row(run, _row("r", "e2e", "teacher", "teacher", 1.0, 0, 40.0))
    append_row(run, dict(_row("r", "e2e", "student", "sft", 2.0, 0, 0.0), bleu=None, chrf=None))
    append_row(run, _row("r", "e2e", "student", "sft", 4.0, 0, 20.0))
    path = build_report([run])
    frame = load_frame([run])
    pivot = metric_pivot(frame, "e2e")
    assert pivot.at["sft", 4.0] == 20.0 and 2.0 not in pivot.columns
    flat = flat_table(frame)
    assert flat.loc[flat["ratio"] == "2", "BLEU"].tolist() == ["—"]
    assert "data:image/png;base64," in path.read_text(encoding="utf-8")
