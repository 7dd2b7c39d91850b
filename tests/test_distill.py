"""The distillation of one trial, run without Ray on the tiny artifacts (real models)."""
import dataclasses

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from bench.trial import distill


def _cfg(spec, art, method):
    return {"task": "d2t", "method": method, "ratio": 2.0, "seed": 0, "paths": art.paths,
            "lengths": dataclasses.asdict(art.lengths), "train": spec.student_train.model_dump(),
            "eval": spec.eval.model_dump(), "device": "cpu", "precision": "fp32", "cpus_per_worker": 1}


@pytest.mark.parametrize("method", ["ft", "word_kd", "seq_kd", "joint_teaching"])
def test_each_method_trains_and_evaluates(tiny_artifacts, method):
    spec, art, _ = tiny_artifacts
    out = distill(_cfg(spec, art, method), 0, 1, torch.device("cpu"))
    assert 0 <= out["bleu"] <= 100 and 0 <= out["chrf"] <= 100
    assert abs(out["realized_ratio"] - 2.0) <= 0.2
    assert out["train"]["steps"] == spec.student_train.steps
    uses_teacher = method in ("word_kd", "joint_teaching")
    assert (out["train"]["teacher_forwards"] > 0) == uses_teacher
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
