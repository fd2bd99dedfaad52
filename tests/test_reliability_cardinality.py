"""A flood of distinct model names or base URLs cannot create unbounded metric series; the overflow shows.

Model names can come from user input (a gateway forwarding whatever model a client asks for) and
base URLs from configuration; every distinct value of a metric attribute is a new series in
Prometheus. The recorder admits the first ``OTEL_LLM_METRIC_MAX_VALUES`` (100) values of
``gen_ai.request.model``, ``gen_ai.response.model`` and ``server.address``/``server.port``; later
ones are recorded as ``_OTHER`` on metrics (spans keep the true value) and logged once. The SDK's
own cardinality limit (2000 attribute sets per metric, overflow marked ``otel.metric.overflow``)
stays as the backstop for everything else.
"""

from __future__ import annotations

import logging
import urllib.request
from collections import Counter

import openai
import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm.content import CaptureMode
from otel_llm.pricing import PriceTable
from otel_llm.recorder import DEFAULT_METRIC_MAX_VALUES, OTHER_VALUE, Recorder
from otel_llm.sdk import configure
from tests.conftest import API_KEY
from tests.support.faults import free_port

pytestmark = pytest.mark.slow


def _series(points: list, attribute: str) -> Counter:
    counts: Counter = Counter()
    for point in points:
        counts[point.attributes.get(attribute)] += point.count
    return counts


def test_model_flood_is_capped_and_the_overflow_is_visible(telemetry, caplog):
    recorder = telemetry.recorder()
    flood = 5_000
    with caplog.at_level(logging.WARNING, logger="otel_llm.recorder"):
        for i in range(flood):
            call = recorder.start_call("chat", "openai", f"user-model-{i}", server_address="gw.internal", server_port=443)
            call.set_response(model=f"user-model-{i}-2025")
            call.set_usage(3, 2)
            call.end()
    points = telemetry.collect()
    durations = points["gen_ai.client.operation.duration"]
    # Bounded: the first 100 request models (each with its response model) plus one _OTHER series.
    assert len(durations) == DEFAULT_METRIC_MAX_VALUES + 1
    by_model = _series(durations, "gen_ai.request.model")
    assert by_model[OTHER_VALUE] == flood - DEFAULT_METRIC_MAX_VALUES
    assert sum(by_model.values()) == flood  # nothing lost, only folded
    assert _series(durations, "gen_ai.response.model")[OTHER_VALUE] == flood - DEFAULT_METRIC_MAX_VALUES
    assert len(points["gen_ai.client.token.usage"]) == 2 * (DEFAULT_METRIC_MAX_VALUES + 1)
    assert sum(p.sum for p in points["gen_ai.client.token.usage"]) == 5 * flood
    # Spans keep the true value; the overflow is logged once per attribute.
    spans = telemetry.spans()
    assert spans[-1].attributes["gen_ai.request.model"] == f"user-model-{flood - 1}"
    warnings = [r.getMessage() for r in caplog.records if "distinct values" in r.getMessage()]
    assert len(warnings) == 2 and "gen_ai.request.model" in warnings[0] and "OTEL_LLM_METRIC_MAX_VALUES" in warnings[0]
    assert recorder.request_models.overflowed == flood - DEFAULT_METRIC_MAX_VALUES


def test_known_models_keep_their_series_after_the_flood(telemetry):
    recorder = telemetry.recorder(max_metric_values=3)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "flood-1", "flood-2", "gpt-4o"):
        recorder.start_call("chat", "openai", model).end()
    by_model = _series(telemetry.collect()["gen_ai.client.operation.duration"], "gen_ai.request.model")
    assert by_model == {"gpt-4o": 2, "gpt-4o-mini": 1, "gpt-4.1": 1, OTHER_VALUE: 2}




def test_base_url_flood_through_the_sdk_is_capped(telemetry, instrument):
    """300 clients with distinct base URLs (ports nothing listens on: each call fails at once)."""
    recorder = instrument(recorder=telemetry.recorder(max_metric_values=20))
    clients = 300
    ports: set[int] = set()
    while len(ports) < clients:
        ports.add(free_port())
    base = openai.OpenAI(base_url="http://127.0.0.1:1/v1", api_key=API_KEY, max_retries=0, timeout=5)
    for port in sorted(ports):
        client = base.with_options(base_url=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    durations = telemetry.collect()["gen_ai.client.operation.duration"]
    assert len(durations) == 20 + 1
    addresses = _series(durations, "server.address")
    assert addresses == {"127.0.0.1": 20, OTHER_VALUE: clients - 20}
    assert all("server.port" not in p.attributes for p in durations if p.attributes["server.address"] == OTHER_VALUE)
    assert recorder.servers.overflowed == clients - 20
    assert {s.attributes["server.address"] for s in telemetry.spans()} == {"127.0.0.1"}  # spans: the truth
    assert len({s.attributes["server.port"] for s in telemetry.spans()}) == clients


def test_flood_in_the_prometheus_exposition(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_METRIC_MAX_VALUES", "10")
    telemetry = configure("flood", traces_exporter="none", metrics_exporter="prometheus", logs_exporter="none",
                          prometheus_host="127.0.0.1", prometheus_port=0, instrument=True, set_global=False)
    try:
        recorder = telemetry.recorder
        for i in range(1_000):
            call = recorder.start_call("chat", "openai", f"m{i}", server_address="llm.internal", server_port=8000)
            call.set_usage(1, 1)
            call.end()
        with urllib.request.urlopen(telemetry.prometheus_url, timeout=5) as response:
            text = response.read().decode()
    finally:
        telemetry.shutdown()
    counts = [line for line in text.splitlines() if line.startswith("gen_ai_client_operation_duration_seconds_count")]
    assert len(counts) == 11
    other = [line for line in counts if f'gen_ai_request_model="{OTHER_VALUE}"' in line]
    assert len(other) == 1 and other[0].endswith(" 990.0")


def test_bad_limit_in_the_environment_falls_back_and_says_so(monkeypatch, caplog, telemetry):
    monkeypatch.setenv("OTEL_LLM_METRIC_MAX_VALUES", "lots")
    with caplog.at_level(logging.ERROR, logger="otel_llm.recorder"):
        recorder = telemetry.recorder()
    assert recorder.request_models.limit == DEFAULT_METRIC_MAX_VALUES
    assert "OTEL_LLM_METRIC_MAX_VALUES='lots' is not a positive whole number" in caplog.text


def test_sdk_cardinality_limit_backstops_every_other_attribute():
    """The SDK's limit per metric (here lowered to 50 on the reader) folds whatever else varies into
    one point marked otel.metric.overflow=true: bounded, and visible."""
    reader = InMemoryMetricReader(cardinality_limits={Histogram: 50})
    recorder = Recorder(meter_provider=MeterProvider(metric_readers=[reader]), prices=PriceTable(),
                        capture=CaptureMode.NO_CONTENT, max_metric_values=10_000)
    for i in range(500):
        recorder.start_call("chat", "openai", f"m{i}").end()
    data = reader.get_metrics_data()
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == "gen_ai.client.operation.duration" for p in m.data.data_points]
    assert len(points) == 50 + 1
    overflow = [p for p in points if p.attributes.get("otel.metric.overflow") is True]
    assert len(overflow) == 1 and overflow[0].count == 500 - 50
