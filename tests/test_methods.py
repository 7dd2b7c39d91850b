"""The method registry: every preset is a composition that builds and documents itself."""
import pytest

from bench.distill.methods import METHODS


def test_loss_terms_build_every_divergence_and_reject_unknown():
    from bench.distill.losses import DIVERGENCES
    from bench.distill.methods import LossTerm

    for name, cls in DIVERGENCES.items():
        kw = {"beta": 0.3} if name == "jsd" else {"alpha": 0.1} if name.startswith("skew") else {}
        assert isinstance(LossTerm(name, **kw).build(), cls)
    with pytest.raises(ValueError, match="allowed: ce, word_kl, forward_kl"):
        LossTerm("mystery")


def test_every_preset_says_what_it_reproduces_and_builds():
    for m in METHODS.values():
        assert len(m.description) > 40 and m.sources and m.losses
        assert all(t.build() is not None for t in m.losses)
        assert m.needs_teacher_model == any(t.kind != "ce" for t in m.losses)


def test_paper_presets_are_registered():
    assert {"ft", "word_kd", "noisy_kd", "att_kd", "hidden_kd", "seq_kd", "seq_kd_multi", "sampling_pts",
            "word_kd_pts", "student_pts", "joint_teaching", "gkd"} <= set(METHODS)


def test_plain_sequence_level_methods_name_their_pt_set():
    """What the report's PT ablation compares: methods that differ only in their teacher PTs."""
    from bench.distill.methods import PTSpec, get_method

    assert get_method("seq_kd").sequence_level_pts == PTSpec("beam", 1)
    assert get_method("seq_kd_multi").sequence_level_pts == PTSpec("beam", 4)
    assert get_method("sampling_pts").sequence_level_pts == PTSpec("sample", 8)
    for name in ("ft", "word_kd", "word_kd_pts", "joint_teaching", "gkd", "distillm"):
        assert get_method(name).sequence_level_pts is None, name
