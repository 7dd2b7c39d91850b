"""`kdbench run --address`: join an existing Ray cluster (started here with `ray start`)."""
import socket
import subprocess
import sys

import pytest
import yaml

from bench.results import read_rows
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_joins_an_existing_cluster(tmp_path):
    port = _free_port()
    start = ["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             "--object-store-memory=500000000", f"--temp-dir=/tmp/kdb-ray-{port}"]
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    try:
        data = tiny_spec_dict(methods=["seq_kd"])
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        run_dir = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", str(spec), "--address", f"127.0.0.1:{port}",
             "--run-dir", str(run_dir), "--runs-dir", str(tmp_path / "runs")],
            capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "report:" in proc.stdout
        students = [r for r in read_rows(run_dir) if r["role"] == "student"]
        assert [r["status"] for r in students] == ["ok"], students
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)
