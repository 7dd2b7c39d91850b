"""The training loop's own contracts: on-the-fly student PTs and loss-term auto-scaling."""
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from bench.distill.losses import CrossEntropy, ForwardKL
from bench.distill.loop import student_pseudo_targets, train
from bench.distill.methods import Source
from bench.distill.streams import Stream
from bench.generation import generate_ids
from bench.spec import TrainSpec

KW = dict(pad_id=0, eos_id=2, max_new_tokens=6, device="cpu")


def _model(seed=0):
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(vocab_size=30, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                               num_decoder_layers=1, num_heads=4, pad_token_id=0,
                                               eos_token_id=2, decoder_start_token_id=0))


def test_student_pts_use_current_weights_without_gradient():
    model = _model().train()
    inputs = [[5, 6, 7, 2], [8, 9, 2], [11, 12, 13, 14, 2]]
    modes = []
    model.register_forward_hook(lambda *a: modes.append((torch.is_inference_mode_enabled(), model.training)))
    before = student_pseudo_targets(model, inputs, **KW)
    assert modes and all(inf and not training for inf, training in modes)  # no grad, dropout off
    assert model.training  # back to training mode
    assert before == [o[0] for o in generate_ids(model, inputs, **{**KW, "max_new_tokens": 6})]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    after = student_pseudo_targets(model, inputs, **KW)
    assert after == [o[0] for o in generate_ids(model, inputs, **KW)] and after != before


def _run(auto_scale):
    inputs = [[5 + i % 7, 6, 2] for i in range(16)]
    targets = [[[9, 10 + i % 5]] for i in range(16)]
    logs = []
    teacher = _model(1).eval()
    stats = train(_model(), [Stream(Source("gold"), inputs, targets, seed=0)],
                  [(CrossEntropy(), 1.0), (ForwardKL(), 1.0)], TrainSpec(steps=2, batch_size=4, warmup_steps=1),
                  pad_id=0, eos_id=2, start_id=0, max_target=6, device="cpu", teacher=teacher,
                  auto_scale=auto_scale, log=logs.append, log_every=1)
    return stats, logs


def test_auto_scaling_makes_every_term_start_at_its_weight():
    stats, logs = _run(auto_scale=True)
    assert logs[0]["loss"] == pytest.approx(2.0, rel=1e-5)  # two terms, each scaled to 1 at step 0
    assert all(s != 1.0 for s in stats["loss_scales"])
    plain, plain_logs = _run(auto_scale=False)
    assert plain["loss_scales"] == [1.0, 1.0] and plain_logs[0]["loss"] != pytest.approx(2.0, rel=1e-3)
