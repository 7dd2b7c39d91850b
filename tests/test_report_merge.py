"""Merging run dirs: one trial is counted once (config_hash), and rows of different specs
(system_hash) are never pooled as seeds of one system."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_reports import _scored_row, rich_hypotheses, rich_references

from reports import build_report
from bench.results import read_rows
from reports.frame import load_frame, load_runs
from reports.significance import significance
from reports.tables import metric_pivot

SEEDS = (0, 1, 2)


def write_run(run_dir: Path, run_id: str, spec_name: str, spec: str, quality_bonus=0.0,
              hashed=True) -> Path:
    """ft and seq_kd at ×2, three seeds; hashes derived from the spec, like the engine's."""
    refs = rich_references("d2t")
    (run_dir / "references").mkdir(parents=True)
    (run_dir / "references" / "d2t.json").write_text(json.dumps(refs))
    for method, quality in (("ft", 0.4), ("seq_kd", 0.7)):
        for seed in SEEDS:
            hyps = rich_hypotheses(refs, quality + quality_bonus, f"{spec}-{method}-{seed}")
            extra = {"config_hash": f"{spec}-{method}-{seed}",
                     "system_hash": f"{spec}-{method}-sys"} if hashed else {}
            _scored_row(run_dir, run_id, "d2t", "student", method, 2.0, seed, hyps, refs,
                        **extra)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "spec_name": spec_name}))
    return run_dir


def test_a_run_dir_merged_twice_counts_each_trial_once(tmp_path):
    a = write_run(tmp_path / "a", "run-a", "kd", "spec1")
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    (copy / "run.json").write_text(json.dumps({"run_id": "run-a-copy", "spec_name": "kd"}))
    frame, notes = load_runs({d: read_rows(d) for d in (a, copy)})
    assert len(frame) == 6 and (frame["run_id"] == "run-a").all()  # the first run's rows kept
    assert metric_pivot(frame, "d2t", stat="n").at["ft", 2.0] == 3  # not 6 seeds
    assert len(notes) == 1 and "6 row(s) repeat a trial" in notes[0]
    assert "run dirs a, copy" in notes[0]
    page = build_report([a, copy], tmp_path / "out").read_text(encoding="utf-8")
    assert "Merged runs" in page and "counted once, not as another seed" in page


def test_rows_without_config_hash_stay_apart_per_run(tmp_path):
    a = write_run(tmp_path / "a", "run-a", "kd", "spec1", hashed=False)
    b = write_run(tmp_path / "b", "run-b", "kd", "spec1", hashed=False)
    frame, notes = load_runs({d: read_rows(d) for d in (a, b)})
    assert len(frame) == 12 and notes == []  # older runs: (run_id, trial_key) as before


def test_different_specs_are_labelled_apart_not_pooled(tmp_path):
    a = write_run(tmp_path / "a", "run-a", "kd-lr3", "spec1")
    b = write_run(tmp_path / "b", "run-b", "kd-lr4", "spec2", quality_bonus=0.1)
    frame, notes = load_runs({d: read_rows(d) for d in (a, b)})
    assert set(frame["label"]) == {"ft · spec kd-lr3", "seq_kd · spec kd-lr3",
                                   "ft · spec kd-lr4", "seq_kd · spec kd-lr4"}
    pivot = metric_pivot(frame, "d2t", stat="n")
    assert (pivot[2.0] == 3).all()  # three seeds each, never six
    assert len(notes) == 2 and all("not pooled" in n for n in notes)
    assert "spec1-ft-sys"[:6] in notes[0] and "(run-a)" in notes[0] and "(run-b)" in notes[0]
    # each spec's seq_kd is compared with the ft of its own spec
    sig = significance(frame, {"d2t": "bleu"})
    pairs = set(zip(sig.table["label"], sig.table["baseline"]))
    for spec in ("kd-lr3", "kd-lr4"):
        ft, seq_kd = f"ft · spec {spec}", f"seq_kd · spec {spec}"
        assert (seq_kd, ft) in pairs and (ft, seq_kd) in pairs
    assert len(pairs) == 4
    page = build_report([a, b], tmp_path / "out").read_text(encoding="utf-8")
    assert "seq_kd · spec kd-lr4" in page and "not pooled" in page


def test_specs_with_one_name_are_told_apart_by_run(tmp_path):
    a = write_run(tmp_path / "a", "run-a", "kd", "spec1")
    b = write_run(tmp_path / "b", "run-b", "kd", "spec2")
    frame = load_frame([a, b])
    assert "ft · spec run-a" in set(frame["label"]) and "ft · spec run-b" in set(frame["label"])
