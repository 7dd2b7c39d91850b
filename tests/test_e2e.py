"""A whole tiny grid on a real local Ray: stages → Tune → Train → rows → report, then a
second run into the same directory that reuses everything and duplicates nothing."""
import json

import pytest
import ray

from bench.cli import main
from bench.results import read_rows, results_path
from bench.runner import run
from bench.spec import parse_spec
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.slow
METHODS = ["ft", "word_kd", "seq_kd", "joint_teaching"]


@pytest.fixture(scope="module")
def ray_session():
    yield
    ray.shutdown()


def test_grid_end_to_end_and_resume(tmp_path, ray_session, capsys):
    data = tiny_spec_dict(methods=METHODS, ratios=[2.0])
    # the tiny teacher has one layer per stack: shrinking it by dropping layers is impossible
    data["student_inits"] = ["random", "shrink-alternating"]
    data["storage"] = {"runs_dir": str(tmp_path / "runs")}
    spec = parse_spec(data)
    run_dir = tmp_path / "runs" / "grid"
    report = run(spec, run_dir=run_dir)
    out = capsys.readouterr().out

    rows = read_rows(run_dir)
    keys = [r["trial_key"] for r in rows]
    assert len(keys) == len(set(keys)) == 1 + 2 * len(METHODS)
    teacher = [r for r in rows if r["role"] == "teacher"]
    assert len(teacher) == 1 and teacher[0]["status"] == "ok" and teacher[0]["ratio"] == 1.0
    ok = {r["method"]: r for r in rows if r["role"] == "student" and r["student_init"] == "random"}
    assert set(ok) == set(METHODS)
    for r in ok.values():
        assert r["status"] == "ok", r.get("error")
        assert 0 <= r["bleu"] <= 100 and r["params"] < teacher[0]["params"]
        assert set(r["artifacts"]) >= {"data", "tokenizer", "teacher"}
        assert r["versions"]["torch"] and r["config"]["train"]["steps"] == 3
    failed = [r for r in rows if r.get("student_init") == "shrink-alternating"]
    assert len(failed) == len(METHODS) and all("|shrink-alternating|" in r["trial_key"] for r in failed)
    assert all(r["status"] == "error" and "cannot shrink the teacher" in r["error"] for r in failed)
    assert "FAILED" in out and "[trial 8/8" in out
    assert report.exists() and (run_dir / "report" / "report.md").exists()
    html = report.read_text()
    assert "joint_teaching" in html and "cannot shrink the teacher" in html

    # same run again: stages reused, finished trials kept, nothing duplicated
    lines_before = results_path(run_dir).read_text().splitlines()
    run(spec, run_dir=run_dir)
    out = capsys.readouterr().out
    assert "[d2t] shared stages: data reused, tokenizer reused, teacher reused, pseudo_targets/beam-k1 reused, " \
           "teacher_eval reused (0s spent building)" in out
    assert out.count("[stored earlier]") == len(METHODS)
    lines_after = results_path(run_dir).read_text().splitlines()
    ok_keys = [json.loads(ln)["trial_key"] for ln in lines_after if json.loads(ln)["status"] == "ok"]
    assert len(ok_keys) == len(set(ok_keys)) == 1 + len(METHODS)
    assert lines_after[: len(lines_before)] == lines_before  # nothing rewritten or lost

    # the report can be rebuilt from the stored rows alone
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rebuilt")]) == 0
    assert (tmp_path / "rebuilt" / "report.html").exists()


def test_two_ddp_workers_per_trial(tmp_path, ray_session):
    """num_workers=2: each trial's TorchTrainer runs DDP over two CPU workers (gloo)."""
    data = tiny_spec_dict(methods=["joint_teaching"], ratios=[2.0])
    data["resources"] = {"num_workers": 2, "cpus_per_worker": 0.99}
    data["storage"] = {"runs_dir": str(tmp_path / "runs")}
    run_dir = tmp_path / "runs" / "ddp"
    run(parse_spec(data), run_dir=run_dir)
    (student,) = [r for r in read_rows(run_dir) if r["role"] == "student"]
    assert student["status"] == "ok", student.get("error")
    assert student["config"]["train"]["steps"] == 3 and student["metrics"]["train"]["steps"] == 3


def test_every_preset_in_one_grid_and_report(tmp_path, ray_session):
    from bench.distill.methods import METHODS

    data = tiny_spec_dict(methods=list(METHODS), ratios=[2.0])
    data["storage"] = {"runs_dir": str(tmp_path / "runs")}
    run_dir = tmp_path / "runs" / "all"
    report = run(parse_spec(data), run_dir=run_dir)
    students = {r["method"]: r for r in read_rows(run_dir) if r["role"] == "student"}
    assert set(students) == set(METHODS)
    assert all(r["status"] == "ok" for r in students.values()), {m: r.get("error") for m, r in students.items()}
    md = (run_dir / "report" / "report.md").read_text()
    assert all(f"| {m} " in md for m in METHODS)
    assert report.exists()
