"""ApiTeacherClient against a real HTTP server on loopback (tests/openai_server.py): outputs,
retries through every injected fault, fatal errors, the cache, pacing, scoring and the key."""
import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("openai", reason="the API teacher's optional dependency: pip install openai")

from bench.api_teacher import (ApiAuthError, ApiModelNotFoundError, ApiRequestError, ApiTeacherClient,
                               ApiTeacherError, ApiTeacherSpec, align_to_student, api_pseudo_targets, student_vocab)
from tests.openai_server import OpenAIServer

KEY = "sk-test-Zk3vY8qLmN0pRsTu"
ENV = "KDBENCH_TEST_API_KEY"
PROMPTS = ["The Eagle serves", "French food near", "the river."]


@pytest.fixture
def server(bpe_tokenizer, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    with OpenAIServer(bpe_tokenizer, api_key=KEY) as srv:
        yield srv


def client(server, path, *, messages=None, **kw) -> ApiTeacherClient:
    spec = ApiTeacherSpec(**{"base_url": server.base_url, "model": "tiny-gpt2", "api_key_env": ENV,
                             "pts_per_input": 2, "max_tokens": 6, "top_logprobs": 3, "backoff_s": 0.01,
                             "backoff_max_s": 0.05, "timeout_s": 5, **kw})
    return ApiTeacherClient(spec, path, say=(messages if messages is not None else []).append)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_k_completions_with_tokens_and_top_logprobs(server, tmp_path, endpoint):
    c = client(server, tmp_path / "cache", endpoint=endpoint)
    out = c.generate(PROMPTS)
    assert [len(cs) for cs in out] == [2, 2, 2]
    for comp in (c for cs in out for c in cs):
        assert comp.tokens and "".join(comp.tokens) == comp.text
        assert len(comp.token_logprobs) == len(comp.top_logprobs) == len(comp.tokens)
        assert all(lp <= 0 for lp in comp.token_logprobs) and all(len(alts) == 3 for alts in comp.top_logprobs)
    usage = c.usage()
    assert usage["requests"] == server.requests == 3 and usage["retries"] == usage["cache_hits"] == 0
    assert usage["completion_tokens"] == sum(len(c.tokens) for cs in out for c in cs)
    assert usage["truncated"] == sum(c.truncated for cs in out for c in cs)
    assert usage["served_models"] == ["tiny-gpt2"] and usage["cost_usd"] is None
    assert server.bodies[0]["path"] == f"/v1/{'chat/' if endpoint == 'chat' else ''}completions"


@pytest.mark.parametrize("fault, said", [
    ("429", "HTTP 429"), ("500", "HTTP 500"), ("timeout", "no answer within timeout_s"),
    ("reset", "connection failed"), ("malformed", "not JSON"), ("no_choices", "no choices"),
])
def test_retries_succeed_through_each_fault(server, tmp_path, fault, said):
    server.retry_after, server.timeout_sleep_s = "0", 3.0
    messages = []
    faulty = client(server, tmp_path / "a", messages=messages, timeout_s=1.5 if fault == "timeout" else 5,
                    concurrency=1, max_tokens=3)
    server.inject(fault)
    out = faulty.generate(PROMPTS[:1])
    assert server.requests == 2 and faulty.usage()["retries"] == 1
    assert said in messages[0] and "retry 1/6" in messages[0]
    assert out == client(server, tmp_path / "b", max_tokens=3).generate(PROMPTS[:1])  # as a clean run


def test_retry_after_is_honoured(server, tmp_path):
    server.retry_after = "0.4"
    messages = []
    c = client(server, tmp_path / "cache", messages=messages)
    server.inject("429")
    start = time.monotonic()
    c.generate(PROMPTS[:1])
    assert time.monotonic() - start >= 0.4 and "in 0.40s" in messages[0]


def test_gives_up_but_keeps_every_other_answer(server, tmp_path):
    """A request that keeps failing ends the stage with an error, after the others are cached:
    the rerun sends only that one."""
    c = client(server, tmp_path / "cache", concurrency=1, max_retries=1)
    server.inject("ok", "ok", "500", "500")
    with pytest.raises(ApiTeacherError, match=r"1 of 4 requests failed.*gave up after 2 attempts; last: HTTP 500"):
        c.generate(PROMPTS + ["near the"])
    assert len(c.cache) == 3 and c.usage()["failed"] == 1
    before = server.requests
    again = client(server, tmp_path / "cache")
    assert len(again.generate(PROMPTS + ["near the"])) == 4
    assert server.requests - before == 1 and again.usage()["cache_hits"] == 3


def test_refused_key_fails_at_once_naming_the_env_var(server, tmp_path, monkeypatch):
    wrong = "sk-wrong-client-key-000111"
    monkeypatch.setenv(ENV, wrong)
    c = client(server, tmp_path / "cache", concurrency=1)
    with pytest.raises(ApiAuthError) as info:
        c.generate(PROMPTS)
    msg = str(info.value)
    assert server.requests == 1 and c.usage()["retries"] == 0  # no retry, the other prompts never sent
    assert f"${ENV}" in msg and "HTTP 401" in msg and wrong not in msg and KEY not in msg
    assert "Incorrect API key provided: ***" in msg  # the server quoted the key; the client hid it


def test_missing_env_var_fails_before_any_request(server, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV)
    with pytest.raises(ApiAuthError, match=f"environment variable {ENV} is not set"):
        client(server, tmp_path / "cache")
    assert server.requests == 0


def test_unknown_model_fails_at_once(server, tmp_path):
    c = client(server, tmp_path / "cache", model="gpt-imaginary", concurrency=1)
    with pytest.raises(ApiModelNotFoundError, match=r"model 'gpt-imaginary' not found .*HTTP 404"):
        c.generate(PROMPTS)
    assert server.requests == 1
    with pytest.raises(ApiModelNotFoundError, match="it serves: tiny-gpt2"):
        c.check_model()
    client(server, tmp_path / "cache").check_model()  # the served model passes


def test_second_run_makes_zero_requests(server, tmp_path):
    first = client(server, tmp_path / "cache")
    outputs = first.generate(PROMPTS), first.score(["The Eagle"], [" serves French food"])
    sent = server.requests
    second = client(server, tmp_path / "cache")
    assert (second.generate(PROMPTS), second.score(["The Eagle"], [" serves French food"])) == outputs
    assert server.requests == sent and second.usage()["requests"] == 0 and second.usage()["cache_hits"] == 4
    assert second.usage()["served_models"] == ["tiny-gpt2"]  # provenance survives the cache


def test_the_key_is_never_written(server, tmp_path, monkeypatch):
    messages = []
    c = client(server, tmp_path / "cache", messages=messages, prices={"prompt_per_1m": 1, "completion_per_1m": 2})
    server.inject("429", "reset")
    out = c.generate(PROMPTS)
    scored = c.score(["The Eagle"], [" serves"])
    support = c.probe_scoring()
    monkeypatch.setenv(ENV, "sk-another-secret-key-999")
    with pytest.raises(ApiAuthError) as refused:
        client(server, tmp_path / "cache2").generate(["x"])
    (tmp_path / "outputs.json").write_text(json.dumps({
        "pts": [[x.to_dict() for x in cs] for cs in out], "scored": [s.to_dict() for s in scored],
        "usage": c.usage(), "spec": c.spec.model_dump(), "hash_key": c.spec.hash_key(), "support": support.reason,
        "log": messages, "error": str(refused.value), "repr": repr(c.spec)}))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 4
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and b"sk-another-secret-key-999" not in data, path


def test_concurrency_limit_and_progress(server, tmp_path):
    server.delay_s = 0.15
    seen = []
    client(server, tmp_path / "cache", concurrency=2).generate(PROMPTS * 2, progress=seen.append)
    assert server.max_in_flight == 2
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6] and seen[-1].total == 6
    assert seen[-1].eta_s == 0 and seen[-1].rate > 0 and "6/6 (100%)" in seen[-1].line()


def test_requests_per_minute(server, tmp_path):
    start = time.monotonic()
    client(server, tmp_path / "cache", concurrency=3, requests_per_minute=300).generate(PROMPTS)
    assert time.monotonic() - start >= 0.4  # starts 0.2 s apart


def test_scoring_returns_the_models_logprobs(server, tmp_path, bpe_tokenizer):
    c = client(server, tmp_path / "cache", top_logprobs=2)
    assert c.probe_scoring().supported
    prompt, text = "The Eagle", " serves French food"
    scored = c.score([prompt], [text])[0]
    assert "".join(scored.tokens) == text and all(len(a) == 2 for a in scored.top_logprobs)
    ids, n_prompt = server.lm.encode(prompt + text), len(server.lm.encode(prompt))
    rows = server.lm.score(ids)
    expected = [float(rows[t - 1, ids[t]]) for t in range(n_prompt, len(ids))]
    assert scored.token_logprobs == pytest.approx(expected, abs=1e-5)
    targets = align_to_student(scored, bpe_tokenizer, k=3, max_len=32)  # student tokenizer = teacher's here
    assert targets.aligned.tolist() == [True] * len(expected) + [False]


def test_unsupported_scoring_is_refused_with_its_reason(server, tmp_path):
    server.echo_supported = False
    support = client(server, tmp_path / "cache").probe_scoring()
    assert not support.supported and "echo" in support.reason and "HTTP 400" in support.reason
    assert server.requests == 1
    with pytest.raises(ApiTeacherError, match="joint_teaching needs the API teacher to score given text"):
        support.require("joint_teaching")


def test_cost_accounting(server, tmp_path):
    c = client(server, tmp_path / "cache", prices={"prompt_per_1m": 2.0, "completion_per_1m": 10.0})
    c.generate(PROMPTS)
    u = c.usage()
    assert u["cost_usd"] == pytest.approx((u["prompt_tokens"] * 2 + u["completion_tokens"] * 10) / 1e6)
    assert u["prompt_tokens"] > 0


def test_alignment_of_real_outputs(server, tmp_path, bpe_tokenizer):
    out = client(server, tmp_path / "cache", max_tokens=12).generate(PROMPTS)
    vocab = student_vocab(bpe_tokenizer)
    shares = []
    for comp in (c for cs in out for c in cs):
        t = align_to_student(comp, bpe_tokenizer, k=4, max_len=32, vocab=vocab)
        assert all(label in row for label, row in zip(t.labels, t.topk_ids))  # the PT token is always kept
        assert (t.topk_logprobs[:, :-1] >= t.topk_logprobs[:, 1:]).all()  # most likely first
        assert np.exp(t.topk_logprobs).sum(1) + t.tail_mass == pytest.approx(np.ones(len(t.labels)), rel=1e-4)
        rows = np.flatnonzero(t.aligned)
        assert (t.tail_mass[rows] > 0).all() and math.isfinite(t.topk_logprobs[rows, 0].sum())
        shares.append(t.aligned_share)
    assert 0 < np.mean(shares) < 1


def test_an_invalid_request_stops_the_run(server, tmp_path):
    server.echo_supported = False
    c = client(server, tmp_path / "cache", concurrency=1)
    with pytest.raises(ApiRequestError, match=r"rejected the request \(HTTP 400\).*echo is not supported"):
        c.score(PROMPTS, [" a", " b", " c"])
    assert server.requests == 1
    assert len(c.generate(PROMPTS[:1])) == 1  # the client is usable after a stopped run


def test_pseudo_target_stage_few_shot_with_aligned_targets(server, tmp_path, bpe_tokenizer):
    c = client(server, tmp_path / "cache", prompt={"template": "{examples}\n{input} ->", "shots": 1})
    labeled = [{"source": "name[The Eagle]", "target": "The Eagle is near the river."}]
    pts = api_pseudo_targets(c, "d2t", ["food[French]", "name[The Eagle]"], labeled=labeled)
    assert pts.prompts[0] == "Input: name[The Eagle]\nOutput: The Eagle is near the river.\nfood[French] ->"
    assert pts.prompts[1] == "\nname[The Eagle] ->"  # the labeled input is not shown its own target
    assert [len(t) for t in pts.texts] == [2, 2] and pts.usage["requests"] == 2
    targets = [align_to_student(x, bpe_tokenizer, k=4, max_len=8) for cs in pts.completions for x in cs]
    assert all(t.topk_ids.shape[1] == 4 and len(t.labels) <= 8 for t in targets)
    assert 0 < sum(t.aligned_share for t in targets) / len(targets) <= 1
    assert pts.truncated == [[c.truncated for c in cs] for cs in c.generate(pts.prompts)]


def test_stopped_and_truncated_outputs(server, tmp_path, bpe_tokenizer):
    server.lm.eos_bias = 50.0  # eos first: every completion is empty and stopped, none truncated
    c = client(server, tmp_path / "cache")
    stopped = c.generate(PROMPTS[:1])[0]
    assert [(x.text, x.finish_reason, x.truncated) for x in stopped] == [("", "stop", False)] * 2
    targets = align_to_student(stopped[0], bpe_tokenizer, k=4, max_len=8)
    assert targets.labels.tolist() == [bpe_tokenizer.eos_token_id] and targets.aligned_share == 0.0
    server.lm.eos_bias = -50.0  # never eos: cut by max_tokens
    cut = client(server, tmp_path / "cache", max_tokens=4).generate(PROMPTS[:1])[0]
    assert all(x.truncated and len(x.tokens) == 4 for x in cut)


def test_check_model_rides_out_a_flaky_network(server, tmp_path):
    messages = []
    c = client(server, tmp_path / "cache", messages=messages)
    server.inject("reset", "500", "429")
    c.check_model()
    assert server.requests == 4 and c.usage()["retries"] == 3 and "/models" in messages[0]


def test_the_scoring_probe_tells_a_glitch_from_an_answer(server, tmp_path):
    server.inject("malformed")  # one cut answer: the network, not the server's ability
    assert client(server, tmp_path / "a").probe_scoring().supported
    server.inject("500", "500")
    with pytest.raises(ApiTeacherError, match="gave up after 2 attempts"):  # no answer is not a "no"
        client(server, tmp_path / "b", max_retries=1).probe_scoring()


def test_usage_counts_the_cost_of_cached_answers_apart(server, tmp_path):
    prices = {"prompt_per_1m": 1.0, "completion_per_1m": 1.0}
    first = client(server, tmp_path / "cache", prices=prices)
    first.generate(PROMPTS)
    again = client(server, tmp_path / "cache", prices=prices)
    again.generate(PROMPTS)
    u, v = first.usage(), again.usage()
    assert v["requests"] == 0 and v["cost_usd"] == 0 and v["cache_hits"] == 3
    assert v["all_answers"] == u["all_answers"] and u["all_answers"]["answers"] == 3
    assert u["cost_usd"] > 0 and u["all_answers"]["cost_usd"] == pytest.approx(u["cost_usd"])
