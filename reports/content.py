"""Everything a report shows, computed once, so the Markdown, HTML and LaTeX renderings agree.

A report is a header (the runs: spec, hardware, versions, run time), a summary, and a list of
sections; a section is a list of blocks (paragraphs, `Alert`s, `DisplayTable`s, `FigureItem`s). A
section is only added when it has something to show, and a block that cannot be computed
says why in a paragraph, so no section of the page is ever empty.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.results import read_rows
from bench.storage import Location
from reports.ablation import (
    ABLATION_FILE,
    ablation_display,
    ablation_plot,
    ablation_tasks,
)
from reports.background import Alongside
from reports.compute import (
    COMPUTE_FILE,
    compute_display,
    compute_plot,
    compute_points,
    missing_compute_note,
)
from reports.curves import CURVES_FILE, curves_frame, curves_plot
from reports.derived import gain_display, retention_display, significance_display
from reports.findings import findings, findings_display, parse_study, verdict_summary
from reports.frame import load_runs, ok_rows
from reports.harness import write_results_json
from reports.headline import HEADLINE, headlines, metric_name, quality_frame, task_names
from reports.meta import RunMeta, run_meta
from reports.pareto import PARETO_FILE, latency_points, pareto_display, pareto_plot
from reports.plots import BARS_FILE, PLOT_FILE, bars_plot, quality_plot
from reports.score_store import CACHE_DIR, ScoreStore
from reports.significance import Cells, Significance, build_cells, significance
from reports.tables import (
    FLAT_ROWS_LIMIT,
    DisplayTable,
    failed_table,
    flat_table,
    results_display,
    seed_summary,
)
from reports.teacher_check import teacher_checks

REPORT_DIR = "report"  # a run's own report, under its run dir
HOW_TO_READ = (
    "Each results table gives a task's headline test metric for a distillation method (row) "
    "at a requested compression ratio (column: teacher params / student params; ×1 is the "
    "teacher, and the copy-input baseline when the run has one) as mean ± 95% confidence "
    "interval over seeds (Student's t; \"± n/a\" where one seed leaves the interval "
    "undefined). The best student per column is in bold; † and ‡ mark a significant "
    "difference from ft and from seq_kd at the same ratio (two-level paired bootstrap over "
    "seeds and test examples, p < 0.05, two or more seeds on both sides). With a single seed "
    "a difference can only be tested over test examples: it is shown in brackets with the "
    "words \"1 seed: training variance not covered\" and is never a finding. In the figures "
    "the dashed line is the teacher: a method is better the closer it stays to it as the "
    "ratio grows."
)


@dataclass
class Alert:
    """A warning the reader must not miss (e.g. a teacher no better than copying)."""

    text: str


@dataclass
class FigureItem:
    path: Path
    title: str
    caption: str


Block = str | Alert | DisplayTable | FigureItem


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
    failed: pd.DataFrame  # failed rows with reasons, raw text (the first FLAT_ROWS_LIMIT)
    significance: Significance
    figures: list[FigureItem] = field(default_factory=list)
    failed_total: int = 0  # all failed rows, also those not listed

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
        n_ok, n_failed = len(ok_rows(self.frame)), max(self.failed_total, len(self.failed))
        if n_ok == 0:
            return f"No successful results ({n_failed} failed trial(s))."
        tasks = ", ".join(f"{t} ({metric_name(m)})" for t, m in self.metrics.items())
        seeds = ok_rows(self.frame)["seed"].nunique()
        return (f"{n_ok} successful and {n_failed} failed trial(s) over {len(self.metrics)} "
                f"task(s), headline metric in brackets: {tasks}; {seeds} distinct seed(s).")


def collect(run_dirs: list[Path], out_dir: Path) -> ReportContent:
    """Read the runs, compute every table, and write the flat files and draw every figure into
    `out_dir`."""
    rows_by_dir = {d: read_rows(d) for d in run_dirs}
    frame, merge_notes = load_runs(rows_by_dir)
    runs = [run_meta(d) for d in run_dirs]
    metrics = headlines(ok_rows(frame))
    checks = teacher_checks(frame, metrics)
    withheld = {task: check.problem for task, check in checks.items() if check.problem}
    quality = quality_frame(frame, metrics)
    points = compute_points(frame, metrics)
    # the flat files and the figures need no statistics: made alongside them (reports.background)
    drawing = Alongside(_tasks_alongside(rows_by_dir, frame, runs[0], quality, points, metrics, out_dir),
                        "writing the flat files and drawing the figures")
    try:
        Location.of(out_dir / "results.parquet").write_bytes(frame.to_parquet(index=False))
        store = ScoreStore(out_dir / CACHE_DIR,
                           read_dirs=[Path(d) / REPORT_DIR / CACHE_DIR for d in run_dirs if isinstance(d, Path)])
        with drawing.leaving_a_core():
            cells = build_cells(frame, metrics, store)
        store.flush()
        sig = significance(frame, metrics, withheld=withheld, cells=cells)
        sections: list[Section] = []
        if merge_notes:
            sections.append(Section("Merged runs", list(merge_notes)))
        sections += _findings_sections(runs, cells, withheld)
        results = {}
        for task in task_names(ok_rows(frame)):
            main = results_display(frame, task, metrics[task], sig)
            if not main.data.empty:
                results[task] = main.data
                sections.append(_task_section(frame, task, metrics[task], main, withheld.get(task)))
    except BaseException:
        drawing.cancel()  # a failed build draws no more figures (its flat files are whole)
        raise
    figures = [item for item in drawing.results() if isinstance(item, FigureItem)]
    by_file = {f.path.name: f for f in figures}
    quality_figs = [by_file[n] for n in (PLOT_FILE, BARS_FILE) if n in by_file]
    if quality_figs:
        sections.append(Section("Quality vs. compression ratio", list(quality_figs)))
    if results:
        sections.append(_compute_section(frame, points, by_file.get(COMPUTE_FILE), results))
        sections.append(_significance_section(sig, list(results)))
    latency = latency_points(quality)
    if PARETO_FILE in by_file:
        blocks = [by_file[PARETO_FILE]]
        blocks += [t for t in (pareto_display(latency, task) for task in results) if t]
        sections.append(Section("Quality vs. latency", blocks))
    if CURVES_FILE in by_file:
        sections.append(Section("Learning curves", [by_file[CURVES_FILE]]))
    if ABLATION_FILE in by_file:
        blocks = [by_file[ABLATION_FILE]]
        blocks += [t for t in (ablation_display(frame, task, metrics[task], sig)
                               for task in ablation_tasks(quality)) if t]
        sections.append(Section("Pseudo-target ablation", blocks))
    from reports.api_teacher import api_teacher_sections  # here: both build on this module's blocks
    from reports.tuning import tuning_sections

    sections += tuning_sections(run_dirs, rows_by_dir, out_dir)
    sections += api_teacher_sections(rows_by_dir)
    if results:
        sections.append(Section("All successful results", [_listing(frame)]))
    else:
        sections.append(Section("Results", ["No successful results."]))
    failed = failed_table(frame)
    return ReportContent(
        runs=runs, frame=frame, metrics=metrics, results=results, sections=sections,
        failed=failed.head(FLAT_ROWS_LIMIT), significance=sig, figures=figures,
        failed_total=len(failed),
    )


def _task_section(frame: pd.DataFrame, task: str, metric: str, main: DisplayTable,
                  withheld: str | None) -> Section:
    """The results table of a task with its retention and gain; a teacher no better than
    copying the input puts a warning first and replaces retention by the reason."""
    blocks: list[Block] = []
    if withheld:
        blocks.append(Alert(f"Warning — {task}: {withheld}. This task's retention percentages "
                            f"and significance markers are therefore not shown."))
    blocks.append(main)
    if withheld:
        blocks.append(f"{task}: teacher quality retained — not shown: {withheld}.")
    else:
        blocks.append(retention_display(frame, task, metric))
    blocks.append(gain_display(frame, task, metric))
    return Section(f"{task}: test {metric_name(metric)}", [b for b in blocks if b is not None])


def _listing(frame: pd.DataFrame) -> Block:
    n_ok = len(ok_rows(frame))
    if n_ok > FLAT_ROWS_LIMIT:
        return (f"{n_ok:,} successful trials: too many to list on this page; every row, with "
                f"every metric, is in results.csv / results.parquet next to this report, and "
                f"summary.csv has their seed aggregates.")
    return DisplayTable("One row per successful trial", flat_table(frame), index=False,
                        latex=False,
                        note="Every number above is an aggregate of these rows "
                             "(also in results.csv / results.parquet).")


def _tasks_alongside(rows_by_dir, frame, run: RunMeta, quality, points, metrics, out_dir: Path
                     ) -> list[Callable[[], FigureItem | None]]:
    """What needs no statistics: the flat files of every row (results.csv, summary.csv,
    results.json; results.parquet is written by `collect`, in the process that owns Arrow's
    thread pools) and each figure (None when it has nothing to show)."""

    def flat_files() -> None:
        # each written whole (Location), so a failed build or a stopped child leaves no half file
        Location.of(out_dir / "results.csv").write_text(frame.to_csv(index=False))
        Location.of(out_dir / "summary.csv").write_text(seed_summary(frame).to_csv(index=False))
        write_results_json(frame, out_dir / "results.json", run)  # lm-evaluation-harness shape

    def figure(draw: Callable[[], Path | None], title: str, caption: str) -> Callable[[], FigureItem | None]:
        def task() -> FigureItem | None:
            path = draw()
            return FigureItem(path, title, caption) if path else None
        return task

    # the longest first, so that what this process takes at the end is short
    return [
        figure(lambda: curves_plot(curves_frame(rows_by_dir, frame), out_dir / CURVES_FILE, metrics),
               "Learning curves", "Dev metrics logged during training, mean over seeds; the teacher's own "
               "training (dashed) in a panel of its own."),
        figure(lambda: quality_plot(quality, out_dir / PLOT_FILE), "Test quality vs. compression ratio",
               "One line per method, one panel per task; band: 95% t-interval over seeds (absent with one "
               "seed); dashed: the teacher."),
        flat_files,
        figure(lambda: compute_plot(points, out_dir / COMPUTE_FILE), "Test quality vs. training compute",
               "Each point is a (method, ratio) seed mean of total training FLOPs and test quality; lines "
               "join a method's ratios; whiskers: 95% t-interval over seeds; star: the teacher (its own "
               "training)."),
        figure(lambda: pareto_plot(latency_points(quality), out_dir / PARETO_FILE), "Test quality vs. latency",
               "Each point is a (method, ratio) seed mean; colour: method, marker: ratio, star: teacher; "
               "dotted: the Pareto front."),
        figure(lambda: bars_plot(quality, out_dir / BARS_FILE), "Test quality per method",
               "Bars: mean over seeds per compression ratio; whiskers: 95% t-interval; dashed: the teacher."),
        figure(lambda: ablation_plot(quality, out_dir / ABLATION_FILE), "Pseudo-target ablation",
               "seq_kd (1 beam PT), seq_kd_multi (4 beam PTs), sampling_pts (8 sampled PTs); whiskers: 95% "
               "t-interval over seeds."),
    ]


def _findings_sections(runs: list[RunMeta], cells: Cells, withheld: dict[str, str]
                       ) -> list[Section]:
    """One Findings section per distinct study (by id) of the merged runs."""
    seen: dict[str, dict] = {}
    notes: dict[str, list[str]] = {}
    for run in runs:
        if run.study is None:
            continue
        key = str(run.study.get("id"))
        if key in seen and seen[key] != run.study:
            notes[key].append(f"run {run.run_id} declares study {key} differently; the first "
                              f"declaration is used")
        seen.setdefault(key, run.study)
        notes.setdefault(key, [])
    sections = []
    for key, data in seen.items():
        study, problems = parse_study(data)
        blocks: list[Block] = [f"Note: {p}" for p in problems + notes[key]]
        if study is not None:
            if study.claim:
                blocks.insert(0, f"Claim: {study.claim}")
            table = findings(study, cells, withheld)
            if table.empty:
                blocks.append("No results of the compared methods: nothing to decide yet.")
            else:
                blocks.append(f"Verdicts: {verdict_summary(table)}.")
                blocks.append(findings_display(study, table))
        sections.append(Section(f"Findings: {study.id if study else key}", blocks))
    return sections


def _compute_section(frame, points, figure, tasks: list[str]) -> Section:
    blocks: list[Block] = [figure] if figure is not None else []
    for task in tasks:
        table = compute_display(points, task)
        if table is not None:
            blocks.append(table)
        note = missing_compute_note(frame, task)
        if note:
            blocks.append(note)
    if not any(isinstance(b, DisplayTable) for b in blocks):
        blocks = ["No successful trial records its training compute (metrics.compute, added "
                  "after these runs): no compute-matched view."]
    return Section("Quality at equal training compute", blocks)


def _significance_section(sig: Significance, tasks: list[str]) -> Section:
    blocks: list[Block] = []
    for task in tasks:
        table = significance_display(sig.table, task, sig.withheld.get(task))
        if table is not None:
            blocks.append(table)
    if not blocks:
        blocks.append("No paired comparisons could be made: they need ft or seq_kd results "
                      "and stored per-example outputs with the run's test references.")
    blocks += [f"Note: {n}" for n in sig.notes]
    return Section("Significance: paired bootstrap over seeds and test examples", blocks)
