"""Share a report build's independent tasks with a forked child while this process does its own
work.

A build computes its statistics (reading every row's per-example scores: long on a cold
build, short once they are cached) and, needing none of them, writes the flat files and draws
the figures (matplotlib: a fixed cost of seconds on a large run). `Alongside(tasks)` forks one
child that does the tasks in order; when this process is done with its own work, `results()`
takes the tasks the child has not started, so both cores draw when the statistics came from
the cache and the child alone draws while they are computed. A fork inherits the loaded
modules and the data in memory — nothing is imported again or pickled on the way in, only the
small results come back through a pipe. While the child runs, this process's BLAS leaves it a
core (`leaving_a_core`): OpenBLAS's threads spin, and one of them competing with the child
for a core made a cold build of 10,000 rows ~8% slower.

Forking copies only the calling thread, so it is done only on Linux and only when this process
runs no other Python thread (a Ray driver, or an interim report built in a thread, has them):
otherwise `results()` does every task here, in order, with the same results.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1


class Alongside(Generic[T]):
    """`tasks` shared with a forked child, which starts on them now (`what` names them in
    errors; without a fork they all run in `results()`). `results()` returns every task's value
    in order, or raises the exception that stopped them (with the child's traceback as a note
    when it was raised there); later calls give the same."""

    def __init__(self, tasks: Sequence[Callable[[], T]], what: str):
        self.tasks, self.what = list(tasks), what
        self._proc = None
        self._outcome: tuple[str, Any] | None = None
        if not can_fork():
            return
        ctx = multiprocessing.get_context("fork")
        try:
            self._next = ctx.Value("i", 0)  # the index of the next task nobody has claimed
        except OSError:  # no POSIX semaphores here (e.g. no writable /dev/shm): every task in results()
            return
        self._recv, send = ctx.Pipe(duplex=False)

        def child() -> None:
            done: dict[int, Any] = {}
            try:
                while (i := self._claim()) is not None:
                    done[i] = self.tasks[i]()
                send.send(("ok", done))
            except Exception as err:  # noqa: BLE001 - everything goes back to the parent
                err.add_note(f"(raised while {what}, in a forked child:)\n{traceback.format_exc()}")
                try:
                    send.send(("error", err))
                except Exception:  # an exception that cannot be pickled: its text then
                    send.send(("error", RuntimeError(f"{what} failed: {traceback.format_exc()}")))

        self._proc = ctx.Process(target=child, name=f"kdbench-{what.replace(' ', '-')}", daemon=True)
        self._proc.start()
        send.close()

    @contextlib.contextmanager
    def leaving_a_core(self) -> Iterator[None]:
        """While a child runs, this process's BLAS threads at most one fewer than its cores
        (never more threads than they had)."""
        if self._proc is None:
            yield
            return
        from threadpoolctl import threadpool_info, threadpool_limits

        have = max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1)
        limit = max(1, len(os.sched_getaffinity(0)) - 1)
        if limit >= have:
            yield
            return
        with threadpool_limits(limits=limit, user_api="blas"):
            yield

    def _claim(self) -> int | None:
        with self._next.get_lock():
            i = self._next.value
            if i >= len(self.tasks):
                return None
            self._next.value = i + 1
            return i

    def cancel(self) -> None:
        """Stop the child, if one still runs (the results are no longer wanted)."""
        if self._outcome is None:
            self._outcome = ("error", RuntimeError(f"{self.what}: cancelled"))
        self._stop()

    def results(self) -> list[T]:
        if self._outcome is None:
            try:
                self._outcome = ("ok", self._run())
            except Exception as err:
                self._outcome = ("error", err)
        status, value = self._outcome
        if status == "error":
            raise value
        return value

    def _run(self) -> list[T]:
        if self._proc is None:
            return [task() for task in self.tasks]
        mine = {}
        try:
            # this process's share, until the child has finished or failed
            while not self._recv.poll() and (i := self._claim()) is not None:
                mine[i] = self.tasks[i]()
            try:
                status, value = self._recv.recv()
            except EOFError:
                self._proc.join()
                status, value = "error", RuntimeError(f"{self.what}: the child process died (exit code "
                                                      f"{self._proc.exitcode})")
        finally:
            self._stop()  # after an error here (or Ctrl-C), the child's work is not wanted either
        if status == "error":
            raise value
        done = {**value, **mine}
        return [done[i] for i in range(len(self.tasks))]

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()
            self._recv.close()
            self._proc.join()
