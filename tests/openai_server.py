"""A real OpenAI-compatible HTTP server on loopback, for the API-teacher tests.

It serves /v1/models, /v1/chat/completions (with logprobs/top_logprobs) and /v1/completions
(with logprobs, and echo=True scoring) from a tiny GPT-2 with random weights and any
byte-level BPE tokenizer, so answers are real model outputs with real log-probs. Faults are
queued per test and each spoils one request, in order ("ok" lets one through):

    server.inject("ok", "429", "500", "timeout", "reset", "malformed", "no_choices", "401", "404")

`requests` counts every request received (faulted ones included), `bodies` keeps them, and
`max_in_flight` the most handled at once; `echo_supported = False` makes it a server that
cannot score given text, `lm.eos_bias` one that stops early. Standard library http.server in
a thread: no dependency beyond transformers and torch.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import GPT2Config, GPT2LMHeadModel

FAULTS = ("ok", "429", "500", "timeout", "reset", "malformed", "no_choices", "401", "404")  # "ok": no fault


def _byte_decoder() -> dict[str, int]:
    from bench.api_teacher.align import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


class TinyLM:
    """Random-weight GPT-2 (2 layers, width 32) over `tokenizer`; greedy or sampled decoding and
    teacher-forced scoring, all deterministic for a given seed."""

    def __init__(self, tokenizer, seed: int = 0):
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        with torch.random.fork_rng():  # leave the test session's global RNG as it was
            torch.manual_seed(seed)
            self.model = GPT2LMHeadModel(config).eval()
        self.tok = tokenizer
        self.eos = tokenizer.eos_token_id
        self._bytes = _byte_decoder()
        # Only tokens that are printable text: random weights would otherwise emit stray bytes.
        self.banned = [i for i in range(len(tokenizer)) if i != self.eos and (
            i in tokenizer.all_special_ids or not self._printable(i))]
        self.eos_bias = 0.0  # raise it to make the model stop early (finish_reason "stop")
        self._lock = threading.Lock()
        self.score([self.eos])  # warm up now: the first forward pass is slow, and a test may time it

    def _printable(self, i: int) -> bool:
        try:
            return self.token_bytes(i).decode("utf-8").isprintable()
        except UnicodeDecodeError:
            return False

    def token_bytes(self, i: int) -> bytes:
        return bytes(self._bytes[c] for c in self.tok.convert_ids_to_tokens(i))

    def token_text(self, i: int) -> str:
        return self.token_bytes(i).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] or [self.tok.bos_token_id]

    def _logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.model(ids).logits.float()
        logits[..., self.banned] = -float("inf")
        logits[..., self.eos] += self.eos_bias
        return torch.log_softmax(logits, dim=-1)

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], *, n: int, max_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[tuple[list[int], list[torch.Tensor], str]]:
        """n samples: (generated ids, the log-prob row of each step, finish_reason)."""
        with self._lock:
            gen = torch.Generator().manual_seed(seed)
            outs = []
            for _ in range(n):
                ids, rows, finish = list(prompt_ids), [], "length"
                for _ in range(max_tokens):
                    logp = self._logprobs(torch.tensor([ids]))[0, -1]
                    if temperature == 0:
                        nxt = int(logp.argmax())
                    else:
                        probs = torch.softmax(logp / temperature, -1)
                        sorted_p, order = probs.sort(descending=True)
                        cut = (sorted_p.cumsum(0) - sorted_p) >= top_p
                        sorted_p[cut] = 0
                        nxt = int(order[torch.multinomial(sorted_p, 1, generator=gen)])
                    if nxt == self.eos:
                        finish = "stop"
                        break
                    ids.append(nxt)
                    rows.append(logp)
                outs.append((ids[len(prompt_ids):], rows, finish))
            return outs

    @torch.inference_mode()
    def score(self, ids: list[int]) -> torch.Tensor:
        """Row t: log-probs of the token at t + 1 given ids[: t + 1]."""
        with self._lock:
            return self._logprobs(torch.tensor([ids]))[0]


class OpenAIServer:
    def __init__(self, tokenizer, *, model: str = "tiny-gpt2", api_key: str = "sk-test-server-key"):
        self.lm = TinyLM(tokenizer)
        self.model_name, self.api_key = model, api_key
        self.faults: list[str] = []
        self.retry_after = "0.2"  # Retry-After value sent with an injected 429
        self.timeout_sleep_s = 1.5  # an injected timeout sleeps this long before answering
        self.delay_s = 0.0  # every request waits this long (to observe concurrency)
        self.echo_supported = True  # False: answer echo=True with 400, like servers that cannot score
        self.requests = 0
        self.bodies: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._http.handle_error = lambda request, address: None  # clients that left on purpose
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def inject(self, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        with self._lock:
            self.faults.extend(faults)

    def __enter__(self) -> OpenAIServer:
        # One intra-op thread while serving: the model is tiny, and on a shared, busy machine
        # torch's thread pool would slow every answer past the clients' timeouts.
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()
        torch.set_num_threads(self._threads_before)

    # ---- the API -----------------------------------------------------------------------------
    def _top(self, row: torch.Tensor, k: int) -> list[tuple[int, float]]:
        values, ids = row.topk(k) if k else (row[:0], row[:0].long())
        return [(int(i), float(v)) for i, v in zip(ids, values)]

    def chat(self, body: dict) -> dict:
        prompt = "\n".join(m["content"] for m in body["messages"])
        prompt_ids = self.lm.encode(prompt)
        outs = self.lm.generate(prompt_ids, n=body.get("n", 1), max_tokens=body.get("max_tokens", 16),
                                temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0),
                                seed=body.get("seed") or 0)
        k = body.get("top_logprobs") or 0
        choices = []
        for index, (ids, rows, finish) in enumerate(outs):
            choice = {"index": index, "finish_reason": finish,
                      "message": {"role": "assistant", "content": self.lm.tok.decode(ids)}}
            if body.get("logprobs"):
                def entry(i, lp):
                    return {"token": self.lm.token_text(i), "logprob": lp, "bytes": list(self.lm.token_bytes(i))}
                choice["logprobs"] = {"content": [
                    {**entry(i, float(row[i])), "top_logprobs": [entry(a, lp) for a, lp in self._top(row, k)]}
                    for i, row in zip(ids, rows)]}
            choices.append(choice)
        return {"id": "chatcmpl-test", "object": "chat.completion", "model": self.model_name, "choices": choices,
                "usage": self._usage(prompt_ids, outs)}

    def completions(self, body: dict) -> dict:
        prompt_ids = self.lm.encode(body["prompt"])
        max_tokens = body.get("max_tokens", 16)
        outs = self.lm.generate(prompt_ids, n=body.get("n", 1), max_tokens=max_tokens,
                                temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0),
                                seed=body.get("seed") or 0) if max_tokens else [([], [], "length")]
        k, echo = body.get("logprobs"), body.get("echo", False)
        choices = []
        for index, (ids, rows, finish) in enumerate(outs):
            text = self.lm.tok.decode(ids)
            tokens, lps, tops = [], [], []
            if echo:
                text = body["prompt"] + text
                scored = self.lm.score(prompt_ids)
                tokens = [self.lm.token_text(i) for i in prompt_ids]
                lps = [None] + [float(scored[t, prompt_ids[t + 1]]) for t in range(len(prompt_ids) - 1)]
                tops = [None] + [{self.lm.token_text(a): lp for a, lp in self._top(scored[t], k or 0)}
                                 for t in range(len(prompt_ids) - 1)]
            tokens += [self.lm.token_text(i) for i in ids]
            lps += [float(row[i]) for i, row in zip(ids, rows)]
            tops += [{self.lm.token_text(a): lp for a, lp in self._top(row, k or 0)} for row in rows]
            choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
            if k is not None:
                offsets, pos = [], 0
                for t in tokens:
                    offsets.append(pos)
                    pos += len(t)
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops,
                                      "text_offset": offsets}
            choices.append(choice)
        return {"id": "cmpl-test", "object": "text_completion", "model": self.model_name, "choices": choices,
                "usage": self._usage(prompt_ids, outs)}

    @staticmethod
    def _usage(prompt_ids, outs) -> dict:
        done = sum(len(ids) for ids, _, _ in outs)
        return {"prompt_tokens": len(prompt_ids), "completion_tokens": done, "total_tokens": len(prompt_ids) + done}


def _error(message: str, code: str | None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler(server: OpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload, headers: dict | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(json.loads(self.rfile.read(length) or b"{}"))

        def _serve(self, body: dict | None) -> None:
            with server._lock:
                server.requests += 1
                server.bodies.append({"path": self.path, "body": body})
                fault = server.faults.pop(0) if server.faults else None
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                time.sleep(server.delay_s)
                self._answer(body, fault)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the client gave up (timeout) or we reset on purpose
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer(self, body: dict | None, fault: str | None) -> None:
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if fault == "401" or key != server.api_key:
                # Real servers quote (part of) the key they got; the client must not repeat it.
                return self._send(401, _error(f"Incorrect API key provided: {key}", "invalid_api_key"))
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault == "timeout":
                time.sleep(server.timeout_sleep_s)
            if fault == "429":
                return self._send(429, _error("Rate limit reached", "rate_limit_exceeded", "requests"),
                                  {"Retry-After": server.retry_after})
            if fault == "500":
                return self._send(500, _error("The server had an error", None, "server_error"))
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": server.model_name, "object": "model", "owned_by": "tests"}]})
            if fault == "404" or (body or {}).get("model") != server.model_name:
                name = "(fault)" if fault == "404" else (body or {}).get("model")
                return self._send(404, _error(f"The model `{name}` does not exist", "model_not_found"))
            if fault == "malformed":
                return self._send(200, b'{"id": "x", "choices": [{"index": 0, "text": "cut')
            if self.path == "/v1/chat/completions":
                answer = server.chat(body)
            elif self.path == "/v1/completions":
                if body.get("echo") and not server.echo_supported:
                    return self._send(400, _error("echo is not supported", "unsupported_parameter"))
                answer = server.completions(body)
            else:
                return self._send(404, _error(f"no route {self.path}", None))
            if fault == "no_choices":
                answer.pop("choices")
            self._send(200, answer)

    return Handler
