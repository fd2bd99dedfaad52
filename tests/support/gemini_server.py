"""A loopback HTTP server speaking the Gemini REST API, for driving the real ``google-genai`` SDK.

``POST .../models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``, ``:embedContent``,
``:batchEmbedContents`` and Vertex AI's ``:predict``, for the Gemini API (``/v1beta/models/...``) and Vertex AI
(``.../publishers/google/models/...``) paths alike. The model name picks the behaviour:

- any name not below: a fixed answer (``TEXT``, usage ``USAGE``), streamed as ``STREAM_PIECES``;
- ``error-{400,403,404,429,500,503}``: Google's error body ``{"error": {"code", "message", "status"}}``;
- ``malformed-json``: 200 with a body that is not JSON;
- ``truncated-sse``: two events, then the body ends inside the third;
- ``short-body``: a ``Content-Length`` the server never fulfils (the connection drops mid-body);
- ``error-midstream``: one event, then an error event;
- ``disconnect``: the connection closes before any response;
- ``slow-stream``: ``SLOW_CHUNKS`` events, ``SLOW_CHUNK_DELAY`` seconds apart;
- ``call-a-tool``: a ``functionCall`` for ``get_weather`` unless the last turn is its response.

Every request is logged (path, headers, JSON body) in ``requests``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = "Hello from Gemini"
STREAM_PIECES = ("Hello", " from", " Gemini")
RESPONSE_ID = "resp-gemini-0001"
# Counts chosen so every sum is distinct: input 12 (4 cached), output 5 + thoughts 7.
USAGE = {
    "promptTokenCount": 12,
    "cachedContentTokenCount": 4,
    "candidatesTokenCount": 5,
    "thoughtsTokenCount": 7,
    "totalTokenCount": 24,
}
EMBEDDING_TOKENS_PER_TEXT = 3
SLOW_CHUNKS = 50
SLOW_CHUNK_DELAY = 0.05
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}
_ROUTE = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>\w+)$")


@dataclass
class LoggedRequest:
    path: str
    headers: dict[str, str]
    body: Any


def model_version(model: str) -> str:
    """What the server says answered: the requested model (as the Gemini API does for stable names)."""
    return model


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection; a streamed body ends when it closes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        path, _, _query = self.path.partition("?")
        self.server.owner.requests.append(LoggedRequest(self.path, dict(self.headers.items()), body))
        match = _ROUTE.search(path)
        if match is None:
            return self._error(404, f"no route {path}")
        model, method = match["model"], match["method"]
        if model == "disconnect":
            self.close_connection = True
            self.connection.close()
            return
        if model.startswith("error-") and model[6:].isdigit():
            return self._error(int(model[6:]), f"simulated {model}")
        if method == "generateContent":
            if model == "malformed-json":
                return self._send(200, b'{"candidates": [{"content": ')
            if model == "short-body":
                return self._send(200, json.dumps(answer(model, body)).encode(), declared=10_000)
            return self._json(answer(model, body))
        if method == "streamGenerateContent":
            return self._stream(model)
        if method in ("embedContent", "batchEmbedContents"):
            return self._json(embeddings(method, body))
        if method == "predict":
            return self._json(predictions(body))
        return self._error(404, f"no method {method}")

    def _stream(self, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if model == "truncated-sse":
            events = stream_events(model)[:2]
            self._events(events)
            self.wfile.write(b'data: {"candidates": [{"content": {"parts": [{"te')
            return
        if model == "error-midstream":
            self._events(stream_events(model)[:1])
            self._events([{"error": {"code": 500, "message": "simulated midstream failure", "status": "INTERNAL"}}])
            return
        if model == "slow-stream":
            for index in range(SLOW_CHUNKS):
                self._events([chunk(model, f"piece {index} ")])
                time.sleep(SLOW_CHUNK_DELAY)
            return
        self._events(stream_events(model))

    def _events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
            self.wfile.flush()

    def _json(self, payload: dict[str, Any]) -> None:
        self._send(200, json.dumps(payload).encode())

    def _error(self, code: int, message: str) -> None:
        payload = {"error": {"code": code, "message": message, "status": STATUS_NAMES.get(code, "UNKNOWN")}}
        self._send(code, json.dumps(payload).encode())

    def _send(self, code: int, body: bytes, declared: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)


def answer(model: str, request: Any) -> dict[str, Any]:
    if model == "call-a-tool" and not _answers_a_tool(request):
        parts: list[dict[str, Any]] = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    else:
        parts = [{"text": TEXT}]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": USAGE,
        "modelVersion": model_version(model),
        "responseId": RESPONSE_ID,
    }


def _answers_a_tool(request: Any) -> bool:
    contents = request.get("contents") if isinstance(request, dict) else None
    if not contents:
        return False
    return any("functionResponse" in part for part in contents[-1].get("parts", ()))


def chunk(model: str, text: str, *, last: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if last:
        candidate["finishReason"] = "STOP"
    # Early events carry the prompt count only (as the Gemini API's do); the last one the totals.
    usage = USAGE if last else {"promptTokenCount": USAGE["promptTokenCount"],
                                "totalTokenCount": USAGE["promptTokenCount"]}
    return {"candidates": [candidate], "usageMetadata": usage,
            "modelVersion": model_version(model), "responseId": RESPONSE_ID}


def stream_events(model: str) -> list[dict[str, Any]]:
    *first, last = STREAM_PIECES
    return [chunk(model, piece) for piece in first] + [chunk(model, last, last=True)]


def embeddings(method: str, request: Any) -> dict[str, Any]:
    if method == "batchEmbedContents":
        count = len(request.get("requests", ())) if isinstance(request, dict) else 0
    else:
        count = 1
    return {
        "embeddings": [{"values": [0.1 * (i + 1), 0.2, 0.3]} for i in range(count)],
        "usageMetadata": {"promptTokenCount": EMBEDDING_TOKENS_PER_TEXT * count},
    }


def predictions(request: Any) -> dict[str, Any]:
    """Vertex AI's ``:predict`` embeddings (``gemini-embedding-001``): token counts per instance."""
    instances = request.get("instances", ()) if isinstance(request, dict) else ()
    return {
        "predictions": [
            {"embeddings": {"values": [0.1, 0.2, 0.3],
                            "statistics": {"token_count": EMBEDDING_TOKENS_PER_TEXT, "truncated": False}}}
            for _ in instances
        ],
        "metadata": {"billableCharacterCount": sum(len(str(i.get("content", ""))) for i in instances)},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GeminiServer


class GeminiServer:
    """Start/stop, or use as a context manager; clients take ``base_url``."""

    def __init__(self) -> None:
        self.requests: list[LoggedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GeminiServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="gemini-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GeminiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
