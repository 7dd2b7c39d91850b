"""Shared stages on a tiny real task: every artifact is built once, then reused."""
import dataclasses
import json
from pathlib import Path

from bench.data import encode, load_splits, load_token_ids
from bench.pretrained import load_tokenizer
from bench.stages import prepare_task

STAGES = ["data", "tokenizer", "tokenized", "teacher", "pseudo_targets/beam-k1", "tokenized/pseudo_targets/beam-k1",
          "teacher_cache/gold-t1", "teacher_cache/beam-k1-t1", "teacher_eval"]


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
    # the token ids trials read are what the task's tokenizer gives for those texts
    tok = load_tokenizer(art.paths["tokenizer"])
    ids = load_token_ids(art.paths["tokenized"])
    one = lambda text, n, eos=False: encode(tok, [text], n, add_eos=eos)[0]  # noqa: E731 - one text at a time
    for split in ("labeled", "unlabeled"):
        assert ids[f"inputs.{split}"] == [one(x, art.lengths.max_source, True) for x in splits.sources(split)]
    assert ids["gold.labeled"] == [one(r["target"], art.lengths.max_target) for r in splits.splits["labeled"]]
    assert len(ids["inputs.unlabeled"]) == sizes.unlabeled and set(ids) == {"inputs.labeled", "inputs.unlabeled",
                                                                            "gold.labeled"}
    pt_ids = load_token_ids(art.paths["tokenized/pseudo_targets/beam-k1"])
    assert pt_ids == {s: [[one(c, art.lengths.max_target) for c in cands] for cands in pts[s]]
                      for s in ("labeled", "unlabeled")}
    assert all(len(c) == 1 and c[0] and isinstance(c[0][0], int) for c in pt_ids["unlabeled"])
    ev = art.teacher_eval
    assert 0 <= ev["bleu"] <= 100 and ev["bleu_signature"].startswith("nrefs:2")
    curve = ev["train"]["curve"]  # the teacher's learning curve and dev selection are recorded
    assert curve[0]["step"] == 0 and curve[-1]["step"] == spec.tasks[0].teacher.train.steps
    assert ev["train"]["selection"]["metric"] == "dev_bleu" and ev["train"]["compute"]["total"] > 0


def test_second_prepare_reuses_everything(tiny_artifacts):
    spec, first, root = tiny_artifacts
    messages = []
    again = prepare_task(spec, spec.tasks[0], str(root), say=messages.append)
    assert all(again.reused.values()) and again.hashes == first.hashes
    assert all(again.build_seconds[s] == 0.0 for s in STAGES)
    assert art_flops_recorded(again)
    assert any("teacher: reused cached" in m for m in messages)


def art_flops_recorded(art) -> bool:
    """Building PTs, the cache and the teacher cost compute that trials count in full."""
    return all(art.flops.get(label, 0) > 0 for label in ("teacher", "pseudo_targets/beam-k1",
                                                            "teacher_cache/gold-t1"))


def test_changed_teacher_budget_rebuilds_only_downstream(tiny_artifacts, tmp_path):
    spec, first, root = tiny_artifacts
    entry = spec.tasks[0]
    teacher = entry.teacher.model_copy(update={"train": entry.teacher.train.model_copy(update={"steps": 9})})
    changed = prepare_task(spec, entry.model_copy(update={"teacher": teacher}), str(root), say=lambda m: None)
    assert changed.reused["data"] and changed.reused["tokenizer"]
    assert not changed.reused["teacher"] and not changed.reused["pseudo_targets/beam-k1"]
    assert changed.hashes["teacher"] != first.hashes["teacher"]


def test_a_corrupted_artifact_is_detected_and_rebuilt(tiny_artifacts, tmp_path):
    """64 KiB of the teacher's weights zeroed on disk: the checksum catches it, the teacher is
    rebuilt (identically: same seed, same machine) and everything downstream stays valid."""
    import shutil

    spec, first, root = tiny_artifacts
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    weights = Path(first.paths["teacher"].replace(str(root), str(copy))) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1000:1000 + 65536] = bytes(min(65536, len(data) - 1000))
    weights.write_bytes(bytes(data))
    messages = []
    again = prepare_task(spec, spec.tasks[0], str(copy), say=messages.append)
    assert not again.reused["teacher"] and "model.safetensors does not match its checksum" in again.notes["teacher"]
    assert any("stored copy was corrupt" in m for m in messages)
    assert again.hashes == first.hashes and again.reused["pseudo_targets/beam-k1"]
    from bench.artifacts import verify

    verify(Path(again.paths["teacher"]))  # the rebuilt copy passes


def test_one_beam_search_serves_every_beam_pt_set_of_its_width(tmp_path):
    from bench.spec import parse_spec
    from tests.conftest import tiny_spec_dict

    data = tiny_spec_dict(methods=["seq_kd", "seq_kd_multi"])
    data["pseudo_targets"] = {"num_beams": 4, "batch_size": 32}
    data["teacher_cache"] = "off"
    spec = parse_spec(data)
    art = prepare_task(spec, spec.tasks[0], str(tmp_path), say=lambda m: None)
    one = json.loads((Path(art.paths["pseudo_targets/beam-k1"]) / "pseudo_targets.json").read_text())
    four = json.loads((Path(art.paths["pseudo_targets/beam-k4"]) / "pseudo_targets.json").read_text())
    assert all(a == b[:1] for a, b in zip(one["unlabeled"], four["unlabeled"]))
    meta = json.loads((Path(art.paths["pseudo_targets/beam-k1"]) / "generation.json").read_text())
    assert meta["shared_search"] and art.flops["pseudo_targets/beam-k1"] == art.flops["pseudo_targets/beam-k4"] > 0
    assert not any(k.startswith("teacher_cache/") for k in art.paths)  # `teacher_cache: off`


def test_token_ids_round_trip_and_a_corrupt_file_is_named(tmp_path):
    """K candidates per input (uneven, an empty one), an empty split (labeled = 0) and empty sequences."""
    import pytest

    from bench.data import save_token_ids

    seqs = {"inputs.labeled": [], "inputs.unlabeled": [[5, 6, 1], [1]], "gold.labeled": [[], [7]]}
    cands = {"labeled": [], "unlabeled": [[[3, 4], [3], []], [[9]]]}
    save_token_ids(tmp_path, seqs, cands)
    assert load_token_ids(tmp_path) == {**seqs, **cands}
    (tmp_path / "token_ids.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="token ids .* unreadable.*delete"):
        load_token_ids(tmp_path)


def test_stored_token_ids_do_not_change_a_trials_identity(tiny_artifacts):
    """They follow from the data, tokenizer and PT hashes: rows from before they were stored keep
    their config and system hashes (a resume reuses them, the report pools their seeds)."""
    from bench.trial import trial_identity, worker_config

    spec, art, _ = tiny_artifacts
    cfg = worker_config(spec.model_dump(mode="json"), dataclasses.asdict(art), task="d2t", method="seq_kd",
                        ratio=2.0, seed=0)
    without = {k: v for k, v in art.hashes.items() if not k.startswith("tokenized")}
    assert trial_identity(cfg, art.hashes) == trial_identity(cfg, without)
    assert trial_identity(cfg, {**without, "teacher": "other"}) != trial_identity(cfg, without)
