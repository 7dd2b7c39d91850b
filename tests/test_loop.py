"""The training loop's own contracts: on-the-fly student PTs and loss-term auto-scaling."""
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from bench.distill.loop import student_pseudo_targets, train
from bench.distill.losses import CrossEntropy, ForwardKL
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
                  pad_id=0, eos_id=2, max_target=6, device="cpu", teacher=teacher,
                  auto_scale=auto_scale, log=logs.append, log_every=1)
    return stats, logs


def test_auto_scaling_divides_each_term_by_its_mean_over_the_first_batches_in_eval_mode():
    """KD4Gen's recipe: scale = 1 / max(mean of the term over the first N batches, floor),
    measured with both models in eval mode before any update; training then sees the same
    batches as without calibration."""
    from bench.distill.loop import TrainingRun
    from bench.distill.methods import AutoScale

    inputs = [[5 + i % 7, 6, 2] for i in range(16)]
    targets = [[[9, 10 + i % 5]] for i in range(16)]
    stream = Stream(Source("gold"), inputs, targets, seed=0)
    stream.set_block(4)
    batches = [stream.take(4) for _ in range(3)]
    student, teacher = _model().eval(), _model(1).eval()
    terms = [CrossEntropy(), ForwardKL()]
    from bench.generation import labels_from_targets, pad_batch
    from bench.lm import forward_logits

    sums = [0.0, 0.0]
    with torch.no_grad():
        for ex in batches:
            ids, mask = pad_batch([e.source for e in ex], 0, "cpu")
            labels = labels_from_targets([e.target for e in ex], 2, 6, "cpu")
            s = forward_logits(student, ids, mask, labels, pad_id=0, sep_id=2)
            t = forward_logits(teacher, ids, mask, labels, pad_id=0, sep_id=2)
            sums[0] += terms[0](s, labels).item()
            sums[1] += terms[1](s, labels, t).item()
    expected = [1 / max(v / 3, 0.025) for v in sums]
    run = TrainingRun(_model(), [Stream(Source("gold"), inputs, targets, seed=0)],
                      [(t, 1.0) for t in terms], TrainSpec(steps=2, batch_size=4, warmup_steps=1),
                      pad_id=0, eos_id=2, max_target=6, device="cpu", teacher=teacher,
                      auto_scale=AutoScale(batches=3))
    stats = run.run()
    assert stats["loss_scales"] == pytest.approx(expected, rel=1e-5)
    plain = TrainingRun(_model(), [Stream(Source("gold"), inputs, targets, seed=0)],
                        [(t, 1.0) for t in terms], TrainSpec(steps=2, batch_size=4, warmup_steps=1),
                        pad_id=0, eos_id=2, max_target=6, device="cpu", teacher=teacher)
    assert plain.run()["loss_scales"] == [1.0, 1.0]
    # calibration puts the data state back: training drew exactly the batches it draws without it
    assert run.streams[0].state_dict() == plain.streams[0].state_dict()


def _pairs(n=16):
    return [[5 + i % 7, 6, 2] for i in range(n)], [[9, 10 + i % 5] for i in range(n)]


def test_dev_loss_is_the_mean_token_cross_entropy():
    import torch.nn.functional as F

    from bench.distill.loop import dev_loss

    model = _model().train()
    inputs, targets = _pairs(5)
    got = dev_loss(model, list(zip(inputs, targets)), pad_id=0, eos_id=2, max_target=6,
                   device="cpu", batch_size=2)
    assert model.training  # back in training mode
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in zip(inputs, targets):
            labels = torch.tensor([y + [2]])
            dec = torch.tensor([[0] + y])
            logits = model(input_ids=torch.tensor([x]), decoder_input_ids=dec).logits
            total += F.cross_entropy(logits[0], labels[0], reduction="sum").item()
            n += labels.numel()
    assert got == pytest.approx(total / n, rel=1e-5)


def test_learning_curve_has_a_dev_loss_at_start_every_period_and_end():
    inputs, targets = _pairs()
    stats = train(_model(), [Stream(Source("gold"), inputs, [[t] for t in targets], seed=0)],
                  [(CrossEntropy(), 1.0)], TrainSpec(steps=5, batch_size=4, warmup_steps=1, dev_every=2),
                  pad_id=0, eos_id=2, max_target=6, device="cpu",
                  dev=list(zip(inputs, targets)))
    assert [c["step"] for c in stats["curve"]] == [0, 2, 4, 5]
    assert stats["curve"][0]["loss"] is None and all(c["loss"] > 0 for c in stats["curve"][1:])
    assert stats["selection"]["metric"] == "dev_loss"  # no dev metric given: selected by dev loss
    assert stats["curve"][-1]["dev_loss"] < stats["curve"][0]["dev_loss"]  # it learns the dev targets


def test_adaptive_sgo_generates_replays_and_needs_dev():
    from bench.distill.methods import PTSpec
    from bench.distill.schedule import AdaptiveSGO, Replay

    inputs, targets = _pairs()
    both = ("labeled", "unlabeled")

    def streams():
        return [Stream(Source("teacher_pt", both), inputs, [[t] for t in targets], seed=0),
                Stream(Source("student_pt", both, pts=PTSpec("sample", k=1), replay=Replay(capacity=8)),
                       inputs, None, seed=1)]

    spec = TrainSpec(steps=12, batch_size=4, warmup_steps=1, dev_every=4)
    kw = dict(pad_id=0, eos_id=2, max_target=6, device="cpu", teacher=_model(1).eval(),
              schedule=AdaptiveSGO(init_prob=1.0))
    with pytest.raises(ValueError, match="adapts to the dev loss"):
        train(_model(), streams(), [(ForwardKL(), 1.0)], spec, **kw)
    stats = train(_model(), streams(), [(ForwardKL(), 1.0)], spec, dev=list(zip(inputs, targets)), **kw)
    assert stats["student_generation_steps"] >= 2  # the buffer (8) fills from fresh generations first
    assert stats["replayed_examples"] > 0
    assert stats["student_generation_steps"] * 4 + stats["replayed_examples"] == 12 * 4  # φ=1: all on-policy
    assert stats["sgo_prob_history"][0] == 1.0 and len(stats["sgo_prob_history"]) == len(stats["curve"]) + 1
