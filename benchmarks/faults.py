"""Fault injection: a small grid on a real two-node Ray cluster (`ray start` on this machine), run
dir and artifacts on an S3-compatible store on loopback, hit by random faults; each repetition
must end with a complete, duplicate-free store whose metrics equal an undisturbed run's.

Faults: a Train worker killed mid-training; the driver killed mid-grid (then `--resume`); a
whole worker node killed (its processes, then the node started again for the resume); an
artifact corrupted in the store between two runs (then the same run dir again). Prints, per
repetition and in all: injections, survived, rows lost, rows duplicated, metric mismatches.

Usage: python -m benchmarks.faults [--repetitions 20] [--seed 0] [--tiny]
`--tiny`: one repetition of one fault on a minimal grid (what the tests run, about a minute).
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

FAULTS = ("worker", "driver", "node", "artifact")


def spec_data(runs: str, artifacts: str, steps: int, methods: list[str]) -> dict:
    sizes = {"labeled": 24, "unlabeled": 48, "dev": 4, "test": 8, "teacher_pool": 24, "references": 2}
    teacher = {"model": {"arch": "t5", "d_model": 32, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1,
                         "heads": 2}, "train": {"steps": 8, "batch_size": 8, "lr": 0.003, "warmup_steps": 2}}
    return {"name": "faults", "tasks": [{"name": "d2t", "sizes": sizes, "teacher": teacher}], "ratios": [2.0],
            "methods": methods, "seeds": [0], "tokenizer": {"vocab_size": 300},
            "student_train": {"steps": steps, "batch_size": 4, "lr": 0.003, "warmup_steps": 1,
                              "dev_every": 5, "checkpoint_every": 5},
            "eval": {"batch_size": 8, "latency_examples": 2, "profile": "off"},
            "storage": {"runs_dir": runs, "artifacts_dir": artifacts}}


def outcome(run_dir) -> dict:
    """{trial key: (status, metrics that must match)} and how many row files each key has."""
    from bench.results import read_rows

    rows = read_rows(run_dir, profiles=False)
    return {r["trial_key"]: (r["status"], r.get("bleu"), (r.get("metrics") or {}).get("train", {}).get("final_loss"))
            for r in rows}


def _duplicates(run_dir) -> int:
    """Rows beyond one per trial (the same task, role, method, init, ratio and seed stored twice)."""
    from bench.results import read_rows

    seen = Counter((r["task"], r["role"], r["method"], r.get("student_init"), r.get("ratio"), r.get("seed"))
                   for r in read_rows(run_dir, profiles=False))
    return sum(n - 1 for n in seen.values())


def _driver(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)


def _wait(condition, timeout: float = 600, poll: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def _checkpoints(run_dir) -> int:
    try:
        return max((sum(d.name.startswith("checkpoint_") for d in run.dirs()) for run in run_dir.join("train").dirs()),
                   default=0)
    except OSError:
        return 0


def _students(run_dir) -> int:
    from bench.results import read_rows

    try:
        return sum(r["role"] == "student" for r in read_rows(run_dir, profiles=False))
    except OSError:
        return 0


def repetition(fault: str, rng: random.Random, cluster, spec_file: Path, run_dir, log: Path) -> dict:
    """Run the grid into `run_dir` with one fault injected; then finish it as a user would."""
    from bench.localcluster import kill, processes

    base = [sys.executable, "-m", "bench.cli", "run", "--address", cluster.address]
    if fault == "artifact":  # corrupt a stored artifact between two runs into the same run dir
        first = subprocess.run([*base, str(spec_file), "--run-dir", str(run_dir)], env=cluster.env,
                               capture_output=True, text=True, timeout=900)
        if first.returncode:
            return {"fault": fault, "error": first.stdout[-500:]}
        victim = _corrupt_an_artifact(cluster, spec_file, rng)
        injected = f"corrupted {victim}"
        resume = subprocess.run([*base, "--resume", str(run_dir)], env=cluster.env, capture_output=True,
                                text=True, timeout=900)
        return {"fault": fault, "injected": injected, "rc": resume.returncode,
                "rebuilt": "stored copy was corrupt" in resume.stdout or "rebuilt" in resume.stdout}
    driver = _driver([*base, str(spec_file), "--run-dir", str(run_dir)], cluster.env, log)
    injected = None
    if fault == "worker":
        if _wait(lambda: _checkpoints(run_dir) >= 1 + rng.randrange(2)):
            injected = f"killed {cluster.kill('ray::RayTrainWorker')} Train worker(s)"
    elif fault == "driver":
        if _wait(lambda: _checkpoints(run_dir) >= 1 + rng.randrange(3)):
            driver.kill()
            injected = "killed the driver"
    elif fault == "node":
        if _wait(lambda: _checkpoints(run_dir) >= 1):
            n = kill(processes(f"KDBENCH_NODE={cluster.nodes - 1}"))
            injected = f"killed node {cluster.nodes - 1} ({n} processes)"
    rc = driver.wait(timeout=900)
    if fault == "node":
        cluster.restart_node(cluster.nodes - 1)
    if fault == "driver" or rc != 0:  # finish the grid as a user would
        resume = subprocess.run([*base, "--resume", str(run_dir)], env=cluster.env, capture_output=True,
                                text=True, timeout=900)
        rc = resume.returncode
    return {"fault": fault, "injected": injected, "rc": rc}


def _corrupt_an_artifact(cluster, spec_file: Path, rng: random.Random) -> str:
    """Zero 4 KiB of a stored teacher's weights or PT file (the object store's copy) and drop every
    node's cached copy, as a half-copied upload or a bad disk would leave it."""
    import shutil

    from bench.spec import load_spec
    from bench.storage import Location

    root = Location.of(load_spec(spec_file).storage.artifacts_dir)
    stage = rng.choice(["teacher", "pseudo_targets"])
    art = root.join(stage).dirs()[0]
    name = "model.safetensors" if stage == "teacher" else "pseudo_targets.json"
    target = art.join(name)
    data = bytearray(target.read_bytes())
    start = min(len(data) // 2, 256)
    data[start:start + 4096] = bytes(len(data[start:start + 4096]))
    target.write_bytes(bytes(data))
    for cache in cluster.root.glob("cache-node*"):
        shutil.rmtree(cache, ignore_errors=True)
    return f"{stage}/{art.name}/{name}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repetitions", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="one repetition of one fault on a minimal grid")
    args = ap.parse_args(argv)
    from bench.environment import quiet_ray_env

    quiet_ray_env()
    from bench.localcluster import LocalCluster, ObjectStore
    from bench.storage import Location

    rng = random.Random(args.seed)
    reps = 1 if args.tiny else args.repetitions
    steps, methods = (10, ["ft"]) if args.tiny else (30, ["ft", "seq_kd"])
    store = ObjectStore()
    cluster = LocalCluster(nodes=2, cpus_per_node=1).start()
    tmp = Path(tempfile.mkdtemp(prefix="kdbench-faults-"))
    totals: Counter = Counter()
    try:
        runs = Location.of(store.uri).join("runs")
        spec_file = tmp / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(spec_data(str(runs), str(Location.of(store.uri).join("artifacts")),
                                                      steps, methods)))
        reference_dir = runs.join("undisturbed")
        print(f"undisturbed reference run ({len(methods)} trial(s), {steps} steps each)...", flush=True)
        ref = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(spec_file), "--address", cluster.address,
                              "--run-dir", str(reference_dir)], env=cluster.env, capture_output=True, text=True,
                             timeout=900)
        if ref.returncode:
            raise SystemExit(f"the undisturbed run failed:\n{ref.stdout[-2000:]}\n{ref.stderr[-2000:]}")
        reference = outcome(reference_dir)
        for i in range(reps):
            fault = "worker" if args.tiny else rng.choice(FAULTS)
            run_dir = runs.join(f"rep-{i:02d}")
            t0 = time.time()
            result = repetition(fault, rng, cluster, spec_file, run_dir, tmp / f"rep-{i:02d}.log")
            got = outcome(run_dir)
            lost = sorted(set(reference) - set(got))
            duplicated = _duplicates(run_dir)
            mismatched = sorted(k for k in set(reference) & set(got) if got[k] != reference[k])
            survived = result.get("rc") == 0 and not lost and not mismatched and not duplicated
            totals.update(injections=int(bool(result.get("injected"))), survived=int(survived),
                          rows_lost=len(lost), rows_duplicated=duplicated, metric_mismatches=len(mismatched))
            print(f"[{i + 1}/{reps}] {fault}: {result.get('injected') or 'no injection (the grid ended first)'}; "
                  f"{'survived' if survived else 'FAILED'} in {time.time() - t0:.0f}s (rows lost {len(lost)}, "
                  f"duplicated {duplicated}, metric mismatches {len(mismatched)})", flush=True)
    finally:
        cluster.stop()
        store.stop()
    print(f"\n{reps} repetition(s): injections {totals['injections']}, survived {totals['survived']}, rows lost "
          f"{totals['rows_lost']}, rows duplicated {totals['rows_duplicated']}, metric mismatches "
          f"{totals['metric_mismatches']}")
    return dict(totals, repetitions=reps)


if __name__ == "__main__":
    main()
