"""A whole run with an API teacher on a real local Ray: an OpenAI-compatible server on loopback
(tests/openai_server.py) with a flaky network, no labeled examples at all. The run completes,
the students are reported against the API teacher, a second run of the same spec into a new
run dir sends zero requests, and the key is in no file the runs leave behind."""
import pytest
import ray

pytest.importorskip("openai", reason="the API teacher's optional dependency: pip install openai")

from bench.results import read_rows  # noqa: E402
from bench.runner import run  # noqa: E402
from bench.spec import parse_spec  # noqa: E402
from tests.conftest import tiny_spec_dict  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "sk-e2e-Q7rT9wXyZ2aBcDeF"
ENV = "KDBENCH_E2E_API_KEY"
METHODS = ["word_kd_pts", "joint_teaching"]  # API PTs with their aligned cache; online scoring


@pytest.fixture
def fresh_ray(monkeypatch):
    """The key is in the environment before Ray starts, so its workers inherit it (the spec names
    the variable; nothing passes the value)."""
    ray.shutdown()
    monkeypatch.setenv(ENV, KEY)
    yield
    ray.shutdown()


def api_spec(base_url: str, runs_dir) -> dict:
    data = tiny_spec_dict(methods=METHODS)
    task = data["tasks"][0]
    task["sizes"].update(labeled=0, unlabeled=16, teacher_pool=0)  # no labels: the API teacher is the only labeler
    task["teacher"] = {
        "api": {"base_url": base_url, "model": "tiny-gpt2", "api_key_env": ENV, "top_logprobs": 3, "max_tokens": 10,
                "backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 10, "concurrency": 4,
                "prices": {"prompt_per_1m": 0.5, "completion_per_1m": 1.5}},
        "reference": {"d_model": 32, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1, "heads": 2},
    }
    data["storage"] = {"runs_dir": str(runs_dir)}
    data["eval"]["profile"] = "off"  # nothing here is timed (tests/test_api_teacher_engine.py: the teacher is skipped)
    return data


def files_holding(root, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_api_teacher_run_without_labels_on_a_flaky_network_then_a_free_rerun(tmp_path, fresh_ray, bpe_tokenizer):
    with OpenAIServer(bpe_tokenizer, api_key=KEY) as server:
        server.retry_after = "0.2"
        server.inject("ok", "429", "ok", "500", "ok", "ok", "reset", "ok", "429")  # spread over the first requests
        spec = parse_spec(api_spec(server.base_url, tmp_path / "runs"))
        first = tmp_path / "runs" / "first"
        run(spec, run_dir=first)
        sent = server.requests
        assert sent > 0 and not server.faults  # every fault was met, and retried through

        rows = {r["method"]: r for r in read_rows(first)}
        teacher = rows["teacher"]
        assert teacher["status"] == "ok" and teacher["params"] is None and teacher["latency_ms"] is None
        api = teacher["metrics"]["api_teacher"]
        assert api["model"] == "tiny-gpt2" and api["endpoint"]["base_url"] == server.base_url
        assert api["scoring"]["supported"] and api["scoring"]["needed_by"] == ["joint_teaching"]
        assert api["splits_seen"]["labeled"].startswith("none") and "dev references" in api["splits_seen"]["dev"]
        total = api["usage"]["total"]
        assert total["retries"] >= 4 and total["requests"] >= total["retries"] and total["cost_usd"] > 0
        assert 0 < api["aligned_share"] <= 1 and 0 <= api["truncated_share"] <= 1
        assert 0 <= teacher["bleu"] <= 100  # the API's test outputs, scored against the real references

        for method in METHODS:
            row = rows[method]
            assert row["status"] == "ok", row.get("error")
            m = row["metrics"]
            assert m["pt_source"] == "api" and m["dev_references"] == "teacher"
            assert m["api_teacher_usage"]["pseudo_targets/api"]["requests"] > 0
            assert "teacher" not in row["artifacts"] and "pseudo_targets/api" in row["artifacts"]
        assert rows["word_kd_pts"]["metrics"]["teacher_cache"]["api"]["aligned_share"] == api["aligned_share"]
        jt = rows["joint_teaching"]["metrics"]
        assert jt["train"]["teacher_forwards"] > 0  # student PTs scored by the endpoint during training
        assert jt["api_teacher_usage"]["online_scoring"]["requests"] > 0
        report = (first / "report" / "report.md").read_text()
        assert all(f"| {m} " in report for m in METHODS)
        assert "## API teacher" in report and "splits seen by the API teacher" in report
        assert "none (sizes.labeled = 0)" in report and "teacher's outputs for the dev inputs" in report

        # the same spec into a new run dir (its one method that asks the API during training):
        # every stage reused, every answer from the cache
        second = tmp_path / "runs" / "second"
        run(spec.model_copy(update={"methods": ["joint_teaching"]}), run_dir=second)
        assert server.requests == sent
        again = {r["method"]: r for r in read_rows(second)}
        assert again["joint_teaching"]["status"] == "ok", again["joint_teaching"].get("error")
        online = again["joint_teaching"]["metrics"]["api_teacher_usage"]["online_scoring"]
        assert online["requests"] == 0 and online["cache_hits"] > 0
        assert again["joint_teaching"]["bleu"] == rows["joint_teaching"]["bleu"]

    # the key never reached a file: rows, outputs, reports, Ray/Tune state, artifacts, cached answers
    for root in (first, second, tmp_path / "runs" / "artifacts"):
        assert files_holding(root, KEY.encode()) == []
    assert any((tmp_path / "runs" / "artifacts" / "api_responses").rglob("*.json"))
