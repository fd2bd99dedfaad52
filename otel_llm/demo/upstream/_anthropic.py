"""The Anthropic Messages API: ``/v1/messages`` (plain and SSE streaming) and ``/v1/messages/count_tokens``."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from ._common import (
    RATE_LIMIT_INPUT_TOKENS,
    RATE_LIMIT_OUTPUT_TOKENS,
    RATE_LIMIT_REQUESTS,
    RATE_LIMIT_TOKENS,
    Api,
    ApiError,
    ErrorSpec,
    Quota,
    chunks,
    generate,
    new_id,
    pieces,
    response_model,
    schema_sample,
    text_of,
    tokens,
    weather_call,
)
from ._handler import Handler

MIN_CACHEABLE_TOKENS = 1024
#: Anthropic's error ``type`` for each status.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}


class AnthropicApi(Api):
    path_prefix = "/v1/messages"
    routes = {("POST", "/v1/messages"): "_messages", ("POST", "/v1/messages/count_tokens"): "_count_tokens"}
    errors = {
        "unauthorized": ErrorSpec(401, "x-api-key header is required"),
        "no_route": ErrorSpec(404, "Not Found"),
        "bad_json": ErrorSpec(400, "There was an issue with the formatting or content of your request."),
        "too_large": ErrorSpec(413, "Request exceeds the maximum allowed number of bytes."),
        "context": ErrorSpec(400, "prompt is too long: {chars} characters > 100000 maximum"),
        "missing": ErrorSpec(400, "{param}: Field required"),
        "server": ErrorSpec(500, "Internal server error"),
        "rate_limit": ErrorSpec(429, "This request would exceed your organization's rate limit. Please try again "
                                     "later."),
        "overloaded": ErrorSpec(529, "Overloaded"),
        "invalid_model": ErrorSpec(400, "model: `{model}` is not a valid model name"),
        "unknown_model": ErrorSpec(404, "model: {model}"),
    }
    model_failures = {"error-500": "server", "error-429": "rate_limit", "error-529": "overloaded",
                      "error-400": "invalid_model"}
    malformed_event = ("message_start", '{"type": "message_start", "message": { this is not json')
    malformed_body = b'{"id": "msg_broken", "type": "message", "content": [ this is not json'

    def authorized(self, headers: Any) -> bool:
        return bool((headers.get("x-api-key") or "").strip()) or super().authorized(headers)

    def error_body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        error = {"type": err.type or _ERROR_TYPES.get(err.status, "api_error"), "message": err.message}
        return {"type": "error", "error": error, "request_id": request_id}

    def response_headers(self, quota: Quota, request_id: str) -> dict[str, str]:
        reset = (datetime.now(timezone.utc) + timedelta(seconds=quota.reset_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"request-id": request_id}
        for name, limit, used in (
            ("requests", RATE_LIMIT_REQUESTS, quota.requests),
            ("tokens", RATE_LIMIT_TOKENS, quota.input_tokens + quota.output_tokens),
            ("input-tokens", RATE_LIMIT_INPUT_TOKENS, quota.input_tokens),
            ("output-tokens", RATE_LIMIT_OUTPUT_TOKENS, quota.output_tokens),
        ):
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, limit - used))
            headers[f"anthropic-ratelimit-{name}-reset"] = reset
        return headers


ANTHROPIC = AnthropicApi()


class _Block(NamedTuple):
    """One content block: as in a Message, as announced by ``content_block_start``, and its stream deltas."""

    final: dict
    start: dict
    deltas: list[dict]


def _text_block(words: list[str]) -> _Block:
    deltas = [{"type": "text_delta", "text": piece} for piece in pieces(words)]
    return _Block({"type": "text", "text": " ".join(words)}, {"type": "text", "text": ""}, deltas)


def _thinking_block(words: list[str]) -> _Block:
    text = " ".join(words)
    signature = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces(words)]
    deltas.append({"type": "signature_delta", "signature": signature})
    start = {"type": "thinking", "thinking": "", "signature": ""}
    return _Block({"type": "thinking", "thinking": text, "signature": signature}, start, deltas)


def _tool_use_block(name: str, arguments: dict) -> _Block:
    block = {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": arguments}
    deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in ["", *chunks(json.dumps(arguments))]]
    return _Block(block, {**block, "input": {}}, deltas)


def _prompt(body: dict) -> tuple[str, str]:
    """The prompt text (system and messages), and its prefix up to the last block marked with
    ``cache_control`` ("" when none is); a top-level ``cache_control`` marks the last block."""
    texts, marked = [], 0
    for part in [body.get("system"), *body["messages"]]:
        content = part.get("content") if isinstance(part, dict) else part
        for block in content if isinstance(content, list) else [content]:
            texts.append(text_of(block))
            if isinstance(block, dict) and block.get("cache_control"):
                marked = len(texts)
    if body.get("cache_control"):
        marked = len(texts)
    return " ".join(filter(None, texts)), " ".join(filter(None, texts[:marked]))


class _Answer(NamedTuple):
    blocks: list[_Block]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int  # thinking included
    thinking_tokens: int


def _answer(body: dict, prompt: str) -> _Answer:
    """What the simulated model says: one token per word; thinking first if requested, then a tool call if
    tools are given and the last user turn asks about the weather, else text up to ``max_tokens`` or the
    first of the ``stop_sequences``."""
    blocks, thinking = [], 0
    if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        words, _ = generate(f"thinking about: {prompt}", 0, None)
        blocks.append(_thinking_block(words))
        thinking = len(words)
    user_turns = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    forced = tools[0] if choice.get("type") == "any" and tools else next(
        (t for t in tools if choice.get("type") == "tool" and t.get("name") == choice.get("name")), None)
    if forced:  # a forced tool call (structured output): input that fits the tool's schema, no text
        name, arguments = forced.get("name", "tool"), schema_sample(forced.get("input_schema") or {})
        blocks.append(_tool_use_block(name, arguments))
        return _Answer(blocks, "tool_use", None, thinking + tokens(f"{name} {json.dumps(arguments)}"), thinking)
    arguments = weather_call(text_of(user_turns[-1])) if tools and user_turns else None
    if arguments:
        preamble = f"I'll check the weather in {arguments['location']}.".split()
        name = tools[0].get("name", "get_weather")
        blocks += [_text_block(preamble), _tool_use_block(name, arguments)]
        output = thinking + len(preamble) + tokens(f"{name} {json.dumps(arguments)}")
        return _Answer(blocks, "tool_use", None, output, thinking)
    words, cut = generate(prompt, 0, max(1, body["max_tokens"] - thinking))
    text, stop_reason, stop_sequence = " ".join(words), "max_tokens" if cut else "end_turn", None
    found = [(text.find(seq), seq) for seq in body.get("stop_sequences") or [] if seq and seq in text]
    if found:
        at, stop_sequence = min(found)
        words, stop_reason = text[:at].split(" "), "stop_sequence"
    blocks.append(_text_block(words))
    return _Answer(blocks, stop_reason, stop_sequence, thinking + len(words), thinking)


def _stream_events(message: dict, answer: _Answer) -> list[tuple[str, dict]]:
    """The SSE events (name, data without ``type``) that stream ``message``."""
    usage = message["usage"]
    started = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {key: value for key, value in usage.items() if key != "output_tokens_details"}}
    started["usage"]["output_tokens"] = 1
    events: list[tuple[str, dict]] = [("message_start", {"message": started})]
    for index, block in enumerate(answer.blocks):
        events.append(("content_block_start", {"index": index, "content_block": block.start}))
        if index == 0:
            events.append(("ping", {}))
        events += [("content_block_delta", {"index": index, "delta": delta}) for delta in block.deltas]
        events.append(("content_block_stop", {"index": index}))
    cumulative = {key: value for key, value in usage.items() if key not in ("cache_creation", "service_tier")}
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    return events + [("message_delta", {"delta": delta, "usage": cumulative}), ("message_stop", {})]


class AnthropicEndpoints(Handler):
    def _message_request(self, body: dict) -> tuple[str, str, str, bool]:
        """(prompt, cached prefix, model, stream) after validation and the model-named failures."""
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise self.api.error("missing", param="messages")
        prompt, prefix = _prompt(body)
        model, stream = self._preflight(body, prompt, "messages")
        return prompt, prefix, model, stream

    def _count_tokens(self, body: dict) -> None:
        prompt, *_ = self._message_request(body)
        self._send_json(200, {"input_tokens": tokens(prompt)})

    def _message_usage(self, model: str, prompt: str, prefix: str) -> dict[str, Any]:
        """Input token counts; like Anthropic's prompt cache, the prefix up to the last ``cache_control``
        mark is written to the cache the first time and read from it when repeated, if it is at least
        1024 tokens. ``input_tokens`` counts only the rest."""
        cacheable = tokens(prefix) if prefix and tokens(prefix) >= MIN_CACHEABLE_TOKENS else 0
        hit = cacheable > 0 and self.sim._cache_hit(f"anthropic:{model}:{prefix}")
        written = 0 if hit else cacheable
        return {"input_tokens": tokens(prompt) - cacheable, "cache_creation_input_tokens": written,
                "cache_read_input_tokens": cacheable if hit else 0,
                "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0}}

    def _messages(self, body: dict) -> None:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise self.api.error("missing", param="max_tokens")
        budget = (body.get("thinking") or {}).get("budget_tokens")
        if isinstance(budget, int) and budget >= max_tokens:
            raise ApiError(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
        prompt, prefix, model, stream = self._message_request(body)
        answer = _answer(body, prompt)
        usage = {**self._message_usage(model, prompt, prefix), "output_tokens": answer.output_tokens,
                 "service_tier": "standard"}
        if answer.thinking_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": answer.thinking_tokens}
        used = (tokens(prompt), answer.output_tokens)
        message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": response_model(model),
                   "content": [block.final for block in answer.blocks], "stop_reason": answer.stop_reason,
                   "stop_sequence": answer.stop_sequence, "usage": usage}
        if not stream:
            self._non_stream_delay(answer.output_tokens)
            self._send_json(200, message, tokens=used)
            return
        events = _stream_events(message, answer)
        if model == "error-overloaded-midstream":
            overloaded = self.api.error_body(self.api.error("overloaded"), self.request_id)
            events = events[:len(events) // 2] + [("error", overloaded)]
        self._stream([(name, {"type": name, **data}) for name, data in events], model, used, ttft_index=3)
