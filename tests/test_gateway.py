"""Gateway metrics driven through scripted call sequences with an injected clock: exact values.

Health scores, availability, anomalies, circuit-breaker states (one-line API and the pybreaker hook),
key pools (ids only), rate limits from real provider headers, calls in flight and streams.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import pybreaker
import pytest

from otel_llm.gateway import (
    Gateway,
    GatewayConfig,
    GatewayConfigError,
    KeyId,
    names,
    remaining_from_headers,
)

REPO = Path(__file__).resolve().parents[1]
SALT = "a-test-salt-of-at-least-16-bytes"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def values(telemetry: Any, name: str) -> dict[tuple, float]:
    """{sorted attribute items: value} of one metric (sum/gauge value, histogram (count, sum))."""
    found = {}
    for point in telemetry.points(name):
        key = tuple(sorted(point.attributes.items()))
        found[key] = (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value
    return found


def value(telemetry: Any, name: str, **attributes: str) -> Any:
    wanted = {k.replace("__", "."): v for k, v in attributes.items()}
    matching = [v for k, v in values(telemetry, name).items() if wanted.items() <= dict(k).items()]
    assert len(matching) <= 1, matching
    return matching[0] if matching else None


def fake_call(provider: str = "openai", model: str = "gpt-4o-mini", *, duration: float = 0.5, error: str | None = None,
              stream: bool = False, ttft: float | None = None, output_tokens: int | None = None,
              cost: float | None = None, headers: dict[str, str] | None = None,
              cancelled: bool = False) -> SimpleNamespace:
    """What a recorder listener sees of a finished LLMCall (durations are measured, so scripted here)."""
    return SimpleNamespace(provider=provider, operation="chat", request_model=model, response_model=None,
                           stream=stream, duration=duration, time_to_first_chunk=ttft, output_tokens=output_tokens,
                           input_tokens=None, cost=cost, error_type=error, response_headers=headers, context=None,
                           cancelled=cancelled)


def finish(gateway: Gateway, call: SimpleNamespace) -> None:
    gateway._on_start(call)
    gateway._on_end(call)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_gateway(telemetry: Any, clock: Clock, **config: Any) -> Gateway:
    return Gateway(meter_provider=telemetry.meter_provider, clock=clock, key_id_salt=SALT,
                   config=GatewayConfig(**config))


# -- provider health and availability -------------------------------------------------------------


def test_health_score_over_a_sliding_window(telemetry, clock):
    gateway = make_gateway(telemetry, clock, health_window=60, latency_objective=1.0, ttft_objective=0.5,
                           latency_weight=0.5)
    for _ in range(6):
        finish(gateway, fake_call(duration=0.5))  # fast
    for _ in range(2):
        finish(gateway, fake_call(duration=2.0))  # slow: over the 1 s objective
    for _ in range(2):
        finish(gateway, fake_call(error="InternalServerError"))
    finish(gateway, fake_call(error="BadRequestError"))  # the caller's fault: not counted
    finish(gateway, fake_call(error="AuthenticationError"))  # the key's fault: not counted
    finish(gateway, fake_call(duration=9.0, cancelled=True))  # the caller gave up before any answer: not counted
    # success 8/10, fast 6/8: 0.8 x (1 - 0.5 + 0.5 x 0.75)
    assert value(telemetry, "llm.gateway.provider.health", gen_ai__provider__name="openai") == pytest.approx(0.7)

    clock.t = 1030.0  # streams are judged by time to first chunk, not duration
    finish(gateway, fake_call(stream=True, duration=3.0, ttft=0.4))
    finish(gateway, fake_call(stream=True, duration=3.0, ttft=0.9, cancelled=True))  # left after a chunk: counts
    assert value(telemetry, "llm.gateway.provider.health", gen_ai__provider__name="openai") == pytest.approx(
        10 / 12 * (0.5 + 0.5 * 7 / 10))

    clock.t = 1060.0  # a call at t counts while floor(t) > now - window: the first batch is out
    assert value(telemetry, "llm.gateway.provider.health", gen_ai__provider__name="openai") == pytest.approx(0.75)
    assert gateway.snapshot()["providers"]["openai"]["health"] == {
        "calls": 2, "successes": 2, "failures": 0, "fast": 1, "success_ratio": 1.0, "fast_ratio": 0.5, "score": 0.75}

    clock.t = 1090.0  # nothing in the window: no point rather than a made-up score
    assert value(telemetry, "llm.gateway.provider.health", gen_ai__provider__name="openai") is None


def test_a_provider_that_only_fails_scores_zero_and_others_are_separate(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    for _ in range(3):
        finish(gateway, fake_call("anthropic", "claude-haiku-4-5", error="OverloadedError"))
        finish(gateway, fake_call("openai", duration=0.2))
    health = values(telemetry, "llm.gateway.provider.health")
    assert health == {(("gen_ai.provider.name", "anthropic"),): 0.0, (("gen_ai.provider.name", "openai"),): 1.0}


def test_availability_per_model_over_24_hours(telemetry, clock):
    gateway = make_gateway(telemetry, clock, availability_window=86_400, availability_bucket=300)
    clock.t = 0.0
    for _ in range(9):
        finish(gateway, fake_call(model="gpt-4o"))
    finish(gateway, fake_call(model="gpt-4o", error="RateLimitError"))
    finish(gateway, fake_call(model="gpt-4o", error="NotFoundError"))  # ignored
    clock.t = 43_200.0  # 12 h later: 2 more failures
    finish(gateway, fake_call(model="gpt-4o", error="APITimeoutError"))
    finish(gateway, fake_call(model="gpt-4o", error="APITimeoutError"))
    finish(gateway, fake_call(model="gpt-4o-mini"))
    assert value(telemetry, "llm.gateway.model.availability", gen_ai__request__model="gpt-4o") == pytest.approx(9 / 12)
    assert value(telemetry, "llm.gateway.model.availability", gen_ai__request__model="gpt-4o-mini") == 1.0
    clock.t = 86_400.0 + 300.0  # the first bucket [0, 300) ended more than 24 h ago
    assert value(telemetry, "llm.gateway.model.availability", gen_ai__request__model="gpt-4o") == 0.0
    clock.t = 43_200.0 + 86_400.0 + 300.0
    assert values(telemetry, "llm.gateway.model.availability") == {}


def test_request_models_are_capped_per_provider(telemetry, clock):
    gateway = make_gateway(telemetry, clock, max_models=3)
    for index in range(10):
        finish(gateway, fake_call(model=f"user-chosen-model-{index}"))
    models = {dict(k)["gen_ai.request.model"] for k in values(telemetry, "llm.gateway.model.availability")}
    assert models == {"user-chosen-model-0", "user-chosen-model-1", "user-chosen-model-2", names.OTHER_MODEL}


# -- anomalies ------------------------------------------------------------------------------------


def test_anomaly_detector_scripted(telemetry, clock):
    gateway = make_gateway(telemetry, clock, latency_objective=1.0, anomaly_interval=10, anomaly_baseline=5,
                           anomaly_min_baseline=3, anomaly_min_calls=4, latency_factor=3.0, error_rate_delta=0.25,
                           cost_factor=3.0)

    def interval(index: int, durations: list[float], failures: int = 0, cost: float = 0.001) -> None:
        for n, duration in enumerate(durations):
            clock.t = index * 10 + n * 0.5
            failed = n < failures
            finish(gateway, fake_call(duration=duration, error="InternalServerError" if failed else None,
                                      cost=None if failed else cost))

    def anomalies() -> dict[str, float]:
        return {dict(k)["llm.anomaly.type"]: v for k, v in values(telemetry, "llm.gateway.anomalies").items()}

    for index in (10, 11, 12):
        interval(index, [0.1] * 5)  # the baseline: 0.1 s, no errors, $0.001 a call
    assert anomalies() == {"latency": 0, "error_rate": 0, "cost": 0}  # every series exists from the first call
    interval(13, [0.5] * 5)  # mean latency 0.5 > 3 x 0.1
    interval(14, [0.1] * 5, failures=2)  # error ratio 0.4 >= 0 + 0.25
    assert anomalies() == {"latency": 1, "error_rate": 0, "cost": 0}  # an interval is judged when it closes
    interval(15, [0.1] * 5, cost=0.005)  # $0.005 a call > 3 x $0.001
    interval(16, [0.1] * 3)
    interval(17, [0.35] * 5)  # > 3 x 0.1, as interval 13 is left out of the latency baseline (else 0.195)
    assert anomalies() == {"latency": 1, "error_rate": 1, "cost": 1}
    assert gateway.evaluate(now=180.0) == [("openai", "latency")]  # closes interval 17 without a new call
    assert anomalies() == {"latency": 2, "error_rate": 1, "cost": 1}
    assert gateway.snapshot()["providers"]["openai"]["anomalies"] == {"latency": 2, "error_rate": 1, "cost": 1}


def test_anomalies_need_a_baseline_and_enough_calls(telemetry, clock):
    gateway = make_gateway(telemetry, clock, anomaly_interval=10, anomaly_min_baseline=3, anomaly_min_calls=4)

    def interval(index: int, calls: int, duration: float, error: str | None = None) -> None:
        for n in range(calls):
            clock.t = index * 10 + n
            finish(gateway, fake_call(duration=duration, error=error, cost=0.001))

    interval(0, 4, 0.1)
    interval(1, 4, 0.1)
    interval(2, 4, 9.0, "InternalServerError")  # only 2 intervals of baseline: no verdict
    assert gateway.evaluate(now=30.0) == []
    interval(5, 4, 0.1)  # now 3 of baseline
    interval(6, 3, 9.0, "InternalServerError")  # fewer than anomaly_min_calls
    assert gateway.evaluate(now=70.0) == []
    interval(8, 4, 0.1, "InternalServerError")
    assert gateway.evaluate(now=90.0) == [("openai", "error_rate")]


# -- circuit breakers -----------------------------------------------------------------------------


def test_breaker_state_one_line_api(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    gateway.breaker_state("openai", "closed")  # the initial state: no transition
    state = lambda: value(telemetry, "llm.gateway.circuit_breaker.state", gen_ai__provider__name="openai")  # noqa: E731
    transitions = lambda: {dict(k)["llm.circuit_breaker.state"]: v for k, v in  # noqa: E731
                           values(telemetry, "llm.gateway.circuit_breaker.transitions").items()}
    assert (state(), transitions()) == (0, {"closed": 0, "half_open": 0, "open": 0})
    for reported in ("open", "OPEN", "half-open", "half_open", "closed", "closed"):
        gateway.breaker_state("openai", reported)
    assert (state(), transitions()) == (0, {"closed": 1, "half_open": 1, "open": 1})
    gateway.breaker_state("openai", "open")
    assert state() == 2
    with pytest.raises(ValueError, match="use one of closed, open, half_open"):
        gateway.breaker_state("openai", "tripped")


def test_pybreaker_hook_through_a_scripted_failure_sequence(telemetry, clock, monkeypatch):
    now = [dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)]

    class FrozenDatetime(dt.datetime):  # pybreaker reads datetime.now(UTC) for its reset timeout
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return now[0]

    monkeypatch.setattr(pybreaker, "datetime", FrozenDatetime)
    gateway = make_gateway(telemetry, clock)
    breaker = gateway.watch_breaker(pybreaker.CircuitBreaker(fail_max=3, reset_timeout=30, name="anthropic"))

    def fails() -> None:
        raise ConnectionError("upstream down")

    def state() -> tuple[float, dict[str, float]]:
        transitions = {dict(k)["llm.circuit_breaker.state"]: v
                       for k, v in values(telemetry, "llm.gateway.circuit_breaker.transitions").items()}
        return value(telemetry, "llm.gateway.circuit_breaker.state", gen_ai__provider__name="anthropic"), transitions

    assert state() == (0, {"closed": 0, "half_open": 0, "open": 0})
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fails)
    assert state() == (0, {"closed": 0, "half_open": 0, "open": 0})
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fails)  # third failure trips it
    assert state() == (2, {"closed": 0, "half_open": 0, "open": 1})
    now[0] += dt.timedelta(seconds=10)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: "not called")  # still open: rejected without a transition
    assert state() == (2, {"closed": 0, "half_open": 0, "open": 1})
    now[0] += dt.timedelta(seconds=21)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fails)  # timeout over: half-open trial fails, open again
    assert state() == (2, {"closed": 0, "half_open": 1, "open": 2})
    now[0] += dt.timedelta(seconds=31)
    assert breaker.call(lambda: "ok") == "ok"  # the trial succeeds: closed
    assert state() == (0, {"closed": 1, "half_open": 2, "open": 2})
    with breaker.calling():  # the context-manager form (no lock held around the call) reports too
        pass
    assert gateway.snapshot()["providers"]["anthropic"]["breaker_transitions"] == {
        "closed": 1, "half_open": 2, "open": 2}


def test_watch_breaker_needs_a_provider(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    with pytest.raises(GatewayConfigError, match="name the provider"):
        gateway.watch_breaker(pybreaker.CircuitBreaker())


# -- key pools ------------------------------------------------------------------------------------

KEYS = ("sk-live-AAAAAAAAAAAAAAAAAAAAAAAA", "sk-live-BBBBBBBBBBBBBBBBBBBBBBBB", "sk-live-CCCCCCCCCCCCCCCCCCCCCCCC")


def test_key_pool_states_rotations_and_validations(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    pool = gateway.key_pool("openai-prod", KEYS)

    def keys() -> dict[str, float]:
        return {dict(k)["llm.key_pool.key_state"]: v for k, v in values(telemetry, "llm.gateway.key_pool.keys").items()}

    def counter(name: str, label: str) -> dict[str, float]:
        return {dict(k)[label]: v for k, v in values(telemetry, name).items()}

    assert keys() == {"active": 3, "invalid": 0}
    assert counter("llm.gateway.key_pool.rotations", "llm.key_pool.rotation.reason") == {
        "scheduled": 0, "invalid": 0, "rate_limited": 0, "manual": 0}
    pool.mark_invalid(KEYS[1])
    pool.rotated("invalid")
    assert keys() == {"active": 2, "invalid": 1}
    pool.validated(KEYS[1], True)  # re-issued
    pool.validated(KEYS[2], False)
    pool.validated(KEYS[0], "error")  # the check failed, not the key: state unchanged
    pool.rotated()
    pool.rotated("rate_limited")
    assert keys() == {"active": 2, "invalid": 1}
    assert pool.state(KEYS[2]) == "invalid" and pool.state(KEYS[0]) == "active"
    assert counter("llm.gateway.key_pool.validations", "llm.key_pool.validation.result") == {
        "valid": 1, "invalid": 1, "error": 1}
    assert counter("llm.gateway.key_pool.rotations", "llm.key_pool.rotation.reason") == {
        "scheduled": 1, "invalid": 1, "rate_limited": 1, "manual": 0}
    with pytest.raises(ValueError, match="scheduled, invalid, rate_limited, manual"):
        pool.rotated("because")
    with pytest.raises(ValueError, match="valid, invalid, error"):
        pool.validated(KEYS[0], "maybe")


def test_key_ids_are_keyed_hashes_and_keys_never_appear(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    pool = gateway.key_pool("openai-prod", KEYS)
    expected = "key-" + hmac.new(SALT.encode(), KEYS[0].encode(), hashlib.sha256).hexdigest()[:16]
    assert pool.key_id(KEYS[0]) == expected and isinstance(pool.key_id(KEYS[0]), KeyId)
    assert pool.mark_invalid(KeyId(expected)) == expected  # an id works wherever a key does
    assert pool.state(KEYS[0]) == "invalid"
    same_salt = Gateway(meter_provider=telemetry.meter_provider, key_id_salt=SALT, config=GatewayConfig())
    assert same_salt.key_id(KEYS[0]) == expected  # stable across processes with a configured salt
    other = Gateway(meter_provider=telemetry.meter_provider, config=GatewayConfig())  # random per-process salt
    assert other.key_id(KEYS[0]) != expected
    assert re.fullmatch(r"key-[0-9a-f]{16}", other.key_id(KEYS[0]))

    exported = telemetry.metric_reader.get_metrics_data().to_json() + json.dumps(gateway.snapshot())
    assert expected in json.dumps(gateway.snapshot())
    for key in KEYS:
        assert key not in exported and key[8:] not in exported


def test_key_id_salt_and_pool_name_are_checked(telemetry, monkeypatch):
    monkeypatch.setenv("OTEL_LLM_KEY_ID_SALT", "short")
    with pytest.raises(GatewayConfigError, match="OTEL_LLM_KEY_ID_SALT.*at least 16 bytes"):
        Gateway(meter_provider=telemetry.meter_provider)
    monkeypatch.delenv("OTEL_LLM_KEY_ID_SALT")
    with pytest.raises(GatewayConfigError, match="needs a group name"):
        Gateway(meter_provider=telemetry.meter_provider).key_pool(" ")


# -- rate limits ----------------------------------------------------------------------------------


def test_remaining_from_headers():
    assert remaining_from_headers({
        "x-ratelimit-limit-requests": "10000", "X-RateLimit-Remaining-Requests": "9998",
        "x-ratelimit-remaining-tokens": "149500", "x-ratelimit-remaining-images": "3", "x-request-id": "req_1",
    }) == {"requests": 9998.0, "tokens": 149500.0}
    assert remaining_from_headers({
        "anthropic-ratelimit-requests-remaining": "49", "anthropic-ratelimit-tokens-remaining": "1000",
        "anthropic-ratelimit-input-tokens-remaining": "800", "anthropic-ratelimit-output-tokens-remaining": "200",
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-reset": "2026-11-01T00:00:00Z",
    }) == {"requests": 49.0, "tokens": 1000.0, "input_tokens": 800.0, "output_tokens": 200.0}
    assert remaining_from_headers({"x-ratelimit-remaining-requests": "lots"}) == {}
    assert remaining_from_headers(None) == {}


def test_rate_limits_from_real_provider_headers(telemetry, instrument, instrument_anthropic, client,
                                                anthropic_client, clock):
    recorder = instrument()
    instrument_anthropic(recorder=recorder)
    gateway = Gateway(recorder, meter_provider=telemetry.meter_provider, clock=clock, config=GatewayConfig())
    messages = [{"role": "user", "content": "hello there"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=messages)
    remaining = {(dict(k)["gen_ai.provider.name"], dict(k)["llm.rate_limit.kind"]): v
                 for k, v in values(telemetry, "llm.gateway.rate_limit.remaining").items()}
    assert set(remaining) == {("openai", "requests"), ("openai", "tokens"), ("anthropic", "requests"),
                              ("anthropic", "tokens"), ("anthropic", "input_tokens"), ("anthropic", "output_tokens")}
    assert 0 < remaining[("openai", "requests")] < 10_000 and 0 < remaining[("anthropic", "tokens")] < 10_000_000
    with pytest.raises(openai.RateLimitError):  # the 429's own headers: no requests left
        client.chat.completions.create(model="error-429", messages=messages)
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model="error-429", max_tokens=20, messages=messages)
    assert value(telemetry, "llm.gateway.rate_limit.remaining", gen_ai__provider__name="openai",
                 llm__rate_limit__kind="requests") == 0
    assert value(telemetry, "llm.gateway.rate_limit.remaining", gen_ai__provider__name="anthropic",
                 llm__rate_limit__kind="requests") == 0
    clock.t += 301  # not heard from a provider for a whole health window: the stale value goes
    assert values(telemetry, "llm.gateway.rate_limit.remaining") == {}
    gateway.detach()


# -- calls in flight and streams ------------------------------------------------------------------


def test_in_flight_and_streams_scripted(telemetry, clock):
    gateway = make_gateway(telemetry, clock)
    first = fake_call(stream=True, duration=2.5, ttft=0.5, output_tokens=100)
    second = fake_call(stream=True, error="APIConnectionError")
    left = fake_call(stream=True, duration=1.0, ttft=0.5, cancelled=True)  # the consumer stopped reading
    plain = fake_call(provider="anthropic", model="claude-haiku-4-5")
    for call in (first, second, left, plain):
        gateway._on_start(call)
    active = lambda name: {dict(k)["gen_ai.provider.name"]: v for k, v in values(telemetry, name).items()}  # noqa: E731
    assert active("llm.client.active_requests") == {"openai": 3, "anthropic": 1}
    assert active("llm.client.active_streams") == {"openai": 3}
    for call in (first, second, left, plain):
        gateway._on_end(call)
    assert active("llm.client.active_requests") == {"openai": 0, "anthropic": 0}
    assert active("llm.client.active_streams") == {"openai": 0}
    assert {dict(k)["llm.stream.outcome"]: v for k, v in values(telemetry, "llm.client.streams").items()} == {
        "completed": 1, "cancelled": 1, "failed": 1}
    # 100 output tokens in 2.5 s - 0.5 s to the first chunk = 50 tokens/s
    assert values(telemetry, "llm.client.stream.output_tokens_per_second") == {
        (("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o-mini")): (1, 50.0)}
    gateway._on_end(fake_call())  # a call that started before the gateway attached: no negative count
    assert active("llm.client.active_requests") == {"openai": 0, "anthropic": 0}


def test_real_calls_feed_the_gateway_through_the_recorder(telemetry, instrument, client, clock):
    recorder = instrument()
    gateway = Gateway(recorder, meter_provider=telemetry.meter_provider, clock=clock, config=GatewayConfig())
    in_flight = []

    def peek(call: Any) -> None:  # a start listener added after the gateway's sees its count
        in_flight.append(value(telemetry, "llm.client.active_requests", gen_ai__provider__name="openai"))

    recorder.add_listener(peek, on_start=True)
    messages = [{"role": "user", "content": "count to three"}]
    for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert in_flight == [1, 1]
    assert value(telemetry, "llm.client.active_requests", gen_ai__provider__name="openai") == 0
    assert value(telemetry, "llm.client.streams", llm__stream__outcome="completed") == 1
    count, total = value(telemetry, "llm.client.stream.output_tokens_per_second")
    assert count == 1 and total > 0
    assert value(telemetry, "llm.gateway.provider.health", gen_ai__provider__name="openai") == 1.0
    gateway.detach()
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # detached: not counted
    assert gateway.snapshot()["providers"]["openai"]["health"]["calls"] == 2


def test_the_gateway_never_breaks_a_call(telemetry, instrument, client, clock):
    class Exploding(dict):
        def items(self):  # noqa: ANN201
            raise RuntimeError("bad headers")

    recorder = instrument()
    Gateway(recorder, meter_provider=telemetry.meter_provider, clock=clock, config=GatewayConfig())

    def break_headers(call: Any) -> None:
        call.response_headers = Exploding()

    recorder._listeners.insert(0, break_headers)  # the gateway's listener now meets headers that raise
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


# -- configuration and documentation --------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"health_window": 0}, "health_window must be > 0"),
    ({"latency_weight": 1.5}, "latency_weight must be between 0 and 1"),
    ({"anomaly_min_baseline": 9, "anomaly_baseline": 3}, "make it at most anomaly_baseline"),
    ({"max_models": 0.5}, "max_models must be a whole number"),
    ({"client_error_types": "BadRequestError"}, "must be a set of error type names"),
])
def test_bad_config_says_what_to_fix(settings, message):
    with pytest.raises(GatewayConfigError, match=message):
        GatewayConfig(**settings)


def test_config_from_env_names_the_variable(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_GATEWAY_HEALTH_WINDOW", "120s")
    monkeypatch.setenv("OTEL_LLM_GATEWAY_TTFT_OBJECTIVE", "1.5")
    config = GatewayConfig.from_env()
    assert (config.health_window, config.ttft_objective) == (120.0, 1.5)
    monkeypatch.setenv("OTEL_LLM_GATEWAY_LATENCY_OBJECTIVE", "fast")
    with pytest.raises(GatewayConfigError, match="OTEL_LLM_GATEWAY_LATENCY_OBJECTIVE='fast' is not a number"):
        GatewayConfig.from_env()
    monkeypatch.setenv("OTEL_LLM_GATEWAY_LATENCY_OBJECTIVE", "-1")
    with pytest.raises(GatewayConfigError, match="OTEL_LLM_GATEWAY_LATENCY_OBJECTIVE: latency_objective must be > 0"):
        GatewayConfig.from_env()


def test_every_gateway_metric_is_documented_and_low_cardinality():
    readme = (REPO / "docs" / "telemetry.md").read_text()  # the metrics table moved from the README
    configuration = (REPO / "docs" / "configuration.md").read_text()
    naming = (REPO / "docs" / "naming.md").read_text()
    allowed = {names.PROVIDER, names.MODEL, names.OPERATION, names.BREAKER_STATE, names.KEY_POOL_GROUP,
               names.KEY_STATE, names.ROTATION_REASON, names.VALIDATION_RESULT, names.RATE_LIMIT_KIND,
               names.ANOMALY_TYPE, names.STREAM_OUTCOME}
    for metric in names.METRICS:
        assert f"`{metric.name}`" in readme, f"{metric.name} missing from docs/telemetry.md's metrics table"
        assert f"`{metric.exposition_name}" in readme, f"{metric.exposition_name} missing from docs/telemetry.md"
        assert metric.exposition_name in naming, f"{metric.exposition_name} missing from docs/naming.md"
        assert set(metric.attributes) <= allowed
        assert metric.name.startswith(("llm.gateway.", "llm.client."))
    for variable in (names.ENV_HEALTH_WINDOW, names.ENV_LATENCY_OBJECTIVE, names.ENV_TTFT_OBJECTIVE,
                     names.ENV_ANOMALY_INTERVAL, names.ENV_KEY_ID_SALT):
        assert f"`{variable}`" in configuration, f"{variable} missing from docs/configuration.md's environment table"


def test_the_provider_dashboard_queries_only_known_gateway_metrics():
    dashboard = json.loads((REPO / "grafana" / "dashboards" / "llm-provider-health.json").read_text())
    text = json.dumps(dashboard)
    used = set(re.findall(r"llm_gateway_[a-z_]+|llm_client_(?:active|stream)[a-z_]*", text))
    known = {m.base for m in names.METRICS}
    assert used, "the provider-health dashboard shows no gateway metric"
    for name in used:
        base = re.sub(r"_(total|ratio|bucket|sum|count)$", "", name)
        # OTLP translation with suffixes appends the unit {token}/s as _per_second (tests/test_backends.py)
        base = re.sub(r"_per_second_per_second$", "_per_second", base)
        assert base in known, f"{name} is not a gateway metric of otel_llm.gateway.names"
    for metric in names.METRICS:
        assert metric.base in text, f"the provider-health dashboard has no panel for {metric.name}"
