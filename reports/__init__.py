"""Reports: stored result rows → tidy DataFrame → tables, plots, Markdown and HTML."""
from __future__ import annotations

from pathlib import Path

from reports.content import collect
from reports.html_page import write_html
from reports.markdown import write_markdown
from reports.plots import PLOT_FILE

__all__ = ["build_report"]

REPORT_DIR = "report"


def build_report(run_dirs: list[Path | str], out_dir: Path | str | None = None) -> Path:
    """Write report.html, report.md, results.csv and the figure into `out_dir` (default:
    the first run dir's `report/`) and return the path of report.html."""
    dirs = [Path(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    if not dirs:
        raise ValueError("build_report needs at least one run dir")
    out = Path(out_dir) if out_dir is not None else dirs[0] / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    content = collect(dirs, out / PLOT_FILE)
    content.frame.to_csv(out / "results.csv", index=False)
    write_markdown(content, out / "report.md")
    return write_html(content, out / "report.html")
