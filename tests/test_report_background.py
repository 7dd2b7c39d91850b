"""A report build shares its figures and flat files with one forked child (reports.background):
every task runs exactly once, by one of the two processes, and results come back in order.

The fork is only taken in a process that runs no other thread, and this test process has some
(Ray, servers of other tests), so those cases run in a fresh interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import reports.background as background
from reports.background import Alongside

TASK = """
import json, os, time
from reports.background import Alongside

def task(i, seconds=0.2):
    def run():
        time.sleep(seconds)
        return i, os.getpid()
    return run
"""


RUNNER = """
import contextlib, io, json, sys, textwrap
results = {}
for name, code in json.loads(sys.argv[1]).items():
    scope = {}
    exec(TASK, scope)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(textwrap.dedent(code), scope)
    results[name] = json.loads(printed.getvalue().strip().splitlines()[-1])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def fresh() -> dict:
    """Every scenario below, one after another, in one new single-threaded interpreter."""
    code = f"TASK = {TASK!r}\n" + RUNNER
    out = subprocess.run([sys.executable, "-c", code, json.dumps(SCENARIOS)], capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_child_and_this_process_share_the_tasks_and_results_keep_their_order(fresh):
    got = fresh["test_the_child_and_this_process_share_the_tasks_and_results_keep_their_order"]
    assert [i for i, _ in got["results"]] == list(range(8))
    pids = {pid for _, pid in got["results"]}
    assert got["me"] in pids and len(pids) == 2


def test_this_process_takes_nothing_the_child_already_did(fresh):
    got = fresh["test_this_process_takes_nothing_the_child_already_did"]
    assert [i for i, _ in got["results"]] == list(range(4))
    assert all(pid != got["me"] for _, pid in got["results"])  # the child did them


def test_a_task_that_fails_in_the_child_raises_here_with_the_childs_traceback(fresh):
    got = fresh["test_a_task_that_fails_in_the_child_raises_here_with_the_childs_traceback"]
    assert got["raised"] == "no such column"
    assert any("in a forked child" in note for note in got["notes"])


def test_results_twice_give_the_same_and_run_nothing_again(fresh):
    got = fresh["test_results_twice_give_the_same_and_run_nothing_again"]
    assert got["first"] == got["second"] == list(range(6)) and got["again"] == 0


def test_a_task_failing_here_stops_the_child(fresh):
    got = fresh["test_a_task_failing_here_stops_the_child"]
    assert got["raised"] == "'pareto'" and got["seconds"] < 10 and not got["alive"]


def test_blas_threads_are_never_raised(fresh):
    got = fresh["test_blas_threads_are_never_raised"]
    assert got["inside"] == min(got["before"], max(1, got["cores"] - 1)) and got["after"] == got["before"]


def test_cancel_stops_the_child(fresh):
    got = fresh["test_cancel_stops_the_child"]
    assert got["seconds"] < 10 and not got["alive"]


def test_with_another_thread_running_every_task_runs_here():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        results = Alongside([lambda i=i: (i, os.getpid()) for i in range(3)], "listing").results()
    finally:
        stop.set()
        other.join()
    assert results == [(0, os.getpid()), (1, os.getpid()), (2, os.getpid())]


def test_a_report_built_alongside_a_child_is_the_one_built_in_order(tmp_path):
    """report_scale's tiny run (60 rows), reported in a fresh interpreter (the fork taken), then again here
    with another thread running (every task in this process): the same files, byte for byte
    (results.json: but for its build date)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = tmp_path / "run"
    code = (f"from pathlib import Path; from benchmarks import report_scale; from reports import build_report; "
            f"import reports.background as b; report_scale.make_run(Path({str(run)!r}), 60, 20); "
            f"build_report([Path({str(run)!r})]); print('forked:', b.can_fork())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("forked: True")  # the child was taken there
    from reports import build_report

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        build_report([run], out_dir=tmp_path / "here")
    finally:
        stop.set()
        other.join()
    forked, here = run / "report", tmp_path / "here"
    names = sorted(p.name for p in forked.iterdir() if p.is_file())
    assert names == sorted(p.name for p in here.iterdir() if p.is_file())
    assert {"report.html", "results.csv", "summary.csv", "results.json", "quality_vs_ratio.png"} <= set(names)
    for name in names:
        if name == "results.json":
            a, b = (json.loads((d / name).read_text()) for d in (forked, here))
            a["date"] = b["date"] = None
            assert a == b
        else:
            assert (forked / name).read_bytes() == (here / name).read_bytes(), name


# The contract on both paths, the fork forced in this process too (its other threads are idle
# here): values and files come back, an exception keeps its type, a cancelled child writes nothing.

@pytest.fixture(params=["fork", "in order"])
def path(request, monkeypatch):
    monkeypatch.setattr(background, "can_fork", lambda: request.param == "fork")
    return request.param


def test_values_come_back_and_files_written_are_there(path, tmp_path):
    def work(i):
        def run():
            (tmp_path / f"figure{i}.png").write_bytes(b"png")
            return {"caption": f"ok {i}"}
        return run

    results = Alongside([work(i) for i in range(3)], "drawing the figures").results()
    assert results == [{"caption": "ok 0"}, {"caption": "ok 1"}, {"caption": "ok 2"}]
    assert all((tmp_path / f"figure{i}.png").read_bytes() == b"png" for i in range(3))


def test_a_tasks_exception_is_raised_with_its_type(path):
    def work():
        raise KeyError("quality_vs_ratio")

    with pytest.raises(KeyError, match="quality_vs_ratio"):
        Alongside([work], "drawing the figures").results()


def test_a_cancelled_child_writes_nothing(monkeypatch, tmp_path):
    """A build whose statistics failed stops its child: no files appear after it."""
    monkeypatch.setattr(background, "can_fork", lambda: True)

    def work():
        time.sleep(1)
        (tmp_path / "late.png").write_bytes(b"png")

    job = Alongside([work], "drawing the figures")
    job.cancel()
    time.sleep(1.5)
    assert not (tmp_path / "late.png").exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.results()


SCENARIOS = {  # test name -> code run in the fresh interpreter (after TASK); it prints one JSON line
    "test_the_child_and_this_process_share_the_tasks_and_results_keep_their_order": """
        results = Alongside([task(i) for i in range(8)], "sleeping").results()  # at once: both take tasks
        print(json.dumps({"results": results, "me": os.getpid()}))
    """,
    "test_this_process_takes_nothing_the_child_already_did": """
        alongside = Alongside([task(i, 0.01) for i in range(4)], "sleeping")
        while not alongside._recv.poll(30):  # this process's own work, until the child is done
            pass
        print(json.dumps({"results": alongside.results(), "me": os.getpid()}))
    """,
    "test_a_task_that_fails_in_the_child_raises_here_with_the_childs_traceback": """
        def broken():
            raise ValueError("no such column")

        alongside = Alongside([broken, task(1)], "drawing")
        alongside._recv.poll(30)  # the child claimed the first task and reported its error
        try:
            alongside.results()
            print(json.dumps({"raised": None}))
        except ValueError as err:
            print(json.dumps({"raised": str(err), "notes": getattr(err, "__notes__", [])}))
    """,
    "test_results_twice_give_the_same_and_run_nothing_again": """
        calls = []
        def counted(i):
            def run():
                calls.append(i)  # this process's list: the child's appends stay in the child
                return i
            return run
        alongside = Alongside([counted(i) for i in range(6)], "counting")
        first = alongside.results()
        mine = len(calls)
        print(json.dumps({"first": first, "second": alongside.results(), "again": len(calls) - mine}))
    """,
    "test_a_task_failing_here_stops_the_child": """
        def broken():
            raise KeyError("pareto")
        alongside = Alongside([task(0, 30.0), broken], "drawing")
        time.sleep(0.5)  # the child is in its 30-s task: this process takes the second
        start = time.perf_counter()
        try:
            alongside.results()
        except KeyError as err:
            print(json.dumps({"raised": str(err), "seconds": time.perf_counter() - start,
                              "alive": alongside._proc.is_alive()}))
    """,
    "test_blas_threads_are_never_raised": """
        import os
        from threadpoolctl import threadpool_info
        def blas():
            return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        before = blas()
        alongside = Alongside([task(0, 0.5)], "sleeping")
        with alongside.leaving_a_core():
            inside = blas()
        alongside.results()
        print(json.dumps({"before": before, "inside": inside, "after": blas(),
                          "cores": len(os.sched_getaffinity(0))}))
    """,
    "test_cancel_stops_the_child": """
        alongside = Alongside([task(0, 30.0)], "sleeping")
        start = time.perf_counter()
        alongside.cancel()
        print(json.dumps({"seconds": time.perf_counter() - start, "alive": alongside._proc.is_alive()}))
    """,
}
