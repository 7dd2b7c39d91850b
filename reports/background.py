"""Run one part of a report build in a forked child while this process does another.

A cold build of a large run spends about as long drawing its figures (matplotlib, a fixed
cost) as computing its statistics (reading every row's per-example scores); the two need
nothing from each other, so on a machine with two cores they overlap. A fork inherits the
loaded modules and the data already in memory — nothing is imported again or pickled on the
way in, only the small result comes back through a pipe.

Forking copies only the calling thread, so it is done only on Linux and only when this process
runs no other Python thread (a Ray driver, or an interim report built in a thread, has them):
otherwise the work runs here, in order, with the same result.
"""
from __future__ import annotations

import multiprocessing
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1


class Background(Generic[T]):
    """`work()` started now; `result()` waits for it and returns its value, or raises its
    exception (with the child's traceback as a note when it ran in one)."""

    def __init__(self, work: Callable[[], T], what: str):
        self.what = what
        self._outcome: tuple[str, Any] | None = None
        self._proc = None
        if not can_fork():
            try:
                self._outcome = ("ok", work())
            except Exception as err:  # raised by result(), as from a child
                self._outcome = ("error", err)
            return
        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)

        def child() -> None:
            try:
                send.send(("ok", work()))
            except Exception as err:  # noqa: BLE001 - everything goes back to the parent
                err.add_note(f"(raised while {what}, in a forked child:)\n{traceback.format_exc()}")
                try:
                    send.send(("error", err))
                except Exception:  # an exception that cannot be pickled: its text then
                    send.send(("error", RuntimeError(f"{what} failed: {traceback.format_exc()}")))

        self._proc = ctx.Process(target=child, name=f"kdbench-{what.replace(' ', '-')}", daemon=True)
        self._proc.start()
        send.close()

    def cancel(self) -> None:
        """Stop the child, if one still runs (its result is no longer wanted)."""
        if self._proc is not None and self._outcome is None:
            self._proc.terminate()
            self._proc.join()
            self._recv.close()
            self._outcome = ("error", RuntimeError(f"{self.what}: cancelled"))

    def result(self) -> T:
        if self._outcome is None:
            try:
                self._outcome = self._recv.recv()
            except EOFError:
                self._proc.join()
                self._outcome = ("error", RuntimeError(f"{self.what}: the child process died (exit code "
                                                       f"{self._proc.exitcode})"))
            finally:
                self._recv.close()
                self._proc.join()
        status, value = self._outcome
        if status == "error":
            raise value
        return value
