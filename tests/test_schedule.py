"""Batch schedules: static mixing with replay, and DistiLLM's adaptive SGO scheduler."""
import pytest

from bench.distill.methods import Method, Source, get_method
from bench.distill.schedule import AdaptiveSGO, Replay, ReplayBuffer, StaticMix

BOTH = ("labeled", "unlabeled")
FIXED = Source("teacher_pt", BOTH)
ON = Source("student_pt", BOTH, replay=Replay(capacity=4, share=1.0))


def _buffers(*fill):
    out = []
    for n in fill:
        if n is None:
            out.append(None)
            continue
        b = ReplayBuffer(4, seed=0)
        b.push([([i], [i]) for i in range(n)])
        out.append(b)
    return out


def test_replay_buffer_keeps_the_latest_and_samples_without_replacement():
    b = ReplayBuffer(3, seed=0)
    b.push([([i], [10 + i]) for i in range(5)])
    assert len(b) == 3 and b.full
    got = b.sample(3)
    assert sorted(x[0] for x, _ in got) == [2, 3, 4]  # the oldest two were evicted
    with pytest.raises(ValueError, match="cannot replay 4 examples from a buffer holding 3"):
        b.sample(4)


def test_static_mix_follows_weights_starts_and_replays_only_from_a_full_buffer():
    planner = StaticMix().planner([Source("gold", weight=1.0), Source("student_pt", BOTH, 3.0, start=0.5,
                                                                      replay=Replay(4, share=1.0))], seed=0)
    assert planner.plan(0, 10, _buffers(None, 0)).weights == [1.0, 0.0]
    assert planner.plan(5, 10, _buffers(None, 3)) .weights == [1.0, 3.0]
    assert planner.plan(5, 10, _buffers(None, 3)).replay == [False, False]  # not full yet
    assert planner.plan(5, 10, _buffers(None, 4)).replay == [False, True]  # share 1.0, full


def test_static_replay_share_is_a_probability():
    planner = StaticMix().planner([Source("student_pt", BOTH, replay=Replay(4, share=0.25))], seed=1)
    replays = sum(planner.plan(0, 1, _buffers(4)).replay[0] for _ in range(2000))
    assert 400 < replays < 600


def test_adaptive_sgo_raises_its_probability_only_when_the_dev_loss_rises_by_eps():
    planner = AdaptiveSGO(init_prob=0.0, prob_step=0.1, loss_eps=0.1).planner([FIXED, ON], seed=0)
    for loss in (5.0, 4.0, 4.05, 5.09):  # first = reference; falls and small rises change nothing
        planner.observe_dev_loss(loss)
    assert planner.prob == 0.0
    planner.observe_dev_loss(5.1)  # ≥ 5.0 + 0.1 → +0.1, and 5.1 becomes the reference
    assert planner.prob == pytest.approx(0.1)
    planner.observe_dev_loss(5.15)
    assert planner.prob == pytest.approx(0.1)
    planner.observe_dev_loss(5.3)
    assert planner.prob == pytest.approx(0.2) and planner.history == pytest.approx([0, 0, 0, 0, 0, .1, .1, .2])
    for _ in range(20):
        planner.observe_dev_loss(planner.reference_loss + 1)
    assert planner.prob == 1.0


def test_adaptive_sgo_at_zero_never_uses_student_outputs():
    planner = AdaptiveSGO().planner([FIXED, ON], seed=0)
    plans = [planner.plan(s, 100, _buffers(None, 4)) for s in range(100)]
    assert all(p.weights == [1.0, 0.0] and p.replay == [False, False] for p in plans)


def test_adaptive_sgo_generates_until_the_buffer_is_full_then_mixes_fresh_and_replayed():
    planner = AdaptiveSGO(init_prob=1.0).planner([FIXED, ON], seed=0)
    early = [planner.plan(s, 100, _buffers(None, 2)) for s in range(50)]
    assert all(p.weights == [0.0, 1.0] and not p.replay[1] for p in early)  # φ=1, buffer not full
    # full buffer: fresh with probability φ(1 - t/T), replay otherwise (φ = 1: never off-policy)
    late = [planner.plan(90, 100, _buffers(None, 4)) for _ in range(2000)]
    assert all(p.weights == [0.0, 1.0] for p in late)
    fresh = sum(not p.replay[1] for p in late) / len(late)
    assert 0.07 < fresh < 0.13


def test_adaptive_sgo_at_half_splits_steps_between_fixed_and_student_sources():
    planner = AdaptiveSGO(init_prob=0.5).planner([FIXED, ON], seed=3)
    plans = [planner.plan(0, 100, _buffers(None, 4)) for _ in range(2000)]
    on_policy = sum(p.weights == [0.0, 1.0] for p in plans) / len(plans)
    assert 0.45 < on_policy < 0.55
    assert all(p.weights in ([1.0, 0.0], [0.0, 1.0]) for p in plans)  # a whole batch from one side


@pytest.mark.parametrize("sources,match", [
    ((FIXED,), "needs at least one student_pt source"),
    ((ON,), "needs at least one student_pt source"),
    ((FIXED, Source("student_pt", BOTH, start=0.3)), "must have start = 0"),
])
def test_adaptive_sgo_refuses_sources_it_cannot_schedule(sources, match):
    with pytest.raises(ValueError, match=match):
        Method("x", "x", sources, (), schedule=AdaptiveSGO())


def test_replay_only_for_student_sources_and_student_writes_one_pt():
    from bench.distill.methods import PTSpec

    with pytest.raises(ValueError, match="only student_pt sources"):
        Source("teacher_pt", BOTH, replay=Replay())
    with pytest.raises(ValueError, match="one pseudo-target per input"):
        Source("student_pt", BOTH, pts=PTSpec("sample", k=4))


def test_distillm_preset_is_skew_kl_with_adaptive_sgo_and_replay():
    m = get_method("distillm")
    assert isinstance(m.schedule, AdaptiveSGO) and m.schedule.init_prob == 0.0
    (term,) = m.losses
    assert term.kind == "skew_kl" and term.alpha == 0.1
    student = next(s for s in m.sources if s.origin == "student_pt")
    assert student.replay == Replay(capacity=1000) and student.pts.strategy == "sample"
