"""Per-example scores are computed once per row's outputs: within a build, across builds (the
report's `.cache/`), and across reports that merge runs (each run's own report cache)."""
from __future__ import annotations

import json

import numpy as np
from test_reports import write_rich_run

from reports import build_report
from reports.frame import load_frame
from reports.score_store import CACHE_DIR, ScoreStore
from reports.significance import build_cells


def _cells(run, store):
    return build_cells(load_frame([run]), {"d2t": "bleu"}, store)


def test_a_second_build_scores_nothing_and_an_edited_file_is_rescored(tmp_path):
    run = write_rich_run(tmp_path / "run", tasks=("d2t",), methods=("ft", "seq_kd"), fail=False)
    cache = tmp_path / "cache"
    first = ScoreStore(cache)
    cells = _cells(run, first)
    assert first.computed == 12  # 2 methods × 2 ratios × 3 seeds, each scored once
    first.flush()
    second = ScoreStore(cache)
    again = _cells(run, second)
    assert second.computed == 0
    for a, b in zip(cells.by_task["d2t"], again.by_task["d2t"]):
        assert np.array_equal(a.scores.resampled, b.scores.resampled)  # the very same numbers
    path = run / "outputs" / "d2t_student_ft_r2_s0.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "hypotheses": ["x"] * len(data["hypotheses"])}))
    third = ScoreStore(cache)
    _cells(run, third)
    assert third.computed == 1


def test_entries_are_packed_and_reused_by_a_merged_report(tmp_path, monkeypatch):
    monkeypatch.setattr("reports.score_store.REPACK_AFTER", 5)
    run = write_rich_run(tmp_path / "run", tasks=("d2t",), methods=("ft", "seq_kd"), fail=False)
    build_report([run])  # the run's own report: its cache fills and is packed
    # per (metric, test set): the per-example statistics and the scores on the resamples
    shelves = sorted((run / "report" / CACHE_DIR).glob("*/*/*"))
    assert [s.name for s in shelves] == ["scores-1000x12345", "stats"]
    for shelf in shelves:
        assert (shelf / "current.json").exists() and not list((shelf / "loose").glob("*.npy"))
        assert len(json.loads(next(shelf.glob("pack-*.json")).read_text())) == 12
    # a report elsewhere reads the run's cache instead of scoring again
    store = ScoreStore(tmp_path / "elsewhere", read_dirs=[run / "report" / CACHE_DIR])
    cells = _cells(run, store)
    assert store.computed == 0 and len(cells.by_task["d2t"]) == 4


def test_a_report_on_an_object_store_reuses_its_uploaded_cache(tmp_path, s3_bucket, monkeypatch):
    """A run dir on an S3-compatible store: the report is built locally and uploaded with its
    `.cache/`; the next build downloads that cache first, so it scores nothing again."""
    from bench.storage import Location

    local = write_rich_run(tmp_path / "run", tasks=("d2t",), methods=("ft", "seq_kd"), fail=False)
    remote = Location.of(s3_bucket).join("runs", "rich")
    remote.upload_dir(local)
    stores = []
    init = ScoreStore.__init__

    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        stores.append(self)

    monkeypatch.setattr(ScoreStore, "__init__", recorded)
    for _ in range(2):
        build_report([remote.uri])
    assert [s.computed for s in stores] == [12, 0]
    assert remote.join("report", CACHE_DIR.as_posix()).exists() and remote.join("report", "report.html").exists()


def test_statistics_stored_with_the_outputs_are_read_not_recomputed(tmp_path):
    """A trial stores each metric's per-example statistics beside its outputs (one .npy per
    metric and signature); a cold report reads them and scores nothing itself, and they are
    the statistics it would have computed."""
    from bench.example_stats import example_stats, references_digest, signature
    from bench.results import load_example_stats, read_rows, write_example_stats, write_outputs

    run = write_rich_run(tmp_path / "run", tasks=("d2t",), methods=("ft", "seq_kd"), fail=False)
    references = json.loads((run / "references" / "d2t.json").read_text())
    rows = read_rows(run, profiles=False)
    for row in rows:  # as a trial stores them (write_outputs, under the row's own outputs file)
        if row.get("outputs_file"):
            hyps = json.loads((run / row["outputs_file"]).read_text())["hypotheses"]
            write_example_stats(run, row["outputs_file"], row["trial_key"], *example_stats(hyps, references))
    rel = write_outputs(tmp_path / "other", "k", ["a b"] * len(references), references)
    assert len(list((tmp_path / "other").glob(rel.removesuffix(".json") + ".stats.*.npy"))) == 5
    stored = sorted(p.name for p in (run / "outputs").glob("d2t_student_ft_r2_s0.stats.*.npy"))
    assert [name.split(".")[2] for name in stored] == ["bleu", "chrf", "rouge1", "rouge2", "rougeL"]
    row = next(r for r in rows if r.get("outputs_file", "").endswith("d2t_student_ft_r2_s0.json"))
    hyps = json.loads((run / row["outputs_file"]).read_text())["hypotheses"]
    expected, _ = example_stats(hyps, references)
    digest = references_digest(references)
    assert np.array_equal(load_example_stats(run, row, "bleu", signature("bleu"), digest), expected["bleu"])
    # other references or another signature: not these statistics
    assert load_example_stats(run, row, "bleu", signature("bleu"), "another-digest") is None
    assert load_example_stats(run, row, "bleu", signature("bleu", "none"), digest) is None
    store = ScoreStore(tmp_path / "cache")
    _cells(run, store)
    assert store.computed == 0
