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

from pathlib import Path

from reports.content import REPORT_DIR, collect
from reports.html_page import write_html
from reports.latex import write_latex
from reports.markdown import write_markdown
from reports.tables import seed_summary

__all__ = ["build_report"]


def build_report(run_dirs: list[Path | str], out_dir: Path | str | None = None) -> Path:
    """Write report.html (self-contained), report.md, tables.tex, the figures (PNG) and the
    flat results (results.csv, results.parquet; summary.csv: mean, std, n and 95% t-interval
    over seeds of every task × method × ratio × metric; learning_curves.csv) into `out_dir`
    (default: the first run dir's `report/`, whose `.cache/` keeps every row's per-example
    scores for the next build); return the path of report.html."""
    dirs = [Path(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    if not dirs:
        raise ValueError("build_report needs at least one run dir")
    out = Path(out_dir) if out_dir is not None else dirs[0] / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    content = collect(dirs, out)
    content.frame.to_csv(out / "results.csv", index=False)
    content.frame.to_parquet(out / "results.parquet", index=False)
    seed_summary(content.frame).to_csv(out / "summary.csv", index=False)
    write_markdown(content, out / "report.md")
    write_latex(content, out / "tables.tex")
    return write_html(content, out / "report.html")
