"""The OpenAI API: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/responses``, ``/v1/models``."""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import struct
import time
from typing import Any, NamedTuple

from ._common import (
    MODELS,
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

SYSTEM_FINGERPRINT = "fp_sim0001"
#: Where a streamed chat completion that asked for ``stream_options.include_usage`` gets its usage:
#: OpenAI's way, a separate last chunk with ``choices: []`` (the default) ...
STREAM_USAGE_SEPARATE_CHUNK = "separate-chunk"
#: ... or, as some OpenAI-compatible servers do, on the last chunk that has choices (with its finish_reason).
STREAM_USAGE_LAST_CHOICE_CHUNK = "last-choice-chunk"
STREAM_USAGE_MODES = (STREAM_USAGE_SEPARATE_CHUNK, STREAM_USAGE_LAST_CHOICE_CHUNK)
#: Request header that picks the mode for one request, overriding the simulator's ``stream_usage``.
STREAM_USAGE_HEADER = "x-sim-stream-usage"
_CONTEXT_EXCEEDED = "This model's maximum context length was exceeded. Please reduce the length of the messages."


class OpenAIApi(Api):
    routes = {
        ("POST", "/v1/chat/completions"): "_chat",
        ("POST", "/v1/embeddings"): "_embeddings",
        ("POST", "/v1/responses"): "_responses",
        ("GET", "/v1/models"): "_models",
    }
    errors = {
        "unauthorized": ErrorSpec(401, "You didn't provide an API key. You need to provide your API key in an "
                                       "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."),
        "no_route": ErrorSpec(404, "Invalid URL ({method} {path})"),
        "bad_json": ErrorSpec(400, "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
                                   "payload."),
        "too_large": ErrorSpec(400, _CONTEXT_EXCEEDED, code="context_length_exceeded", param="messages"),
        "context": ErrorSpec(400, _CONTEXT_EXCEEDED, code="context_length_exceeded"),
        "missing": ErrorSpec(400, "You must provide a {param} parameter."),
        "server": ErrorSpec(500, "The server had an error while processing your request. Sorry about that!",
                            "server_error"),
        "rate_limit": ErrorSpec(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
        "unknown_model": ErrorSpec(400, "The model `{model}` does not exist or you do not have access to it.",
                                   code="model_not_found", param="model"),
    }
    model_failures = {"error-500": "server", "error-429": "rate_limit", "error-400": "unknown_model"}
    malformed_event = (None, '{"id": "chatcmpl-broken", "choices": [ this is not json')
    malformed_body = malformed_event[1].encode()

    def error_body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        return {"error": {"message": err.message, "type": err.type or "invalid_request_error", "param": err.param,
                          "code": err.code}}

    def response_headers(self, quota: Quota, request_id: str) -> dict[str, str]:
        reset = f"{quota.reset_after:.3f}s"
        return {
            "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, RATE_LIMIT_REQUESTS - quota.requests)),
            "x-ratelimit-limit-tokens": str(RATE_LIMIT_TOKENS),
            "x-ratelimit-remaining-tokens": str(max(0, RATE_LIMIT_TOKENS - quota.input_tokens - quota.output_tokens)),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-reset-tokens": reset,
            "x-request-id": request_id,
        }


OPENAI = OpenAIApi()


class _Usage(NamedTuple):
    prompt: int
    cached: int  # prompt tokens read from the simulated prompt cache
    cache_write: int  # prompt tokens written to it
    completion: int  # includes reasoning
    reasoning: int


def _embedding(text: str, dims: int, as_base64: bool) -> Any:
    rng = random.Random(f"embedding:{text}")
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    packed = struct.pack(f"<{dims}f", *(v / norm for v in vec))  # float32, exactly as OpenAI
    return base64.b64encode(packed).decode() if as_base64 else list(struct.unpack(f"<{dims}f", packed))


def _forced_tool(tools: list, choice: Any) -> dict | None:
    """The tool ``tool_choice`` forces a call of (``"required"``: the first), if any."""
    if choice == "required" and tools:
        return tools[0]
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    return next((t for t in tools if (t.get("function") or {}).get("name") == name), None) if name else None


class OpenAIEndpoints(Handler):
    def _usage(self, model: str, prompt: str, visible_tokens: int) -> _Usage:
        """Token counts; like OpenAI's prompt cache, a prompt of >= 1024 tokens is written to the cache
        the first time and read from it (in 128-token blocks) when repeated."""
        prompt_tokens = tokens(prompt)
        reasoning = 2 * visible_tokens if any(tag in model for tag in ("o1", "o3", "reason")) else 0
        hit = self.sim._cache_hit(prompt)
        cacheable = prompt_tokens // 128 * 128 if prompt_tokens >= 1024 else 0
        return _Usage(prompt_tokens, cacheable if hit else 0, 0 if hit else cacheable,
                      visible_tokens + reasoning, reasoning)

    def _models(self, _body: Any) -> None:
        data = [{"id": name, "object": "model", "created": 1700000000, "owned_by": "system"}
                for name in MODELS if not name.startswith("claude-")]
        self._send_json(200, {"object": "list", "data": data})

    def _chat_choice(self, body: dict, prompt: str, index: int) -> tuple[dict, list[dict], str, int]:
        """(message, stream deltas, finish_reason, visible completion tokens) for one choice."""
        last = text_of(body["messages"][-1])
        tools = body.get("tools") or []
        forced = _forced_tool(tools, body.get("tool_choice"))
        call_args = schema_sample((forced.get("function") or {}).get("parameters") or {}) if forced else None
        if call_args is None:
            call_args = weather_call(last) if tools else None
            forced = tools[0] if call_args else None
        if call_args is not None:
            name = (forced.get("function") or {}).get("name", "get_weather")
            args = json.dumps(call_args)
            call = {"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": args}}
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            head = {**call, "index": 0, "function": {"name": name, "arguments": ""}}
            deltas = [{"role": "assistant", "content": None, "tool_calls": [head]}]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in chunks(args)]
            return message, deltas, "tool_calls", tokens(f"{name} {args}")
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":  # structured output: JSON that fits the schema
            text = json.dumps(schema_sample((response_format.get("json_schema") or {}).get("schema") or {}))
            message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            deltas = [{"role": "assistant", "content": "", "refusal": None}]
            deltas += [{"content": piece} for piece in chunks(text)]
            return message, deltas, "stop", tokens(text)
        words, cut = generate(prompt, index, body.get("max_completion_tokens") or body.get("max_tokens"))
        message = {"role": "assistant", "content": " ".join(words), "refusal": None, "annotations": []}
        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": piece} for piece in pieces(words)]
        return message, deltas, "length" if cut else "stop", len(words)

    def _chat(self, body: dict) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "[] is too short - 'messages'", param="messages")
        prompt = text_of(messages)
        model, stream = self._preflight(body, prompt, "messages")
        choices = [self._chat_choice(body, prompt, i) for i in range(max(1, int(body.get("n") or 1)))]
        counts = self._usage(model, prompt, sum(c[3] for c in choices))
        usage = {
            "prompt_tokens": counts.prompt, "completion_tokens": counts.completion,
            "total_tokens": counts.prompt + counts.completion,
            "prompt_tokens_details": {"cached_tokens": counts.cached, "cache_write_tokens": counts.cache_write,
                                      "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": counts.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        used = (counts.prompt, counts.completion)
        base = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": response_model(model),
                "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default"}
        if not stream:
            self._non_stream_delay(counts.completion)
            self._send_json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": i, "message": c[0], "logprobs": None, "finish_reason": c[2]} for i, c in enumerate(choices)
            ]}, tokens=used)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk = {**base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}

        def event(index: int, delta: dict, finish: str | None = None) -> tuple[None, dict]:
            return None, {**chunk, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                "finish_reason": finish}]}

        events = [event(i, delta) for step in itertools.zip_longest(*(c[1] for c in choices))
                  for i, delta in enumerate(step) if delta is not None]
        events += [event(i, {}, c[2]) for i, c in enumerate(choices)]
        if include_usage and self.sim._stream_usage_mode(self.headers) == STREAM_USAGE_LAST_CHOICE_CHUNK:
            events[-1] = (None, {**events[-1][1], "usage": usage})  # the last chunk with choices carries it
        elif include_usage:
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        self._stream(events, model, used)

    def _embeddings(self, body: dict) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(400, "'input' is a required property", param="input")
        texts = [text if isinstance(text, str) else json.dumps(text) for text in inputs]
        model, _ = self._preflight(body, " ".join(texts), "input")
        dims, as_base64 = int(body.get("dimensions") or 8), body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i, "embedding": _embedding(text, dims, as_base64)}
                for i, text in enumerate(texts)]
        count = sum(tokens(text) for text in texts)
        self.sim._sleep(self.sim.latency.non_stream_base)
        self._send_json(200, {"object": "list", "data": data, "model": response_model(model),
                              "usage": {"prompt_tokens": count, "total_tokens": count}}, tokens=(count, 0))

    def _responses(self, body: dict) -> None:
        if body.get("input") is None:
            raise ApiError(400, "Missing required parameter: 'input'.", param="input")
        prompt = text_of([body.get("instructions"), body["input"]])
        model, stream = self._preflight(body, prompt, "input")
        words, cut = generate(prompt, 0, body.get("max_output_tokens"))
        text, done = " ".join(words), not cut
        counts = self._usage(model, prompt, len(words))
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message = {"id": new_id("msg_"), "type": "message", "role": "assistant",
                   "status": "completed" if done else "incomplete", "content": [part]}
        now = time.time()
        response = {
            "id": new_id("resp_"), "object": "response", "created_at": now, "completed_at": now,
            "status": "completed" if done else "incomplete", "model": response_model(model), "output": [message],
            "error": None, "incomplete_details": None if done else {"reason": "max_output_tokens"},
            "instructions": body.get("instructions"), "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "max_output_tokens": body.get("max_output_tokens"),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "user": None,
            "usage": {"input_tokens": counts.prompt, "output_tokens": counts.completion,
                      "total_tokens": counts.prompt + counts.completion,
                      "input_tokens_details": {"cached_tokens": counts.cached,
                                               "cache_write_tokens": counts.cache_write},
                      "output_tokens_details": {"reasoning_tokens": counts.reasoning}},
        }
        used = (counts.prompt, counts.completion)
        if not stream:
            self._non_stream_delay(counts.completion)
            self._send_json(200, response, tokens=used)
            return
        pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None,
                   "completed_at": None}
        where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
        events = [
            ("response.created", {"response": pending}),
            ("response.in_progress", {"response": pending}),
            ("response.output_item.added", {"output_index": 0,
                                            "item": {**message, "status": "in_progress", "content": []}}),
            ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
            *(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}) for piece in pieces(words)),
            ("response.output_text.done", {**where, "text": text, "logprobs": []}),
            ("response.content_part.done", {**where, "part": part}),
            ("response.output_item.done", {"output_index": 0, "item": message}),
            ("response.completed" if done else "response.incomplete", {"response": response}),
        ]
        events = [(name, {"type": name, "sequence_number": i, **data}) for i, (name, data) in enumerate(events)]
        self._stream(events, model, used, ttft_index=4)
