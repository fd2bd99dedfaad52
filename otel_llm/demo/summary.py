"""A live summary of recorded calls (requests/s, p95, tokens/min, cost), fed as a recorder listener."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ..recorder import LLMCall
from ..server.recorder import ServerRequest


@dataclass(frozen=True)
class Snapshot:
    window_seconds: float
    requests: int
    errors: int
    requests_per_second: float
    p50_seconds: float | None
    p95_seconds: float | None
    tokens_per_minute: float
    total_requests: int
    total_errors: int
    total_tokens: int
    total_cost_usd: float

    def line(self) -> str:
        p50 = f"{self.p50_seconds * 1000:.0f}ms" if self.p50_seconds is not None else "-"
        p95 = f"{self.p95_seconds * 1000:.0f}ms" if self.p95_seconds is not None else "-"
        return (
            f"{self.requests_per_second:5.1f} req/s  p50 {p50:>6}  p95 {p95:>6}  "
            f"{self.tokens_per_minute:8.0f} tokens/min  errors {self.errors}/{self.requests}  "
            f"total {self.total_requests} calls, ${self.total_cost_usd:.4f}"
        )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class LiveSummary:
    """Keeps the calls of the last ``window`` seconds; ``snapshot()`` summarises them."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._calls: deque[tuple[float, float, int, bool]] = deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.total_requests = 0
        self.total_errors = 0
        self.total_tokens = 0
        self.total_cost = 0.0

    def __call__(self, call: LLMCall) -> None:
        tokens = (call.input_tokens or 0) + (call.output_tokens or 0)
        failed = call.error_type is not None
        with self._lock:
            self._calls.append((time.monotonic(), call.duration or 0.0, tokens, failed))
            self.total_requests += 1
            self.total_errors += failed
            self.total_tokens += tokens
            self.total_cost += call.cost or 0.0

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            while self._calls and self._calls[0][0] < now - self.window:
                self._calls.popleft()
            calls = list(self._calls)
            totals = (self.total_requests, self.total_errors, self.total_tokens, self.total_cost)
        span = max(min(self.window, now - self._started), 1e-9)
        durations = [duration for _, duration, _, failed in calls if not failed]
        return Snapshot(
            window_seconds=span,
            requests=len(calls),
            errors=sum(1 for call in calls if call[3]),
            requests_per_second=len(calls) / span,
            p50_seconds=percentile(durations, 0.50),
            p95_seconds=percentile(durations, 0.95),
            tokens_per_minute=sum(call[2] for call in calls) * 60 / span,
            total_requests=totals[0],
            total_errors=totals[1],
            total_tokens=totals[2],
            total_cost_usd=totals[3],
        )


class ServedSummary:
    """The server side of the demo: the requests the simulator served (a ``ServerRecorder``
    listener), over the last ``window`` seconds; time to first token is the streams'."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._requests: deque[tuple[float, float | None, bool]] = deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.total_requests = 0
        self.total_streams = 0
        self.total_errors = 0

    def __call__(self, request: ServerRequest) -> None:
        failed = request.error_type is not None
        with self._lock:
            self._requests.append((time.monotonic(), request.time_to_first_token if request.is_stream else None, failed))
            self.total_requests += 1
            self.total_streams += request.is_stream
            self.total_errors += failed

    def line(self) -> str:
        now = time.monotonic()
        with self._lock:
            while self._requests and self._requests[0][0] < now - self.window:
                self._requests.popleft()
            requests = list(self._requests)
        span = max(min(self.window, now - self._started), 1e-9)
        ttfts = [ttft for _, ttft, failed in requests if ttft is not None and not failed]

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}ms"

        return (f"  served {len(requests) / span:5.1f} req/s  TTFT p50 {ms(percentile(ttfts, 0.5)):>6}  "
                f"p95 {ms(percentile(ttfts, 0.95)):>6}  errors {sum(1 for r in requests if r[2])}/{len(requests)}  "
                f"total {self.total_requests} requests")


# ---------------------------------------------------------------------- otel-llm traffic


@dataclass(frozen=True)
class TrafficReport:
    """The end-of-run summary of ``otel-llm traffic``."""

    seconds: float
    sent: int
    succeeded: int
    failed: int
    deliberate_errors: int  # calls sent to fail on purpose (bad model, oversize)
    unexpected_failures: int  # calls that failed although they were not meant to
    errors: dict[str, int]  # exception class name -> count, all failures
    streams: int
    p50_seconds: float | None  # successful calls, until the response (streams: until the last chunk)
    p95_seconds: float | None
    input_tokens: int  # as recorded by otel-llm (streams included)
    output_tokens: int
    recorded_calls: int  # calls the recorder saw end: should equal ``sent``
    telemetry: dict[str, object]  # what happened to the telemetry (exporters, spans exported/dropped)

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3), "sent": self.sent, "succeeded": self.succeeded, "failed": self.failed,
            "deliberate_errors": self.deliberate_errors, "unexpected_failures": self.unexpected_failures,
            "errors": dict(sorted(self.errors.items())), "streams": self.streams,
            "p50_ms": None if self.p50_seconds is None else round(self.p50_seconds * 1000, 1),
            "p95_ms": None if self.p95_seconds is None else round(self.p95_seconds * 1000, 1),
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "recorded_calls": self.recorded_calls, "telemetry": self.telemetry,
        }

    def lines(self) -> list[str]:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}ms"

        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        errors = ", ".join(f"{name} {count}" for name, count in sorted(self.errors.items())) or "none"
        lines = [
            f"sent      {self.sent} calls in {self.seconds:.1f}s ({rate:.1f}/s), {self.streams} streamed",
            f"ok        {self.succeeded}   p50 {ms(self.p50_seconds)}  p95 {ms(self.p95_seconds)}",
            f"failed    {self.failed} ({self.deliberate_errors} on purpose, {self.unexpected_failures} unexpected): {errors}",
            f"tokens    {self.input_tokens} in, {self.output_tokens} out (as recorded by otel-llm)",
        ]
        if self.recorded_calls != self.sent:
            lines.append(f"warning   otel-llm recorded {self.recorded_calls} of {self.sent} calls: is the openai "
                         f"SDK instrumented twice, or not at all?")
        return lines


class TrafficTotals:
    """Collects ``CallResult``s from a traffic loop (``add``) and the recorder's view of the same
    calls (as a recorder listener) into a :class:`TrafficReport`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._durations: list[float] = []
        self._errors: dict[str, int] = {}
        self.sent = self.failed = self.deliberate = self.unexpected = self.streams = 0
        self.input_tokens = self.output_tokens = self.recorded_calls = 0

    def add(self, result: object) -> None:
        """A ``otel_llm.demo.workload.CallResult``."""
        call, seconds, error = result  # type: ignore[misc]
        with self._lock:
            self.sent += 1
            self.streams += call.kind == "stream"
            self.deliberate += call.error is not None
            if error is None:
                self._durations.append(seconds)
            else:
                self.failed += 1
                self.unexpected += call.error is None
                self._errors[error] = self._errors.get(error, 0) + 1

    def __call__(self, call: LLMCall) -> None:
        with self._lock:
            self.recorded_calls += 1
            self.input_tokens += call.input_tokens or 0
            self.output_tokens += call.output_tokens or 0

    def report(self, seconds: float, telemetry: dict[str, object] | None = None) -> TrafficReport:
        with self._lock:
            return TrafficReport(
                seconds=seconds, sent=self.sent, succeeded=self.sent - self.failed, failed=self.failed,
                deliberate_errors=self.deliberate, unexpected_failures=self.unexpected, errors=dict(self._errors),
                streams=self.streams, p50_seconds=percentile(self._durations, 0.50),
                p95_seconds=percentile(self._durations, 0.95), input_tokens=self.input_tokens,
                output_tokens=self.output_tokens, recorded_calls=self.recorded_calls, telemetry=dict(telemetry or {}),
            )
