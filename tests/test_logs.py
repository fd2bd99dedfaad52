"""Python ``logging`` → OTLP log records, against the real OTLP receiver (gRPC and HTTP).

The guarantees, each proven structurally (events, exact counts), never by wall-clock thresholds:
emitting never waits on the network; a burst larger than the queue is bounded and its drops are
counted exactly; shutdown flushes, and returns when the collector is down or slow; errors inside
the pipeline never reach the caller; export resumes when the collector comes back; the
pipeline's own complaints never loop back into it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from otel_llm import logs as otel_logs
from otel_llm.logs import DROPPED_METRIC, LogPipeline
from otel_llm.sdk import ConfigError, configure
from tests.support.faults import Gate, free_port, wait_until

pytestmark = pytest.mark.slow
TRANSPORTS = ["grpc", "http"]


# ---------------------------------------------------------------------- helpers




def _exporter(transport: str, receiver: Any = None, *, port: int | None = None, timeout: float = 10) -> LogRecordExporter:
    """The real OTLP log exporter, aimed at the receiver or (``port``) at a dead port."""
    if transport == "grpc":
        endpoint = receiver.grpc_endpoint if port is None else f"http://127.0.0.1:{port}"
        return GrpcLogExporter(endpoint=endpoint, insecure=True, timeout=timeout)
    endpoint = receiver.http_url("logs") if port is None else f"http://127.0.0.1:{port}/v1/logs"
    return HttpLogExporter(endpoint=endpoint, timeout=timeout)


class Rig:
    """A LogPipeline with its own MeterProvider (in-memory reader) and a private logger."""

    def __init__(self, exporter: LogRecordExporter, **options: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        options.setdefault("shutdown_timeout_millis", 2_000)
        self.pipeline = LogPipeline.create(
            [exporter], resource=Resource.create({"service.name": "logs-test"}), meter_provider=self.meter_provider,
            level=logging.DEBUG, **options,
        )
        self.processor = self.pipeline.processors[0]
        self.counts = self.processor.counts
        self.logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex[:8]}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.pipeline.attach(self.logger)

    def dropped_metric(self) -> dict[str, int]:
        data = self.reader.get_metrics_data()
        return {
            point.attributes["error.type"]: point.value
            for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
            if metric.name == DROPPED_METRIC for point in metric.data.data_points
        }

    def accounted(self) -> int:
        """Records the processor has settled: exported, or lost for a counted reason."""
        return self.counts.get("exported") + self.counts.dropped()

    def close(self) -> None:
        self.pipeline.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(exporter: LogRecordExporter, **options: Any) -> Rig:
        rigs.append(Rig(exporter, **options))
        return rigs[-1]

    yield make
    for made in rigs:
        made.close()


def _bodies(receiver: Any) -> list[Any]:
    return [record["body"] for record in receiver.logs()]


# ---------------------------------------------------------------------- what arrives


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_records_carry_trace_context_resource_and_attributes(transport, otlp_receiver):
    endpoint = otlp_receiver.grpc_endpoint if transport == "grpc" else otlp_receiver.http_endpoint
    telemetry = configure(
        "checkout", resource_attributes={"deployment.environment.name": "test"}, traces_exporter="otlp",
        metrics_exporter="none", otlp_endpoint=endpoint, otlp_protocol="grpc" if transport == "grpc" else "http/protobuf",
        instrument=False, set_global=False,
    )
    assert telemetry.logs is not None  # logs follow traces to OTLP by default
    logger = logging.getLogger(f"app.{transport}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    telemetry.logs.attach(logger)
    try:
        with telemetry.tracer_provider.get_tracer("test").start_as_current_span("handle request") as span:
            logger.info("charged %s cents", 42, extra={"order.id": "o-17", "attempt": 2})
            context = span.get_span_context()
        logger.debug("below the handler level")  # default level: info
        try:
            raise KeyError("sku")
        except KeyError:
            logger.exception("lookup failed")
    finally:
        telemetry.shutdown()

    records = {record["body"]: record for record in otlp_receiver.logs()}
    assert set(records) == {"charged 42 cents", "lookup failed"}
    charged = records["charged 42 cents"]
    assert charged["trace_id"] == format(context.trace_id, "032x")
    assert charged["span_id"] == format(context.span_id, "016x")
    assert charged["severity_text"] == "INFO" and charged["severity_number"] == 9
    assert charged["scope"] == f"app.{transport}"
    assert charged["resource"]["service.name"] == "checkout"
    assert charged["resource"]["deployment.environment.name"] == "test"
    assert charged["attributes"]["order.id"] == "o-17" and charged["attributes"]["attempt"] == 2
    assert charged["attributes"]["code.function.name"] == "test_records_carry_trace_context_resource_and_attributes"
    failed = records["lookup failed"]
    assert failed["trace_id"] is None  # logged outside any span
    assert failed["severity_text"] == "ERROR"
    assert failed["attributes"]["exception.type"] == "KeyError"
    assert "raise KeyError" in failed["attributes"]["exception.stacktrace"]
    span_ids = {s["span_id"] for s in otlp_receiver.spans()}
    assert charged["span_id"] in span_ids
    assert {r.transport for r in otlp_receiver.requests if r.signal == "logs"} == {transport}


# ---------------------------------------------------------------------- 1. never waits on the network


@pytest.mark.parametrize("fault", ["down", "slow", "error"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_emit_never_waits_on_the_network(transport, fault, otlp_receiver, rig):
    if fault == "down":
        inner = _exporter(transport, port=free_port(), timeout=0.5)
    else:
        otlp_receiver.mode = fault
        otlp_receiver.delay = 5.0
        inner = _exporter(transport, otlp_receiver, timeout=0.5)
    gate = Gate(inner)
    r = rig(gate, schedule_delay_millis=20, max_export_batch_size=1, max_queue_size=16)

    r.logger.info("first")  # the worker picks it up and goes into the (held) export
    assert gate.entered.wait(10), "the worker never started exporting"
    assert r.processor.pending() == 0

    r.logger.info("second")  # must return while the worker is still inside export()
    assert not gate.returned.is_set(), "logger.info returned only after the export finished"
    assert r.processor.pending() == 1  # "second" sits in the queue
    assert r.counts.get("submitted") == 1

    gate.release.set()
    r.pipeline.shutdown()
    wait_until(lambda: r.accounted() == 2, what="both records exported or counted as lost")
    assert r.counts.get("exported") == 0
    assert r.counts.get(otel_logs.EXPORT_FAILED) + r.counts.get(otel_logs.SHUTDOWN_TIMEOUT) == 2
    if fault == "error":
        assert any(not q.accepted for q in otlp_receiver.requests if q.signal == "logs")


# ---------------------------------------------------------------------- 2. bounded burst, exact drops


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_burst_is_bounded_and_every_drop_is_counted(transport, otlp_receiver, rig):
    queue, batch, burst = 128, 32, 8_000
    gate = Gate(_exporter(transport, otlp_receiver))
    # A long schedule delay: only a full batch wakes the worker, so what it takes is exact.
    r = rig(gate, max_queue_size=queue, max_export_batch_size=batch, schedule_delay_millis=60_000)
    for i in range(batch):
        r.logger.info("warm-up %d", i)
    assert gate.entered.wait(10)  # the worker holds the first batch inside export()
    assert r.counts.get("submitted") == batch

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        longest = 0
        for i in range(burst):
            r.logger.info("burst %d", i)
            longest = max(longest, r.processor.pending())
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Bounded: the queue never held more than max_queue_size; the burst returned with the exporter held.
    assert longest == queue and not gate.returned.is_set()
    assert r.processor.pending() == queue
    # Exact: every record is in flight, queued, or counted as dropped.
    assert r.counts.get(otel_logs.QUEUE_FULL) == burst - queue
    assert batch + burst == r.counts.get("submitted") + r.processor.pending() + r.counts.get(otel_logs.QUEUE_FULL)
    # Memory: the peak is what the bounded queue holds, not what the burst would have cost.
    per_record = max(current - baseline, 1) / queue
    assert peak - baseline < burst * per_record / 10, (peak - baseline, per_record)

    gate.release.set()
    otlp_receiver.wait_for(lambda rec: len(rec.logs()) == batch + queue, message="warm-up + queued records")
    wait_until(lambda: r.counts.get("exported") == batch + queue)
    # The oldest records were the ones dropped: what arrived is the warm-up and the burst's tail.
    expected = [f"warm-up {i}" for i in range(batch)] + [f"burst {i}" for i in range(burst - queue, burst)]
    assert sorted(_bodies(otlp_receiver)) == sorted(expected)
    assert r.dropped_metric() == {
        "queue_full": burst - queue, "already_shutdown": 0, "export_failed": 0, "shutdown_timeout": 0,
        "handler_error": 0,
    }


# ---------------------------------------------------------------------- 3. shutdown: flush, bounded


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_shutdown_flushes_everything_queued(transport, otlp_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")  # nothing leaves before shutdown but full batches
    endpoint = otlp_receiver.grpc_endpoint if transport == "grpc" else otlp_receiver.http_endpoint
    telemetry = configure(
        "flusher", traces_exporter="none", metrics_exporter="none", logs_exporter="otlp", otlp_endpoint=endpoint,
        otlp_protocol="grpc" if transport == "grpc" else "http/protobuf", instrument=False, set_global=False,
    )
    logger = logging.getLogger(f"flush.{transport}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    telemetry.logs.attach(logger)
    for i in range(1500):  # less than the queue (2048): nothing may be dropped
        logger.info("record %d", i)
    telemetry.shutdown()

    assert sorted(_bodies(otlp_receiver)) == sorted(f"record {i}" for i in range(1500))
    assert sum(telemetry.logs.dropped().values()) == 0
    assert telemetry.logs.handler not in logger.handlers  # shutdown detached it
    logger.info("after shutdown")  # goes nowhere, raises nothing


@pytest.mark.parametrize("fault", ["down", "slow"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_shutdown_returns_when_the_collector_is_down_or_slow(transport, fault, otlp_receiver, monkeypatch):
    # The exporter alone would keep trying for 60 s per batch; shutdown is bounded by
    # log_shutdown_timeout_ms instead: the processor waits that long for its worker, then shuts
    # the exporter down (which aborts retries and, for gRPC, the call in flight) and returns.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60")
    if fault == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"
    else:
        otlp_receiver.mode, otlp_receiver.delay = "slow", 60.0
        endpoint = otlp_receiver.grpc_endpoint if transport == "grpc" else otlp_receiver.http_endpoint
    telemetry = configure(
        "stuck", traces_exporter="none", metrics_exporter="none", logs_exporter="otlp", otlp_endpoint=endpoint,
        otlp_protocol="grpc" if transport == "grpc" else "http/protobuf", log_shutdown_timeout_ms=300,
        instrument=False, set_global=False,
    )
    logger = logging.getLogger(f"stuck.{transport}.{fault}")
    logger.propagate = False
    telemetry.logs.attach(logger)
    for i in range(1500):
        logger.warning("record %d", i)

    done = threading.Event()
    threading.Thread(target=lambda: (telemetry.shutdown(), done.set()), daemon=True).start()
    # Liveness, with a wide margin both ways: the bound is 0.3 s, the exporter would take 60 s.
    assert done.wait(20), "shutdown did not return"

    otlp_receiver.stop()  # let a slow receiver answer the request still in flight, if any
    processor = telemetry.logs.processors[0]
    wait_until(lambda: processor.counts.get("exported") + processor.counts.dropped() == 1500,
                what="every record exported or counted as lost")
    if fault == "down":
        assert processor.counts.get("exported") == 0
    assert processor.counts.get(otel_logs.SHUTDOWN_TIMEOUT) > 0  # the bound cut the flush short


# ---------------------------------------------------------------------- 4. errors stay inside


class _Weird:
    def __str__(self) -> str:
        raise RuntimeError("no string for you")

    __repr__ = __str__


class _RaisingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("filter broke")


class _RaisingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter broke")


class _BrokenOnce(LogRecordExporter):
    """Raises on its first export, then delegates to a real exporter."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.calls = 0

    def export(self, batch: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionResetError("exporter broke")
        return self.inner.export(batch)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_inside_the_pipeline_never_reach_the_caller(transport, otlp_receiver, rig, caplog):
    r = rig(_BrokenOnce(_exporter(transport, otlp_receiver)), schedule_delay_millis=20)
    log = r.logger

    log.info("lost to a broken exporter")
    wait_until(lambda: r.counts.get(otel_logs.EXPORT_FAILED) == 1, what="the broken export counted")

    handler = r.pipeline.handler
    handler.addFilter(bad_filter := _RaisingFilter())
    assert log.info("filtered") is None
    handler.removeFilter(bad_filter)
    handler.setFormatter(_RaisingFormatter())
    log.info("formatted")
    handler.setFormatter(None)
    log.info("%d apples", "three")  # bad format arguments
    log.info("weird attribute", extra={"thing": _Weird()})
    log.info("odd attributes", extra={"huge": 2**70, "obj": object(), "nested": {"k": [1, "x"]}})
    log.info("still fine")

    otlp_receiver.wait_for(lambda rec: "still fine" in _bodies(rec), message="the record after the failures")
    records = {record["body"]: record for record in otlp_receiver.logs()}
    assert set(records) == {"odd attributes", "still fine"}
    odd = records["odd attributes"]["attributes"]
    assert "huge" not in odd  # out of int64 range: the encoder drops the key, not the batch
    assert odd["nested"] == {"k": [1, "x"]}
    assert handler.counts.get(otel_logs.HANDLER_ERROR) == 4  # filter, formatter, arguments, attribute
    assert r.pipeline.dropped()[otel_logs.HANDLER_ERROR] == 4
    assert r.counts.get("exported") == 2
    # Each failure kind is reported once, to the other handlers (here pytest's).
    reports = [rec for rec in caplog.records if rec.name == "otel_llm.logs"]
    assert sorted(rec.exc_info[0].__name__ for rec in reports) == ["RuntimeError", "TypeError"]


# ---------------------------------------------------------------------- 5. export resumes


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_export_resumes_when_the_collector_comes_back(transport, otlp_receiver, rig):
    otlp_receiver.mode = "error"
    r = rig(_exporter(transport, otlp_receiver, timeout=10), schedule_delay_millis=20)

    r.logger.error("during the outage")
    otlp_receiver.wait_for(
        lambda rec: any(not q.accepted for q in rec.requests if q.signal == "logs"), message="a refused export"
    )
    assert _bodies(otlp_receiver) == []
    otlp_receiver.mode = "ok"  # the collector is back: the exporter's retry delivers the held batch
    otlp_receiver.wait_for(lambda rec: _bodies(rec) == ["during the outage"], message="the retried record")

    r.logger.info("after the outage")
    otlp_receiver.wait_for(lambda rec: "after the outage" in _bodies(rec), message="a new record")
    wait_until(lambda: r.counts.get("exported") == 2)
    assert r.counts.dropped() == 0


def test_export_resumes_after_batches_were_given_up(otlp_receiver, rig):
    otlp_receiver.mode = "error"
    r = rig(_exporter("grpc", otlp_receiver, timeout=0.5), schedule_delay_millis=20)
    r.logger.error("given up")
    wait_until(lambda: r.counts.get(otel_logs.EXPORT_FAILED) == 1, what="the batch given up and counted")
    otlp_receiver.mode = "ok"
    r.logger.info("delivered")
    otlp_receiver.wait_for(lambda rec: _bodies(rec) == ["delivered"], message="the record after recovery")
    assert r.pipeline.dropped()[otel_logs.EXPORT_FAILED] == 1


# ---------------------------------------------------------------------- no feedback loop


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _forget_repeated_sdk_warnings() -> None:
    """The SDK's DuplicateFilter hides a warning repeated within 20 s (say, by an earlier test);
    make this test's warnings visible again."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("opentelemetry") and isinstance(logger, logging.Logger):
            for log_filter in logger.filters:
                vars(log_filter).pop("last_log", None)


def test_pipeline_failures_do_not_feed_back_on_the_root_logger(rig):
    """Handler on the root logger, collector down, queue overflowing: the SDK complains (queue
    full, export failed) through ``logging``, and none of that enters the pipeline."""
    _forget_repeated_sdk_warnings()
    r = rig(_exporter("grpc", port=free_port(), timeout=0.5), max_queue_size=8, max_export_batch_size=4,
            schedule_delay_millis=20)
    r.logger.removeHandler(r.pipeline.handler)
    r.pipeline.attach()  # the root logger
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    app = logging.getLogger("feedback.app")  # propagates to the root logger
    app.setLevel(logging.INFO)
    try:
        for i in range(20):
            app.info("app record %d", i)
        wait_until(lambda: any("Failed to export" in rec.getMessage() for rec in capture.records),
                    what="the exporter's failure log")
        counts = r.counts
        # Settled: nothing queued, everything handed to the exporter has failed.
        wait_until(lambda: r.processor.pending() == 0 and counts.get(otel_logs.EXPORT_FAILED) == counts.get("submitted"),
                    what="the pipeline settled")
    finally:
        root.removeHandler(capture)
        r.pipeline.shutdown()
    complaints = [rec for rec in capture.records if rec.name.startswith("opentelemetry")]
    assert any("Queue full" in rec.getMessage() for rec in complaints)
    assert any("Failed to export" in rec.getMessage() for rec in complaints)
    # Exactly the 20 application records entered the pipeline: handed over, or dropped on a full queue.
    assert counts.get("submitted") + counts.get(otel_logs.QUEUE_FULL) == 20
    assert r.pipeline.handler not in root.handlers


# ---------------------------------------------------------------------- configuration


def test_log_settings_from_arguments_and_environment(monkeypatch, otlp_receiver):
    common = {"metrics_exporter": "none", "instrument": False, "set_global": False}
    off = configure(traces_exporter="none", **common)
    assert off.logs is None  # logs follow traces: no OTLP traces, no logs
    off.shutdown()

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.grpc_endpoint)
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console")
    monkeypatch.setenv("OTEL_PYTHON_LOG_HANDLER_LEVEL", "warning")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "1000")
    telemetry = configure(traces_exporter="otlp", **common)
    try:
        assert telemetry.logs.handler.level == logging.WARNING
        processor = telemetry.logs.processors[0]
        assert type(processor.exporter).__name__ == "ConsoleLogRecordExporter"
        assert processor.max_queue_size == 1000
    finally:
        telemetry.shutdown()

    arguments = configure(traces_exporter="none", logs_exporter="otlp,console", log_level="DEBUG", **common)
    try:
        assert arguments.logs.handler.level == logging.DEBUG
        assert [type(p.exporter).__name__ for p in arguments.logs.processors] == ["OTLPLogExporter", "ConsoleLogRecordExporter"]
    finally:
        arguments.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"logs_exporter": "prometheus"}, {}, "prometheus cannot carry logs"),
        ({"logs_exporter": "loki"}, {}, "unknown exporter loki"),
        ({"log_level": "loud"}, {}, "set OTEL_PYTHON_LOG_HANDLER_LEVEL"),
        ({}, {"OTEL_PYTHON_LOG_HANDLER_LEVEL": "verbose"}, "'verbose' is not a logging level"),
        ({}, {"OTEL_BLRP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BLRP_MAX_QUEUE_SIZE='lots' is not a positive whole number"),
        ({}, {"OTEL_BLRP_MAX_QUEUE_SIZE": "100"}, "make the batch size at most the queue size"),
    ],
)
def test_bad_log_config_says_what_to_fix(kwargs, env, message, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        configure(traces_exporter="otlp", metrics_exporter="none", instrument=False, set_global=False, **kwargs)


APP = textwrap.dedent(
    """
    import logging
    import otel_llm.sdk

    telemetry = otel_llm.sdk.configure("global-app", instrument=False)   # everything from the environment
    root = logging.getLogger()
    assert telemetry.logs.handler in root.handlers
    logging.getLogger("app").warning("hello from %s", "the root logger")
    telemetry.shutdown()
    assert telemetry.logs.handler not in root.handlers
    print("OK")
    """
)


def test_configure_installs_globally_and_reports_drops_over_otlp(tmp_path, otlp_receiver):
    """The default path in a fresh process: root logger, global LoggerProvider, env settings,
    and the drop counter exported by the MeterProvider configure() built."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
    }
    for name in ("OTEL_LOGS_EXPORTER", "OTEL_PYTHON_LOG_HANDLER_LEVEL", "OTEL_SERVICE_NAME"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    (record,) = otlp_receiver.logs()
    assert record["body"] == "hello from the root logger" and record["scope"] == "app"
    assert record["resource"]["service.name"] == "global-app"
    points = [p for p in otlp_receiver.metrics() if p["name"] == DROPPED_METRIC]
    assert {p["attributes"]["error.type"] for p in points} == set(otel_logs.DROP_REASONS)
    assert all(p["value"] == 0 and p["unit"] == "{log_record}" and p["is_monotonic"] for p in points)
