"""The server side: GenAI telemetry for services that serve an OpenAI- or Anthropic-compatible API.

::

    from otel_llm.server import LLMServerMiddleware, instrument_app
    app = LLMServerMiddleware(app)        # any ASGI app
    instrument_app(fastapi_app)           # FastAPI / Starlette, one call

or, under ``opentelemetry-instrument``, ``OTEL_LLM_SERVER_INSTRUMENTATION=true`` adds it to every
FastAPI/Starlette app. Routes: ``{prefix}/chat/completions``, ``/completions``, ``/embeddings``,
``/responses`` (OpenAI) and ``/messages`` (Anthropic), prefix ``/v1`` unless told.
"""

from __future__ import annotations

from typing import Any

from .middleware import LLMServerMiddleware
from .recorder import ServerRecorder


def instrument_app(app: Any, **options: Any) -> Any:
    """Add :class:`LLMServerMiddleware` to a FastAPI/Starlette app (before it serves its first
    request); ``options`` as for the middleware. Adding it twice does nothing. Returns the app."""
    if not any(getattr(entry, "cls", None) is LLMServerMiddleware for entry in app.user_middleware):
        app.add_middleware(LLMServerMiddleware, **options)
    return app


__all__ = ["LLMServerMiddleware", "ServerRecorder", "instrument_app"]
