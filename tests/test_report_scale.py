"""benchmarks/report_scale.py in its tiny mode: it builds a synthetic run with everything a
real one stores and reports cold and warm build times (the timings are not asserted: speed is
measured by running the benchmark, not by tests)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "report_scale.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("report_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_benchmark_runs_and_its_report_is_complete(tmp_path, capsys):
    run = tmp_path / "run"
    timings = _benchmark().main(["--tiny", "--keep", str(run)])
    out = capsys.readouterr().out
    assert "build_report cold" in out and "× the 10s target" in out
    assert timings["rows"] == 64 and timings["cold"] > 0 and timings["warm"] > 0
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    # the synthetic rows are consistent: every stored score is recomputed from its outputs
    assert "recomputed from its stored outputs" not in page
    for title in ("Findings: S1", "Quality at equal training compute",
                  "summ: paired bootstrap against ft and seq_kd", "Learning curves"):
        assert title in page, title
    assert len(pd.read_csv(run / "report" / "results.csv")) == 64


def test_the_plan_has_about_the_requested_rows():
    bench = _benchmark()
    tasks, methods, ratios, seeds = bench.plan(10_000)
    assert len(tasks) * len(methods) * len(ratios) * len(seeds) == 10_000
