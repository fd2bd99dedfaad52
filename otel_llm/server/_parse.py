"""Reading LLM API requests and responses from copies of the bytes as they pass.

Nothing here holds the bytes the application or the client sees: readers get the same ``bytes``
objects the ASGI messages carry, keep at most a bounded copy, and never raise for what they are
fed (the middleware still guards every call). Bodies larger than the cap are read by their head
and tail only, with patterns for the few fields we need.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from ._routes import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, MESSAGES, RESPONSES

DEFAULT_MAX_REQUEST_BYTES = 1 << 20  # parsed whole up to this; beyond, head and tail only
DEFAULT_MAX_RESPONSE_BYTES = 8 << 20
_WINDOW = 64 << 10  # head and tail kept of an oversized body
_MAX_EVENT = 1 << 20  # an SSE event longer than this is skipped, not buffered

_MODEL_RE = re.compile(rb'"model"\s*:\s*"((?:[^"\\\n]|\\.){1,256})"')
_STREAM_RE = re.compile(rb'"stream"\s*:\s*(true|false)')
_USAGE_RE = re.compile(rb'"usage"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})')
_ERROR_TYPE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError, TypeError):
        return None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _str(value: Any, limit: int = 256) -> str | None:
    return value if type(value) is str and 0 < len(value) <= limit else None


def error_type_of(body: Any) -> str | None:
    """The provider-style error type of an error body or event: OpenAI ``{"error": {"code", "type"}}``
    (the code when there is one: the conventions ask for the provider's error code), Anthropic
    ``{"type": "error", "error": {"type"}}``; None when there is none fit for a metric."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        for key in ("code", "type"):
            value = error.get(key)
            if type(value) is str and _ERROR_TYPE_RE.fullmatch(value):
                return value
        return None
    if type(error) is str and _ERROR_TYPE_RE.fullmatch(error):
        return error
    return None


class BodyCopy:
    """A bounded copy of a body arriving in pieces: whole up to ``cap``, else head and tail."""

    __slots__ = ("cap", "_parts", "size", "_tail")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._parts: list[bytes] = []
        self.size = 0
        self._tail: bytes | None = None  # set once over the cap

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._tail is None:
            if self.size <= self.cap:
                self._parts.append(data)
                return
            head = b"".join(self._parts)
            self._parts = [head[:_WINDOW]]
            self._tail = (head + data)[-_WINDOW:]
        else:
            self._tail = (self._tail + data)[-_WINDOW:] if len(data) < _WINDOW else data[-_WINDOW:]

    @property
    def whole(self) -> bytes | None:
        return b"".join(self._parts) if self._tail is None else None

    @property
    def head(self) -> bytes:
        return b"".join(self._parts)[:_WINDOW] if self._parts else b""

    @property
    def tail(self) -> bytes:
        return self._tail or b""


class RequestFields:
    """What the request body says: model, stream, stream_options.include_usage, a few parameters."""

    __slots__ = ("model", "stream", "include_usage", "attributes")

    def __init__(self) -> None:
        self.model: str | None = None
        self.stream: bool | None = None
        self.include_usage: bool | None = None
        self.attributes: dict[str, Any] = {}


_REQUEST_PARAMS = (
    ("temperature", "gen_ai.request.temperature", (int, float)),
    ("top_p", "gen_ai.request.top_p", (int, float)),
    ("top_k", "gen_ai.request.top_k", (int, float)),
    ("max_tokens", "gen_ai.request.max_tokens", (int,)),
    ("max_completion_tokens", "gen_ai.request.max_tokens", (int,)),
    ("max_output_tokens", "gen_ai.request.max_tokens", (int,)),
    ("seed", "gen_ai.request.seed", (int,)),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", (int, float)),
    ("presence_penalty", "gen_ai.request.presence_penalty", (int, float)),
)


def read_request(copy: BodyCopy) -> RequestFields:
    fields = RequestFields()
    whole = copy.whole
    if whole is not None:
        body = loads(whole) if whole else None
        if isinstance(body, dict):
            fields.model = _str(body.get("model"))
            stream = body.get("stream")
            fields.stream = stream if type(stream) is bool else None
            options = body.get("stream_options")
            if isinstance(options, dict) and type(options.get("include_usage")) is bool:
                fields.include_usage = options["include_usage"]
            for key, name, kinds in _REQUEST_PARAMS:
                value = body.get(key)
                if type(value) in kinds and not (type(value) is float and value != value):
                    fields.attributes[name] = value
            n = body.get("n")
            if type(n) is int and n != 1:
                fields.attributes["gen_ai.request.choice.count"] = n
        return fields
    # Oversized: the first "model": "..." and "stream": bool found in the head, else the tail. Inside
    # JSON strings quotes are escaped, so an unescaped "model": "..." is a key of some object.
    for window in (copy.head, copy.tail):
        if fields.model is None:
            match = _MODEL_RE.search(window)
            if match:
                fields.model = _str(loads(b'"' + match.group(1) + b'"'))
        if fields.stream is None:
            match = _STREAM_RE.search(window)
            if match:
                fields.stream = match.group(1) == b"true"
    return fields


class ResponseFields:
    """What the response says, filled as it passes."""

    __slots__ = (
        "model", "response_id", "finish_reasons", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "reasoning_tokens", "error_type",
    )

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.error_type: str | None = None

    def add_finish_reason(self, reason: Any) -> None:
        reason = _str(reason, 64)
        if reason is not None:
            if self.finish_reasons is None:
                self.finish_reasons = []
            self.finish_reasons.append(reason)

    def identity(self, body: dict[str, Any]) -> None:
        model = _str(body.get("model"))
        if model is not None:
            self.model = model
        response_id = _str(body.get("id"))
        if response_id is not None:
            self.response_id = response_id

    def openai_usage(self, usage: Any) -> None:
        """Chat/Completions (prompt_/completion_tokens) or Responses/embeddings (input_/output_tokens)."""
        if not isinstance(usage, dict):
            return
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        if prompt is None and completion is None:
            prompt = _int(usage.get("input_tokens"))
            completion = _int(usage.get("output_tokens"))
            input_details, output_details = usage.get("input_tokens_details"), usage.get("output_tokens_details")
        else:
            input_details, output_details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
        if prompt is not None:
            self.input_tokens = prompt
        if completion is not None:
            self.output_tokens = completion
        if isinstance(input_details, dict) and _int(input_details.get("cached_tokens")) is not None:
            self.cache_read_tokens = input_details["cached_tokens"]
        if isinstance(output_details, dict) and _int(output_details.get("reasoning_tokens")) is not None:
            self.reasoning_tokens = output_details["reasoning_tokens"]

    def anthropic_usage(self, usage: Any, merged: dict[str, int]) -> None:
        """Anthropic counts input without cached input; the conventions' input_tokens includes it.
        ``merged`` carries message_start's counts into message_delta's (cumulative, may omit some)."""
        if not isinstance(usage, dict):
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = _int(usage.get(key))
            if value is not None:
                merged[key] = value
        if "input_tokens" in merged:
            read = merged.get("cache_read_input_tokens")
            write = merged.get("cache_creation_input_tokens")
            self.input_tokens = merged["input_tokens"] + (read or 0) + (write or 0)
            self.cache_read_tokens = read
            self.cache_creation_tokens = write
        if "output_tokens" in merged:
            self.output_tokens = merged["output_tokens"]


def read_json_response(api: str, copy: BodyCopy, fields: ResponseFields, status: int) -> None:
    """A whole (non-streamed) response body."""
    whole = copy.whole
    if whole is None:  # oversized (embeddings of many inputs): model from the head, usage from the tail
        match = _MODEL_RE.search(copy.head)
        if match:
            fields.model = _str(loads(b'"' + match.group(1) + b'"'))
        match = _USAGE_RE.search(copy.tail)
        if match:
            usage = loads(match.group(1))
            (fields.anthropic_usage(usage, {}) if api == MESSAGES else fields.openai_usage(usage))
        return
    body = loads(whole) if whole else None
    if not isinstance(body, dict):
        return
    if status >= 400 or "error" in body:
        fields.error_type = error_type_of(body)
        if status >= 400:
            return
    fields.identity(body)
    if api == MESSAGES:
        fields.anthropic_usage(body.get("usage"), {})
        fields.add_finish_reason(body.get("stop_reason"))
    elif api == RESPONSES:
        fields.openai_usage(body.get("usage"))
        _responses_status(body, fields)
    else:
        fields.openai_usage(body.get("usage"))
        if api != EMBEDDINGS:
            choices = body.get("choices")
            if isinstance(choices, list):
                for choice in choices[:64]:
                    if isinstance(choice, dict):
                        fields.add_finish_reason(choice.get("finish_reason"))


def _responses_status(response: dict[str, Any], fields: ResponseFields) -> None:
    status = response.get("status")
    if status == "failed":
        fields.error_type = error_type_of(response) or "response_failed"
    elif type(status) is str:
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        fields.add_finish_reason(reason if status == "incomplete" and reason else status)


class Decompressor:
    """gzip/deflate of a response copy, bounded: past ``cap`` output bytes it stops."""

    __slots__ = ("_inflater", "_left")

    def __init__(self, cap: int) -> None:
        self._inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        self._left = cap

    def __call__(self, data: bytes) -> bytes:
        if self._left <= 0 or not data:
            return b""
        try:
            out = self._inflater.decompress(data, self._left)
        except zlib.error:
            self._left = 0
            return b""
        self._left -= len(out)
        if self._inflater.unconsumed_tail:  # over the cap
            self._left = 0
        return out


_DONE = b"data: [DONE]"


class SSEReader:
    """Server-sent events as they pass: usage, model, finish reasons, errors, and the first token.

    Per event only substring tests run; JSON is parsed for the few events that carry what we need
    (the first, the one with usage, the ones with a finish reason, errors). ``feed`` returns True
    when the first output token (chunk) passed in this piece.
    """

    __slots__ = ("api", "fields", "_buffer", "_skipping", "first_token", "_parsed_first", "_merged", "_cr", "_event")

    def __init__(self, api: str, fields: ResponseFields) -> None:
        self.api = api
        self.fields = fields
        self._buffer = b""
        self._skipping = False  # inside an oversized event: drop until its end
        self.first_token = False
        self._parsed_first = False
        self._merged: dict[str, int] = {}
        self._cr = False
        self._event = (self._anthropic if api == MESSAGES else self._responses if api == RESPONSES
                       else self._openai)  # one event's reader, chosen once

    def feed(self, data: bytes) -> bool:
        if not data:
            return False
        if (not self._buffer and not self._cr and not self._skipping and data.endswith(b"\n\n")
                and data.find(b"\n\n") == len(data) - 2):
            # the usual piece: exactly one whole event, LF line ends
            had_token = self.first_token
            self._event(data[:-2])
            return self.first_token and not had_token
        if self._cr or b"\r" in data:  # CRLF or CR line ends: normalise the copy to LF
            self._cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + data if self._buffer else data
        if b"\n\n" not in buffer:
            self._keep(buffer)
            return False
        events = buffer.split(b"\n\n")
        self._keep(events.pop())
        had_token = self.first_token
        skipping = self._skipping
        self._skipping = False
        for index, event in enumerate(events):
            if skipping and index == 0:
                continue
            if event:
                self._event(event)
        return self.first_token and not had_token

    def _keep(self, rest: bytes) -> None:
        # A CR at a piece's end may be half of a CRLF split across pieces; normalised already (CR -> LF),
        # which at worst ends an event one line early in a stream that mixes line ends.
        if len(rest) > _MAX_EVENT:
            self._buffer = b""
            self._skipping = True
        else:
            self._buffer = rest

    def _openai(self, event: bytes) -> None:
        if event.startswith(_DONE):
            return
        fields = self.fields
        if not self.first_token or not self._parsed_first:
            body = _data(event)
            if not isinstance(body, dict):
                return
            self._parsed_first = True
            if "error" in body:
                fields.error_type = error_type_of(body) or "stream_error"
                return
            fields.identity(body)
            choices = body.get("choices")
            if isinstance(choices, list) and choices:
                self.first_token = True
            self._choices(choices)
            if isinstance(body.get("usage"), dict):
                fields.openai_usage(body["usage"])
            return
        if _INTERESTING.search(event) is None:  # the usual chunk: one pass, nothing to read
            return
        body = _data(event)
        if not isinstance(body, dict):
            return
        if body.get("error"):
            fields.error_type = error_type_of(body) or "stream_error"
            return
        self._choices(body.get("choices"))
        if isinstance(body.get("usage"), dict):
            fields.identity(body)
            fields.openai_usage(body["usage"])

    def _choices(self, choices: Any) -> None:
        if isinstance(choices, list):
            for choice in choices[:64]:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self.fields.add_finish_reason(choice["finish_reason"])

    def _anthropic(self, event: bytes) -> None:
        if b"content_block_delta" in event:
            self.first_token = True
            return
        fields = self.fields
        if b"message_start" in event:
            body = _data(event)
            message = body.get("message") if isinstance(body, dict) else None
            if isinstance(message, dict):
                fields.identity(message)
                usage = message.get("usage")
                if isinstance(usage, dict):  # output_tokens here is a placeholder: input counts only
                    fields.anthropic_usage({k: v for k, v in usage.items() if k != "output_tokens"}, self._merged)
        elif b"message_delta" in event:
            body = _data(event)
            if isinstance(body, dict):
                delta = body.get("delta")
                if isinstance(delta, dict):
                    fields.add_finish_reason(delta.get("stop_reason"))
                fields.anthropic_usage(body.get("usage"), self._merged)
        elif b"error" in event:
            body = _data(event)
            if isinstance(body, dict) and body.get("type") == "error":
                fields.error_type = error_type_of(body) or "stream_error"

    def _responses(self, event: bytes) -> None:
        if not self.first_token and b'.delta"' in event:
            self.first_token = True
            return
        fields = self.fields
        if b'"response.completed"' in event or b'"response.incomplete"' in event or b'"response.failed"' in event:
            body = _data(event)
            response = body.get("response") if isinstance(body, dict) else None
            if isinstance(response, dict):
                fields.identity(response)
                fields.openai_usage(response.get("usage"))
                _responses_status(response, fields)
        elif b'"response.created"' in event and fields.model is None:
            body = _data(event)
            response = body.get("response") if isinstance(body, dict) else None
            if isinstance(response, dict):
                fields.identity(response)
        elif b'"error"' in event:
            body = _data(event)
            if isinstance(body, dict) and body.get("type") == "error":
                code = body.get("code")
                fields.error_type = (code if type(code) is str and _ERROR_TYPE_RE.fullmatch(code)
                                     else error_type_of(body)) or "stream_error"


# A key worth parsing an OpenAI chunk for, with a value that is not null (unescaped quotes are JSON
# syntax: inside strings they are escaped).
_INTERESTING = re.compile(rb'"(?:finish_reason|usage|error)"\s*+:\s*+(?!null)')  # possessive: no backtracking to a space


def _data(event: bytes) -> Any:
    """The JSON of an event's data lines (joined with newlines, as the SSE format says)."""
    if event.startswith(b"data:") and b"\n" not in event:
        return loads(event[5:])
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return loads(b"\n".join(lines))


__all__ = [
    "CHAT_COMPLETIONS", "COMPLETIONS", "DEFAULT_MAX_REQUEST_BYTES", "DEFAULT_MAX_RESPONSE_BYTES",
    "BodyCopy", "Decompressor", "RequestFields", "ResponseFields", "SSEReader", "error_type_of",
    "read_json_response", "read_request",
]
