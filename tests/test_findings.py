"""The Findings section on a synthetic run: each verdict is recomputed here from the stored
files alone — sacreBLEU's own statistics and score per resample, the resampling protocol
written out from reports.bootstrap's docstring, the rules from reports.findings' — and must
equal the table the report computes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from test_reports import _scored_row, rich_hypotheses, rich_references

from bench.results import read_rows
from reports import build_report
from reports.findings import findings, parse_study
from reports.frame import load_frame
from reports.significance import build_cells

SEED, SAMPLES, NEGLIGIBLE, MIN_SEEDS = 12345, 1000, 0.5, 3
STUDY = {"id": "S5", "title": "Joint-Teaching", "claim": "JT beats fine-tuning", "min_seeds": 3,
         "comparisons": [
             {"id": "S5a", "system": "jt", "baseline": "ft", "expect": "better"},
             {"id": "S5b", "system": "ft", "baseline": "jt", "expect": "better"},
             {"id": "S5c", "system": "twin", "baseline": "stable", "expect": "better"},
             {"id": "S5d", "system": "two_seeds", "baseline": "ft", "expect": "better"},
             {"id": "S5e", "system": "lucky", "baseline": "ft", "expect": "better"},
             {"id": "S5f", "system": "jt", "baseline": "ft", "expect": "worse"}]}


def references(n: int = 300) -> list[list[str]]:
    """A test set of `n` examples (the rich fixture's 60 are too few for a negligible CI)."""
    refs = []
    for k in range(0, n, 60):
        refs += rich_references(f"d2t-{k}")
    return refs[:n]


def write_study_run(run_dir: Path) -> Path:
    refs = references()
    (run_dir / "references").mkdir(parents=True)
    (run_dir / "references" / "d2t.json").write_text(json.dumps(refs))

    def row(method, ratio, seed, hyps):
        _scored_row(run_dir, "study", "d2t", "student", method, ratio, seed, hyps, refs)

    ft = {(r, s): rich_hypotheses(refs, 0.4, f"ft-{r}-{s}") for r in (2.0, 4.0) for s in range(3)}
    for (ratio, seed), hyps in ft.items():
        row("ft", ratio, seed, hyps)
        row("jt", ratio, seed, rich_hypotheses(refs, 0.8, f"jt-{ratio}-{seed}"))
    for seed in range(2):
        row("two_seeds", 2.0, seed, rich_hypotheses(refs, 0.8, f"two-{seed}"))
    # lucky = ft except one seed that copies the first reference: one good seed of three
    row("lucky", 2.0, 0, [r[0] for r in refs])
    for seed in (1, 2):
        row("lucky", 2.0, seed, ft[(2.0, seed)])
    # stable and twin: seeds that differ in one word each, and twin = stable but for one
    # word of one example: a real but negligible difference
    def one_word_off(hyps, example):
        words = hyps[example].split()
        words[5] = "zzz"
        return hyps[:example] + [" ".join(words)] + hyps[example + 1:]

    base = rich_hypotheses(refs, 0.6, "stable")
    for seed in range(3):
        stable = one_word_off(base, 10 + seed)
        row("stable", 2.0, seed, stable)
        row("twin", 2.0, seed, one_word_off(stable, 0))
    (run_dir / "run.json").write_text(json.dumps({"run_id": "study", "study": STUDY}))
    return run_dir


# --- the independent recomputation -----------------------------------------------------------

def _seed_scores(run_dir: Path, method: str, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Each seed's BLEU on the full test set and on every resample, with sacreBLEU only."""
    refs = json.loads((run_dir / "references" / "d2t.json").read_text())
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    rows = read_rows(run_dir, profiles=False)
    rows = sorted((r for r in rows if r["method"] == method and r["ratio"] == ratio),
                  key=lambda r: r["seed"])
    n = len(refs)
    counts = np.random.default_rng(SEED).multinomial(n, np.full(n, 1.0 / n), size=SAMPLES)
    observed, resampled = [], []
    for r in rows:
        hyps = json.loads((run_dir / r["outputs_file"]).read_text())["hypotheses"]
        bleu = BLEU()
        stats = np.asarray(bleu._extract_corpus_statistics(hyps, streams), dtype=float)
        observed.append(bleu._compute_score_from_stats(list(stats.sum(axis=0))).score)
        resampled.append([bleu._compute_score_from_stats(list(c @ stats)).score for c in counts])
    return np.asarray(observed), np.asarray(resampled)


def _expected(run_dir: Path, system: str, baseline: str, ratio: float, expect: str) -> dict:
    obs_a, res_a = _seed_scores(run_dir, system, ratio)
    obs_b, res_b = _seed_scores(run_dir, baseline, ratio)
    n_a, n_b = len(obs_a), len(obs_b)
    rng = np.random.default_rng([SEED, 1])
    width = max(n_a, n_b)
    u1, u2 = rng.random((SAMPLES, width)), rng.random((SAMPLES, width))

    def drawn_mean(res, u, n):
        idx = np.floor(u[:, :n] * n).astype(int)
        return np.array([res[idx[b], b].mean() for b in range(SAMPLES)])

    deltas = np.concatenate([drawn_mean(res_a, u1, n_a) - drawn_mean(res_b, u2, n_b),
                             drawn_mean(res_a, u2, n_a) - drawn_mean(res_b, u1, n_b)])
    deltas[np.abs(deltas) <= 1e-9] = 0.0
    p = min(1.0, 2 * min((np.sum(deltas <= 0) + 1) / (deltas.size + 1),
                         (np.sum(deltas >= 0) + 1) / (deltas.size + 1)))
    low, high = np.percentile(deltas, [2.5, 97.5])
    effect = obs_a.mean() - obs_b.mean()  # BLEU: higher is better, no sign flip
    directional = effect if expect == "better" else -effect
    if min(n_a, n_b) < MIN_SEEDS:
        verdict = "inconclusive"
    elif p < 0.05:
        verdict = "holds" if directional > 0 else "does not hold"
    elif -NEGLIGIBLE < low and high < NEGLIGIBLE:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return {"effect": effect, "low": low, "high": high, "p_value": p, "seeds": n_a,
            "baseline_seeds": n_b, "verdict": verdict}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory) -> Path:
    return write_study_run(tmp_path_factory.mktemp("study"))


def test_findings_equal_an_independent_recomputation(study_run):
    study, problems = parse_study(STUDY)
    assert problems == []
    frame = load_frame([study_run])
    table = findings(study, build_cells(frame, {"d2t": "bleu"}))
    assert len(table) == 9  # S5a, S5b, S5f at two ratios; the others at ×2 only
    for row in table.to_dict("records"):
        expected = _expected(study_run, row["system"], row["baseline"], row["ratio"],
                             row["expect"])
        where = f"{row['comparison']} ×{row['ratio']:g}"
        assert row["verdict"] == expected["verdict"], where
        assert (row["seeds"], row["baseline_seeds"]) == (
            expected["seeds"], expected["baseline_seeds"]), where
        for key in ("effect", "low", "high", "p_value"):
            assert row[key] == pytest.approx(expected[key], abs=1e-6), f"{where} {key}"
    verdicts = {(r["comparison"], r["ratio"]): r["verdict"] for r in table.to_dict("records")}
    # the verdicts the synthetic run was built to give
    assert verdicts[("S5a", 2.0)] == verdicts[("S5a", 4.0)] == "holds"
    assert verdicts[("S5b", 2.0)] == verdicts[("S5f", 4.0)] == "does not hold"
    assert verdicts[("S5c", 2.0)] == "does not hold"  # negligible: CI within ±0.5
    assert verdicts[("S5d", 2.0)] == "inconclusive"  # two seeds only
    assert verdicts[("S5e", 2.0)] == "inconclusive"  # one good seed of three
    reasons = dict(zip(table["comparison"], table["reason"]))
    assert reasons["S5d"] == "needs ≥ 3 seeds on both sides (has 2 vs 3)"
    assert reasons["S5c"].startswith("negligible")


def test_the_report_shows_the_findings(study_run):
    page = build_report([study_run]).read_text(encoding="utf-8")
    assert "Findings: S5" in page and "Claim: JT beats fine-tuning" in page
    assert "Verdicts: 2 holds, 5 does not hold, 2 inconclusive." in page
    assert "needs ≥ 3 seeds on both sides (has 2 vs 3)" in page
    md = (study_run / "report" / "report.md").read_text(encoding="utf-8")
    assert "### Findings of S5: Joint-Teaching" in md


def test_a_malformed_study_is_reported_not_used():
    study, problems = parse_study({"id": "S9", "comparisons": [{"system": "jt"}]})
    assert study is None and "needs 'system' and 'baseline'" in problems[0]
    study, problems = parse_study({"id": "S9", "comparisons": [
        {"system": "jt", "baseline": "ft", "expect": "faster"}]})
    assert study is None and "'faster'" in problems[0]
    assert parse_study(None) == (None, [])


def test_not_worse_is_a_non_inferiority_check():
    """`expect: not worse` holds when the whole interval lies above −NEGLIGIBLE, fails when the
    system is significantly worse by more than that, and is open otherwise."""
    from types import SimpleNamespace

    from reports.findings import FAILS, HOLDS, NEGLIGIBLE, OPEN, Comparison, _verdict

    comp = Comparison("x", "a", "b", "not worse")

    def verdict(delta, low, high, p):
        result = SimpleNamespace(delta=delta, low=low, high=high, p_value=p, seeds_a=3, seeds_b=3)
        cells = SimpleNamespace(compare=lambda s, b: result)
        return _verdict(SimpleNamespace(scores=SimpleNamespace(seeds=3)), object(), comp, "bleu", cells, 3,
                        None)["verdict"]

    assert verdict(0.1, -NEGLIGIBLE / 2, 0.6, 0.7) == HOLDS
    assert verdict(-2.0, -3.0, -1.0, 0.001) == FAILS
    assert verdict(-0.4, -1.5, 0.7, 0.4) == OPEN
