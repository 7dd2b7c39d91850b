"""The report's own figure layout (`reports.plots.lay_out`) and Markdown tables
(`reports.markdown.pipe_table`): what they replace (constrained layout, tabulate) is slower on
a large run, so they must do the same job — nothing overlaps or leaves the figure, and the
tables are the ones tabulate writes."""
from __future__ import annotations

import io
import itertools

import pandas as pd
import pytest
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from reports.markdown import pipe_table
from reports.plots import figure_grid, lay_out


def _boxes(fig):
    """Each visible panel's box with its decorations, the legends and the figure texts, in
    inches, as drawn."""
    fig.savefig(io.BytesIO(), format="png", dpi=80)  # draws: the positions are final
    renderer = fig.canvas.get_renderer()
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
    legends = [legend.get_window_extent(renderer) for legend in fig.legends]
    texts = [t.get_window_extent(renderer) for t in fig.texts if t.get_text()]
    scale = 1 / fig.dpi
    return [[Bbox.from_extents(b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale)
             for b in group] for group in (panels, legends, texts)]


@pytest.mark.parametrize("n_panels, long", [(1, False), (4, True), (7, True), (3, False)])
def test_panels_legend_and_title_neither_overlap_nor_leave_the_figure(n_panels, long):
    fig, axes = figure_grid(n_panels)
    label = "compression ratio (teacher params / student params, log scale)" if long else "x"
    for i, ax in enumerate(axes):
        ax.plot([1, 2, 4], [10 ** i, 2 * 10 ** i, 5 * 10 ** i], marker="o")
        ax.set_title(f"task {i}")
        ax.set_xlabel(label)
        ax.set_ylabel("test BLEU (0–100)" if long else "y")
        ax.set_xticks([1, 2, 4], ["×1", "×2 rotated" if long else "×2", "×4"], rotation=35 if long else 0)
    handles = [Line2D([], [], label=f"a method with a long name {k}" if long else f"m{k}")
               for k in range(12)]
    fig.legend(handles=handles, loc="outside right center", title="method", frameon=False)
    fig.suptitle("A title\non two lines", fontweight="bold")
    lay_out(fig)
    width, height = fig.get_size_inches()
    panels, legends, texts = _boxes(fig)
    assert fig.get_layout_engine() is None  # laid out here, not handed to constrained layout
    for box in panels + legends + texts:
        assert -0.01 <= box.x0 and box.x1 <= width + 0.01 and -0.01 <= box.y0 and box.y1 <= height + 0.01
    for a, b in itertools.combinations(panels + legends + texts, 2):
        assert not a.overlaps(b), (a, b)


def test_a_figure_too_small_for_its_decorations_is_left_to_constrained_layout():
    fig, (ax,) = figure_grid(1, width=0.5, height=0.5)
    ax.set_ylabel("a very long axis label " * 3)
    fig.legend(handles=[Line2D([], [], label="a long legend entry " * 4)], loc="outside right center")
    lay_out(fig)
    assert fig.get_layout_engine() is not None


@pytest.mark.parametrize("data", [
    pd.DataFrame({"method": ["ft", "joint_teaching"], "×2": ["1.0 ± 2", "**3.4**"]}),
    pd.DataFrame({"a": ["x"], "bb": [""], "a long header": ["—"]}),
    pd.DataFrame({"only a header": []}),
])
def test_pipe_tables_are_the_tables_tabulate_writes(data):
    rows = data.astype(str).to_numpy(dtype=object).tolist()
    assert pipe_table(list(data.columns), rows) == data.to_markdown(index=False, disable_numparse=True)
