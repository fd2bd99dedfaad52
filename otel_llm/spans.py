"""Span export that never makes the application wait, and counts every span it loses.

:class:`BatchSpanProcessor` is the SDK's ``BatchSpanProcessor`` (bounded queue, export on a
worker thread) plus an exact count of every span it loses and a shutdown with a time bound; the
same approach as :class:`otel_llm.logs.BatchLogProcessor`, for spans.

Why not the SDK alone: the SDK (1.39 - 1.45 at least) drops a span when its queue is full, but
counts the drop only into its opt-in internal metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``,
``otel.sdk.processor.span.processed`` with ``error.type=queue_full``), never counts the batches
its exporter gave up on, and waits up to 30 s per exporter at shutdown.

Losses are reported as the counter ``otel_llm.spans.dropped`` (attribute ``error.type``, one of
:data:`DROP_REASONS`) by :func:`register_dropped_metric`; ``configure()`` wires it all up.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor as _SdkBatchSpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .version import __version__

__all__ = ["DROPPED_METRIC", "DROP_REASONS", "BatchSpanProcessor", "SpanCounts", "register_dropped_metric"]

DROPPED_METRIC = "otel_llm.spans.dropped"
DROPPED_UNIT = "{span}"
# Values of the counter's ``error.type`` attribute: why a span never reached the collector.
QUEUE_FULL = "queue_full"  # the bounded queue was full when the span ended (the oldest queued span goes)
ALREADY_SHUTDOWN = "already_shutdown"  # ended after shutdown
EXPORT_FAILED = "export_failed"  # the exporter gave up on its batch (collector down, refusing, too slow) or raised
SHUTDOWN_TIMEOUT = "shutdown_timeout"  # still queued when shutdown's time bound ran out
DROP_REASONS = (QUEUE_FULL, ALREADY_SHUTDOWN, EXPORT_FAILED, SHUTDOWN_TIMEOUT)


class SpanCounts:
    """Thread-safe tallies: the drop reasons above, plus ``submitted`` (handed to the exporter)
    and ``exported`` (accepted by it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def get(self, key: str) -> int:
        return self._counts.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def dropped(self) -> int:
        with self._lock:
            return sum(self._counts.get(reason, 0) for reason in DROP_REASONS)


class _CountingExporter(SpanExporter):
    """Counts what the wrapped exporter accepted and what it gave up on."""

    def __init__(self, exporter: SpanExporter, counts: SpanCounts) -> None:
        self.exporter = exporter
        self._counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:
            self._counts.add(EXPORT_FAILED, len(spans))
            raise  # the SDK's worker logs it and carries on
        ok = getattr(result, "name", None) == SpanExportResult.SUCCESS.name
        self._counts.add("exported" if ok else EXPORT_FAILED, len(spans))
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if "timeout_millis" in inspect.signature(self.exporter.shutdown).parameters:
            self.exporter.shutdown(timeout_millis=timeout_millis)
        else:
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _DropHook:
    """Stands in for the SDK processor's internal metrics object: the SDK calls ``drop_items``
    exactly where it drops a span and ``finish_items`` when it hands a batch to the exporter."""

    def __init__(self, inner: Any, counts: SpanCounts) -> None:
        self._inner = inner
        self._counts = counts

    def register_queue_size(self, get_queue_size: Any) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = QUEUE_FULL) -> None:
        self._counts.add(error_type, count)
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._counts.add("submitted", count)
        self._inner.finish_items(count)


class BatchSpanProcessor(_SdkBatchSpanProcessor):
    """The SDK's batch span processor, counting every span it loses, with a bounded shutdown.

    Ending a span appends it to a bounded deque (``max_queue_size``; when full the oldest span is
    dropped) and at most wakes the worker thread; only the worker touches the network.
    ``shutdown()`` waits at most ``shutdown_timeout_millis`` for the worker to export what is
    queued, then shuts the exporter down (which aborts its retries) and returns; whatever is still
    queued then is counted as ``shutdown_timeout``. Queue size, batch size and schedule delay
    default to ``OTEL_BSP_*`` as in the SDK.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        shutdown_timeout_millis: float = 5_000,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.counts = SpanCounts()
        self.exporter = exporter
        super().__init__(
            _CountingExporter(exporter, self.counts),
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            meter_provider=meter_provider,
        )
        # Hook the object the SDK reports its drops to (as otel_llm.logs does; pinned by
        # tests/test_reliability_export.py).
        batch = self._batch_processor
        batch._metrics = _DropHook(batch._metrics, self.counts)
        self.max_queue_size: int = batch._max_queue_size
        self.shutdown_timeout_millis = shutdown_timeout_millis
        self._closed = False

    def pending(self) -> int:
        """Spans waiting in the queue (not yet handed to the exporter)."""
        return len(self._batch_processor._queue)

    def in_flight(self) -> int:
        """Spans handed to the exporter whose export has not ended yet (at most one batch). After a
        bounded shutdown these may still be in a request to a stuck collector: they are counted as
        exported or ``export_failed`` when it ends."""
        counts = self.counts
        return counts.get("submitted") - counts.get("exported") - counts.get(EXPORT_FAILED)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._batch_processor.shutdown(timeout_millis=self.shutdown_timeout_millis)
        queue = self._batch_processor._queue
        left = len(queue)
        queue.clear()
        if left:
            self.counts.add(SHUTDOWN_TIMEOUT, left)


def dropped(processors: Iterable[BatchSpanProcessor]) -> dict[str, int]:
    """Spans lost so far by these processors, by reason (every reason present, zeros included)."""
    processors = list(processors)
    return {reason: sum(p.counts.get(reason) for p in processors) for reason in DROP_REASONS}


def register_dropped_metric(meter_provider: MeterProvider, processors: Sequence[BatchSpanProcessor]) -> None:
    """Report the processors' losses as the observable counter ``otel_llm.spans.dropped``."""

    def observe(_options: CallbackOptions) -> list[Observation]:
        return [Observation(n, {"error.type": reason}) for reason, n in dropped(processors).items()]

    meter = meter_provider.get_meter("otel_llm.spans", __version__)
    meter.create_observable_counter(
        DROPPED_METRIC,
        callbacks=[observe],
        unit=DROPPED_UNIT,
        description="Spans that never reached the collector, by reason (error.type)",
    )
