"""The paper's findings S1–S8 as shipped studies: each parses, states its claim, compares systems
its grid has, runs on other tasks and at a full scale, and is checked before any work."""
import pytest

from bench.spec import SpecError, parse_spec
from bench.studies import load_study, study_data, study_names, study_spec_data


def test_eight_studies_ship_each_with_a_claim_and_three_seeds():
    assert study_names() == [f"S{i}" for i in range(1, 9)]
    for name in study_names():
        spec = load_study(name)
        assert spec.study["id"] == name and len(spec.study["claim"]) > 30
        assert len(spec.seeds) >= 3 and spec.study["comparisons"]
        assert [t.name for t in spec.tasks] == ["d2t"]  # the CPU size: one built-in task


def test_a_study_runs_on_other_tasks_and_at_the_full_scale():
    assert [t.name for t in load_study("S5", tasks=["qg"]).tasks] == ["qg"]
    full = load_study("S5", "full")
    assert [t.name for t in full.tasks] == ["d2t", "qg"] and full.student_train.steps > load_study("S5").student_train.steps
    custom = [{"name": "mine", "custom": {"format": "jsonl", "source_field": "text", "target_field": "summary",
                                          "files": {"train": "tests/fixtures/custom/train.jsonl",
                                                    "validation": "tests/fixtures/custom/validation.jsonl",
                                                    "test": "tests/fixtures/custom/test.jsonl"}},
               "sizes": {"labeled": 15, "unlabeled": None, "dev": 6, "test": None}}]
    assert [t.name for t in load_study("S4", tasks_from=custom).tasks] == ["mine"]
    with pytest.raises(SpecError, match="unknown study 'S9'; allowed: S1, .*S8, all"):
        load_study("S9")


def test_study_comparisons_must_name_systems_of_the_grid():
    data = study_spec_data("S5")
    data["study"]["comparisons"][0]["baseline"] = "seq_kd_unlabeled"
    with pytest.raises(SpecError, match=r"study.comparisons\[0\].baseline = 'seq_kd_unlabeled': not a system of "
                                        r"this grid; allowed: seq_kd, seq_kd_labeled"):
        parse_spec(data)
    data = study_spec_data("S1")  # two inits: systems are named "method [init]", as the report does
    data["study"]["comparisons"][0]["system"] = "seq_kd"
    with pytest.raises(SpecError, match=r"allowed: .*seq_kd \[random\]"):
        parse_spec(data)
    data = study_data("S2")
    data["study"]["comparisons"][0]["expect"] = "similar"
    with pytest.raises(SpecError, match="expect = 'similar'; allowed: better, worse, not worse"):
        parse_spec(data)
