"""A training run stopped at a checkpoint and continued from it ends exactly as an undisturbed
one: weights, statistics, learning curve and selected step (same seed, same machine)."""
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from bench.distill.loop import DevSet, TrainingRun
from bench.distill.losses import ForwardKL
from bench.distill.methods import PTSpec, Source
from bench.distill.schedule import Alternate, Replay, StaticMix
from bench.distill.streams import Stream
from bench.seeding import seed_everything
from bench.spec import TrainSpec


def _model(seed):
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(vocab_size=30, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                               num_decoder_layers=1, num_heads=4, pad_token_id=0,
                                               eos_token_id=2, decoder_start_token_id=0, dropout_rate=0.2))


class Crash(Exception):
    pass


def _run(schedule, state_path=None, stop_at=None, resume=False):
    seed_everything(0)
    inputs = [[5 + i % 7, 6 + i % 3, 2] for i in range(24)]
    targets = [[[9, 10 + i % 5], [11, 12 + i % 4]] for i in range(24)]
    both = ("labeled", "unlabeled")
    replay = Replay(capacity=6, share=0.5) if isinstance(schedule, StaticMix) else None
    streams = [Stream(Source("teacher_pt", both, 0.5, pts=PTSpec("beam", k=2)), inputs, targets, seed=0),
               Stream(Source("student_pt", both, 0.5, start=0.25, pts=PTSpec("sample", k=1, top_p=0.9),
                             replay=replay), inputs, None, seed=1)]
    dev = DevSet([(x, t[0]) for x, t in zip(inputs[:6], targets)], sources=inputs[:6],
                 score=lambda outs: float(sum(len(o) for o in outs)), metric="dev_len")
    run = TrainingRun(_model(0), streams, [(ForwardKL(), 1.0)],
                      TrainSpec(steps=12, batch_size=4, warmup_steps=2, dev_every=3, checkpoint_every=4),
                      pad_id=0, eos_id=2, max_target=5, device="cpu", teacher=_model(1).eval(),
                      schedule=schedule, dev=dev, seed=3)
    if resume:
        run.load(state_path)

    def on_report(metrics, r):
        if metrics["checkpoint"] and r.step == stop_at:
            r.save(state_path)
            raise Crash

    try:
        stats = run.run(on_report=on_report, checkpoint_every=4)
    except Crash:
        return None
    return run, stats


@pytest.mark.parametrize("schedule", [StaticMix(), Alternate()], ids=["mix+replay", "alternate"])
def test_resumed_run_ends_exactly_as_an_undisturbed_one(tmp_path, schedule):
    state_path = tmp_path / "state.pt"
    straight, stats = _run(schedule)
    assert _run(schedule, state_path, stop_at=8) is None and state_path.exists()
    torch.manual_seed(1234)  # whatever the new process did before, the checkpoint restores it
    resumed, resumed_stats = _run(schedule, state_path, resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_stats["curve"] == stats["curve"] and resumed_stats["selection"] == stats["selection"]
    for key in ("student_generated_tokens", "teacher_forwards", "replayed_examples", "target_tokens", "final_loss"):
        assert resumed_stats[key] == stats[key], key
    assert stats["student_generation_steps"] > 0
    assert stats["selection"]["metric"] == "dev_len" and stats["selection"]["selected_step"] in (3, 6, 9, 12)


def test_the_best_dev_evaluation_is_selected_and_its_weights_kept():
    """On a constructed dev curve the selected step is the best one, and the model ends with
    that step's weights, not the last ones."""
    values = iter([5.0, 9.0, 4.0, 7.0])  # steps 3, 6, 9, 12 (step 0 is never selected): best at step 6
    seen = {}
    inputs = [[5 + i % 7, 6, 2] for i in range(8)]
    targets = [[[9, 10 + i % 5]] for i in range(8)]
    from bench.distill.losses import CrossEntropy

    model = _model(0)

    def score(outs):
        seen[len(seen)] = {k: v.clone() for k, v in model.state_dict().items()}
        return next(values)

    run = TrainingRun(model, [Stream(Source("gold"), inputs, targets, seed=0)], [(CrossEntropy(), 1.0)],
                      TrainSpec(steps=12, batch_size=4, warmup_steps=1, dev_every=3),
                      pad_id=0, eos_id=2, max_target=5, device="cpu",
                      dev=DevSet([(x, t[0]) for x, t in zip(inputs, targets)], sources=inputs, score=score,
                                 metric="dev_x"))
    stats = run.run()
    assert stats["selection"] == {"rule": "dev_metric", "metric": "dev_x", "selected_step": 6, "value": 9.0,
                                  "steps_evaluated": 5}
    at_step_6 = seen[1]
    assert all(torch.equal(model.state_dict()[k], at_step_6[k]) for k in at_step_6)
