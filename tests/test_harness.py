"""results.json in lm-evaluation-harness's shape, checked against a recomputation from rows
(means, std/√n, t-intervals), with the contract's counting rules (config_hash, system_hash)."""
from __future__ import annotations

import hashlib
import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from bench.results import append_row, read_rows
from reports.harness import git_hash, model_label, write_results_json
from reports.meta import run_meta

SPEC = {"name": "tiny", "tasks": [{"name": "d2t", "sizes": {"test": 8}}], "ratios": [2.0, 4.0],
        "methods": ["ft", "seq_kd"], "seeds": [0, 1, 2], "eval": {"num_beams": 1},
        "student_train": {"steps": 3}}


def row(role, method, ratio, seed, bleu, chrf, ter, *, init="random", system="sysA", task="d2t", status="ok"):
    key = f"{task}|{role}|{method}|{init}|r{ratio:g}|s{seed}" if role == "student" else f"{task}|{role}|{method}"
    return {"trial_key": key, "status": status, "error": None if status == "ok" else "boom",
            "role": role, "task": task, "method": method, "ratio": ratio, "seed": seed, "student_init": init,
            "bleu": bleu, "chrf": chrf, "run_id": "tiny-1", "config_hash": f"{key}@{system}",
            "system_hash": sha(f"{method}-{ratio}-{init}-{system}"), "artifacts": {"data": "d4t4", "tokenizer": "t0k"},
            "config": {"sizes": {"test": 8}} if role == "teacher" else {},
            "metrics": {"headline": "bleu", "bleu": bleu, "chrf": chrf, "ter": ter, "dev_loss": 1.0 + seed}}


def sha(text):
    return hashlib.sha1(text.encode()).hexdigest()


def make_rows():
    rows = [row("teacher", "teacher", 1.0, 0, 60.0, 70.0, 30.0),
            row("baseline", "copy_input", 1.0, 0, 5.0, 20.0, 90.0)]
    for method, ratio, bleus in (("ft", 2.0, [20.0, 22.0, 27.0]), ("seq_kd", 2.0, [30.0, 31.0, 35.0]),
                                 ("seq_kd", 4.0, [25.0])):
        rows += [row("student", method, ratio, s, b, b + 20, 80 - b) for s, b in enumerate(bleus)]
    rows.append(row("student", "ft", 4.0, 0, 18.0, 38.0, 62.0, status="error"))  # failed: left out
    return rows


def recompute(values):
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, "N/A", "N/A"
    sd = statistics.stdev(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, sd / math.sqrt(n), [mean - half, mean + half]


def test_results_json_matches_a_recomputation_from_rows(tmp_path):
    run_dir = tmp_path / "tiny-1"
    for r in make_rows():
        append_row(run_dir, r)
    (run_dir / "spec.yaml").write_text(json.dumps(SPEC))  # JSON is YAML
    rows = read_rows(run_dir)
    out = json.loads(write_results_json(rows, tmp_path / "results.json", run_meta(run_dir)).read_text())

    results = out["results"]["d2t"]
    assert set(results) == {"teacher", "copy_input", "ft|r2", "seq_kd|r2", "seq_kd|r4"}
    ok = [r for r in rows if r["status"] == "ok"]
    for label, entry in results.items():
        members = [r for r in ok if model_label(r) == label]
        assert entry["n_seeds"] == len(members) and entry["seeds"] == sorted(r["seed"] for r in members)
        for metric in ("bleu", "chrf", "ter", "dev_loss"):
            values = [r["metrics"][metric] for r in members]
            mean, stderr, ci = recompute(values)
            assert entry[f"{metric},none"] == pytest.approx(mean)
            if stderr == "N/A":
                assert entry[f"{metric}_stderr,none"] == "N/A" and entry[f"{metric}_ci95,none"] == "N/A"
            else:
                assert entry[f"{metric}_stderr,none"] == pytest.approx(stderr)
                assert entry[f"{metric}_ci95,none"] == pytest.approx(ci)
    assert results["seq_kd|r2"]["bleu,none"] == pytest.approx(32.0)
    assert out["higher_is_better"]["d2t"] == {"bleu": True, "chrf": True, "ter": False, "dev_loss": False}
    assert out["n-samples"]["d2t"] == {"original": 8, "effective": 8, "seeds": {
        "copy_input": 1, "ft|r2": 3, "seq_kd|r2": 3, "seq_kd|r4": 1, "teacher": 1}}
    assert out["versions"] == {"d2t": "d4t4"}
    assert out["configs"]["d2t"]["headline"] == "bleu"
    assert out["configs"]["d2t"]["artifacts"] == {"data": "d4t4", "tokenizer": "t0k"}
    assert out["configs"]["d2t"]["task_spec"] == SPEC["tasks"][0]
    assert out["config"] == SPEC and out["run_id"] == "tiny-1" and out["notes"] == []
    assert isinstance(out["date"], float)
    assert out["git_hash"] == git_hash()


def test_same_trial_counts_once_and_different_systems_are_not_pooled(tmp_path):
    rows = make_rows()
    rows.append(dict(rows[2]))  # the same trial merged twice (same config_hash)
    other = [row("student", "ft", 2.0, s, b, b + 20, 80 - b, system="sysB") for s, b in enumerate([40.0, 44.0])]
    for r in other:
        r["run_id"] = "tiny-2"
    out = json.loads(write_results_json(rows + other, tmp_path / "r.json", {"run_id": "merged", "spec": SPEC}).read_text())
    results = out["results"]["d2t"]
    a, b = (f"ft|r2#{sha(h)[:8]}" for h in ("ft-2.0-random-sysA", "ft-2.0-random-sysB"))
    assert "ft|r2" not in results and results[a]["n_seeds"] == 3 and results[b]["n_seeds"] == 2
    assert results[b]["bleu,none"] == pytest.approx(42.0)
    assert len(out["notes"]) == 1 and "not pooled" in out["notes"][0]
    assert results["teacher"]["n_seeds"] == 1 and out["git_hash"] == git_hash()
    # hashes that share their first 8 characters are still told apart
    look_alike = [dict(r, system_hash=h) for r, h in zip(other, ["abcdef12" + "0" * 32, "abcdef12" + "1" * 32])]
    out = json.loads(write_results_json(look_alike, tmp_path / "r.json", {"spec": SPEC}).read_text())
    assert set(out["results"]["d2t"]) == {"ft|r2#abcdef120", "ft|r2#abcdef121"}


def test_tidy_frame_gives_the_same_numbers(tmp_path):
    from reports.frame import rows_frame

    rows = make_rows()
    from_rows = json.loads(write_results_json(rows, tmp_path / "a.json", {"spec": SPEC}).read_text())
    from_frame = json.loads(write_results_json(rows_frame(rows), tmp_path / "b.json", {"spec": SPEC}).read_text())
    for label in ("ft|r2", "seq_kd|r2", "seq_kd|r4", "teacher"):
        for key in ("bleu,none", "bleu_stderr,none", "chrf_ci95,none", "ter,none"):
            assert from_frame["results"]["d2t"][label][key] == from_rows["results"]["d2t"][label][key]


def test_git_hash_is_the_checkouts_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert git_hash() == expected
