import pytest

from bench.models import config_from_spec, count_params, plan_student, shape_of
from bench.spec import ModelSpec


@pytest.fixture(scope="module")
def tok(bpe_tokenizer):
    return bpe_tokenizer


def test_tokenizer_round_trip_and_eos(tok):
    text = "The Eagle, a pub near Café Rouge, is rated 5 out of 5."
    ids = tok(text).input_ids
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


@pytest.mark.parametrize("arch", ["bart", "t5"])
@pytest.mark.parametrize("ratio", [1.5, 2, 4, 8])
def test_student_within_ten_percent(tok, arch, ratio):
    teacher = config_from_spec(ModelSpec(arch=arch, d_model=128, ffn_dim=512), tok)
    plan = plan_student(teacher, ratio)
    assert plan.teacher_params == count_params(teacher)
    assert abs(plan.params - plan.teacher_params / ratio) <= 0.10 * plan.teacher_params / ratio
    assert plan.realized_ratio == pytest.approx(plan.teacher_params / plan.params)
    assert plan.config.model_type == arch and plan.config.vocab_size == teacher.vocab_size
    assert plan.params == count_params(plan.config)


def test_width_students_keep_the_teachers_depth(tok):
    teacher = config_from_spec(ModelSpec(d_model=128, ffn_dim=512), tok)
    s = shape_of(plan_student(teacher, 2, "width").config)
    assert (s.encoder_layers, s.decoder_layers) == (3, 3) and s.d_model < 128


@pytest.mark.parametrize("ratio,layers", [(2, (4, 3)), (3, (3, 2)), (4, (3, 1)), (8, (2, 1))])
def test_balanced_students_have_a_deep_encoder_and_a_shallow_decoder(tok, ratio, layers):
    """Encoder depth ÷ √ratio (rounded), decoder depth ÷ ratio (rounded down), ≥ 1 each, width sized to the target."""
    teacher = config_from_spec(ModelSpec(d_model=128, ffn_dim=512, encoder_layers=6, decoder_layers=6), tok)
    plan = plan_student(teacher, ratio)
    s = shape_of(plan.config)
    assert (s.encoder_layers, s.decoder_layers) == layers and s.d_model % s.heads == 0
    assert abs(plan.realized_ratio - ratio) / ratio <= 0.10


def test_depth_students_keep_the_teachers_width_and_cut_the_decoder_first(tok):
    teacher = config_from_spec(ModelSpec(d_model=128, ffn_dim=512, encoder_layers=6, decoder_layers=6), tok)
    s = shape_of(plan_student(teacher, 2, "depth").config)
    assert s.d_model == 128 and s.encoder_layers > s.decoder_layers
    with pytest.raises(ValueError, match="unknown student shape 'tall'; allowed: balanced, width, depth"):
        plan_student(teacher, 2, "tall")


def test_impossible_ratio_is_explained(tok):
    teacher = config_from_spec(ModelSpec(d_model=16, ffn_dim=32, encoder_layers=1, decoder_layers=1, heads=2), tok)
    with pytest.raises(ValueError, match="cannot build a student at compression ratio 1000"):
        plan_student(teacher, 1000)
