"""`report.md`: the report as Markdown, for a README, a PR comment or a terminal.

Cells are HTML-escaped and pipes/newlines neutralised, since Markdown viewers render raw
HTML and an error message must neither run as markup nor break the table.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from reports.content import ReportContent
from reports.meta import flatten


def write_markdown(content: ReportContent, path: Path | str) -> Path:
    path = Path(path)
    lines = ["# Knowledge-distillation benchmark report", ""]
    for run in content.runs:
        lines += _run_lines(run)
    lines += [_esc(content.summary), "", f"*How to read:* {_esc(content.how_to_read)}", ""]
    if content.plot is not None:
        rel = Path(content.plot).name if Path(content.plot).parent == path.parent else content.plot
        lines += [f"![test {content.metric_name} vs. compression ratio]({rel})", ""]
    if content.results:
        lines += [f"## Test {content.metric_name} by method and compression ratio", ""]
        for task, table in content.results.items():
            lines += [f"### {_esc(task)}", "", _table(table, index=True), ""]
        lines += ["## All successful results", "", _table(content.flat), ""]
    else:
        lines += ["## Results", "", "No successful results.", ""]
    lines += ["## Failed trials", ""]
    lines += [_table(content.failed) if len(content.failed) else "None.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _run_lines(run) -> list[str]:
    items = [("run", run.run_id), ("spec", run.spec_name), ("started", run.started_at),
             ("finished", run.finished_at), ("duration", run.duration)]
    lines = [f"- **{k}**: {_esc(v)}" for k, v in items if v]
    for title, values in (("hardware", run.hardware), ("versions", run.versions)):
        if values:
            pairs = ", ".join(f"{k} {v}" for k, v in flatten(values).items())
            lines.append(f"- **{title}**: {_esc(pairs)}")
    return lines + [""]


def _table(table: pd.DataFrame, index: bool = False) -> str:
    safe = (table.reset_index() if index else table).map(_esc)
    safe.columns = [_esc(c) for c in safe.columns]
    return safe.to_markdown(index=False, disable_numparse=True)


def _esc(value) -> str:
    text = html.escape(str(value), quote=False)
    return " ".join(text.split()).replace("|", "\\|")
