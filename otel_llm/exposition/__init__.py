"""Prometheus fallback endpoints, for scrapers that can only pull.

One set of endpoints over the SDK's Prometheus registry, two ways to run it::

    app.mount("/observability", ExpositionApp(gateway=gateway))   # FastAPI / Starlette (ASGI)
    server = serve(port=9464)                                     # standalone, a background thread

``/metrics`` (Prometheus text or OpenMetrics by content negotiation; ``/metrics/<category>`` or
``category=``, ``name[]=``, ``match[]=`` filters), ``/metrics.csv``, ``/catalog``, ``/summary``,
``/health``, ``/health/detailed`` and ``/dashboard``. Optional bearer token or basic auth and a CIDR
allowlist (:class:`AccessControl`, ``OTEL_LLM_EXPOSITION_*``).

The metrics are those of a ``PrometheusMetricReader`` on your MeterProvider:
``otel_llm.sdk.configure(metrics_exporter="otlp,prometheus")`` (or ``OTEL_METRICS_EXPORTER=otlp,prometheus``
under ``opentelemetry-instrument``) registers one in prometheus_client's global registry, which is the
default here. Building your own MeterProvider? ``prometheus_reader()`` returns a reader for it.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """Bad exposition configuration; the message says what is wrong and how to fix it."""


from .access import AccessControl  # noqa: E402
from .app import ENDPOINTS, ExpositionApp, ExpositionServer, Request, Response, serve  # noqa: E402
from .families import CATEGORIES, Selection  # noqa: E402
from .summary import HealthThresholds  # noqa: E402


def prometheus_reader(registry: Any = None, **kwargs: Any) -> Any:
    """A ``PrometheusMetricReader`` registering into ``registry`` (default: the global one) for a
    MeterProvider you build yourself: ``MeterProvider(metric_readers=[prometheus_reader()])``."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
    except ImportError:
        raise ConfigError("the endpoints need the Prometheus exporter: pip install 'otel-llm[sdk]'") from None
    if registry is not None:
        kwargs["registry"] = registry
    return PrometheusMetricReader(**kwargs)


__all__ = [
    "CATEGORIES",
    "ENDPOINTS",
    "AccessControl",
    "ConfigError",
    "ExpositionApp",
    "ExpositionServer",
    "HealthThresholds",
    "Request",
    "Response",
    "Selection",
    "prometheus_reader",
    "serve",
]
