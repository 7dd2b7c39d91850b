"""A real Ray cluster of several nodes on one machine (`ray start` processes), with an
S3-compatible object store on loopback (moto's server), and ways to kill its processes: what
the fault-tolerance tests and `benchmarks/faults.py` run kdbench against.

Every process of the cluster carries a unique marker in its environment, so that kills and
the final stop touch only this cluster's processes, never another Ray on the machine. Each
node gets its own artifact cache (`KDBENCH_CACHE_DIR`), as nodes of a real cluster would.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes(marker: str, title: str | None = None) -> list[int]:
    """PIDs whose environment holds `marker` (and, if given, whose command line holds `title`,
    e.g. "ray::RayTrainWorker")."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if title is not None:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if title.encode() not in fh.read():
                        continue
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker.encode() not in fh.read().split(b"\0"):
                    continue
        except OSError:
            continue
        out.append(int(pid))
    return out


def kill(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except ProcessLookupError:
            pass
    return n


class LocalCluster:
    """`nodes` Ray nodes of `cpus_per_node` CPUs on this machine: `start()`, then drivers join
    `address` (with `env`); `stop()` kills every process of the cluster and only those."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 300):
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus_per_node, object_store_mb
        self.root = Path(tempfile.mkdtemp(prefix="kdb-cluster-"))
        self.marker_value = uuid.uuid4().hex[:12]
        self.marker = f"KDBENCH_CLUSTER={self.marker_value}"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = uuid.uuid4().hex + uuid.uuid4().hex
        # RAY_ADDRESS: Ray's own helpers that look a cluster up find this one, not another on the machine
        self.env = {**os.environ, "KDBENCH_CLUSTER": self.marker_value, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": self.address}

    def node_env(self, i: int) -> dict[str, str]:
        return {**self.env, "KDBENCH_CACHE_DIR": str(self.root / f"cache-node{i}"), "KDBENCH_NODE": str(i)}

    def _common(self) -> list[str]:
        return [f"--num-cpus={self.cpus}", f"--object-store-memory={self.object_store_mb * 2**20}",
                "--disable-usage-stats"]

    def restart_node(self, i: int) -> None:
        """Start worker node `i` again (after its processes were killed)."""
        _run(["ray", "start", f"--address={self.address}", *self._common()], self.node_env(i))
        self._wait_for_nodes()

    def start(self) -> LocalCluster:
        """Start the nodes (on failure, everything started so far is stopped again)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        common = self._common()
        head = ["ray", "start", "--head", f"--port={self.port}", f"--temp-dir={self.root / 'ray'}",
                "--include-dashboard=false", *common]
        _run(head, self.node_env(0))
        for i in range(1, self.nodes):
            _run(["ray", "start", f"--address={self.address}", *common], self.node_env(i))
        self._wait_for_nodes()

    def _wait_for_nodes(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")
        while time.time() < deadline:
            out = subprocess.run(["python", "-c", probe, self.address], capture_output=True, text=True,
                                 env=self.env, timeout=60)
            if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= self.nodes:
                return
            time.sleep(1)
        raise RuntimeError(f"the local cluster did not reach {self.nodes} nodes: {out.stderr[-500:]}")

    def kill(self, title: str) -> int:
        """SIGKILL this cluster's processes whose command line holds `title`; how many."""
        return kill(processes(self.marker, title))

    def kill_node(self, i: int) -> int:
        """SIGKILL every process of this cluster's node `i` (raylet, workers, ...); how many."""
        on_node = set(processes(f"KDBENCH_NODE={i}"))
        return kill([pid for pid in processes(self.marker) if pid in on_node])

    def stop(self) -> None:
        for _ in range(3):
            if not kill(processes(self.marker)):
                break
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _run(cmd: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {(out.stderr or out.stdout).strip()[-800:]}")


class ObjectStore:
    """An S3-compatible server on loopback (moto) with one bucket; `uri` is the storage URI
    kdbench and Ray take (the tests' `s3_server` fixture is one of these too)."""

    def __init__(self, bucket: str = "kdbench"):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.uri = self.new_bucket(bucket)

    def new_bucket(self, name: str) -> str:
        """Create bucket `name`; returns its storage URI."""
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
        return f"s3://{name}?endpoint_override={self.endpoint}&scheme=http"

    def stop(self) -> None:
        self.server.stop()
