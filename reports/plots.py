"""The headline figures: quality vs. compression ratio, and quality per method as bars.

They answer the benchmark's question at a glance: how much test quality each distillation
method keeps as the student shrinks, relative to the teacher (dashed line). Bands and error
bars are the tables' 95% t-intervals over seeds (`stats.summarize`), not seaborn's own
bootstrap, so a figure never disagrees with a table. Everything is drawn on an explicit Agg
canvas, so it never needs a display nor touches pyplot's global state; the helpers here are
shared by the other figure modules. Figures are drawn from seed summaries with plain
matplotlib calls (not seaborn's per-group estimators), and laid out by `lay_out` from a
single measurement of their decorations rather than by constrained layout, which keeps a
10,000-row grid fast.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox
from matplotlib.ticker import FixedLocator, NullLocator

from reports.frame import BASELINE, REFERENCE_ROLES, TEACHER
from reports.headline import axis_label
from reports.stats import summarize

PLOT_FILE = "quality_vs_ratio.png"
BARS_FILE = "quality_by_method.png"
X_LABEL = "compression ratio (teacher params / student params, log scale)"
MAX_COLUMNS = 3
DPI = 100
PAD_INCHES = 0.1  # between a panel's decorations and its neighbour's, or the figure's edge


def palette(labels: Sequence[str]) -> dict[str, tuple]:
    """One stable, distinguishable colour per label (colour-blind safe up to 10)."""
    labels = sorted(set(labels))
    colors = sns.color_palette("colorblind" if len(labels) <= 10 else "husl", max(len(labels), 1))
    return dict(zip(labels, colors))


def figure_grid(n_panels: int, width: float = 5.0, height: float = 4.0):
    """A figure with `n_panels` axes (wrapped at MAX_COLUMNS), laid out by `save`; its width
    has room for a figure legend on the right."""
    ncols = min(max(n_panels, 1), MAX_COLUMNS)
    nrows = math.ceil(max(n_panels, 1) / ncols)
    fig = Figure(figsize=(width * ncols + 2.2, height * nrows + 0.7))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save(fig: Figure, path: Path | str) -> Path:
    """Lay the figure out (unless it has a layout engine of its own) and write it as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        lay_out(fig)
    fig.savefig(path, dpi=DPI, format="png", pil_kwargs={"compress_level": 3})
    return path


def lay_out(fig: Figure) -> None:
    """Place a grid of panels so that nothing overlaps: margins and gaps from the measured
    overhang of each visible panel's tick labels, axis labels and title, the figure texts
    (the suptitle) at the top and the figure legends on the right (where every figure here
    puts them). One measurement of the decorations, where constrained layout measures every
    artist of every panel in each draw: a third of a large figure's drawing time. A centred
    x label or title wider than its panel overhangs more as the panel narrows, so the panel
    width is solved for with that growth (`_panel_width`)."""
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_subplotspec() is not None]
    if not axes:
        return
    renderer = fig.canvas.get_renderer()
    nrows, ncols = axes[0].get_subplotspec().get_gridspec().get_geometry()
    left, right, centred = [0.0] * ncols, [0.0] * ncols, [0.0] * ncols
    top, bottom = [0.0] * nrows, [0.0] * nrows
    inch = fig.dpi
    for ax in axes:
        spec = ax.get_subplotspec()
        row, col = spec.rowspan.start, spec.colspan.start
        row_end, col_end = spec.rowspan.stop - 1, spec.colspan.stop - 1
        box = ax.get_window_extent(renderer)
        parts = [a.get_tightbbox(renderer) for a in (ax.xaxis, ax.yaxis) if a.get_visible()]
        texts = [t for t in (ax.title, ax.xaxis.label) if t.get_visible() and t.get_text()]
        widths = [t.get_window_extent(renderer).width / inch for t in texts]
        if ax.title in texts:
            parts.append(ax.title.get_window_extent(renderer))
        deco = Bbox.union([box, *[b for b in parts if b is not None]])
        left[col] = max(left[col], (box.x0 - deco.x0) / inch)
        right[col_end] = max(right[col_end], (deco.x1 - box.x1) / inch)
        if col == col_end:  # a panel spanning columns: its centred texts have room
            centred[col] = max([centred[col], *widths])
        top[row] = max(top[row], (deco.y1 - box.y1) / inch)
        bottom[row_end] = max(bottom[row_end], (box.y0 - deco.y0) / inch)
    width, height = fig.get_size_inches()
    legends = sum(legend.get_window_extent(renderer).width / inch + PAD_INCHES
                  for legend in fig.legends)
    titles = max((t.get_window_extent(renderer).height / inch + (1 - t.get_position()[1]) * height
                  for t in fig.texts if t.get_text()), default=0.0)
    top_margin, bottom_margin = top[0] + PAD_INCHES + titles, bottom[-1] + PAD_INCHES
    hgap = _gap(bottom, top)
    panel_h = (height - top_margin - bottom_margin - (nrows - 1) * hgap) / nrows
    sides = _panel_width(width - legends - 2 * PAD_INCHES, left, right, centred)
    if sides is None or panel_h < 1.0:
        fig.set_layout_engine("constrained")  # decorations larger than the figure: let matplotlib try
        return
    panel_w, left, right = sides
    fig.subplots_adjust(left=(left[0] + PAD_INCHES) / width,
                        right=1 - (right[-1] + PAD_INCHES + legends) / width,
                        top=1 - top_margin / height, bottom=bottom_margin / height,
                        wspace=_gap(right, left) / panel_w, hspace=hgap / panel_h)


def _gap(before: list[float], after: list[float]) -> float:
    """The one gap subplots_adjust allows between neighbours: the widest needed."""
    return max((before[k] + after[k + 1] for k in range(len(before) - 1)), default=0.0) + 2 * PAD_INCHES


def _panel_width(available: float, left: list[float], right: list[float], centred: list[float]
                 ) -> tuple[float, list[float], list[float]] | None:
    """The widest panel width (≥ 1 inch) whose row of panels, with their overhangs and gaps,
    fits in `available` inches, and the overhangs at that width; None when none does. A
    column's overhang is the larger of the measured one and half of what its widest centred
    text exceeds the panel by (bisection: the total grows with the width)."""
    def sides(w: float) -> tuple[list[float], list[float]]:
        grow = [max(0.0, (c - w) / 2) for c in centred]
        return [max(a, g) for a, g in zip(left, grow)], [max(a, g) for a, g in zip(right, grow)]

    def needed(w: float) -> float:
        lo, hi = sides(w)
        return len(left) * w + lo[0] + hi[-1] + (len(left) - 1) * _gap(hi, lo)

    low, high = 1.0, available
    if needed(low) > available:
        return None
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if needed(mid) <= available else (low, mid)
    return (low, *sides(low))


def ratio_axis(ax, ratios: Sequence[float]) -> None:
    """Log-2 x axis with a tick at every ratio of the grid."""
    ax.set_xscale("log", base=2)
    ratios = sorted(set(ratios))
    if ratios:
        ax.xaxis.set_major_locator(FixedLocator(ratios))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.set_xlim(min(ratios) / 2**0.3, max(ratios) * 2**0.3)
    ax.set_xlabel(X_LABEL)


def students_of(quality: pd.DataFrame) -> pd.DataFrame:
    """The distilled students' rows (not the teacher, not the copy-input baseline)."""
    return quality[~quality["role"].isin(REFERENCE_ROLES)]


def reference_lines(ax, panel: pd.DataFrame) -> None:
    """The teacher (dashed) and the copy-input baseline (dotted) as horizontal lines."""
    for role, style in ((TEACHER, "--"), (BASELINE, ":")):
        values = panel.loc[panel["role"] == role, "value"]
        if not values.empty:
            ax.axhline(values.mean(), color="0.3", linestyle=style, linewidth=1.2)


def reference_handles(quality: pd.DataFrame) -> list[Line2D]:
    handles = [Line2D([], [], color="0.3", linestyle="--", label=TEACHER)]
    if (quality["role"] == BASELINE).any():
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="copy input (baseline)"))
    return handles


def several_seeds(quality: pd.DataFrame) -> bool:
    students = students_of(quality)
    return bool((students.groupby(["task", "label", "ratio"]).size() > 1).any())


def seed_means(students: pd.DataFrame) -> pd.DataFrame:
    """Per (task, label, ratio): mean and the 95% t-interval over seeds, as `low`/`high`
    collapsed onto the mean where one seed leaves it undefined (what `ci_bounds` gives)."""
    stats = summarize(students, ["task", "label", "ratio"])
    return stats.assign(low=stats["low"].fillna(stats["mean"]),
                        high=stats["high"].fillna(stats["mean"]),
                        ci=stats["ci"].fillna(0.0))


def quality_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    """Quality vs. ratio per task (`quality`: `headline.quality_frame`); None, and no stale
    file, when there is nothing to plot. Drawn from the seed summaries (one line and one band
    per method), so a grid of thousands of rows draws as fast as a small one."""
    data = quality[quality["ratio"].notna() & (quality["ratio"] > 0)]
    tasks = sorted(data["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    students = students_of(data)
    colors = palette(students["label"])
    seeds = several_seeds(data)
    means = seed_means(students)
    fig, axes = figure_grid(len(tasks))
    for ax, task in zip(axes, tasks):
        panel = data[data["task"] == task]
        for label, line in means[means["task"] == task].groupby("label"):
            line = line.sort_values("ratio")
            ax.plot(line["ratio"], line["mean"], marker="o", markersize=7, color=colors[label])
            if seeds:
                ax.fill_between(line["ratio"], line["low"], line["high"], color=colors[label],
                                alpha=0.2, linewidth=0)
        reference_lines(ax, panel)
        has_teacher = (panel["role"] == TEACHER).any()
        ratios = list(students.loc[students["task"] == task, "ratio"].unique())
        ratio_axis(ax, ratios + ([1.0] if has_teacher else []))
        ax.set_title(task)
        ax.set_ylabel(axis_label(str(panel["metric"].iloc[0])))
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in colors.items()]
    handles += reference_handles(data)
    fig.legend(handles=handles, loc="outside right center", title="method", frameon=False)
    band = "\nmean over seeds; band: 95% t-interval" if seeds else ""
    fig.suptitle(f"Test quality vs. compression ratio{band}", fontweight="bold")
    return save(fig, path)


MAX_BARS_WIDTH = 14.0  # inches per panel: beyond it bars get thinner, not the page wider
MAX_BARS = 60  # bars per panel beyond which the figure is skipped: too many to read


def bars_plot(quality: pd.DataFrame, path: Path | str) -> Path | None:
    """Per task, one bar per method and ratio (mean over seeds, 95% t-interval whiskers);
    None (no figure) when a panel would hold more than MAX_BARS bars."""
    students = students_of(quality)
    students = students[students["ratio"].notna()]
    tasks = sorted(students["task"].unique())
    if not tasks:
        Path(path).unlink(missing_ok=True)
        return None
    means = seed_means(students)
    if means.groupby("task").size().max() > MAX_BARS:
        Path(path).unlink(missing_ok=True)
        return None  # the quality-vs-ratio figure and the tables show the same means
    ratios = sorted(students["ratio"].unique())
    ratio_colors = dict(zip(ratios, sns.color_palette("crest", len(ratios))))
    seeds = several_seeds(quality)
    n_methods = students.groupby("task")["label"].nunique().max()
    width = min(max(5.0, 0.55 * n_methods * max(len(ratios), 1)), MAX_BARS_WIDTH)
    fig, axes = figure_grid(len(tasks), width=width)
    bar = 0.8 / len(ratios)
    for ax, task in zip(axes, tasks):
        part = means[means["task"] == task]
        labels = sorted(part["label"].unique())
        x = {label: i for i, label in enumerate(labels)}
        for k, ratio in enumerate(ratios):
            group = part[part["ratio"] == ratio]
            if group.empty:
                continue
            pos = [x[label] - 0.4 + bar * (k + 0.5) for label in group["label"]]
            ax.bar(pos, group["mean"], width=bar, color=ratio_colors[ratio],
                   yerr=group["ci"] if seeds else None, capsize=2.0,
                   error_kw={"linewidth": 1.0})
        reference_lines(ax, quality[quality["task"] == task])
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
        ax.set_title(task)
        ax.set_xlabel("method")
        ax.set_ylabel(axis_label(str(students.loc[students["task"] == task, "metric"].iloc[0])))
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], color=c, linewidth=8, label=f"×{r:g}")
               for r, c in ratio_colors.items()]
    handles += reference_handles(quality)
    fig.legend(handles=handles, loc="outside right center", title="compression ratio",
               frameon=False)
    whiskers = "\nmean over seeds; whiskers: 95% t-interval" if seeds else ""
    fig.suptitle(f"Test quality per method{whiskers}", fontweight="bold")
    return save(fig, path)
