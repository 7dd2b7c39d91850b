import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from bench.distill.relations import RelationKD, capture, common_heads, relation_log_probs


def _acts(d, seed, B=2, T=6):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(B, T, d, generator=g) for k in ("q", "k", "v", "hidden")}


MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])


def test_zero_iff_same_relations_and_positive_otherwise():
    term = RelationKD(("q", "k", "v"), relation_heads=4)
    t = _acts(16, 0)
    kw = dict(source_mask=MASK)
    assert term(None, None, None, student_acts=t, teacher_acts=t, **kw).item() == pytest.approx(0, abs=1e-6)
    assert term(None, None, None, student_acts=_acts(16, 1), teacher_acts=t, **kw).item() > 0


def test_widths_may_differ_heads_are_regrouped():
    assert common_heads(4, 64, 96) == 4 and common_heads(4, 22, 32) == 2 and common_heads(3, 7, 5) == 1
    term = RelationKD(("hidden",), relation_heads=4)
    loss = term(None, None, None, student_acts=_acts(8, 1), teacher_acts=_acts(12, 0), source_mask=MASK)
    assert torch.isfinite(loss) and loss.item() > 0


def test_padding_changes_nothing():
    s, t = _acts(16, 1), _acts(16, 0)
    term = RelationKD(("q", "hidden"), relation_heads=2, kind="kl")
    base = term(None, None, None, student_acts=s, teacher_acts=t, source_mask=MASK)
    s2 = {k: v.clone() for k, v in s.items()}
    t2 = {k: v.clone() for k, v in t.items()}
    for a in (s2, t2):
        for v in a.values():
            v[1, 3:] = 1e3  # garbage at the padded positions of example 2
    again = term(None, None, None, student_acts=s2, teacher_acts=t2, source_mask=MASK)
    assert again.item() == pytest.approx(base.item(), rel=1e-5)
    rmse = RelationKD(("q",), relation_heads=2, kind="rmse")
    assert rmse(None, None, None, student_acts=s, teacher_acts=t, source_mask=MASK).item() > 0


def test_relations_are_distributions_over_real_keys():
    logp = relation_log_probs(_acts(8, 0)["q"], MASK, 2)
    p = logp.exp()
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)))
    assert p[1, :, :, 3:].abs().max() < 1e-12


def test_gradient_reaches_only_the_student():
    s = {k: v.requires_grad_(True) for k, v in _acts(8, 1).items()}
    t = {k: v.requires_grad_(True) for k, v in _acts(8, 0).items()}
    RelationKD(("q", "k", "v"), 2)(None, None, None, student_acts=s, teacher_acts=t, source_mask=MASK).backward()
    assert s["q"].grad is not None and t["q"].grad is None


@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_capture_records_last_encoder_layer(arch):
    if arch == "t5":
        model = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=2,
                                                    num_decoder_layers=1, num_heads=4))
    else:
        model = BartForConditionalGeneration(BartConfig(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=1,
                                                        encoder_attention_heads=4, decoder_attention_heads=4,
                                                        encoder_ffn_dim=32, decoder_ffn_dim=32))
    ids = torch.randint(3, 40, (2, 5))
    with capture(model, ("q", "k", "v", "hidden")) as acts:
        model(input_ids=ids, decoder_input_ids=ids[:, :3])
    assert set(acts) == {"q", "k", "v", "hidden"}
    assert all(a.shape == (2, 5, 16) for a in acts.values())
    with capture(model, ()) as none:
        model(input_ids=ids, decoder_input_ids=ids[:, :3])
    assert none == {}
