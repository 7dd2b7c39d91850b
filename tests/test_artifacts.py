import threading
import time

from bench.artifacts import ArtifactStore, content_hash


def test_hash_depends_on_content_not_order():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_built_once_then_reused(tmp_path):
    calls = []

    def build(d):
        calls.append(d)
        (d / "x.txt").write_text("hello")

    store = ArtifactStore(tmp_path)
    first = store.get_or_build("stage", {"k": 1}, build)
    second = store.get_or_build("stage", {"k": 1}, build)
    other = store.get_or_build("stage", {"k": 2}, build)
    assert not first.reused and second.reused and not other.reused
    assert first.path == second.path != other.path
    assert len(calls) == 2
    assert (second.path / "x.txt").read_text() == "hello"
    assert second.meta()["key"] == {"k": 1}


def test_concurrent_builders_build_once(tmp_path):
    calls = []

    def build(d):
        calls.append(1)
        time.sleep(0.3)
        (d / "done").write_text("1")

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        ArtifactStore(tmp_path).get_or_build("s", {"k": 0}, build))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sum(not r.reused for r in results) == 1 and len({r.path for r in results}) == 1


def test_failed_build_leaves_nothing_and_retries(tmp_path):
    store = ArtifactStore(tmp_path)

    def bad(d):
        (d / "half").write_text("x")
        raise RuntimeError("crash")

    try:
        store.get_or_build("s", {"k": 0}, bad)
    except RuntimeError:
        pass
    art = store.get_or_build("s", {"k": 0}, lambda d: (d / "ok").write_text("1"))
    assert not art.reused and (art.path / "ok").exists() and not (art.path / "half").exists()
