"""Shared stages on a tiny real task: every artifact is built once, then reused."""
import json
from pathlib import Path

from bench.data import load_splits
from bench.stages import prepare_task

STAGES = ["data", "tokenizer", "teacher", "pseudo_targets/beam-k1", "teacher_eval"]


def test_all_stages_built(tiny_artifacts):
    spec, art, root = tiny_artifacts
    assert set(art.hashes) == set(STAGES)
    for stage in STAGES:
        path = Path(art.paths[stage])
        assert path.is_dir() and path.parent.name == stage.split("/")[0] and path.name == art.hashes[stage]
    splits = load_splits(art.paths["data"])
    sizes = spec.tasks[0].sizes
    assert len(splits.splits["labeled"]) == sizes.labeled and len(splits.splits["unlabeled"]) == sizes.unlabeled
    pts = json.loads((Path(art.paths["pseudo_targets/beam-k1"]) / "pseudo_targets.json").read_text())
    assert len(pts["labeled"]) == sizes.labeled and len(pts["unlabeled"]) == sizes.unlabeled
    assert all(len(cands) == 1 and isinstance(cands[0], str) for cands in pts["unlabeled"])
    ev = art.teacher_eval
    assert 0 <= ev["bleu"] <= 100 and ev["params"] > 0 and ev["latency_ms"] > 0
    assert ev["bleu_signature"].startswith("nrefs:2")


def test_second_prepare_reuses_everything(tiny_artifacts):
    spec, first, root = tiny_artifacts
    messages = []
    again = prepare_task(spec, spec.tasks[0], str(root), say=messages.append)
    assert all(again.reused.values()) and again.hashes == first.hashes
    assert all(again.build_seconds[s] == 0.0 for s in STAGES)
    assert any("teacher: reused cached" in m for m in messages)


def test_changed_teacher_budget_rebuilds_only_downstream(tiny_artifacts, tmp_path):
    spec, first, root = tiny_artifacts
    entry = spec.tasks[0]
    teacher = entry.teacher.model_copy(update={"train": entry.teacher.train.model_copy(update={"steps": 9})})
    changed = prepare_task(spec, entry.model_copy(update={"teacher": teacher}), str(root), say=lambda m: None)
    assert changed.reused["data"] and changed.reused["tokenizer"]
    assert not changed.reused["teacher"] and not changed.reused["pseudo_targets/beam-k1"]
    assert changed.hashes["teacher"] != first.hashes["teacher"]
