"""Instrumentation of the ``google-genai`` SDK (``from google import genai``), 2.x and 3.x.

Where: ``Models._generate_content``, ``Models._generate_content_stream`` and ``Models._embed_content``,
and the same three of ``AsyncModels`` (``client.aio.models``). Each runs exactly one HTTP request
to the model, and every public path ends in one of them: ``generate_content(_stream)``,
``embed_content``, ``chats`` sessions (they call ``models.generate_content``), each round of
automatic function calling and each hop of automatic continuation. So one span is one request to
the model, with that request's own usage (the public methods hand back usage merged across hops).
They are looked up on the class at call time, so clients created, and public methods bound,
before ``instrument()`` are seen, and ``uninstrument()`` puts the originals back. They receive the
caller's ``model`` and ``config`` and return the SDK's parsed objects: nothing is parsed twice.

Token counts: input is ``prompt_token_count`` (it includes cached content) plus
``tool_use_prompt_token_count`` (results of the model's built-in tools, fed back and billed as
input); output is ``candidates_token_count + thoughts_token_count`` (the conventions' output count
includes reasoning, which Gemini bills as output); reasoning is ``thoughts_token_count``; cache read
is ``cached_content_token_count``. So input + output is Gemini's ``total_token_count``.

Provider: ``gcp.vertex_ai`` for ``Client(vertexai=True, ...)``, else ``gcp.gemini``
(``OTEL_LLM_PROVIDERS`` overrides by host). ``server.address``/``server.port`` come from the base
URL the request goes to: the request's ``http_options.base_url``, else the client's.

Entry point name ``otel_llm_google_genai`` (the official instrumentation is ``google-genai``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv as sc
from ..recorder import LLMCall, Recorder, register_error_type, report_internal_error
from ..streaming import AsyncStreamProxy, SyncStreamProxy
from ._common import get, provider_for, provider_overrides_from_env, recorder_from

GENERATE = "generate"
STREAM = "stream"
EMBED = "embed"
# (class in google.genai.models, method, kind); _embed_content is there from 2.0 on.
PATCHES = (
    ("Models", "_generate_content", GENERATE),
    ("Models", "_generate_content_stream", STREAM),
    ("Models", "_embed_content", EMBED),
    ("AsyncModels", "_generate_content", GENERATE),
    ("AsyncModels", "_generate_content_stream", STREAM),
    ("AsyncModels", "_embed_content", EMBED),
)
_CONFIG_PARAMS = (
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("top_k", sc.REQUEST_TOP_K),
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("stop_sequences", sc.REQUEST_STOP_SEQUENCES),
    ("seed", sc.REQUEST_SEED),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
)
_OUTPUT_TYPES = {"application/json": "json", "text/plain": "text", "text/x.enum": "text"}
_DEFAULT_PORTS = {"https": 443, "http": 80}


class GoogleGenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``GoogleGenAIInstrumentor().instrument(tracer_provider=..., meter_provider=...)``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("google-genai >= 2.0, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        from google.genai import errors, models

        # one class per status family (ClientError: every 4xx): error.type is Google's status instead,
        # RESOURCE_EXHAUSTED, INVALID_ARGUMENT, ..., so a 429 and a 400 are told apart
        register_error_type(errors.APIError, lambda exc: getattr(exc, "status", None))
        self.recorder = recorder_from(kwargs)
        starter = _Starter(self.recorder, provider_overrides_from_env())
        for owner, method, kind in PATCHES:
            cls = getattr(models, owner)
            if hasattr(cls, method):
                is_async = owner == "AsyncModels"
                wrapt.wrap_function_wrapper(cls, method, (_async_wrapper if is_async else _sync_wrapper)(starter, kind))

    def _uninstrument(self, **kwargs: Any) -> None:
        from google.genai import models

        for owner, method, _kind in PATCHES:
            unwrap(getattr(models, owner), method)


# --- the wrappers ---------------------------------------------------------------------------------


def _sync_wrapper(starter: _Starter, kind: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        call = starter.start(kind, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        token = otel_context.attach(call.context)
        try:
            result = wrapped(*args, **kwargs)  # for a stream: a generator, sending nothing yet
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            otel_context.detach(token)
        return _on_result(call, kind, result, is_async=False)

    return wrapper


def _async_wrapper(starter: _Starter, kind: str) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        call = starter.start(kind, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = otel_context.attach(call.context)
        try:
            result = await wrapped(*args, **kwargs)  # for a stream: sent, and an async generator back
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            otel_context.detach(token)
        return _on_result(call, kind, result, is_async=True)

    return wrapper


def _on_result(call: LLMCall, kind: str, result: Any, is_async: bool) -> Any:
    """Record a response and end the call, or wrap a stream so that it ends the call later."""
    try:
        if kind == STREAM:
            return (AsyncStreamProxy if is_async else SyncStreamProxy)(result, call, _chunk_handler(call))
        if kind == EMBED:
            _record_embeddings(call, result)
        else:
            _record_response(call, result)
    except Exception:
        report_internal_error(f"google-genai {kind} response")
    call.end()  # a no-op once ended; never reached for a wrapped stream
    return result


class _Starter:
    """Opens the call for one intercepted request (or returns None: the request passes untouched)."""

    __slots__ = ("recorder", "overrides", "_servers")

    def __init__(self, recorder: Recorder, overrides: Mapping[str, str]) -> None:
        self.recorder = recorder
        self.overrides = overrides
        self._servers: dict[tuple[str, bool], tuple[str | None, int | None, str]] = {}

    def start(self, kind: str, models: Any, kwargs: Mapping[str, Any]) -> LLMCall | None:
        try:
            config = kwargs.get("config")
            api_client = models._api_client
            host, port, provider = self._server(api_client, config)
            attributes = _config_attributes(config) if kind != EMBED else None
            call = self.recorder.start_call(
                sc.OP_EMBEDDINGS if kind == EMBED else sc.OP_GENERATE_CONTENT,
                provider,
                model_name(kwargs.get("model")),
                server_address=host,
                server_port=port,
                stream=kind == STREAM,
                attributes=attributes,
            )
        except Exception:
            report_internal_error("google-genai request")
            return None
        if kind != EMBED and call.capture.enabled:
            try:
                _capture_input(call, kwargs.get("contents"), config)
            except Exception:
                report_internal_error("google-genai request content")
        return call

    def _server(self, api_client: Any, config: Any) -> tuple[str | None, int | None, str]:
        """(host, port, provider) of the base URL this request goes to, worked out once per URL."""
        base_url = get(get(config, "http_options"), "base_url") or get(api_client._http_options, "base_url")
        vertex = bool(api_client.vertexai)
        key = (str(base_url), vertex)
        found = self._servers.get(key)
        if found is None:
            default = sc.PROVIDER_GCP_VERTEX_AI if vertex else sc.PROVIDER_GCP_GEMINI
            host: str | None = None
            port: int | None = None
            if base_url:
                url = urlsplit(str(base_url))
                host = url.hostname
                port = url.port or _DEFAULT_PORTS.get(url.scheme)
            found = (host, port, provider_for(host, port, default, self.overrides))
            if len(self._servers) >= 256:  # bounded: per-request base URLs could be many
                self._servers.clear()
            self._servers[key] = found
        return found


def model_name(model: Any) -> str | None:
    """The model's name without the resource path the SDK accepts around it: ``models/x``,
    ``publishers/google/models/x`` and ``projects/.../models/x`` are all ``x``."""
    if not isinstance(model, str) or not model:
        return None
    prefix, found, name = model.rpartition("models/")
    if found and name and (not prefix or prefix.endswith("/")):
        return name
    return model


def _config_attributes(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    attributes: dict[str, Any] = {}
    for name, attribute in _CONFIG_PARAMS:
        value = get(config, name)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            attributes[attribute] = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            attributes[attribute] = list(value)
    count = get(config, "candidate_count")
    if isinstance(count, int) and not isinstance(count, bool) and count != 1:
        attributes[sc.REQUEST_CHOICE_COUNT] = count
    output_type = _OUTPUT_TYPES.get(get(config, "response_mime_type"))  # type: ignore[arg-type]
    if output_type:
        attributes[sc.OUTPUT_TYPE] = output_type
    return attributes


# --- responses and streamed chunks ----------------------------------------------------------------


def _count(*values: Any) -> int | None:
    """The sum of the counts given (non-counts ignored; Vertex AI's embedding statistics count in
    floats); None when there is none."""
    counts = [int(v) for v in values
              if (type(v) is int) or (type(v) is float and v.is_integer() and v >= 0)]
    return sum(counts) if counts else None


def _set_usage(call: LLMCall, usage: Any) -> None:
    if usage is None:
        return
    thoughts = get(usage, "thoughts_token_count")
    call.set_usage(
        _count(get(usage, "prompt_token_count"), get(usage, "tool_use_prompt_token_count")),
        _count(get(usage, "candidates_token_count"), thoughts),
        cache_read_tokens=get(usage, "cached_content_token_count"),
        reasoning_tokens=thoughts,
    )


def _finish_reasons(candidates: Any) -> list[str]:
    reasons = []
    for candidate in candidates or ():
        reason = get(candidate, "finish_reason")
        if reason:
            reasons.append(str(getattr(reason, "value", reason)).lower())
    return reasons


def _record_response(call: LLMCall, response: Any) -> None:
    candidates = get(response, "candidates")
    call.set_response(
        model=get(response, "model_version"),
        response_id=get(response, "response_id"),
        finish_reasons=_finish_reasons(candidates),
    )
    _set_usage(call, get(response, "usage_metadata"))
    if call.capture.enabled:
        call.set_content(output_messages=[_output_message(c) for c in candidates or ()])


def _record_embeddings(call: LLMCall, response: Any) -> None:
    tokens = get(get(response, "usage_metadata"), "prompt_token_count")
    if tokens is None:  # Vertex AI's :predict counts per embedding
        tokens = _count(*(get(get(e, "statistics"), "token_count") for e in get(response, "embeddings") or ()))
    call.set_usage(tokens)


def _chunk_handler(call: LLMCall) -> Callable[[Any], bool]:
    """Each chunk: a ``call.chunk()`` when it has content; id and model from the first that says;
    finish reasons and usage from the latest that carries them (Gemini's usage is a running total)."""
    texts: list[str] | None = [] if call.capture.enabled else None
    named = [False]

    def on_chunk(chunk: Any) -> bool:
        candidates = get(chunk, "candidates")
        if candidates and any(get(get(c, "content"), "parts") for c in candidates):
            call.chunk()
        if not named[0]:
            model, response_id = get(chunk, "model_version"), get(chunk, "response_id")
            if model or response_id:
                named[0] = True
                call.set_response(model=model, response_id=response_id)
        usage = get(chunk, "usage_metadata")
        if usage is not None:
            _set_usage(call, usage)
        if candidates:
            if texts is not None:
                texts.extend(_texts(get(candidates[0], "content")))
            reasons = _finish_reasons(candidates)
            if reasons:
                call.set_response(finish_reasons=reasons)
                if texts is not None:
                    call.set_content(output_messages=[{
                        "role": "assistant", "parts": [{"type": "text", "content": "".join(texts)}],
                        "finish_reason": reasons[0],
                    }])
        return False

    return on_chunk


# --- opt-in content -------------------------------------------------------------------------------


def _texts(content: Any) -> list[str]:
    return [text for part in get(content, "parts") or () if not get(part, "thought")
            for text in (get(part, "text"),) if isinstance(text, str)]


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in get(content, "parts") or ():
        text = get(part, "text")
        call = get(part, "function_call")
        result = get(part, "function_response")
        file = get(part, "file_data")
        blob = get(part, "inline_data")
        if text is not None:
            parts.append({"type": "reasoning" if get(part, "thought") else "text", "content": text})
        elif call is not None:
            parts.append({"type": "tool_call", "id": get(call, "id"), "name": get(call, "name"),
                          "arguments": get(call, "args")})
        elif result is not None:
            parts.append({"type": "tool_call_response", "id": get(result, "id"), "response": get(result, "response")})
        elif file is not None:
            parts.append({"type": "uri", "uri": get(file, "file_uri"), "mime_type": get(file, "mime_type")})
        elif blob is not None:  # the bytes themselves stay out
            parts.append({"type": "blob", "mime_type": get(blob, "mime_type")})
    return parts


def _role(role: Any) -> str:
    return "assistant" if role == "model" else str(role or "user")


def _capture_input(call: LLMCall, contents: Any, config: Any) -> None:
    from google.genai import _transformers

    messages = [{"role": _role(get(c, "role")), "parts": _parts(c)} for c in _transformers.t_contents(contents)]
    system = get(config, "system_instruction")
    tools = get(config, "tools")
    call.set_content(
        input_messages=messages,
        system_instructions=_parts(_transformers.t_content(system)) if system else None,
        tool_definitions=_tool_definitions(tools) if tools else None,
    )


def _tool_definitions(tools: Any) -> list[dict[str, Any]]:
    definitions = []
    for tool in tools:
        if callable(tool):  # a Python function for automatic function calling
            definitions.append({"type": "function", "name": getattr(tool, "__name__", None),
                                "description": getattr(tool, "__doc__", None)})
            continue
        for declaration in get(tool, "function_declarations") or ():
            definitions.append({"type": "function", "name": get(declaration, "name"),
                                "description": get(declaration, "description")})
    return definitions


def _output_message(candidate: Any) -> dict[str, Any]:
    reasons = _finish_reasons([candidate])
    return {"role": "assistant", "parts": _parts(get(candidate, "content")),
            "finish_reason": reasons[0] if reasons else "unknown"}
