"""What an API teacher is: a validated, frozen description of an OpenAI-compatible endpoint.

The spec never holds the API key, only the NAME of the environment variable that does
(`api_key_env`). Values that could be a key (a malformed `api_key_env`, or an `api_key` typed
into the spec) are hidden before pydantic can echo them in an error message. `hash_key()` keeps
only what determines the teacher's outputs, so operational knobs (concurrency, rate, retries,
prices, the env var's name) can change without invalidating cached pseudo-targets.
"""
from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
HIDDEN_NAME = "<hidden: not an environment variable name, so it may be a key>"
HIDDEN_KEY = "<hidden: put the key in an environment variable and name it in api_key_env>"
HIDDEN_CREDENTIALS = "<hidden-credentials>"  # replaces user:password@ or a secret query value of base_url
# Keys a user might paste the secret under; their values never reach an error message.
SECRET_FIELDS = ("api_key", "key", "openai_api_key", "token", "secret", "authorization")
OPENAI_HOST = "api.openai.com"
OPENAI_TOP_LOGPROBS = {"chat": 20, "completions": 5}  # api.openai.com's hard limits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    """USD per 1M tokens, for the cost line of the usage report."""

    prompt_per_1m: float = Field(ge=0)
    completion_per_1m: float = Field(ge=0)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class PromptTemplate(_Strict):
    """How one task's input becomes the teacher's prompt. `template` has `{input}` (the source
    as stored in the split) and optionally `{examples}`: `shots` labeled examples, each written
    with `example_template` ({input}, {target}) and joined by `example_separator`. Literal braces
    are doubled ({{ }}). Examples are drawn once per task with `examples_seed`; an input that is
    itself one of them gets the next drawn example instead, so no prompt shows its own target."""

    template: str = "{input}"
    shots: int = Field(0, ge=0)
    example_template: str = "Input: {input}\nOutput: {target}"
    example_separator: str = "\n\n"
    examples_seed: int = 0

    @field_validator("template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        try:
            found = _fields(v)
        except ValueError as err:
            raise ValueError(f"template {v!r} is not a valid format string ({err}); write literal braces "
                             f"as {{{{ and }}}}") from None
        if "input" not in found or found - {"input", "examples"}:
            raise ValueError(f"template {v!r} has fields {sorted(found)}; it needs {{input}} and may use "
                             f"{{examples}}, nothing else")
        return v

    @field_validator("example_template")
    @classmethod
    def _example_fields(cls, v: str) -> str:
        try:
            found = _fields(v)
        except ValueError as err:
            raise ValueError(f"example_template {v!r} is not a valid format string ({err})") from None
        if found - {"input", "target"} or "target" not in found:
            raise ValueError(f"example_template {v!r} has fields {sorted(found)}; allowed: {{input}}, "
                             f"{{target}} (target required)")
        return v

    @model_validator(mode="after")
    def _shots_have_a_place(self) -> PromptTemplate:
        if self.shots and "examples" not in _fields(self.template):
            raise ValueError(f"shots={self.shots} but template {self.template!r} has no {{examples}} field "
                             f"to put them in")
        return self

    def render(self, source: str, examples: Sequence[tuple[str, str]] = ()) -> str:
        shown = self.example_separator.join(
            self.example_template.format(input=s, target=t) for s, t in examples)
        return self.template.format(input=source, examples=shown)


def build_prompts(template: PromptTemplate, sources: Sequence[str],
                  labeled: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """One prompt per source. Few-shot examples come from `labeled` rows ({source, target});
    asking for shots without a labeled split (the no-labeled-data setup) is an error."""
    if not template.shots:
        return [template.render(s) for s in sources]
    if not labeled:
        raise ValueError(f"shots={template.shots} needs labeled examples, and this task has no labeled split; "
                         f"use shots: 0 (zero-shot)")
    if len(labeled) < template.shots:
        raise ValueError(f"shots={template.shots} but the labeled split has only {len(labeled)} examples")
    pool = random.Random(template.examples_seed).sample(range(len(labeled)), min(len(labeled), template.shots + 1))
    drawn = [(labeled[i]["source"], labeled[i]["target"]) for i in pool]
    return [template.render(s, [ex for ex in drawn if ex[0] != s][: template.shots]) for s in sources]


SECRET_QUERY = re.compile(r"(?i)^(api[-_]?key|key|token|access[-_]?token|secret|password|sig|signature)$")


def _without_credentials(url: str) -> str:
    """`url` with user:password@ and the values of secret-looking query parameters replaced by a
    marker, so that neither reaches an error message, a stored spec or a cached request."""
    try:
        parts = urlparse(url)
    except ValueError:
        return url
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        netloc = f"{HIDDEN_CREDENTIALS}@{netloc.rsplit('@', 1)[1]}"
    if query:
        query = "&".join(f"{k}={HIDDEN_CREDENTIALS}" if SECRET_QUERY.match(k) else f"{k}={v}" if eq else k
                         for k, eq, v in (item.partition("=") for item in query.split("&")))
    return parts._replace(netloc=netloc, query=query).geturl() if (netloc, query) != (parts.netloc, parts.query) \
        else url


class ApiTeacherSpec(_Strict):
    """An LLM teacher behind an OpenAI-compatible API (api.openai.com, vLLM, ...).

    `base_url` includes the API prefix (vLLM: http://HOST:8000/v1). `api_key_env` names the
    environment variable holding the key (null: a local server without auth). `top_logprobs`
    alternatives per generated token (0: the chosen token's log-prob only; needs `logprobs`);
    `max_top_logprobs` is the server's limit (api.openai.com: 20 for chat, 5 for completions;
    raise it for a vLLM started with a larger --max-logprobs). `requests_per_minute: null`
    means no client-side rate limit (429s are still honoured).
    """

    base_url: str
    model: str = Field(min_length=1)
    api_key_env: str | None = "OPENAI_API_KEY"
    endpoint: Literal["chat", "completions"] = "chat"
    prompt: PromptTemplate = PromptTemplate()
    task_prompts: dict[str, PromptTemplate] = {}  # per task name; tasks not listed use `prompt`
    system: str | None = None  # chat only: a system message before the prompt
    pts_per_input: int = Field(1, ge=1, le=128)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, ge=1)
    logprobs: bool = True  # ask for the tokens and their log-probs (word-level KD needs them)
    top_logprobs: int = Field(0, ge=0)
    max_top_logprobs: int = Field(20, ge=0)
    seed: int | None = None  # sent to the server (best-effort determinism where supported)
    concurrency: int = Field(8, ge=1, le=256)
    requests_per_minute: float | None = Field(None, gt=0)
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    backoff_s: float = Field(1.0, ge=0)  # first retry delay; doubles per attempt, with jitter
    backoff_max_s: float = Field(60.0, ge=0)
    prices: Prices | None = None
    api_key: None = Field(None, exclude=True)  # never set: only here to explain where the key goes

    @model_validator(mode="before")
    @classmethod
    def _hide_secrets(cls, data: Any) -> Any:
        """Pydantic prints a bad field's value; make sure a pasted key is never that value."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for name in SECRET_FIELDS:
            if name in data:
                data[name] = HIDDEN_KEY
        if isinstance(data.get("base_url"), str):
            data["base_url"] = _without_credentials(data["base_url"])
        env = data.get("api_key_env")
        if isinstance(env, str) and not ENV_NAME.match(env):
            data["api_key_env"] = HIDDEN_NAME
        elif env is not None and not isinstance(env, str):
            data["api_key_env"] = HIDDEN_NAME
        return data

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key_in_spec(cls, v: Any) -> None:
        if v is not None:
            raise ValueError("the key does not belong in the spec (specs are logged and stored): export it "
                             "in an environment variable and name that variable in api_key_env; the value "
                             "given is not shown")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            raise ValueError("api_key_env must be the NAME of the environment variable that holds the key "
                             "(upper case A-Z, 0-9, _; e.g. OPENAI_API_KEY), never the key itself; the value "
                             "given is not shown")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if HIDDEN_CREDENTIALS in v:
            raise ValueError(f"base_url {v!r} carries credentials (user:password@ or a key in the query); they "
                             f"would be stored with every cached answer: put the key in an environment "
                             f"variable named in api_key_env (the value given is not shown)")
        url = urlparse(v)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"base_url {v!r} must be an http:// or https:// URL with a host, e.g. "
                             f"https://api.openai.com/v1 or http://localhost:8000/v1")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> ApiTeacherSpec:
        if self.top_logprobs and not self.logprobs:
            raise ValueError(f"top_logprobs={self.top_logprobs} needs logprobs: true")
        limit = self.max_top_logprobs
        if self.is_openai and limit > OPENAI_TOP_LOGPROBS[self.endpoint]:
            raise ValueError(f"max_top_logprobs={limit}: {OPENAI_HOST} returns at most "
                             f"{OPENAI_TOP_LOGPROBS[self.endpoint]} on the {self.endpoint} endpoint")
        if self.top_logprobs > limit:
            raise ValueError(f"top_logprobs={self.top_logprobs} exceeds max_top_logprobs={limit} (the server's "
                             f"limit; raise max_top_logprobs only if the server allows more)")
        if self.system is not None and self.endpoint != "chat":
            raise ValueError("system is a chat message; the completions endpoint has none (remove system or "
                             "use endpoint: chat)")
        if self.pts_per_input > 1 and self.temperature == 0:
            raise ValueError(f"pts_per_input={self.pts_per_input} with temperature 0 asks for copies of one "
                             f"greedy output; use temperature > 0 or pts_per_input: 1")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(f"backoff_max_s={self.backoff_max_s} is below backoff_s={self.backoff_s}")
        return self

    @property
    def is_openai(self) -> bool:
        return urlparse(self.base_url).hostname == OPENAI_HOST

    def prompt_for(self, task: str) -> PromptTemplate:
        return self.task_prompts.get(task, self.prompt)

    def hash_key(self, task: str | None = None) -> dict[str, Any]:
        """What determines the teacher's outputs, for content-addressed artifacts. No secret,
        no operational setting: the key's env var name, concurrency, rate, retries, timeouts
        and prices leave the outputs unchanged. With `task`, only that task's prompt counts."""
        key = self.model_dump(exclude={
            "api_key", "api_key_env", "concurrency", "requests_per_minute", "max_retries", "timeout_s",
            "backoff_s", "backoff_max_s", "prices", "max_top_logprobs"})
        if task is not None:
            del key["task_prompts"]
            key["prompt"] = self.prompt_for(task).model_dump()
        return key
