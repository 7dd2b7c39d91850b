"""The reports package on synthetic runs: the numbers, the files, escaping, merging, failures."""
from __future__ import annotations

import base64
import html
import json
import math
import random
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from sacrebleu.metrics import BLEU as SacreBLEU
from sacrebleu.metrics import CHRF
from scipy import stats as scipy_stats

from bench.results import append_row, read_rows
from reports import build_report
from reports.derived import gain_display, retention_display
from reports.frame import load_frame, rows_frame
from reports.significance import significance
from reports.tables import failed_table, flat_table, metric_pivot, results_table

METHODS = ["sft", "word_kd", "seq_kd"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XSS_ERROR = 'CUDA OOM <script>alert("x")</script> & more'

# BLEU per (task, method, ratio) for seeds 0 and 1; the means are worked out by hand below.
BLEU = {
    ("e2e", "sft", 2.0): (30.0, 32.0),
    ("e2e", "sft", 4.0): (25.0, 26.0),
    ("e2e", "word_kd", 2.0): (33.0, 34.0),
    ("e2e", "word_kd", 4.0): (28.0, 29.0),
    ("e2e", "seq_kd", 2.0): (35.0, 36.0),
    ("e2e", "seq_kd", 4.0): (31.0, 33.0),
    ("qa", "sft", 2.0): (20.0, 22.0),
    ("qa", "sft", 4.0): (15.0, 16.0),
    ("qa", "word_kd", 2.0): (21.0, 23.0),
    ("qa", "word_kd", 4.0): (17.0, 18.0),
    ("qa", "seq_kd", 2.0): (24.0, 25.0),
    ("qa", "seq_kd", 4.0): (19.0, None),  # seed 1 fails
}
TEACHER_BLEU = {("e2e", 0): 40.0, ("qa", 0): 50.0, ("qa", 1): 52.0}


def _row(run_id, task, role, method, ratio, seed, bleu, error=None, shift=0.0):
    ok = error is None
    return {
        "trial_key": f"{task}/{role}/{method}/{ratio:g}/{seed}",
        "status": "ok" if ok else "error",
        "error": error,
        "role": role,
        "task": task,
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "bleu": bleu + shift if ok else None,
        "chrf": bleu + 20.0 + shift if ok else None,
        "params": int(8_000_000 / ratio) if ok else None,
        "realized_ratio": ratio * 1.02 if ok else None,
        "latency_ms": 3.5 if ok else None,
        "train_seconds": 10.0,
        "eval_seconds": 2.0,
        "wall_seconds": 12.5,
        "config": {"lr": 1e-3, "task": task},
        "artifacts": {"data": "abc123"},
        "versions": {"torch": "2.4.0"},
        "run_id": run_id,
        "finished_at": "2025-01-01T10:00:00+00:00",
    }


def write_run(run_dir: Path, run_id: str, shift: float = 0.0, meta: bool = True) -> Path:
    for (task, seed), bleu in TEACHER_BLEU.items():
        append_row(run_dir, _row(run_id, task, "teacher", "teacher", 1.0, seed, bleu, shift=shift))
    for (task, method, ratio), values in BLEU.items():
        for seed, bleu in enumerate(values):
            error = XSS_ERROR if bleu is None else None
            append_row(run_dir, _row(run_id, task, "student", method, ratio, seed, bleu or 0.0,
                                     error=error, shift=shift))
    if meta:
        (run_dir / "run.json").write_text(json.dumps({
            "run_id": run_id, "spec_name": "smoke-spec",
            "started_at": "2025-01-01T09:00:00+00:00", "finished_at": "2025-01-01T10:01:05+00:00",
            "hardware": {"gpu": "H100", "cpus": 16}, "versions": {"torch": "2.4.0"},
        }))
        (run_dir / "spec.yaml").write_text("name: smoke-spec\n")
    return run_dir


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run_a"), "run-a")


@pytest.fixture(scope="module")
def report_a(run_a) -> Path:
    return build_report([run_a])


def test_frame_has_one_row_per_trial(run_a):
    frame = load_frame([run_a])
    assert len(frame) == 3 + 24  # 3 teacher rows, 3 methods x 2 ratios x 2 seeds
    assert (frame["status"] == "ok").sum() == 26
    assert set(frame["task"]) == {"e2e", "qa"}
    assert set(frame.loc[frame["role"] == "student", "method"]) == set(METHODS)
    assert frame["trial_key"].is_unique
    assert {"config", "artifacts", "versions"}.isdisjoint(frame.columns)
    failed = frame[frame["status"] == "error"].iloc[0]
    assert failed["error"] == XSS_ERROR and math.isnan(failed["bleu"])
    assert (failed["task"], failed["method"], failed["ratio"], failed["seed"]) == (
        "qa", "seq_kd", 4.0, 1)


def test_frame_dedupes_within_a_run_only():
    ok = _row("r1", "e2e", "student", "sft", 2.0, 0, 30.0)
    err = _row("r1", "e2e", "student", "sft", 2.0, 0, 0.0, error="boom")
    other_run = dict(ok, run_id="r2", bleu=31.0)
    frame = rows_frame([err, ok, err, other_run])
    assert len(frame) == 2
    assert sorted(frame["run_id"]) == ["r1", "r2"]
    assert set(frame["status"]) == {"ok"}  # an ok row wins over errors of the same trial


def test_pivot_means_and_teacher(run_a):
    frame = load_frame([run_a])
    e2e = metric_pivot(frame, "e2e")
    assert list(e2e.index) == ["teacher", "seq_kd", "sft", "word_kd"]
    assert list(e2e.columns) == [1.0, 2.0, 4.0]
    assert e2e.at["teacher", 1.0] == 40.0
    assert e2e.at["sft", 2.0] == 31.0 and e2e.at["sft", 4.0] == 25.5
    assert e2e.at["word_kd", 2.0] == 33.5 and e2e.at["word_kd", 4.0] == 28.5
    assert e2e.at["seq_kd", 2.0] == 35.5 and e2e.at["seq_kd", 4.0] == 32.0
    qa = metric_pivot(frame, "qa")
    assert qa.at["teacher", 1.0] == 51.0
    assert qa.at["sft", 2.0] == 21.0 and qa.at["word_kd", 4.0] == 17.5
    assert qa.at["seq_kd", 4.0] == 19.0  # the failed seed is not averaged in
    assert metric_pivot(frame, "qa", stat="n").at["seq_kd", 4.0] == 1
    assert metric_pivot(frame, "e2e", stat="std").at["sft", 2.0] == pytest.approx(math.sqrt(2))
    assert metric_pivot(frame, "e2e", "chrf").at["sft", 2.0] == 51.0


def test_display_tables(run_a):
    frame = load_frame([run_a])
    table = results_table(frame, "e2e")
    assert list(table.columns) == ["×1", "×2", "×4"]
    # 95% t-interval of (30, 32): 31 ± t(0.975, 1) · sqrt(2) / sqrt(2) = 31 ± 12.706
    assert table.at["sft", "×2"] == "31.00 ± 12.71"
    assert table.at["teacher", "×1"] == "40.00 ± n/a" and table.at["teacher", "×2"] == "—"
    # one seed: the interval is undefined (not ± 0), and n is shown
    assert results_table(frame, "qa").at["seq_kd", "×4"] == "19.00 ± n/a (n=1)"
    flat = flat_table(frame)
    assert len(flat) == 26
    assert list(flat.columns) == ["task", "method", "ratio", "realized ratio", "seed", "BLEU",
                                  "chrF", "params", "latency ms", "train s"]
    assert flat.iloc[0].tolist() == ["e2e", "teacher", "1", "1.02", "0", "40.00", "60.00",
                                     "8,000,000", "3.5", "10"]
    failed = failed_table(frame)
    assert failed.to_dict("records") == [
        {"task": "qa", "method": "seq_kd", "ratio": "4", "seed": "1", "error": XSS_ERROR}]


def test_html_report(report_a, run_a):
    assert report_a == run_a / "report" / "report.html"
    page = report_a.read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match, "the figure must be embedded"
    assert base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    for method in METHODS + ["teacher", "e2e", "qa"]:
        assert method in page
    assert "<script>" not in page
    cells = re.findall(r"<td[^>]*>(CUDA OOM [^<]*)</td>", page)
    assert cells and html.unescape(cells[0]) == XSS_ERROR  # escaped text, not markup
    for text in ("run-a", "smoke-spec", "H100", "torch 2.4.0", "1h 01m 05s", "How to read"):
        assert text in page
    assert "31.00 ± 12.71" in page


def test_markdown_and_csv(report_a, run_a):
    out = report_a.parent
    md = (out / "report.md").read_text(encoding="utf-8")
    for method in METHODS + ["teacher"]:
        assert re.search(rf"^\| {method}\s+\|", md, re.MULTILINE), method
    assert "![Test quality vs. compression ratio](quality_vs_ratio.png)" in md
    assert (out / "quality_vs_ratio.png").read_bytes().startswith(PNG_MAGIC)
    assert "<script>" not in md and "&lt;script&gt;" in md
    csv = pd.read_csv(out / "results.csv")
    frame = load_frame([run_a])
    assert list(csv.columns) == list(frame.columns)
    assert len(csv) == len(frame)
    assert csv["trial_key"].tolist() == frame["trial_key"].tolist()
    pd.testing.assert_series_equal(csv["bleu"], frame["bleu"])
    assert csv.loc[csv["status"] == "error", "error"].tolist() == [XSS_ERROR]


def test_merging_two_runs(tmp_path, run_a):
    run_b = write_run(tmp_path / "run_b", "run-b", shift=2.0, meta=False)
    frame = load_frame([run_a, run_b])
    assert len(frame) == 2 * 27
    assert frame.groupby("run_id").size().to_dict() == {"run-a": 27, "run-b": 27}
    pivot = metric_pivot(frame, "e2e")
    assert pivot.at["sft", 2.0] == 32.0  # (30 + 32 + 32 + 34) / 4
    assert pivot.at["teacher", 1.0] == 41.0
    path = build_report([run_a, run_b], tmp_path / "merged")
    assert path == tmp_path / "merged" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "run-a" in page and "run-b" in page
    # mean ± t(0.975, 3) · sd / 2 of 30, 32, 32, 34: sd 1.633, t 3.182
    assert "32.00 ± 2.60" in page
    assert len(pd.read_csv(tmp_path / "merged" / "results.csv")) == 54


def test_all_failed_and_empty_runs(tmp_path):
    failed_dir = tmp_path / "failed"
    append_row(failed_dir, _row("r", "e2e", "teacher", "teacher", 1.0, 0, 0.0, error="no <GPU>"))
    append_row(failed_dir, _row("r", "e2e", "student", "sft", 2.0, 0, 0.0, error="skipped"))
    page = build_report([failed_dir]).read_text(encoding="utf-8")
    assert "No successful results" in page
    assert "data:image/png" not in page
    assert "no &lt;GPU&gt;" in page and "skipped" in page
    assert not (failed_dir / "report" / "quality_vs_ratio.png").exists()
    assert "No successful results" in (failed_dir / "report" / "report.md").read_text()

    empty = tmp_path / "empty"
    empty.mkdir()
    page = build_report([empty], tmp_path / "empty_report").read_text(encoding="utf-8")
    assert "No successful results" in page
    assert pd.read_csv(tmp_path / "empty_report" / "results.csv").empty


def test_null_metrics(tmp_path):
    run = tmp_path / "nulls"
    append_row(run, _row("r", "e2e", "teacher", "teacher", 1.0, 0, 40.0))
    append_row(run, dict(_row("r", "e2e", "student", "sft", 2.0, 0, 0.0), bleu=None, chrf=None))
    append_row(run, _row("r", "e2e", "student", "sft", 4.0, 0, 20.0))
    path = build_report([run])
    frame = load_frame([run])
    pivot = metric_pivot(frame, "e2e")
    assert pivot.at["sft", 4.0] == 20.0 and 2.0 not in pivot.columns
    flat = flat_table(frame)
    assert flat.loc[flat["ratio"] == "2", "BLEU"].tolist() == ["—"]
    assert "data:image/png;base64," in path.read_text(encoding="utf-8")


# --- a rich run: per-example outputs, references, curves, latency, the PT ablation ----------

RICH_QUALITY = {  # probability that a hypothesis word is copied from the first reference
    "ft": 0.40, "seq_kd": 0.70, "seq_kd_multi": 0.70, "sampling_pts": 0.62,
    "joint_teaching": 0.90,
}
RICH_RATIOS = (2.0, 4.0)
RICH_SEEDS = (0, 1, 2)
RICH_TEST = 60
WORDS = [
    "the", "a", "red", "blue", "green", "pub", "cafe", "river", "city", "centre", "near",
    "serves", "cheap", "food", "family", "friendly", "rated", "high", "low", "price", "range",
    "located", "eagle", "mill", "wrestlers", "rice", "boat",
]


def rich_references(task: str) -> list[list[str]]:
    """1–4 references per example (the engine stores a variable number too)."""
    rng = random.Random(f"refs-{task}")
    refs = []
    for _ in range(RICH_TEST):
        base = [rng.choice(WORDS) for _ in range(12)]
        alts = []
        for _ in range(rng.randrange(4)):
            alt = list(base)
            alt[rng.randrange(12)] = rng.choice(WORDS)
            alts.append(" ".join(alt))
        refs.append([" ".join(base), *alts])
    return refs


def rich_hypotheses(refs: list[list[str]], quality: float, key: str) -> list[str]:
    rng = random.Random(key)
    return [" ".join(w if rng.random() < quality else rng.choice(WORDS) for w in r[0].split())
            for r in refs]


def score(hyps: list[str], refs: list[list[str]]) -> dict:
    """Corpus BLEU/chrF as the engine computes them (sacreBLEU defaults, padded streams)."""
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    return {"bleu": SacreBLEU().corpus_score(hyps, streams).score,
            "chrf": CHRF().corpus_score(hyps, streams).score}


# the PT sets the engine records for plain sequence-level methods (bench/distill/methods.py)
RICH_PT_SETS = {"seq_kd": ("beam", 1), "seq_kd_multi": ("beam", 4), "sampling_pts": ("sample", 8)}


def _scored_row(run_dir, run_id, task, role, method, ratio, seed, hyps, refs, pt_set=None, **extra):
    """A row whose BLEU/chrF are sacreBLEU's scores of `hyps`, with its outputs file."""
    key = extra.pop("trial_key", None) or f"{task}|{role}|{method}|r{ratio:g}|s{seed}"
    scores = score(hyps, refs)
    outputs = f"outputs/{key.replace('|', '_')}.json"
    (run_dir / "outputs").mkdir(parents=True, exist_ok=True)
    (run_dir / outputs).write_text(json.dumps({"trial_key": key, "hypotheses": hyps}))
    steps = [0, 100, 200, 300]
    curve = [{"step": s, "loss": 5.0 - s / 100, "dev_loss": 4.0 - s / 150,
              "dev_bleu": scores["bleu"] * (s + 50) / 350} for s in steps]
    row = _row(run_id, task, role, method, ratio, seed, scores["bleu"])
    row.update(
        trial_key=key, chrf=scores["chrf"], latency_ms=None, outputs_file=outputs,
        metrics={**scores, "latency_greedy_ms": 20.0 / ratio + seed * 0.1,
                 "latency_beam_ms": 60.0 / ratio, "params_non_embedding": int(4e6 / ratio),
                 "train": {"steps": 300, "target_tokens": 12345, "teacher_forwards": 300,
                           "student_generated_tokens": 0, "train_seconds": 9.5,
                           "curve": curve if role == "student" else None},
                 **({"pt_strategy": pt_set[0], "pt_k": pt_set[1]} if pt_set else {})},
        **extra,
    )
    append_row(run_dir, row)
    return row


def write_rich_run(run_dir: Path, run_id: str = "rich", tasks=("d2t", "qg"),
                   methods=tuple(RICH_QUALITY), fail=True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "references").mkdir(exist_ok=True)
    for task in tasks:
        refs = rich_references(task)
        (run_dir / "references" / f"{task}.json").write_text(json.dumps(refs))
        _scored_row(run_dir, run_id, task, "teacher", "teacher", 1.0, 0,
                    rich_hypotheses(refs, 0.97, f"{task}-teacher"), refs)
        for method in methods:
            for ratio in RICH_RATIOS:
                for seed in RICH_SEEDS:
                    quality = RICH_QUALITY[method] - (0.05 if ratio == 4.0 else 0.0)
                    hyps = rich_hypotheses(refs, quality, f"{task}-{method}-{ratio}-{seed}")
                    _scored_row(run_dir, run_id, task, "student", method, ratio, seed, hyps,
                                refs, pt_set=RICH_PT_SETS.get(method))
    if fail:
        append_row(run_dir, _row(run_id, tasks[0], "student", "word_kd", 8.0, 0, 0.0,
                                 error="ValueError: ratio 8 is impossible: <too small>"))
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_id, "spec_name": "rich-spec", "started_at": "2025-02-01T08:00:00Z",
        "finished_at": "2025-02-01T08:12:30Z", "hardware": {"cpus": 2},
        "versions": {"torch": "2.13.0", "sacrebleu": "2.6.0"}}))
    (run_dir / "spec.yaml").write_text("name: rich-spec\nseeds: [0, 1, 2]\n")
    return run_dir


@pytest.fixture(scope="module")
def rich_run(tmp_path_factory) -> Path:
    return write_rich_run(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def rich_report(rich_run) -> Path:
    return build_report([rich_run])


def test_rich_report_files_and_sections(rich_report, rich_run):
    out = rich_report.parent
    for name in ("report.html", "report.md", "tables.tex", "results.csv", "results.parquet", "summary.csv",
                 "quality_vs_ratio.png", "quality_by_method.png", "quality_vs_latency.png",
                 "learning_curves.png", "pt_ablation.png"):
        assert (out / name).stat().st_size > 0, name
    page = rich_report.read_text(encoding="utf-8")
    for title in ("d2t: test BLEU by method and compression ratio",
                  "d2t: teacher quality retained (%)", "d2t: gain over ft (BLEU points)",
                  "d2t: paired bootstrap against ft and seq_kd",
                  "d2t: Pareto-optimal configurations", "Learning curves",
                  "d2t: pseudo-target count and strategy", "Failed trials",
                  "rich-spec", "12m 30s", "sacrebleu 2.6.0", "seeds: [0, 1, 2]"):
        assert html.escape(title, quote=False) in page, title
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 5
    assert "ratio 8 is impossible: &lt;too small&gt;" in page
    assert "Note:" not in page  # every comparison was possible and every score recomputed


def test_rich_ci_matches_raw_rows(rich_run):
    """The table's mean ± CI is recomputed here from the stored rows with scipy's t."""
    raw = read_rows(rich_run, profiles=False)
    frame = load_frame([rich_run])
    table = results_table(frame, "qg")
    for method in RICH_QUALITY:
        for ratio in RICH_RATIOS:
            values = [r["bleu"] for r in raw if r["status"] == "ok" and r["task"] == "qg"
                      and r["method"] == method and r["ratio"] == ratio]
            assert len(values) == 3
            half = scipy_stats.t.ppf(0.975, 2) * statistics.stdev(values) / math.sqrt(3)
            text = table.at[method, f"×{ratio:g}"]
            assert text.startswith(f"{statistics.mean(values):.2f} ± {half:.2f}"), text


def test_summary_csv_matches_raw_rows(rich_report, rich_run):
    """summary.csv holds mean, std, n and the 95% t-interval of every task × method × ratio ×
    metric; recomputed here from the stored rows."""
    import pandas as pd

    raw = read_rows(rich_run, profiles=False)
    summary = pd.read_csv(rich_report.parent / "summary.csv")
    checked = 0
    for (task, metric, method, ratio), cell in summary.set_index(["task", "metric", "method", "ratio"]).iterrows():
        if method not in RICH_QUALITY or metric not in ("bleu", "chrf"):
            continue
        values = [r[metric] for r in raw if r["status"] == "ok" and r["task"] == task
                  and r["method"] == method and r["ratio"] == ratio]
        assert cell["n"] == len(values) == 3
        assert cell["mean"] == pytest.approx(statistics.mean(values))
        assert cell["std"] == pytest.approx(statistics.stdev(values))
        half = scipy_stats.t.ppf(0.975, 2) * statistics.stdev(values) / math.sqrt(3)
        assert cell["ci"] == pytest.approx(half) and cell["low"] == pytest.approx(cell["mean"] - half)
        checked += 1
    assert checked >= 2 * len(RICH_QUALITY) * len(RICH_RATIOS)


def test_rich_significance_and_markers(rich_run):
    frame = load_frame([rich_run])
    sig = significance(frame, {"d2t": "bleu", "qg": "bleu"})
    t = sig.table
    assert not sig.notes
    # every non-baseline method against both baselines, and ft <-> seq_kd, at both ratios
    assert len(t) == 2 * 2 * (3 * 2 + 2)
    strong = sig.result("d2t", "joint_teaching", 2.0, "ft")
    assert strong["significant"] and strong["delta"] > 10 and strong["p_value"] < 0.01
    assert strong["seeds"] == 3 and strong["n_examples"] == RICH_TEST
    # the delta is the difference of the seed means of the stored scores
    pivot = metric_pivot(frame, "d2t")
    assert strong["delta"] == pytest.approx(pivot.at["joint_teaching", 2.0] - pivot.at["ft", 2.0])
    table = results_table(frame, "d2t", significance=sig)
    assert table.at["joint_teaching", "×2"].endswith(" †‡")
    assert "†" not in table.at["ft", "×2"] and "‡" not in table.at["seq_kd", "×2"]
    assert table.at["seq_kd", "×2"].endswith(" †")


def test_rich_retention_and_gain(rich_run):
    frame = load_frame([rich_run])
    pivot = metric_pivot(frame, "d2t")
    retention = retention_display(frame, "d2t", "bleu").data
    expected = 100 * pivot.at["seq_kd", 4.0] / pivot.at["teacher", 1.0]
    assert retention.at["seq_kd", "×4"] == f"{expected:.1f}%"
    gain = gain_display(frame, "d2t", "bleu").data
    assert "ft" not in gain.index
    assert gain.at["joint_teaching", "×2"] == (
        f"{pivot.at['joint_teaching', 2.0] - pivot.at['ft', 2.0]:+.2f}")


def test_rich_markdown_latex_parquet(rich_report, rich_run):
    out = rich_report.parent
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "![Test quality vs. latency](quality_vs_latency.png)" in md
    assert re.search(r"\| joint_teaching\s+\|.*\*\*\d+\.\d\d ± \d+\.\d\d †‡\*\*", md)
    tex = (out / "tables.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == tex.count(r"\bottomrule") >= 8
    assert r"joint\_teaching" in tex and r"$\pm$" in tex and r"$^{\dagger}$" in tex
    assert r"\textbf{" in tex and "_teaching" not in tex.replace(r"\_teaching", "")
    parquet = pd.read_parquet(out / "results.parquet")
    frame = load_frame([rich_run])
    assert parquet["trial_key"].tolist() == frame["trial_key"].tolist()
    pd.testing.assert_series_equal(parquet["bleu"], frame["bleu"])
    assert parquet["latency_ms"].notna().sum() == frame["latency_ms"].notna().sum() > 0


def test_student_init_is_part_of_the_method_identity(tmp_path):
    run = tmp_path / "inits"
    refs = rich_references("d2t")
    (run / "references").mkdir(parents=True)
    (run / "references" / "d2t.json").write_text(json.dumps(refs))
    for init, bonus in (("random", 0.0), ("shrink-alternating", 0.3)):
        for method, quality in (("ft", 0.4), ("seq_kd", 0.5)):
            for seed in (0, 1):
                hyps = rich_hypotheses(refs, quality + bonus, f"{init}-{method}-{seed}")
                _scored_row(run, "r", "d2t", "student", method, 2.0, seed, hyps, refs,
                            student_init=init, trial_key=f"d2t|{method}|{init}|{seed}")
    frame = load_frame([run])
    assert set(frame["label"]) == {"ft [random]", "seq_kd [random]",
                                   "ft [shrink-alternating]", "seq_kd [shrink-alternating]"}
    sig = significance(frame, {"d2t": "bleu"})
    # each init is compared with the ft / seq_kd of the same init only
    assert set(zip(sig.table["label"], sig.table["baseline"])) == {
        ("seq_kd [random]", "ft [random]"), ("ft [random]", "seq_kd [random]"),
        ("seq_kd [shrink-alternating]", "ft [shrink-alternating]"),
        ("ft [shrink-alternating]", "seq_kd [shrink-alternating]")}
    page = build_report([run]).read_text(encoding="utf-8")
    assert "ft [shrink-alternating]" in page and "Note:" not in page
    # one init only: the plain method name
    single = rows_frame([_row("r", "e2e", "student", "ft", 2.0, 0, 30.0) | {
        "student_init": "random"}])
    assert single["label"].tolist() == ["ft"]


def test_headline_metric_comes_from_the_rows(tmp_path):
    run = tmp_path / "summ"
    for method, seed, rouge in (("ft", 0, 30.0), ("ft", 1, 32.0), ("seq_kd", 0, 35.0)):
        row = _row("r", "summ", "student", method, 2.0, seed, 10.0)
        row["metrics"] = {"headline": "rougeL", "rougeL": rouge}
        append_row(run, row)
    frame = load_frame([run])
    assert frame["rougeL"].tolist() == [30.0, 32.0, 35.0]
    out = tmp_path / "summ_report"
    page = build_report([run], out).read_text(encoding="utf-8")
    assert "summ: test ROUGE-L by method and compression ratio" in page
    # ROUGE-L is tested like any headline now; these rows merely stored no outputs
    assert "summ: 3 successful trial(s) without stored outputs" in page
    assert "test ROUGE-L (0–100)" not in page  # axis labels live in the PNGs, not the page
    assert "31.00 ± 12.71" in page  # the rougeL values, not the bleu ones


def test_rows_with_almost_nothing_do_not_crash(tmp_path):
    run = tmp_path / "bare"
    for seed, bleu in ((0, 20.0), (1, 22.0)):
        append_row(run, {"trial_key": f"k{seed}", "status": "ok", "role": "student",
                         "task": "t", "method": "ft", "ratio": 2.0, "seed": seed,
                         "bleu": bleu, "metrics": {"train": {}}})
    append_row(run, {"trial_key": "bad", "status": "error", "error": "boom", "task": "t"})
    page = build_report([run]).read_text(encoding="utf-8")
    assert "21.00 ± 12.71" in page and "boom" in page
    assert "Quality vs. latency" not in page and "Learning curves" not in page
    assert "No paired comparisons could be made" in page
    assert "t: 2 successful trial(s) without stored outputs" in page


def test_latex_escapes_and_marks_best(tmp_path):
    run = tmp_path / "tex"
    for method, bleu in (("my_kd&50%", 40.0), ("ft", 30.0)):
        append_row(run, _row("r", "t#1", "student", method, 2.0, 0, bleu))
    build_report([run])
    tex = (run / "report" / "tables.tex").read_text(encoding="utf-8")
    assert r"my\_kd\&50\%" in tex and r"t\#1" in tex
    assert r"\textbf{40.00 $\pm$ n/a}" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert "my_kd&" not in tex and "±" not in tex


def test_significance_notes_say_why_a_comparison_was_not_made(tmp_path):
    a = write_rich_run(tmp_path / "a", "run-a", tasks=("d2t",), methods=("ft", "seq_kd"),
                       fail=False)
    b = write_rich_run(tmp_path / "b", "run-b", tasks=("d2t",), methods=("ft", "seq_kd"),
                       fail=False)
    refs = json.loads((b / "references" / "d2t.json").read_text())
    refs[0] = ["a different test set"]
    (b / "references" / "d2t.json").write_text(json.dumps(refs))
    frame = load_frame([a, b])
    sig = significance(frame, {"d2t": "bleu"})
    assert sig.table.empty
    assert any("different test sets" in n for n in sig.notes)
    # an outputs file of another trial is refused, and a stored score that does not match
    # its outputs is reported
    key = "d2t|student|ft|r2|s0"
    path = a / f"outputs/{key.replace('|', '_')}.json"
    path.write_text(json.dumps({"trial_key": "someone else", "hypotheses": []}))
    sig = significance(load_frame([a]), {"d2t": "bleu"})
    assert any("holds outputs of 'someone else'" in n for n in sig.notes)
    assert len(sig.table) == 4  # the other seeds are still compared
    assert set(sig.table["seeds"]) == {2, 3}  # ft now has 2 usable seeds: the table says so
    # outputs that do not give back the stored score are reported, trial by trial
    key = "d2t|student|seq_kd|r4|s1"
    path = a / f"outputs/{key.replace('|', '_')}.json"
    path.write_text(json.dumps({"trial_key": key, "hypotheses": ["x"] * RICH_TEST}))
    page = build_report([a], tmp_path / "ra").read_text(encoding="utf-8")
    assert re.search(r"Note: d2t seq_kd ×4 seed 1: stored BLEU \d+\.\d\d, recomputed from its "
                     r"stored outputs 0\.00", page)
    assert "holds outputs of &#x27;someone else&#x27;" in page



def test_a_rouge_headline_is_tested_like_bleu(tmp_path):
    """ROUGE-L headline: per-example F1 (max over references) from the stored outputs, the
    same two-level bootstrap, markers in the table, and each stored score recomputed."""
    from bench.evaluate import rouge  # the engine's ROUGE, as the trials store it

    run = tmp_path / "rouge"
    refs = rich_references("summ")
    (run / "references").mkdir(parents=True)
    (run / "references" / "summ.json").write_text(json.dumps(refs))
    (run / "outputs").mkdir()
    for method, quality in (("ft", 0.3), ("seq_kd", 0.8)):
        for seed in (0, 1, 2):
            key = f"summ|{method}|s{seed}"
            hyps = rich_hypotheses(refs, quality, key)
            (run / "outputs" / f"{method}{seed}.json").write_text(
                json.dumps({"trial_key": key, "hypotheses": hyps}))
            append_row(run, {"trial_key": key, "status": "ok", "role": "student", "task": "summ",
                             "method": method, "ratio": 2.0, "seed": seed,
                             "outputs_file": f"outputs/{method}{seed}.json",
                             "metrics": {"headline": "rougeL", **rouge(hyps, refs)}})
    frame = load_frame([run])
    sig = significance(frame, {"summ": "rougeL"})
    assert not sig.notes  # every stored ROUGE-L is given back by its outputs
    result = sig.result("summ", "seq_kd", 2.0, "ft")
    assert result["metric"] == "rougeL" and result["marked"] and result["delta"] > 10
    pivot = metric_pivot(frame, "summ", "rougeL")
    assert result["delta"] == pytest.approx(pivot.at["seq_kd", 2.0] - pivot.at["ft", 2.0])
    assert results_table(frame, "summ", "rougeL", sig).at["seq_kd", "×2"].endswith(" †")
    page = build_report([run]).read_text(encoding="utf-8")
    assert "summ: paired bootstrap against ft and seq_kd" in page
