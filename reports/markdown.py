"""`report.md`: the report as Markdown, for a README, a PR comment or a terminal.

Cells are HTML-escaped and pipes/newlines neutralised, since Markdown viewers render raw
HTML and an error message must neither run as markup nor break the table. Figures are linked
as the PNG files written next to the report; a column's best cell is in **bold**.
"""
from __future__ import annotations

import html
from pathlib import Path

from reports.content import Alert, FigureItem, ReportContent, Section
from reports.html_page import TITLE
from reports.tables import DisplayTable


def write_markdown(content: ReportContent, path: Path | str) -> Path:
    path = Path(path)
    lines = [f"# {TITLE}", ""]
    for run in content.runs:
        lines += [f"- **{k}**: {_esc(v)}" for k, v in run.items()]
        if run.spec_text:
            fence = "````" if "```" in run.spec_text else "```"
            lines += ["", f"<details><summary>spec of {_esc(run.run_id)}</summary>", "",
                      f"{fence}yaml", run.spec_text.rstrip("\n"), fence, "", "</details>"]
        lines.append("")
    lines += [_esc(content.summary), "", f"*How to read:* {_esc(content.how_to_read)}", ""]
    for section in content.sections:
        lines += _section(section, path.parent)
    lines += ["## Failed trials", ""]
    failed = DisplayTable("", content.failed, index=False)
    lines += [_table(failed) if len(content.failed) else "None.", ""]
    if content.failed_total > len(content.failed):
        lines += [f"*… and {content.failed_total - len(content.failed):,} more: every failed "
                  f"trial is in results.csv (status error).*", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _section(section: Section, out_dir: Path) -> list[str]:
    lines = [f"## {_esc(section.title)}", ""]
    for block in section.blocks:
        if isinstance(block, DisplayTable):
            if block.title:
                lines += [f"### {_esc(block.title)}", ""]
            lines += [_table(block), ""]
            if block.note:
                lines += [f"*{_esc(block.note)}*", ""]
        elif isinstance(block, Alert):
            lines += [f"> **⚠ {_esc(block.text)}**", ""]
        elif isinstance(block, FigureItem):
            p = Path(block.path)
            rel = p.name if p.parent.resolve() == out_dir.resolve() else str(p)
            lines += [f"![{_esc(block.title)}]({rel})", "", f"*{_esc(block.caption)}*", ""]
        else:
            lines += [_esc(str(block)), ""]
    return lines


def _table(table: DisplayTable) -> str:
    data = table.data.reset_index() if table.index else table.data
    safe = data.map(_esc)
    if table.bold is not None:
        offset = 1 if table.index else 0
        bold = table.bold.to_numpy()
        for i in range(len(safe)):
            for j in range(bold.shape[1]):
                if bold[i, j] and safe.iat[i, j + offset] != "—":
                    safe.iat[i, j + offset] = f"**{safe.iat[i, j + offset]}**"
    return pipe_table([_esc(c) for c in safe.columns], safe.to_numpy(dtype=object).tolist())


def pipe_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub pipe table of left-aligned text cells, padded as tabulate's "pipe" format pads
    them (each column at least its header + 2 wide), at a fraction of its cost on large
    tables: tabulate infers each column's type, which these text cells do not need."""
    widths = [max([len(h) + 2, *(len(r[j]) for r in rows)]) for j, h in enumerate(header)]
    colon = ":" if rows else "-"  # tabulate's marker of left alignment, absent without rows

    def line(cells) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join(colon + "-" * (w + 1) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _esc(value) -> str:
    text = html.escape(str(value), quote=False)
    return " ".join(text.split()).replace("|", "\\|")


__all__ = ["write_markdown"]
