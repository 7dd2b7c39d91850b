"""The distillation of one trial, run without Ray on the tiny artifacts (real models)."""
import dataclasses

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from bench.trial import worker_config
from bench.worker import distill


def _cfg(spec, art, method):
    return worker_config(spec.model_dump(mode="json"), dataclasses.asdict(art), task="d2t", method=method,
                         ratio=2.0, seed=0)


@pytest.mark.parametrize("method", ["ft", "word_kd", "seq_kd", "joint_teaching"])
def test_each_method_trains_and_evaluates(tiny_artifacts, method):
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, method), 0, 1, torch.device("cpu"))
    assert 0 <= out["bleu"] <= 100 and 0 <= out["chrf"] <= 100
    assert abs(out["realized_ratio"] - 2.0) <= 0.2
    assert out["train"]["steps"] == spec.student_train.steps
    assert out["token_ids"] == "tokenized artifact"  # the stages' ids (tests/test_stages.py: equal to encoding)
    train = out["train"]
    # the teacher cache serves fixed targets (gold, teacher PTs); only student PTs need the teacher online
    assert (train["cached_teacher_rows"] > 0) == (method in ("word_kd", "joint_teaching"))
    assert (train["teacher_forwards"] > 0) == (method == "joint_teaching")
    assert (out["teacher_cache"] is not None) == (method in ("word_kd", "joint_teaching"))
    assert out["compute"]["total"] > out["compute"]["student_forward"] > 0
    assert (out["compute"]["student_generation"] > 0) == (method == "joint_teaching")
    assert out["selection"]["metric"] == "dev_bleu" and out["selection"]["selected_step"] >= 1
    assert (out["train"]["student_generated_tokens"] > 0) == (method == "joint_teaching")


def test_distillation_never_changes_the_teacher(tiny_artifacts):
    spec, art, _ = tiny_artifacts
    before = {k: v.clone() for k, v in AutoModelForSeq2SeqLM.from_pretrained(art.paths["teacher"]).state_dict().items()}
    distill(_cfg(spec, art, "joint_teaching"), 0, 1, torch.device("cpu"))
    after = AutoModelForSeq2SeqLM.from_pretrained(art.paths["teacher"]).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_result(tiny_artifacts):
    spec, art, _ = tiny_artifacts
    a = distill(_cfg(spec, art, "ft"), 0, 1, torch.device("cpu"))
    b = distill(_cfg(spec, art, "ft"), 0, 1, torch.device("cpu"))
    assert a["train"]["final_loss"] == b["train"]["final_loss"] and a["bleu"] == b["bleu"]


@pytest.fixture(scope="module")
def multi_pt_artifacts(tmp_path_factory):
    from bench.spec import parse_spec
    from bench.stages import prepare_task
    from tests.conftest import tiny_spec_dict

    spec = parse_spec(tiny_spec_dict(methods=["seq_kd_multi", "sampling_pts", "word_kd_pts", "student_pts",
                                              "joint_teaching"]))
    return spec, prepare_task(spec, spec.tasks[0], str(tmp_path_factory.mktemp("multi")), say=lambda m: None)


def test_k_pseudo_targets_are_built_per_strategy(multi_pt_artifacts):
    import json
    from pathlib import Path

    spec, art = multi_pt_artifacts
    assert {"pseudo_targets/beam-k1", "pseudo_targets/beam-k4", "pseudo_targets/sample-k8-t1-p1-top0"} <= set(art.paths)
    beams = json.loads((Path(art.paths["pseudo_targets/beam-k4"]) / "pseudo_targets.json").read_text())
    samples = json.loads((Path(art.paths["pseudo_targets/sample-k8-t1-p1-top0"]) / "pseudo_targets.json").read_text())
    n = spec.tasks[0].sizes.unlabeled
    assert len(beams["unlabeled"]) == n and all(len(c) == 4 for c in beams["unlabeled"])
    assert len(samples["unlabeled"]) == n and all(len(c) == 8 for c in samples["unlabeled"])
    assert sum(len(set(c)) > 1 for c in samples["unlabeled"]) > n // 2  # samples differ


@pytest.mark.parametrize("method", ["seq_kd_multi", "sampling_pts", "word_kd_pts", "student_pts"])
def test_pt_presets_train(multi_pt_artifacts, method):
    spec, art = multi_pt_artifacts
    out = distill(_cfg(spec, art, method), 0, 1, torch.device("cpu"))
    assert 0 <= out["bleu"] <= 100 and out["train"]["steps"] == spec.student_train.steps
    assert (out["train"]["student_generated_tokens"] > 0) == (method == "student_pts")


def test_joint_teaching_without_student_pts_differs(multi_pt_artifacts):
    """word_kd_pts is joint_teaching minus its student-PT source: results must differ."""
    spec, art = multi_pt_artifacts
    jt = distill(_cfg(spec, art, "joint_teaching"), 0, 1, torch.device("cpu"))
    no_student = distill(_cfg(spec, art, "word_kd_pts"), 0, 1, torch.device("cpu"))
    assert jt["train"]["student_generated_tokens"] > 0 == no_student["train"]["student_generated_tokens"]
    assert jt["train"]["final_loss"] != no_student["train"]["final_loss"]


def test_noisy_teacher_forward_uses_dropout_and_restores_eval(tiny_artifacts):
    from bench.distill.loop import teacher_forward

    spec, art, _ = tiny_artifacts
    teacher = AutoModelForSeq2SeqLM.from_pretrained(art.paths["teacher"]).eval()
    teacher.config.dropout_rate = 0.5
    for m in teacher.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    ids = torch.randint(4, 100, (2, 7))
    mask, labels = torch.ones_like(ids), torch.randint(4, 100, (2, 5))
    kw = {"pad_id": 0, "sep_id": 2}
    clean = [teacher_forward(teacher, ids, mask, labels, **kw) for _ in range(2)]
    noisy = [teacher_forward(teacher, ids, mask, labels, noisy=True, **kw) for _ in range(2)]
    assert torch.equal(clean[0], clean[1]) and not torch.equal(noisy[0], noisy[1])
    assert not teacher.training and not clean[0].requires_grad


def test_noisy_kd_trains(tiny_artifacts):
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, "noisy_kd"), 0, 1, torch.device("cpu"))
    assert out["train"]["teacher_forwards"] > 0 and 0 <= out["bleu"] <= 100


@pytest.mark.parametrize("method", ["att_kd", "hidden_kd"])
def test_relation_presets_train(tiny_artifacts, method):
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, method), 0, 1, torch.device("cpu"))
    assert out["train"]["teacher_forwards"] > 0 and 0 <= out["bleu"] <= 100


def test_gkd_trains_with_jsd_and_student_outputs(tiny_artifacts):
    from bench.distill.losses import GeneralizedJSD
    from bench.distill.methods import get_method

    (term,) = [t.build() for t in get_method("gkd").losses]
    assert isinstance(term, GeneralizedJSD) and term.beta == 0.5
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, "gkd"), 0, 1, torch.device("cpu"))
    assert out["train"]["student_generated_tokens"] > 0 and 0 <= out["bleu"] <= 100


def test_distillm_trains_with_skew_kl_and_records_its_schedule(tiny_artifacts):
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, "distillm"), 0, 1, torch.device("cpu"))
    train = out["train"]
    assert train["cached_teacher_rows"] > 0 and 0 <= out["bleu"] <= 100  # teacher PTs come from the cache
    assert train["sgo_prob_history"][0] == 0.0  # φ starts at 0 ...
    assert len(train["curve"]) >= 2  # ... and adapts to dev losses measured during training
    # φ = 0 until the dev loss rises: every step so far trained on the teacher's PTs
    if max(train["sgo_prob_history"]) == 0.0:
        assert train["student_generation_steps"] == 0


def test_shrink_initialised_student_starts_from_teacher_layers(tiny_artifacts, tmp_path):
    """A deeper teacher (same tokenizer) so layers can be dropped; the student keeps its width."""
    from bench.models import build_model, count_params, shape_of, with_shape
    from bench.students import plan_shrink

    spec, art, _ = tiny_artifacts
    small = AutoModelForSeq2SeqLM.from_pretrained(art.paths["teacher"])
    shape = dataclasses.replace(shape_of(small.config), encoder_layers=3, decoder_layers=3)
    teacher = build_model(with_shape(small.config, shape), seed=0)
    from bench.artifacts import ArtifactStore

    stored = ArtifactStore(tmp_path).get_or_build("teacher", {"deeper": 3}, lambda d: teacher.save_pretrained(d))
    one_decoder = with_shape(teacher.config, dataclasses.replace(shape, decoder_layers=1))
    ratio = round(count_params(teacher.config) / count_params(one_decoder), 2)
    assert shape_of(plan_shrink(teacher.config, ratio).config).decoder_layers == 1
    cfg = _cfg(spec, art, "ft")
    cfg.update(ratio=ratio, student_init="shrink-first-last",
               paths={**art.paths, "teacher": str(stored.location)})
    out = distill(cfg, 0, 1, torch.device("cpu"))
    assert out["student_shape"]["d_model"] == shape.d_model and out["student_shape"]["decoder_layers"] == 1
    assert abs(out["realized_ratio"] - ratio) / ratio < 0.01 and 0 <= out["bleu"] <= 100


def test_saved_student_reproduces_its_test_outputs(tiny_artifacts, tmp_path):
    from bench.data import Lengths, encode, load_splits
    from bench.evaluate import decode
    from bench.generation import generate_ids
    from bench.pretrained import load_model, load_tokenizer

    spec, art, _ = tiny_artifacts
    cfg = {**_cfg(spec, art, "seq_kd"), "save_to": str(tmp_path / "student")}
    out = distill(cfg, 0, 1, torch.device("cpu"))
    assert out["student_dir"] == cfg["save_to"]
    student, tok = load_model(cfg["save_to"]), load_tokenizer(cfg["save_to"])
    lengths = Lengths(**cfg["lengths"])
    test = load_splits(art.paths["data"]).splits["test"]
    ids = generate_ids(student, encode(tok, [r["source"] for r in test], lengths.max_source),
                       pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, max_new_tokens=lengths.max_target,
                       num_beams=spec.eval.num_beams, batch_size=spec.eval.batch_size)
    assert decode(tok, [o[0] for o in ids]) == out["hypotheses"]


@pytest.mark.parametrize("method", ["att_kd_encoder", "seq_kd_labeled", "joint_teaching_mix"])
def test_the_other_presets_train(multi_pt_artifacts, method):
    """With the tests above, every preset of METHODS trains here, outside Ray (the Ray path runs
    one method of each kind in tests/test_e2e.py)."""
    spec, art = multi_pt_artifacts
    out = distill(_cfg(spec, art, method), 0, 1, torch.device("cpu"))
    assert 0 <= out["bleu"] <= 100 and out["train"]["steps"] == spec.student_train.steps
    if method == "seq_kd_labeled":
        assert out["pt_visits"]["visits_mean"] > 0  # teacher PTs of the labeled inputs only


def test_every_preset_is_trained_by_some_test():
    import re
    from pathlib import Path

    from bench.distill.methods import METHODS

    text = Path(__file__).read_text()
    named = set(re.findall(r'"([a-z_]+)"', text))
    assert set(METHODS) <= named, set(METHODS) - named
