"""What a ``logger.info`` costs with the otel-llm log handler attached, and what a burst into a
dead collector does.

Emit cost: µs per ``logger.info("request %d handled", i, extra=...)`` with

* ``null``  -- a ``logging.NullHandler`` only (the cost of ``logging`` itself: the baseline)
* ``sink``  -- our handler and batch processor, exporter discarding batches (the app thread's cost)
* ``sdk``   -- for reference: the SDK's own (deprecated) ``LoggingHandler`` + ``BatchLogRecordProcessor``,
  same discarding exporter
* ``otlp``  -- our handler, real OTLP/gRPC exporter to a receiver in another process (the worker's
  serialising and sending competes with the app for the GIL)

each outside and inside an active span (the handler then reads trace and span ids).

Burst: N emits (default 100k) in a tight loop into a queue of 2048 with the collector down
(OTLP/gRPC to a port nothing listens on): µs per emit, records dropped and still queued, and the
memory the burst added (tracemalloc peak, in its own process because tracing slows the loop;
max RSS growth in the timed run).

Every (mode, scenario) runs in a fresh process; rounds are interleaved; medians are printed.
Run from the repository root: ``python bench/logs.py [--rounds 5] [--calls 20000] [--burst 100000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMIT_MODES = ("null", "sink", "sdk", "otlp")
SCENARIOS = ("outside", "inside")
BURST_MODES = ("burst_null", "burst_time", "burst_memory")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pipeline(exporter: Any, **options: Any) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    from otel_llm.logs import LogPipeline

    return LogPipeline.create(
        [exporter], resource=Resource.create({"service.name": "bench"}), meter_provider=MeterProvider(),
        level=logging.INFO, **options,
    )


def _sink() -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class Sink(LogRecordExporter):
        def export(self, batch: Any) -> Any:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    return Sink()


def _grpc_exporter(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=endpoint, insecure=True)


def _bench_logger() -> logging.Logger:
    logger = logging.getLogger("bench.app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def emit_worker(mode: str, scenario: str, calls: int, warmup: int, endpoint: str | None) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider

    logger = _bench_logger()
    pipeline = None
    if mode == "null":
        logger.addHandler(logging.NullHandler())
    elif mode == "sdk":
        import warnings

        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(_sink()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            logger.addHandler(LoggingHandler(logging.INFO, provider))
    else:
        pipeline = _pipeline(_sink() if mode == "sink" else _grpc_exporter(endpoint or ""))
        pipeline.attach(logger)
    tracer = TracerProvider().get_tracer("bench")
    span = tracer.start_as_current_span("request") if scenario == "inside" else contextlib.nullcontext()
    with span:
        for i in range(warmup):
            logger.info("request %d handled", i, extra={"user.id": "u-1"})
        start = time.perf_counter_ns()
        for i in range(calls):
            logger.info("request %d handled", i, extra={"user.id": "u-1"})
        elapsed = time.perf_counter_ns() - start
    result: dict[str, Any] = {"us_per_emit": elapsed / calls / 1000}
    if pipeline is not None:
        pipeline.shutdown()
        result["dropped"] = sum(pipeline.dropped().values())
    return result


def burst_worker(mode: str, burst: int) -> dict[str, Any]:
    logger = _bench_logger()
    pipeline = None
    if mode == "burst_null":
        logger.addHandler(logging.NullHandler())
    else:
        dead = f"http://127.0.0.1:{_free_port()}"
        pipeline = _pipeline(_grpc_exporter(dead), max_queue_size=2048, shutdown_timeout_millis=200)
        pipeline.attach(logger)
    for i in range(100):  # warm the code paths before measuring
        logger.info("burst %d", i, extra={"user.id": "u-1"})
    result: dict[str, Any] = {}
    tracing = mode == "burst_memory"
    if tracing:
        import tracemalloc

        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter_ns()
    for i in range(burst):
        logger.info("burst %d", i, extra={"user.id": "u-1"})
    elapsed = time.perf_counter_ns() - start
    result["us_per_emit"] = elapsed / burst / 1000
    result["rss_growth_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    if tracing:
        result["traced_peak_kib"] = (tracemalloc.get_traced_memory()[1] - baseline) / 1024
        tracemalloc.stop()
    if pipeline is not None:
        processor = pipeline.processors[0]
        result["queued"] = processor.pending()
        result["dropped"] = processor.counts.get("queue_full")
        result["handed_to_exporter"] = processor.counts.get("submitted")
        pipeline.shutdown()
    return result


def _run(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _start_receiver() -> tuple[subprocess.Popen[str], str]:
    """An OTLP receiver in its own process (so its decoding doesn't compete with the app)."""
    code = (
        "import sys, time, threading; sys.path.insert(0, %r)\n"
        "from tests.support.otlp_receiver import OTLPReceiver\n"
        "r = OTLPReceiver(grpc=True, http=False).start(); print(r.grpc_endpoint, flush=True)\n"
        "threading.Thread(target=lambda: [time.sleep(0.5) or r.clear() for _ in iter(int, 1)], daemon=True).start()\n"
        "sys.stdin.read(); r.stop()\n" % ROOT
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoint = process.stdout.readline().strip() if process.stdout else ""
    return process, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--burst", type=int, default=100_000)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "emit":
            mode, scenario, endpoint = rest
            print(json.dumps(emit_worker(mode, scenario, args.calls, args.warmup, endpoint)))
        else:
            print(json.dumps(burst_worker(rest[0], args.burst)))
        return

    receiver, endpoint = _start_receiver()
    emits: dict[tuple[str, str], list[dict[str, Any]]] = {}
    bursts: dict[str, list[dict[str, Any]]] = {}
    try:
        for round_number in range(args.rounds):
            for mode in EMIT_MODES:
                for scenario in SCENARIOS:
                    emits.setdefault((mode, scenario), []).append(
                        _run(["--calls", str(args.calls), "--warmup", str(args.warmup), "--worker", "emit", mode, scenario, endpoint])
                    )
            for mode in BURST_MODES:
                bursts.setdefault(mode, []).append(_run(["--burst", str(args.burst), "--worker", "burst", mode]))
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        if receiver.stdin:
            receiver.stdin.close()
        receiver.wait(timeout=10)

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    print(f"\nemit cost: µs per logger.info, median of {args.rounds} rounds, {args.calls} calls each")
    print(f"{'mode':<8}{'outside span':>14}{'inside span':>14}{'vs null (out/in)':>20}")
    null = {s: median(emits[("null", s)], "us_per_emit") for s in SCENARIOS}
    for mode in EMIT_MODES:
        cost = {s: median(emits[(mode, s)], "us_per_emit") for s in SCENARIOS}
        extra = "" if mode == "null" else f"+{cost['outside'] - null['outside']:.2f} / +{cost['inside'] - null['inside']:.2f}"
        print(f"{mode:<8}{cost['outside']:>14.2f}{cost['inside']:>14.2f}{extra:>20}")
    lost = {mode: max(row.get("dropped", 0) for s in SCENARIOS for row in emits[(mode, s)]) for mode in ("sink", "otlp")}
    print(f"(records lost in the emit runs, worst round: sink {lost['sink']}, otlp {lost['otlp']})")

    print(f"\nburst: {args.burst} emits, queue 2048, collector down (OTLP/gRPC to a closed port), median of {args.rounds}")
    print(f"  NullHandler baseline      {median(bursts['burst_null'], 'us_per_emit'):8.2f} µs/emit")
    timed = bursts["burst_time"]
    print(f"  otel-llm handler          {median(timed, 'us_per_emit'):8.2f} µs/emit")
    print(f"  dropped (queue_full)      {median(timed, 'dropped'):8.0f}   queued {median(timed, 'queued'):.0f}, "
          f"handed to the exporter {median(timed, 'handed_to_exporter'):.0f}")
    print(f"  max RSS growth            {median(timed, 'rss_growth_kib') / 1024:8.1f} MiB")
    print(f"  tracemalloc peak growth   {median(bursts['burst_memory'], 'traced_peak_kib') / 1024:8.1f} MiB "
          f"(separate run; tracing slows it to {median(bursts['burst_memory'], 'us_per_emit'):.1f} µs/emit)")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
