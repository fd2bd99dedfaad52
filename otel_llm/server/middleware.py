"""``LLMServerMiddleware``: pure ASGI; reads copies of what passes and never changes it.

For a recognised route the app gets the very ``receive`` messages the server sent and the client
gets the very ``send`` messages the app sent, in the same order, each handed on before we look at
it. The request body is read as the app reads it (a bounded copy); the response is read as it is
sent: JSON at its end, SSE event by event. Other paths, websockets and lifespan go straight to the
app.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ..pricing import PriceTable
from ..recorder import report_internal_error
from ._parse import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    BodyCopy,
    Decompressor,
    ResponseFields,
    SSEReader,
    read_json_response,
    read_request,
)
from ._routes import DEFAULT_PREFIXES, Route, route_table
from .recorder import CANCELLED, COMPLETED, FAILED, ServerRecorder, ServerRequest

_perf_counter = time.perf_counter
_READ_BEFORE_SENDING = 256 << 10  # bytes of a last body message read before it is sent (HTTP span mode)
# (scope, span) of the request an outer LLMServerMiddleware is recording. An inner one passes the same
# scope through (the app wrapped by hand and also by the instrumentor: recorded once); a request to
# another app served in-process (a gateway calling its upstream over an ASGI transport) is its own,
# under a span of its own, not the outer request's.
_recording: ContextVar[tuple[Any, Any] | None] = ContextVar("otel_llm_server_recording", default=None)


class LLMServerMiddleware:
    """Server-side GenAI telemetry for an ASGI app that serves an OpenAI- or Anthropic-compatible API.

    ``app = LLMServerMiddleware(app)``; in FastAPI/Starlette ``app.add_middleware(LLMServerMiddleware)``
    or :func:`otel_llm.server.instrument_app`. ``prefixes``: where the API lives (default ``/v1``;
    e.g. ``("/openai/v1",)`` behind a router). ``provider``: the ``gen_ai.provider.name`` of every
    route (default ``openai`` for the OpenAI routes, ``anthropic`` for ``/messages``).
    ``max_request_bytes`` / ``max_response_bytes``: bodies up to these are parsed whole; larger ones
    only by their first and last 64 KiB. ``recorder``: a :class:`ServerRecorder` to share.
    """

    def __init__(
        self,
        app: Any,
        *,
        prefixes: Iterable[str] = DEFAULT_PREFIXES,
        provider: str | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        prices: PriceTable | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        recorder: ServerRecorder | None = None,
    ) -> None:
        self.app = app
        if isinstance(prefixes, str):
            prefixes = (prefixes,)
        self.routes: dict[str, Route] = route_table(prefixes, provider)
        self.recorder = recorder or ServerRecorder(
            tracer_provider=tracer_provider, meter_provider=meter_provider, prices=prices
        )
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        outer = _recording.get()
        if (scope["type"] != "http" or (route := self.routes.get(scope.get("path"))) is None
                or (outer is not None and outer[0] is scope)):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange.open(self, route, scope, None if outer is None else outer[1])
        if exchange is None:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(exchange.request.context) if exchange.request.own_span else None
        recording = _recording.set((scope, exchange.request.span))
        try:
            await self.app(scope, exchange.receive(receive), exchange.send(send))
        except BaseException as exc:
            exchange.close(exc)
            raise
        else:
            exchange.close(None)
        finally:
            _recording.reset(recording)
            if token is not None:
                try:
                    otel_context.detach(token)
                except Exception:
                    report_internal_error("LLMServerMiddleware detach")


def _is_small_last_body(message: Any) -> bool:
    try:
        return (message["type"] == "http.response.body" and not message.get("more_body", False)
                and len(message.get("body", b"")) <= _READ_BEFORE_SENDING)
    except Exception:  # not an ASGI message: the server will say so, not us
        return False


class _Exchange:
    """One request and its response as they pass: the parsing state; the telemetry goes to the
    :class:`ServerRequest` (the single writer)."""

    __slots__ = (
        "request", "_route", "_request_copy", "_request_done", "_max_response", "_response", "_json_copy",
        "_sse", "_inflate", "_started", "_complete", "_disconnected", "_broken",
    )

    def __init__(self, middleware: LLMServerMiddleware, route: Route, request: ServerRequest) -> None:
        self.request = request
        self._route = route
        self._request_copy: BodyCopy | None = BodyCopy(middleware.max_request_bytes)
        self._request_done = False
        self._max_response = middleware.max_response_bytes
        self._response = ResponseFields()
        self._json_copy: BodyCopy | None = None
        self._sse: SSEReader | None = None
        self._inflate: Decompressor | None = None
        self._started = False
        self._complete = False
        self._disconnected = False
        self._broken = False  # our reading failed once: stop reading, keep timing

    @classmethod
    def open(cls, middleware: LLMServerMiddleware, route: Route, scope: Any, outer_span: Any) -> _Exchange | None:
        try:
            request = middleware.recorder.start(route, scope.get("method", "POST"), scope.get("headers"),
                                                scope.get("server"), outer_span)
            return None if request is None else cls(middleware, route, request)
        except Exception:
            report_internal_error("LLMServerMiddleware open")
            return None

    # --- the request ---------------------------------------------------------------------------

    def receive(self, receive: Any) -> Any:
        async def observed_receive() -> Any:
            message = await receive()
            try:
                kind = message.get("type")
                if kind == "http.request":
                    if not self._request_done:
                        copy = self._request_copy
                        if copy is not None:
                            copy.feed(message.get("body", b""))
                        if not message.get("more_body", False):
                            self._request_read()
                elif kind == "http.disconnect":
                    self._disconnected = True
            except Exception:
                report_internal_error("LLMServerMiddleware receive")
            return message

        return observed_receive

    def _request_read(self) -> None:
        self._request_done = True
        copy, self._request_copy = self._request_copy, None
        if copy is not None:
            fields = read_request(copy)
            self.request.set_request(fields.model, fields.stream, fields.attributes)

    # --- the response --------------------------------------------------------------------------

    def send(self, send: Any) -> Any:
        annotate_first = not self.request.own_span

        async def observed_send(message: Any) -> None:
            at = _perf_counter()
            if annotate_first and _is_small_last_body(message):
                # opentelemetry-instrumentation-asgi ends its span right after the last body message:
                # this one is read (and the span annotated) before it goes, the only one that waits.
                # (A larger last piece goes first: its answer's fields then reach the metrics only.)
                self._observe(message, at)
                self.request.annotate(self._response)
                try:
                    await send(message)
                except BaseException:
                    self._disconnected = True
                    raise
                return
            try:
                await send(message)
            except BaseException:
                self._disconnected = True  # the server could not deliver it: the client is gone
                raise
            sse = self._sse
            if sse is not None and not self._broken:  # the per-chunk path, inline
                try:
                    if (message["type"] == "http.response.body" and message.get("more_body", False)
                            and self._inflate is None):
                        body = message.get("body", b"")
                        if type(body) is bytes:
                            if sse.feed(body):
                                self.request.first_token(at)
                            return
                except Exception:
                    self._broken = True
                    report_internal_error("LLMServerMiddleware send")
                    return
            self._observe(message, at)

        return observed_send

    def _observe(self, message: Any, at: float) -> None:
        if self._broken:
            return
        try:
            kind = message["type"]
            if kind == "http.response.body":
                self._body(message, at)
            elif kind == "http.response.start":
                self._start(message)
            elif kind in ("http.response.pathsend", "http.response.zerocopysend"):
                self._complete = True
        except Exception:
            self._broken = True
            report_internal_error("LLMServerMiddleware send")

    def _start(self, message: Any) -> None:
        self._started = True
        if not self._request_done:  # the app answered without reading the whole body
            self._request_read()
        status = int(message.get("status", 200))
        content_type = b""
        encoding = b""
        for name, value in message.get("headers") or ():
            lowered = name.lower()
            if lowered == b"content-type":
                content_type = value.lower()
            elif lowered == b"content-encoding":
                encoding = value.lower().strip()
        is_stream = content_type.startswith(b"text/event-stream")
        if encoding in (b"gzip", b"deflate", b"x-gzip"):
            self._inflate = Decompressor(self._max_response)
        elif encoding not in (b"", b"identity"):
            self._broken = True  # br, zstd, ...: not read; status and timing still recorded
        if is_stream:
            self._sse = SSEReader(self._route.api, self._response)
        elif content_type.startswith(b"application/json") or b"json" in content_type or not content_type:
            self._json_copy = BodyCopy(self._max_response)
        self.request.response_started(status, is_stream)

    def _body(self, message: Any, at: float) -> None:
        body = message.get("body", b"")
        if not message.get("more_body", False):
            self._complete = True
        if type(body) is not bytes:
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:  # not an ASGI body: the server will refuse it; we read nothing more
                self._broken = True
                return
        if body and not self._broken:
            if self._inflate is not None:
                body = self._inflate(body)
            sse = self._sse
            if sse is not None:
                if sse.feed(body):
                    self.request.first_token(at)
            elif self._json_copy is not None:
                self._json_copy.feed(body)
        if self._complete and self._json_copy is not None and not self._broken:
            read_json_response(self._route.api, self._json_copy, self._response, self.request.status or 200)
            self._json_copy = None

    # --- the end -------------------------------------------------------------------------------

    def close(self, exc: BaseException | None) -> None:
        try:
            if self._sse is not None and not self._broken:
                self._sse.feed(b"\n\n")  # an unterminated last event
            error = None
            if exc is not None:
                if self._disconnected or not isinstance(exc, Exception):
                    outcome, exc = CANCELLED, None  # the client went away or the task was cancelled
                else:
                    outcome = FAILED
            elif self._complete:
                outcome = COMPLETED
            elif self._disconnected:
                outcome = CANCELLED
            else:  # returned mid-response (the client gets a cut body) or with no response (a 500)
                outcome, error = FAILED, ("incomplete_response" if self._started else None)
            self.request.finish(outcome, self._response, exc, error)
        except Exception:
            report_internal_error("LLMServerMiddleware close")
