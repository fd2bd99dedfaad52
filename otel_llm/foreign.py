"""Cost and gateway signals for GenAI spans otel-llm did not make.

Teams mix instrumentations (the official packages, OpenLLMetry, OpenInference): their inference
spans carry the conventions' attributes but no cost. :class:`ForeignSpans`, a span processor on the
tracer provider, turns each such span, when it ends, into a :class:`ForeignCall` for the recorder:
the ``llm.client.cost`` counter and the recorder's listeners (the gateway's health and availability,
summaries) count it like one of ours.

Counted once: our own spans are recorded by the recorder and skipped here. When two
instrumentations record the same SDK call, their spans nest, one the direct parent of the other (an
SDK method wrapper around our request wrapper, a framework's span around an SDK's): the inner span
counts, unless our span is involved, which always counts. This relies on ``gen_ai.operation.name``
being set when a span starts, as the conventions require for sampling. Agent, tool and workflow
spans are not calls: their usage sums their calls' and is never priced.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

from . import semconv as sc
from .recorder import OTHER_VALUE, Recorder, current_call, report_internal_error

INFERENCE_OPERATIONS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_GENERATE_CONTENT, sc.OP_EMBEDDINGS})
# Names instrumentations emitted before the conventions settled (gen_ai.system until v1.37,
# prompt/completion tokens until v1.27): read when the current name is missing.
_LEGACY_PROVIDER = "gen_ai.system"
_LEGACY_INPUT_TOKENS = "gen_ai.usage.prompt_tokens"
_LEGACY_OUTPUT_TOKENS = "gen_ai.usage.completion_tokens"
_MAX_TRACKED = 10_000  # inference spans in flight tracked for nesting; beyond that the table starts over


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class ForeignCall:
    """What the recorder and its listeners read of a call, from a finished span's attributes."""

    __slots__ = (
        "operation", "provider", "request_model", "response_model", "stream", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens", "cost", "duration",
        "time_to_first_chunk", "error_type", "cancelled", "response_headers", "context", "server_address",
        "server_port",
    )

    def __init__(self, span: ReadableSpan, attributes: Mapping[str, Any], operation: str, provider: str) -> None:
        self.operation = operation
        self.provider = provider
        request_model = attributes.get(sc.REQUEST_MODEL)
        response_model = attributes.get(sc.RESPONSE_MODEL)
        self.request_model = request_model if isinstance(request_model, str) else None
        self.response_model = response_model if isinstance(response_model, str) else None
        self.stream = attributes.get(sc.REQUEST_STREAM) is True
        self.input_tokens = _int(attributes.get(sc.USAGE_INPUT_TOKENS, attributes.get(_LEGACY_INPUT_TOKENS)))
        self.output_tokens = _int(attributes.get(sc.USAGE_OUTPUT_TOKENS, attributes.get(_LEGACY_OUTPUT_TOKENS)))
        self.cache_read_tokens = _int(attributes.get(sc.USAGE_CACHE_READ_INPUT_TOKENS))
        self.cache_creation_tokens = _int(attributes.get(
            sc.USAGE_CACHE_CREATION_INPUT_TOKENS, attributes.get(sc.LATEST_NAMES[sc.USAGE_CACHE_CREATION_INPUT_TOKENS])))
        self.reasoning_tokens = _int(attributes.get(sc.USAGE_REASONING_OUTPUT_TOKENS))
        self.cost: float | None = None
        start, end = span.start_time, span.end_time
        self.duration = (end - start) / 1e9 if start is not None and end is not None else None
        self.time_to_first_chunk = None  # no convention carries it on the span
        error = attributes.get(sc.ERROR_TYPE)
        if error is None and span.status.status_code is StatusCode.ERROR:
            error = OTHER_VALUE
        self.error_type = str(error) if error is not None else None
        self.cancelled = False
        self.response_headers = None
        self.context = trace.set_span_in_context(trace.NonRecordingSpan(span.context))
        address, port = attributes.get(sc.SERVER_ADDRESS), attributes.get(sc.SERVER_PORT)
        self.server_address = address if isinstance(address, str) else None
        self.server_port = _int(port)


class ForeignSpans(SpanProcessor):  # type: ignore[misc]
    """``tracer_provider.add_span_processor(ForeignSpans(recorder))``: feeds ``recorder`` with the
    inference spans of other instrumentations (see the module's doc). Never raises."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        # Other instrumentations' inference spans not yet ended, and those another span of the same
        # call stands for. Single set operations, atomic under the GIL: no lock on this per-span path.
        self._in_flight: set[int] = set()
        self._skip: set[int] = set()
        self.counted = 0
        self.skipped = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        try:
            parent = span.parent
            scope = span.instrumentation_scope
            if scope is not None and scope.name == sc.INSTRUMENTATION_SCOPE:  # ours: recorded by the recorder
                if parent is not None and parent.span_id in self._in_flight:
                    self._skip.add(parent.span_id)  # another instrumentation's span around our call
                return
            attributes = span.attributes
            if not attributes or attributes.get(sc.OPERATION_NAME) not in INFERENCE_OPERATIONS:
                return
            in_flight = self._in_flight
            if len(in_flight) >= _MAX_TRACKED:  # spans that never end (leaked by their makers)
                in_flight.clear()
                self._skip.clear()
            span_id = span.context.span_id
            in_flight.add(span_id)
            if parent is None:
                return
            if parent.span_id in in_flight:
                self._skip.add(parent.span_id)  # around another inference span: the inner one counts
                return
            call = current_call()
            if call is not None and call.span.get_span_context().span_id == parent.span_id:
                self._skip.add(span_id)  # inside our call: the same call, ours counts
        except Exception:
            report_internal_error("ForeignSpans.on_start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            scope = span.instrumentation_scope
            if scope is not None and scope.name == sc.INSTRUMENTATION_SCOPE:
                return
            attributes = span.attributes
            if not attributes:
                return
            operation = attributes.get(sc.OPERATION_NAME)
            if operation not in INFERENCE_OPERATIONS:
                return
            span_id = span.context.span_id
            self._in_flight.discard(span_id)
            if span_id in self._skip:
                self._skip.discard(span_id)
                self.skipped += 1
                return
            provider = attributes.get(sc.PROVIDER_NAME) or attributes.get(_LEGACY_PROVIDER)
            if not isinstance(provider, str) or not provider:
                return
            self.counted += 1
            self.recorder.record_foreign(ForeignCall(span, attributes, str(operation), provider.lower()))
        except Exception:
            report_internal_error("ForeignSpans.on_end")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_installed: dict[int, tuple[Any, ForeignSpans]] = {}
_install_lock = threading.Lock()


def enabled_from_env() -> bool:
    return os.environ.get(sc.ENV_FOREIGN_SPANS, "true").strip().lower() not in ("false", "0", "no", "off")


def install(tracer_provider: Any, recorder: Recorder) -> ForeignSpans | None:
    """Add one :class:`ForeignSpans` to ``tracer_provider`` (an SDK TracerProvider; others are left
    alone), once per provider, unless ``OTEL_LLM_FOREIGN_SPANS=false``. Returns the processor feeding it."""
    if not hasattr(tracer_provider, "add_span_processor") or not enabled_from_env():
        return None
    with _install_lock:
        entry = _installed.get(id(tracer_provider))
        if entry is None or entry[0] is not tracer_provider:
            entry = _installed[id(tracer_provider)] = (tracer_provider, ForeignSpans(recorder))
            tracer_provider.add_span_processor(entry[1])
        return entry[1]
