"""Opt-in capture of message content, and what is done to it before it is recorded.

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` takes the values the
OpenTelemetry Python GenAI packages use: ``NO_CONTENT`` (default),
``SPAN_ONLY``, ``EVENT_ONLY``, ``SPAN_AND_EVENT``. ``true``/``false`` are
accepted as ``SPAN_ONLY``/``NO_CONTENT`` for compatibility with older
instrumentations.
"""

from __future__ import annotations

import enum
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from . import semconv
from .redact import REDACTED, scrub_secrets

ENV_REDACT = semconv.ENV_CONTENT_REDACT
ENV_REDACT_REGEX = semconv.ENV_CONTENT_REDACT_REGEX
ENV_MAX_LENGTH = semconv.ENV_CONTENT_MAX_LENGTH

_log = logging.getLogger(__name__)


class CaptureMode(enum.Enum):
    NO_CONTENT = "NO_CONTENT"
    SPAN_ONLY = "SPAN_ONLY"
    EVENT_ONLY = "EVENT_ONLY"
    SPAN_AND_EVENT = "SPAN_AND_EVENT"

    @property
    def on_span(self) -> bool:
        return self in (CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT)

    @property
    def as_event(self) -> bool:
        return self in (CaptureMode.EVENT_ONLY, CaptureMode.SPAN_AND_EVENT)

    @property
    def enabled(self) -> bool:
        return self is not CaptureMode.NO_CONTENT


_ALIASES = {"TRUE": CaptureMode.SPAN_ONLY, "FALSE": CaptureMode.NO_CONTENT, "": CaptureMode.NO_CONTENT}


def capture_mode_from_env() -> CaptureMode:
    raw = os.environ.get(semconv.ENV_CAPTURE_CONTENT, "").strip().upper()
    if raw in _ALIASES:
        return _ALIASES[raw]
    try:
        return CaptureMode(raw)
    except ValueError:
        _log.warning(
            "%s=%r is not one of %s; capturing no message content",
            semconv.ENV_CAPTURE_CONTENT,
            raw,
            ", ".join(mode.value for mode in CaptureMode),
        )
        return CaptureMode.NO_CONTENT


# --- what leaves the process: redaction and truncation --------------------------------------------

_BUILTIN_PATTERNS = {
    "key": None,  # API keys and bearer tokens: always on, see redact.scrub_secrets
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ \-]?){13,19}\b",
    "phone": r"\+?\d[\d \-().]{7,}\d",
    "ipv4": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
}
# JSON keys of the semconv message shapes whose values are structure, not content.
_STRUCTURAL_KEYS = frozenset({"type", "role", "name", "id", "finish_reason", "mime_type", "modality"})
TRUNCATION_MARK = "…[truncated]"
DEFAULT_MAX_LENGTH = 16384


_global_redactor: Callable[[str], str] | None = None


def set_redactor(redactor: Callable[[str], str] | None) -> None:
    """Install a process-wide ``redactor(text) -> text`` applied to every captured text, after the
    built-in patterns and before truncation (works under ``opentelemetry-instrument`` too)."""
    global _global_redactor
    if redactor is not None and not callable(redactor):
        raise ContentConfigError(f"set_redactor() needs a callable taking and returning str, got {redactor!r}")
    _global_redactor = redactor


class ContentConfigError(ValueError):
    """Bad content capture settings; the message says which variable and what is allowed."""


class ContentPolicy:
    """Redaction, then truncation, of every text in captured messages, before anything is recorded."""

    def __init__(
        self,
        redact: tuple[str, ...] = ("key",),
        extra_pattern: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        redactor: Callable[[str], str] | None = None,
    ) -> None:
        unknown = [name for name in redact if name not in _BUILTIN_PATTERNS]
        if unknown:
            raise ContentConfigError(
                f"{ENV_REDACT}: unknown pattern {', '.join(unknown)}; known: {', '.join(_BUILTIN_PATTERNS)}"
            )
        patterns = [_BUILTIN_PATTERNS[name] for name in redact if _BUILTIN_PATTERNS[name]]
        if extra_pattern:
            try:
                re.compile(extra_pattern)
            except re.error as exc:
                raise ContentConfigError(f"{ENV_REDACT_REGEX}: not a valid regular expression: {exc}") from None
            patterns.append(extra_pattern)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        if max_length < 0:
            raise ContentConfigError(f"{ENV_MAX_LENGTH} must be >= 0 (0 = no limit), got {max_length}")
        self.max_length = max_length
        self.redactor = redactor

    @classmethod
    def from_env(cls) -> ContentPolicy:
        names = tuple(n.strip().lower() for n in os.environ.get(ENV_REDACT, "key").split(",") if n.strip())
        raw_length = os.environ.get(ENV_MAX_LENGTH, str(DEFAULT_MAX_LENGTH)).strip()
        try:
            max_length = int(raw_length)
        except ValueError:
            raise ContentConfigError(f"{ENV_MAX_LENGTH}={raw_length!r} is not a whole number of characters") from None
        return cls(redact=names, extra_pattern=os.environ.get(ENV_REDACT_REGEX) or None, max_length=max_length)

    def text(self, value: str) -> tuple[str, bool]:
        """(cleaned text, whether it was truncated)."""
        value = scrub_secrets(value)
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        redactor = self.redactor or _global_redactor
        if redactor is not None:
            value = redactor(value)
        if self.max_length and len(value) > self.max_length:
            return value[: self.max_length] + TRUNCATION_MARK, True
        return value, False

    def apply(self, messages: Any) -> tuple[Any, bool]:
        """Clean every content string in a semconv message structure; (result, anything truncated)."""
        truncated = False

        def walk(node: Any, key: str | None = None) -> Any:
            nonlocal truncated
            if isinstance(node, str):
                if key in _STRUCTURAL_KEYS:
                    return node
                cleaned, cut = self.text(node)
                truncated = truncated or cut
                return cleaned
            if isinstance(node, dict):
                return {k: walk(v, k) for k, v in node.items()}
            if isinstance(node, (list, tuple)):
                return [walk(item, key) for item in node]
            return node

        return walk(messages), truncated
