from bench.distill.methods import METHODS, PTSpec, Source, get_method
from bench.distill.streams import Stream, build_streams, split_batch

import pytest


def test_split_batch_proportions():
    assert split_batch(32, [1.0]) == [32]
    assert split_batch(32, [0.5, 0.5]) == [16, 16]
    assert sum(split_batch(7, [0.3, 0.7])) == 7 and min(split_batch(2, [0.01, 1])) >= 1


def test_rotation_visits_every_pseudo_target():
    inputs = [[i] for i in range(3)]
    targets = [[[i, k] for k in range(4)] for i in range(3)]  # 4 PTs per input
    stream = Stream(Source("teacher_pt", ("labeled", "unlabeled")), inputs, targets, seed=0)
    seen = {(x[0], tuple(y)) for x, y, _ in stream.take(3 * 4)}
    assert seen == {(i, (i, k)) for i in range(3) for k in range(4)}


def test_pts_are_counted_per_visit_of_an_input_not_per_epoch():
    """Restarting an epoch (a batch share changed) must not hand an input the same PT again:
    the n-th visit of an input takes its PT n mod K, and the stream reports how many distinct
    PTs each input received."""
    inputs = [[i] for i in range(6)]
    targets = [[[i, k] for k in range(3)] for i in range(6)]
    stream = Stream(Source("teacher_pt", ("labeled", "unlabeled")), inputs, targets, seed=0)
    got: dict[int, list[int]] = {}
    for round_ in range(5):
        for e in stream.take(4):  # never a whole epoch before the order restarts
            got.setdefault(e.source[0], []).append(e.target[1])
            assert e.key == ("", e.source[0], e.target[1])
        stream.set_block(2 if round_ % 2 else 3)
    for i, pts in got.items():
        assert pts == [v % 3 for v in range(len(pts))], (i, pts)  # in turn: 0, 1, 2, 0, ...
    visits = stream.pt_visits()
    counts = [len(got.get(i, [])) for i in range(6)]
    assert visits["k"] == 3 and visits["distinct_max"] == min(3, max(counts))
    assert visits["distinct_mean"] == sum(min(3, c) for c in counts) / 6


def test_each_epoch_is_a_permutation():
    stream = Stream(Source("gold"), [[i] for i in range(10)], [[[i]] for i in range(10)], seed=1)
    for _ in range(3):
        assert sorted(e.source[0] for e in stream.take(10)) == list(range(10))


def test_joint_teaching_streams():
    enc = {"inputs": {"labeled": [[1], [2]], "unlabeled": [[3], [4], [5]]},
           "gold": {"labeled": [[7], [8]]},
           "teacher_pts": {PTSpec(): {"labeled": [[[9]], [[9]]], "unlabeled": [[[9]], [[9]], [[9]]]}}}
    teacher, student = build_streams(get_method("joint_teaching"), enc, seed=0)
    assert teacher.source.origin == "teacher_pt" and len(teacher.inputs) == 5
    assert student.source.origin == "student_pt" and student.targets is None and len(student.inputs) == 5
    assert [s.source.origin for s in build_streams(get_method("ft"), enc, seed=0)] == ["gold"]


def test_pts_required_when_method_uses_them():
    enc = {"inputs": {"labeled": [[1]], "unlabeled": [[2]]}, "gold": {"labeled": [[3]]}}
    with pytest.raises(ValueError, match="needs teacher pseudo-targets beam-k1; built: none"):
        build_streams(METHODS["seq_kd"], enc, seed=0)


def test_length_grouping_keeps_every_example_and_groups_lengths():
    import random

    rng = random.Random(0)
    inputs = [[1] * rng.randint(1, 60) for _ in range(400)]
    stream = Stream(Source("gold"), inputs, [[[2]] for _ in inputs], seed=3)
    stream.set_block(8)
    taken = [stream.take(8) for _ in range(50)]
    assert sorted(len(e.source) for b in taken for e in b) == sorted(len(x) for x in inputs)
    spread = sum(max(len(e.source) for e in b) - min(len(e.source) for e in b) for b in taken) / len(taken)
    assert spread < 10  # random batches of 8 from 1..60 spread ~45 on average


def test_zero_weight_sources_get_nothing():
    assert split_batch(32, [0.5, 0.0]) == [32, 0]
    assert split_batch(32, [0.0, 0.5, 0.5]) == [0, 16, 16]
    with pytest.raises(ValueError):
        split_batch(8, [0.0])


def test_scheduled_source_starts_later():
    src = Source("student_pt", ("labeled", "unlabeled"), 0.5, start=0.4)
    assert not src.active(0, 100) and not src.active(39, 100) and src.active(40, 100)


