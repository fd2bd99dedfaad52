"""Sliding windows over finished calls: provider health, per model availability, the anomaly detector.

Plain data structures with an explicit ``now``: no clock, no locks, no OpenTelemetry (the gateway
holds the lock and the clock). Every figure here is documented in docs/gateway.md.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import GatewayConfig

OK, FAILED, IGNORED = "ok", "failed", "ignored"


def classify(call: Any, config: GatewayConfig) -> tuple[str, float | None]:
    """(outcome, normalised latency) of a finished call.

    ``failed``: any error that is not a client error; ``ignored``: a client error (400, 401, 404 ...:
    not the provider's fault), or a call its caller cancelled before anything came back; ``ok``
    otherwise (a stream its caller left after the first chunk included). The normalised latency of a successful
    call is its time to first chunk over ``ttft_objective`` for streams that produced a chunk, else its
    duration over ``latency_objective``: <= 1 means within the objective.
    """
    error = call.error_type
    if error is not None:
        return (IGNORED if error in config.client_error_types else FAILED), None
    if getattr(call, "cancelled", False) and call.time_to_first_chunk is None:
        return IGNORED, None
    if call.stream and call.time_to_first_chunk is not None:
        return OK, call.time_to_first_chunk / config.ttft_objective
    return OK, (call.duration or 0.0) / config.latency_objective


@dataclass(frozen=True)
class HealthFigures:
    """What decided a provider's health score over the window."""

    calls: int  # successes + failures (client errors excluded)
    successes: int
    failures: int
    fast: int  # successes within the latency objective
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "successes": self.successes, "failures": self.failures, "fast": self.fast,
                "success_ratio": self.successes / self.calls if self.calls else None,
                "fast_ratio": self.fast / self.successes if self.successes else None, "score": self.score}


def health_score(successes: int, failures: int, fast: int, latency_weight: float) -> float:
    """``success_ratio x (1 - w + w x fast_ratio)``: 1 all fast successes, 1 - w all slow, 0 all failed."""
    calls = successes + failures
    if calls == 0 or successes == 0:
        return 0.0
    return (successes / calls) * (1.0 - latency_weight + latency_weight * fast / successes)


class HealthWindow:
    """Calls of one provider over the last ``window`` seconds, in 1-second buckets.

    A call finished at time ``t`` counts while ``floor(t) > now - window``.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._buckets: deque[list[int]] = deque()  # [second, successes, failures, fast]

    def add(self, t: float, outcome: str, latency: float | None) -> None:
        if outcome == IGNORED:
            return
        second = math.floor(t)
        if not self._buckets or self._buckets[-1][0] != second:
            if self._buckets and self._buckets[-1][0] > second:  # out of order (threads): find its bucket
                for bucket in reversed(self._buckets):
                    if bucket[0] == second:
                        self._count(bucket, outcome, latency)
                        return
            self._buckets.append([second, 0, 0, 0])
        self._count(self._buckets[-1], outcome, latency)

    @staticmethod
    def _count(bucket: list[int], outcome: str, latency: float | None) -> None:
        if outcome == OK:
            bucket[1] += 1
            bucket[3] += latency is not None and latency <= 1.0
        else:
            bucket[2] += 1

    def figures(self, now: float, latency_weight: float) -> HealthFigures | None:
        """None when the window holds no call."""
        while self._buckets and self._buckets[0][0] <= now - self.window:
            self._buckets.popleft()
        successes = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        fast = sum(b[3] for b in self._buckets)
        if successes + failures == 0:
            return None
        return HealthFigures(successes + failures, successes, failures, fast,
                             health_score(successes, failures, fast, latency_weight))


class AvailabilityWindow:
    """Successes and provider failures of one model over ``window`` seconds, in ``bucket``-second buckets.

    A bucket counts while its end is after ``now - window`` (so the window is up to one bucket longer).
    """

    def __init__(self, window: float, bucket: float) -> None:
        self.window, self.bucket = window, bucket
        self._buckets: deque[list[int]] = deque()  # [index, successes, failures]

    def add(self, t: float, outcome: str) -> None:
        if outcome == IGNORED:
            return
        index = math.floor(t / self.bucket)
        target = None
        for bucket in reversed(self._buckets):
            if bucket[0] == index:
                target = bucket
                break
            if bucket[0] < index:
                break
        if target is None:
            target = [index, 0, 0]
            self._buckets.append(target)
            if len(self._buckets) > 1 and self._buckets[-2][0] > index:
                self._buckets = deque(sorted(self._buckets))
        target[1 if outcome == OK else 2] += 1

    def availability(self, now: float) -> float | None:
        while self._buckets and (self._buckets[0][0] + 1) * self.bucket <= now - self.window:
            self._buckets.popleft()
        successes = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        return successes / (successes + failures) if successes + failures else None


@dataclass
class Interval:
    """One anomaly-detector interval of one provider."""

    index: int
    calls: int = 0  # successes + failures (client errors excluded)
    failures: int = 0
    latency_sum: float = 0.0  # normalised latencies of successful calls
    latency_count: int = 0
    cost: float = 0.0
    anomalies: set[str] = field(default_factory=set)

    @property
    def error_ratio(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def mean_latency(self) -> float | None:
        return self.latency_sum / self.latency_count if self.latency_count else None


class AnomalyDetector:
    """The simple detector of docs/gateway.md, for one provider.

    Time is cut into intervals of ``anomaly_interval`` seconds. When an interval closes (the first call
    of a later interval arrives, or ``flush(now)`` is called after its end), it is compared with the
    previous ``anomaly_baseline`` intervals that had calls, leaving out those already anomalous for the
    same type; with fewer than ``anomaly_min_baseline`` of them nothing is said. It is anomalous for:

    * ``latency``: >= ``anomaly_min_calls`` calls, and its mean normalised latency (see ``classify``)
      is more than ``latency_factor`` times the baseline's;
    * ``error_rate``: >= ``anomaly_min_calls`` calls, and its error ratio is at least the baseline's
      plus ``error_rate_delta``;
    * ``cost``: its mean cost per call is more than ``cost_factor`` times the baseline's mean cost per
      call (> 0): expensive models or long prompts, not merely more traffic (that shows in the rates).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._current: Interval | None = None
        self._history: deque[Interval] = deque(maxlen=config.anomaly_baseline)

    def add(self, t: float, outcome: str, latency: float | None, cost: float | None) -> list[str]:
        """Count a finished call; returns the anomalies of an interval this call closed."""
        if outcome == IGNORED:
            return []
        found = self.flush(t)
        index = math.floor(t / self.config.anomaly_interval)
        if self._current is None:
            self._current = Interval(index)
        elif index < self._current.index:  # a late call of an interval already judged: drop it
            return found
        current = self._current
        current.calls += 1
        if outcome == OK:
            if latency is not None:
                current.latency_sum += latency
                current.latency_count += 1
        else:
            current.failures += 1
        current.cost += cost or 0.0
        return found

    def flush(self, now: float) -> list[str]:
        """Close the current interval if ``now`` is past its end; returns its anomalies."""
        current = self._current
        if current is None or math.floor(now / self.config.anomaly_interval) <= current.index:
            return []
        self._current = None
        current.anomalies = set(self._judge(current))
        self._history.append(current)
        return sorted(current.anomalies)

    def _baseline(self, kind: str) -> list[Interval]:
        return [i for i in self._history if kind not in i.anomalies]

    def _judge(self, interval: Interval) -> list[str]:
        config = self.config
        found = []
        enough_calls = interval.calls >= config.anomaly_min_calls
        baseline = self._baseline("latency")
        mean = interval.mean_latency
        if enough_calls and mean is not None and len(baseline) >= config.anomaly_min_baseline:
            count = sum(i.latency_count for i in baseline)
            if count:
                base = sum(i.latency_sum for i in baseline) / count
                if base > 0 and mean > config.latency_factor * base:
                    found.append("latency")
        baseline = self._baseline("error_rate")
        if enough_calls and len(baseline) >= config.anomaly_min_baseline:
            calls = sum(i.calls for i in baseline)
            base = sum(i.failures for i in baseline) / calls if calls else 0.0
            if interval.error_ratio - base >= config.error_rate_delta - 1e-12:
                found.append("error_rate")
        baseline = self._baseline("cost")
        if interval.cost > 0 and len(baseline) >= config.anomaly_min_baseline:
            calls = sum(i.calls for i in baseline)
            base = sum(i.cost for i in baseline) / calls if calls else 0.0
            if base > 0 and interval.cost / interval.calls > config.cost_factor * base:
                found.append("cost")
        return found
