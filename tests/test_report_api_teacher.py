"""The report's API-teacher section: which splits the teacher saw, what it cost, how much of its
signal reached the students; absent for model teachers."""
from reports.api_teacher import api_teacher_sections
from reports.tables import DisplayTable

API = {
    "model": "gpt-x", "endpoint": {"base_url": "http://127.0.0.1:9/v1", "kind": "completions"},
    "served_models": ["gpt-x-2026-01"], "aligned_share": 0.875, "truncated_share": 0.25,
    "dev_references": "teacher",
    "scoring": {"needed_by": ["joint_teaching"], "supported": False, "reason": "no echo"},
    "splits_seen": {"labeled": "none (sizes.labeled = 0)", "unlabeled": "inputs",
                    "dev": "inputs: its outputs are the dev references (sizes.labeled = 0)", "test": "inputs"},
    "usage": {"pseudo_targets/api": {"requests": 12, "retries": 2, "cache_hits": 0, "prompt_tokens": 300,
                                     "completion_tokens": 90, "failed": 0, "cost_usd": 0.0123},
              "teacher_dev": None,
              "total": {"requests": 12, "retries": 2, "cache_hits": 5, "prompt_tokens": 300,
                        "completion_tokens": 90, "failed": 0, "cost_usd": None}},
}


def rows(api=API):
    teacher = {"role": "teacher", "status": "ok", "task": "d2t", "metrics": {"api_teacher": api} if api else {}}
    return {"run": [teacher, {"role": "student", "status": "ok", "task": "d2t", "metrics": {}}]}


def test_an_api_teacher_gets_a_section_with_splits_usage_and_shares():
    (section,) = api_teacher_sections(rows())
    assert section.title == "API teacher"
    text = " ".join(b for b in section.blocks if isinstance(b, str))
    assert "'gpt-x'" in text and "gpt-x-2026-01" in text and "teacher's outputs for the dev inputs" in text
    assert "87.5%" in text and "25.0%" in text and "not supported — no echo (needed by joint_teaching)" in text
    seen, usage = (b for b in section.blocks if isinstance(b, DisplayTable))
    assert seen.data.loc["labeled", "what the teacher saw"] == "none (sizes.labeled = 0)"
    assert list(usage.data.index) == ["pseudo-targets", "total (this run)"]  # a stage without usage is left out
    assert usage.data.loc["pseudo-targets", "retries"] == "2" and usage.data.loc["pseudo-targets", "cost (USD)"] == "0.0123"
    assert usage.data.loc["total (this run)", "cost (USD)"] == "n/a"


def test_a_model_teacher_gets_no_section():
    assert api_teacher_sections(rows(api=None)) == []
