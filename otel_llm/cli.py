"""The ``otel-llm`` command: ``demo`` runs the whole telemetry path on one machine."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535 (0 picks a free port), got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-llm", description="OpenTelemetry telemetry for LLM calls.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="run an OpenAI-compatible upstream, an instrumented service and steady traffic on this machine",
        description=(
            "Starts an OpenAI-compatible upstream simulator, instruments the openai SDK, sends steady traffic "
            "through it and serves Prometheus metrics. Pushes OTLP too when OTEL_EXPORTER_OTLP_ENDPOINT "
            "(or --otlp-endpoint) is set. Runs until Ctrl-C or --duration."
        ),
    )
    demo.add_argument("--duration", type=_positive_float, help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--rate", type=_positive_float, default=5.0, help="calls per second (default 5)")
    demo.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--host", default="127.0.0.1", help="address the metrics endpoint binds (default 127.0.0.1; 0.0.0.0 in containers)")
    demo.add_argument("--metrics-port", type=_port, default=None,
                      help="Prometheus /metrics port (default OTEL_EXPORTER_PROMETHEUS_PORT or 9464)")
    demo.add_argument("--upstream-port", type=_port, default=0, help="port of the upstream simulator (default: a free port)")
    demo.add_argument("--otlp-endpoint", default=None, help="OTLP endpoint, e.g. http://localhost:4317 (default OTEL_EXPORTER_OTLP_ENDPOINT)")
    demo.add_argument("--error-rate", type=_share, default=0.03, help="share of upstream answers that fail at random (default 0.03)")
    demo.add_argument("--fast", action="store_true", help="no simulated latency (for tests)")
    demo.add_argument("--interval", type=_positive_float, default=2.0, help="seconds between summary lines (default 2)")
    demo.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    return 2  # pragma: no cover - argparse enforces a command


def run_demo(args: argparse.Namespace) -> int:
    from .demo.summary import LiveSummary
    from .demo.upstream import LatencyProfile, UpstreamSimulator
    from .demo.workload import TrafficLoop, Workload
    from .sdk import ConfigError, configure

    try:
        import openai
    except ImportError:
        print("error: the demo needs the openai SDK: pip install 'otel-llm[demo]'", file=sys.stderr)
        return 2

    otlp_endpoint = args.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    exporters = "otlp" if otlp_endpoint else "none"
    latency = LatencyProfile() if args.fast else LatencyProfile.realistic()
    upstream = UpstreamSimulator(port=args.upstream_port, latency=latency, error_rate=args.error_rate, seed=args.seed)
    try:
        upstream.start()
    except OSError as exc:
        print(f"error: cannot start the upstream simulator on port {args.upstream_port}: {exc.strerror}; "
              f"pick another --upstream-port (0 picks a free one)", file=sys.stderr)
        return 2
    try:
        telemetry = configure(
            os.environ.get("OTEL_SERVICE_NAME") or "otel-llm-demo",
            traces_exporter=exporters,
            metrics_exporter=f"prometheus,{exporters}",
            otlp_endpoint=args.otlp_endpoint,
            prometheus_host=args.host,
            prometheus_port=args.metrics_port,
        )
    except ConfigError as exc:
        upstream.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2

    summary = LiveSummary(window=10.0)
    recorder = telemetry.recorder
    recorder.add_listener(summary)
    client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-demo-not-a-real-key", max_retries=0, timeout=30)
    loop = TrafficLoop(client, Workload(seed=args.seed), rate=args.rate, concurrency=args.concurrency)

    print("otel-llm demo", flush=True)
    print(f"  upstream (OpenAI-compatible simulator)  {upstream.base_url}")
    print(f"  Prometheus metrics                      {telemetry.prometheus_url}")
    if otlp_endpoint:
        print(f"  OTLP push ({telemetry.otlp_protocol})                   {otlp_endpoint}")
    else:
        print("  OTLP push                               off (set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317)")
    print(f"  traffic                                 {args.rate:g} calls/s, {args.concurrency} workers")
    print("  stop with Ctrl-C" + (f" (or after {args.duration:g}s)" if args.duration else ""), flush=True)

    loop.start()
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            pause = args.interval if deadline is None else min(args.interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            print(summary.snapshot().line(), flush=True)
    except KeyboardInterrupt:
        print("stopping...", flush=True)
    finally:
        loop.stop()
        final = summary.snapshot()
        recorder.remove_listener(summary)
        telemetry.shutdown()
        upstream.stop()
    print(f"done: {final.total_requests} calls, {final.total_errors} failed, "
          f"{final.total_tokens} tokens, ${final.total_cost_usd:.4f}", flush=True)
    return 0 if final.total_requests > final.total_errors else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
