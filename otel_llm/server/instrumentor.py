"""``LLMServerInstrumentor``: adds :class:`LLMServerMiddleware` to every FastAPI/Starlette app.

Off unless ``OTEL_LLM_SERVER_INSTRUMENTATION=true`` (a library's instrumentors all run under
``opentelemetry-instrument``; serving an LLM API is something a service says it does).
``OTEL_LLM_SERVER_PREFIXES``: comma-separated route prefixes (default ``/v1``).

It wraps ``build_middleware_stack`` (Starlette's, and FastAPI's own), which every app calls before
its first request, so apps created before or after ``instrument()`` are both covered. The middleware
goes first in the app's ``user_middleware``: inside Starlette's ServerErrorMiddleware and inside the
HTTP server span of opentelemetry-instrumentation-fastapi/asgi, whose span it then annotates.
Entry point name ``otel_llm_server``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from .. import semconv as sc
from ..recorder import report_internal_error
from ._routes import prefixes_from_env
from .middleware import LLMServerMiddleware
from .recorder import ServerRecorder

_log = logging.getLogger(__name__)
_TRUE = ("true", "1", "yes", "on")


def enabled_from_env() -> bool:
    return os.environ.get(sc.ENV_SERVER_INSTRUMENTATION, "").strip().lower() in _TRUE


def _targets() -> list[tuple[str, str]]:
    targets = [("starlette.applications", "Starlette")]
    try:
        import fastapi.applications

        if "build_middleware_stack" in vars(fastapi.applications.FastAPI):
            targets.append(("fastapi.applications", "FastAPI"))
    except ImportError:
        pass
    return targets


class LLMServerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``LLMServerInstrumentor().instrument(tracer_provider=..., meter_provider=..., force=True)``;
    ``force`` skips the environment variable (for code that asks explicitly)."""

    _patched: list[tuple[str, str]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("starlette >= 0.27",)

    def _instrument(self, **kwargs: Any) -> None:
        if not (kwargs.get("force") or enabled_from_env()):
            _log.debug("otel-llm server instrumentation is off (set %s=true)", sc.ENV_SERVER_INSTRUMENTATION)
            return
        import importlib

        from starlette.middleware import Middleware

        recorder = ServerRecorder(tracer_provider=kwargs.get("tracer_provider"),
                                  meter_provider=kwargs.get("meter_provider"), prices=kwargs.get("prices"))
        prefixes = kwargs.get("prefixes") or prefixes_from_env(os.environ.get(sc.ENV_SERVER_PREFIXES))
        entry = Middleware(LLMServerMiddleware, prefixes=prefixes, recorder=recorder)

        def build_middleware_stack(wrapped: Any, instance: Any, args: Any, kwargs_: Any) -> Any:
            try:
                middleware = getattr(instance, "user_middleware", None)
                if isinstance(middleware, list) and not any(
                    getattr(m, "cls", None) is LLMServerMiddleware for m in middleware
                ):
                    middleware.insert(0, entry)
            except Exception:
                report_internal_error("LLMServerInstrumentor build_middleware_stack")
            return wrapped(*args, **kwargs_)

        patched = []
        for module, cls in _targets():
            importlib.import_module(module)
            wrapt.wrap_function_wrapper(module, f"{cls}.build_middleware_stack", build_middleware_stack)
            patched.append((module, cls))
        type(self)._patched = patched

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for module, cls in type(self)._patched:
            unwrap(getattr(importlib.import_module(module), cls), "build_middleware_stack")
        type(self)._patched = []
