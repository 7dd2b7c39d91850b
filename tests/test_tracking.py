"""Tracking: a tiny real Tune grid with kdbench's logger callbacks, read back from a local
MLflow file store and TensorBoard event files (and W&B offline files when wandb is there)."""
from __future__ import annotations

import json
import struct

import pytest
import ray
from pydantic import ValidationError
from ray import tune

from bench import tracking
from bench.tracking import (MissingExtraError, TrackingSpec, log_report, check_tracking,
                            tensorboard_dir, tune_callbacks)

CURVE = [(0, 5.0, 4.0), (50, 3.0, 2.5), (100, 2.0, 1.5)]  # step, loss, dev_loss


def fake_trainable():
    """Shaped like kdbench's trial: three curve points, then the final summary (no step).
    Built in a function so Ray pickles it by value (workers cannot import this test module)."""
    curve = CURVE

    def fake_trial(config):
        for step, loss, dev_loss in curve:
            ray.tune.report({"step": step, "loss": loss * (1 + config["seed"]),
                             "dev_loss": dev_loss + config["seed"],
                             "dev_metric": None if step == 0 else 10.0 + step})
        ray.tune.report({"status": "ok", "headline": "bleu", "bleu": 20.0 + config["seed"], "chrf": 40.0})

    return fake_trial


def run_grid(callbacks, storage):
    tuner = tune.Tuner(
        tune.with_resources(fake_trainable(), {"CPU": 0.01}),
        param_space={"task": "d2t", "method": "seq_kd", "ratio": 2.0, "student_init": "random",
                     "seed": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0, callbacks=callbacks),
    )
    results = tuner.fit()
    assert not results.errors


def test_spec_block_is_strict_and_frozen():
    spec = TrackingSpec.model_validate({"mlflow": {"tracking_uri": "file:///x", "experiment": "e"},
                                        "tensorboard": {}, "wandb": {"project": "p", "mode": "offline"}})
    assert spec.tensorboard.log_dir == "tensorboard" and spec.wandb.mode == "offline"
    with pytest.raises(ValidationError, match="extra"):
        TrackingSpec.model_validate({"mlflow": {"uri": "file:///x"}})
    with pytest.raises(ValidationError, match="offline"):
        TrackingSpec.model_validate({"wandb": {"project": "p", "mode": "sometimes"}})
    with pytest.raises(ValidationError):
        spec.mlflow = None  # frozen
    assert tune_callbacks(TrackingSpec(), "/tmp/run") == []


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(tracking, "_installed", lambda module: module != "mlflow")
    with pytest.raises(MissingExtraError, match=r"pip install 'kdbench\[mlflow\]'"):
        check_tracking(TrackingSpec(mlflow={}))
    with pytest.raises(MissingExtraError, match=r"kdbench\[mlflow\]"):
        tune_callbacks(TrackingSpec(mlflow={}, tensorboard={}), "/tmp/run")
    monkeypatch.setattr(tracking, "_installed", lambda module: False)
    with pytest.raises(MissingExtraError, match=r"kdbench\[wandb\]"):
        check_tracking(TrackingSpec(wandb={"project": "p"}))
    with pytest.raises(MissingExtraError, match=r"kdbench\[tensorboard\]"):
        check_tracking(TrackingSpec(tensorboard={}))


def test_mlflow_store_that_mlflow_would_refuse_fails_up_front(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ValueError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        check_tracking(TrackingSpec(mlflow={"tracking_uri": (tmp_path / "mlruns").as_uri()}))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking(TrackingSpec(mlflow={"tracking_uri": str(tmp_path / "mlruns")}))
    if not tracking._installed("sqlalchemy"):
        with pytest.raises(MissingExtraError, match="database store, which needs SQLAlchemy"):
            check_tracking(TrackingSpec(mlflow={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}))
    check_tracking(TrackingSpec(mlflow={"tracking_uri": "http://127.0.0.1:5000"}))  # no probe


def test_mlflow_and_tensorboard_log_config_curve_and_final_metrics(tmp_path, local_ray, monkeypatch):
    MlflowClient = pytest.importorskip("mlflow.tracking").MlflowClient  # extras: mlflow, tensorboard
    EventAccumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator").EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in to its file store
    run_dir = tmp_path / "tiny-20250101-000000"
    uri = (tmp_path / "mlruns").as_uri()
    spec = TrackingSpec.model_validate({"mlflow": {"tracking_uri": uri, "experiment": "kd"},
                                        "tensorboard": {"log_dir": "tb"}})
    callbacks = tune_callbacks(spec, run_dir, shared_params={"student_train": {"steps": 100, "lr": 0.003}})
    run_grid(callbacks, tmp_path / "ray")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("kd")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"d2t|seq_kd|r2|s0", "d2t|seq_kd|r2|s1"}
    for seed in (0, 1):
        run = runs[f"d2t|seq_kd|r2|s{seed}"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["kdbench.run"] == run_dir.name
        params = run.data.params
        assert {k: params[k] for k in ("task", "method", "ratio", "seed", "student_init")} == {
            "task": "d2t", "method": "seq_kd", "ratio": "2.0", "seed": str(seed), "student_init": "random"}
        assert params["spec/student_train/steps"] == "100" and params["spec/student_train/lr"] == "0.003"
        history = client.get_metric_history(run.info.run_id, "dev_loss")
        assert [(m.step, m.value) for m in history] == [(s, d + seed) for s, _, d in CURVE]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_metric")] == [50, 100]
        assert run.data.metrics["bleu"] == 20.0 + seed  # the final summary, at the last step
        assert client.get_metric_history(run.info.run_id, "bleu")[0].step == 100
        assert run.data.metrics["loss"] == 2.0 * (1 + seed)

    tb_root = tensorboard_dir(spec, run_dir)
    assert tb_root == run_dir / "tb"
    trial_dirs = sorted(p.name for p in tb_root.iterdir())
    assert trial_dirs == ["d2t_seq_kd_r2_s0", "d2t_seq_kd_r2_s1"]
    acc = EventAccumulator(str(tb_root / "d2t_seq_kd_r2_s1"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert [(e.step, e.value) for e in acc.Scalars("ray/tune/dev_loss")] == [(s, d + 1) for s, _, d in CURVE]
    assert [(e.step, e.value) for e in acc.Scalars("ray/tune/bleu")] == [(100, 21.0)]
    assert "ray/tune/config/seed" not in scalars and "ray/tune/training_iteration" not in scalars
    # hparams: the flat trial config with the latest value of every metric
    hp_plugin = acc.PluginTagToContent("hparams")
    session = [v for k, v in hp_plugin.items() if k.endswith("session_start_info")]
    assert session and b"seq_kd" in session[0] and b"student_train/lr" in session[0]

    # the report folder as artifacts of one run named after the kdbench run, reused on rebuild
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    first = log_report(spec, run_dir, report)
    (report / "summary.csv").write_text("a,b\n1,2\n")
    assert log_report(spec, run_dir, report) == first
    artifacts = {a.path for a in client.list_artifacts(first, "report")}
    assert artifacts == {"report/report.md", "report/summary.csv"}
    assert client.get_run(first).info.run_name == run_dir.name
    assert log_report(TrackingSpec(tensorboard={}), run_dir, report) is None  # nothing for TB


def wandb_records(path, block=32768):
    """The protobuf records of an offline `.wandb` file (a LevelDB-style log after a 7-byte
    header); wandb itself ships no reader any more, only `wandb sync` to a server."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


@pytest.mark.skipif(not tracking._installed("wandb"), reason="wandb not installed")
def test_wandb_offline_logs_every_trial_without_an_api_key(tmp_path, local_ray, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "tiny-run"
    spec = TrackingSpec(wandb={"project": "kdbench-test", "mode": "offline"})
    run_grid(tune_callbacks(spec, run_dir), tmp_path / "ray")
    files = sorted((run_dir / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    seen = {}
    for path in files:
        history, config = [], {}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                assert (record.run.project, record.run.run_group) == ("kdbench-test", run_dir.name)
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "history":
                history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                for i in record.history.item})
        seed = config["seed"]
        assert {k: config[k] for k in ("task", "method", "ratio")} == {"task": "d2t", "method": "seq_kd", "ratio": 2.0}
        assert [(h["step"], h["dev_loss"]) for h in history[:3]] == [(s, d + seed) for s, _, d in CURVE]
        assert history[3]["bleu"] == 20.0 + seed
        seen[seed] = len(history)
    assert seen == {0: 4, 1: 4}
