"""Instrumentation of the ``openai`` SDK (2.x on httpx, 3.x on httpx2).

One ``wrapt`` patch on the client's ``request`` method (sync and async), where every API request
passes: ``POST /chat/completions`` (``create``, ``parse``, ``stream()``, LiteLLM's generic
``client.post``), ``/completions``, ``/embeddings`` and ``/responses``, plain, streamed,
``with_raw_response`` and ``with_streaming_response``, whenever the client was created or its
methods bound. This module only translates request bodies and responses into
:class:`~otel_llm.recorder.LLMCall` calls.

Entry point name ``otel_llm_openai`` (the official instrumentation is ``openai``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv as sc
from ..recorder import LLMCall, Recorder
from ._common import Servers, get, given, provider_overrides_from_env, recorder_from, request_attributes
from ._wrapping import (
    Plan,
    async_request_wrapper,
    capture_response_headers,
    request_patches,
    response_header_patches,
    sync_request_wrapper,
)

# "/chat/completions" before "/completions": an absolute URL is matched by suffix in this order.
_ROUTES = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/responses": "responses",
}

_CHAT_PARAMS = (
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("seed", sc.REQUEST_SEED),
    ("service_tier", sc.OPENAI_REQUEST_SERVICE_TIER),
)
_RESPONSES_PARAMS = (
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("service_tier", sc.OPENAI_REQUEST_SERVICE_TIER),
)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``OpenAIInstrumentor().instrument(tracer_provider=..., meter_provider=..., stream_usage=True)``.

    ``stream_usage`` (default on; env ``OTEL_LLM_OPENAI_STREAM_USAGE=false`` turns it off): when
    the caller did not say whether it wants usage on a streamed chat or text completion, ask for
    ``stream_options.include_usage`` on its behalf and take the usage back out of what it sees
    (the usage-only chunk, or the usage a server puts on its last chunk), so streams report tokens
    and the caller sees exactly the stream it asked for. An explicit ``include_usage`` of the
    caller's, ``False`` included, is left as it is.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 2.0, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        recorder = recorder_from(kwargs)
        stream_usage = kwargs.get("stream_usage")
        if stream_usage is None:
            stream_usage = os.environ.get(sc.ENV_STREAM_USAGE, "true").strip().lower() not in ("0", "false", "no", "off")
        self.recorder = recorder
        options = _Options(recorder, bool(stream_usage), Servers(provider_overrides_from_env()))
        for module, name, is_async in request_patches("openai"):
            wrapper = (async_request_wrapper if is_async else sync_request_wrapper)(_ROUTES, options.plan)
            wrapt.wrap_function_wrapper(module, name, wrapper)
        for module, name in response_header_patches("openai"):
            wrapt.wrap_function_wrapper(module, name, capture_response_headers)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, name in [(m, n) for m, n, _a in request_patches("openai")] + list(response_header_patches("openai")):
            owner, method = name.split(".")
            unwrap(getattr(importlib.import_module(module), owner), method)


class _Options:
    __slots__ = ("recorder", "stream_usage", "servers")

    def __init__(self, recorder: Recorder, stream_usage: bool, servers: Servers) -> None:
        self.recorder = recorder
        self.stream_usage = stream_usage
        self.servers = servers

    def plan(self, kind: str, client: Any, options: Any, body: Mapping[str, Any], stream: bool) -> _OpenAIPlan:
        return _plan(self, kind, client, options, body, stream)


class _OpenAIPlan(Plan):
    __slots__ = ("hide_usage", "finish_reasons", "capture")

    def __init__(
        self, call: LLMCall, options: Any, body: Mapping[str, Any], kind: str, stream: bool, hide_usage: bool
    ) -> None:
        super().__init__(call, options, body, kind, stream)
        self.hide_usage = hide_usage
        self.finish_reasons: dict[int, str] = {}
        self.capture = call.capture.enabled

    def record(self, parsed: Any) -> None:
        if self.kind == "chat" or self.kind == "completions":
            _record_completion(self, parsed)
        elif self.kind == "responses":
            _record_response(self.call, parsed)
        else:
            _record_embeddings(self.call, parsed)

    def stream_handler(self) -> Callable[[Any], bool]:
        return _responses_event_handler(self) if self.kind == "responses" else _chunk_handler(self)


def _plan(
    settings: _Options, kind: str, client: Any, options: Any, body: Mapping[str, Any], stream: bool
) -> _OpenAIPlan:
    azure = type(client).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI")
    host, port, provider = settings.servers.of(client, sc.PROVIDER_AZURE_OPENAI if azure else sc.PROVIDER_OPENAI)
    model = body.get("model")
    model = model if isinstance(model, str) else None
    hide_usage = False

    if kind == "chat" or kind == "completions":
        operation = sc.OP_CHAT if kind == "chat" else sc.OP_TEXT_COMPLETION
        attributes = request_attributes(body, _CHAT_PARAMS)
        if kind == "chat":
            attributes[sc.OPENAI_API_TYPE] = "chat_completions"
        stop = body.get("stop")
        if isinstance(stop, str):
            attributes[sc.REQUEST_STOP_SEQUENCES] = [stop]
        elif isinstance(stop, (list, tuple)):
            attributes[sc.REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
        n = body.get("n")
        if isinstance(n, int) and n != 1:
            attributes[sc.REQUEST_CHOICE_COUNT] = n
        output_type = _output_type(body.get("response_format"))
        if output_type:
            attributes[sc.OUTPUT_TYPE] = output_type
        if stream and settings.stream_usage:
            stream_options = body.get("stream_options")
            if stream_options is None or (isinstance(stream_options, Mapping) and "include_usage" not in stream_options):
                options = _with_body(options, {**options.json_data,
                                               "stream_options": {**(stream_options or {}), "include_usage": True}})
                hide_usage = True
    elif kind == "responses":
        operation = sc.OP_CHAT
        attributes = request_attributes(body, _RESPONSES_PARAMS)
        attributes[sc.OPENAI_API_TYPE] = "responses"
        conversation = body.get("conversation")
        if isinstance(conversation, str):
            attributes[sc.CONVERSATION_ID] = conversation
    else:
        operation = sc.OP_EMBEDDINGS
        attributes = {}
        encoding = body.get("encoding_format")
        if isinstance(encoding, str):
            attributes[sc.REQUEST_ENCODING_FORMATS] = [encoding]

    call = settings.recorder.start_call(
        operation, provider, model, server_address=host, server_port=port, stream=stream, attributes=attributes
    )
    plan = _OpenAIPlan(call, options, body, kind, stream, hide_usage)
    if plan.capture and kind == "chat":
        _capture_chat_input(call, body)
    elif plan.capture and kind == "responses":
        _capture_responses_input(call, body)
    return plan


def _with_body(options: Any, json_data: dict[str, Any]) -> Any:
    """A copy of the request options with another JSON body (the caller's are never changed)."""
    copy = options.model_copy() if hasattr(options, "model_copy") else options.copy()
    copy.json_data = json_data
    return copy


def _output_type(response_format: Any) -> str | None:
    kind = get(response_format, "type") if given(response_format) else None
    if kind in ("json_object", "json_schema"):
        return "json"
    if kind == "text":
        return "text"
    return None


# --- chat and text completions --------------------------------------------------------------------


def _record_completion(plan: _OpenAIPlan, completion: Any) -> None:
    call = plan.call
    choices = get(completion, "choices") or ()
    try:
        reasons = [get(choice, "finish_reason") or "unknown" for choice in choices]
    except TypeError:  # malformed choices must not cost the model, id and usage
        choices, reasons = (), []
    call.set_response(
        model=get(completion, "model"),
        response_id=get(completion, "id"),
        finish_reasons=reasons,
        attributes=_openai_response_attributes(completion),
    )
    _set_chat_usage(call, get(completion, "usage"))
    if plan.capture:
        call.set_content(output_messages=[_output_message(c, r) for c, r in zip(choices, reasons)])


def _openai_response_attributes(obj: Any) -> dict[str, Any]:
    attributes = {}
    tier = get(obj, "service_tier")
    if isinstance(tier, str):
        attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] = tier
    fingerprint = get(obj, "system_fingerprint")
    if isinstance(fingerprint, str):
        attributes[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = fingerprint
    return attributes


def _set_chat_usage(call: LLMCall, usage: Any) -> None:
    if usage is None:
        return
    call.set_usage(
        get(usage, "prompt_tokens"),
        get(usage, "completion_tokens"),
        cache_read_tokens=get(get(usage, "prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=get(get(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


def _unset_usage(chunk: Any) -> None:
    """Take the usage we asked for back out of a chunk the caller sees: as if never sent."""
    if type(chunk) is dict:
        chunk.pop("usage", None)
        return
    fields_set = getattr(chunk, "__pydantic_fields_set__", None)
    if fields_set is not None and "usage" in fields_set:
        chunk.__dict__["usage"] = None
        fields_set.discard("usage")


def _chunk_handler(plan: _OpenAIPlan) -> Callable[[Any], bool]:
    call = plan.call
    seen_first = False
    texts: dict[int, list[str]] = {}
    hide_usage = plan.hide_usage

    def on_chunk(chunk: Any) -> bool:
        nonlocal seen_first
        if not seen_first:
            seen_first = True
            call.set_response(
                model=get(chunk, "model"), response_id=get(chunk, "id"), attributes=_openai_response_attributes(chunk)
            )
        choices = get(chunk, "choices")
        if choices:
            call.chunk()
            for choice in choices:
                if plan.capture:
                    _collect_text(texts, choice)
                reason = get(choice, "finish_reason")
                if reason:
                    index = get(choice, "index")
                    plan.finish_reasons[index if type(index) is int else 0] = reason
                    call.set_response(finish_reasons=[plan.finish_reasons[i] for i in sorted(plan.finish_reasons)])
                    if plan.capture:
                        _set_streamed_output(plan, texts)
        usage = get(chunk, "usage")
        if usage is not None:
            _set_chat_usage(call, usage)
            if hide_usage and not choices:
                return True  # the usage-only chunk we asked for
        if hide_usage:
            _unset_usage(chunk)  # usage on a chunk with choices, or the "usage": null we caused
        return False

    return on_chunk


def _collect_text(texts: dict[int, list[str]], choice: Any) -> None:
    delta = get(choice, "delta")
    content = get(delta, "content") if delta is not None else get(choice, "text")
    if isinstance(content, str) and content:
        index = get(choice, "index")
        texts.setdefault(index if type(index) is int else 0, []).append(content)


# --- responses API --------------------------------------------------------------------------------

_RESPONSE_DONE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _record_response(call: LLMCall, response: Any) -> None:
    status = get(response, "status")
    if status == "completed":
        reasons = ["stop"]
    elif status == "incomplete":
        reasons = [get(get(response, "incomplete_details"), "reason") or "incomplete"]
    else:
        reasons = [status] if isinstance(status, str) else []
    call.set_response(
        model=get(response, "model"),
        response_id=get(response, "id"),
        finish_reasons=reasons,
        attributes=_openai_response_attributes(response),
    )
    usage = get(response, "usage")
    if usage is not None:
        call.set_usage(
            get(usage, "input_tokens"),
            get(usage, "output_tokens"),
            cache_read_tokens=get(get(usage, "input_tokens_details"), "cached_tokens"),
            reasoning_tokens=get(get(usage, "output_tokens_details"), "reasoning_tokens"),
        )
    if call.capture.on_span:
        text = get(response, "output_text")
        if isinstance(text, str):
            call.set_content(
                output_messages=[{"role": "assistant", "parts": [{"type": "text", "content": text}],
                                  "finish_reason": reasons[0] if reasons else "unknown"}]
            )


def _responses_event_handler(plan: _OpenAIPlan) -> Callable[[Any], bool]:
    call = plan.call

    def on_event(event: Any) -> bool:
        kind = get(event, "type") or ""
        if kind.endswith(".delta"):
            call.chunk()
        elif kind in _RESPONSE_DONE_EVENTS:
            _record_response(call, get(event, "response"))
        elif kind == "response.created":  # id and model known from the start, for a stream left early
            response = get(event, "response")
            call.set_response(model=get(response, "model"), response_id=get(response, "id"))
        return False

    return on_event


# --- embeddings -----------------------------------------------------------------------------------


def _record_embeddings(call: LLMCall, response: Any) -> None:
    call.set_response(model=get(response, "model"))
    usage = get(response, "usage")
    if usage is not None:
        call.set_usage(get(usage, "prompt_tokens"))


# --- opt-in content -------------------------------------------------------------------------------


def _capture_chat_input(call: LLMCall, body: Mapping[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, (list, tuple)):
        return
    system, inputs = [], []
    for message in messages:
        role = get(message, "role")
        parts = _text_parts(get(message, "content"))
        if role in ("system", "developer"):
            system.extend(parts)
            continue
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": get(message, "tool_call_id"),
                      "response": get(message, "content")}]
        for tool_call in get(message, "tool_calls") or ():
            parts.append(_tool_call_part(tool_call))
        inputs.append({"role": role, "parts": parts})
    tools = body.get("tools")
    definitions = None
    if given(tools) and isinstance(tools, (list, tuple)):
        definitions = [{"type": "function", "name": get(get(t, "function"), "name"),
                        "description": get(get(t, "function"), "description")} for t in tools]
    call.set_content(input_messages=inputs, system_instructions=system or None, tool_definitions=definitions)


def _capture_responses_input(call: LLMCall, body: Mapping[str, Any]) -> None:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    inputs = [{"role": get(item, "role") or "user", "parts": _text_parts(get(item, "content"))}
              for item in items if get(item, "content") is not None] if isinstance(items, (list, tuple)) else None
    instructions = body.get("instructions")
    call.set_content(
        input_messages=inputs,
        system_instructions=[{"type": "text", "content": instructions}] if isinstance(instructions, str) else None,
    )


def _tool_call_part(tool_call: Any) -> dict[str, Any]:
    function = get(tool_call, "function")
    return {"type": "tool_call", "id": get(tool_call, "id"), "name": get(function, "name"),
            "arguments": get(function, "arguments")}


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, (list, tuple)):
        return [{"type": "text", "content": get(part, "text")} for part in content
                if get(part, "type") in ("text", "input_text", "output_text")]
    return []


def _output_message(choice: Any, finish_reason: str) -> dict[str, Any]:
    message = get(choice, "message")
    parts = _text_parts(get(message, "content") if message is not None else get(choice, "text"))
    parts.extend(_tool_call_part(tool_call) for tool_call in get(message, "tool_calls") or ())
    return {"role": "assistant", "parts": parts, "finish_reason": finish_reason}


def _set_streamed_output(plan: _OpenAIPlan, texts: dict[int, list[str]]) -> None:
    plan.call.set_content(
        output_messages=[
            {"role": "assistant", "parts": [{"type": "text", "content": "".join(texts.get(index, ()))}],
             "finish_reason": reason}
            for index, reason in sorted(plan.finish_reasons.items())
        ]
    )
