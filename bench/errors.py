"""Errors the CLI turns into exit codes, kept import-light so `kdbench list` and `validate`
load no storage or Ray code (a spec error, exit 2, is `bench.spec.SpecError`)."""
from __future__ import annotations


class RunStopped(RuntimeError):
    """The run stopped before its grid finished (e.g. the run dir became unwritable); every
    row already written is kept and `kdbench run --resume RUN_DIR` finishes it (exit 3)."""
