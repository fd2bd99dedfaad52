"""What both wire formats share: models, deterministic text and tokens, errors, SSE framing."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

#: Known models -> the dated snapshot name reported in responses.
MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o1": "o1-2024-12-17",
    "o3-mini": "o3-mini-2025-01-31",
    "text-embedding-3-small": "text-embedding-3-small",
    "text-embedding-3-large": "text-embedding-3-large",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-opus-4-6": "claude-opus-4-6",
}
MAX_CONTEXT_CHARS = 100_000
RATE_LIMIT_REQUESTS = 10_000
RATE_LIMIT_TOKENS = 10_000_000  # input and output together
RATE_LIMIT_INPUT_TOKENS = 8_000_000
RATE_LIMIT_OUTPUT_TOKENS = 2_000_000
RATE_LIMIT_WINDOW = 60.0
_VOCAB = (
    "the a simulated upstream answer is here with some tokens for tracing latency metrics and "
    "spans across every request so dashboards show real looking data today"
).split()


@dataclass(frozen=True)
class LatencyProfile:
    """Mean delays in seconds; every delay is scaled by a random factor in ``1 +/- jitter``."""

    first_chunk: float = 0.0  # before the first streamed chunk (time to first token)
    per_chunk: float = 0.0  # between later streamed chunks
    non_stream_base: float = 0.0  # before a non-streamed answer ...
    non_stream_per_token: float = 0.0  # ... plus this much per completion token
    jitter: float = 0.0

    @classmethod
    def realistic(cls) -> LatencyProfile:
        """~0.2-0.5 s to first token, 12-28 ms per chunk."""
        return cls(first_chunk=0.35, per_chunk=0.02, non_stream_base=0.3, non_stream_per_token=0.01, jitter=0.4)


class LoggedRequest(NamedTuple):
    method: str
    path: str
    body: Any  # parsed JSON, or None when absent, unparsable or oversized
    headers: dict[str, str]  # lower-cased names; Authorization, x-api-key and api-key redacted


class Quota(NamedTuple):
    """Usage of the current rate-limit window, this request included."""

    requests: int
    input_tokens: int
    output_tokens: int
    reset_after: float  # seconds until the window resets


class ApiError(Exception):
    """An error answer; each API renders it in its own shape (``type`` defaults by API and status)."""

    def __init__(self, status: int, message: str, type_: str | None = None, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


class ErrorSpec(NamedTuple):
    status: int
    message: str  # a str.format template over the fields given to Api.error
    type: str | None = None
    code: str | None = None
    param: str | None = None


class Drop(Exception):
    """Close the connection now, mid-response or without any response."""


class Sent(Exception):
    """The response has already been written."""


class Api:
    """The conventions of one provider's wire format: routes, auth, error shapes and names, headers."""

    path_prefix = ""  # requests whose path starts with this are this API's
    routes: dict[tuple[str, str], str]  # (method, path) -> handler method name
    errors: dict[str, ErrorSpec]  # error kind -> how this API reports it
    model_failures: dict[str, str]  # model name -> error kind; ``bad-*`` models are ``unknown_model``
    malformed_event: tuple[str | None, str]  # what model ``error-malformed`` streams ...
    malformed_body: bytes  # ... or answers

    def authorized(self, headers: Any) -> bool:
        scheme, _, key = (headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and bool(key.strip())

    def error(self, kind: str, **fields: Any) -> ApiError:
        spec = self.errors[kind]
        return ApiError(spec.status, spec.message.format(**fields), spec.type, spec.code,
                        fields.get("param", spec.param), {"retry-after": "0"} if spec.status == 429 else None)

    def model_failure(self, model: str) -> str | None:
        return self.model_failures.get(model) or ("unknown_model" if model.startswith("bad-") else None)

    def error_body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def response_headers(self, quota: Quota, request_id: str) -> dict[str, str]:
        """Rate-limit and request-id headers, sent with every answer."""
        raise NotImplementedError


def tokens(text: str) -> int:
    """~1.3 tokens per word, rounded half up, at least 1."""
    return max(1, (len(text.split()) * 13 + 5) // 10)


def text_of(value: Any) -> str:
    """All text in a message content / Responses input, whatever its nesting."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(filter(None, map(text_of, value)))
    if isinstance(value, dict):
        return text_of(value.get("content") if "content" in value else value.get("text"))
    return ""


def generate(prompt: str, index: int, limit: Any) -> tuple[list[str], bool]:
    """Deterministic words for choice ``index``, and whether they were cut at the token ``limit``."""
    rng = random.Random(f"{index}:{prompt}")
    words = [rng.choice(_VOCAB) for _ in range(rng.randint(8, 40))]
    words[0], words[-1] = words[0].capitalize(), words[-1] + "."
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], True
    return words, False


def pieces(words: list[str]) -> list[str]:
    """Stream deltas for ``words``, one word each, that concatenate to ``" ".join(words)``."""
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def chunks(text: str, size: int = 8) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def weather_call(text: str) -> dict[str, str] | None:
    """The arguments the simulated model calls a weather tool with, if ``text`` asks about the weather."""
    if "weather" not in text.lower():
        return None
    place = re.search(r"\bin ([A-Z][\w-]*(?: [A-Z][\w-]*)*)", text)
    return {"location": place.group(1) if place else "San Francisco"}


def schema_sample(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema: what a structured-output answer holds."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return schema_sample(target, root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_sample(schema[key][0], root, depth + 1)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {name: schema_sample(sub, root, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_sample(schema.get("items") or {}, root, depth + 1)]
    if kind == "integer":
        return 7
    if kind == "number":
        return 2.5
    if kind == "boolean":
        return True
    if kind == "string":
        return _VOCAB[len(str(schema.get("title") or schema.get("description") or "")) % len(_VOCAB)]
    return None


def response_model(model: str) -> str:
    if model in MODELS:
        return MODELS[model]
    return model if re.search(r"\d{4}-?\d{2}-?\d{2}$", model) else f"{model}-2024-01-01"


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
