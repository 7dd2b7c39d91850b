"""`report.html`: one self-contained file (inline CSS, figure as a base64 data URI), so it
opens from disk, survives e-mail or CI artifact upload, and needs no server.

Every piece of text from the runs (ids, task and method names, error messages) is
HTML-escaped: an error string is data, never markup.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import pandas as pd

from reports.content import ReportContent
from reports.meta import RunMeta, flatten

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem;
background:#f6f8fa;padding:.7rem 1rem;border-radius:6px;margin:.6rem 0}
.meta dt{font-weight:600;color:#555}.meta dd{margin:0}
.note{color:#555;font-size:.92rem}.summary{font-weight:600}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f0f3f6}td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
table.failed td:last-child{text-align:left;white-space:pre-wrap;font-family:monospace;
font-size:.82rem;max-width:60rem;color:#a40000}
img{max-width:100%;height:auto;border:1px solid #eee}
"""


def write_html(content: ReportContent, path: Path | str) -> Path:
    path = Path(path)
    title = "Knowledge-distillation benchmark report"
    parts = [f"<h1>{title}</h1>"]
    parts += [_run_block(run) for run in content.runs]
    parts.append(f'<p class="summary">{escape(content.summary)}</p>')
    parts.append(f'<p class="note"><b>How to read:</b> {escape(content.how_to_read)}</p>')
    if content.plot is not None:
        data = base64.b64encode(Path(content.plot).read_bytes()).decode("ascii")
        alt = escape(f"test {content.metric_name} vs. compression ratio")
        parts.append(f'<img src="data:image/png;base64,{data}" alt="{alt}">')
    if content.results:
        parts.append(f"<h2>Test {escape(content.metric_name)} by method and compression ratio</h2>")
        for task, table in content.results.items():
            parts += [f"<h3>{escape(task)}</h3>", _table(table, index=True)]
        parts += ["<h2>All successful results</h2>", _table(content.flat)]
    else:
        parts += ["<h2>Results</h2>", "<p>No successful results.</p>"]
    parts.append("<h2>Failed trials</h2>")
    parts.append(_table(content.failed, css="failed") if len(content.failed) else "<p>None.</p>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


def _run_block(run: RunMeta) -> str:
    items = [("run", run.run_id), ("spec", run.spec_name), ("started", run.started_at),
             ("finished", run.finished_at), ("duration", run.duration)]
    for title, values in (("hardware", run.hardware), ("versions", run.versions)):
        if values:
            items.append((title, ", ".join(f"{k} {v}" for k, v in flatten(values).items())))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items if v)
    return f'<dl class="meta">{rows}</dl>'


def _table(table: pd.DataFrame, index: bool = False, css: str = "") -> str:
    table = table.reset_index() if index else table
    return table.to_html(index=False, escape=True, border=0, classes=css or None, na_rep="—")
