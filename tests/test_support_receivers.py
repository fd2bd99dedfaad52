"""Self-tests for tests/support: the plain OTel SDK (not otel_llm) sends real bytes
to the real receivers, and Prometheus really scrapes what we serve."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import prometheus_client
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.fixtures import otlp_receiver, prometheus_factory  # noqa: F401 - fixtures
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import PrometheusQueryError, PrometheusServer, ScrapeJob

pytestmark = pytest.mark.slow

RESOURCE = Resource.create({"service.name": "support-selftest", "deployment.environment.name": "test"})


def make_exporters(transport: str, receiver: OTLPReceiver, gzip: bool, timeout: float = 5.0):
    """(span, metric, log) exporters of the plain OTel SDK pointed at the receiver."""
    headers = {"x-selftest": transport}
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        common = dict(
            endpoint=receiver.grpc_endpoint,
            insecure=True,
            headers=headers,
            timeout=timeout,
            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
        )
        return OTLPSpanExporter(**common), OTLPMetricExporter(**common), OTLPLogExporter(**common)

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    common = dict(
        headers=headers, timeout=timeout, compression=Compression.Gzip if gzip else Compression.NoCompression
    )
    return (
        OTLPSpanExporter(endpoint=receiver.http_url("traces"), **common),
        OTLPMetricExporter(endpoint=receiver.http_url("metrics"), **common),
        OTLPLogExporter(endpoint=receiver.http_url("logs"), **common),
    )


def make_span(name: str = "standalone"):
    """A finished SDK span (a ReadableSpan) that no processor has seen."""
    span = TracerProvider(resource=RESOURCE).get_tracer("selftest").start_span(name)
    span.end()
    return span


# ---------------------------------------------------------------------- OTLP receiver


@pytest.mark.parametrize(
    "transport, gzip", [("grpc", False), ("grpc", True), ("http", False), ("http", True)], ids=str
)
def test_sdk_exporters_deliver_spans_metrics_logs(otlp_receiver: OTLPReceiver, transport: str, gzip: bool) -> None:
    span_exporter, metric_exporter, log_exporter = make_exporters(transport, otlp_receiver, gzip)

    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    metric_reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[metric_reader])
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))

    meter = meter_provider.get_meter("selftest")
    duration = meter.create_histogram("selftest.duration", unit="s")
    requests = meter.create_counter("selftest.requests", unit="{request}")
    logger = logger_provider.get_logger("selftest")

    try:
        with tracer_provider.get_tracer("selftest").start_as_current_span("chat selftest", kind=SpanKind.CLIENT) as span:
            span.set_attributes({"s": "x", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]})
            span.add_event("gen_ai.choice", {"index": 0})
            span.set_status(Status(StatusCode.ERROR, "boom"))
            duration.record(1.5, {"gen_ai.request.model": "m1"})  # sampled span in context -> exemplar
            requests.add(3, {"gen_ai.request.model": "m1"})
            logger.emit(
                body="hello receiver",
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={"k": "v"},
                event_name="selftest.event",
            )
            trace_id = format(span.get_span_context().trace_id, "032x")
            span_id = format(span.get_span_context().span_id, "016x")
        assert meter_provider.force_flush(timeout_millis=5_000)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()

    otlp_receiver.wait_for(lambda r: r.spans() and r.metrics() and r.logs(), timeout=5)

    [received_span] = otlp_receiver.spans()
    assert received_span["name"] == "chat selftest"
    assert received_span["kind"] == SpanKind.CLIENT.name
    assert received_span["trace_id"] == trace_id
    assert received_span["span_id"] == span_id
    assert received_span["parent_span_id"] is None
    assert received_span["attributes"] == {"s": "x", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]}
    assert (received_span["status_code"], received_span["status_message"]) == ("ERROR", "boom")
    assert received_span["events"][0]["name"] == "gen_ai.choice"
    assert received_span["events"][0]["attributes"] == {"index": 0}
    assert received_span["resource"]["service.name"] == "support-selftest"
    assert received_span["resource"]["deployment.environment.name"] == "test"
    assert received_span["scope"] == "selftest"

    # meter_provider.shutdown() exports once more; exemplars only ride in the first export
    # (reservoirs are reset every collection), so look at the first point of each metric.
    points = {}
    for point in otlp_receiver.metrics():
        points.setdefault(point["name"], point)
    histogram = points["selftest.duration"]
    assert histogram["type"] == "histogram"
    assert histogram["unit"] == "s"
    assert histogram["temporality"] == "CUMULATIVE"
    assert (histogram["count"], histogram["sum"]) == (1, 1.5)
    assert sum(histogram["bucket_counts"]) == 1
    assert len(histogram["bucket_counts"]) == len(histogram["explicit_bounds"]) + 1
    assert histogram["attributes"] == {"gen_ai.request.model": "m1"}
    assert histogram["resource"]["service.name"] == "support-selftest"
    [exemplar] = histogram["exemplars"]
    assert (exemplar["trace_id"], exemplar["span_id"], exemplar["value"]) == (trace_id, span_id, 1.5)
    counter = points["selftest.requests"]
    assert (counter["type"], counter["value"], counter["is_monotonic"]) == ("sum", 3, True)

    [log] = otlp_receiver.logs()
    assert log["body"] == "hello receiver"
    assert (log["severity_text"], log["severity_number"]) == ("INFO", SeverityNumber.INFO.value)
    assert (log["trace_id"], log["span_id"]) == (trace_id, span_id)
    assert log["attributes"] == {"k": "v"}
    assert log["event_name"] == "selftest.event"
    assert log["resource"]["service.name"] == "support-selftest"

    assert {r.transport for r in otlp_receiver.requests} == {transport}
    for headers in otlp_receiver.headers:
        assert headers["x-selftest"] == transport
        assert "authorization" not in headers
    if transport == "http":
        encodings = {h.get("content-encoding") for h in otlp_receiver.headers}
        assert encodings == ({"gzip"} if gzip else {None})


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_error_mode_fails_export_and_ok_recovers(otlp_receiver: OTLPReceiver, transport: str) -> None:
    # timeout < first backoff (~1 s): the exporter gives up after one attempt instead of retrying.
    span_exporter, _, _ = make_exporters(transport, otlp_receiver, gzip=False, timeout=0.5)
    try:
        otlp_receiver.mode = "error"
        assert span_exporter.export([make_span("rejected")]) == SpanExportResult.FAILURE
        assert otlp_receiver.spans() == []
        assert [r.accepted for r in otlp_receiver.requests] == [False]

        otlp_receiver.mode = "ok"
        assert span_exporter.export([make_span("accepted")]) == SpanExportResult.SUCCESS
        assert [s["name"] for s in otlp_receiver.spans()] == ["accepted"]
    finally:
        span_exporter.shutdown()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_slow_mode_times_out_exporter_and_stop_is_fast(transport: str) -> None:
    receiver = OTLPReceiver().start()
    span_exporter, _, _ = make_exporters(transport, receiver, gzip=False, timeout=0.3)
    try:
        receiver.mode, receiver.delay = "slow", 30
        started = time.monotonic()
        assert span_exporter.export([make_span()]) == SpanExportResult.FAILURE
        assert time.monotonic() - started < 5
    finally:
        span_exporter.shutdown()
        started = time.monotonic()
        receiver.stop()  # a handler is still sleeping in "slow" mode
        assert time.monotonic() - started < 2


def test_wait_for_timeout_is_readable(otlp_receiver: OTLPReceiver) -> None:
    with pytest.raises(AssertionError, match=r"(?s)no span named x.*IndexError.*spans \(0\)"):
        otlp_receiver.wait_for(lambda r: r.spans()[0]["name"] == "x", timeout=0.2, message="no span named x")


# ---------------------------------------------------------------------- Prometheus


class AuthRequiredHandler(BaseHTTPRequestHandler):
    """Serves one metric only with ``Basic user:pass`` or ``Bearer s3cret``; 401 otherwise."""

    ALLOWED = {"Basic " + base64.b64encode(b"user:pass").decode(), "Bearer s3cret"}

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") in self.ALLOWED:
            status, body = 200, b"selftest_auth_ok 1\n"
        else:
            status, body = 401, b"unauthorized\n"
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="selftest"')
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def scraped():
    """One Prometheus (first scrape takes ~5 s) scraping an OTel PrometheusMetricReader
    endpoint and an endpoint that needs credentials."""
    registry = prometheus_client.CollectorRegistry()
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[PrometheusMetricReader(registry=registry)])
    meter_provider.get_meter("selftest").create_counter("selftest_requests").add(5, {"model": "m1"})
    with_exemplar = prometheus_client.Counter("selftest_exemplar", "exemplar carrier", registry=registry)
    with_exemplar.inc(exemplar={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    metrics_server, _ = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    metrics_target = f"127.0.0.1:{metrics_server.server_port}"

    auth_server = ThreadingHTTPServer(("127.0.0.1", 0), AuthRequiredHandler)
    threading.Thread(target=auth_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    auth_target = f"127.0.0.1:{auth_server.server_address[1]}"

    prometheus = PrometheusServer(
        [
            ScrapeJob([metrics_target], job_name="otel"),
            ScrapeJob([auth_target], job_name="no-credentials"),
            ScrapeJob([auth_target], job_name="basic", basic_auth={"username": "user", "password": "pass"}),
            {"targets": [auth_target], "job_name": "bearer", "authorization": "s3cret"},
        ],
        extra_flags=["--enable-feature=exemplar-storage"],
    )
    try:
        yield prometheus.start()
    finally:
        prometheus.stop()
        metrics_server.shutdown()
        auth_server.shutdown()
        auth_server.server_close()
        meter_provider.shutdown()


def test_prometheus_scrapes_otel_prometheus_reader(scraped: PrometheusServer) -> None:
    [series] = scraped.wait_for_series('selftest_requests_total{job="otel"}')
    assert series["metric"]["model"] == "m1"
    assert float(series["value"][1]) == 5
    assert scraped.query_value('up{job="otel"}') == 1
    assert scraped.query_range('selftest_requests_total{job="otel"}', start=time.time() - 30)


def test_prometheus_exemplars_api(scraped: PrometheusServer) -> None:
    scraped.wait_for_series('selftest_exemplar_total{job="otel"}')
    [result] = scraped.exemplars('selftest_exemplar_total{job="otel"}')
    assert result["exemplars"][0]["labels"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_prometheus_reports_401_target_down_and_credentials_work(scraped: PrometheusServer) -> None:
    down = scraped.wait_for_target("no-credentials", health="down")
    assert "401" in down["lastError"], down
    scraped.wait_for_series('selftest_auth_ok{job="basic"}')
    scraped.wait_for_series('selftest_auth_ok{job="bearer"}')
    health = {t["labels"]["job"]: t["health"] for t in scraped.targets()}
    assert health == {"otel": "up", "no-credentials": "down", "basic": "up", "bearer": "up"}


def test_prometheus_factory_rules_and_query_errors(prometheus_factory) -> None:
    rules = {"groups": [{"name": "selftest", "rules": [{"record": "selftest:answer", "expr": "vector(42)"}]}]}
    prometheus = prometheus_factory(rule_files=[rules])
    [series] = prometheus.wait_for_series("selftest:answer", timeout=10)
    assert float(series["value"][1]) == 42
    assert prometheus.query("1 + 1")[0]["value"][1] == "2"
    with pytest.raises(PrometheusQueryError, match="parse error"):
        prometheus.query("sum(")
