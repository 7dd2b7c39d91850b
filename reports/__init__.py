"""Reports: stored result rows → tidy DataFrame → statistics, tables, seaborn figures →
HTML, Markdown, LaTeX, CSV and Parquet. Reads only stored results, so a report can be
rebuilt any time, anywhere (`kdbench report RUN_DIR [RUN_DIR ...]`).

The data flows one way: rows (`frame`) → per-example statistics of the stored outputs
(`metric_stats`, cached by `score_store`) → cells and comparisons (`significance`, on the
two-level bootstrap of `bootstrap`) → findings of the run's study (`findings`), teacher checks
(`teacher_check`), compute-matched view (`compute`) → `content` (everything a report shows) →
renderers (`markdown`, `html_page`, `latex`).
"""
from __future__ import annotations

import contextlib
import gc
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.storage import Location

from reports.content import REPORT_DIR, collect
from reports.html_page import write_html
from reports.latex import write_latex
from reports.markdown import write_markdown
from reports.score_store import CACHE_DIR

__all__ = ["build_report"]


def build_report(run_dirs: list[Path | str], out_dir: Path | str | None = None) -> Path | str:
    """Write report.html (self-contained), report.md, tables.tex, the figures (PNG) and the
    flat results (results.csv, results.parquet; summary.csv: mean, std, n and 95% t-interval
    over seeds of every task × method × ratio × metric; learning_curves.csv) into `out_dir`
    (default: the first run dir's `report/`, whose `.cache/` keeps every row's per-example
    scores for the next build); return the path of report.html."""
    dirs = [_run_dir(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path, Location)) else run_dirs)]
    if not dirs:
        raise ValueError("build_report needs at least one run dir")
    target = Location.of(out_dir) if out_dir is not None else Location.of(dirs[0]).join(REPORT_DIR)
    if not target.is_local:  # a run on an object store: build here, then upload the folder
        with tempfile.TemporaryDirectory(prefix="kdbench-report-") as tmp:
            cache = target.join(CACHE_DIR.as_posix())
            if cache.exists():  # the last build's per-example scores, as a local report keeps them
                cache.download_dir(Path(tmp) / CACHE_DIR)
            _build(dirs, Path(tmp))
            target.upload_dir(Path(tmp))
        return str(target.join("report.html"))
    return _build(dirs, target.local_path)


def _run_dir(d) -> Path | str:
    """A local run dir as a Path, a storage URI as its string."""
    loc = Location.of(d)
    return loc.local_path if loc.is_local else loc.uri


def _build(dirs: list, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with _collector_paused():
        content = collect(dirs, out)  # also writes the flat files and the figures
        write_markdown(content, out / "report.md")
        write_latex(content, out / "tables.tex")
        return write_html(content, out / "report.html")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off for one build (its forked child included): a build of
    10,000 rows allocates millions of objects, which set off full collections that scan them
    all (0.5–1 s of a 7–10 s build), while the little it leaves in cycles (a few figures) is
    freed by the next collection after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
