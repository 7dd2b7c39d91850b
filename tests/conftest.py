"""Shared fixtures: a tiny but real spec (real tasks, tokenizer, BART models, metrics)."""
from __future__ import annotations

import os

import pytest

from bench.environment import quiet_ray_env

quiet_ray_env()
# one Ray temp dir per xdist worker: the controller's value is inherited by its workers, so a
# worker replaces it (a RAY_TMPDIR the user set is kept)
_RAY_TMP = "/tmp/kdbench-test-ray-"
if os.environ.get("RAY_TMPDIR", _RAY_TMP).startswith(_RAY_TMP):
    os.environ["RAY_TMPDIR"] = _RAY_TMP + os.environ.get("PYTEST_XDIST_WORKER", "main")
# Keep idle Ray workers alive (Ray kills those above one per CPU after a second): the suite's
# runs share one Ray session, and a stage job that finds a warm worker skips its start-up and
# imports (~6 s each time). Only the worker pool changes; every test still starts its trials.
os.environ.setdefault("RAY_num_workers_soft_limit", "16")


def uses_shared_ray(item) -> bool:
    """A test on the session's in-process Ray: it asks for `local_ray`, or it is marked slow and
    not `own_processes` (its own Ray cluster in subprocesses, or none)."""
    if "local_ray" in item.fixturenames:
        return True
    return bool(item.get_closest_marker("slow")) and not item.get_closest_marker("own_processes")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups set here
def pytest_collection_modifyitems(config, items):
    """Two lanes, side by side in pytest-xdist's two workers (`-n 2 --dist loadgroup`,
    pyproject.toml): the tests on the shared in-process Ray, in file order in one worker (one Ray
    session for all of them), and every other test, in file order in the other, which never starts
    Ray in its process. Alone, each lane keeps the two CPUs only half to three quarters busy
    (single-threaded Python; Ray's process starts). With `-n 0` the same order runs in one
    process, the Ray tests last."""
    on_ray = {item.nodeid: uses_shared_ray(item) for item in items}
    items.sort(key=lambda item: on_ray[item.nodeid])
    for item in items:
        item.add_marker(pytest.mark.xdist_group("ray" if on_ray[item.nodeid] else "beside"))


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "ray" in sys.modules:  # the session's shared local Ray (`local_ray`)
        sys.modules["ray"].shutdown()


@pytest.fixture
def local_ray():
    """A local Ray, started as `kdbench run` starts one (`bench.runner.init_ray`) and shared by
    every test that asks for it: a start and stop cost seconds, paid once instead of per module.
    A test that needs a fresh Ray, or none, shuts it down; the next one that asks starts it again."""
    from bench.runner import init_ray

    init_ray()


def started_actor_classes() -> set[str]:
    """Class names of every actor this Ray session has started (alive or dead), read from the GCS
    (the State API needs the dashboard, which kdbench's Ray runs without)."""
    from ray._private.state import actors

    return {a["ActorClassName"] for a in actors().values()}


def actor_ids(class_name: str) -> set[str]:
    """Ids of every actor of this class this Ray session has started (alive or dead)."""
    from ray._private.state import actors

    return {i for i, a in actors().items() if a["ActorClassName"] == class_name}


def pytest_sessionstart(session):
    """Build the binary data fixtures (Parquet, in the Hub datasets' layouts) if missing: once, in
    the controlling process (it runs before xdist starts its workers), not in every worker."""
    if hasattr(session.config, "workerinput"):
        return
    from tests.fixtures.make_fixtures import ensure_written

    ensure_written()


def tiny_spec_dict(tasks=("d2t",), methods=("ft", "word_kd", "seq_kd", "joint_teaching"), ratios=(2.0,)):
    teacher = {"model": {"arch": "t5", "d_model": 32, "ffn_dim": 64, "encoder_layers": 1,
                         "decoder_layers": 1, "heads": 2},
               "train": {"steps": 8, "batch_size": 8, "lr": 0.003, "warmup_steps": 2}}
    return {
        "name": "tiny",
        "tasks": [{"name": t, "sizes": {"labeled": 24, "unlabeled": 48, "dev": 4, "test": 8,
                                        "teacher_pool": 24, "references": 2},
                   "teacher": teacher} for t in tasks],
        "ratios": list(ratios),
        "methods": list(methods),
        "seeds": [0],
        "tokenizer": {"vocab_size": 300},
        "student_train": {"steps": 4, "batch_size": 4, "lr": 0.003, "warmup_steps": 1},
        "pseudo_targets": {"num_beams": 2, "batch_size": 32},
        "eval": {"num_beams": 1, "batch_size": 8, "latency_examples": 2},
    }


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory):
    """Shared stages of the tiny d2t spec, built once for the whole session."""
    from bench.spec import parse_spec
    from bench.stages import prepare_task

    spec = parse_spec(tiny_spec_dict())
    root = tmp_path_factory.mktemp("artifacts")
    art = prepare_task(spec, spec.tasks[0], str(root), say=lambda msg: None)
    return spec, art, root


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    """A small byte-level BPE tokenizer (400 tokens) for models built from configs."""
    from bench.pretrained import load_tokenizer
    from bench.tokenizer import train_tokenizer

    texts = ["name[The Eagle], food[French] -> The Eagle serves French food near the river."] * 20
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, 400, d)
    return load_tokenizer(d)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback (moto in server mode) for the whole session."""
    from bench.localcluster import ObjectStore

    store = ObjectStore()
    yield store
    store.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket; yields its storage URI (s3://bucket?endpoint_override=…)."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", f"kdb-{request.node.name.lower()}")[:40].strip("-") + "-" + uuid.uuid4().hex[:6]
    return s3_server.new_bucket(name)
