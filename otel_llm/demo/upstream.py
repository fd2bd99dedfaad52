"""OpenAI-compatible upstream simulator (stdlib only) for the demo, the traffic generator and the tests.

Serves ``/v1/chat/completions`` (plain and SSE streaming), ``/v1/embeddings``, ``/v1/responses``
(plain and streaming) and ``/v1/models`` on a ThreadingHTTPServer. Output text and token counts
are deterministic functions of the request, so tests can assert exact values.

Failures are triggered by model name:

=================  ==========================================================================
error-500          500 ``server_error``
error-429          429 ``rate_limit_exceeded`` with ``retry-after: 0``
error-400, bad-*   400 ``model_not_found`` (``invalid_request_error``)
error-timeout      sleeps ``timeout_sleep`` seconds, then answers normally
error-malformed    200 ``application/json`` whose body is not JSON (streaming: a non-JSON event)
error-midstream    streaming: sends half of the events, then drops the connection (no [DONE])
error-disconnect   closes the socket without sending any response
=================  ==========================================================================

Bodies over ``max_request_bytes`` or prompts over 100k characters get 400
``context_length_exceeded``; ``error_rate`` adds random 500s/429s from a seeded RNG.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import logging
import math
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Known models -> the dated snapshot name reported in responses.
MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o1": "o1-2024-12-17",
    "o3-mini": "o3-mini-2025-01-31",
    "text-embedding-3-small": "text-embedding-3-small",
    "text-embedding-3-large": "text-embedding-3-large",
}
MAX_CONTEXT_CHARS = 100_000
RATE_LIMIT_REQUESTS = 10_000
RATE_LIMIT_TOKENS = 10_000_000
RATE_LIMIT_WINDOW = 60.0
SYSTEM_FINGERPRINT = "fp_sim0001"
_SECRET_HEADERS = {"authorization", "api-key", "x-api-key"}  # redacted in the request log
_VOCAB = (
    "the a simulated upstream answer is here with some tokens for tracing latency metrics and "
    "spans across every request so dashboards show real looking data today"
).split()


@dataclass(frozen=True)
class LatencyProfile:
    """Mean delays in seconds; every delay is scaled by a random factor in ``1 +/- jitter``."""

    first_chunk: float = 0.0  # before the first streamed chunk (time to first token)
    per_chunk: float = 0.0  # between later streamed chunks
    non_stream_base: float = 0.0  # before a non-streamed answer ...
    non_stream_per_token: float = 0.0  # ... plus this much per completion token
    jitter: float = 0.0

    @classmethod
    def realistic(cls) -> LatencyProfile:
        """~0.2-0.5 s to first token, 12-28 ms per chunk."""
        return cls(first_chunk=0.35, per_chunk=0.02, non_stream_base=0.3, non_stream_per_token=0.01, jitter=0.4)


class LoggedRequest(NamedTuple):
    method: str
    path: str
    body: Any  # parsed JSON, or None when absent, unparsable or oversized
    headers: dict[str, str]  # lower-cased names; Authorization redacted


class _Usage(NamedTuple):
    prompt: int
    cached: int  # prompt tokens read from the simulated prompt cache
    cache_write: int  # prompt tokens written to it
    completion: int  # includes reasoning
    reasoning: int


class _ApiError(Exception):
    def __init__(self, status, message, type_="invalid_request_error", code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Drop(Exception):
    """Close the connection now, mid-response or without any response."""


class _Sent(Exception):
    """The response has already been written."""


def _server_error() -> _ApiError:
    return _ApiError(500, "The server had an error while processing your request. Sorry about that!", "server_error")


def _rate_limited() -> _ApiError:
    headers = {"retry-after": "0", "x-ratelimit-remaining-requests": "0"}
    return _ApiError(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", headers=headers)


def _context_exceeded(param: str) -> _ApiError:
    msg = "This model's maximum context length was exceeded. Please reduce the length of the messages."
    return _ApiError(400, msg, code="context_length_exceeded", param=param)


def _tokens(text: str) -> int:
    """~1.3 tokens per word, rounded half up, at least 1."""
    return max(1, (len(text.split()) * 13 + 5) // 10)


def _text_of(value: Any) -> str:
    """All text in a message content / Responses input, whatever its nesting."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(filter(None, map(_text_of, value)))
    if isinstance(value, dict):
        return _text_of(value.get("content") if "content" in value else value.get("text"))
    return ""


def _generate(prompt: str, index: int, limit: Any) -> tuple[list[str], str]:
    """Deterministic words for choice ``index`` and the finish reason under a token ``limit``."""
    rng = random.Random(f"{index}:{prompt}")
    words = [rng.choice(_VOCAB) for _ in range(rng.randint(8, 40))]
    words[0], words[-1] = words[0].capitalize(), words[-1] + "."
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _embedding(text: str, dims: int, as_base64: bool) -> Any:
    rng = random.Random(f"embedding:{text}")
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    packed = struct.pack(f"<{dims}f", *(v / norm for v in vec))  # float32, exactly as OpenAI
    return base64.b64encode(packed).decode() if as_base64 else list(struct.unpack(f"<{dims}f", packed))


def _response_model(model: str) -> str:
    if model in MODELS:
        return MODELS[model]
    return model if re.search(r"\d{4}-\d{2}-\d{2}$", model) else f"{model}-2024-01-01"


def _sse(event: str | None, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class UpstreamSimulator:
    """An OpenAI-compatible HTTP server on a daemon thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: LatencyProfile = LatencyProfile(),
        error_rate: float = 0.0,
        seed: int | None = None,
        timeout_sleep: float = 5.0,
        max_request_bytes: int = 1 << 20,
    ) -> None:
        self.host, self._port = host, port
        self.latency, self.error_rate = latency, error_rate
        self.timeout_sleep, self.max_request_bytes = timeout_sleep, max_request_bytes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._log: deque[LoggedRequest] = deque(maxlen=1000)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._seen_prompts: set[str] = set()
        self._window_start, self._window_requests, self._window_tokens = time.monotonic(), 0, 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def start(self) -> UpstreamSimulator:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self._port), _Handler)
            self._server.sim = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="upstream-sim", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency or error-timeout
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock keep-alive connections waiting for a next request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state shared by the handler threads -------------------------------------------------

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _wait(self, seconds: float) -> None:
        """Sleep, but drop the connection at once if the simulator is stopping."""
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Drop

    def _sleep(self, mean: float) -> None:
        """A latency-profile delay: ``mean`` with jitter."""
        if mean > 0:
            with self._lock:
                factor = 1 + self._rng.uniform(-self.latency.jitter, self.latency.jitter)
            self._wait(mean * factor)

    def _random_failure(self) -> _ApiError | None:
        with self._lock:
            if self.error_rate <= 0 or self._rng.random() >= self.error_rate:
                return None
            return _server_error() if self._rng.random() < 0.5 else _rate_limited()

    def _usage(self, model: str, prompt: str, visible_tokens: int) -> _Usage:
        """Token counts; like OpenAI's prompt cache, a prompt of >= 1024 tokens is written to the cache
        the first time and read from it (in 128-token blocks) when repeated."""
        prompt_tokens = _tokens(prompt)
        reasoning = 2 * visible_tokens if any(tag in model for tag in ("o1", "o3", "reason")) else 0
        key = hashlib.sha256(prompt.encode()).hexdigest()
        with self._lock:
            hit = key in self._seen_prompts
            if len(self._seen_prompts) > 10_000:
                self._seen_prompts.clear()
            self._seen_prompts.add(key)
        cacheable = prompt_tokens // 128 * 128 if prompt_tokens >= 1024 else 0
        return _Usage(prompt_tokens, cacheable if hit else 0, 0 if hit else cacheable,
                      visible_tokens + reasoning, reasoning)

    def _rate_limit_headers(self, tokens: int) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= RATE_LIMIT_WINDOW:
                self._window_start, self._window_requests, self._window_tokens = now, 0, 0
            self._window_requests += 1
            self._window_tokens += tokens
            requests, used_tokens = self._window_requests, self._window_tokens
            reset = f"{max(0.0, RATE_LIMIT_WINDOW - (now - self._window_start)):.3f}s"
        return {
            "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, RATE_LIMIT_REQUESTS - requests)),
            "x-ratelimit-limit-tokens": str(RATE_LIMIT_TOKENS),
            "x-ratelimit-remaining-tokens": str(max(0, RATE_LIMIT_TOKENS - used_tokens)),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-reset-tokens": reset,
            "x-request-id": _new_id("req_"),
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sim: UpstreamSimulator

    def server_bind(self) -> None:  # without HTTPServer's reverse-DNS lookup, which can stall for seconds
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients resetting connections is normal
            log.exception("upstream simulator: error while handling a request from %s", client_address)


_ROUTES = {
    ("POST", "/v1/chat/completions"): "_chat",
    ("POST", "/v1/embeddings"): "_embeddings",
    ("POST", "/v1/responses"): "_responses",
    ("GET", "/v1/models"): "_models",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "upstream-sim/1.0", ""
    timeout = 30  # idle keep-alive connections give up after this
    disable_nagle_algorithm = True  # else headers + body as two writes stall ~40 ms on delayed ACKs
    server: _Server
    sim: UpstreamSimulator

    def setup(self) -> None:
        super().setup()
        self.sim = self.server.sim
        self.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_GET

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        try:
            raw = self._read_body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): "[REDACTED]" if k.lower() in _SECRET_HEADERS else v for k, v in self.headers.items()}
            self.sim._record(LoggedRequest(self.command, path, body, headers))
            scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise _ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            route = _ROUTES.get((self.command, path))
            if route is None:
                raise _ApiError(404, f"Invalid URL ({self.command} {path})")
            if raw is None:
                raise _context_exceeded("messages")
            if self.command == "POST" and not isinstance(body, dict):
                raise _ApiError(400, "We could not parse the JSON body of your request. The OpenAI API expects a "
                                "JSON payload.")
            getattr(self, route)(body)
        except _ApiError as err:
            self._send_json(err.status, err.body, extra=err.headers)
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except _Sent:
            pass
        except OSError:  # the client went away (timeouts, cancelled streams)
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body, or None (after discarding it) when it exceeds max_request_bytes."""
        remaining = int(self.headers.get("Content-Length") or 0)
        if remaining <= self.sim.max_request_bytes:
            return self.rfile.read(remaining)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        return None

    # -- writing -----------------------------------------------------------------------------

    def _send_headers(self, status: int, headers: dict[str, str], tokens: int) -> None:
        self.send_response(status)
        for name, value in {**self.sim._rate_limit_headers(tokens), **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status: int, payload: Any, tokens: int = 0, extra: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})}
        self._send_headers(status, headers, tokens)
        self.wfile.write(data)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream(self, events: list[tuple[str | None, Any]], model: str, tokens: int, ttft_index: int = 0) -> None:
        """Send SSE events with chunked encoding; latency applies from event ``ttft_index`` on."""
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                   "Transfer-Encoding": "chunked"}
        self._send_headers(200, headers, tokens)
        cut = len(events) // 2 if model == "error-midstream" else None
        for i, (event, data) in enumerate(events):
            if i == cut:
                raise _Drop  # no terminating chunk: the client sees an incomplete body
            if i >= ttft_index:
                latency = self.sim.latency
                self.sim._sleep(latency.first_chunk if i == ttft_index else latency.per_chunk)
            self._write_chunk(_sse(event, data))
        self._write_chunk(b"")

    # -- endpoints ---------------------------------------------------------------------------

    def _preflight(self, body: dict, prompt: str, param: str) -> tuple[str, bool]:
        """Validate, apply the model-named failures; returns (model, stream)."""
        model, stream = body.get("model"), bool(body.get("stream"))
        if not isinstance(model, str) or not model:
            raise _ApiError(400, "You must provide a model parameter.", param="model")
        if len(prompt) > MAX_CONTEXT_CHARS:
            raise _context_exceeded(param)
        if model == "error-500":
            raise _server_error()
        if model == "error-429":
            raise _rate_limited()
        if model == "error-400" or model.startswith("bad-"):
            msg = f"The model `{model}` does not exist or you do not have access to it."
            raise _ApiError(400, msg, code="model_not_found", param="model")
        if model == "error-disconnect":
            raise _Drop
        if model == "error-timeout":
            self.sim._wait(self.sim.timeout_sleep)
        if model == "error-malformed":
            garbage = '{"id": "chatcmpl-broken", "choices": [ this is not json'
            if stream:
                self._stream([(None, garbage)], model, 0)
            else:
                self._send_json(200, garbage.encode())
            raise _Sent
        failure = self.sim._random_failure()
        if failure:
            raise failure
        return model, stream

    def _non_stream_delay(self, completion_tokens: int) -> None:
        latency = self.sim.latency
        self.sim._sleep(latency.non_stream_base + latency.non_stream_per_token * completion_tokens)

    def _models(self, _body: Any) -> None:
        data = [{"id": name, "object": "model", "created": 1700000000, "owned_by": "system"} for name in MODELS]
        self._send_json(200, {"object": "list", "data": data})

    def _chat_choice(self, body: dict, prompt: str, index: int) -> tuple[dict, list[dict], str, int]:
        """(message, stream deltas, finish_reason, visible completion tokens) for one choice."""
        last = _text_of(body["messages"][-1])
        tools = body.get("tools") or []
        if tools and "weather" in last.lower():
            name = (tools[0].get("function") or {}).get("name", "get_weather")
            place = re.search(r"\bin ([A-Z][\w-]*(?: [A-Z][\w-]*)*)", last)
            args = json.dumps({"location": place.group(1) if place else "San Francisco"})
            call = {"id": _new_id("call_"), "type": "function", "function": {"name": name, "arguments": args}}
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            head = {**call, "index": 0, "function": {"name": name, "arguments": ""}}
            deltas = [{"role": "assistant", "content": None, "tool_calls": [head]}]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]}
                       for i in range(0, len(args), 8)]
            return message, deltas, "tool_calls", _tokens(f"{name} {args}")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words, finish = _generate(prompt, index, limit)
        message = {"role": "assistant", "content": " ".join(words), "refusal": None, "annotations": []}
        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]
        return message, deltas, finish, len(words)

    def _chat(self, body: dict) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "[] is too short - 'messages'", param="messages")
        prompt = _text_of(messages)
        model, stream = self._preflight(body, prompt, "messages")
        choices = [self._chat_choice(body, prompt, i) for i in range(max(1, int(body.get("n") or 1)))]
        counts = self.sim._usage(model, prompt, sum(c[3] for c in choices))
        usage = {
            "prompt_tokens": counts.prompt, "completion_tokens": counts.completion,
            "total_tokens": counts.prompt + counts.completion,
            "prompt_tokens_details": {"cached_tokens": counts.cached, "cache_write_tokens": counts.cache_write,
                                      "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": counts.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        base = {"id": _new_id("chatcmpl-"), "created": int(time.time()), "model": _response_model(model),
                "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default"}
        if not stream:
            self._non_stream_delay(counts.completion)
            self._send_json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": i, "message": c[0], "logprobs": None, "finish_reason": c[2]} for i, c in enumerate(choices)
            ]}, tokens=usage["total_tokens"])
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk = {**base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}

        def event(index: int, delta: dict, finish: str | None = None) -> tuple[None, dict]:
            return None, {**chunk, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                "finish_reason": finish}]}

        events = [event(i, delta) for step in itertools.zip_longest(*(c[1] for c in choices))
                  for i, delta in enumerate(step) if delta is not None]
        events += [event(i, {}, c[2]) for i, c in enumerate(choices)]
        if include_usage:
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        self._stream(events, model, usage["total_tokens"])

    def _embeddings(self, body: dict) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise _ApiError(400, "'input' is a required property", param="input")
        texts = [text if isinstance(text, str) else json.dumps(text) for text in inputs]
        model, _ = self._preflight(body, " ".join(texts), "input")
        dims, as_base64 = int(body.get("dimensions") or 8), body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i, "embedding": _embedding(text, dims, as_base64)}
                for i, text in enumerate(texts)]
        tokens = sum(_tokens(text) for text in texts)
        self.sim._sleep(self.sim.latency.non_stream_base)
        self._send_json(200, {"object": "list", "data": data, "model": _response_model(model),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, tokens=tokens)

    def _responses(self, body: dict) -> None:
        if body.get("input") is None:
            raise _ApiError(400, "Missing required parameter: 'input'.", param="input")
        prompt = _text_of([body.get("instructions"), body["input"]])
        model, stream = self._preflight(body, prompt, "input")
        words, finish = _generate(prompt, 0, body.get("max_output_tokens"))
        text, done = " ".join(words), finish == "stop"
        counts = self.sim._usage(model, prompt, len(words))
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message = {"id": _new_id("msg_"), "type": "message", "role": "assistant",
                   "status": "completed" if done else "incomplete", "content": [part]}
        now = time.time()
        response = {
            "id": _new_id("resp_"), "object": "response", "created_at": now, "completed_at": now,
            "status": "completed" if done else "incomplete", "model": _response_model(model), "output": [message],
            "error": None, "incomplete_details": None if done else {"reason": "max_output_tokens"},
            "instructions": body.get("instructions"), "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "max_output_tokens": body.get("max_output_tokens"),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "user": None,
            "usage": {"input_tokens": counts.prompt, "output_tokens": counts.completion,
                      "total_tokens": counts.prompt + counts.completion,
                      "input_tokens_details": {"cached_tokens": counts.cached,
                                               "cache_write_tokens": counts.cache_write},
                      "output_tokens_details": {"reasoning_tokens": counts.reasoning}},
        }
        total = response["usage"]["total_tokens"]
        if not stream:
            self._non_stream_delay(counts.completion)
            self._send_json(200, response, tokens=total)
            return
        pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None,
                   "completed_at": None}
        where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
        events = [
            ("response.created", {"response": pending}),
            ("response.in_progress", {"response": pending}),
            ("response.output_item.added", {"output_index": 0,
                                            "item": {**message, "status": "in_progress", "content": []}}),
            ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
            *(("response.output_text.delta", {**where, "delta": word if i == 0 else " " + word, "logprobs": []})
              for i, word in enumerate(words)),
            ("response.output_text.done", {**where, "text": text, "logprobs": []}),
            ("response.content_part.done", {**where, "part": part}),
            ("response.output_item.done", {"output_index": 0, "item": message}),
            ("response.completed" if done else "response.incomplete", {"response": response}),
        ]
        events = [(name, {"type": name, "sequence_number": i, **data}) for i, (name, data) in enumerate(events)]
        self._stream(events, model, total, ttft_index=4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the OpenAI-compatible upstream simulator in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--realistic", action="store_true", help="add realistic latency (TTFT, per-chunk delays)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests failing with 500/429")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout-sleep", type=float, default=5.0, help="how long model error-timeout stalls")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    latency = LatencyProfile.realistic() if args.realistic else LatencyProfile()
    sim = UpstreamSimulator(args.host, args.port, latency=latency, error_rate=args.error_rate, seed=args.seed,
                            timeout_sleep=args.timeout_sleep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with sim:
        print(f"upstream simulator listening on {sim.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
