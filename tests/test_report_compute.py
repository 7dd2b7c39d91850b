"""The compute-matched view: quality against training FLOPs (`metrics.compute`)."""
from __future__ import annotations

import statistics

import pytest

from bench.results import append_row
from reports import build_report
from reports.compute import compute_display, compute_points
from reports.frame import load_frame

# (method, ratio) -> (BLEU per seed, total FLOPs per seed; teacher forward share of the total)
TRIALS = {
    ("ft", 2.0): ((20.0, 22.0), (1.0e15, 1.0e15), 0.0),
    ("seq_kd", 2.0): ((30.0, 31.0), (3.0e15, 3.2e15), 0.0),
    ("word_kd", 2.0): ((25.0, 27.0), (4.0e15, 4.0e15), 0.5),  # dearer and worse than seq_kd
    ("ft", 4.0): ((15.0, 16.0), (0.5e15, 0.5e15), 0.0),
}


def _row(method, ratio, seed, bleu, flops, teacher_share, compute=True):
    student = flops * (1 - teacher_share)
    metrics = {"bleu": bleu}
    if compute:
        metrics["compute"] = {
            "student_forward": student / 3, "student_backward": 2 * student / 3,
            "teacher_forward": flops * teacher_share, "student_generation": 0.0,
            "teacher_generation": 0.0, "total": flops}
    return {"trial_key": f"d2t|{method}|r{ratio:g}|s{seed}", "status": "ok", "role": "student",
            "task": "d2t", "method": method, "ratio": ratio, "seed": seed, "bleu": bleu,
            "metrics": metrics}


@pytest.fixture()
def run(tmp_path):
    for (method, ratio), (scores, flops, share) in TRIALS.items():
        for seed, (bleu, total) in enumerate(zip(scores, flops)):
            append_row(tmp_path, _row(method, ratio, seed, bleu, total, share))
    append_row(tmp_path, {"trial_key": "d2t|teacher", "status": "ok", "role": "teacher",
                          "task": "d2t", "method": "teacher", "ratio": 1.0, "seed": 0,
                          "bleu": 50.0, "metrics": {"compute": {"total": 2e16}}})
    return tmp_path


def test_points_are_seed_means_with_the_pareto_front(run):
    points = compute_points(load_frame([run]), {"d2t": "bleu"}).set_index(["label", "ratio"])
    assert points.at[("seq_kd", 2.0), "flops"] == pytest.approx(3.1e15)
    assert points.at[("seq_kd", 2.0), "value"] == 30.5
    assert points.at[("seq_kd", 2.0), "seeds"] == 2
    # word_kd costs more than seq_kd and reaches less: not on the front; the others are
    pareto = points["pareto"].to_dict()
    assert not pareto[("word_kd", 2.0)]
    assert pareto[("seq_kd", 2.0)] and pareto[("ft", 2.0)] and pareto[("ft", 4.0)]
    assert pareto[("teacher", 1.0)]  # the best quality, whatever it cost
    assert points.at[("word_kd", 2.0), "breakdown"] == "student 50% · teacher fwd 50%"


def test_the_table_gives_compute_relative_to_ft(run):
    table = compute_display(compute_points(load_frame([run]), {"d2t": "bleu"}), "d2t").data
    rows = {(m, r): row for m, r, row in zip(table["method"], table["ratio"],
                                             table.to_dict("records"))}
    assert rows[("seq_kd", "×2")]["vs ft"] == "×3.10"
    assert rows[("ft", "×4")]["vs ft"] == "×1.00"
    assert rows[("teacher", "×1")]["vs ft"] == "—"
    ci = 12.706204736174698 * statistics.stdev([30.0, 31.0]) / 2 ** 0.5
    assert rows[("seq_kd", "×2")]["test BLEU"] == f"30.50 ± {ci:.2f}"
    assert rows[("seq_kd", "×2")]["training FLOPs"] == "3.10e+15"
    assert rows[("word_kd", "×2")]["compute-Pareto"] == ""


def test_rows_without_compute_are_counted_and_the_section_says_so(run, tmp_path_factory):
    append_row(run, _row("ft", 8.0, 0, 10.0, 1e14, 0.0, compute=False))
    page = build_report([run]).read_text(encoding="utf-8")
    assert "Quality at equal training compute" in page
    assert "d2t: test BLEU at its training compute" in page
    assert "1 of 10 successful trial(s) record no training compute" in page
    assert (run / "report" / "quality_vs_compute.png").stat().st_size > 0
    old = tmp_path_factory.mktemp("old")
    append_row(old, _row("ft", 2.0, 0, 10.0, 1e14, 0.0, compute=False))
    page = build_report([old]).read_text(encoding="utf-8")
    assert "No successful trial records its training compute" in page
    assert not (old / "report" / "quality_vs_compute.png").exists()
