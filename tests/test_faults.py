"""A cluster run as safe as a database write: a real two-node Ray cluster (`ray start` on this
machine), run dir and artifacts on an S3-compatible object store on loopback (no shared
directory), a Train worker killed mid-training and the driver killed mid-grid — and the
resumed run ends with exactly one row per trial and the metrics of an undisturbed run."""
import subprocess
import sys
import time

import pytest
import torch
import yaml

from bench.localcluster import LocalCluster, ObjectStore
from bench.results import read_rows
from bench.storage import Location
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.slow


def _wait(what, condition, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_two_node_run_on_an_object_store_survives_a_killed_worker_and_a_killed_driver(tmp_path):
    store = ObjectStore()
    cluster = LocalCluster(nodes=2, cpus_per_node=1).start()
    try:
        runs = Location.of(store.uri).join("runs")
        data = tiny_spec_dict(methods=["ft", "seq_kd"])
        data["student_train"].update(steps=40, dev_every=10, checkpoint_every=10)
        data["eval"]["profile"] = "off"  # costs are not what this test checks
        data["storage"] = {"runs_dir": str(runs), "artifacts_dir": str(Location.of(store.uri).join("artifacts"))}
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(data))
        run_dir = runs.join("faulty")
        cmd = [sys.executable, "-m", "bench.cli", "run", str(spec_file), "--address", cluster.address,
               "--run-dir", str(run_dir)]
        log = open(tmp_path / "driver.log", "w")
        driver = subprocess.Popen(cmd, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)

        # 1. a Train worker dies mid-training, once its trial has a registered checkpoint (a second
        # one being written): Train restarts the worker group from the checkpoint
        train = run_dir.join("train")
        _wait("checkpoints", lambda: any(sum(d.name.startswith("checkpoint_") for d in run.dirs()) >= 2
                                         for run in train.dirs()))
        assert cluster.kill("ray::RayTrainWorker") >= 1

        # 2. the driver dies once one student row is stored, with the other trial mid-way
        def student_rows() -> list:
            return [r for r in read_rows(run_dir, profiles=False) if r["role"] == "student"]
        _wait("a first student row", lambda: len(student_rows()) >= 1)
        driver.kill()
        driver.wait(timeout=60)
        log.close()

        # 3. resume with the stored spec: finished trials kept, the interrupted one continues
        resumed = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--resume", str(run_dir),
                                  "--address", cluster.address], env=cluster.env, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "[stored earlier]" in resumed.stdout

        rows = read_rows(run_dir)
        keys = [r["trial_key"] for r in rows]
        assert len(keys) == len(set(keys)) == 4  # teacher, copy-input baseline, two students: no duplicate
        students = {r["method"]: r for r in rows if r["role"] == "student"}
        assert all(r["status"] == "ok" for r in students.values()), {m: r.get("error") for m, r in students.items()}
        assert any(r["metrics"]["train"].get("resumed_at_steps") for r in students.values())  # continued, not redone
        assert len({r["metrics"]["node_id"] for r in students.values()}) == 2  # trials ran on both nodes
        assert Location.of(run_dir).join("report", "report.html").exists()

        # the same trials undisturbed, here, from the rows' own stored worker configs
        from bench.worker import distill

        for method, row in students.items():
            reference = distill({**row["config"], "save_to": None}, 0, 1, torch.device("cpu"))
            assert row["bleu"] == reference["bleu"], method
            assert row["metrics"]["train"]["final_loss"] == reference["train"]["final_loss"], method
    finally:
        cluster.stop()
        store.stop()
