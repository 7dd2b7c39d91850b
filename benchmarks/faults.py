"""Fault injection: a small grid on a real two-node Ray cluster (`ray start` on this machine), run
dir and artifacts on an S3-compatible store on loopback, hit by random faults; each repetition
must end with a complete, duplicate-free store whose metrics equal an undisturbed training's
(each student trained again in this process from its row's stored worker config: same seed,
same machine).

Faults: a Train worker killed mid-training; the driver killed mid-grid (then `--resume`); a
whole worker node killed (its processes; the node is started again afterwards); an
artifact corrupted in the store between two runs (then the same run dir again); a worker and
then the driver in one run (`worker+driver`). Prints, per repetition and in all: injections,
survived, rows lost, rows duplicated, metric mismatches, trials resumed from a checkpoint.

Usage: python -m benchmarks.faults [--repetitions 20] [--seed 0] [--tiny]
`--tiny`: one `worker+driver` repetition of a two-trial grid (what tests/test_faults.py runs).
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

FAULTS = ("worker", "driver", "node", "artifact", "worker+driver")


def spec_data(runs: str, artifacts: str, steps: int, methods: list[str], every: int = 5) -> dict:
    sizes = {"labeled": 24, "unlabeled": 48, "dev": 4, "test": 8, "teacher_pool": 24, "references": 2}
    teacher = {"model": {"arch": "t5", "d_model": 32, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1,
                         "heads": 2}, "train": {"steps": 8, "batch_size": 8, "lr": 0.003, "warmup_steps": 2}}
    return {"name": "faults", "tasks": [{"name": "d2t", "sizes": sizes, "teacher": teacher}], "ratios": [2.0],
            "methods": methods, "seeds": [0], "tokenizer": {"vocab_size": 300},
            "student_train": {"steps": steps, "batch_size": 4, "lr": 0.003, "warmup_steps": 1,
                              "dev_every": every, "checkpoint_every": every},
            "pseudo_targets": {"num_beams": 2, "batch_size": 32},
            "eval": {"num_beams": 1, "batch_size": 8, "latency_examples": 2, "profile": "off"},
            "storage": {"runs_dir": runs, "artifacts_dir": artifacts}}


def expected(spec) -> set[tuple]:
    """`_cell` of every row a finished run of `spec` holds (a teacher's seed is its task's data seed)."""
    from bench.grid import grid_trials

    cells = {_cell({**t, "role": "student"}) for t in grid_trials(spec)}
    for task in spec.tasks:
        cells |= {_cell({"task": task.name, "role": "teacher", "method": "teacher", "ratio": 1.0,
                         "seed": task.data_seed}),
                  _cell({"task": task.name, "role": "baseline", "method": "copy_input"})}
    return cells


def _cell(row: dict) -> tuple:
    """One grid cell: two rows of one cell are a duplicate, a cell without an ok row is lost."""
    return row["task"], row["role"], row["method"], row.get("student_init"), row.get("ratio"), row.get("seed")


def check(run_dir, spec, references: dict[str, tuple]) -> dict:
    """What a repetition left in `run_dir`: rows lost and duplicated, students whose metrics differ
    from training them again here (undisturbed; `references` keeps those by trial key, which
    holds the config hash, so each configuration is trained once per benchmark), students resumed
    from a checkpoint, and the nodes the students ran on."""
    import torch

    from bench.results import read_rows
    from bench.storage import Location
    from bench.worker import distill

    rows = read_rows(run_dir, profiles=False)
    seen = Counter(_cell(r) for r in rows)
    ok = {_cell(r) for r in rows if r["status"] == "ok"}
    students = [r for r in rows if r["role"] == "student" and r["status"] == "ok"]
    mismatched = []
    for row in students:
        key = row["trial_key"]
        if key not in references:
            try:
                again = distill({**row["config"], "save_to": None}, 0, 1, torch.device("cpu"))
            except Exception as exc:  # e.g. an artifact still corrupt: this repetition failed, the others go on
                mismatched.append(f"{key} (cannot train it again: {type(exc).__name__}: {exc})")
                continue
            references[key] = (again["bleu"], again["train"]["final_loss"])
        if (row["bleu"], row["metrics"]["train"]["final_loss"]) != references[key]:
            mismatched.append(key)
    return {"lost": sorted(map(str, expected(spec) - ok)), "duplicated": sum(n - 1 for n in seen.values()),
            "mismatched": mismatched,
            "resumed": sum(bool(r["metrics"]["train"].get("resumed_at_steps")) for r in students),
            "nodes": len({r["metrics"].get("node_id") for r in students}),
            "report": Location.of(run_dir).join("report", "report.html").exists()}


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


def repetition(fault: str, rng: random.Random, cluster, spec_file: Path, run_dir, log: Path, students: int) -> dict:
    """Run the grid into `run_dir` (`students` student trials) with one fault injected; then
    finish it as a user would."""
    base = [sys.executable, "-m", "bench.cli", "run", "--address", cluster.address]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], env=cluster.env, capture_output=True, text=True, timeout=900)

    def tail(done: subprocess.CompletedProcess) -> str:
        return done.stdout[-3000:] + done.stderr[-3000:]

    if fault == "artifact":  # corrupt a stored artifact between two runs into the same run dir
        first = cli(str(spec_file), "--run-dir", str(run_dir))
        if first.returncode:
            return {"fault": fault, "error": first.stdout[-500:]}
        victim = _corrupt_an_artifact(cluster, spec_file, rng)
        resume = cli("--resume", str(run_dir))
        return {"fault": fault, "injected": [f"corrupted {victim}"], "rc": resume.returncode,
                "rebuilt": "stored copy was corrupt" in resume.stdout or "rebuilt" in resume.stdout,
                "output": tail(resume)}
    driver = _driver([*base, str(spec_file), "--run-dir", str(run_dir)], cluster.env, log)
    injected, driver_killed = [], False
    if fault in ("worker", "worker+driver"):  # once a trial has a checkpoint (two: one registered)
        if _wait(lambda: _checkpoints(run_dir) >= (2 if fault == "worker+driver" else 1 + rng.randrange(2))):
            injected.append(f"killed {cluster.kill('ray::RayTrainWorker')} Train worker(s)")
    if fault == "driver":
        if _wait(lambda: _checkpoints(run_dir) >= 1 + rng.randrange(3)):
            driver.kill()
            driver_killed = True
            injected.append("killed the driver")
    elif fault == "worker+driver":  # once one student row is stored, the other trial mid-way
        if _wait(lambda: _students(run_dir) >= 1):
            driver.kill()
            driver_killed = True
            stored = _students(run_dir)  # both rows may land together: then no trial is cut mid-way
            injected.append(f"killed the driver ({stored} of {students} student rows stored)")
    elif fault == "node":
        if _wait(lambda: _checkpoints(run_dir) >= 1):
            node = cluster.nodes - 1
            injected.append(f"killed node {node} ({cluster.kill_node(node)} processes)")
    hung = False
    try:
        rc = driver.wait(timeout=900)
    except subprocess.TimeoutExpired:  # hung (a failed repetition): stopped, then resumed as a user would
        driver.kill()
        rc, hung = driver.wait(), True
    out = {"fault": fault, "injected": injected, "rc": rc, "hung": hung}
    if fault == "node":
        cluster.restart_node(cluster.nodes - 1)
    if driver_killed or rc != 0:  # finish the grid as a user would
        resume = cli("--resume", str(run_dir))
        out.update(rc=resume.returncode, output=tail(resume), stored_earlier=resume.stdout.count("[stored earlier]"))
    return out


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
    """Returns the totals, with each repetition's result and check under `repetitions_detail`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repetitions", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="one worker+driver repetition of a two-trial grid")
    args = ap.parse_args(argv)
    from bench.environment import quiet_ray_env

    quiet_ray_env()
    from bench.grid import grid_size
    from bench.localcluster import LocalCluster, ObjectStore
    from bench.spec import parse_spec
    from bench.storage import Location

    rng = random.Random(args.seed)
    reps = 1 if args.tiny else args.repetitions
    steps, every = (40, 10) if args.tiny else (30, 5)
    store = ObjectStore()
    cluster = LocalCluster(nodes=2, cpus_per_node=1).start()
    tmp = Path(tempfile.mkdtemp(prefix="kdbench-faults-"))
    totals: Counter = Counter()
    details, references = [], {}
    try:
        runs = Location.of(store.uri).join("runs")
        data = spec_data(str(runs), str(Location.of(store.uri).join("artifacts")), steps, ["ft", "seq_kd"], every)
        spec_file = tmp / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(data))
        spec = parse_spec(data)
        students = grid_size(spec)
        for i in range(reps):
            fault = "worker+driver" if args.tiny else rng.choice(FAULTS)
            run_dir = runs.join(f"rep-{i:02d}")
            t0 = time.time()
            try:
                result = repetition(fault, rng, cluster, spec_file, run_dir, tmp / f"rep-{i:02d}.log", students)
            except subprocess.TimeoutExpired as exc:  # a hung resume is a failed repetition, not the end
                result = {"fault": fault, "injected": [], "rc": None, "hung": True, "output": f"timed out: {exc}"}
            got = check(run_dir, spec, references)
            survived = (result.get("rc") == 0 and not result.get("hung") and not got["lost"] and not got["mismatched"]
                        and not got["duplicated"])
            totals.update(injections=len(result.get("injected") or []), survived=int(survived),
                          rows_lost=len(got["lost"]), rows_duplicated=got["duplicated"],
                          metric_mismatches=len(got["mismatched"]), resumed_from_checkpoint=got["resumed"])
            details.append({**result, **got, "run_dir": str(run_dir), "survived": survived})
            print(f"[{i + 1}/{reps}] {fault}: {'; '.join(result.get('injected') or []) or 'no injection (the grid ended first)'}; "
                  f"{'survived' if survived else 'FAILED'}{' (hung)' if result.get('hung') else ''} in {time.time() - t0:.0f}s (rows lost {len(got['lost'])}, "
                  f"duplicated {got['duplicated']}, metric mismatches {len(got['mismatched'])}, resumed from a "
                  f"checkpoint {got['resumed']})", flush=True)
    finally:
        cluster.stop()
        store.stop()
    print(f"\n{reps} repetition(s): injections {totals['injections']}, survived {totals['survived']}, rows lost "
          f"{totals['rows_lost']}, rows duplicated {totals['rows_duplicated']}, metric mismatches "
          f"{totals['metric_mismatches']}, trials resumed from a checkpoint {totals['resumed_from_checkpoint']}")
    return {**totals, "repetitions": reps, "repetitions_detail": details}


if __name__ == "__main__":
    main()
