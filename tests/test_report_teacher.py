"""The teacher in the report: its quality checked against copying the input (and a floor),
the copy-input baseline row, and the teacher's own learning curve."""
from __future__ import annotations

import shutil
import json
from pathlib import Path

import pandas as pd
from test_reports import _scored_row, rich_hypotheses, rich_references

from bench.results import append_row, read_rows
from reports import build_report
from reports.curves import CURVES_CSV, curves_frame
from reports.frame import load_frame, rows_frame
from reports.significance import significance
from reports.tables import results_table
from reports.teacher_check import teacher_checks


def write_run(run_dir: Path, teacher_quality: float, copy_quality: float | None,
              seeds=(0, 1, 2)) -> Path:
    refs = rich_references("d2t")
    (run_dir / "references").mkdir(parents=True)
    (run_dir / "references" / "d2t.json").write_text(json.dumps(refs))
    teacher = _scored_row(run_dir, "r", "d2t", "teacher", "teacher", 1.0, 0,
                          rich_hypotheses(refs, teacher_quality, "teacher"), refs)
    if copy_quality is not None:
        _scored_row(run_dir, "r", "d2t", "baseline", "copy_input", 1.0, 0,
                    rich_hypotheses(refs, copy_quality, "copy"), refs)
    for method, quality in (("ft", 0.3), ("seq_kd", 0.8)):
        for seed in seeds:
            _scored_row(run_dir, "r", "d2t", "student", method, 2.0, seed,
                        rich_hypotheses(refs, quality, f"{method}-{seed}"), refs)
    return run_dir, teacher


def test_a_teacher_worse_than_copying_withholds_retention_and_markers(tmp_path):
    run, _ = write_run(tmp_path / "bad", teacher_quality=0.2, copy_quality=0.6)
    frame = load_frame([run])
    check = teacher_checks(frame, {"d2t": "bleu"})["d2t"]
    assert check.teacher < check.copy_input and "no better than copying" in check.problem
    table = results_table(frame, "d2t", significance=significance(
        frame, {"d2t": "bleu"}, withheld={"d2t": check.problem}))
    assert list(table.index) == ["teacher", "copy_input (baseline)", "ft", "seq_kd"]
    assert table.at["copy_input (baseline)", "×1"].startswith(f"{check.copy_input:.2f} ± n/a")
    assert "†" not in table.at["seq_kd", "×2"]  # p < 0.05 with 3 seeds, but withheld
    page = build_report([run]).read_text(encoding="utf-8")
    assert 'class="alert"' in page and "Warning — d2t: the teacher&#x27;s test BLEU" in page
    assert "teacher quality retained (%)" not in page
    assert "teacher quality retained — not shown" in page
    assert "No markers for this task" in page and "Not meaningful for this task" in page
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "> **⚠ Warning — d2t" in md


def test_a_useful_teacher_keeps_retention_and_markers(tmp_path):
    run, _ = write_run(tmp_path / "good", teacher_quality=0.95, copy_quality=0.3)
    frame = load_frame([run])
    assert teacher_checks(frame, {"d2t": "bleu"})["d2t"].problem is None
    table = results_table(frame, "d2t", significance=significance(frame, {"d2t": "bleu"}))
    assert table.at["seq_kd", "×2"].endswith(" †")
    page = build_report([run]).read_text(encoding="utf-8")
    assert "teacher quality retained (%)" in page and 'class="alert"' not in page
    # the baseline row is shown like the teacher, never as the best student
    assert '<td class="text">copy_input (baseline)</td>' in page


def test_a_baseline_row_without_a_ratio_sits_at_x1():
    row = {"trial_key": "d2t|baseline", "status": "ok", "role": "baseline", "task": "d2t",
           "method": "copy_input", "ratio": None, "bleu": 12.0}
    frame = rows_frame([row])
    assert frame["ratio"].tolist() == [1.0] and frame["label"].tolist() == ["copy_input (baseline)"]


def test_a_teacher_below_the_floor_is_flagged_without_a_copy_row(tmp_path):
    run, _ = write_run(tmp_path / "floor", teacher_quality=0.0, copy_quality=None)
    check = teacher_checks(load_frame([run]), {"d2t": "bleu"})["d2t"]
    assert check.teacher < 1.0 and "below the floor of 1" in check.problem


def test_one_seed_differences_are_marked_in_words(tmp_path):
    run, _ = write_run(tmp_path / "one", teacher_quality=0.95, copy_quality=0.3, seeds=(0,))
    frame = load_frame([run])
    sig = significance(frame, {"d2t": "bleu"})
    result = sig.result("d2t", "seq_kd", 2.0, "ft")
    assert result["significant"] and not result["training_variance"] and not result["marked"]
    table = results_table(frame, "d2t", significance=sig)
    assert table.at["seq_kd", "×2"].endswith(" († 1 seed: training variance not covered)")
    page = build_report([run]).read_text(encoding="utf-8")
    assert "yes (1 seed: training variance not covered)" in page


def test_the_teachers_learning_curve_is_drawn(tmp_path):
    run, teacher = write_run(tmp_path / "curve", teacher_quality=0.95, copy_quality=0.3)
    # the engine now logs the teacher's curve too: rewrite its row with one
    rows = read_rows(run)
    shutil.rmtree(run / "rows")
    for row in rows:
        if row["role"] == "teacher":
            row["metrics"]["train"]["curve"] = [
                {"step": s, "loss": 4 - s / 1000, "dev_loss": 3 - s / 1000, "dev_metric": s / 100}
                for s in (0, 1000, 2000)]
        append_row(run, row)
    frame = load_frame([run])
    curves = curves_frame({run: read_rows(run)}, frame)
    teacher = curves[curves["role"] == "teacher"]
    assert teacher["step"].tolist() == [0.0, 1000.0, 2000.0]
    assert teacher["dev_metric"].tolist() == [0.0, 10.0, 20.0]
    build_report([run])
    csv = pd.read_csv(run / "report" / CURVES_CSV)
    assert set(csv["label"]) == {"teacher", "ft", "seq_kd"}
