"""The HTTP side shared by both APIs: dispatch, auth, request log, writing JSON and SSE, failures by model."""

from __future__ import annotations

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from ._common import MAX_CONTEXT_CHARS, RATE_LIMIT_REQUESTS, Api, ApiError, Drop, LoggedRequest, Sent, new_id

if TYPE_CHECKING:
    from ._server import UpstreamSimulator, _Server

log = logging.getLogger("otel_llm.demo.upstream")

_SECRET_HEADERS = {"authorization", "api-key", "x-api-key"}  # redacted in the request log


def sse(event: str | None, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    """Endpoint mixins subclass this; the concrete handler lists the APIs it serves in ``apis``."""

    protocol_version = "HTTP/1.1"
    server_version, sys_version = "upstream-sim/1.0", ""
    timeout = 30  # idle keep-alive connections give up after this
    disable_nagle_algorithm = True  # else headers + body as two writes stall ~40 ms on delayed ACKs
    apis: ClassVar[tuple[Api, ...]]  # the first whose path_prefix matches serves a request
    server: _Server
    sim: UpstreamSimulator
    api: Api  # of the current request
    request_id: str

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
        self.api = next(api for api in self.apis if path.startswith(api.path_prefix))
        self.request_id = new_id("req_")
        try:
            raw = self._read_body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): "[REDACTED]" if k.lower() in _SECRET_HEADERS else v for k, v in self.headers.items()}
            self.sim._record(LoggedRequest(self.command, path, body, headers))
            if not self.api.authorized(self.headers):
                raise self.api.error("unauthorized")
            route = self.api.routes.get((self.command, path))
            if route is None:
                raise self.api.error("no_route", method=self.command, path=path)
            if raw is None:
                raise self.api.error("too_large")
            if self.command == "POST" and not isinstance(body, dict):
                raise self.api.error("bad_json")
            getattr(self, route)(body)
        except ApiError as err:
            self._send_json(err.status, self.api.error_body(err, self.request_id), extra=err.headers)
        except Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except Sent:
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

    def _send_headers(self, status: int, headers: dict[str, str], tokens: tuple[int, int]) -> None:
        """``tokens`` (input, output) count against the rate-limit window; a 429 reports it exhausted."""
        quota = self.sim._consume(*tokens)
        if status == 429:
            quota = quota._replace(requests=RATE_LIMIT_REQUESTS)
        self.send_response(status)
        for name, value in {**self.api.response_headers(quota, self.request_id), **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status: int, payload: Any, tokens: tuple[int, int] = (0, 0),
                   extra: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})}
        self._send_headers(status, headers, tokens)
        self.wfile.write(data)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream(self, events: list[tuple[str | None, Any]], model: str, tokens: tuple[int, int],
                ttft_index: int = 0) -> None:
        """Send SSE events with chunked encoding; latency applies from event ``ttft_index`` on."""
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                   "Transfer-Encoding": "chunked"}
        self._send_headers(200, headers, tokens)
        cut = len(events) // 2 if model == "error-midstream" else None
        for i, (event, data) in enumerate(events):
            if i == cut:
                raise Drop  # no terminating chunk: the client sees an incomplete body
            if i >= ttft_index:
                latency = self.sim.latency
                self.sim._sleep(latency.first_chunk if i == ttft_index else latency.per_chunk)
            self._write_chunk(sse(event, data))
        self._write_chunk(b"")

    # -- shared by the endpoints -------------------------------------------------------------

    def _preflight(self, body: dict, prompt: str, param: str) -> tuple[str, bool]:
        """Validate, apply the model-named failures; returns (model, stream)."""
        model, stream = body.get("model"), bool(body.get("stream"))
        if not isinstance(model, str) or not model:
            raise self.api.error("missing", param="model")
        if len(prompt) > MAX_CONTEXT_CHARS:
            raise self.api.error("context", param=param, chars=len(prompt))
        failure = self.api.model_failure(model)
        if failure:
            raise self.api.error(failure, model=model)
        if model == "error-disconnect":
            raise Drop
        if model == "error-timeout":
            self.sim._wait(self.sim.timeout_sleep)
        if model == "error-malformed":
            if stream:
                self._stream([self.api.malformed_event], model, (0, 0))
            else:
                self._send_json(200, self.api.malformed_body)
            raise Sent
        failure = self.sim._random_failure()
        if failure:
            raise self.api.error(failure)
        return model, stream

    def _non_stream_delay(self, output_tokens: int) -> None:
        latency = self.sim.latency
        self.sim._sleep(latency.non_stream_base + latency.non_stream_per_token * output_tokens)
