"""Student initialisation: random, shrink (copy teacher layers), pretrained."""
import pytest
import torch

from bench.models import build_model, config_from_spec, count_params, shape_of
from bench.spec import ModelSpec
from bench.student_init import StudentInit, kept_layers, parse_init
from bench.students import copy_teacher_layers, make_student, plan_shrink


@pytest.fixture(scope="module")
def tok(bpe_tokenizer):
    return bpe_tokenizer


def _teacher(tok, arch, layers=6, d_model=64):
    config = config_from_spec(ModelSpec(arch=arch, d_model=d_model, ffn_dim=4 * d_model, encoder_layers=layers,
                                        decoder_layers=layers, heads=4), tok)
    return build_model(config, seed=0)


@pytest.mark.parametrize("text,expected", [
    ("random", StudentInit("random")),
    ("random/width", StudentInit("random", shape="width")),
    ("random/depth", StudentInit("random", shape="depth")),
    ("shrink-alternating", StudentInit("shrink", pattern="alternating")),
    ("shrink-first-last", StudentInit("shrink", pattern="first-last")),
    ("pretrained:/models/t5-small", StudentInit("pretrained", source="/models/t5-small")),
])
def test_parse_init_round_trips_its_label(text, expected):
    assert parse_init(text) == expected and expected.label == text


@pytest.mark.parametrize("bad", ["shrink", "shrink-every-third", "pretrained:", "Random", "distil"])
def test_unknown_inits_name_the_allowed_ones(bad):
    with pytest.raises(ValueError, match="allowed: random, random/width, random/depth, random/decoder-only, shrink-alternating, shrink-first-last, pretrained:"):
        parse_init(bad)


@pytest.mark.parametrize("total,keep,pattern,expected", [
    (6, 3, "alternating", [0, 2, 4]),
    (12, 6, "alternating", [0, 2, 4, 6, 8, 10]),
    (3, 2, "alternating", [0, 2]),
    (12, 3, "first-last", [0, 6, 11]),  # distilbart-style decoder pruning
    (6, 2, "first-last", [0, 5]),
    (6, 1, "first-last", [0]),
    (4, 4, "alternating", [0, 1, 2, 3]),
])
def test_kept_layers(total, keep, pattern, expected):
    assert kept_layers(total, keep, pattern) == expected


@pytest.mark.parametrize("arch", ["t5", "bart"])
@pytest.mark.parametrize("pattern", ["alternating", "first-last"])
def test_shrink_copies_the_chosen_teacher_layers(tok, arch, pattern):
    teacher = _teacher(tok, arch)
    plan = plan_shrink(teacher.config, 1.6)
    shape = shape_of(plan.config)
    assert shape.d_model == 64 and shape.encoder_layers == 6  # width kept; decoder layers go first
    assert abs(plan.realized_ratio - 1.6) / 1.6 <= 0.10 and shape.decoder_layers < 6
    student = build_model(plan.config, seed=1)
    mapping = copy_teacher_layers(student, teacher, pattern)
    assert mapping["decoder"] == kept_layers(6, shape.decoder_layers, pattern)
    t, s = teacher.state_dict(), student.state_dict()
    stack = "decoder.block" if arch == "t5" else "model.decoder.layers"
    for i, j in enumerate(mapping["decoder"]):
        names = [k for k in s if k.startswith(f"{stack}.{i}.")]
        assert names and all(torch.equal(s[k], t[k.replace(f"{stack}.{i}.", f"{stack}.{j}.")]) for k in names)
    shared = [k for k in s if ".block." not in k and ".layers." not in k]  # embeddings, norms, head
    assert shared and all(torch.equal(s[k], t[k]) for k in shared)
    # the copy is a real model: same outputs as the teacher when nothing was dropped (encoder)
    ids = torch.tensor([tok("name[The Eagle]").input_ids])
    with torch.no_grad():
        assert torch.allclose(teacher.eval().get_encoder()(ids).last_hidden_state,
                              student.eval().get_encoder()(ids).last_hidden_state, atol=1e-6)


def test_shrink_refuses_ratios_that_dropping_layers_cannot_reach(tok):
    teacher = _teacher(tok, "t5", layers=2)
    with pytest.raises(ValueError, match="cannot shrink the teacher .* to compression ratio 8 by dropping layers"):
        plan_shrink(teacher.config, 8)


def test_make_student_for_each_init(tok, tmp_path):
    teacher = _teacher(tok, "t5")
    teacher.save_pretrained(tmp_path / "teacher")
    random_student, plan = make_student(parse_init("random"), str(tmp_path / "teacher"), 1.6, seed=0)
    assert shape_of(random_student.config) != shape_of(teacher.config) and abs(plan.realized_ratio - 1.6) <= 0.16
    shrunk, _ = make_student(parse_init("shrink-first-last"), str(tmp_path / "teacher"), 1.6, seed=0)
    assert torch.equal(shrunk.state_dict()["shared.weight"], teacher.state_dict()["shared.weight"])
    # pretrained: a saved model with the teacher's vocabulary at the right size loads as is
    shrunk.save_pretrained(tmp_path / "pre")
    loaded, plan = make_student(parse_init(f"pretrained:{tmp_path / 'pre'}"), str(tmp_path / "teacher"), 1.6, seed=5)
    assert all(torch.equal(v, shrunk.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert plan.params == count_params(shrunk.config)


def test_pretrained_student_errors_are_clear(tok, tmp_path):
    from bench.pretrained import ModelUnavailableError

    teacher = _teacher(tok, "t5")
    teacher.save_pretrained(tmp_path / "teacher")
    with pytest.raises(ModelUnavailableError, match="missing'.*local directory does not exist.*save_pretrained"):
        make_student(parse_init(f"pretrained:{tmp_path / 'missing'}"), str(tmp_path / "teacher"), 2, seed=0)
    with pytest.raises(ValueError, match=r"compression ratio 1.00, not 4"):
        make_student(parse_init(f"pretrained:{tmp_path / 'teacher'}"), str(tmp_path / "teacher"), 4, seed=0)


def test_a_decoder_only_student_is_sized_by_ratio_and_distils(tiny_artifacts):
    """S1's student: GPT-2-style, the teacher's vocabulary, teacher/ratio parameters; word-level
    KD from the encoder-decoder teacher (the cache's labels align with its target positions)."""
    from bench.trial import worker_config
    from bench.worker import distill

    spec, art, _ = tiny_artifacts
    import dataclasses

    cfg = worker_config(spec.model_dump(mode="json"), dataclasses.asdict(art), task="d2t", method="word_kd",
                        ratio=2.0, seed=0, student_init="random/decoder-only")
    out = distill(cfg, 0, 1, torch.device("cpu"))
    assert abs(out["realized_ratio"] - 2.0) <= 0.2 and 0 <= out["bleu"] <= 100
    assert out["student_shape"]["encoder_layers"] == 0  # decoder-only
    assert out["train"]["cached_teacher_rows"] > 0
