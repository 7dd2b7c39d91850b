"""Whole tiny grids on a real local Ray: stages → Tune → Train → rows → report. One grid over
every preset, then a second run into the same directory that reuses everything and duplicates
nothing; one grid on a custom JSONL task with DDP workers and a failing student init."""
import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import ROWS_DIR, read_rows
from bench.runner import run
from bench.spec import parse_spec
from tests.conftest import actor_ids, started_actor_classes, tiny_spec_dict

pytestmark = pytest.mark.slow


# What a trial's Ray path carries, each once: gold targets only (ft), the teacher cache
# (word_kd), and teacher PTs with the cache plus student PTs scored online (joint_teaching).
# Every preset runs the same worker code in-process in tests/test_distill.py (the relation KDs,
# seq_kd and several PTs per input included); seq_kd also goes through Ray in tests/test_faults.py.
GRID_METHODS = ["ft", "word_kd", "joint_teaching"]


def test_a_grid_of_every_kind_of_method_then_resume(tmp_path, local_ray, capsys):
    METHODS = GRID_METHODS
    data = tiny_spec_dict(methods=METHODS, ratios=[2.0])
    data["storage"] = {"runs_dir": str(tmp_path / "runs")}
    data["eval"]["profile"] = "off"  # profiling: tests/test_profiling.py (a fresh process per model: seconds each)
    data["study"] = {"id": "T1", "claim": "word_kd beats ft on this tiny grid",
                     "comparisons": [{"id": "T1", "system": "word_kd", "baseline": "ft", "expect": "better"}]}
    spec = parse_spec(data)
    run_dir = tmp_path / "runs" / "all"
    queues_before = actor_ids("_QueueActor")
    report = run(spec, run_dir=run_dir)
    out = capsys.readouterr().out
    # one report queue per Tune trial process, not per trial (bench.trial._report_callback):
    # 3 trials in 2 slots; every trial's dev reports reached Tune through it
    queues = actor_ids("_QueueActor") - queues_before
    assert 1 <= len(queues) < len(METHODS), queues
    trial_results = sorted((run_dir / "tune").rglob("result.json"))
    assert len(trial_results) == len(METHODS), trial_results
    for results in trial_results:
        reported = [json.loads(line) for line in results.read_text().splitlines()]
        assert [r["step"] for r in reported if "dev_loss" in r] == [spec.student_train.steps], reported

    rows = read_rows(run_dir)
    keys = [r["trial_key"] for r in rows]
    assert len(keys) == len(set(keys)) == 2 + len(METHODS)  # + the teacher and the copy-input baseline
    baseline = next(r for r in rows if r["role"] == "baseline")
    assert baseline["method"] == "copy_input" and 0 <= baseline["bleu"] <= 100
    teacher = [r for r in rows if r["role"] == "teacher"]
    assert len(teacher) == 1 and teacher[0]["status"] == "ok" and teacher[0]["ratio"] == 1.0
    assert (run_dir / teacher[0]["outputs_file"]).exists()
    students = {r["method"]: r for r in rows if r["role"] == "student"}
    assert set(students) == set(METHODS)
    assert all(r["status"] == "ok" for r in students.values()), {m: r.get("error") for m, r in students.items()}
    for r in students.values():
        assert 0 <= r["bleu"] <= 100 and r["params"] < teacher[0]["params"]
        assert r["student_init"] == "random" and "|random|" in r["trial_key"]
        assert set(r["artifacts"]) >= {"data", "tokenizer", "teacher"}
        assert r["versions"]["torch"] and r["config"]["train"]["steps"] == 4
        assert r["metrics"]["train"]["curve"]
        hyps = json.loads((run_dir / r["outputs_file"]).read_text())["hypotheses"]
        assert len(hyps) == len(json.loads((run_dir / "references" / "d2t.json").read_text()))
    assert f"[trial {len(METHODS)}/{len(METHODS)}" in out
    md = (run_dir / "report" / "report.md").read_text()
    assert all(f"| {m} " in md for m in METHODS) and report.exists()
    assert "Findings of T1" in md and "needs ≥ 3 seeds" in md  # one seed: never a finding
    # trials start only the actors that serve them (bench.trial._trainer_class)
    started = started_actor_classes()
    assert "RayTrainWorker" in started and {"PlacementGroupCleaner", "DatasetManager"}.isdisjoint(started)

    # same run again: stages reused, finished trials kept, nothing duplicated
    stored_before = {f.name: f.read_text() for f in (run_dir / ROWS_DIR).iterdir()}
    run(spec, run_dir=run_dir)
    out = capsys.readouterr().out
    assert "[d2t] shared stages: data reused, tokenizer reused, tokenized reused, teacher reused" in out
    assert out.count("[stored earlier]") == len(METHODS)
    stored_after = {f.name: f.read_text() for f in (run_dir / ROWS_DIR).iterdir()}
    assert stored_after == stored_before  # nothing rewritten, lost or added

    # the report can be rebuilt from the stored rows alone
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rebuilt")]) == 0
    assert (tmp_path / "rebuilt" / "report.html").exists()


def test_custom_jsonl_task_with_ddp_workers_and_a_failing_init(tmp_path, local_ray):
    """A task from your own JSONL files; each trial's TorchTrainer runs DDP over two CPU workers
    (gloo); shrinking the one-layer teacher is impossible: that trial is stored with its reason."""
    fixtures = Path(__file__).parent / "fixtures" / "custom"
    data = tiny_spec_dict(methods=["joint_teaching"], ratios=[2.0])
    data["tasks"] = [{"name": "headlines", "teacher": data["tasks"][0]["teacher"],
                      "sizes": {"labeled": 15, "unlabeled": None, "dev": 6, "test": None},
                      "custom": {"format": "jsonl", "source_field": "text", "target_field": "summary",
                                 "files": {s: str(fixtures / f"{s}.jsonl") for s in ("train", "validation", "test")},
                                 "metric": "rougeL", "max_source_tokens": 64, "max_target_tokens": 24}}]
    data["student_inits"] = ["random", "shrink-alternating"]
    data["resources"] = {"num_workers": 2, "cpus_per_worker": 0.99}
    data["storage"] = {"runs_dir": str(tmp_path / "runs"), "save_students": True}
    data["student_train"]["dev_every"] = 2  # a learning curve of several points for the trackers
    data["eval"]["profile"] = "off"  # profiling: tests/test_profiling.py
    data["tracking"] = {"mlflow": {"tracking_uri": f"file://{tmp_path / 'mlruns'}", "experiment": "e2e"},
                        "tensorboard": {"log_dir": "tb"}}
    run_dir = tmp_path / "runs" / "custom"
    import os

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store otherwise
    report = run(parse_spec(data), run_dir=run_dir)
    rows = {r["student_init"] if r["role"] == "student" else r["role"]: r for r in read_rows(run_dir)}
    assert rows["teacher"]["status"] == "ok" and rows["teacher"]["task"] == "headlines"
    ok = rows["random"]
    assert ok["status"] == "ok", ok.get("error")
    assert ok["config"]["train"]["steps"] == 4 and ok["metrics"]["train"]["steps"] == 4
    assert 0 <= ok["metrics"]["rougeL"] <= 100 and ok["metrics"]["headline"] == "rougeL"
    from bench.pretrained import load_model

    saved = load_model(ok["metrics"]["student_dir"])  # the distilled student, kept in the run dir
    assert sum(p.numel() for p in saved.parameters()) == ok["params"]
    failed = rows["shrink-alternating"]
    assert failed["status"] == "error" and "cannot shrink the teacher" in failed["error"]
    assert failed["trial_key"].startswith("headlines|student|joint_teaching|shrink-alternating|r2|s0|")
    html = report.read_text()
    assert "cannot shrink the teacher" in html and "rougeL" in html
    started = started_actor_classes()  # DDP's trainer too
    assert "RayTrainWorker" in started and {"PlacementGroupCleaner", "DatasetManager"}.isdisjoint(started)

    # tracking: read back with MLflow's client and TensorBoard's event reader
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    client = MlflowClient(tracking_uri=f"file://{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    trial_runs = [r for r in runs if r.data.tags.get("kdbench.role") != "report"]
    assert trial_runs and all(r.data.params["method"] == "joint_teaching" for r in trial_runs)
    assert {r.data.params["student_init"] for r in trial_runs} == {"random", "shrink-alternating"}
    trained = next(r for r in trial_runs if r.data.params["student_init"] == "random")
    history = client.get_metric_history(trained.info.run_id, "dev_loss")
    assert len(history) >= 2  # the learning curve, not just the final numbers
    report_run = next(r for r in runs if r.data.tags.get("kdbench.role") == "report")
    assert "report/report.html" in {a.path for a in client.list_artifacts(report_run.info.run_id, "report")}
    events = [p for p in (run_dir / "tb").rglob("events.out.tfevents*")]
    assert events
    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert any("dev_loss" in tag for tag in acc.Tags()["scalars"])

    # the saved student: a model card, and `kdbench export` picks the dev-best student per task
    card = (Path(ok["metrics"]["student_dir"]) / "README.md").read_text()
    assert card.startswith("---") and "joint_teaching" in card
    assert main(["export", str(run_dir), "--best", "--to", str(tmp_path / "export")]) == 0
    exported = load_model(str(tmp_path / "export" / "headlines"))
    assert sum(p.numel() for p in exported.parameters()) == ok["params"]
    assert (run_dir / "report" / "results.json").exists()
