"""Everything a report shows, computed once, so the Markdown and HTML renderings agree."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.frame import load_frame, ok_rows
from reports.meta import RunMeta, run_meta
from reports.plots import quality_plot
from reports.tables import (
    HEADLINE, METRIC_NAMES, failed_table, flat_table, results_table, task_names,
)

HOW_TO_READ = (
    "Each results table gives the test {metric} of a distillation method (row) at a requested "
    "compression ratio (column: teacher params / student params; ×1 is the teacher), as mean "
    "± standard deviation over seeds when there are several. Higher is better; in the figure "
    "the dashed line is the teacher, and a method is better the closer it stays to it as the "
    "ratio grows."
)


@dataclass
class ReportContent:
    runs: list[RunMeta]
    frame: pd.DataFrame  # tidy, all rows (also written as results.csv)
    results: dict[str, pd.DataFrame]  # task -> method × ratio display table
    flat: pd.DataFrame  # successful rows, display strings
    failed: pd.DataFrame  # failed rows with reasons, raw text
    plot: Path | None  # the PNG, None when nothing could be plotted
    metric: str = HEADLINE

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES.get(self.metric, self.metric)

    @property
    def how_to_read(self) -> str:
        return HOW_TO_READ.format(metric=self.metric_name)

    @property
    def summary(self) -> str:
        n_ok, n_failed = len(ok_rows(self.frame)), len(self.failed)
        if n_ok == 0:
            return f"No successful results ({n_failed} failed trial(s))."
        tasks = task_names(self.frame)
        return f"{n_ok} successful and {n_failed} failed trial(s) over {len(tasks)} task(s)."


def collect(run_dirs: list[Path], plot_path: Path, metric: str = HEADLINE) -> ReportContent:
    """Read the runs, build the tables and draw the figure into `plot_path`."""
    frame = load_frame(run_dirs)
    results = {task: results_table(frame, task, metric) for task in task_names(ok_rows(frame))}
    return ReportContent(
        runs=[run_meta(d) for d in run_dirs],
        frame=frame,
        results={task: table for task, table in results.items() if not table.empty},
        flat=flat_table(frame),
        failed=failed_table(frame),
        plot=quality_plot(frame, plot_path, metric),
        metric=metric,
    )
