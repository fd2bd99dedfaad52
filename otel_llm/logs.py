"""Python ``logging`` records as OTLP log records, without making the application wait or fail.

* :class:`LogHandler` turns a ``logging`` record into an OpenTelemetry log record (trace and
  span ids from the active context, the resource from the LoggerProvider). It never raises into
  the caller of ``logger.info`` and never feeds the pipeline's own complaints back into it.
* :class:`BatchLogProcessor` is the SDK's ``BatchLogRecordProcessor`` (bounded queue, export on a
  worker thread) plus an exact count of every record it loses, and a shutdown with a time bound.
* :class:`LogPipeline` ties them to a LoggerProvider and reports the losses as the counter
  ``otel_llm.logs.dropped`` on a MeterProvider.

``configure()`` in :mod:`otel_llm.sdk` builds all of this from the ``OTEL_*`` environment.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import time_ns
from typing import Any

from opentelemetry._logs import LogRecord
from opentelemetry.context import get_current
from opentelemetry.instrumentation.log_utils import std_to_otel
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter

from . import semconv
from ._drops import (  # the reasons are re-exported: they are the values of the dropped counter
    ALREADY_SHUTDOWN,
    EXPORT_FAILED,
    PIPELINE_REASONS,
    QUEUE_FULL,
    SHUTDOWN_TIMEOUT,
    CountingBatch,
    DropCounts,
    dropped_by_reason,
    register_dropped_counter,
)

__all__ = [
    "ALREADY_SHUTDOWN",
    "EXPORT_FAILED",
    "HANDLER_ERROR",
    "QUEUE_FULL",
    "SHUTDOWN_TIMEOUT",
    "DROPPED_METRIC",
    "DROP_REASONS",
    "BatchLogProcessor",
    "LogHandler",
    "LogPipeline",
]

_log = logging.getLogger(__name__)
# LLM SDKs and HTTP clients log request options (prompts included) at DEBUG: below WARNING their
# records stay with the app's other handlers and are never exported.
_CHATTY_CLIENTS = frozenset({"openai", "anthropic", "httpx", "httpx2", "httpcore", "urllib3"})

DROPPED_METRIC = semconv.METRIC_LOGS_DROPPED[0]
HANDLER_ERROR = "handler_error"  # a filter, formatter, format argument or attribute raised while converting it
DROP_REASONS = (*PIPELINE_REASONS, HANDLER_ERROR)


# ---------------------------------------------------------------------- handler

# Attributes every LogRecord has (plus what formatters add): the rest came from ``extra=``.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}  # OTel's short names
_handling: ContextVar[bool] = ContextVar("otel_llm_log_handling", default=False)


class LogHandler(logging.Handler):
    """A ``logging.Handler`` that emits OpenTelemetry log records through ``logger_provider``.

    The OTel logger is named after the ``logging`` logger; the body is the formatted message
    (``self.format`` when a formatter is set); ``extra=`` fields become attributes, with
    ``code.*`` and, for exceptions, ``exception.*``.

    It never raises: a record that cannot be converted (a filter, formatter, format argument or
    attribute raising) is dropped and counted as ``handler_error``, and the first such error per
    exception type is logged. DEBUG and INFO records of the LLM SDKs and HTTP clients are never
    exported (they carry request options, prompts included). Records logged *while* it handles a record (the SDK warning about a
    full queue or a bad attribute) and records logged inside the export pipeline (exporters run
    with instrumentation suppressed) are left to the other handlers: the pipeline's own failures
    can never loop back into it.
    """

    def __init__(self, logger_provider: Any, level: int = logging.NOTSET, counts: DropCounts | None = None) -> None:
        super().__init__(level)
        self._provider = logger_provider
        self._loggers: dict[str, Any] = {}
        self.counts = counts if counts is not None else DropCounts(DROP_REASONS)
        self._reported: set[type[BaseException]] = set()

    def handle(self, record: logging.LogRecord) -> Any:
        if _handling.get() or not is_instrumentation_enabled():
            return False
        if record.levelno < logging.WARNING and record.name.split(".", 1)[0] in _CHATTY_CLIENTS:
            return False  # their debug/info records carry request options: prompts, even headers
        token = _handling.set(True)
        try:
            return super().handle(record)  # filters, then emit() under the handler lock
        except Exception as error:  # noqa: BLE001 - logging must never break the caller
            self.counts.add(HANDLER_ERROR)
            if type(error) not in self._reported:
                self._reported.add(type(error))
                _log.warning(
                    "otel-llm: a log record from logger %r could not be exported (%s); such records are "
                    "dropped and counted in %s", record.name, type(error).__name__, DROPPED_METRIC, exc_info=True,
                )
            return False
        finally:
            _handling.reset(token)

    def emit(self, record: logging.LogRecord) -> None:
        logger = self._loggers.get(record.name)
        if logger is None:
            logger = self._loggers.setdefault(record.name, self._provider.get_logger(record.name))
        logger.emit(self._translate(record))

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        body = self.format(record) if self.formatter else record.getMessage()
        attributes: dict[str, Any] = {k: v for k, v in vars(record).items() if k not in _RESERVED}
        attributes["code.file.path"] = record.pathname
        attributes["code.function.name"] = record.funcName
        attributes["code.line.number"] = record.lineno
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            attributes["exception.type"] = exc_type.__qualname__
            attributes["exception.message"] = str(exc)
            attributes["exception.stacktrace"] = "".join(traceback.format_exception(exc_type, exc, tb))
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time_ns(),
            context=get_current(),
            severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
            severity_number=std_to_otel(record.levelno),
            body=body,
            attributes=attributes,
        )

    def flush(self) -> None:
        """Nothing to do: flushing would wait on the network (``LogPipeline.shutdown`` flushes)."""


# ---------------------------------------------------------------------- processor


class BatchLogProcessor(CountingBatch, BatchLogRecordProcessor):
    """The SDK's batch processor, counting every record it loses, with a bounded shutdown.

    Emitting appends to a bounded deque (``max_queue_size``; when full the oldest record is
    dropped) and at most wakes the worker thread; the network is only touched by the worker.
    ``shutdown()`` waits at most ``shutdown_timeout_millis`` for the worker to export what is
    queued, then shuts the exporter down (which aborts its retries) and returns; whatever is still
    queued then is counted as ``shutdown_timeout``. Queue size, batch size and schedule delay
    default to ``OTEL_BLRP_*`` as in the SDK.
    """

    REASONS = DROP_REASONS


# ---------------------------------------------------------------------- pipeline


@dataclass
class LogPipeline:
    """A LoggerProvider, its batch processors and the ``logging`` handler feeding it."""

    provider: LoggerProvider
    handler: LogHandler
    processors: list[BatchLogProcessor]
    _attached_to: list[logging.Logger] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        exporters: Iterable[LogRecordExporter],
        *,
        resource: Any = None,
        meter_provider: MeterProvider | None = None,
        level: int = logging.INFO,
        shutdown_timeout_millis: float = 5_000,
        **batch_options: Any,
    ) -> LogPipeline:
        """One ``BatchLogProcessor`` per exporter; ``batch_options`` go to each (queue and batch
        sizes, schedule delay). With ``meter_provider``, drops are reported as ``otel_llm.logs.dropped``."""
        provider = LoggerProvider(resource=resource, meter_provider=meter_provider)
        processors = []
        for exporter in exporters:
            processor = BatchLogProcessor(
                exporter, shutdown_timeout_millis=shutdown_timeout_millis, meter_provider=meter_provider, **batch_options
            )
            provider.add_log_record_processor(processor)
            processors.append(processor)
        pipeline = cls(provider, LogHandler(provider, level), processors)
        if meter_provider is not None:
            pipeline._register_metric(meter_provider)
        return pipeline

    def dropped(self) -> dict[str, int]:
        """Records lost so far, by reason (every reason present, zeros included)."""
        return dropped_by_reason([p.counts for p in self.processors] + [self.handler.counts], DROP_REASONS)

    def _register_metric(self, meter_provider: MeterProvider) -> None:
        register_dropped_counter(meter_provider, "otel_llm.logs", semconv.METRIC_LOGS_DROPPED, self.dropped)

    def attach(self, logger: logging.Logger | None = None) -> None:
        """Add the handler to ``logger`` (the root logger by default); ``shutdown()`` removes it."""
        logger = logger if logger is not None else logging.getLogger()
        if self.handler not in logger.handlers:
            logger.addHandler(self.handler)
            self._attached_to.append(logger)

    def shutdown(self) -> None:
        """Detach the handler, then flush and stop; returns within about ``shutdown_timeout_millis``
        per exporter, whatever state the collector is in."""
        for logger in self._attached_to:
            logger.removeHandler(self.handler)
        self._attached_to.clear()
        self.provider.shutdown()
