"""Collector down, slow, or answering errors: nothing blocked, nothing queued forever, every loss counted,
export resumes.

Real OTLP exporters (gRPC and HTTP) against the real test receiver in its fault modes, or against a
port nothing listens on. The guarantees are proven by events and exact counts, never by
wall-clock thresholds (what the faults cost in time is measured by bench/faults.py):

* instrumented calls complete while the exporter is stuck inside an export to the faulty collector;
* a burst larger than the queue leaves the queue at its bound, drops the oldest spans and counts
  each drop exactly, in memory the bound explains; the LLM metrics stay exact;
* every span ends up exported or counted as lost, by reason, also as the metric
  ``otel_llm.spans.dropped``;
* when the collector comes back, spans flow again and the cumulative metrics carry exact totals.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from otel_llm import spans as otel_spans
from otel_llm.content import CaptureMode
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.pricing import PriceTable
from otel_llm.recorder import Recorder
from otel_llm.sdk import configure
from tests.conftest import API_KEY
from tests.support.faults import Gate, free_port, wait_until

pytestmark = pytest.mark.slow
TRANSPORTS = ["grpc", "http"]




def _span_exporter(transport: str, receiver: Any = None, *, port: int | None = None, timeout: float = 10) -> SpanExporter:
    if transport == "grpc":
        endpoint = receiver.grpc_endpoint if port is None else f"http://127.0.0.1:{port}"
        return GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout)
    endpoint = receiver.http_url("traces") if port is None else f"http://127.0.0.1:{port}/v1/traces"
    return HttpSpanExporter(endpoint=endpoint, timeout=timeout)


def _metric_exporter(transport: str, receiver: Any, timeout: float = 10) -> Any:
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=timeout)
    return HttpMetricExporter(endpoint=receiver.http_url("metrics"), timeout=timeout)


class Rig:
    """A TracerProvider with our BatchSpanProcessor, a MeterProvider (in-memory reader plus the
    dropped-spans counter), a Recorder, and the openai SDK instrumented into it."""

    def __init__(self, exporter: SpanExporter, *, metric_readers: list[Any] | None = None, **options: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader, *(metric_readers or [])],
                                            resource=Resource.create({"service.name": "faults"}))
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": "faults"}))
        options.setdefault("shutdown_timeout_millis", 2_000)
        self.processor = otel_spans.BatchSpanProcessor(exporter, **options)
        self.tracer_provider.add_span_processor(self.processor)
        otel_spans.register_dropped_metric(self.meter_provider, [self.processor])
        self.recorder = Recorder(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
                                 prices=PriceTable(), capture=CaptureMode.NO_CONTENT)
        self.counts = self.processor.counts
        self._instrumentor: OpenAIInstrumentor | None = None

    def instrument(self) -> None:
        self._instrumentor = OpenAIInstrumentor()
        self._instrumentor.instrument(recorder=self.recorder)

    def accounted(self) -> int:
        """Spans the processor has settled: exported, or lost for a counted reason."""
        return self.counts.get("exported") + self.counts.dropped()

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [point for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
                if metric.name == name for point in metric.data.data_points]

    def dropped_metric(self) -> dict[str, int]:
        return {p.attributes["error.type"]: p.value for p in self.metric_points(otel_spans.DROPPED_METRIC)}

    def close(self) -> None:
        if self._instrumentor is not None:
            self._instrumentor.uninstrument()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(exporter: SpanExporter, **options: Any) -> Rig:
        rigs.append(Rig(exporter, **options))
        return rigs[-1]

    yield make
    for made in rigs:
        made.close()


def _chat(client: openai.OpenAI, model: str = "gpt-4o-mini") -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])


# ---------------------------------------------------------------------- 1. calls never wait


@pytest.mark.parametrize("fault", ["down", "slow", "error"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_llm_calls_never_wait_on_a_faulty_collector(transport, fault, otlp_receiver, rig, upstream):
    if fault == "down":
        inner = _span_exporter(transport, port=free_port(), timeout=0.5)
    else:
        otlp_receiver.mode, otlp_receiver.delay = fault, 5.0
        inner = _span_exporter(transport, otlp_receiver, timeout=0.5)
    gate = Gate(inner)
    r = rig(gate, schedule_delay_millis=20, max_export_batch_size=64, max_queue_size=64)
    r.instrument()
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)

    _chat(client)  # its span goes to the worker, which goes into the export to the faulty collector
    assert gate.entered.wait(10), "the worker never started exporting"
    calls = 20
    for _ in range(calls):
        stream = client.chat.completions.create(model="gpt-4o", stream=True,
                                                messages=[{"role": "user", "content": "more"}])
        for _chunk in stream:
            pass
        _chat(client)
    # All 40 calls returned while the worker was still inside export(): none waited on the collector.
    assert not gate.returned.is_set(), "the calls returned only after the export finished"
    assert r.processor.pending() == 2 * calls
    assert r.counts.get("submitted") == 1

    gate.release.set()
    r.tracer_provider.shutdown()
    wait_until(lambda: r.accounted() == 2 * calls + 1, what="every span exported or counted as lost")
    assert r.counts.get("exported") == 0
    assert r.counts.get(otel_spans.EXPORT_FAILED) + r.counts.get(otel_spans.SHUTDOWN_TIMEOUT) == 2 * calls + 1
    # The LLM metrics are complete whatever happened to the spans.
    assert sum(p.count for p in r.metric_points("gen_ai.client.operation.duration")) == 2 * calls + 1
    if fault == "error":
        assert any(not q.accepted for q in otlp_receiver.requests if q.signal == "traces")


# ---------------------------------------------------------------------- 2. bounded, exact drops


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_burst_is_bounded_and_every_dropped_span_counted(transport, otlp_receiver, rig):
    queue, batch, burst = 128, 32, 4_000
    gate = Gate(_span_exporter(transport, otlp_receiver))
    # A long schedule delay: only a full batch wakes the worker, so what it takes is exact.
    r = rig(gate, max_queue_size=queue, max_export_batch_size=batch, schedule_delay_millis=60_000)

    def call(i: int) -> None:
        llm = r.recorder.start_call("chat", "openai", "gpt-4o-mini", server_address="api.openai.com", server_port=443)
        llm.set_response(model="gpt-4o-mini-2024-07-18", response_id=f"r{i}", finish_reasons=["stop"])
        llm.set_usage(10, 5)
        llm.end()

    for i in range(batch):
        call(i)
    assert gate.entered.wait(10)  # the worker holds the first batch inside export()
    assert r.counts.get("submitted") == batch

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        longest = 0
        for i in range(batch, batch + burst):
            call(i)
            longest = max(longest, r.processor.pending())
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert longest == queue and not gate.returned.is_set()
    assert r.processor.pending() == queue
    assert r.counts.get(otel_spans.QUEUE_FULL) == burst - queue
    assert batch + burst == r.counts.get("submitted") + r.processor.pending() + r.counts.get(otel_spans.QUEUE_FULL)
    # Memory: the peak is what the bounded queue holds, not what the burst would have cost.
    per_span = max(current - baseline, 1) / queue
    assert peak - baseline < burst * per_span / 10, (peak - baseline, per_span)
    # The LLM metrics lost nothing: every call counted, every token summed.
    assert sum(p.count for p in r.metric_points("gen_ai.client.operation.duration")) == batch + burst
    assert sum(p.sum for p in r.metric_points("gen_ai.client.token.usage")) == 15 * (batch + burst)

    gate.release.set()
    otlp_receiver.wait_for(lambda rec: len(rec.spans()) == batch + queue, message="warm-up + queued spans")
    wait_until(lambda: r.counts.get("exported") == batch + queue)
    # The oldest spans were dropped: what arrived is the warm-up and the burst's tail.
    expected = {f"r{i}" for i in range(batch)} | {f"r{i}" for i in range(batch + burst - queue, batch + burst)}
    assert {s["attributes"]["gen_ai.response.id"] for s in otlp_receiver.spans()} == expected
    assert r.dropped_metric() == {"queue_full": burst - queue, "already_shutdown": 0, "export_failed": 0,
                                  "shutdown_timeout": 0}


def test_spans_ended_after_the_processor_shut_down_are_counted(rig, otlp_receiver):
    solo = rig(_span_exporter("grpc", otlp_receiver))
    solo.processor.shutdown()
    for _ in range(3):
        solo.recorder.start_call("chat", "openai", "gpt-4o-mini").end()
    assert solo.counts.get(otel_spans.ALREADY_SHUTDOWN) == 3


# ---------------------------------------------------------------------- 3. bounded shutdown


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_shutdown_returns_with_the_queue_counted_when_the_collector_is_stuck(fault, otlp_receiver, rig):
    # The exporter alone would keep trying for 120 s; the processor's shutdown is bounded (0.3 s here).
    if fault == "down":
        exporter = _span_exporter("grpc", port=free_port(), timeout=120)
    else:
        otlp_receiver.mode, otlp_receiver.delay = "slow", 120.0
        exporter = _span_exporter("http", otlp_receiver, timeout=120)
    r = rig(exporter, shutdown_timeout_millis=300, max_export_batch_size=16, schedule_delay_millis=20)
    for _ in range(200):
        r.recorder.start_call("chat", "openai", "gpt-4o-mini").end()
    done = threading.Event()
    threading.Thread(target=lambda: (r.tracer_provider.shutdown(), done.set()), daemon=True).start()
    # Liveness with a wide margin both ways: the bound is 0.3 s, the exporter would take 120 s per batch.
    assert done.wait(60), "shutdown did not return"
    # Every span is exported, counted as lost, or (slow collector: the HTTP request cannot be aborted)
    # in the one batch still in flight, which is counted when that request ends.
    wait_until(lambda: r.accounted() + r.processor.in_flight() == 200, what="every span accounted for")
    assert r.counts.get("exported") == 0 and r.processor.pending() == 0
    assert r.processor.in_flight() <= 16
    assert r.counts.get(otel_spans.SHUTDOWN_TIMEOUT) + r.counts.get(otel_spans.EXPORT_FAILED) + r.processor.in_flight() == 200
    assert r.counts.get(otel_spans.SHUTDOWN_TIMEOUT) > 0


# ---------------------------------------------------------------------- 4. recovery


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_and_metrics_resume_when_the_collector_comes_back(transport, otlp_receiver, upstream):
    otlp_receiver.mode = "error"
    metrics = PeriodicExportingMetricReader(_metric_exporter(transport, otlp_receiver, timeout=10),
                                            export_interval_millis=100)
    r = Rig(_span_exporter(transport, otlp_receiver, timeout=10), metric_readers=[metrics], schedule_delay_millis=20)
    r.instrument()
    try:
        client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
        during = [_chat(client, "gpt-4o") for _ in range(3)]
        otlp_receiver.wait_for(lambda rec: any(not q.accepted for q in rec.requests if q.signal == "traces")
                               and any(not q.accepted for q in rec.requests if q.signal == "metrics"),
                               message="refused span and metric exports")
        assert otlp_receiver.spans() == [] and otlp_receiver.metrics() == []

        otlp_receiver.mode = "ok"  # back: the exporter's retry delivers what it held
        after = [_chat(client, "gpt-4.1-mini") for _ in range(2)]
        otlp_receiver.wait_for(lambda rec: len([s for s in rec.spans() if s["scope"] == "otel_llm"]) == 5,
                               message="the 3 spans of the outage and the 2 after it")
        ids = sorted(s["attributes"]["gen_ai.response.id"] for s in otlp_receiver.spans())
        assert ids == sorted(c.id for c in during + after)
        wait_until(lambda: r.counts.get("exported") == 5)
        assert r.counts.dropped() == 0

        # Cumulative metrics: the first accepted export after the outage already has every call.
        def durations(rec: Any) -> dict[str, int]:
            latest: dict[str, int] = {}
            for point in rec.metrics():
                if point["name"] == "gen_ai.client.operation.duration":
                    latest[point["attributes"]["gen_ai.request.model"]] = point["count"]
            return latest

        otlp_receiver.wait_for(lambda rec: durations(rec) == {"gpt-4o": 3, "gpt-4.1-mini": 2},
                               message="exact cumulative call counts")
        first_accepted = next(q for q in otlp_receiver.requests if q.signal == "metrics" and q.accepted)
        assert first_accepted.received_at > min(q.received_at for q in otlp_receiver.requests if not q.accepted)
    finally:
        r.close()


def test_configure_counts_what_a_dead_collector_cost(otlp_receiver, upstream, monkeypatch):
    """The whole configure() pipeline: every span of a run is either received or counted as lost,
    and the loss is reported as otel_llm.spans.dropped when the collector is back."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    otlp_receiver.mode = "error"
    telemetry = configure("faulty", traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="none",
                          otlp_endpoint=otlp_receiver.grpc_endpoint, otlp_protocol="grpc",
                          metric_export_interval_ms=200, set_global=False)
    try:
        client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
        calls = 40
        for _ in range(calls):
            _chat(client)
        wait_until(lambda: sum(telemetry.spans_dropped().values()) == calls,
                    what="every span of the outage counted as lost")
        otlp_receiver.mode = "ok"
        _chat(client)
        otlp_receiver.wait_for(lambda rec: rec.spans(), message="spans after the outage")
    finally:
        telemetry.shutdown()
    dropped = telemetry.spans_dropped()
    received = [s for s in otlp_receiver.spans() if s["scope"] == "otel_llm"]
    assert len(received) + sum(dropped.values()) == calls + 1
    assert dropped["export_failed"] > 0  # (how many overflowed the queue instead depends on the machine's speed)
    reported = {p["attributes"]["error.type"]: p["value"] for p in otlp_receiver.metrics()
                if p["name"] == otel_spans.DROPPED_METRIC}
    assert reported == dropped  # the metric tells the backend exactly what was lost
    assert API_KEY not in otlp_receiver.dump()


def test_service_shutdown_is_bounded_when_the_collector_is_dead(monkeypatch):
    """configure()'s Telemetry.shutdown(): spans get 5 s, the last metric export 5 s, then the exporters
    are shut down (their retries aborted). The exporters alone would retry for 120 s here."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "120")
    telemetry = configure("dying", traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="none",
                          otlp_endpoint=f"http://127.0.0.1:{free_port()}", otlp_protocol="grpc", set_global=False)
    for _ in range(10):
        call = telemetry.recorder.start_call("chat", "openai", "gpt-4o-mini")
        call.set_usage(1, 1)
        call.end()
    done = threading.Event()
    threading.Thread(target=lambda: (telemetry.shutdown(), done.set()), daemon=True).start()
    assert done.wait(60), "shutdown waited on the dead collector"  # liveness: 10 s bound vs 120 s of retries
    dropped = telemetry.spans_dropped()
    assert dropped["export_failed"] + dropped["shutdown_timeout"] == 10
