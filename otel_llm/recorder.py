"""The single writer of LLM telemetry: one LLM call = one CLIENT span + semconv metrics.

Instrumentors and manual users both go through :class:`Recorder` and
:class:`LLMCall`. Nothing here knows any SDK. Every public method swallows
its own errors (logged once per method), so telemetry can never break a call.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import get_logger
from opentelemetry.metrics import MeterProvider, Observation, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from . import semconv as sc
from .content import CaptureMode, ContentConfigError, ContentPolicy, capture_mode_from_env
from .pricing import PriceTable
from .redact import scrub_secrets
from .version import __version__

_log = logging.getLogger(__name__)
_reported: set[str] = set()

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]


def report_internal_error(where: str) -> None:
    """Log a bug of ours once per place; never raises. The traceback goes into the message as text:
    a record holding the live traceback would keep the caller's objects (a stream, its response)
    alive for as long as a log handler buffers it."""
    if where not in _reported:
        _reported.add(where)
        _log.warning("otel-llm internal error in %s; telemetry for this call may be incomplete\n%s",
                     where, traceback.format_exc().rstrip())


# (exception class, namer): how an SDK whose one exception class covers many errors names them
# (google-genai's APIError: its status, RESOURCE_EXHAUSTED, INVALID_ARGUMENT, ...). Set by instrumentors.
_error_namers: list[tuple[type, Callable[[BaseException], Any]]] = []


def register_error_type(cls: type, namer: Callable[[BaseException], Any]) -> None:
    """``error.type`` of an exception of ``cls`` is ``namer(exc)`` when that is a non-empty string."""
    if all(registered is not cls for registered, _ in _error_namers):
        _error_namers.append((cls, namer))


def error_type(exc: BaseException) -> str:
    for cls, namer in _error_namers:
        if isinstance(exc, cls):
            try:
                name = namer(exc)
            except Exception:
                name = None
            if isinstance(name, str) and name:
                return name
    return type(exc).__qualname__


class Recorder:
    """Holds the tracer, the instruments and the price table; starts calls."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: Any = None,
        prices: PriceTable | None = None,
        capture: CaptureMode | None = None,
        content_policy: ContentPolicy | None = None,
        max_metric_values: int | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(
            sc.INSTRUMENTATION_SCOPE, __version__, tracer_provider, schema_url=sc.SCHEMA_URL
        )
        meter = get_meter(sc.INSTRUMENTATION_SCOPE, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        self.duration = _histogram(meter, sc.METRIC_OPERATION_DURATION, sc.DURATION_BUCKETS)
        self.token_usage = _histogram(meter, sc.METRIC_TOKEN_USAGE, sc.TOKEN_BUCKETS)
        self.time_to_first_chunk = _histogram(meter, sc.METRIC_TIME_TO_FIRST_CHUNK, sc.DURATION_BUCKETS)
        self.time_per_output_chunk = _histogram(meter, sc.METRIC_TIME_PER_OUTPUT_CHUNK, sc.DURATION_BUCKETS)
        # Cost is summed here and reported by an observable counter: a dict update per call instead
        # of a synchronous record (the SDK's per-record cost is most of the instrumentation's).
        self.cost = shared_tally(meter, sc.METRIC_COST, CostTotals, "counter")
        self.prices = prices if prices is not None else PriceTable.from_env()
        self.cache_creation_attribute = sc.attribute_names(sc.latest_opted_in())[sc.USAGE_CACHE_CREATION_INPUT_TOKENS]
        self.capture = capture if capture is not None else capture_mode_from_env()
        self.content_policy = content_policy
        if self.capture.enabled and content_policy is None:
            try:
                self.content_policy = ContentPolicy.from_env()
            except ContentConfigError as exc:  # fail closed: no content rather than unredacted content
                _log.error("%s; capturing no message content", exc)
                self.capture = CaptureMode.NO_CONTENT
        self.event_logger = (
            get_logger(sc.INSTRUMENTATION_SCOPE, __version__, logger_provider, schema_url=sc.SCHEMA_URL)
            if self.capture.as_event
            else None
        )
        self._listeners: list[Callable[[LLMCall], None]] = []
        self._start_listeners: list[Callable[[LLMCall], None]] = []
        # Metric attributes whose values come from outside (request, response, base URL): bounded.
        limit = max_metric_values if max_metric_values is not None else _max_metric_values_from_env()
        self.request_models = ValueLimit(sc.REQUEST_MODEL, limit)
        self.response_models = ValueLimit(sc.RESPONSE_MODEL, limit)
        self.servers = ValueLimit(sc.SERVER_ADDRESS, limit)  # (address, port) pairs

    def add_listener(self, listener: Callable[[LLMCall], None], *, on_start: bool = False) -> None:
        """Call ``listener(call)`` after every call ends (gateway health, summaries), or, with
        ``on_start=True``, when it starts (calls in flight). A listener's errors are contained."""
        (self._start_listeners if on_start else self._listeners).append(listener)

    def remove_listener(self, listener: Callable[[LLMCall], None]) -> None:
        for listeners in (self._listeners, self._start_listeners):
            if listener in listeners:
                listeners.remove(listener)

    def record_foreign(self, call: Any) -> None:
        """A call another instrumentation recorded as a span (``otel_llm.foreign.ForeignCall``): its
        cost goes on ``llm.client.cost`` and the listeners (gateway, summaries) see it. Never raises."""
        try:
            attributes: dict[str, AttributeValue] = {sc.OPERATION_NAME: call.operation, sc.PROVIDER_NAME: call.provider}
            if call.request_model:
                attributes[sc.REQUEST_MODEL] = call.request_model
            if call.response_model:
                attributes[sc.RESPONSE_MODEL] = self.response_models(call.response_model)
            if call.server_address:
                attributes[sc.SERVER_ADDRESS] = call.server_address
                if call.server_port:
                    attributes[sc.SERVER_PORT] = call.server_port
            attributes = _bounded(self, attributes)
            if call.input_tokens is not None or call.output_tokens is not None:
                for model in dict.fromkeys((call.response_model, call.request_model)):
                    call.cost = self.prices.cost(call.provider, model, call.input_tokens, call.output_tokens,
                                                 call.cache_read_tokens, call.cache_creation_tokens)
                    if call.cost is not None:
                        self.cost.add(call.cost, attributes)
                        break
        except Exception:
            report_internal_error("Recorder.record_foreign")
        for listener in self._listeners:
            try:
                listener(call)
            except Exception:
                report_internal_error("recorder listener")

    def start_call(
        self,
        operation: str,
        provider: str,
        model: str | None,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
        stream: bool = False,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> LLMCall:
        """Open the call's span; the caller must end it with ``end()`` or ``fail()``."""
        call = LLMCall(self, operation, provider, model, server_address, server_port, stream, attributes)
        for listener in self._start_listeners:
            try:
                listener(call)
            except Exception:
                report_internal_error("recorder start listener")
        return call


# meter -> {instrument name: the tally its observable instrument reports}; weak, so a meter (and its
# provider) that is dropped is not kept alive here
_tallies: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_tallies_lock = threading.Lock()


def shared_tally(meter: Any, spec: tuple[str, str, str], make: Callable[[], Any], kind: str) -> Any:
    """The tally (``make()``, with an ``observe`` callback) behind the observable ``kind`` ("counter" or
    "up_down") instrument ``spec`` of ``meter``, made and registered once per meter. The SDK keeps only
    the first callback registered under a name: a second recorder on the same meter that registered
    its own would never be reported, so every recorder on a meter adds to the one tally."""
    name, unit, description = spec
    with _tallies_lock:
        tallies = _tallies.setdefault(meter, {})
        tally = tallies.get(name)
        if tally is None:
            tally = tallies[name] = make()
            create = meter.create_observable_counter if kind == "counter" else meter.create_observable_up_down_counter
            create(name, callbacks=[tally.observe], unit=unit, description=description)
        return tally


def _histogram(meter: Any, spec: tuple[str, str, str], buckets: Sequence[float]) -> Any:
    name, unit, description = spec
    return meter.create_histogram(
        name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
    )


class CostTotals:
    """Cumulative cost per metric attribute set, observed by the ``llm.client.cost`` counter.

    Bounded like the SDK's own cardinality limit: past ``limit`` attribute sets, cost goes to one
    overflow series marked ``otel.metric.overflow=true``.
    """

    def __init__(self, limit: int = 2000) -> None:
        self._totals: dict[tuple[Any, ...], list[Any]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, amount: float, attributes: Mapping[str, AttributeValue]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            entry = self._totals.get(key)
            if entry is None:
                if len(self._totals) >= self._limit:
                    key, attributes = _OVERFLOW_KEY, _OVERFLOW_ATTRIBUTES
                    entry = self._totals.get(key)
                if entry is None:
                    entry = self._totals[key] = [dict(attributes), 0.0]
            entry[1] += amount

    def observe(self, options: Any = None) -> list[Observation]:
        with self._lock:
            return [Observation(total, attributes) for attributes, total in self._totals.values()]


_OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
_OVERFLOW_KEY = tuple(_OVERFLOW_ATTRIBUTES.items())


class LLMCall:
    """The lifecycle of one LLM call: chunks, response, usage, then end or fail, exactly once.

    Usable as a context manager: inside the block the call's span is current
    (HTTP client spans nest under it); leaving the block ends the call, or
    fails it with the exception that left the block (which is not suppressed).
    """

    __slots__ = (
        "_recorder", "_open", "span", "_context", "_metric_attributes", "_start", "_last_chunk",
        "operation", "provider", "request_model", "response_model", "stream", "chunks",
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
        "reasoning_tokens", "cost", "duration", "time_to_first_chunk", "error_type", "cancelled", "_token", "_content",
        "_pending",
        "response_headers",
    )

    def __init__(
        self,
        recorder: Recorder,
        operation: str,
        provider: str,
        model: str | None,
        server_address: str | None,
        server_port: int | None,
        stream: bool,
        attributes: Mapping[str, AttributeValue] | None,
    ) -> None:
        self._recorder = recorder
        self._open = [True]  # list.pop() is atomic: ends the call exactly once across threads
        self.operation = operation
        self.provider = provider
        self.request_model = model
        self.response_model: str | None = None
        self.stream = stream
        self.chunks = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.cost: float | None = None
        self.duration: float | None = None
        self.time_to_first_chunk: float | None = None
        self.error_type: str | None = None
        self.cancelled = False  # the caller stopped it before the end (not an error)
        self._content: dict[str, str] | None = None
        self._pending: dict[str, AttributeValue] = {}  # span attributes set at the end
        self.response_headers: Mapping[str, str] | None = None  # the provider's HTTP response headers
        metric_attributes: dict[str, AttributeValue] = {sc.OPERATION_NAME: operation, sc.PROVIDER_NAME: provider}
        if model:
            metric_attributes[sc.REQUEST_MODEL] = model
        if server_address:
            metric_attributes[sc.SERVER_ADDRESS] = server_address
            if server_port:
                metric_attributes[sc.SERVER_PORT] = server_port
        span_attributes = dict(metric_attributes)  # the span keeps the true values
        self._metric_attributes = _bounded(recorder, metric_attributes)
        if stream:
            span_attributes[sc.REQUEST_STREAM] = True
        if attributes:
            span_attributes.update(attributes)
        self.span = recorder.tracer.start_span(
            f"{operation} {model}" if model else operation, kind=SpanKind.CLIENT, attributes=span_attributes
        )
        self._context = otel_context.set_value(_CALL_KEY, self, trace.set_span_in_context(self.span))
        self._start = self._last_chunk = time.perf_counter()

    @property
    def context(self) -> Any:
        """The OpenTelemetry context holding this call's span (to make it current around the request)."""
        return self._context

    @property
    def ended(self) -> bool:
        return not self._open

    def __enter__(self) -> LLMCall:
        self._token = otel_context.attach(self._context)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        otel_context.detach(self._token)
        if exc is None:
            self.end()
        else:
            self.fail(exc)

    def chunk(self) -> None:
        """One output chunk of a stream arrived (the per-chunk hot path: guarded inline)."""
        try:
            if not self._open:
                return
            now = time.perf_counter()
            self.chunks += 1
            if self.chunks == 1:
                self.time_to_first_chunk = now - self._start
                self._recorder.time_to_first_chunk.record(
                    self.time_to_first_chunk, self._metric_attributes, self._context
                )
            else:
                self._recorder.time_per_output_chunk.record(
                    now - self._last_chunk, self._metric_attributes, self._context
                )
            self._last_chunk = now
        except Exception:
            report_internal_error("LLMCall.chunk")

    def set_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Iterable[str] | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        try:
            if not self._open:
                return
            # Kept until the end and set on the span in one go: one lock and one validation pass.
            pending = self._pending
            if model and type(model) is str and model != self.response_model:
                self.response_model = model
                pending[sc.RESPONSE_MODEL] = model
                self._metric_attributes = {**self._metric_attributes, sc.RESPONSE_MODEL: self._recorder.response_models(model)}
            if response_id:
                pending[sc.RESPONSE_ID] = response_id
            if finish_reasons:
                pending[sc.RESPONSE_FINISH_REASONS] = [str(reason) for reason in finish_reasons]
            if attributes:
                pending.update(attributes)
        except Exception:
            report_internal_error("LLMCall.set_response")

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Token counts as reported by the provider; ``input_tokens`` includes cached input."""
        try:  # a count that is not one (negative, beyond int64, not a number) is left unreported, alone
            if input_tokens is not None:
                self.input_tokens = _token_count(input_tokens, self.input_tokens)
            if output_tokens is not None:
                self.output_tokens = _token_count(output_tokens, self.output_tokens)
            if cache_read_tokens is not None:
                self.cache_read_tokens = _token_count(cache_read_tokens, self.cache_read_tokens)
            if cache_creation_tokens is not None:
                self.cache_creation_tokens = _token_count(cache_creation_tokens, self.cache_creation_tokens)
            if reasoning_tokens is not None:
                self.reasoning_tokens = _token_count(reasoning_tokens, self.reasoning_tokens)
        except Exception:
            report_internal_error("LLMCall.set_usage")

    @property
    def capture(self) -> CaptureMode:
        return self._recorder.capture

    def set_content(
        self,
        *,
        input_messages: list[dict[str, Any]] | None = None,
        output_messages: list[dict[str, Any]] | None = None,
        system_instructions: list[dict[str, Any]] | None = None,
        tool_definitions: list[dict[str, Any]] | None = None,
    ) -> None:
        """Message content in the semconv JSON shapes; dropped unless capture is opted in.

        Every text is redacted and truncated by the content policy first; at the end of the call
        the result goes on the span, into the ``gen_ai.client.inference.operation.details`` event,
        or both. A later call replaces what an earlier one set (streams update the output).
        """
        try:
            recorder = self._recorder
            if not recorder.capture.enabled or not self._open:
                return
            policy = recorder.content_policy
            content = self._content if self._content is not None else {}
            for key, value in (
                (sc.INPUT_MESSAGES, input_messages),
                (sc.OUTPUT_MESSAGES, output_messages),
                (sc.SYSTEM_INSTRUCTIONS, system_instructions),
                (sc.TOOL_DEFINITIONS, tool_definitions),
            ):
                if value is not None:
                    cleaned, cut = policy.apply(value) if policy is not None else (value, False)
                    content[key] = json.dumps(cleaned, ensure_ascii=False, default=str)
                    if cut:
                        content[sc.CONTENT_TRUNCATED] = True  # type: ignore[assignment]
            self._content = content
        except Exception:
            report_internal_error("LLMCall.set_content")

    def end(self) -> None:
        """Finish successfully: record usage, cost and duration, end the span."""
        try:
            self._finish(None, None)
        except Exception:
            report_internal_error("LLMCall.end")

    def fail(self, exc: BaseException | str) -> None:
        """Finish with an error (an exception or an error type string).

        An exception that is not an ``Exception`` (``CancelledError``, ``KeyboardInterrupt``,
        ``GeneratorExit``) is the caller stopping the call, not the provider failing: it cancels.
        """
        try:
            if isinstance(exc, Exception):
                self._finish(error_type(exc), exc)
            elif isinstance(exc, BaseException):
                self._finish(None, None, cancelled=True)
            else:
                self._finish(str(exc), None)
        except Exception:
            report_internal_error("LLMCall.fail")

    def cancel(self) -> None:
        """Finish because the caller stopped before the end (a stream closed or left early, a
        cancelled task): recorded like a success, with ``llm.call.cancelled=true`` on the span."""
        try:
            self._finish(None, None, cancelled=True)
        except Exception:
            report_internal_error("LLMCall.cancel")

    def _price(self, attributes: Mapping[str, AttributeValue], usage: dict[str, AttributeValue]) -> None:
        """Cost at the response model's price, else the request model's; a failure costs the call nothing else."""
        recorder = self._recorder
        try:
            self.cost = recorder.prices.cost(
                self.provider,
                self.response_model or self.request_model,
                self.input_tokens,
                self.output_tokens,
                self.cache_read_tokens,
                self.cache_creation_tokens,
            )
            if self.cost is None and self.response_model and self.request_model != self.response_model:
                self.cost = recorder.prices.cost(
                    self.provider, self.request_model, self.input_tokens, self.output_tokens,
                    self.cache_read_tokens, self.cache_creation_tokens,
                )
            if self.cost is not None:
                usage[sc.COST_USD] = self.cost
                recorder.cost.add(self.cost, attributes)
        except Exception:
            report_internal_error("LLMCall cost")

    def _finish(self, error: str | None, exc: BaseException | None, cancelled: bool = False) -> None:
        try:
            self._open.pop()
        except IndexError:
            return
        try:
            self._record_end(error, exc, cancelled)
        except Exception:  # whatever went wrong recording, the span still ends
            report_internal_error("LLMCall end")
        self.span.end()
        for listener in self._recorder._listeners:
            try:
                listener(self)
            except Exception:
                report_internal_error("recorder listener")

    def _record_end(self, error: str | None, exc: BaseException | None, cancelled: bool) -> None:
        recorder = self._recorder
        span = self.span
        context = self._context
        self.duration = time.perf_counter() - self._start
        attributes = self._metric_attributes

        usage = self._pending
        if self.input_tokens is not None:
            usage[sc.USAGE_INPUT_TOKENS] = self.input_tokens
            recorder.token_usage.record(
                self.input_tokens, {**attributes, sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}, context
            )
        if self.output_tokens is not None:
            usage[sc.USAGE_OUTPUT_TOKENS] = self.output_tokens
            recorder.token_usage.record(
                self.output_tokens, {**attributes, sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}, context
            )
        if self.cache_read_tokens is not None:
            usage[sc.USAGE_CACHE_READ_INPUT_TOKENS] = self.cache_read_tokens
        if self.cache_creation_tokens is not None:
            usage[recorder.cache_creation_attribute] = self.cache_creation_tokens
        if self.reasoning_tokens is not None:
            usage[sc.USAGE_REASONING_OUTPUT_TOKENS] = self.reasoning_tokens
        if self.input_tokens is not None or self.output_tokens is not None:
            self._price(attributes, usage)

        if error is not None:
            self.error_type = error
            attributes = {**attributes, sc.ERROR_TYPE: error}
            usage[sc.ERROR_TYPE] = error
            message = scrub_secrets(str(exc))[:500] if exc is not None else error
            span.set_status(Status(StatusCode.ERROR, message))
        elif cancelled:
            self.cancelled = True
            usage[sc.CALL_CANCELLED] = True
        if self._content and recorder.capture.on_span:
            usage.update(self._content)
        if usage:
            span.set_attributes(usage)
        recorder.duration.record(self.duration, attributes, context)
        if self._content and recorder.event_logger is not None:
            recorder.event_logger.emit(
                event_name=sc.EVENT_INFERENCE_DETAILS,
                attributes={**attributes, **self._content},
                context=context,
            )


_CALL_KEY = otel_context.create_key("otel_llm.call")

_MAX_TOKENS = 2**63 - 1  # OTLP carries int64: one bigger value would fail every later metric export


def _token_count(value: Any, previous: int | None) -> int | None:
    """``value`` as a token count; ``previous`` when it is not one (a provider's bad usage field)."""
    if isinstance(value, bool):
        return previous
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return previous
    return count if 0 <= count <= _MAX_TOKENS else previous


OTHER_VALUE = "_OTHER"  # what a metric attribute says once its value limit is reached (semconv's word for it)
ENV_METRIC_MAX_VALUES = sc.ENV_METRIC_MAX_VALUES
DEFAULT_METRIC_MAX_VALUES = 100


def _max_metric_values_from_env() -> int:
    raw = os.environ.get(ENV_METRIC_MAX_VALUES, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        _log.error("%s=%r is not a positive whole number; using %d", ENV_METRIC_MAX_VALUES, raw,
                   DEFAULT_METRIC_MAX_VALUES)
    return DEFAULT_METRIC_MAX_VALUES


class ValueLimit:
    """The first ``limit`` distinct values of one metric attribute pass; later ones become ``_OTHER``.

    Model names and base URLs can come from user input (a gateway forwarding any model name), and
    every distinct value is a new metric series. Spans keep the true value; the first overflow is
    logged once, and ``overflowed`` counts the calls whose value was folded.
    """

    __slots__ = ("attribute", "limit", "overflowed", "_seen", "_lock")

    def __init__(self, attribute: str, limit: int) -> None:
        self.attribute = attribute
        self.limit = limit
        self.overflowed = 0
        self._seen: set[Any] = set()
        self._lock = threading.Lock()

    def admits(self, value: Any) -> bool:
        if value in self._seen:
            return True
        with self._lock:
            if value in self._seen:
                return True
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return True
            self.overflowed += 1
            first = self.overflowed == 1
        if first:
            _log.warning(
                "otel-llm: more than %d distinct values of %s; further ones are recorded as %s on metrics "
                "(spans keep them). Raise %s if this many is expected.",
                self.limit, self.attribute, OTHER_VALUE, ENV_METRIC_MAX_VALUES,
            )
        return False

    def __call__(self, value: Any) -> Any:
        return value if self.admits(value) else OTHER_VALUE


def _bounded(recorder: Recorder, attributes: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
    """``attributes`` with over-limit model and server values replaced (the same dict if none is)."""
    model = attributes.get(sc.REQUEST_MODEL)
    address = attributes.get(sc.SERVER_ADDRESS)
    bounded = attributes
    if model is not None and not recorder.request_models.admits(model):
        bounded = {**bounded, sc.REQUEST_MODEL: OTHER_VALUE}
    if address is not None and not recorder.servers.admits((address, attributes.get(sc.SERVER_PORT))):
        bounded = {k: v for k, v in bounded.items() if k != sc.SERVER_PORT}
        bounded[sc.SERVER_ADDRESS] = OTHER_VALUE
    return bounded


def current_call() -> LLMCall | None:
    """The LLM call whose request is being sent in this context (None outside instrumented requests)."""
    return otel_context.get_value(_CALL_KEY)  # type: ignore[return-value]


# (tracer, meter, logger provider) -> the recorder on them, with the providers (keeping their ids unique)
_shared: dict[tuple[int, int, int], tuple[Any, Recorder]] = {}
_shared_lock = threading.Lock()


def shared_recorder(tracer_provider: Any = None, meter_provider: Any = None, logger_provider: Any = None) -> Recorder:
    """The one recorder on these providers (None: the global ones), made on first use. Instrumentors
    not given a recorder share it: cost is an observable counter, and the SDK keeps only the first
    callback registered for a name, so a second recorder's cost would never be reported."""
    providers = (tracer_provider, meter_provider, logger_provider)
    key = (id(tracer_provider), id(meter_provider), id(logger_provider))
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None or any(a is not b for a, b in zip(entry[0], providers)):
            recorder = Recorder(tracer_provider=tracer_provider, meter_provider=meter_provider,
                                logger_provider=logger_provider)
            entry = _shared[key] = (providers, recorder)
        return entry[1]


def get_recorder() -> Recorder:
    """The process-wide recorder on the global tracer and meter providers."""
    return shared_recorder()


def llm_call(
    operation: str,
    provider: str,
    model: str | None,
    *,
    server_address: str | None = None,
    server_port: int | None = None,
    stream: bool = False,
    attributes: Mapping[str, AttributeValue] | None = None,
    recorder: Recorder | None = None,
) -> LLMCall:
    """Record a call of a client otel-llm does not patch (a raw HTTP call, say).

    Use as a context manager (the call's span is current inside the block)::

        with otel_llm.llm_call("chat", "openai", "gpt-4o-mini", server_address="llm.internal") as call:
            body = httpx.post(...).json()
            call.set_response(model=body["model"], finish_reasons=[c["finish_reason"] for c in body["choices"]])
            call.set_usage(body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
    """
    return (recorder or get_recorder()).start_call(
        operation,
        provider,
        model,
        server_address=server_address,
        server_port=server_port,
        stream=stream,
        attributes=attributes,
    )
