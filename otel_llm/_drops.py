"""Exact accounting of what the SDK's batch processors lose, shared by spans and logs.

The SDK (1.39 - 1.45 at least) counts its drops only into opt-in internal metrics. We hook the
object it reports them to (``_batch_processor._metrics``), count what the exporter accepted or
gave up on, and bound shutdown. Pinned by tests/test_logs.py and tests/test_reliability_export.py:
an SDK upgrade that moves these internals fails them loudly.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

# Values of the ``error.type`` attribute of the dropped counters: why an item never reached the collector.
QUEUE_FULL = "queue_full"  # the bounded queue was full (the oldest queued item goes)
ALREADY_SHUTDOWN = "already_shutdown"  # arrived after shutdown
EXPORT_FAILED = "export_failed"  # the exporter gave up on its batch (collector down, refusing, too slow) or raised
SHUTDOWN_TIMEOUT = "shutdown_timeout"  # still queued when shutdown's time bound ran out
PIPELINE_REASONS = (QUEUE_FULL, ALREADY_SHUTDOWN, EXPORT_FAILED, SHUTDOWN_TIMEOUT)


class DropCounts:
    """Thread-safe tallies: drop reasons, plus ``submitted`` (handed to the exporter) and
    ``exported`` (accepted by it)."""

    def __init__(self, reasons: Sequence[str] = PIPELINE_REASONS) -> None:
        self.reasons = tuple(reasons)
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
            return sum(self._counts.get(reason, 0) for reason in self.reasons)


def dropped_by_reason(tallies: Iterable[DropCounts], reasons: Sequence[str]) -> dict[str, int]:
    """Summed drops by reason, every reason present (zeros included)."""
    tallies = list(tallies)
    return {reason: sum(t.get(reason) for t in tallies) for reason in reasons}


class CountingExporter:
    """Wraps a span or log exporter: counts what it accepted and what it gave up on."""

    def __init__(self, exporter: Any, counts: DropCounts) -> None:
        self.exporter = exporter
        self._counts = counts

    def export(self, batch: Sequence[Any]) -> Any:
        try:
            result = self.exporter.export(batch)
        except Exception:
            self._counts.add(EXPORT_FAILED, len(batch))
            raise  # the SDK's worker logs it and carries on
        ok = getattr(result, "name", None) == "SUCCESS"
        self._counts.add("exported" if ok else EXPORT_FAILED, len(batch))
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
    exactly where it drops an item and ``finish_items`` when it hands a batch to the exporter."""

    def __init__(self, inner: Any, counts: DropCounts) -> None:
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


class CountingBatch:
    """Mixin for the SDK's batch span/log processors (listed before the SDK class): the SDK's
    processor around a ``CountingExporter``, its drops hooked, its shutdown bounded.

    ``batch_options`` go to the SDK's processor as they are (``max_queue_size``,
    ``max_export_batch_size``, ``schedule_delay_millis``, ``meter_provider``); unset ones default to
    the SDK's ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` environment.
    """

    REASONS: tuple[str, ...] = PIPELINE_REASONS

    def __init__(self, exporter: Any, *, shutdown_timeout_millis: float = 5_000, **batch_options: Any) -> None:
        self.counts = DropCounts(self.REASONS)
        super().__init__(CountingExporter(exporter, self.counts), **batch_options)  # type: ignore[call-arg]
        batch = self._batch_processor  # type: ignore[attr-defined]
        batch._metrics = _DropHook(batch._metrics, self.counts)
        self.exporter = exporter
        self.max_queue_size: int = batch._max_queue_size
        self.shutdown_timeout_millis = shutdown_timeout_millis
        self._closed = False

    def pending(self) -> int:
        """Items waiting in the queue (not yet handed to the exporter)."""
        return len(self._batch_processor._queue)  # type: ignore[attr-defined]

    def in_flight(self) -> int:
        """Items handed to the exporter whose export has not ended yet (at most one batch). After a
        bounded shutdown these may still be in a request to a stuck collector: they are counted as
        exported or ``export_failed`` when it ends."""
        counts = self.counts
        return counts.get("submitted") - counts.get("exported") - counts.get(EXPORT_FAILED)

    def shutdown(self) -> None:
        """Wait at most ``shutdown_timeout_millis`` for the worker to export what is queued, then
        shut the exporter down (which aborts its retries); what is still queued is counted."""
        if self._closed:
            return
        self._closed = True
        self._batch_processor.shutdown(timeout_millis=self.shutdown_timeout_millis)  # type: ignore[attr-defined]
        queue = self._batch_processor._queue  # type: ignore[attr-defined]
        left = len(queue)
        queue.clear()
        if left:
            self.counts.add(SHUTDOWN_TIMEOUT, left)


def register_dropped_counter(
    meter_provider: Any, scope: str, spec: tuple[str, str, str], dropped: Any
) -> None:
    """Report ``dropped() -> {reason: n}`` as an observable counter with ``error.type`` = reason."""
    from opentelemetry.metrics import Observation

    from .version import __version__

    def observe(_options: Any) -> list[Observation]:
        return [Observation(n, {"error.type": reason}) for reason, n in dropped().items()]

    name, unit, description = spec
    meter_provider.get_meter(scope, __version__).create_observable_counter(
        name, callbacks=[observe], unit=unit, description=description
    )
