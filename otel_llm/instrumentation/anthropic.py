"""Instrumentation of the ``anthropic`` SDK (2.x, built on httpx2).

One ``wrapt`` patch on the client's ``request`` method (sync and async), where every API request
passes: ``POST /v1/messages`` from ``messages.create``, ``.parse``, the ``messages.stream(...)``
helper and ``client.beta.messages`` alike, plain, streamed, ``with_raw_response`` and
``with_streaming_response``, whenever the client was created or its methods bound.
``count_tokens`` (``/v1/messages/count_tokens``) is left alone: it is not an inference.

One LLM call is one GenAI span. The SDK's own tracing (scope ``com.anthropic.sdk.python``) would
add a second CLIENT span with ``gen_ai.*`` attributes for the same call and double every count in
Tempo and in span-derived metrics, so otel-llm stands in for it: while an instrumented request is
sent, the SDK's tracer hands out a non-recording span that carries the context of otel-llm's span.
Nothing of the SDK's span is recorded, and the SDK's own propagation still sends otel-llm's trace
context in the request headers (as its ``open_telemetry`` option / ``ANTHROPIC_OPEN_TELEMETRY_PROPAGATION``
say). Calls otel-llm does not instrument (``count_tokens``, batches, models) keep the SDK's spans.

Streamed token counts are recorded only when final: ``message_start``'s input counts are, its output
count is a placeholder, so the output is set from the cumulative ``message_delta``. A stream the
consumer abandons before that reports its input tokens and no output tokens (an abandoned OpenAI
stream reports none: its usage comes last).

Entry point name ``otel_llm_anthropic`` (the official instrumentation is ``anthropic``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv as sc
from ..recorder import LLMCall, Recorder, current_call, report_internal_error
from ._common import Servers, get, given, provider_overrides_from_env, recorder_from, request_attributes
from ._wrapping import (
    Plan,
    async_request_wrapper,
    capture_response_headers,
    request_patches,
    response_header_patches,
    sync_request_wrapper,
)

_ROUTES = {"/v1/messages": "messages"}
_PARAMS = (
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("top_k", sc.REQUEST_TOP_K),
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("stop_sequences", sc.REQUEST_STOP_SEQUENCES),
)
# Which provider an Anthropic client class talks to, when not the Anthropic API.
_CLIENT_PROVIDERS = {
    "AnthropicBedrock": sc.PROVIDER_AWS_BEDROCK,
    "AsyncAnthropicBedrock": sc.PROVIDER_AWS_BEDROCK,
    "AnthropicAWS": sc.PROVIDER_AWS_BEDROCK,
    "AsyncAnthropicAWS": sc.PROVIDER_AWS_BEDROCK,
    "AnthropicVertex": sc.PROVIDER_GCP_VERTEX_AI,
    "AsyncAnthropicVertex": sc.PROVIDER_GCP_VERTEX_AI,
}


class AnthropicInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``AnthropicInstrumentor().instrument(tracer_provider=..., meter_provider=...)``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 2.0, < 3",)

    def _instrument(self, **kwargs: Any) -> None:
        recorder = recorder_from(kwargs)
        self.recorder = recorder
        options = _Options(recorder, Servers(provider_overrides_from_env()))
        for module, name, is_async in request_patches("anthropic"):
            wrapper = (async_request_wrapper if is_async else sync_request_wrapper)(_ROUTES, options.plan)
            wrapt.wrap_function_wrapper(module, name, wrapper)
        for module, name in response_header_patches("anthropic"):
            wrapt.wrap_function_wrapper(module, name, capture_response_headers)
        self._sdk_tracer = _install_tracer_guard()

    def _uninstrument(self, **kwargs: Any) -> None:
        patched = [(m, n) for m, n, _a in request_patches("anthropic")] + list(response_header_patches("anthropic"))
        for module, name in patched:
            owner, method = name.split(".")
            unwrap(getattr(importlib.import_module(module), owner), method)
        _remove_tracer_guard(getattr(self, "_sdk_tracer", None))


class _StandInTracer(trace.NoOpTracer):
    """What the SDK's tracer becomes during an instrumented request: spans that record nothing and
    carry the context of otel-llm's span (so the SDK's propagation sends our trace context)."""

    def __init__(self, span_context: trace.SpanContext) -> None:
        self._span_context = span_context

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return trace.NonRecordingSpan(self._span_context)

    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        with trace.use_span(self.start_span(), end_on_exit=False) as span:
            yield span


def _install_tracer_guard() -> Any:
    """Replace ``BaseClient._tracer`` with a property that stands in during our requests."""
    try:
        from anthropic import _base_client

        original = _base_client.BaseClient.__dict__.get("_tracer")
        if not isinstance(original, property) or original.fget is None:
            return None
        sdk_tracer = original.fget

        def _tracer(client: Any) -> Any:
            call = current_call()
            if call is not None:
                return _StandInTracer(call.span.get_span_context())
            return sdk_tracer(client)

        _base_client.BaseClient._tracer = property(_tracer)  # type: ignore[attr-defined]
        return original
    except Exception:
        report_internal_error("anthropic tracer guard")
        return None


def _remove_tracer_guard(original: Any) -> None:
    if original is not None:
        from anthropic import _base_client

        _base_client.BaseClient._tracer = original  # type: ignore[attr-defined]


class _Options:
    __slots__ = ("recorder", "servers")

    def __init__(self, recorder: Recorder, servers: Servers) -> None:
        self.recorder = recorder
        self.servers = servers

    def plan(self, kind: str, client: Any, options: Any, body: Mapping[str, Any], stream: bool) -> _AnthropicPlan:
        default = _CLIENT_PROVIDERS.get(type(client).__name__, sc.PROVIDER_ANTHROPIC)
        host, port, provider = self.servers.of(client, default)
        model = body.get("model")
        model = model if isinstance(model, str) else None
        attributes = request_attributes(body, _PARAMS)
        call = self.recorder.start_call(
            sc.OP_CHAT, provider, model, server_address=host, server_port=port, stream=stream, attributes=attributes
        )
        plan = _AnthropicPlan(call, options, body, kind, stream)
        if call.capture.enabled:
            _capture_input(call, body)
        return plan


class _AnthropicPlan(Plan):
    __slots__ = ("texts",)

    def __init__(self, call: LLMCall, options: Any, body: Mapping[str, Any], kind: str, stream: bool) -> None:
        super().__init__(call, options, body, kind, stream)
        self.texts: list[str] | None = [] if call.capture.enabled else None

    def record(self, parsed: Any) -> None:
        _record_message(self.call, parsed)

    def stream_handler(self) -> Callable[[Any], bool]:
        return _event_handler(self)


# --- responses and streamed events ----------------------------------------------------------------


def _set_usage(call: LLMCall, usage: Any) -> None:
    """Anthropic's input_tokens excludes cached input; the conventions' includes it."""
    if usage is None:
        return
    uncached = get(usage, "input_tokens")
    cache_read = get(usage, "cache_read_input_tokens")
    cache_creation = get(usage, "cache_creation_input_tokens")
    total_input = None
    if uncached is not None:
        total_input = uncached + (cache_read or 0) + (cache_creation or 0)
    call.set_usage(
        total_input,
        get(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
    )


def _record_message(call: LLMCall, message: Any) -> None:
    stop_reason = get(message, "stop_reason")
    call.set_response(
        model=get(message, "model"),
        response_id=get(message, "id"),
        finish_reasons=[stop_reason] if stop_reason else None,
    )
    _set_usage(call, get(message, "usage"))
    if call.capture.enabled:
        call.set_content(output_messages=[_output_message(get(message, "content"), stop_reason)])


def _event_handler(plan: _AnthropicPlan) -> Callable[[Any], bool]:
    call = plan.call
    usage: dict[str, Any] = {}

    def on_event(event: Any) -> bool:
        kind = get(event, "type")
        if kind == "content_block_delta":
            call.chunk()
            if plan.texts is not None:
                text = get(get(event, "delta"), "text")
                if text:
                    plan.texts.append(text)
        elif kind == "message_start":
            message = get(event, "message")
            call.set_response(model=get(message, "model"), response_id=get(message, "id"))
            _merge_usage(usage, get(message, "usage"))
            # the input counts are final here; the output count is a placeholder until message_delta
            _set_usage(call, {key: value for key, value in usage.items() if key != "output_tokens"})
        elif kind == "message_delta":
            reason = get(get(event, "delta"), "stop_reason")
            if reason:
                call.set_response(finish_reasons=[reason])
            _merge_usage(usage, get(event, "usage"))
            _set_usage(call, usage)
            if plan.texts is not None:
                call.set_content(output_messages=[
                    {"role": "assistant", "parts": [{"type": "text", "content": "".join(plan.texts)}],
                     "finish_reason": reason or "unknown"}
                ])
        return False

    return on_event


def _merge_usage(usage: dict[str, Any], reported: Any) -> None:
    """message_delta usage is cumulative and may omit (or null) what message_start reported."""
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = get(reported, key)
        if value is not None:
            usage[key] = value


# --- opt-in content -------------------------------------------------------------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = get(block, "type")
        if kind == "text":
            parts.append({"type": "text", "content": get(block, "text")})
        elif kind == "tool_use":
            parts.append({"type": "tool_call", "id": get(block, "id"), "name": get(block, "name"),
                          "arguments": get(block, "input")})
        elif kind == "tool_result":
            result = get(block, "content")
            parts.append({"type": "tool_call_response", "id": get(block, "tool_use_id"),
                          "response": result if isinstance(result, str) else _parts(result)})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": get(block, "thinking")})
    return parts


def _capture_input(call: LLMCall, body: Mapping[str, Any]) -> None:
    messages = body.get("messages")
    system = body.get("system")
    tools = body.get("tools")
    call.set_content(
        input_messages=[{"role": get(m, "role"), "parts": _parts(get(m, "content"))} for m in messages]
        if isinstance(messages, (list, tuple)) else None,
        system_instructions=_parts(system) if given(system) and system else None,
        tool_definitions=[{"type": "function", "name": get(t, "name"), "description": get(t, "description")}
                          for t in tools] if given(tools) and isinstance(tools, (list, tuple)) else None,
    )


def _output_message(content: Any, stop_reason: str | None) -> dict[str, Any]:
    return {"role": "assistant", "parts": _parts(content), "finish_reason": stop_reason or "unknown"}
