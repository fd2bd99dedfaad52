"""One-call setup for apps that don't run under ``opentelemetry-instrument``.

``configure()`` builds the OpenTelemetry SDK from the standard ``OTEL_*``
environment (arguments win over the environment), installs it globally and
instruments the LLM SDKs that are importable. Exports never block the app:
spans and log records go through bounded batch processors, metrics through a
periodic reader thread, Prometheus is pulled. Python ``logging`` records become
OTLP log records (see :mod:`otel_llm.logs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger(__name__)

_PROTOCOLS = ("grpc", "http/protobuf")
_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}
_METRIC_SHUTDOWN_TIMEOUT_MS = 5_000


class ConfigError(ValueError):
    """Bad telemetry configuration; the message says what is wrong and how to fix it."""


@dataclass
class Telemetry:
    """What ``configure()`` set up; call ``shutdown()`` to flush and stop exporting."""

    tracer_provider: Any
    meter_provider: Any
    prometheus_address: tuple[str, int] | None = None
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None
    instrumentors: list[Any] = field(default_factory=list)
    recorder: Any = None  # the otel_llm Recorder the instrumentors write through
    logs: Any = None  # otel_llm.logs.LogPipeline: .provider, .handler, .dropped(); None when logs are off
    span_processors: list[Any] = field(default_factory=list)  # otel_llm.spans.BatchSpanProcessor, one per exporter
    _prometheus_server: Any = None

    def spans_dropped(self) -> dict[str, int]:
        """Spans lost so far, by reason (``otel_llm.spans.DROP_REASONS``); also the ``otel_llm.spans.dropped`` counter."""
        from .spans import dropped

        return dropped(self.span_processors)

    @property
    def prometheus_url(self) -> str | None:
        if self.prometheus_address is None:
            return None
        host, port = self.prometheus_address
        return f"http://{host}:{port}/metrics"

    def shutdown(self) -> None:
        for instrumentor in self.instrumentors:
            try:
                instrumentor.uninstrument()
            except Exception:
                _log.debug("uninstrument failed", exc_info=True)
        if self.logs is not None:
            self.logs.shutdown()  # detaches the handler first; bounded by log_shutdown_timeout_ms
        self.tracer_provider.shutdown()  # bounded: otel_llm.spans.BatchSpanProcessor's shutdown_timeout_millis
        # The last metric export gets this long; then the exporter is shut down, which aborts its retries
        # (without a bound a dead collector holds shutdown for the exporter's timeout and more).
        self.meter_provider.shutdown(timeout_millis=_METRIC_SHUTDOWN_TIMEOUT_MS)
        if self._prometheus_server is not None:
            server, thread = self._prometheus_server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _exporter_names(value: str | Sequence[str] | None, env_var: str, default: str) -> list[str]:
    if value is None:
        value = os.environ.get(env_var, default)
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    known = {"otlp", "prometheus", "console", "none"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{env_var}: unknown exporter {', '.join(unknown)!s}; use a comma-separated list of "
            f"{', '.join(sorted(known))}"
        )
    return [n for n in names if n != "none"]


def _protocol(value: str | None, signal: str) -> str:
    protocol = (
        value
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip().lower()
    if protocol not in _PROTOCOLS:
        raise ConfigError(
            f"OTLP protocol {protocol!r} is not supported; set OTEL_EXPORTER_OTLP_PROTOCOL to "
            f"'grpc' (port 4317) or 'http/protobuf' (port 4318)"
        )
    return protocol


def _otlp_exporter(signal: str, protocol: str, endpoint: str | None) -> Any:
    """The OTLP exporter for a signal; with no endpoint the exporter reads OTEL_EXPORTER_OTLP_* itself."""
    kwargs: dict[str, Any] = {}
    if protocol == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Exporter
        elif signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Exporter
        if endpoint:
            kwargs["endpoint"] = endpoint
            kwargs["insecure"] = endpoint.startswith("http://")
    else:
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
        elif signal == "logs":
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Exporter
        if endpoint:
            kwargs["endpoint"] = f"{endpoint.rstrip('/')}/{_SIGNAL_PATHS[signal]}"
    return Exporter(**kwargs)


def _prometheus_address(host: str | None, port: int | None) -> tuple[str, int]:
    host = host or os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    raw_port: Any = port if port is not None else os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
    try:
        port = int(raw_port)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"Prometheus port {raw_port!r} is not a port number; set OTEL_EXPORTER_PROMETHEUS_PORT "
            f"(or prometheus_port=) to 0..65535 (0 picks a free port)"
        ) from None
    return host, port


def _log_exporter_names(value: str | Sequence[str] | None, trace_names: list[str]) -> list[str]:
    """Logs follow traces by default: to the collector when traces go there, else nowhere."""
    names = _exporter_names(value, "OTEL_LOGS_EXPORTER", "otlp" if "otlp" in trace_names else "none")
    if "prometheus" in names:
        raise ConfigError("OTEL_LOGS_EXPORTER: prometheus cannot carry logs; use otlp, console or none")
    return names


def _log_level(value: int | str | None) -> int:
    raw: Any = value if value is not None else os.environ.get("OTEL_PYTHON_LOG_HANDLER_LEVEL", "info")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    text = str(raw).strip()
    level = int(text) if text.isdigit() else logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise ConfigError(
            f"log level {raw!r} is not a logging level; set OTEL_PYTHON_LOG_HANDLER_LEVEL (or log_level=) to "
            f"debug, info, warning, error or critical"
        )
    return level


_BLRP_SETTINGS = (  # env var, keyword of BatchLogProcessor, SDK default
    ("OTEL_BLRP_MAX_QUEUE_SIZE", "max_queue_size", 2048),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "max_export_batch_size", 512),
    ("OTEL_BLRP_SCHEDULE_DELAY", "schedule_delay_millis", 1000),
)


def _log_batch_settings() -> dict[str, int]:
    """OTEL_BLRP_* checked up front (the SDK would quietly fall back to defaults, or fail late)."""
    settings = {}
    for env_var, keyword, default in _BLRP_SETTINGS:
        raw = os.environ.get(env_var, "").strip()
        if not raw:
            settings[keyword] = default
            continue
        if not raw.isdigit() or int(raw) == 0:
            raise ConfigError(f"{env_var}={raw!r} is not a positive whole number")
        settings[keyword] = int(raw)
    if settings["max_export_batch_size"] > settings["max_queue_size"]:
        raise ConfigError(
            f"OTEL_BLRP_MAX_EXPORT_BATCH_SIZE ({settings['max_export_batch_size']}) is larger than "
            f"OTEL_BLRP_MAX_QUEUE_SIZE ({settings['max_queue_size']}); make the batch size at most the queue size"
        )
    return settings


def configure(
    service_name: str | None = None,
    *,
    resource_attributes: Mapping[str, Any] | None = None,
    traces_exporter: str | Sequence[str] | None = None,
    metrics_exporter: str | Sequence[str] | None = None,
    logs_exporter: str | Sequence[str] | None = None,
    log_level: int | str | None = None,
    log_shutdown_timeout_ms: int = 5000,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    metric_export_interval_ms: int | None = None,
    instrument: bool = True,
    set_global: bool = True,
) -> Telemetry:
    """Set up tracing and metrics export and instrument the installed LLM SDKs.

    Exporters default to ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
    (``otlp`` when unset); ``prometheus`` serves ``/metrics`` on
    ``OTEL_EXPORTER_PROMETHEUS_HOST:PORT`` (default localhost:9464). The OTLP
    endpoint and protocol come from ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` by default, as
    ``opentelemetry-instrument`` does) unless given here.

    Logs: ``logs_exporter`` / ``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, ``none``; default
    ``otlp`` when traces go to OTLP, else ``none``) installs a LoggerProvider whose handler takes
    Python ``logging`` records at ``log_level`` / ``OTEL_PYTHON_LOG_HANDLER_LEVEL`` (default
    ``info``) and above. With ``set_global`` the handler goes on the root logger and the
    LoggerProvider becomes the global one; otherwise attach ``telemetry.logs.handler`` yourself.
    ``shutdown()`` spends at most ``log_shutdown_timeout_ms`` per log exporter flushing logs.
    """
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    except ImportError as exc:
        raise ConfigError(
            "configure() needs the OpenTelemetry SDK and exporters: pip install 'otel-llm[sdk]'"
        ) from exc

    trace_names = _exporter_names(traces_exporter, "OTEL_TRACES_EXPORTER", "otlp")
    metric_names = _exporter_names(metrics_exporter, "OTEL_METRICS_EXPORTER", "otlp")
    log_names = _log_exporter_names(logs_exporter, trace_names)
    level = _log_level(log_level) if log_names else logging.NOTSET
    log_batch = _log_batch_settings() if log_names else {}
    log_protocol = _protocol(otlp_protocol, "logs") if "otlp" in log_names else None
    attributes = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)

    otlp_used = "otlp" in trace_names or "otlp" in metric_names or "otlp" in log_names
    protocol = _protocol(otlp_protocol, "traces") if otlp_used else None

    metric_protocol = _protocol(otlp_protocol, "metrics") if "otlp" in metric_names else None
    interval = metric_export_interval_ms
    if interval is None and os.environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
        try:
            interval = int(os.environ["OTEL_METRIC_EXPORT_INTERVAL"])
        except ValueError:
            raise ConfigError(
                f"OTEL_METRIC_EXPORT_INTERVAL={os.environ['OTEL_METRIC_EXPORT_INTERVAL']!r} is not a whole "
                f"number of milliseconds"
            ) from None

    # Bind the Prometheus port first: it is the step most likely to fail, and nothing is built yet.
    prometheus_address = None
    prometheus_server = None
    if "prometheus" in metric_names:
        from prometheus_client import start_http_server

        host, port = _prometheus_address(prometheus_host, prometheus_port)
        try:
            prometheus_server = start_http_server(port, addr=host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve Prometheus metrics on {host}:{port}: {exc.strerror}; "
                f"pick another OTEL_EXPORTER_PROMETHEUS_PORT (0 picks a free port)"
            ) from exc
        prometheus_address = (host, prometheus_server[0].server_address[1])

    from .spans import BatchSpanProcessor, register_dropped_metric

    tracer_provider = TracerProvider(resource=resource)
    span_processors = []
    for name in trace_names:
        exporter = _otlp_exporter("traces", protocol or "grpc", otlp_endpoint) if name == "otlp" else ConsoleSpanExporter()
        span_processors.append(BatchSpanProcessor(exporter))  # bounded queue; every lost span counted
        tracer_provider.add_span_processor(span_processors[-1])

    readers: list[Any] = []
    for name in metric_names:
        if name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader())
        else:
            exporter = (
                _otlp_exporter("metrics", metric_protocol or "grpc", otlp_endpoint)
                if name == "otlp"
                else ConsoleMetricExporter()
            )
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if span_processors:
        register_dropped_metric(meter_provider, span_processors)

    logs = None
    if log_names:
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        from .logs import LogPipeline

        log_exporters = [
            _otlp_exporter("logs", log_protocol or "grpc", otlp_endpoint) if name == "otlp" else ConsoleLogRecordExporter()
            for name in log_names
        ]
        logs = LogPipeline.create(
            log_exporters, resource=resource, meter_provider=meter_provider, level=level,
            shutdown_timeout_millis=log_shutdown_timeout_ms, **log_batch,
        )

    if set_global:
        from opentelemetry import metrics, trace

        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        if logs is not None:
            from opentelemetry import _logs

            _logs.set_logger_provider(logs.provider)
            logs.attach()  # the root logger

    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_address=prometheus_address,
        otlp_endpoint=(otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")) if otlp_used else None,
        otlp_protocol=protocol,
        logs=logs,
        span_processors=span_processors,
        _prometheus_server=prometheus_server,
    )
    if instrument:
        from .recorder import Recorder

        telemetry.recorder = Recorder(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logs.provider if logs is not None else None,  # opt-in content events
        )
        from .foreign import install

        install(tracer_provider, telemetry.recorder)  # other instrumentations' GenAI spans get a cost too
        telemetry.instrumentors = _instrument_all(telemetry.recorder)
    return telemetry


def _instrument_all(recorder: Any) -> list[Any]:
    """Instrument every supported SDK that is importable and not instrumented yet, all into one recorder."""
    import importlib.util

    instrumentors = []
    for sdk_module, module, name in (
        ("openai", "otel_llm.instrumentation.openai", "OpenAIInstrumentor"),
        ("anthropic", "otel_llm.instrumentation.anthropic", "AnthropicInstrumentor"),
        ("google.genai", "otel_llm.instrumentation.google_genai", "GoogleGenAIInstrumentor"),
        ("botocore", "otel_llm.instrumentation.bedrock", "BedrockInstrumentor"),
    ):
        try:
            if importlib.util.find_spec(sdk_module) is None:
                continue
        except ModuleNotFoundError:  # "google" itself is missing
            continue
        instrumentor = getattr(importlib.import_module(module), name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(recorder=recorder)
            instrumentors.append(instrumentor)
    return instrumentors
