"""A cluster run as safe as a database write, through benchmarks/faults.py's tiny mode (so the
fault benchmark cannot rot): a real two-node Ray cluster (`ray start` on this machine), run dir
and artifacts on an S3-compatible object store on loopback (no shared directory), a Train
worker killed mid-training and then the driver killed mid-grid — and the resumed run ends with
exactly one row per trial and the metrics of an undisturbed training."""
import re

import pytest

from benchmarks import faults

pytestmark = [pytest.mark.slow, pytest.mark.own_processes]  # its own two-node cluster: `ray start` subprocesses


def test_a_two_node_run_on_an_object_store_survives_a_killed_worker_and_a_killed_driver(capsys):
    totals = faults.main(["--tiny"])
    (rep,) = totals["repetitions_detail"]
    worker, driver = rep["injected"]
    assert re.fullmatch(r"killed [1-9]\d* Train worker\(s\)", worker)
    # how many rows were in when the driver died (2 of 2: both trials ended together, none was cut)
    assert re.fullmatch(r"killed the driver \([12] of 2 student rows stored\)", driver)
    assert rep["rc"] == 0 and not rep["hung"], rep.get("output")
    assert rep["stored_earlier"] >= 1  # the resume kept the row stored before the driver died
    assert rep["lost"] == [] and rep["duplicated"] == 0  # teacher, baseline, two students: once each
    assert rep["mismatched"] == []  # bleu and final loss equal training the same config here, undisturbed
    assert rep["resumed"] >= 1  # the killed worker's trial continued from its checkpoint, not from scratch
    assert rep["nodes"] == 2  # trials ran on both nodes
    assert rep["survived"] and totals["survived"] == 1 and totals["injections"] == 2
    assert rep["report"]  # the resumed run wrote its report to the object store
    out = capsys.readouterr().out
    assert "[1/1] worker+driver: killed" in out and "survived" in out and "rows lost 0" in out
