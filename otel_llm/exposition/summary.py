"""The JSON summary, the health verdict and the dashboard's history, computed from the registry.

Everything comes from the metric families the endpoint serves (nothing is counted twice): totals are
the cumulative counters; rates, error ratios and percentiles over a window are differences between
the current families and a snapshot taken ``window`` seconds earlier. Snapshots are taken when the
endpoint is read (scrapes, page refreshes, health probes), at most one per ``step`` seconds.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from ..gateway import names as gw

PROVIDER, MODEL, ERROR, TOKEN_TYPE = "gen_ai_provider_name", "gen_ai_request_model", "error_type", "gen_ai_token_type"
_DURATION = "gen_ai_client_operation_duration_seconds"
_TTFT = "gen_ai_client_operation_time_to_first_chunk_seconds"
_TOKENS = "gen_ai_client_token_usage"
_COST = "llm_client_cost"
# The server side (otel_llm.server), per (http_route, requested model).
ROUTE = "http_route"
_SERVER_DURATION = "gen_ai_server_request_duration_seconds"
_SERVER_TTFT = "gen_ai_server_time_to_first_token_seconds"
_SERVER_TPOT = "gen_ai_server_time_per_output_token_seconds"
_SERVER_TOKENS = "llm_server_token_usage"
_SERVER_STREAMS = "llm_server_active_streams"
_BREAKER_NAMES = {v: k for k, v in gw.BREAKER_STATE_VALUE.items()}

Key = tuple[str, str]


@dataclass
class Snapshot:
    """Cumulative figures at time ``t`` (monotonic seconds)."""

    t: float
    calls: dict[Key, list[float]] = field(default_factory=dict)  # (provider, model) -> [calls, errors]
    latency: dict[Key, dict[float, float]] = field(default_factory=dict)  # cumulative buckets, le -> count
    ttft: dict[Key, dict[float, float]] = field(default_factory=dict)
    tokens: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (provider, model, type) -> sum
    cost: dict[Key, float] = field(default_factory=dict)
    health: dict[str, float] = field(default_factory=dict)
    breakers: dict[str, float] = field(default_factory=dict)
    rate_limits: dict[Key, float] = field(default_factory=dict)  # (provider, kind)
    availability: dict[Key, float] = field(default_factory=dict)
    keys: dict[Key, float] = field(default_factory=dict)  # (group, state)
    in_flight: dict[str, float] = field(default_factory=dict)
    streams_active: dict[str, float] = field(default_factory=dict)
    anomalies: dict[Key, float] = field(default_factory=dict)  # (provider, type)
    # the server side, by (route, model)
    served: dict[Key, list[float]] = field(default_factory=dict)  # [requests, errors]
    served_errors: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (route, model, error type)
    served_ttft: dict[Key, dict[float, float]] = field(default_factory=dict)
    served_tpot: dict[Key, dict[float, float]] = field(default_factory=dict)
    served_output_tokens: dict[Key, float] = field(default_factory=dict)
    served_streams: dict[Key, float] = field(default_factory=dict)
    service: str | None = None


def _add(target: dict[Any, float], key: Any, value: float) -> None:
    target[key] = target.get(key, 0.0) + value


def take_snapshot(families: Iterable[Metric], t: float) -> Snapshot:
    snap = Snapshot(t)
    for family in families:
        name = family.name
        for sample in family.samples:
            labels = sample.labels
            provider = labels.get(PROVIDER, "")
            key = (provider, labels.get(MODEL, ""))
            value = float(sample.value)
            if math.isnan(value):
                continue
            if name == _DURATION:
                if sample.name.endswith("_count"):
                    entry = snap.calls.setdefault(key, [0.0, 0.0])
                    entry[0] += value
                    if labels.get(ERROR):
                        entry[1] += value
                elif sample.name.endswith("_bucket"):
                    _add(snap.latency.setdefault(key, {}), float(labels["le"]), value)
            elif name == _TTFT and sample.name.endswith("_bucket"):
                _add(snap.ttft.setdefault(key, {}), float(labels["le"]), value)
            elif name == _TOKENS and sample.name.endswith("_sum"):
                _add(snap.tokens, (*key, labels.get(TOKEN_TYPE, "")), value)
            elif name == _COST and sample.name.endswith("_total"):
                _add(snap.cost, key, value)
            elif name == gw.PROVIDER_HEALTH.base:
                snap.health[provider] = value
            elif name == gw.BREAKER_STATE_METRIC.base:
                snap.breakers[provider] = value
            elif name == gw.RATE_LIMIT_REMAINING.base:
                _add(snap.rate_limits, (provider, labels.get("llm_rate_limit_kind", "")), value)
            elif name == gw.MODEL_AVAILABILITY.base:
                snap.availability[key] = value
            elif name == gw.KEY_POOL_KEYS.base:
                _add(snap.keys, (labels.get("llm_key_pool_group", ""), labels.get("llm_key_pool_key_state", "")), value)
            elif name == gw.ACTIVE_REQUESTS.base:
                _add(snap.in_flight, provider, value)
            elif name == gw.ACTIVE_STREAMS.base:
                _add(snap.streams_active, provider, value)
            elif name == gw.ANOMALIES.base and sample.name.endswith("_total"):
                _add(snap.anomalies, (provider, labels.get("llm_anomaly_type", "")), value)
            elif name.startswith(("gen_ai_server_", "llm_server_")):
                _take_served(snap, name, sample.name, labels, value)
            elif sample.name == "target_info" and labels.get("service_name"):
                snap.service = labels["service_name"]
    return snap


def _take_served(snap: Snapshot, name: str, sample: str, labels: dict[str, str], value: float) -> None:
    key = (labels.get(ROUTE, ""), labels.get(MODEL, ""))
    if name == _SERVER_DURATION and sample.endswith("_count"):
        entry = snap.served.setdefault(key, [0.0, 0.0])
        entry[0] += value
        if labels.get(ERROR):
            entry[1] += value
            _add(snap.served_errors, (*key, labels[ERROR]), value)
    elif name == _SERVER_TTFT and sample.endswith("_bucket"):
        _add(snap.served_ttft.setdefault(key, {}), float(labels["le"]), value)
    elif name == _SERVER_TPOT and sample.endswith("_bucket"):
        _add(snap.served_tpot.setdefault(key, {}), float(labels["le"]), value)
    elif name == _SERVER_TOKENS and sample.endswith("_sum") and labels.get(TOKEN_TYPE) == "output":
        _add(snap.served_output_tokens, key, value)
    elif name == _SERVER_STREAMS:
        _add(snap.served_streams, key, value)


def served(new: Snapshot, old: Snapshot | None) -> list[dict[str, Any]]:
    """The server side per route and model: totals, and rates and percentiles over the window."""
    seconds = new.t - old.t if old is not None else None
    rows = []
    for key in sorted(set(new.served) | set(new.served_streams)):
        count, errs = new.served.get(key, [0.0, 0.0])
        before = old.served.get(key) if old else None
        window_calls = _delta(count, before[0] if before else None)
        window_errors = _delta(errs, before[1] if before else None)
        tokens = _delta(new.served_output_tokens.get(key, 0.0), old.served_output_tokens.get(key) if old else None)
        rows.append({
            "route": key[0], "model": key[1], "requests": count, "errors": errs,
            "requests_per_second": _round(window_calls / seconds) if seconds else None,
            "error_rate": _round(window_errors / window_calls) if window_calls else None,
            "error_types": {kind: v for (route, model, kind), v in sorted(new.served_errors.items())
                            if (route, model) == key},
            "ttft_p95": _round(quantile(0.95, _diff_buckets(new.served_ttft, old.served_ttft if old else None, {key}))),
            "time_per_output_token_p95": _round(quantile(
                0.95, _diff_buckets(new.served_tpot, old.served_tpot if old else None, {key}))),
            "output_tokens_per_second": _round(tokens / seconds) if seconds else None,
            "active_streams": new.served_streams.get(key, 0.0),
        })
    return rows


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative buckets (le -> count, +Inf included); None when empty."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def _diff_buckets(new: dict[Key, dict[float, float]], old: dict[Key, dict[float, float]] | None,
                  keys: Iterable[Key] | None = None) -> dict[float, float]:
    """Bucket counts of ``new`` minus ``old``, summed over ``keys`` (all when None)."""
    total: dict[float, float] = {}
    for key, buckets in new.items():
        if keys is not None and key not in keys:
            continue
        before = (old or {}).get(key, {})
        for le, count in buckets.items():
            delta = count - before.get(le, 0.0)
            _add(total, le, delta if delta >= 0 else count)  # a reset (restart) starts from zero
    return total


def _delta(new: float, old: float | None) -> float:
    if old is None:
        return new
    return new - old if new >= old else new


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


@dataclass(frozen=True)
class HealthThresholds:
    """``/health``: unhealthy when the error rate over ``window`` seconds is >= ``unhealthy``, degraded
    when >= ``degraded``; with fewer than ``min_calls`` calls in the window it is healthy (not enough
    evidence)."""

    degraded: float = 0.05
    unhealthy: float = 0.25
    window: float = 300.0
    min_calls: int = 10

    def __post_init__(self) -> None:
        from . import ConfigError

        if not 0 < self.degraded <= self.unhealthy <= 1:
            raise ConfigError(f"health thresholds must satisfy 0 < degraded <= unhealthy <= 1, got degraded="
                              f"{self.degraded}, unhealthy={self.unhealthy}")
        if self.window <= 0:
            raise ConfigError(f"health window must be > 0 seconds, got {self.window}")
        if self.min_calls < 0:
            raise ConfigError(f"health min_calls must be >= 0, got {self.min_calls}")


class History:
    """Snapshots at least ``step`` seconds apart, kept for ``keep`` seconds."""

    def __init__(self, step: float, keep: float) -> None:
        self.step, self.keep = step, keep
        self._snapshots: deque[Snapshot] = deque()
        self._lock = threading.Lock()

    def observe(self, snap: Snapshot) -> None:
        with self._lock:
            if not self._snapshots or snap.t - self._snapshots[-1].t >= self.step:
                self._snapshots.append(snap)
            while len(self._snapshots) > 2 and self._snapshots[1].t < snap.t - self.keep:
                self._snapshots.popleft()

    def reference(self, now: float, window: float) -> Snapshot | None:
        """The oldest snapshot no older than ``window``; when that one is less than ``step`` old (or
        there is none), the newest one before it. So a window is as close to ``window`` as the
        snapshots allow, and never a sliver when an older snapshot exists."""
        with self._lock:
            snapshots = [s for s in self._snapshots if s.t < now]
        inside = [s for s in snapshots if s.t >= now - window]
        older = [s for s in snapshots if s.t < now - window]
        if inside and (now - inside[0].t >= min(self.step, window) or not older):
            return inside[0]
        return older[-1] if older else None

    def series(self) -> list[Snapshot]:
        with self._lock:
            return list(self._snapshots)


def window_figures(new: Snapshot, old: Snapshot | None) -> dict[str, Any]:
    """Rates, error ratio and percentiles between two snapshots (``old`` None: since process start, no rates)."""
    seconds = new.t - old.t if old is not None else None
    calls = errors = 0.0
    for key, (count, errs) in new.calls.items():
        before = old.calls.get(key) if old else None
        calls += _delta(count, before[0] if before else None)
        errors += _delta(errs, before[1] if before else None)
    latency = _diff_buckets(new.latency, old.latency if old else None)
    ttft = _diff_buckets(new.ttft, old.ttft if old else None)
    tokens_in = sum(_delta(v, (old.tokens.get(k) if old else None)) for k, v in new.tokens.items() if k[2] == "input")
    tokens_out = sum(_delta(v, (old.tokens.get(k) if old else None)) for k, v in new.tokens.items() if k[2] == "output")
    cost = sum(_delta(v, (old.cost.get(k) if old else None)) for k, v in new.cost.items())
    per = (lambda amount, unit: _round(amount * unit / seconds) if seconds else None)  # noqa: E731
    return {
        "seconds": _round(seconds, 3),
        "requests": calls,
        "errors": errors,
        "requests_per_second": per(calls, 1),
        "error_rate": _round(errors / calls) if calls else None,
        "latency_p50": _round(quantile(0.50, latency)),
        "latency_p95": _round(quantile(0.95, latency)),
        "latency_p99": _round(quantile(0.99, latency)),
        "ttft_p50": _round(quantile(0.50, ttft)),
        "ttft_p95": _round(quantile(0.95, ttft)),
        "tokens_per_minute": per(tokens_in + tokens_out, 60),
        "input_tokens_per_minute": per(tokens_in, 60),
        "output_tokens_per_minute": per(tokens_out, 60),
        "cost_per_hour": per(cost, 3600),
    }


def health_verdict(new: Snapshot, old: Snapshot | None, thresholds: HealthThresholds) -> dict[str, Any]:
    """healthy / degraded / unhealthy from the error rate over the window, with the numbers that decided it."""
    providers: dict[str, dict[str, Any]] = {}
    calls = errors = 0.0
    for key, (count, errs) in new.calls.items():
        before = old.calls.get(key) if old else None
        c, e = _delta(count, before[0] if before else None), _delta(errs, before[1] if before else None)
        calls, errors = calls + c, errors + e
        entry = providers.setdefault(key[0], {"calls": 0.0, "errors": 0.0})
        entry["calls"] += c
        entry["errors"] += e
    for entry in providers.values():
        entry["error_rate"] = _round(entry["errors"] / entry["calls"]) if entry["calls"] else None
    rate = errors / calls if calls else None
    if calls < max(thresholds.min_calls, 1):
        status = "healthy"
        reason = f"{calls:g} LLM calls in the window, fewer than min_calls={thresholds.min_calls}: not enough to judge"
    elif rate is not None and rate >= thresholds.unhealthy:
        status, reason = "unhealthy", f"error rate {rate:.4f} >= unhealthy threshold {thresholds.unhealthy}"
    elif rate is not None and rate >= thresholds.degraded:
        status, reason = "degraded", f"error rate {rate:.4f} >= degraded threshold {thresholds.degraded}"
    else:
        status, reason = "healthy", f"error rate {rate or 0:.4f} < degraded threshold {thresholds.degraded}"
    return {
        "status": status,
        "reason": reason,
        "window_seconds": _round(new.t - old.t, 3) if old is not None else None,
        "calls": calls,
        "errors": errors,
        "error_rate": _round(rate),
        "thresholds": {"degraded": thresholds.degraded, "unhealthy": thresholds.unhealthy,
                       "window": thresholds.window, "min_calls": thresholds.min_calls},
        "providers": providers,
    }


def summary(new: Snapshot, old: Snapshot | None, history: list[Snapshot], health: dict[str, Any],
            gateway: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON summary behind ``/summary`` and ``/dashboard``."""
    window = window_figures(new, old)
    seconds = window["seconds"]
    totals = {
        "requests": sum(v[0] for v in new.calls.values()),
        "errors": sum(v[1] for v in new.calls.values()),
        "input_tokens": sum(v for k, v in new.tokens.items() if k[2] == "input"),
        "output_tokens": sum(v for k, v in new.tokens.items() if k[2] == "output"),
        "cost_usd": _round(sum(new.cost.values()), 8),
    }
    models = []
    for key in sorted(set(new.calls) | set(new.cost) | set(new.availability)):
        count, errs = new.calls.get(key, [0.0, 0.0])
        before = old.calls.get(key, [0.0, 0.0]) if old else [0.0, 0.0]
        window_calls, window_errors = _delta(count, before[0]), _delta(errs, before[1])
        models.append({
            "provider": key[0], "model": key[1], "requests": count, "errors": errs,
            "requests_per_second": _round(window_calls / seconds) if seconds else None,
            "error_rate": _round(window_errors / window_calls) if window_calls else None,
            "latency_p95": _round(quantile(0.95, _diff_buckets(new.latency, old.latency if old else None, {key}))),
            "ttft_p95": _round(quantile(0.95, _diff_buckets(new.ttft, old.ttft if old else None, {key}))),
            "input_tokens": new.tokens.get((*key, "input"), 0.0),
            "output_tokens": new.tokens.get((*key, "output"), 0.0),
            "cost_usd": _round(new.cost.get(key, 0.0), 8),
            "availability": _round(new.availability.get(key)),
        })
    providers = []
    provider_names = sorted({k[0] for k in new.calls} | set(new.health) | set(new.breakers) | set(new.in_flight))
    for provider in provider_names:
        keys = {k for k in new.calls if k[0] == provider}
        count = sum(new.calls[k][0] for k in keys)
        window_calls = sum(_delta(new.calls[k][0], (old.calls.get(k) or [None])[0] if old else None) for k in keys)
        window_errors = sum(_delta(new.calls[k][1], (old.calls.get(k) or [None, None])[1] if old else None)
                            for k in keys)
        breaker = new.breakers.get(provider)
        providers.append({
            "provider": provider, "requests": count,
            "requests_per_second": _round(window_calls / seconds) if seconds else None,
            "error_rate": _round(window_errors / window_calls) if window_calls else None,
            "latency_p95": _round(quantile(0.95, _diff_buckets(new.latency, old.latency if old else None, keys))),
            "health": _round(new.health.get(provider)),
            "circuit_breaker": _BREAKER_NAMES.get(int(breaker)) if breaker is not None else None,
            "rate_limit_remaining": {kind: v for (p, kind), v in sorted(new.rate_limits.items()) if p == provider},
            "in_flight": new.in_flight.get(provider, 0.0),
            "active_streams": new.streams_active.get(provider, 0.0),
            "anomalies": {kind: v for (p, kind), v in sorted(new.anomalies.items()) if p == provider},
        })
    pools: dict[str, dict[str, Any]] = {}
    for (group, state), value in sorted(new.keys.items()):
        pools.setdefault(group, {"group": group, "active": 0.0, "invalid": 0.0})[state] = value
    if gateway:
        for detail in gateway.get("key_pools", []):
            if detail["group"] in pools:
                pools[detail["group"]]["keys"] = detail["keys"]
    anomalies: dict[str, float] = {}
    for (_, kind), value in new.anomalies.items():
        _add(anomalies, kind, value)
    points = []
    for before, after in zip(history, history[1:], strict=False):
        figures = window_figures(after, before)
        points.append({"t": _round(after.t, 3), **{k: figures[k] for k in (
            "requests_per_second", "error_rate", "latency_p50", "latency_p95", "ttft_p95", "tokens_per_minute",
            "cost_per_hour")}})
    return {
        "service": new.service,
        "window": window,
        "totals": totals,
        "in_flight": sum(new.in_flight.values()),
        "active_streams": sum(new.streams_active.values()),
        "models": models,
        "providers": providers,
        "key_pools": list(pools.values()),
        "anomalies": anomalies,
        "served": served(new, old),
        "health": health,
        "history": points,
        "gateway": gateway,
    }
