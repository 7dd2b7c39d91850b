"""`reports.background`: the figures of a report are drawn in a forked child while the parent
computes the statistics. Its contract, on both paths (forked, and in order where a fork is
unsafe): the work's value comes back, its exception is raised with its own type, and what the
child wrote is on disk."""
import os

import pytest

import reports.background as background


@pytest.fixture(params=["fork", "in order"])
def path(request, monkeypatch):
    # forced either way: the suite's process may hold other threads (a Ray session, a server)
    monkeypatch.setattr(background, "can_fork", lambda: request.param == "fork")
    return request.param


def test_the_value_comes_back_and_files_written_are_there(path, tmp_path):
    def work():
        (tmp_path / "figure.png").write_bytes(b"png")
        return [os.getpid(), {"caption": "ok"}]

    job = background.Background(work, "drawing the figures")
    pid, payload = job.result()
    assert payload == {"caption": "ok"} and (tmp_path / "figure.png").read_bytes() == b"png"
    assert (pid != os.getpid()) == (path == "fork")
    assert job.result()[1] == payload  # a second call gives the same


def test_the_works_exception_is_raised_with_its_type(path):
    def work():
        raise KeyError("quality_vs_ratio")

    job = background.Background(work, "drawing the figures")
    with pytest.raises(KeyError, match="quality_vs_ratio") as err:
        job.result()
    if path == "fork":
        assert "raised while drawing the figures, in a forked child" in "\n".join(err.value.__notes__)


def test_a_cancelled_child_writes_nothing(monkeypatch, tmp_path):
    """A build whose statistics failed stops its figure child: no files appear after it."""
    import time

    monkeypatch.setattr(background, "can_fork", lambda: True)

    def work():
        time.sleep(1)
        (tmp_path / "late.png").write_bytes(b"png")

    job = background.Background(work, "drawing the figures")
    job.cancel()
    time.sleep(1.5)
    assert not (tmp_path / "late.png").exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result()
