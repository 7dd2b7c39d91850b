"""`report.html`: one self-contained file (inline CSS, figures as base64 data URIs), so it
opens from disk, survives e-mail or CI artifact upload, and needs no server.

Every piece of text from the runs (ids, task and method names, error messages, the spec) is
HTML-escaped: an error string is data, never markup.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from reports.content import Alert, FigureItem, ReportContent, Section
from reports.meta import RunMeta
from reports.tables import DisplayTable

TITLE = "Knowledge-distillation benchmark report"
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
h3{margin:1.2rem 0 .3rem;font-size:1.05rem}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem;
background:#f6f8fa;padding:.7rem 1rem;border-radius:6px;margin:.6rem 0}
.meta dt{font-weight:600;color:#555}.meta dd{margin:0}
details.spec{margin:.2rem 0 1rem;font-size:.85rem}details.spec pre{background:#f6f8fa;
padding:.6rem;overflow-x:auto;max-height:24rem}
.note{color:#555;font-size:.88rem;margin:.2rem 0 1rem}.summary{font-weight:600}
table{border-collapse:collapse;margin:.5rem 0 .3rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f0f3f6}td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}td.text{text-align:left}td.best{font-weight:700;background:#e8f4ea}
table.failed td:last-child{text-align:left;white-space:pre-wrap;font-family:monospace;
font-size:.82rem;max-width:60rem;color:#a40000}
figure{margin:1rem 0}figcaption{color:#555;font-size:.88rem}
img{max-width:100%;height:auto;border:1px solid #eee}
.scroll{overflow-x:auto;max-width:100%}
.alert{border-left:6px solid #c0392b;background:#fdecea;color:#7b1d12;font-weight:600;
padding:.6rem .9rem;margin:.6rem 0;border-radius:4px}
"""


def write_html(content: ReportContent, path: Path | str) -> Path:
    path = Path(path)
    parts = [f"<h1>{TITLE}</h1>"]
    parts += [_run_block(run) for run in content.runs]
    parts.append(f'<p class="summary">{escape(content.summary)}</p>')
    parts.append(f'<p class="note"><b>How to read:</b> {escape(content.how_to_read)}</p>')
    parts += [_section(s) for s in content.sections]
    parts.append('<section><h2>Failed trials</h2>')
    if len(content.failed):
        parts.append(_table(DisplayTable("", content.failed, index=False, css="failed")))
    else:
        parts.append("<p>None.</p>")
    if content.failed_total > len(content.failed):
        parts.append(f'<p class="note">… and {content.failed_total - len(content.failed):,} '
                     f'more: every failed trial is in results.csv (status error).</p>')
    parts.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{TITLE}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


def _run_block(run: RunMeta) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in run.items())
    block = f'<dl class="meta">{rows}</dl>'
    if run.spec_text:
        block += (f'<details class="spec"><summary>spec of {escape(run.run_id)}</summary>'
                  f"<pre>{escape(run.spec_text)}</pre></details>")
    return block


def _section(section: Section) -> str:
    parts = [f"<section><h2>{escape(section.title)}</h2>"]
    for block in section.blocks:
        if isinstance(block, DisplayTable):
            if block.title:
                parts.append(f"<h3>{escape(block.title)}</h3>")
            parts.append(_table(block))
            if block.note:
                parts.append(f'<p class="note">{escape(block.note)}</p>')
        elif isinstance(block, Alert):
            parts.append(f'<p class="alert" role="alert">⚠ {escape(block.text)}</p>')
        elif isinstance(block, FigureItem):
            parts.append(_figure(block))
        else:
            parts.append(f"<p>{escape(str(block))}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _figure(fig: FigureItem) -> str:
    data = base64.b64encode(Path(fig.path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(fig.title)}">'
            f"<figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)}</figcaption>"
            "</figure>")


def _table(table: DisplayTable) -> str:
    data = table.data.reset_index() if table.index else table.data
    bold = table.bold.to_numpy() if table.bold is not None else None
    css = f' class="{escape(table.css)}"' if table.css else ""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in data.columns)
    body = []
    offset = 1 if table.index else 0
    for i, row in enumerate(data.itertuples(index=False)):
        cells = []
        for j, value in enumerate(row):
            best = bold is not None and j >= offset and bool(bold[i, j - offset])
            classes = (["best"] if best else []) + (["text"] if _is_text(value) else [])
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # Wide tables (the per-trial listing) scroll inside their box, not the whole page.
    return (f'<div class="scroll"><table{css}><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def _is_text(value) -> bool:
    """Words (names, reasons) are left-aligned; numbers, intervals and "—" stay right."""
    text = str(value)
    return bool(text) and text[0].isalpha()
