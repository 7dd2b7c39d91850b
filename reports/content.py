"""Everything a report shows, computed once, so the Markdown, HTML and LaTeX renderings agree.

A report is a header (the runs: spec, hardware, versions, run time), a summary, and a list of
sections; a section is a list of blocks (paragraphs, `DisplayTable`s, `FigureItem`s). A
section is only added when it has something to show, and a block that cannot be computed
says why in a paragraph, so no section of the page is ever empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.ablation import (
    ABLATION_FILE,
    ablation_display,
    ablation_plot,
    ablation_tasks,
)
from reports.curves import CURVES_FILE, curves_frame, curves_plot
from reports.derived import gain_display, retention_display, significance_display
from reports.frame import load_frame, ok_rows
from reports.headline import HEADLINE, headlines, metric_name, quality_frame, task_names
from reports.meta import RunMeta, run_meta
from reports.pareto import PARETO_FILE, latency_points, pareto_display, pareto_plot
from reports.plots import BARS_FILE, PLOT_FILE, bars_plot, quality_plot
from reports.significance import Significance, significance
from reports.tables import DisplayTable, failed_table, flat_table, results_display

HOW_TO_READ = (
    "Each results table gives a task's headline test metric for a distillation method (row) "
    "at a requested compression ratio (column: teacher params / student params; ×1 is the "
    "teacher) as mean ± 95% confidence interval over seeds (Student's t; \"± n/a\" where one "
    "seed leaves the interval undefined). The best student per column is in bold; † and ‡ "
    "mark a significant difference (paired bootstrap over the test examples, p < 0.05) from "
    "ft and from seq_kd at the same ratio. In the figures the dashed line is the teacher: "
    "a method is better the closer it stays to it as the ratio grows."
)


@dataclass
class FigureItem:
    path: Path
    title: str
    caption: str


Block = str | DisplayTable | FigureItem


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ReportContent:
    runs: list[RunMeta]
    frame: pd.DataFrame  # tidy, all rows (also written as results.csv / results.parquet)
    metrics: dict[str, str]  # task -> headline metric
    results: dict[str, pd.DataFrame]  # task -> method × ratio display strings
    sections: list[Section]
    failed: pd.DataFrame  # failed rows with reasons, raw text
    significance: Significance
    figures: list[FigureItem] = field(default_factory=list)

    @property
    def plot(self) -> Path | None:
        """The headline figure (quality vs. ratio), None when nothing could be plotted."""
        return next((f.path for f in self.figures if f.path.name == PLOT_FILE), None)

    @property
    def metric_name(self) -> str:
        names = sorted({metric_name(m) for m in self.metrics.values()})
        return " / ".join(names) if names else metric_name(HEADLINE)

    @property
    def how_to_read(self) -> str:
        return HOW_TO_READ

    @property
    def summary(self) -> str:
        n_ok, n_failed = len(ok_rows(self.frame)), len(self.failed)
        if n_ok == 0:
            return f"No successful results ({n_failed} failed trial(s))."
        tasks = ", ".join(f"{t} ({metric_name(m)})" for t, m in self.metrics.items())
        seeds = ok_rows(self.frame)["seed"].nunique()
        return (f"{n_ok} successful and {n_failed} failed trial(s) over {len(self.metrics)} "
                f"task(s), headline metric in brackets: {tasks}; {seeds} distinct seed(s).")


def collect(run_dirs: list[Path], out_dir: Path) -> ReportContent:
    """Read the runs, compute every table and draw every figure into `out_dir`."""
    frame = load_frame(run_dirs)
    metrics = headlines(ok_rows(frame))
    quality = quality_frame(frame, metrics)
    sig = significance(frame, metrics)
    sections: list[Section] = []
    results = {}
    for task in task_names(ok_rows(frame)):
        metric = metrics[task]
        main = results_display(frame, task, metric, sig)
        if main.data.empty:
            continue
        results[task] = main.data
        blocks: list[Block] = [main]
        for extra in (retention_display(frame, task, metric), gain_display(frame, task, metric)):
            if extra is not None:
                blocks.append(extra)
        sections.append(Section(f"{task}: test {metric_name(metric)}", blocks))

    figures = _figures(run_dirs, frame, quality, out_dir)
    by_file = {f.path.name: f for f in figures}
    quality_figs = [by_file[n] for n in (PLOT_FILE, BARS_FILE) if n in by_file]
    if quality_figs:
        sections.append(Section("Quality vs. compression ratio", list(quality_figs)))
    if results:
        sections.append(_significance_section(sig, list(results)))
    points = latency_points(quality)
    if PARETO_FILE in by_file:
        blocks = [by_file[PARETO_FILE]]
        blocks += [t for t in (pareto_display(points, task) for task in results) if t]
        sections.append(Section("Quality vs. latency", blocks))
    if CURVES_FILE in by_file:
        sections.append(Section("Learning curves", [by_file[CURVES_FILE]]))
    if ABLATION_FILE in by_file:
        blocks = [by_file[ABLATION_FILE]]
        blocks += [t for t in (ablation_display(frame, task, metrics[task], sig)
                               for task in ablation_tasks(quality)) if t]
        sections.append(Section("Pseudo-target ablation", blocks))
    if results:
        sections.append(Section("All successful results", [
            DisplayTable("One row per successful trial", flat_table(frame), index=False,
                         latex=False,
                         note="Every number above is an aggregate of these rows "
                              "(also in results.csv / results.parquet).")]))
    else:
        sections.append(Section("Results", ["No successful results."]))
    return ReportContent(
        runs=[run_meta(d) for d in run_dirs], frame=frame, metrics=metrics, results=results,
        sections=sections, failed=failed_table(frame), significance=sig, figures=figures,
    )


def _figures(run_dirs, frame, quality, out_dir: Path) -> list[FigureItem]:
    items = []
    path = quality_plot(quality, out_dir / PLOT_FILE)
    if path:
        items.append(FigureItem(path, "Test quality vs. compression ratio",
                                "One line per method, one panel per task; band: 95% t-interval "
                                "over seeds (absent with one seed); dashed: the teacher."))
    path = bars_plot(quality, out_dir / BARS_FILE)
    if path:
        items.append(FigureItem(path, "Test quality per method",
                                "Bars: mean over seeds per compression ratio; whiskers: 95% "
                                "t-interval; dashed: the teacher."))
    path = pareto_plot(latency_points(quality), out_dir / PARETO_FILE)
    if path:
        items.append(FigureItem(path, "Test quality vs. latency",
                                "Each point is a (method, ratio) seed mean; colour: method, "
                                "marker: ratio, star: teacher; dotted: the Pareto front."))
    path = curves_plot(curves_frame(run_dirs, frame), out_dir / CURVES_FILE)
    if path:
        items.append(FigureItem(path, "Learning curves",
                                "Dev metrics logged during training, mean over seeds."))
    path = ablation_plot(quality, out_dir / ABLATION_FILE)
    if path:
        items.append(FigureItem(path, "Pseudo-target ablation",
                                "seq_kd (1 beam PT), seq_kd_multi (4 beam PTs), sampling_pts "
                                "(8 sampled PTs); whiskers: 95% t-interval over seeds."))
    return items


def _significance_section(sig: Significance, tasks: list[str]) -> Section:
    blocks: list[Block] = []
    for task in tasks:
        table = significance_display(sig.table, task)
        if table is not None:
            blocks.append(table)
    if not blocks:
        blocks.append("No paired comparisons could be made: they need ft or seq_kd results "
                      "and stored per-example outputs with the run's test references.")
    blocks += [f"Note: {n}" for n in sig.notes]
    return Section("Significance: paired bootstrap over test examples", blocks)
