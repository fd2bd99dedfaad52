"""Instrumentation of Amazon Bedrock Runtime through boto3/botocore.

One ``wrapt`` patch on ``botocore.client.BaseClient._make_api_call``: every operation of every boto3
client passes there, on the class, so clients created before ``instrument()`` are covered. Four
operation names (``Converse``, ``ConverseStream``, ``InvokeModel``, ``InvokeModelWithResponseStream``)
are looked up in one dict; everything else passes straight through, and a match is then checked to
be the ``bedrock-runtime`` service. One call is one GenAI span (``chat``, ``text_completion`` or
``embeddings``), provider ``aws.bedrock``, model = ``modelId``, ``server.address`` / ``server.port``
from the client's endpoint URL.

- ``converse``: usage, ``stopReason`` and (opt-in) content from the response dict.
- ``converse_stream``: the EventStream is wrapped; ``contentBlockDelta`` events are the chunks,
  ``messageStop`` gives the finish reason, ``metadata`` the usage.
- ``invoke_model``: token counts from Bedrock's ``X-Amzn-Bedrock-*-Token-Count`` response headers.
  The response body is the caller's ``StreamingBody``, returned untouched and never read by us, so
  the model family's finish reason (only in the body) is not recorded for this operation.
- ``invoke_model_with_response_stream``: the EventStream is wrapped; each ``chunk``'s JSON is read
  (a copy of what the caller gets) for the family's finish reason and text, and for usage in Bedrock's
  ``amazon-bedrock-invocationMetrics`` of the last chunk (family fields where it is missing).

Streams end the call exactly once: exhausted, left early (``break``, ``close()``, garbage collected:
cancelled), or raising mid-stream (failed). Errors are botocore's own exceptions, re-raised untouched;
``error.type`` is the AWS error code (see ``_error_type``).

Entry point name ``otel_llm_bedrock`` (the official ``botocore`` instrumentation is separate; running
both gives two spans per call).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv as sc
from ..recorder import LLMCall, Recorder, error_type, report_internal_error
from ._common import recorder_from

_SERVICE = "bedrock-runtime"
# operation name -> streamed?
_OPERATIONS = {
    "Converse": False,
    "ConverseStream": True,
    "InvokeModel": False,
    "InvokeModelWithResponseStream": True,
}
_CONVERSE_PARAMS = (
    ("maxTokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("topP", sc.REQUEST_TOP_P),
    ("stopSequences", sc.REQUEST_STOP_SEQUENCES),
)
# InvokeModel bodies: each family names its parameters its own way, at the top level (Anthropic,
# Llama, Mistral, Cohere), in textGenerationConfig (Titan) or in inferenceConfig (Nova).
_BODY_PARAMS = (
    (sc.REQUEST_MAX_TOKENS, ("max_tokens", "max_gen_len", "maxTokenCount", "max_new_tokens")),
    (sc.REQUEST_TEMPERATURE, ("temperature",)),
    (sc.REQUEST_TOP_P, ("top_p", "topP", "p")),
    (sc.REQUEST_TOP_K, ("top_k", "topK", "k")),
    (sc.REQUEST_STOP_SEQUENCES, ("stop_sequences", "stopSequences", "stop")),
)
_MAX_BODY_PARSED = 1 << 20  # request bodies larger than this (images, documents) are not parsed
_INPUT_HEADER = "x-amzn-bedrock-input-token-count"
_OUTPUT_HEADER = "x-amzn-bedrock-output-token-count"
_CACHE_READ_HEADER = "x-amzn-bedrock-cache-read-input-token-count"
_CACHE_WRITE_HEADER = "x-amzn-bedrock-cache-write-input-token-count"
_DEFAULT_PORTS = {"https": 443, "http": 80}


class BedrockInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``BedrockInstrumentor().instrument(tracer_provider=..., meter_provider=...)``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("botocore >= 1.34.116, < 2",)  # the first botocore with Converse and ConverseStream

    def _instrument(self, **kwargs: Any) -> None:
        self.recorder = recorder_from(kwargs)
        wrapt.wrap_function_wrapper("botocore.client", "BaseClient._make_api_call", _Wrapper(self.recorder))

    def _uninstrument(self, **kwargs: Any) -> None:
        from botocore.client import BaseClient

        unwrap(BaseClient, "_make_api_call")


class _Wrapper:
    __slots__ = ("recorder", "_servers")

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._servers: dict[str, tuple[str | None, int | None]] = {}  # endpoint URL -> (host, port)

    def __call__(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        stream = _OPERATIONS.get(args[0]) if len(args) == 2 else None
        if stream is None:
            return wrapped(*args, **kwargs)
        try:
            call = self._start(instance, args[0], args[1], stream)
        except Exception:
            report_internal_error("bedrock request")
            call = None
        if call is None:
            return wrapped(*args, **kwargs)
        token = otel_context.attach(call.context)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _fail(call, exc)
            raise
        finally:
            otel_context.detach(token)
        try:
            return _on_result(call, args[0], result)
        except Exception:
            report_internal_error("bedrock response")
            call.end()
            return result

    def _start(self, client: Any, operation: str, params: Mapping[str, Any], stream: bool) -> LLMCall | None:
        if client.meta.service_model.service_name != _SERVICE:
            return None
        model = params.get("modelId")
        model = model if isinstance(model, str) else None
        host, port = self._server_of(client.meta.endpoint_url)
        converse = operation.startswith("Converse")
        if converse:
            kind = sc.OP_CHAT
            attributes = _converse_attributes(params)
            body = None
        else:
            body = _request_body(params.get("body"))
            kind = _invoke_operation(model, body)
            attributes = _body_attributes(body) if body is not None else {}
        call = self.recorder.start_call(
            kind, sc.PROVIDER_AWS_BEDROCK, model, server_address=host, server_port=port, stream=stream,
            attributes=attributes,
        )
        if call.capture.enabled:
            _capture_input(call, params, body, converse)
        return call

    def _server_of(self, url: str | None) -> tuple[str | None, int | None]:
        found = self._servers.get(url or "")
        if found is None:
            parts = urlsplit(url or "")
            found = (parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme))
            if len(self._servers) >= 256:  # bounded: clients with ever new endpoint URLs
                self._servers.clear()
            self._servers[url or ""] = found
        return found


def _on_result(call: LLMCall, operation: str, result: Any) -> Any:
    if operation == "Converse":
        _record_converse(call, result)
        call.end()
    elif operation == "InvokeModel":
        _record_invoke_headers(call, result)
        call.end()
    elif operation == "ConverseStream":
        result["stream"] = EventStreamProxy(result["stream"], call, _ConverseStreamHandler(call))
    else:
        result["body"] = EventStreamProxy(result["body"], call, _InvokeStreamHandler(call))
    return result


def _error_type(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (the conventions' first choice: "the error code
    returned by the provider"), else the exception's class name as for every other instrumentor.

    For a code botocore models the two are the same (``ThrottlingException`` is raised as the class
    ``ThrottlingException``); they differ for codes it does not model (raised as ``ClientError``) and
    for errors inside an event stream (``EventStreamError``, code ``modelStreamErrorException``:
    upper-cased first, so a mid-stream ``throttlingException`` reads as the request-time one).
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code[0].upper() + code[1:]
    return error_type(exc)


def _fail(call: LLMCall, exc: BaseException) -> None:
    try:
        code = _error_type(exc) if isinstance(exc, Exception) else None
    except Exception:
        code = None
    if code is not None and code != error_type(exc):
        call.fail(code)  # the code as error.type; the status message is the code too
    else:
        call.fail(exc)


# --- requests ----------------------------------------------------------------------------------------


def _converse_attributes(params: Mapping[str, Any]) -> dict[str, Any]:
    config = params.get("inferenceConfig")
    return _scalars(config, _CONVERSE_PARAMS) if isinstance(config, dict) else {}


def _scalars(source: Mapping[str, Any], mapping: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, attribute in mapping:
        value = source.get(key)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            attributes[attribute] = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            attributes[attribute] = list(value)
    return attributes


def _request_body(body: Any) -> dict[str, Any] | None:
    """The InvokeModel request body as JSON, when it is bytes or text (a file object is left unread)."""
    if not isinstance(body, (bytes, bytearray, str)) or len(body) > _MAX_BODY_PARSED:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _invoke_operation(model: str | None, body: Mapping[str, Any] | None) -> str:
    if model and "embed" in model.lower():
        return sc.OP_EMBEDDINGS
    if body is not None and "messages" not in body and "message" not in body and (
        "prompt" in body or "inputText" in body
    ):
        return sc.OP_TEXT_COMPLETION  # Llama, Mistral, Titan text, Cohere Command: a prompt, not messages
    return sc.OP_CHAT


def _body_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    sections = [body] + [body[k] for k in ("textGenerationConfig", "inferenceConfig") if isinstance(body.get(k), dict)]
    for attribute, keys in _BODY_PARAMS:
        for section in sections:
            found = _scalars(section, tuple((key, attribute) for key in keys))
            if found:
                attributes.update(found)
                break
    return attributes


# --- responses ---------------------------------------------------------------------------------------


def _set_converse_usage(call: LLMCall, usage: Any) -> None:
    """Bedrock's ``inputTokens`` leaves out the input read from and written to the prompt cache
    (AWS user guide, prompt caching: "total input tokens = inputTokens + cacheReadInputTokens +
    cacheWriteInputTokens", https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html;
    seen in real responses in tensorzero/tensorzero#5688: inputTokens 18, cacheWriteInputTokens 7502,
    totalTokens 7906 with 386 output). The conventions' input count includes cached input: add them."""
    if not isinstance(usage, dict):
        return
    _set_usage(call, usage.get("inputTokens"), usage.get("outputTokens"),
               usage.get("cacheReadInputTokens"), usage.get("cacheWriteInputTokens"))


def _set_usage(call: LLMCall, uncached: Any, output: Any, cache_read: Any, cache_write: Any) -> None:
    counts = [_int(uncached), _int(cache_read), _int(cache_write)]
    total = None if counts[0] is None else sum(c or 0 for c in counts)
    call.set_usage(total, _int(output), cache_read_tokens=counts[1], cache_creation_tokens=counts[2])


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _record_converse(call: LLMCall, response: Any) -> None:
    if not isinstance(response, dict):
        return
    reason = response.get("stopReason")
    if isinstance(reason, str):
        call.set_response(finish_reasons=[reason])
    _set_converse_usage(call, response.get("usage"))
    if call.capture.enabled:
        message = (response.get("output") or {}).get("message") or {}
        call.set_content(output_messages=[{
            "role": message.get("role", "assistant"), "parts": _converse_parts(message.get("content")),
            "finish_reason": reason or "unknown",
        }])


def _record_invoke_headers(call: LLMCall, response: Any) -> None:
    """Token counts from the headers Bedrock sends on every InvokeModel response; the body stays unread.
    The input count leaves the cache out as Converse's does (separate cache headers): added back."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") if isinstance(response, dict) else None
    if isinstance(headers, dict):
        _set_usage(call, headers.get(_INPUT_HEADER), headers.get(_OUTPUT_HEADER),
                   headers.get(_CACHE_READ_HEADER), headers.get(_CACHE_WRITE_HEADER))


class EventStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """botocore's ``EventStream`` as the caller knows it (``isinstance``, ``close()``,
    ``get_initial_response()``), whose iteration shows each event to ``on_event`` and ends the call:
    exhausted (end), raising (fail), left by ``break`` or ``close()`` or dropped (cancel)."""

    def __init__(self, stream: Any, call: LLMCall, on_event: Callable[[Any], None]) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_on_event = on_event
        weakref.finalize(self, call.cancel)  # dropped unread: the consumer stopped

    def __iter__(self) -> Any:
        return _events(self.__wrapped__, self._self_call, self._self_on_event)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.cancel()  # a no-op once the stream ended


def _events(stream: Any, call: LLMCall, on_event: Callable[[Any], None]) -> Any:
    try:
        for item in stream:
            try:
                on_event(item)
            except Exception:
                report_internal_error("bedrock stream event")
            yield item
    except GeneratorExit:  # the loop was left (break, or the generator dropped)
        call.cancel()
        raise
    except BaseException as exc:
        _fail(call, exc)
        raise
    call.end()


class _ConverseStreamHandler:
    __slots__ = ("call", "texts")

    def __init__(self, call: LLMCall) -> None:
        self.call = call
        self.texts: list[str] | None = [] if call.capture.enabled else None

    def __call__(self, event: Any) -> None:
        if "contentBlockDelta" in event:
            self.call.chunk()
            if self.texts is not None:
                text = event["contentBlockDelta"].get("delta", {}).get("text")
                if isinstance(text, str):
                    self.texts.append(text)
        elif "messageStop" in event:
            reason = event["messageStop"].get("stopReason")
            if isinstance(reason, str):
                self.call.set_response(finish_reasons=[reason])
                if self.texts is not None:
                    self.call.set_content(output_messages=[_text_message("".join(self.texts), reason)])
        elif "metadata" in event:
            _set_converse_usage(self.call, event["metadata"].get("usage"))


class _InvokeStreamHandler:
    """The ``chunk`` events of InvokeModelWithResponseStream, whatever the model family."""

    __slots__ = ("call", "texts", "reason")

    def __init__(self, call: LLMCall) -> None:
        self.call = call
        self.texts: list[str] | None = [] if call.capture.enabled else None
        self.reason: str | None = None

    def __call__(self, event: Any) -> None:
        data = event.get("chunk", {}).get("bytes") if isinstance(event, dict) else None
        if not data:
            return
        try:
            body = json.loads(data)
        except ValueError:  # the provider's malformed chunk: nothing to read, not our error
            return
        if not isinstance(body, dict):
            return
        call = self.call
        text = _chunk_text(body)
        if text is not None:
            call.chunk()
            if self.texts is not None:
                self.texts.append(text)
        reason = _chunk_finish_reason(body)
        if reason:
            self.reason = reason
            call.set_response(finish_reasons=[reason])
        if body.get("type") == "message_start":  # Anthropic: id and model; its output count is a placeholder
            message = body.get("message") or {}
            call.set_response(model=message.get("model"), response_id=message.get("id"))
        _family_usage(call, body)
        metrics = body.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):  # Bedrock's own count, in the last chunk of every family
            _set_usage(call, metrics.get("inputTokenCount"), metrics.get("outputTokenCount"),
                       metrics.get("cacheReadInputTokenCount"), metrics.get("cacheWriteInputTokenCount"))
            if self.texts is not None:
                call.set_content(output_messages=[_text_message("".join(self.texts), self.reason)])


def _chunk_text(body: Mapping[str, Any]) -> str | None:
    """The output text a chunk carries, in its family's field; None for chunks without output."""
    kind = body.get("type")
    if kind is not None:  # Anthropic's events: only content_block_delta carries output
        delta = body.get("delta") if kind == "content_block_delta" else None
        return _text_or_empty(delta.get("text")) if isinstance(delta, dict) else None
    if "contentBlockDelta" in body:  # Nova
        delta = body["contentBlockDelta"].get("delta") or {}
        return _text_or_empty(delta.get("text"))
    for key in ("generation", "outputText", "text"):  # Llama, Titan, Cohere
        if isinstance(body.get(key), str):
            return body[key]
    outputs = body.get("outputs")  # Mistral
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict) and isinstance(outputs[0].get("text"), str):
        return outputs[0]["text"]
    return None


def _text_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _chunk_finish_reason(body: Mapping[str, Any]) -> str | None:
    for holder, key in (
        (body.get("delta"), "stop_reason"),  # Anthropic message_delta
        (body.get("messageStop"), "stopReason"),  # Nova
        (body, "stop_reason"),  # Llama
        (body, "completionReason"),  # Titan
        (body, "finish_reason"),  # Cohere
    ):
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            return holder[key]
    outputs = body.get("outputs")  # Mistral
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        reason = outputs[0].get("stop_reason")
        return reason if isinstance(reason, str) else None
    return None


def _family_usage(call: LLMCall, body: Mapping[str, Any]) -> None:
    """Usage in the family's own fields, for a stream whose last chunk lacks Bedrock's metrics."""
    kind = body.get("type")
    if kind == "message_start":  # Anthropic: its input counts leave the cache out
        usage = (body.get("message") or {}).get("usage") or {}
        _set_usage(call, usage.get("input_tokens"), None, usage.get("cache_read_input_tokens"),
                   usage.get("cache_creation_input_tokens"))
    elif kind == "message_delta":
        call.set_usage(output_tokens=_int((body.get("usage") or {}).get("output_tokens")))
    elif isinstance(body.get("metadata"), dict):  # Nova
        usage = body["metadata"].get("usage") or {}
        _set_usage(call, usage.get("inputTokens"), usage.get("outputTokens"), usage.get("cacheReadInputTokenCount"),
                   usage.get("cacheWriteInputTokenCount"))
    else:  # Llama (prompt_token_count on the first chunk), Titan (counts on each chunk)
        call.set_usage(_int(body.get("prompt_token_count") or body.get("inputTextTokenCount")),
                       _int(body.get("generation_token_count") or body.get("totalOutputTextTokenCount")))


# --- opt-in content ----------------------------------------------------------------------------------


def _text_message(text: str, reason: str | None) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": reason or "unknown"}


def _converse_parts(content: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if "text" in block:
            parts.append({"type": "text", "content": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            parts.append({"type": "tool_call", "id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": use.get("input")})
        elif "toolResult" in block:
            result = block["toolResult"]
            parts.append({"type": "tool_call_response", "id": result.get("toolUseId"),
                          "response": _converse_parts(result.get("content"))})
        elif "reasoningContent" in block:
            reasoning = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            parts.append({"type": "reasoning", "content": reasoning})
    return parts


def _body_parts(content: Any) -> list[dict[str, Any]]:
    """Message content of an InvokeModel body: a string, Anthropic blocks or Nova blocks."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append({"type": "text", "content": block["text"]})
    return parts


def _capture_input(call: LLMCall, params: Mapping[str, Any], body: Mapping[str, Any] | None, converse: bool) -> None:
    if converse:
        messages = params.get("messages")
        system = params.get("system")
        call.set_content(
            input_messages=[{"role": m.get("role"), "parts": _converse_parts(m.get("content"))}
                            for m in messages if isinstance(m, dict)] if isinstance(messages, list) else None,
            system_instructions=_converse_parts(system) if isinstance(system, list) and system else None,
        )
        return
    if body is None:
        return
    messages = body.get("messages")
    if isinstance(messages, list):
        system = body.get("system")
        call.set_content(
            input_messages=[{"role": m.get("role"), "parts": _body_parts(m.get("content"))}
                            for m in messages if isinstance(m, dict)],
            system_instructions=_body_parts(system) if system else None,
        )
        return
    prompt = next((body[key] for key in ("prompt", "inputText", "message") if isinstance(body.get(key), str)), None)
    if prompt is not None:
        call.set_content(input_messages=[{"role": "user", "parts": [{"type": "text", "content": prompt}]}])
