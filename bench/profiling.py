"""Cost profiles of a run's models, measured after the grid, one model at a time.

Latency measured while other trials share the CPUs says more about the neighbours than about
the model. So trials only save their students, and once the grid is done the teacher and the
students of each task are profiled in turn, one Ray task each, one at a time — the same
threads, nothing else running — and one profile per model is written to `RUN_DIR/profiles/`
(never into the rows: a row, once written, is final). Each task runs in a fresh worker process
(`max_calls=1`): on a CPU, memory is the growth of the process's RSS, and a process that has
profiled a model reuses that model's freed memory, so every model after the first showed
almost none (measured: 0 MB for every student of a default run after its teacher's 319 MB).
A resumed run profiles only the students it has not profiled yet, with their teacher again. `bench.results.read_rows` joins them to the rows,
with each student's costs relative to its teacher's.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import PROFILES_DIR, STUDENTS_DIR, slug
from bench.storage import Location

PROFILE_CHOICES = ("one_seed", "all", "off")


def student_dir(run_dir, trial_key: str) -> Location:
    """Where a trial saves its student (kept after the run only with `storage.save_students`)."""
    return Location.of(run_dir).join(STUDENTS_DIR, slug(trial_key))


def models_to_profile(run_dir: Path, rows: list[dict], artifacts: dict[str, Any], which: str) -> list[dict[str, Any]]:
    """(trial key, task, model dir, teacher key) per model to profile: every task's teacher,
    then its students — all of them, or the lowest seed of each (method, ratio, init)."""
    if which == "off":
        return []
    jobs = []
    for task, art in artifacts.items():
        if art is None:
            continue
        if "teacher" in art["paths"]:  # an API teacher has no model to profile
            jobs.append({"trial_key": f"{task}|teacher", "task": task, "model_dir": art["paths"]["teacher"],
                         "teacher": None})
        students = [r for r in rows if r["role"] == "student" and r["task"] == task and r["status"] == "ok"
                    and student_dir(run_dir, r["trial_key"]).join("config.json").exists()]
        chosen: dict[tuple, dict] = {}
        for r in sorted(students, key=lambda r: r["seed"]):
            system = (r["method"], r["ratio"], r.get("student_init"))
            if which == "all" or system not in chosen:
                chosen[system if which != "all" else (*system, r["seed"])] = r
        jobs += [{"trial_key": r["trial_key"], "task": task, "model_dir": str(student_dir(run_dir, r["trial_key"])),
                  "teacher": f"{task}|teacher"} for r in chosen.values()]
    return jobs


def profile_models(jobs: list[dict[str, Any]], artifacts: dict[str, Any], eval_spec: dict[str, Any], *,
                   device: str, precision: str, threads: int,
                   teachers: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Profile every job's model in this process, in order (the body of a profiling task). A
    student's costs relative to its teacher are added when the teacher is among `jobs` or in
    `teachers` (profiles by trial key)."""
    import torch

    from bench.cost import profile_model, relative_costs
    from bench.data import encode, load_splits
    from bench.precision import autocast, autocast_dtype
    from bench.pretrained import load_model, load_tokenizer

    torch.set_num_threads(max(1, threads))
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    amp = autocast_dtype(precision)
    out: dict[str, dict[str, Any]] = {}
    from bench.artifacts import local_artifact

    for job in jobs:
        art = artifacts[job["task"]]
        model_dir = _local_model(job["model_dir"], job["teacher"] is None)
        tok = load_tokenizer(model_dir)  # a student may have its own tokenizer
        test = load_splits(local_artifact(art["paths"]["data"])).splits["test"][: eval_spec["profile_examples"]]
        sources = encode(tok, [r["source"] for r in test], art["lengths"]["max_source"])
        model = load_model(model_dir, "model to profile").to(dev).eval()
        with autocast(amp, dev):
            profile = profile_model(model, tok, sources, device=dev,
                                    num_beams=eval_spec["profile_num_beams"], batch_size=eval_spec["batch_size"],
                                    latency_examples=eval_spec["latency_examples"],
                                    max_new_tokens=art["lengths"]["max_target"])
        profile.update(profile_threads=threads, profile_pid=os.getpid())
        teacher = out.get(job["teacher"]) or (teachers or {}).get(job["teacher"])
        if job["teacher"] is not None and teacher is not None:
            profile["relative"] = relative_costs(profile, teacher)
        out[job["trial_key"]] = profile
        del model
    return out


def _local_model(where: str, is_artifact: bool) -> str:
    """A local directory of a model stored at `where` (an artifact, or a run's saved student)."""
    from bench.artifacts import local_artifact

    if is_artifact:
        return str(local_artifact(where))
    loc = Location.of(where)
    if loc.is_local:
        return str(loc.local_path)
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="kdbench-profile-"))
    loc.download_dir(target)
    return str(target)


def profile_run(run_dir: Path, rows: list[dict], artifacts: dict[str, Any], spec, say: Callable[[str], None]) -> int:
    """Profile the run's models not profiled yet, one at a time, each in a fresh Ray worker, and
    store the profiles; returns how many."""
    import ray

    done = read_profiles(run_dir)
    jobs = models_to_profile(run_dir, rows, artifacts, spec.eval.profile)
    pending = {j["teacher"] for j in jobs if j["teacher"] is not None and j["trial_key"] not in done}
    # a student is compared with its teacher as measured in the same session: the teacher again
    jobs = [j for j in jobs if j["trial_key"] not in done or j["trial_key"] in pending]
    if not jobs:
        return 0
    res = spec.resources
    threads = max(1, round(res.cpus_per_worker))
    task = ray.remote(max_calls=1)(profile_models).options(num_cpus=res.cpus_per_worker, max_retries=1,
                                                           num_gpus=1 if res.device == "cuda" else 0)
    say(f"profiling {len(jobs)} model(s) one at a time, each in a fresh process ({threads} thread(s), {res.device})")
    profiles: dict[str, dict[str, Any]] = {}
    for job in jobs:  # teachers first (models_to_profile), so that students find theirs
        teacher = {job["teacher"]: profiles[job["teacher"]]} if job["teacher"] in profiles else None
        done_now = ray.get(task.remote([job], artifacts, spec.eval.model_dump(), device=res.device,
                                       precision=res.precision, threads=threads, teachers=teacher))
        write_profiles(run_dir, done_now)  # stored as measured: a driver that dies keeps what it profiled
        profiles.update(done_now)
    for job in jobs:
        p = profiles[job["trial_key"]]
        speed = p.get("relative", {}).get("speedup_greedy")
        say(f"[profile] {job['trial_key']}: {p['latency_greedy_ms']:.1f} ms/example greedy (batch 1)"
            + (f", {speed:.2f}x the teacher's speed" if speed else ""))
    return len(jobs)


def write_profiles(run_dir, profiles: dict[str, dict[str, Any]]) -> None:
    for key, profile in profiles.items():
        Location.of(run_dir).join(PROFILES_DIR, f"{slug(key)}.json").write_json({"trial_key": key, **profile})


def read_profiles(run_dir) -> dict[str, dict[str, Any]]:
    loc = Location.of(run_dir).join(PROFILES_DIR)
    out = {}
    for data in loc.read_many(loc.files(".json")):
        try:
            profile = json.loads(data) if data is not None else None
        except ValueError:
            continue
        if isinstance(profile, dict) and "trial_key" in profile:
            out[profile.pop("trial_key")] = profile
    return out
