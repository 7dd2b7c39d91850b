"""`tables.tex`: the report's tables as LaTeX (booktabs), to paste into a paper.

Hand-built rather than `Styler.to_latex` so it needs no Jinja2 and every cell goes through
one escaping function: text from the runs (method names with `_`, `%`, `&`) can never break
the document. The symbols the tables use (±, ×, †, ‡, Δ, —) become math-mode commands so the
file compiles with pdflatex without unicode packages. Needs `\\usepackage{booktabs}`.
"""
from __future__ import annotations

from pathlib import Path

from reports.content import ReportContent
from reports.tables import DisplayTable

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}
SYMBOLS = {
    "±": r"$\pm$", "×": r"$\times$", "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$",
    "Δ": r"$\Delta$", "—": "--", "–": "--", "−": "$-$", "≤": r"$\leq$", "≥": r"$\geq$",
}


_ESCAPES = str.maketrans({**SYMBOLS, **LATEX_SPECIALS})


def escape_latex(text: object) -> str:
    """Plain text → LaTeX source that typesets as the same text (other non-ASCII passes
    through: LaTeX reads UTF-8 since 2018)."""
    return str(text).translate(_ESCAPES)


def latex_table(table: DisplayTable, label: str) -> str:
    """One booktabs `table` environment; best cells in \\textbf."""
    data = table.data.reset_index() if table.index else table.data
    offset = 1 if table.index else 0
    align = "l" * (offset or 1) + "r" * (len(data.columns) - (offset or 1))
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(escape_latex(c) for c in data.columns) + r" \\", r"\midrule"]
    bold = table.bold.to_numpy() if table.bold is not None else None
    for i, values in enumerate(data.to_numpy(dtype=object)):
        cells = []
        for j, value in enumerate(values):
            text = escape_latex(value)
            if bold is not None and j >= offset and bool(bold[i, j - offset]) and value != "—":
                text = rf"\textbf{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    caption = escape_latex(table.title + (f". {table.note}" if table.note else ""))
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}",
              rf"\label{{{label}}}", r"\end{table}", ""]
    return "\n".join(lines)


def write_latex(content: ReportContent, path: Path | str) -> Path:
    path = Path(path)
    parts = ["% kdbench report tables; needs \\usepackage{booktabs}", ""]
    count = 0
    for section in content.sections:
        for block in section.blocks:
            if isinstance(block, DisplayTable) and block.latex and not block.data.empty:
                count += 1
                parts.append(latex_table(block, f"tab:kdbench-{count}"))
    if count == 0:
        parts.append("% no successful results: no tables")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
