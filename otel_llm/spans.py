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

from collections.abc import Sequence

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor as _SdkBatchSpanProcessor

from . import semconv
from ._drops import (
    ALREADY_SHUTDOWN,
    EXPORT_FAILED,
    PIPELINE_REASONS,
    QUEUE_FULL,
    SHUTDOWN_TIMEOUT,
    CountingBatch,
    dropped_by_reason,
    register_dropped_counter,
)

__all__ = [
    "ALREADY_SHUTDOWN", "DROPPED_METRIC", "DROP_REASONS", "EXPORT_FAILED", "QUEUE_FULL", "SHUTDOWN_TIMEOUT",
    "BatchSpanProcessor", "dropped", "register_dropped_metric",
]

DROPPED_METRIC = semconv.METRIC_SPANS_DROPPED[0]
DROP_REASONS = PIPELINE_REASONS


class BatchSpanProcessor(CountingBatch, _SdkBatchSpanProcessor):
    """The SDK's batch span processor, counting every span it loses, with a bounded shutdown.

    Ending a span appends it to a bounded deque (``max_queue_size``; when full the oldest span is
    dropped) and at most wakes the worker thread; only the worker touches the network.
    ``shutdown()`` waits at most ``shutdown_timeout_millis`` for the worker to export what is
    queued, then shuts the exporter down (which aborts its retries) and returns; whatever is still
    queued then is counted as ``shutdown_timeout``. Queue size, batch size and schedule delay
    default to ``OTEL_BSP_*`` as in the SDK.
    """

    REASONS = DROP_REASONS


def dropped(processors: Sequence[BatchSpanProcessor]) -> dict[str, int]:
    """Spans lost so far by these processors, by reason (every reason present, zeros included)."""
    return dropped_by_reason((p.counts for p in processors), DROP_REASONS)


def register_dropped_metric(meter_provider: MeterProvider, processors: Sequence[BatchSpanProcessor]) -> None:
    """Report the processors' losses as the observable counter ``otel_llm.spans.dropped``."""
    register_dropped_counter(meter_provider, "otel_llm.spans", semconv.METRIC_SPANS_DROPPED,
                             lambda: dropped(processors))
