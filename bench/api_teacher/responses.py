"""OpenAI wire format → `Completion`: text, the API's tokens, their log-probs and alternatives.

Parsing is also validation: a response that does not have what was asked for (no choices,
fewer than n, no log-probs when they were requested, an echo that is not the prompt) raises
`MalformedResponse`, which the client retries. A completion cut by max_tokens
(finish_reason "length") is not malformed: it is recorded, with `truncated` set.
"""
from __future__ import annotations

import codecs
from dataclasses import asdict, dataclass, field
from typing import Any


class MalformedResponse(ValueError):
    """A 200 response that is not a usable answer to the request (retried by the client)."""


@dataclass(frozen=True)
class Completion:
    """One output of the teacher. `tokens[i]` is the text of the API's i-th token ("".join is
    normally `text`); `top_logprobs[i]` its alternatives as (token text, log-prob), empty when
    not requested. `partial[i]` marks a token holding only some bytes of a character (its text
    is the characters it completes, possibly ""): such a token is never aligned to a student token."""

    text: str
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[str, float]]] = field(default_factory=list)
    partial: list[bool] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(d["text"], d["tokens"], d["token_logprobs"],
                   [[(t, lp) for t, lp in alts] for alts in d["top_logprobs"]], d["partial"], d["finish_reason"])


def _choices(body: Any, n: int) -> list[dict]:
    if not isinstance(body, dict):
        raise MalformedResponse(f"response is a JSON {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"response has no choices (keys: {sorted(body)})")
    if len(choices) != n or not all(isinstance(c, dict) for c in choices):
        raise MalformedResponse(f"response has {len(choices)} choices, {n} were asked for")
    return sorted(choices, key=lambda c: c.get("index", 0))


def usage_of(body: dict) -> dict[str, int]:
    usage = body.get("usage") or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}


def decode_pieces(pieces: list[bytes]) -> tuple[list[str], list[bool]]:
    """Token bytes → token texts, where a character split across tokens goes to the token that
    completes it and every token touching a split character is marked partial."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    texts, partial, carry = [], [], False
    for piece in pieces:
        texts.append(decoder.decode(piece))
        pending = bool(decoder.getstate()[0])
        partial.append(carry or pending)
        carry = pending
    tail = decoder.decode(b"", final=True)
    if tail and texts:
        texts[-1] += tail
    return texts, partial


def _strict_text(entry: dict) -> str | None:
    """A candidate token's text, or None when its bytes are not whole characters."""
    raw = entry.get("bytes")
    if raw is None:
        return entry.get("token")
    try:
        return bytes(raw).decode("utf-8")
    except (UnicodeDecodeError, ValueError, TypeError):
        return None


def parse_chat(body: Any, *, n: int, logprobs: bool) -> list[Completion]:
    out = []
    for choice in _choices(body, n):
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedResponse("a chat choice has no message")
        text = message.get("content") or ""  # None: a refusal or filter; finish_reason says which
        if not isinstance(text, str):
            raise MalformedResponse(f"message content is a {type(text).__name__}, not text")
        finish = choice.get("finish_reason")
        if not logprobs:
            out.append(Completion(text, finish_reason=finish))
            continue
        entries = (choice.get("logprobs") or {}).get("content")
        if entries is None and text:
            raise MalformedResponse("no logprobs in the response although logprobs were requested "
                                    "(does the server support them?)")
        entries = entries or []
        try:
            pieces = [bytes(e["bytes"]) if e.get("bytes") is not None else e["token"].encode() for e in entries]
            tokens, partial = decode_pieces(pieces)
            lps = [float(e["logprob"]) for e in entries]
            tops = [[(t, float(a["logprob"])) for a in (e.get("top_logprobs") or [])
                     if (t := _strict_text(a)) is not None] for e in entries]
        except (KeyError, TypeError, ValueError) as err:
            raise MalformedResponse(f"bad logprobs entry ({err!r})") from None
        out.append(Completion(text, tokens, lps, tops, partial, finish))
    return out


def _legacy_logprobs(lp: Any) -> tuple[list[str], list[float | None], list[list[tuple[str, float]]], list[int] | None]:
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise MalformedResponse("no logprobs.tokens in the response although logprobs were requested")
    tokens = lp["tokens"]
    lps = lp.get("token_logprobs") or [None] * len(tokens)
    tops = lp.get("top_logprobs") or [None] * len(tokens)
    offsets = lp.get("text_offset")
    if len(lps) != len(tokens) or len(tops) != len(tokens) or (offsets is not None and len(offsets) != len(tokens)):
        raise MalformedResponse("logprobs arrays have different lengths")
    try:
        alts = [[(str(t), float(v)) for t, v in (top or {}).items()] for top in tops]
        lps = [None if v is None else float(v) for v in lps]
    except (AttributeError, TypeError, ValueError) as err:
        raise MalformedResponse(f"bad logprobs entry ({err!r})") from None
    return [str(t) for t in tokens], lps, alts, offsets


def parse_completions(body: Any, *, n: int, logprobs: bool) -> list[Completion]:
    out = []
    for choice in _choices(body, n):
        text = choice.get("text")
        if not isinstance(text, str):
            raise MalformedResponse("a completions choice has no text")
        finish = choice.get("finish_reason")
        if not logprobs:
            out.append(Completion(text, finish_reason=finish))
            continue
        tokens, lps, alts, _ = _legacy_logprobs(choice.get("logprobs"))
        if any(v is None for v in lps):
            raise MalformedResponse("a generated token has no logprob")
        out.append(Completion(text, tokens, lps, alts, [False] * len(tokens), finish))
    return out


def parse_echo_score(body: Any, prompt: str, continuation: str) -> Completion:
    """The continuation's tokens and log-probs out of an echo=True completions response for
    prompt + continuation (anything generated after it is dropped)."""
    choice = _choices(body, 1)[0]
    echoed = choice.get("text")
    if not isinstance(echoed, str) or not echoed.startswith(prompt + continuation):
        raise MalformedResponse("the echoed text does not start with the prompt and the scored text "
                                "(the server ignored echo=True?)")
    tokens, lps, alts, offsets = _legacy_logprobs(choice.get("logprobs"))
    if offsets is None:
        offsets, pos = [], 0
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
    start, end = len(prompt), len(prompt) + len(continuation)
    kept = Completion(continuation)
    for tok, lp, alt, off in zip(tokens, lps, alts, offsets):
        if off + len(tok) <= start or off >= end:
            continue
        if lp is None:
            raise MalformedResponse("a scored token has no logprob")
        straddles = off < start or off + len(tok) > end
        kept.tokens.append(tok[max(0, start - off): end - off])
        kept.token_logprobs.append(lp)
        kept.top_logprobs.append(alt)
        kept.partial.append(straddles)
    return kept
