"""The API teacher's client: many prompts in, K completions (or scores) each out, through the
official `openai` package, with the care a long paid stage needs.

* Workers (threads, `concurrency`) share one requests-per-minute limiter.
* Transient failures are retried with exponential backoff and jitter, honouring Retry-After:
  429, 408/409, 5xx, timeouts, dropped connections and malformed 200s (bad JSON, no choices,
  missing log-probs). The openai client's own retries are off so every attempt is counted here.
* A refused key (401/403), a missing model (404, model_not_found) or a request the server
  rejects as invalid (other 4xx: a parameter it does not support, a prompt too long) stops the
  whole run at once, before thousands of doomed requests, with a message naming the env var,
  the model or the server's reason. The key itself never appears in a message.
* Every answer is cached on disk as it arrives (`ResponseCache`); a rerun makes zero requests.
* `usage()` reports requests, retries, cache hits, tokens and cost as a plain dict.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

try:
    import openai
except ImportError as err:  # an optional dependency: only the API teacher needs it
    raise ImportError("the API teacher needs the openai package (pip install openai); "
                      "it is an optional dependency of kdbench") from err

from bench.api_teacher.cache import ResponseCache, request_key
from bench.api_teacher.pacing import RateLimiter, backoff_delay, parse_retry_after
from bench.api_teacher.responses import (Completion, MalformedResponse, parse_chat, parse_completions,
                                         parse_echo_score, usage_of)
from bench.api_teacher.spec import ApiTeacherSpec

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise (Ray workers log INFO)
KEY_LIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{4,}")
PROBE_PROMPT, PROBE_TEXT = "The capital of France is", " Paris, a city on the Seine."
PROBE_MALFORMED = 3  # malformed answers to the scoring probe before it counts as "cannot score"
T = TypeVar("T")
# Standard parameters of the openai package's create(); anything else goes in extra_body.
STANDARD = {"model", "messages", "prompt", "n", "temperature", "top_p", "max_tokens", "logprobs",
            "top_logprobs", "seed", "echo", "stop"}


class ApiTeacherError(RuntimeError):
    """The API teacher cannot deliver; the message says why and what to change."""


class ApiAuthError(ApiTeacherError):
    """The key is missing or refused (401/403). Not retried."""


class ApiModelNotFoundError(ApiTeacherError):
    """The model does not exist at base_url (404 / model_not_found). Not retried."""


class ApiRequestError(ApiTeacherError):
    """The server rejected a request as invalid (other 4xx). Not retried."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    cache_hits: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Finished inputs per second."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f}s"
        return (f"{self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%), {self.rate:.1f}/s, "
                f"ETA {eta}, {self.cache_hits} cached")


def progress_printer(say: Callable[[str], None], label: str = "api teacher",
                     every_s: float = 10.0) -> Callable[[Progress], None]:
    """A progress callback printing at most every `every_s` seconds, and once at the end."""
    last = [float("-inf")]

    def report(p: Progress) -> None:
        if p.done == p.total or p.elapsed_s - last[0] >= every_s:
            last[0] = p.elapsed_s
            say(f"{label}: {p.line()}")
    return report


@dataclass(frozen=True)
class ScoringSupport:
    """Whether the teacher can score given text (log-probs of every token of a text it did not
    write), which word-level KD on student outputs (Joint-Teaching) needs."""

    supported: bool
    reason: str

    def require(self, purpose: str) -> None:
        if not self.supported:
            raise ApiTeacherError(f"{purpose} needs the API teacher to score given text, and it cannot: {self.reason}")


class _Cancelled(Exception):
    """Another worker hit a fatal error; this one stops before sending."""


class ApiTeacherClient:
    def __init__(self, spec: ApiTeacherSpec, cache_dir: Path | str, *, say: Callable[[str], None] = print):
        self.spec, self.say = spec, say
        self._secret = self._read_key()
        self._client = openai.OpenAI(api_key=self._secret or "no-key", base_url=spec.base_url,
                                     timeout=spec.timeout_s, max_retries=0)
        self.cache = ResponseCache(cache_dir)
        self.limiter = RateLimiter(spec.requests_per_minute)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens",
                                      "truncated", "failed"), 0)
        self._served: set[str] = set()
        self._answers = {"answers": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # ---- public API -------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], progress: Callable[[Progress], None] | None = None
                 ) -> list[list[Completion]]:
        """`pts_per_input` completions for every prompt, in prompt order."""
        s = self.spec
        parse = parse_chat if s.endpoint == "chat" else parse_completions
        jobs = [(self.generation_request(p), lambda body: parse(body, n=s.pts_per_input, logprobs=s.logprobs))
                for p in prompts]
        out = [[Completion.from_dict(c) for c in rec["completions"]] for rec in self._run(jobs, progress)]
        self._add("truncated", sum(c.truncated for cs in out for c in cs))
        return out

    def score(self, prompts: Sequence[str], texts: Sequence[str],
              progress: Callable[[Progress], None] | None = None) -> list[Completion]:
        """The teacher's tokens and log-probs (and top alternatives) of each `texts[i]` following
        `prompts[i]`, via /completions with echo=True. The completions endpoint applies no chat
        template: the text is scored after the plain prompt. Check `probe_scoring()` first."""
        if len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} texts to score")
        jobs = [(self.scoring_request(p, t), lambda body, p=p, t=t: [parse_echo_score(body, p, t)])
                for p, t in zip(prompts, texts)]
        return [Completion.from_dict(rec["completions"][0]) for rec in self._run(jobs, progress)]

    def probe_scoring(self) -> ScoringSupport:
        """One tiny echo request: can this server score given text? A refused key still raises, and
        so does a request that ran out of retries (transient failures are not an answer)."""
        request = self.scoring_request(PROBE_PROMPT, PROBE_TEXT)
        where = f"{self.spec.base_url} model {self.spec.model!r}"
        for attempt in range(PROBE_MALFORMED):  # a cut answer may be the network; the same one thrice is not
            try:
                rec = self._fetch(request, lambda b: [parse_echo_score(b, PROBE_PROMPT, PROBE_TEXT)],
                                  retry_malformed=False)
                break
            except MalformedResponse as err:
                if attempt + 1 == PROBE_MALFORMED:
                    return ScoringSupport(False, f"{where}: /completions with echo=True did not return the text's "
                                                 f"log-probs ({err})")
            except (ApiRequestError, ApiModelNotFoundError) as err:  # refused: the endpoint cannot do it
                return ScoringSupport(False, f"{where}: /completions with echo=True and logprobs failed: {err}")
            # a refused key, or out of retries: a flaky network says nothing about support, so it is raised
        if not rec["completions"][0]["tokens"]:
            return ScoringSupport(False, f"{where}: echo=True returned no tokens for the scored text")
        return ScoringSupport(True, f"{where} scores text with /completions echo=True")

    def check_model(self) -> None:
        """Fail before a long stage if the key is refused or the model is not served (GET /models).
        Transient failures (429, 5xx, dropped connections) are retried like any request; a server
        without /models is given the benefit of the doubt: requests will tell."""
        try:
            ids = self._retrying("/models", lambda: [m.id for m in self._client.models.list().data])
        except (ApiModelNotFoundError, ApiRequestError):  # no /models here
            return
        if ids and self.spec.model not in ids:
            shown = ", ".join(sorted(ids)[:20]) + (" ..." if len(ids) > 20 else "")
            raise ApiModelNotFoundError(f"model {self.spec.model!r} is not served at {self.spec.base_url}; "
                                        f"it serves: {shown}")

    def usage(self) -> dict[str, Any]:
        """Counts over this client's lifetime: requests sent (every attempt), retries, cache hits,
        the tokens those requests were billed for, completions returned that max_tokens cut
        (cached ones included), requests that ran out of retries, the model names the server
        reported (e.g. a dated snapshot of "gpt-4o"), and the cost in USD when the spec has prices.
        `all_answers`: the tokens (and cost) of every answer served, cached ones included, i.e.
        what the outputs cost when they were first fetched, in this run or an earlier one."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts, served_models=sorted(self._served))
            answers = dict(self._answers)
        out["cost_usd"] = self._cost(out["prompt_tokens"], out["completion_tokens"])
        out["all_answers"] = {**answers, "cost_usd": self._cost(answers["prompt_tokens"], answers["completion_tokens"])}
        return out

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        prices = self.spec.prices
        return None if prices is None else (
            prompt_tokens * prices.prompt_per_1m + completion_tokens * prices.completion_per_1m) / 1e6

    # ---- requests ---------------------------------------------------------------------------
    def generation_request(self, prompt: str) -> dict[str, Any]:
        s = self.spec
        body: dict[str, Any] = {"model": s.model, "n": s.pts_per_input, "temperature": s.temperature,
                                "top_p": s.top_p, "max_tokens": s.max_tokens}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.endpoint == "chat":
            system = [{"role": "system", "content": s.system}] if s.system else []
            body["messages"] = system + [{"role": "user", "content": prompt}]
            if s.logprobs:
                body["logprobs"] = True
                if s.top_logprobs:
                    body["top_logprobs"] = s.top_logprobs
        else:
            body["prompt"] = prompt
            if s.logprobs:
                body["logprobs"] = s.top_logprobs
        return {"base_url": s.base_url, "path": f"/{'chat/' if s.endpoint == 'chat' else ''}completions", "body": body}

    def scoring_request(self, prompt: str, text: str) -> dict[str, Any]:
        # max_tokens=1, not 0: vLLM refuses 0; the one generated token is dropped when parsing.
        body = {"model": self.spec.model, "prompt": prompt + text, "echo": True, "max_tokens": 1,
                "temperature": 0.0, "logprobs": min(self.spec.top_logprobs, self.spec.max_top_logprobs)}
        return {"base_url": self.spec.base_url, "path": "/completions", "body": body}

    def _send(self, request: dict[str, Any]) -> Any:
        body = request["body"]
        resource = self._client.chat.completions if request["path"] == "/chat/completions" else self._client.completions
        extra = {k: v for k, v in body.items() if k not in STANDARD}
        raw = resource.with_raw_response.create(**{k: v for k, v in body.items() if k in STANDARD},
                                                extra_body=extra or None)
        text = raw.http_response.text
        try:
            return json.loads(text)
        except ValueError:
            raise MalformedResponse(f"response is not JSON ({len(text)} chars: {text[:60]!r}...)") from None

    def _fetch(self, request: dict[str, Any], parse: Callable[[Any], list[Completion]], *,
               retry_malformed: bool = True, stop: threading.Event | None = None) -> dict[str, Any]:
        """The cached record for `request`, or send it (with retries) and cache the answer.
        A fatal error sets `stop`, which the other workers check before every attempt."""
        key = request_key(request)
        if (record := self.cache.get(key)) is not None:
            self._add("cache_hits")
            self._note_model(record)
            return record

        def attempt() -> dict[str, Any]:
            body = self._send(request)
            if isinstance(body, dict):
                for name, count in usage_of(body).items():
                    self._add(name, count)
            completions = parse(body)
            return {"request": request, "served_model": body.get("model"), "usage": usage_of(body),
                    "completions": [c.to_dict() for c in completions]}

        record = self._retrying(request["path"], attempt, retry_malformed=retry_malformed, stop=stop)
        self._note_model(record)
        self.cache.put(key, record)
        return record

    def _retrying(self, path: str, attempt: Callable[[], T], *, retry_malformed: bool = True,
                  stop: threading.Event | None = None) -> T:
        """`attempt()` (one request to `path`) until it succeeds: transient failures are retried
        with backoff (at least the server's Retry-After, which also pauses the other workers);
        a fatal status is raised at once, after setting `stop`, which workers check before every
        attempt; out of retries: `ApiTeacherError` with the last reason."""
        s = self.spec
        for n in range(s.max_retries + 1):
            if stop is not None and stop.is_set():
                raise _Cancelled()
            self.limiter.acquire()
            self._add("requests")
            retry_after = None
            try:
                return attempt()
            except openai.APIStatusError as err:
                if fatal := self._fatal(err, path):
                    if stop is not None:
                        stop.set()
                    raise fatal from None
                retry_after = parse_retry_after(err.response.headers)
                reason = f"HTTP {err.status_code}{self._server_message(err, ': ')}"
            except openai.APITimeoutError:
                reason = f"no answer within timeout_s={s.timeout_s}"
            except openai.APIConnectionError as err:
                reason = f"connection failed ({self._redact(str(err.__cause__ or err))})"
            except MalformedResponse as err:
                if not retry_malformed:
                    raise
                reason = f"malformed response: {err}"
            if n == s.max_retries:
                break
            delay = backoff_delay(n, s.backoff_s, s.backoff_max_s)
            if retry_after is not None:
                delay = max(delay, retry_after)
                self.limiter.pause_until(time.monotonic() + retry_after)
            self._add("retries")
            self.say(f"api teacher: {path}: {reason}; retry {n + 1}/{s.max_retries} in {delay:.2f}s")
            time.sleep(delay)
        raise ApiTeacherError(f"{s.base_url}{path}: gave up after {s.max_retries + 1} attempts; last: {reason}")

    def _run(self, jobs: list[tuple[dict, Callable]], progress: Callable[[Progress], None] | None
             ) -> list[dict[str, Any]]:
        """All jobs on `concurrency` threads. A fatal error (key, model, invalid request) cancels
        the rest and is raised; requests that ran out of retries are collected and raised at the
        end, after every other answer is cached."""
        results: list[dict | None] = [None] * len(jobs)
        failures: list[ApiTeacherError] = []
        stop, fatal = threading.Event(), None
        start, hits0, done = time.monotonic(), self._counts["cache_hits"], 0
        workers = max(1, min(self.spec.concurrency, len(jobs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-teacher") as pool:
            futures = {pool.submit(self._fetch, req, parse, stop=stop): i for i, (req, parse) in enumerate(jobs)}
            for fut in as_completed(futures):
                try:
                    results[futures[fut]] = fut.result()
                except (_Cancelled, CancelledError):
                    continue
                except (ApiAuthError, ApiModelNotFoundError, ApiRequestError) as err:
                    if fatal is None:
                        fatal = err
                        for f in futures:
                            f.cancel()
                    continue
                except ApiTeacherError as err:
                    failures.append(err)
                    self._add("failed")
                done += 1
                if progress is not None:
                    progress(Progress(done, len(jobs), self._counts["cache_hits"] - hits0, time.monotonic() - start))
        if fatal is not None:
            raise fatal
        if failures:
            raise ApiTeacherError(f"{len(failures)} of {len(jobs)} requests failed; the other answers are cached, "
                                  f"so a rerun sends only the failed ones. First failure: {failures[0]}")
        return results  # type: ignore[return-value]

    def _note_model(self, record: dict[str, Any]) -> None:
        """Provenance and cost of an answer served (sent now or from the cache)."""
        with self._lock:
            if record.get("served_model"):
                self._served.add(str(record["served_model"]))
            self._answers["answers"] += 1
            for name in ("prompt_tokens", "completion_tokens"):
                self._answers[name] += int((record.get("usage") or {}).get(name) or 0)

    def _add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    # ---- errors and secrets -----------------------------------------------------------------
    def _read_key(self) -> str | None:
        name = self.spec.api_key_env
        if name is None:
            return None
        key = os.environ.get(name, "")
        if not key:
            raise ApiAuthError(f"environment variable {name} is not set or empty; export the API key for "
                               f"{self.spec.base_url} in it (api_key_env names it)")
        return key

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return KEY_LIKE.sub("***", text)

    def _server_message(self, err: openai.APIStatusError, prefix: str = "") -> str:
        body = err.body
        if isinstance(body, dict):
            body = body.get("error", body)
            body = body.get("message", body) if isinstance(body, dict) else body
        text = self._redact(str(body or "").strip())[:300]
        return f"{prefix}{text}" if text else ""

    def _fatal(self, err: openai.APIStatusError, path: str) -> ApiTeacherError | None:
        """The error that ends the run for this status, or None when it is worth retrying."""
        status, s = err.status_code, self.spec
        message = self._server_message(err, " Server said: ")
        code = err.body.get("error", {}).get("code") if isinstance(err.body, dict) and isinstance(
            err.body.get("error"), dict) else getattr(err, "code", None)
        if status in (401, 403):
            who = (f"the API key in ${s.api_key_env}" if s.api_key_env else
                   "no API key (api_key_env is null; name the env var that holds one)")
            return ApiAuthError(f"{s.base_url} refused {who} (HTTP {status}).{message}")
        if code == "model_not_found" or status == 404:
            hint = "" if code == "model_not_found" else " (or the URL is wrong: does base_url end in /v1?)"
            return ApiModelNotFoundError(f"model {s.model!r} not found at {s.base_url}{path} (HTTP {status})"
                                         f"{hint}.{message}")
        if status in (408, 409, 429) or status >= 500:
            return None
        return ApiRequestError(f"{s.base_url}{path} rejected the request (HTTP {status}).{message}")
