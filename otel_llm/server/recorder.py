"""The single writer of server-side LLM telemetry: one served request = one span's GenAI attributes
+ the conventions' ``gen_ai.server.*`` metrics + ours (tokens, in flight, streams, cost).

The middleware translates ASGI messages into calls on :class:`ServerRequest`; nothing here knows
ASGI. Every public method swallows its own errors (logged once per place), so telemetry can never
break a request. Per streamed chunk nothing here runs: time to first token is noted by the caller
and every metric is recorded once, when the request ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider, Observation, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from .. import semconv as sc
from ..pricing import PriceTable
from ..recorder import (
    OTHER_VALUE, CostTotals, ValueLimit, _max_metric_values_from_env, report_internal_error, shared_tally,
)
from ..version import __version__

# Outcomes of a served request.
COMPLETED = "completed"
CANCELLED = "cancelled"  # the client went away (disconnect) or the task was cancelled first
FAILED = "failed"


class _Counts:
    """Numbers per attribute set, read by an observable instrument (in flight, finished streams).
    A dict update per change instead of a synchronous record."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[Any, ...], list[Any]] = {}
        self._lock = threading.Lock()

    def add(self, attributes: Mapping[str, Any], n: int) -> None:
        key = tuple(attributes.items())
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                if len(self._counts) >= 2000:  # bounded like the SDK's cardinality limit
                    return
                entry = self._counts[key] = [dict(attributes), 0]
            entry[1] += n

    def observe(self, options: Any = None) -> list[Observation]:
        with self._lock:
            return [Observation(n, attributes) for attributes, n in self._counts.values()]

    def total(self, **match: Any) -> int:
        """Sum over the attribute sets that match (tests, summaries); keys use ``_`` for ``.``."""
        wanted = {key.replace("_", "."): value for key, value in match.items()}
        with self._lock:
            return sum(n for attributes, n in self._counts.values()
                       if all(attributes.get(k) == v for k, v in wanted.items()))


class ServerRecorder:
    """Holds the tracer, the instruments, the price table and the value limits of the server side."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        prices: PriceTable | None = None,
        max_metric_values: int | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(sc.INSTRUMENTATION_SCOPE, __version__, tracer_provider,
                                       schema_url=sc.SCHEMA_URL)
        meter = get_meter(sc.INSTRUMENTATION_SCOPE, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        self.duration = _histogram(meter, sc.METRIC_SERVER_REQUEST_DURATION, sc.SERVER_DURATION_BUCKETS)
        self.time_to_first_token = _histogram(meter, sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN, sc.SERVER_TTFT_BUCKETS)
        self.time_per_output_token = _histogram(meter, sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN,
                                                sc.SERVER_TPOT_BUCKETS)
        self.token_usage = _histogram(meter, sc.METRIC_SERVER_TOKEN_USAGE, sc.TOKEN_BUCKETS)
        # shared by every ServerRecorder on this meter (two apps in one process): see shared_tally
        self.active_requests = shared_tally(meter, sc.METRIC_SERVER_ACTIVE_REQUESTS, _Counts, "up_down")
        self.active_streams = shared_tally(meter, sc.METRIC_SERVER_ACTIVE_STREAMS, _Counts, "up_down")
        self.streams = shared_tally(meter, sc.METRIC_SERVER_STREAMS, _Counts, "counter")
        self.cost = shared_tally(meter, sc.METRIC_SERVER_COST, CostTotals, "counter")
        self.prices = prices if prices is not None else PriceTable.from_env()
        limit = max_metric_values if max_metric_values is not None else _max_metric_values_from_env()
        self.request_models = ValueLimit(sc.REQUEST_MODEL, limit)
        self.response_models = ValueLimit(sc.RESPONSE_MODEL, limit)
        self.error_types = ValueLimit(sc.ERROR_TYPE, limit)
        self.servers = ValueLimit(sc.SERVER_ADDRESS, limit)  # (address, port) pairs
        self.cache_creation_attribute = sc.attribute_names(sc.latest_opted_in())[sc.USAGE_CACHE_CREATION_INPUT_TOKENS]
        self._listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        """Call ``listener(request)`` with every :class:`ServerRequest` once it has ended (summaries);
        a listener's errors are contained."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start(self, route: Any, method: str, headers: Sequence[tuple[bytes, bytes]] | None,
              server: Any = None, outer_span: Any = None) -> ServerRequest | None:
        """A request to ``route`` arrived (``server``: the ASGI scope's (host, port) of the socket;
        ``outer_span``: the span of a request being served around this one in-process, never ours
        to annotate). None only if our own code failed (the request goes on)."""
        try:
            return ServerRequest(self, route, method, headers, server, outer_span)
        except Exception:
            report_internal_error("ServerRecorder.start")
            return None


def _histogram(meter: Any, spec: tuple[str, str, str], buckets: Sequence[float]) -> Any:
    name, unit, description = spec
    return meter.create_histogram(name, unit=unit, description=description,
                                  explicit_bucket_boundaries_advisory=buckets)


class _HeaderGetter:
    """Reads W3C trace context from ASGI headers (a list of (bytes, bytes))."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name.lower() == wanted]
        return values or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_GETTER = _HeaderGetter()


def _server_of(headers: Sequence[tuple[bytes, bytes]] | None, server: Any) -> tuple[str, int | None] | None:
    """(server.address, server.port) as the client addressed it: the Host header, as the HTTP server
    conventions take it (so it matches the client side's server.address); else the socket's."""
    for name, value in headers or ():
        if name.lower() == b"host":
            host = value.decode("latin-1").strip()
            if host.startswith("["):  # [::1]:8000
                address, _, rest = host[1:].partition("]")
                port = rest[1:] if rest.startswith(":") else ""
            else:
                address, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
            if address:
                return address.lower(), int(port) if port.isdigit() else None
            break
    if isinstance(server, (tuple, list)) and len(server) == 2 and server[0]:
        return str(server[0]), server[1] if isinstance(server[1], int) else None
    return None


def _is_http_server_span(span: Any) -> bool:
    return span.is_recording() and getattr(span, "kind", None) is SpanKind.SERVER


class ServerRequest:
    """One served LLM API request, from its arrival to the end of its response; ends exactly once."""

    __slots__ = (
        "_recorder", "route", "span", "own_span", "context", "_start", "_open", "model", "stream",
        "_request_attributes", "status", "is_stream", "_stream_attributes", "time_to_first_token",
        "duration", "outcome", "error_type", "cost", "base_attributes",
    )

    def __init__(self, recorder: ServerRecorder, route: Any, method: str,
                 headers: Sequence[tuple[bytes, bytes]] | None, server: Any = None, outer_span: Any = None) -> None:
        self._recorder = recorder
        self.route = route
        # the route's attributes and the server's, on every metric of this request
        self.base_attributes = base = dict(route.base_attributes)
        found = _server_of(headers, server)
        if found is not None:
            if recorder.servers.admits(found):
                base[sc.SERVER_ADDRESS] = found[0]
                if found[1] is not None:
                    base[sc.SERVER_PORT] = found[1]
            else:
                base[sc.SERVER_ADDRESS] = OTHER_VALUE
        self._start = time.perf_counter()
        self._open = [True]  # list.pop() is atomic: ends the request exactly once
        self.model: str | None = None
        self.stream: bool | None = None
        self._request_attributes: dict[str, Any] = {}
        self.status: int | None = None
        self.is_stream = False
        self._stream_attributes: dict[str, Any] | None = None
        self.time_to_first_token: float | None = None
        self.duration: float | None = None
        self.outcome: str | None = None
        self.error_type: str | None = None
        self.cost: float | None = None
        current = trace.get_current_span()
        if current is not outer_span and _is_http_server_span(current):
            # opentelemetry-instrumentation-asgi/fastapi made it for this request: ours goes on it
            self.span = current
            self.own_span = False
            self.context = otel_context.get_current()
        else:
            # the caller's trace context from the headers; without one, whatever is current (an in-process caller)
            parent = propagate.extract(headers or [], otel_context.get_current(), getter=_GETTER)
            self.span = recorder.tracer.start_span(
                route.operation, context=parent, kind=SpanKind.SERVER,
                attributes={**base, sc.HTTP_REQUEST_METHOD: method},
            )
            self.own_span = True
            self.context = trace.set_span_in_context(self.span, parent)
        recorder.active_requests.add(base, 1)

    def set_request(self, model: str | None, stream: bool | None, attributes: Mapping[str, Any]) -> None:
        """What the request body said (the model, stream, parameters)."""
        try:
            self.model = model
            self.stream = stream
            self._request_attributes = dict(attributes)
        except Exception:
            report_internal_error("ServerRequest.set_request")

    def response_started(self, status: int, is_stream: bool) -> None:
        try:
            self.status = status
            if is_stream and self._open:
                self.is_stream = True
                attributes = dict(self.base_attributes)
                if self.model:
                    attributes[sc.REQUEST_MODEL] = self._recorder.request_models(self.model)
                self._stream_attributes = attributes
                self._recorder.active_streams.add(attributes, 1)
        except Exception:
            report_internal_error("ServerRequest.response_started")

    def first_token(self, at: float) -> None:
        """The first output token (chunk) was handed to the server at ``at`` (perf_counter)."""
        if self.time_to_first_token is None:
            self.time_to_first_token = at - self._start

    def finish(self, outcome: str, response: Any = None, exc: BaseException | None = None,
               error: str | None = None) -> None:
        """End the request: ``outcome`` is COMPLETED, CANCELLED or FAILED; ``response`` the
        ResponseFields read from the body; ``exc`` the application's exception, ``error`` an error
        type, if any (else it comes from the body or the status)."""
        try:
            self._finish(outcome, response, exc, error)
        except Exception:
            report_internal_error("ServerRequest.finish")

    def annotate(self, response: Any) -> None:
        """The last body message is about to go: put the attributes on the HTTP server span now, as
        opentelemetry-instrumentation-asgi ends it right after that message is sent."""
        try:
            if self._open and not self.own_span and self.span.is_recording():
                outcome, error = self._verdict(COMPLETED, response, None, None)
                self.span.set_attributes(self._span_attributes(outcome, error, response))
        except Exception:
            report_internal_error("ServerRequest.annotate")

    def _verdict(self, outcome: str, response: Any, exc: BaseException | None,
                 error: str | None) -> tuple[str, str | None]:
        status = self.status
        if error is None:
            if exc is not None and outcome == FAILED:
                error = type(exc).__qualname__
            elif outcome == FAILED or (status is not None and status >= 400) or (
                response is not None and response.error_type is not None
            ):
                error = (response.error_type if response is not None else None) or _status_class(status)
        if error is not None:
            return FAILED, self._recorder.error_types(error)
        return outcome, None

    def _cost(self, response: Any) -> float | None:
        if response is None or (response.input_tokens is None and response.output_tokens is None):
            return None
        prices, provider = self._recorder.prices, self.route.provider
        model = response.model or self.model
        found = prices.cost(provider, model, response.input_tokens, response.output_tokens,
                            response.cache_read_tokens, response.cache_creation_tokens)
        if found is None and self.model and model != self.model:
            found = prices.cost(provider, self.model, response.input_tokens, response.output_tokens,
                                response.cache_read_tokens, response.cache_creation_tokens)
        return found

    def _span_attributes(self, outcome: str, error: str | None, response: Any) -> dict[str, Any]:
        route = self.route
        attributes: dict[str, Any] = {sc.OPERATION_NAME: route.operation, sc.PROVIDER_NAME: route.provider}
        if self.model:
            attributes[sc.REQUEST_MODEL] = self.model
        if self.stream is not None:
            attributes[sc.REQUEST_STREAM] = self.stream
        attributes.update(self._request_attributes)
        if response is not None:
            for name, value in (
                (sc.RESPONSE_MODEL, response.model),
                (sc.RESPONSE_ID, response.response_id),
                (sc.RESPONSE_FINISH_REASONS, response.finish_reasons),
                (sc.USAGE_INPUT_TOKENS, response.input_tokens),
                (sc.USAGE_OUTPUT_TOKENS, response.output_tokens),
                (sc.USAGE_CACHE_READ_INPUT_TOKENS, response.cache_read_tokens),
                (self._recorder.cache_creation_attribute, response.cache_creation_tokens),
                (sc.USAGE_REASONING_OUTPUT_TOKENS, response.reasoning_tokens),
            ):
                if value is not None:
                    attributes[name] = value
        if self.cost is None:
            self.cost = self._cost(response)
        if self.cost is not None:
            attributes[sc.COST_USD] = self.cost
        if error is not None:
            attributes[sc.ERROR_TYPE] = error
        elif outcome == CANCELLED:
            attributes[sc.SERVER_REQUEST_CANCELLED] = True
        return attributes

    def _finish(self, outcome: str, response: Any, exc: BaseException | None, error: str | None) -> None:
        try:
            self._open.pop()
        except IndexError:
            return
        recorder = self._recorder
        route = self.route
        self.duration = duration = time.perf_counter() - self._start
        recorder.active_requests.add(self.base_attributes, -1)
        if self._stream_attributes is not None:
            recorder.active_streams.add(self._stream_attributes, -1)
        outcome, error = self._verdict(outcome, response, exc, error)
        self.outcome, self.error_type = outcome, error
        span_attributes = self._span_attributes(outcome, error, response)

        metric = dict(self.base_attributes)
        if self.model:
            metric[sc.REQUEST_MODEL] = recorder.request_models(self.model)
        if response is not None and response.model:
            metric[sc.RESPONSE_MODEL] = recorder.response_models(response.model)
        context = self.context
        if response is not None:
            if response.input_tokens is not None:
                recorder.token_usage.record(response.input_tokens, {**metric, sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT},
                                            context)
            if response.output_tokens is not None:
                recorder.token_usage.record(response.output_tokens,
                                            {**metric, sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}, context)
        if self.cost is not None:
            recorder.cost.add(self.cost, metric)
        ttft = self.time_to_first_token
        if self.is_stream:
            if error is None and ttft is not None:
                recorder.time_to_first_token.record(ttft, metric, context)
                output_tokens = response.output_tokens if response is not None else None
                if outcome == COMPLETED and output_tokens is not None and output_tokens > 1:
                    recorder.time_per_output_token.record(
                        max(duration - ttft, 0.0) / (output_tokens - 1), metric, context
                    )
            recorder.streams.add({**self.base_attributes, sc.STREAM_OUTCOME: outcome}, 1)
        if error is not None:
            metric[sc.ERROR_TYPE] = error
        recorder.duration.record(duration, metric, context)

        span = self.span
        if self.own_span:
            if self.status is not None:
                span_attributes[sc.HTTP_RESPONSE_STATUS_CODE] = self.status
            if self.model:
                span.update_name(f"{route.operation} {self.model}")
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.set_attributes(span_attributes)
            span.end()
        elif span.is_recording():  # the HTTP span is still open (no complete response went out)
            span.set_attributes(span_attributes)
        for listener in recorder._listeners:
            try:
                listener(self)
            except Exception:
                report_internal_error("ServerRecorder listener")


def _status_class(status: int | None) -> str:
    if status is None:
        return "5xx"  # the application answered nothing: the server sends a 500
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return OTHER_VALUE
