"""A live summary of recorded calls (requests/s, p95, tokens/min, cost), fed as a recorder listener."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ..recorder import LLMCall


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
