"""ApiTeacherSpec: validation names field, value and what is allowed; the key never shows; the
hash covers only what determines outputs. Prompts: zero-shot and few-shot from the labeled split."""
import pytest
from pydantic import ValidationError

from bench.api_teacher import ApiTeacherSpec, PromptTemplate, build_prompts
from bench.artifacts import content_hash

BASE = {"base_url": "http://localhost:8000/v1", "model": "tiny"}
SECRET = "sk-proj-AbC123xyz987SECRET"


def spec(**kw):
    return ApiTeacherSpec(**{**BASE, **kw})


def error_text(**kw) -> str:
    with pytest.raises(ValidationError) as info:
        spec(**kw)
    return str(info.value)


def test_defaults_and_frozen():
    s = spec()
    assert (s.endpoint, s.api_key_env, s.pts_per_input, s.top_logprobs) == ("chat", "OPENAI_API_KEY", 1, 0)
    with pytest.raises(ValidationError):
        s.model = "other"


def test_a_key_pasted_into_the_spec_is_never_echoed():
    msg = error_text(api_key_env=SECRET)
    assert "api_key_env" in msg and "NAME of the environment variable" in msg and SECRET not in msg
    msg = error_text(api_key=SECRET)
    assert "api_key" in msg and SECRET not in msg and "environment variable" in msg


def test_hash_key_is_outputs_only():
    s = spec(api_key_env="MY_KEY", concurrency=32, prices={"prompt_per_1m": 1, "completion_per_1m": 2})
    key = s.hash_key()
    assert "api_key_env" not in key and "concurrency" not in key and "prices" not in key
    assert content_hash(key) == content_hash(spec(max_retries=1, requests_per_minute=10).hash_key())
    assert content_hash(key) != content_hash(spec(temperature=0.5).hash_key())
    assert content_hash(key) != content_hash(spec(prompt={"template": "Summarise: {input}"}).hash_key())
    per_task = spec(task_prompts={"xsum": {"template": "Summarise: {input}"}})
    assert content_hash(per_task.hash_key("d2t")) == content_hash(spec().hash_key("d2t"))  # xsum's prompt: not d2t's
    assert content_hash(per_task.hash_key("xsum")) != content_hash(spec().hash_key("xsum"))


@pytest.mark.parametrize("kw, field, allowed", [
    ({"top_logprobs": 25}, "top_logprobs", "max_top_logprobs=20"),
    ({"base_url": "https://api.openai.com/v1", "max_top_logprobs": 50}, "max_top_logprobs", "at most 20"),
    ({"base_url": "https://api.openai.com/v1", "endpoint": "completions", "max_top_logprobs": 20},
     "max_top_logprobs", "at most 5"),
    ({"top_logprobs": 3, "logprobs": False}, "top_logprobs", "needs logprobs: true"),
    ({"endpoint": "embeddings"}, "endpoint", "'chat' or 'completions'"),
    ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ({"base_url": "localhost:8000"}, "base_url", "http:// or https://"),
    ({"system": "be brief", "endpoint": "completions"}, "system", "endpoint: chat"),
    ({"pts_per_input": 4, "temperature": 0}, "pts_per_input=4", "temperature > 0"),
    ({"prompt": {"template": "Summarise this"}}, "template", "needs {input}"),
    ({"prompt": {"template": "{input} {lang}"}}, "template", "nothing else"),
    ({"prompt": {"template": "{input}", "shots": 2}}, "shots=2", "no {examples} field"),
    ({"prompt": {"template": "{examples}{input}", "example_template": "{input}"}}, "example_template",
     "target required"),
    ({"concurency": 4}, "concurency", "Extra inputs are not permitted"),
])
def test_errors_name_field_value_and_allowed(kw, field, allowed):
    msg = error_text(**kw)
    assert field in msg and allowed in msg


def test_larger_logprob_cap_for_other_servers():
    assert spec(top_logprobs=50, max_top_logprobs=64).top_logprobs == 50


def test_prompt_per_task():
    s = spec(prompt={"template": "Q: {input}"}, task_prompts={"xsum": {"template": "Summarise: {input}"}})
    assert s.prompt_for("xsum").render("a") == "Summarise: a"
    assert s.prompt_for("d2t").render("a") == "Q: a"


def test_zero_and_few_shot_prompts():
    zero = PromptTemplate(template="Describe: {input}")
    assert build_prompts(zero, ["x", "y"]) == ["Describe: x", "Describe: y"]
    labeled = [{"source": f"s{i}", "target": f"t{i}"} for i in range(6)]
    few = PromptTemplate(template="{examples}\n\nInput: {input}\nOutput:", shots=2, examples_seed=3)
    prompts = build_prompts(few, ["new", *[r["source"] for r in labeled]], labeled)
    assert prompts[0].count("Input:") == 3 and prompts[0].endswith("Input: new\nOutput:")
    assert prompts == build_prompts(few, ["new", *[r["source"] for r in labeled]], labeled)  # deterministic
    for row, prompt in zip(labeled, prompts[1:]):  # a labeled input never sees its own target
        assert f"Output: {row['target']}" not in prompt and prompt.count("Input:") == 3
    with pytest.raises(ValueError, match="no labeled split"):
        build_prompts(few, ["x"], labeled=None)
