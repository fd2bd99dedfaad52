"""The gateway: the single writer of the ``llm.gateway.*`` and stream/load ``llm.client.*`` metrics.

Fed by recorder listeners (health, availability, rate limits, anomalies, calls in flight, streams:
derived from the calls the recorder sees, nothing to hand-feed) plus two small explicit APIs, for
circuit breakers and API-key pools. All instruments live on the MeterProvider given (the
``Telemetry``'s), so OTLP and Prometheus export them alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter

from .. import semconv as sc
from ..recorder import LLMCall, Recorder, report_internal_error
from ..version import __version__
from . import names
from .config import GatewayConfig, GatewayConfigError
from .keys import KeyId, KeyPool, salt_from_env
from .ratelimits import remaining_from_headers
from .windows import FAILED, IGNORED, OK, AnomalyDetector, AvailabilityWindow, HealthWindow, classify

_STATE_ALIASES = {"closed": names.STATE_CLOSED, "open": names.STATE_OPEN, "half_open": names.STATE_HALF_OPEN,
                  "half-open": names.STATE_HALF_OPEN, "halfopen": names.STATE_HALF_OPEN}


def breaker_state_name(state: Any) -> str:
    """``closed`` / ``open`` / ``half_open`` from a state name (any case, ``half-open`` too) or a
    pybreaker state object."""
    name = getattr(state, "name", state)
    found = _STATE_ALIASES.get(str(name).strip().lower())
    if found is None:
        raise ValueError(f"circuit breaker state {name!r}: use one of closed, open, half_open")
    return found


class Gateway:
    """Gateway metrics for the calls of ``recorder`` (``Gateway.from_telemetry(telemetry)`` after
    ``otel_llm.sdk.configure()``). ``clock`` is monotonic seconds; tests inject one."""

    def __init__(
        self,
        recorder: Recorder | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        config: GatewayConfig | None = None,
        clock: Callable[[], float] | None = None,
        key_id_salt: str | bytes | None = None,
    ) -> None:
        self.config = config if config is not None else GatewayConfig.from_env()
        self._clock = clock or time.monotonic
        self._salt = salt_from_env(key_id_salt)
        self._lock = threading.Lock()
        self._health: dict[str, HealthWindow] = {}
        self._availability: dict[tuple[str, str], AvailabilityWindow] = {}
        self._models: dict[str, set[str]] = {}
        self._detectors: dict[str, AnomalyDetector] = {}
        self._anomaly_counts: dict[tuple[str, str], int] = {}
        self._breakers: dict[str, str] = {}
        self._transition_counts: dict[tuple[str, str], int] = {}
        self._pools: dict[str, KeyPool] = {}
        self._rate_limits: dict[tuple[str, str], tuple[float, float]] = {}
        self._in_flight: dict[int, tuple[tuple[str, str], bool]] = {}  # id(call) -> ((provider, op), stream)
        # In-process tallies behind observable instruments: a dict update per call instead of a synchronous
        # SDK record (which costs more than the rest of the listener), as the recorder does for cost.
        self._active: dict[tuple[str, str], list[int]] = {}  # (provider, operation) -> [requests, streams, streamed]
        self._stream_counts: dict[tuple[str, str], int] = {}  # (provider, outcome) -> finished streams
        self._recorder: Recorder | None = None

        meter = get_meter(names.INSTRUMENTATION_SCOPE, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        spec = names
        self._breaker_transitions = self._counter(meter, spec.BREAKER_TRANSITIONS)
        self._key_rotations = self._counter(meter, spec.KEY_POOL_ROTATIONS)
        self._key_validations = self._counter(meter, spec.KEY_POOL_VALIDATIONS)
        self._anomalies = self._counter(meter, spec.ANOMALIES)
        for metric, callback in ((spec.ACTIVE_REQUESTS, self._observe_active_requests),
                                 (spec.ACTIVE_STREAMS, self._observe_active_streams)):
            meter.create_observable_up_down_counter(metric.name, callbacks=[callback], unit=metric.unit,
                                                    description=metric.description)
        meter.create_observable_counter(spec.STREAMS.name, callbacks=[self._observe_streams], unit=spec.STREAMS.unit,
                                        description=spec.STREAMS.description)
        self._output_speed = meter.create_histogram(
            spec.STREAM_OUTPUT_SPEED.name, unit=spec.STREAM_OUTPUT_SPEED.unit,
            description=spec.STREAM_OUTPUT_SPEED.description,
            explicit_bucket_boundaries_advisory=names.TOKENS_PER_SECOND_BUCKETS,
        )
        for metric, callback in (
            (spec.PROVIDER_HEALTH, self._observe_health),
            (spec.MODEL_AVAILABILITY, self._observe_availability),
            (spec.BREAKER_STATE_METRIC, self._observe_breakers),
            (spec.KEY_POOL_KEYS, self._observe_keys),
            (spec.RATE_LIMIT_REMAINING, self._observe_rate_limits),
        ):
            meter.create_observable_gauge(metric.name, callbacks=[callback], unit=metric.unit,
                                          description=metric.description)
        if recorder is not None:
            self.attach(recorder)

    @staticmethod
    def _counter(meter: Any, metric: names.MetricSpec) -> Any:
        return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)

    @classmethod
    def from_telemetry(cls, telemetry: Any, **kwargs: Any) -> Gateway:
        """The gateway for what ``otel_llm.sdk.configure()`` returned (its recorder and MeterProvider)."""
        if getattr(telemetry, "recorder", None) is None:
            raise GatewayConfigError("this Telemetry has no recorder: call configure(instrument=True) (the default)")
        return cls(telemetry.recorder, meter_provider=telemetry.meter_provider, **kwargs)

    # -- recorder listeners ------------------------------------------------------------------

    def attach(self, recorder: Recorder) -> Gateway:
        """Derive the gateway metrics from every call of ``recorder`` from now on."""
        if self._recorder is not None:
            raise GatewayConfigError("this Gateway is already attached to a recorder; detach() it first")
        recorder.add_listener(self._on_start, on_start=True)
        recorder.add_listener(self._on_end)
        self._recorder = recorder
        return self

    def detach(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.remove_listener(self._on_start)
            recorder.remove_listener(self._on_end)

    def _on_start(self, call: LLMCall) -> None:
        key = (call.provider, call.operation)
        with self._lock:
            self._in_flight[id(call)] = (key, call.stream)
            counts = self._active.get(key)
            if counts is None:
                counts = self._active[key] = [0, 0, 0]
            counts[0] += 1
            if call.stream:
                counts[1] += 1
                counts[2] = 1  # from now on this series exists

    def _on_end(self, call: LLMCall) -> None:
        now = self._clock()
        with self._lock:
            started = self._in_flight.pop(id(call), None)
            if started is not None:  # a call that started before attach() is not counted down
                counts = self._active[started[0]]
                counts[0] -= 1
                if started[1]:
                    counts[1] -= 1
        provider = call.provider
        outcome, latency = classify(call, self.config)
        if call.stream:
            self._record_stream(call, outcome)
        remaining = remaining_from_headers(call.response_headers)
        model = call.request_model or call.response_model or "_unknown"
        new_provider = False
        with self._lock:
            window = self._health.get(provider)
            if window is None:
                window = self._health[provider] = HealthWindow(self.config.health_window)
                self._detectors[provider] = AnomalyDetector(self.config)
                new_provider = True
            window.add(now, outcome, latency)
            if outcome != IGNORED:
                self._availability_window(provider, model).add(now, outcome)
            anomalies = self._detectors[provider].add(now, outcome, latency, call.cost)
            for kind in anomalies:
                self._anomaly_counts[(provider, kind)] = self._anomaly_counts.get((provider, kind), 0) + 1
            for kind, value in remaining.items():
                self._rate_limits[(provider, kind)] = (value, now)
        if new_provider:  # the series exist (at 0) from the first call on: "no anomaly" is not "no data"
            for kind in names.ANOMALY_TYPES:
                self._anomalies.add(0, {names.PROVIDER: provider, names.ANOMALY_TYPE: kind})
        for kind in anomalies:
            self._anomalies.add(1, {names.PROVIDER: provider, names.ANOMALY_TYPE: kind})

    def _availability_window(self, provider: str, model: str) -> AvailabilityWindow:
        models = self._models.setdefault(provider, set())
        if model not in models:
            if len(models) >= self.config.max_models:
                model = names.OTHER_MODEL
            models.add(model)
        window = self._availability.get((provider, model))
        if window is None:
            window = self._availability[(provider, model)] = AvailabilityWindow(
                self.config.availability_window, self.config.availability_bucket)
        return window

    def _record_stream(self, call: LLMCall, outcome: str) -> None:
        failed = call.error_type is not None
        key = (call.provider, "failed" if failed else "cancelled" if getattr(call, "cancelled", False) else "completed")
        with self._lock:
            self._stream_counts[key] = self._stream_counts.get(key, 0) + 1
        if failed or not call.output_tokens or not call.duration:
            return
        ttft = call.time_to_first_chunk
        generating = call.duration - ttft if ttft is not None and call.duration > ttft else call.duration
        if generating > 0:
            attributes = {names.PROVIDER: call.provider}
            if call.request_model:
                attributes[names.MODEL] = self._capped_model(call.provider, call.request_model)
            self._output_speed.record(call.output_tokens / generating, attributes, call.context)

    def _capped_model(self, provider: str, model: str) -> str:
        with self._lock:
            models = self._models.get(provider, set())
            if model in models:
                return model
            if len(models) >= self.config.max_models:
                return names.OTHER_MODEL
            models.add(model)
            return model

    def evaluate(self, now: float | None = None) -> list[tuple[str, str]]:
        """Close every anomaly-detector interval that has ended (the detector otherwise closes an
        interval when the next call arrives); returns the (provider, type) anomalies found."""
        now = self._clock() if now is None else now
        found = []
        with self._lock:
            for provider, detector in self._detectors.items():
                for kind in detector.flush(now):
                    found.append((provider, kind))
                    self._anomaly_counts[(provider, kind)] = self._anomaly_counts.get((provider, kind), 0) + 1
        for provider, kind in found:
            self._anomalies.add(1, {names.PROVIDER: provider, names.ANOMALY_TYPE: kind})
        return found

    # -- circuit breakers --------------------------------------------------------------------

    def breaker_state(self, provider: str, state: Any) -> None:
        """One line for gateways with their own breaker: report ``provider``'s breaker state
        (``closed``, ``open``, ``half_open``) whenever it may have changed. The first report sets the
        initial state; each later change counts one transition into the new state."""
        self._transition(provider, None, breaker_state_name(state))

    def _transition(self, provider: str, old: str | None, new: str) -> None:
        with self._lock:
            known = self._breakers.get(provider)
            first = known is None
            self._breakers[provider] = new
            if first and old is not None:
                known = old  # a listener's first news is a change: count it
            changed = known is not None and known != new
            if changed:
                key = (provider, new)
                self._transition_counts[key] = self._transition_counts.get(key, 0) + 1
        if first:
            for state in names.BREAKER_STATES:  # every series exists from the start, at 0
                self._breaker_transitions.add(0, {names.PROVIDER: provider, names.BREAKER_STATE: state})
        if changed:
            self._breaker_transitions.add(1, {names.PROVIDER: provider, names.BREAKER_STATE: new})

    def breaker_listener(self, provider: str) -> Any:
        """A ``pybreaker.CircuitBreakerListener`` reporting a breaker's state changes as ``provider``'s."""
        return _pybreaker_listener_class()(self, provider)

    def watch_breaker(self, breaker: Any, provider: str | None = None) -> Any:
        """Hook a ``pybreaker.CircuitBreaker``: adds the listener and reports its current state.
        ``provider`` defaults to the breaker's name. Returns the breaker."""
        provider = provider or getattr(breaker, "name", None)
        if not provider:
            raise GatewayConfigError("name the provider: watch_breaker(breaker, provider='openai') or "
                                     "pybreaker.CircuitBreaker(name='openai')")
        breaker.add_listener(self.breaker_listener(provider))
        self.breaker_state(provider, breaker.current_state)
        return breaker

    # -- key pools ---------------------------------------------------------------------------

    def key_pool(self, group: str, keys: Iterable[str] = ()) -> KeyPool:
        """The pool named ``group`` (created on first use), with ``keys`` added as active."""
        if not isinstance(group, str) or not group.strip():
            raise GatewayConfigError("a key pool needs a group name, e.g. gateway.key_pool('openai-prod', keys)")
        with self._lock:
            pool = self._pools.get(group)
            created = pool is None
            if created:
                pool = self._pools[group] = KeyPool(self, group)
        assert pool is not None
        for key in keys:
            pool.add(key)
        if created:
            for reason in names.ROTATION_REASONS:
                self._key_rotations.add(0, {names.KEY_POOL_GROUP: group, names.ROTATION_REASON: reason})
            for result in names.VALIDATION_RESULTS:
                self._key_validations.add(0, {names.KEY_POOL_GROUP: group, names.VALIDATION_RESULT: result})
        return pool

    def key_id(self, key: str | KeyId) -> KeyId:
        """The id this gateway gives ``key`` (same in every pool)."""
        from .keys import make_key_id

        return make_key_id(key, self._salt)

    # -- observable gauges -------------------------------------------------------------------

    def _observe_health(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            now = self._clock()
            with self._lock:
                figures = [(p, w.figures(now, self.config.latency_weight)) for p, w in self._health.items()]
            return [Observation(f.score, {names.PROVIDER: p}) for p, f in figures if f is not None]
        except Exception:
            report_internal_error("gateway health gauge")
            return []

    def _observe_availability(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            now = self._clock()
            with self._lock:
                values = [(p, m, w.availability(now)) for (p, m), w in self._availability.items()]
            return [Observation(v, {names.PROVIDER: p, names.MODEL: m}) for p, m, v in values if v is not None]
        except Exception:
            report_internal_error("gateway availability gauge")
            return []

    def _observe_active_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            active = [(key, counts[0]) for key, counts in self._active.items()]
        return [Observation(n, {names.PROVIDER: p, names.OPERATION: o}) for (p, o), n in active]

    def _observe_active_streams(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            active = [(key, counts[1]) for key, counts in self._active.items() if counts[2]]
        return [Observation(n, {names.PROVIDER: p, names.OPERATION: o}) for (p, o), n in active]

    def _observe_streams(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._stream_counts.items())
        return [Observation(n, {names.PROVIDER: p, names.STREAM_OUTCOME: o}) for (p, o), n in counts]

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            states = list(self._breakers.items())
        return [Observation(names.BREAKER_STATE_VALUE[s], {names.PROVIDER: p}) for p, s in states]

    def _observe_keys(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            pools = list(self._pools.values())
        observations = []
        for pool in pools:
            for state, count in pool.counts().items():
                observations.append(Observation(count, {names.KEY_POOL_GROUP: pool.group, names.KEY_STATE: state}))
        return observations

    def _observe_rate_limits(self, options: CallbackOptions) -> Iterable[Observation]:
        now = self._clock()
        with self._lock:
            for key in [k for k, (_, t) in self._rate_limits.items() if now - t > self.config.health_window]:
                del self._rate_limits[key]  # stale: that provider has not answered for a whole window
            values = list(self._rate_limits.items())
        return [Observation(v, {names.PROVIDER: p, names.RATE_LIMIT_KIND: k}) for (p, k), (v, _) in values]

    # -- a plain view (the exposition's summary and /dashboard) -------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the gateway knows, as JSON-able data (key ids, never keys)."""
        now = self._clock()
        with self._lock:
            providers: dict[str, dict[str, Any]] = {}
            for provider in sorted(set(self._health) | set(self._breakers)):
                window = self._health.get(provider)
                figures = window.figures(now, self.config.latency_weight) if window else None
                providers[provider] = {
                    "health": figures.as_dict() if figures else None,
                    "circuit_breaker": self._breakers.get(provider),
                    "breaker_transitions": {s: self._transition_counts.get((provider, s), 0)
                                            for s in names.BREAKER_STATES},
                    "rate_limit_remaining": {k: v for (p, k), (v, _) in self._rate_limits.items() if p == provider},
                    "anomalies": {k: self._anomaly_counts.get((provider, k), 0) for k in names.ANOMALY_TYPES},
                }
            models = [{"provider": p, "model": m, "availability": w.availability(now)}
                      for (p, m), w in sorted(self._availability.items())]
            pools = list(self._pools.values())
            in_flight = len(self._in_flight)
        return {
            "providers": providers,
            "models": models,
            "key_pools": [pool.snapshot() for pool in pools],
            "in_flight": in_flight,
            "config": {"health_window": self.config.health_window,
                       "latency_objective": self.config.latency_objective,
                       "ttft_objective": self.config.ttft_objective,
                       "latency_weight": self.config.latency_weight,
                       "anomaly_interval": self.config.anomaly_interval},
        }


_listener_class: type | None = None


def _pybreaker_listener_class() -> type:
    global _listener_class
    if _listener_class is None:
        try:
            import pybreaker
        except ImportError:
            raise GatewayConfigError(
                "the circuit-breaker hook needs pybreaker: pip install 'otel-llm[gateway]' (or report states "
                "with gateway.breaker_state(provider, state))"
            ) from None

        class PyBreakerListener(pybreaker.CircuitBreakerListener):
            """Reports a pybreaker breaker's state changes to the gateway; never raises."""

            def __init__(self, gateway: Gateway, provider: str) -> None:
                self.gateway, self.provider = gateway, provider

            def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
                try:
                    old = breaker_state_name(old_state) if old_state is not None else None
                    self.gateway._transition(self.provider, old, breaker_state_name(new_state))
                except Exception:
                    report_internal_error("gateway pybreaker listener")

        _listener_class = PyBreakerListener
    return _listener_class


__all__ = ["Gateway", "breaker_state_name", "OK", "FAILED", "IGNORED"]
