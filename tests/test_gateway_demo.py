"""The demo's FastAPI gateway, in process, through a scripted scenario (injected clocks, no sleeping):
server spans parent the LLM spans, a revoked key is retired and rotated, an outage opens the breaker and
the gateway falls back, the breaker recovers, validations restore the key, and no API key reaches any
exported signal, endpoint or log."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pybreaker
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otel_llm.content import CaptureMode
from otel_llm.demo.gateway import (
    ANTHROPIC,
    ANTHROPIC_KEYS,
    OPENAI,
    OPENAI_KEYS,
    REVOKED_KEY,
    AppServer,
    DemoGateway,
    GatewayTraffic,
    Scenario,
    bind,
    create_app,
)
from otel_llm.exposition import AccessControl, ExpositionApp
from otel_llm.gateway import Gateway, GatewayConfig
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.pricing import PriceTable
from otel_llm.recorder import Recorder

pytestmark = pytest.mark.slow
ALL_KEYS = OPENAI_KEYS + ANTHROPIC_KEYS


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(upstream, monkeypatch):
    clock = Clock()
    breaker_now = [dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)]

    class FrozenDatetime(dt.datetime):  # pybreaker's reset timeout reads datetime.now(UTC)
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return breaker_now[0]

    monkeypatch.setattr(pybreaker, "datetime", FrozenDatetime)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    registry, metrics = CollectorRegistry(), InMemoryMetricReader()
    meter_provider = MeterProvider(resource=Resource.create({"service.name": "demo-gateway"}),
                                   metric_readers=[metrics, PrometheusMetricReader(registry=registry)])
    recorder = Recorder(tracer_provider=tracer_provider, meter_provider=meter_provider, prices=PriceTable(),
                        capture=CaptureMode.NO_CONTENT)
    instrumentors = [OpenAIInstrumentor(), AnthropicInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument(recorder=recorder)
    telemetry = SimpleNamespace(recorder=recorder, meter_provider=meter_provider, tracer_provider=tracer_provider)
    gateway = Gateway.from_telemetry(telemetry, clock=clock, config=GatewayConfig(), key_id_salt="demo-gateway-tests")
    demo = DemoGateway(telemetry, upstream, Scenario(clock=clock, latency_spike=0.0), gateway, breaker_reset=4.0)
    exposition = ExpositionApp(registry, gateway=gateway, access=AccessControl(), clock=clock)
    app = create_app(demo, exposition, telemetry)
    sock, _ = bind("127.0.0.1", 0)
    server = AppServer(app, sock).start()
    try:
        yield SimpleNamespace(clock=clock, breaker_now=breaker_now, spans=spans, metrics=metrics, demo=demo,
                              gateway=gateway, url=f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
        demo.close()
        FastAPIInstrumentor.uninstrument_app(app)
        for instrumentor in instrumentors:
            instrumentor.uninstrument()


def post(rig: Any, model: str, stream: bool = False) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": model, "prompt": "What is an exemplar?", "stream": stream}).encode()
    request = urllib.request.Request(f"{rig.url}/v1/chat", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(rig: Any, path: str, accept: str | None = None) -> str:
    request = urllib.request.Request(f"{rig.url}{path}", headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:  # /health/detailed answers 503 when unhealthy, with its numbers
        return error.read().decode()


def points(rig: Any, name: str) -> dict[tuple, float]:
    data = rig.metrics.get_metrics_data()
    found = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point.value
    return found


def by(rig: Any, name: str, label: str, **match: str) -> dict[str, float]:
    wanted = {k.replace("__", "."): v for k, v in match.items()}
    return {dict(k)[label]: v for k, v in points(rig, name).items() if wanted.items() <= dict(k).items()}


def llm_spans(rig: Any) -> list[Any]:
    return [s for s in rig.spans.get_finished_spans() if s.instrumentation_scope.name == "otel_llm"]


def test_llm_spans_nest_under_the_fastapi_server_span(rig):
    rig.clock.t = 1.0
    status, answer = post(rig, "claude-haiku-4-5")
    assert (status, answer["provider"], answer["model"], answer["fallback"]) == (200, ANTHROPIC, "claude-haiku-4-5", False)
    assert answer["text"]
    status, answer = post(rig, "gpt-4o-mini", stream=True)
    assert status == 200 and answer["provider"] == OPENAI and answer["text"]
    deadline = time.monotonic() + 5  # the server span ends just after the response is sent: wait for it
    while True:
        finished = {s.context.span_id: s for s in rig.spans.get_finished_spans()}
        servers = [s for s in finished.values() if s.kind == SpanKind.SERVER and s.name == "POST /v1/chat"]
        if len(servers) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(servers) == 2
    for span in llm_spans(rig):
        assert span.kind == SpanKind.CLIENT
        parent = span.parent
        while parent is not None and finished[parent.span_id].kind != SpanKind.SERVER:
            parent = finished[parent.span_id].parent
        assert parent is not None, f"{span.name} is not under a server span"
        assert parent.trace_id == span.context.trace_id
    assert {s.name for s in llm_spans(rig)} == {"chat claude-haiku-4-5", "chat gpt-4o-mini"}


def test_scripted_gateway_scenario(rig, caplog):
    caplog.set_level(logging.DEBUG)
    rig.clock.t = 1.0
    assert post(rig, "claude-haiku-4-5")[1]["provider"] == ANTHROPIC

    # 10 s: OpenAI key B is revoked while it is the current key; the gateway retires it and moves on
    rig.clock.t = 10.0
    rig.demo.rotate_all()
    status, answer = post(rig, "gpt-4o-mini")
    assert (status, answer["provider"], answer["fallback"]) == (200, OPENAI, False)
    pool = rig.demo.keys[OPENAI].pool
    assert pool.state(REVOKED_KEY) == "invalid"
    assert by(rig, "llm.gateway.key_pool.keys", "llm.key_pool.key_state", llm__key_pool__group="openai-demo") == {
        "active": 2, "invalid": 1}
    assert by(rig, "llm.gateway.key_pool.rotations", "llm.key_pool.rotation.reason",
              llm__key_pool__group="openai-demo") == {"scheduled": 1, "invalid": 1, "rate_limited": 0, "manual": 0}
    rejected = [s for s in llm_spans(rig) if s.attributes.get("error.type") == "AuthenticationError"]
    assert len(rejected) == 1 and rejected[0].attributes["gen_ai.provider.name"] == OPENAI
    assert by(rig, "llm.gateway.provider.health", "gen_ai.provider.name") == {ANTHROPIC: 1.0, OPENAI: 1.0}  # not the provider's fault

    # 25 s: Anthropic is overloaded; 4 failures open its breaker, requests fall back to OpenAI
    rig.clock.t = 25.0
    for _ in range(5):
        status, answer = post(rig, "claude-haiku-4-5")
        assert (status, answer["provider"], answer["model"], answer["fallback"]) == (200, OPENAI, "gpt-4o-mini", True)
    overloaded = [s for s in llm_spans(rig) if s.attributes.get("gen_ai.provider.name") == ANTHROPIC
                  and s.attributes.get("error.type")]
    assert len(overloaded) == 4  # the 5th never reached Anthropic: the breaker was open
    assert by(rig, "llm.gateway.circuit_breaker.state", "gen_ai.provider.name") == {OPENAI: 0, ANTHROPIC: 2}
    assert by(rig, "llm.gateway.provider.health", "gen_ai.provider.name")[ANTHROPIC] == pytest.approx(0.2)  # 1 of 5
    summary = json.loads(get(rig, "/observability/summary"))
    anthropic_row = next(p for p in summary["providers"] if p["provider"] == ANTHROPIC)
    assert anthropic_row["circuit_breaker"] == "open" and anthropic_row["health"] == pytest.approx(0.2)
    assert anthropic_row["rate_limit_remaining"]["requests"] < 10_000  # from the 529 answers' headers

    # 40 s: the outage is over; after the reset timeout one trial call closes the breaker
    rig.clock.t = 40.0
    rig.breaker_now[0] += dt.timedelta(seconds=5)
    status, answer = post(rig, "claude-haiku-4-5")
    assert (status, answer["provider"], answer["fallback"]) == (200, ANTHROPIC, False)
    assert by(rig, "llm.gateway.circuit_breaker.transitions", "llm.circuit_breaker.state",
              gen_ai__provider__name=ANTHROPIC) == {"closed": 1, "half_open": 1, "open": 1}
    assert by(rig, "llm.gateway.circuit_breaker.state", "gen_ai.provider.name")[ANTHROPIC] == 0

    # validations: B is still revoked at 40 s, re-issued by 75 s
    rig.demo.validate_keys()
    assert by(rig, "llm.gateway.key_pool.validations", "llm.key_pool.validation.result",
              llm__key_pool__group="openai-demo") == {"valid": 2, "invalid": 1, "error": 0}
    rig.clock.t = 75.0
    rig.demo.validate_keys()
    assert by(rig, "llm.gateway.key_pool.keys", "llm.key_pool.key_state", llm__key_pool__group="openai-demo") == {
        "active": 3, "invalid": 0}
    assert by(rig, "llm.gateway.key_pool.validations", "llm.key_pool.validation.result",
              llm__key_pool__group="anthropic-demo") == {"valid": 4, "invalid": 0, "error": 0}

    # no key anywhere: spans, metrics, every endpoint, the logs; the key ids are shown instead
    outputs = [span.to_json() for span in rig.spans.get_finished_spans()]
    outputs.append(rig.metrics.get_metrics_data().to_json())
    for path in ("/observability/metrics", "/observability/metrics.csv", "/observability/catalog",
                 "/observability/summary", "/observability/health/detailed", "/observability/dashboard",
                 "/observability/", "/gateway/status"):
        outputs.append(get(rig, path))
    outputs.append(get(rig, "/observability/metrics", accept="application/openmetrics-text; version=1.0.0"))
    outputs.append(caplog.text)
    everything = "\n".join(outputs)
    for key in ALL_KEYS:
        assert key not in everything and key[-16:] not in everything
    summary = json.loads(get(rig, "/observability/summary"))
    shown = {k["id"] for pool in summary["key_pools"] for k in pool["keys"]}
    assert shown == {rig.gateway.key_id(key) for key in ALL_KEYS}


def test_scenario_timeline_and_traffic_mix():
    clock = Clock()
    scenario = Scenario(clock=clock, latency_spike=0.5)
    expectations = {
        0: (False, False, 0.0, False), 10: (True, False, 0.0, False), 25: (True, True, 0.0, False),
        50: (True, False, 0.5, False), 65: (True, False, 0.0, True), 80: (False, False, 0.0, False),
        145: (True, True, 0.0, False),  # the next cycle
    }
    for t, (revoked, outage, latency, spike) in expectations.items():
        clock.t = t
        assert (scenario.is_revoked(REVOKED_KEY), scenario.outage(ANTHROPIC), scenario.extra_latency(ANTHROPIC),
                scenario.cost_spike()) == (revoked, outage, latency, spike), t
        assert not scenario.is_revoked(OPENAI_KEYS[0]) and not scenario.outage(OPENAI)
    traffic = GatewayTraffic("http://127.0.0.1:9/v1/chat", scenario, rate=1, seed=5)
    clock.t = 0
    models = [traffic.request()["model"] for _ in range(200)]
    assert {"claude-haiku-4-5", "claude-sonnet-4-5", "gpt-4o-mini", "gpt-4.1-mini"} == set(models)
    clock.t = 65
    batch = [traffic.request() for _ in range(50)]
    long = [r for r in batch if r["model"] == "gpt-4.1"]
    assert 15 < len(long) < 45 and all(len(r["prompt"].split()) > 3000 for r in long)
