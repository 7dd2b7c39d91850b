"""The benchmark scripts run (their --tiny sizes) and print ratios against a baseline of the same run.

Speed itself is never asserted here (the figures live in the README, measured by the scripts);
these tests keep the scripts from rotting."""
import math

import pytest

from benchmarks import length_grouping, perf


def test_perf_tiny_runs_the_in_process_benchmarks(capsys):
    results = perf.main(["--tiny", "--only", "abcefg"])
    assert set(results) == set("abcefg")
    assert all(math.isfinite(v) and v > 0 for v in results.values()), results
    out = capsys.readouterr().out
    for key in "abcefg":
        assert f"({key})" in out
    assert "summary (target in brackets)" in out and out.count("the target") == 5 and "(no target)" in out


@pytest.mark.slow
def test_perf_tiny_grid_overhead_runs_through_ray(local_ray, capsys):
    """(d) on the session's local Ray (perf leaves a caller's Ray running), not one of its own."""
    results = perf.main(["--tiny", "--only", "d"])
    assert math.isfinite(results["d"]) and results["d"] > 0
    out = capsys.readouterr().out
    assert "fixed cost per trial" in out and "Ray Tune + Train around an empty function" in out


def test_length_grouping_tiny_pads_less_than_plain_shuffle(capsys):
    length_grouping.main(["--tiny"])
    out = capsys.readouterr().out
    pads = [float(line.split("padding")[1].split("%")[0]) for line in out.splitlines() if "padding" in line]
    assert len(pads) == 2 and pads[1] < pads[0], out
    assert "speed-up of length grouping" in out
