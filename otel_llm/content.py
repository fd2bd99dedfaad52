"""Opt-in capture of message content.

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

from . import semconv

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
