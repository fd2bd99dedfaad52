"""The ``otel-llm`` command: ``demo`` runs the whole telemetry path on one machine; ``traffic`` sends LLM
calls through the instrumented SDK; ``check`` verifies a live pipeline end to end."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any


def _number(kind: type, low: float, high: float | None, rule: str, what: str = "a number") -> Any:
    """An argparse type: ``kind`` parsed from text, within [low, high] (``rule`` says so in words)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    return parse


_positive_float = _number(float, 1e-12, None, "must be > 0")
_port = _number(int, 0, 65535, "port must be 0..65535 (0 picks a free port)", "a port number")
_share = _number(float, 0.0, 1.0, "must be a share between 0 and 1")
_positive_int = _number(int, 1, None, "must be >= 1", "a whole number")
_seconds = _number(float, 0.0, None, "must be >= 0")


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
    demo.add_argument("--gateway-port", type=_port, default=None,
                      help="port of the demo gateway (FastAPI: /v1/chat, /observability/dashboard); default 9465, "
                           "or a free port when 9465 is busy")
    demo.add_argument("--gateway-rate", type=_positive_float, default=4.0,
                      help="requests per second sent through the demo gateway (default 4)")
    demo.add_argument("--no-gateway", action="store_true",
                      help="no gateway: only the direct openai traffic (no llm.gateway.* metrics)")
    _add_traffic_parser(commands)
    _add_check_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "traffic":
        return run_traffic_command(args)
    if args.command == "check":
        return run_check_command(args)
    return 2  # pragma: no cover - argparse enforces a command


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name (comma separated)")
    return names


def _error_kinds(text: str) -> tuple[str, ...]:
    from .demo.workload import PORTABLE_ERRORS

    kinds = _names(text)
    unknown = [kind for kind in kinds if kind not in PORTABLE_ERRORS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown error kind {', '.join(unknown)}; use {', '.join(PORTABLE_ERRORS)}")
    return kinds


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("a header is 'Name: value'")
    return name.strip(), value.strip()


def _add_traffic_parser(commands: Any) -> None:
    traffic = commands.add_parser(
        "traffic",
        help="send LLM traffic through the instrumented openai SDK to any OpenAI-compatible URL",
        description=(
            "Sends chat completions (some streamed, some failing on purpose) through the instrumented openai SDK to "
            "--base-url, or to an upstream simulator started in this process. Telemetry goes by OTLP to "
            "--otlp-endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT) and/or a /metrics endpoint on --metrics-port. "
            "Prints a summary; exits 1 when no call got through. The API key comes from the environment variable "
            "named by --api-key-env and is never printed."
        ),
    )
    traffic.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://vllm:8000/v1 (default: an "
                                            "upstream simulator in this process)")
    traffic.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                         help="environment variable holding the API key (default OPENAI_API_KEY)")
    traffic.add_argument("--rate", type=_positive_float, default=5.0, help="calls per second (default 5)")
    traffic.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    traffic.add_argument("--count", type=_positive_int, help="stop after this many calls (default 20 when no --duration)")
    traffic.add_argument("--concurrency", type=_positive_int, default=4, help="worker threads (default 4)")
    traffic.add_argument("--stream-share", type=_share, default=0.3, help="share of streamed calls (default 0.3)")
    traffic.add_argument("--error-share", type=_share, default=0.05,
                         help="share of calls that fail on purpose (default 0.05)")
    traffic.add_argument("--errors", type=_error_kinds, default=None, metavar="KINDS",
                         help="deliberate errors to pick from: bad-model (a model that does not exist), oversize (a "
                              "prompt over every context window, ~6 MB) (default: both)")
    traffic.add_argument("--models", type=_names, help="models to rotate, comma separated (default: the simulator's "
                                                       "gpt-4o-mini,gpt-4o,gpt-4.1-mini; gpt-4o-mini elsewhere)")
    traffic.add_argument("--seed", type=int, help="random seed: the same calls on every run")
    traffic.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds per request (default 30)")
    traffic.add_argument("--otlp-endpoint", help="OTLP endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT; none: no push)")
    traffic.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                         help="default OTEL_EXPORTER_OTLP_PROTOCOL or grpc")
    traffic.add_argument("--metrics-port", type=_port, help="also serve Prometheus /metrics on this port (0: a free one)")
    traffic.add_argument("--host", default="127.0.0.1", help="address the metrics endpoint binds (default 127.0.0.1)")
    traffic.add_argument("--service-name", help="service.name of the telemetry (default OTEL_SERVICE_NAME or "
                                                "otel-llm-traffic)")
    traffic.add_argument("--no-progress", action="store_true", help="no progress bar or lines on stderr")
    traffic.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def run_traffic_command(args: argparse.Namespace) -> int:
    from .demo.workload import PORTABLE_ERRORS
    from .traffic import TrafficOptions, run_traffic

    options = TrafficOptions(
        base_url=args.base_url, api_key_env=args.api_key_env, rate=args.rate, duration=args.duration,
        count=args.count, concurrency=args.concurrency, stream_share=args.stream_share, error_share=args.error_share,
        error_kinds=args.errors or PORTABLE_ERRORS, models=args.models, seed=args.seed, timeout=args.timeout,
        otlp_endpoint=args.otlp_endpoint, otlp_protocol=args.otlp_protocol, metrics_port=args.metrics_port,
        metrics_host=args.host, service_name=args.service_name, progress=False if args.no_progress else None,
        json=args.json,
    )
    return run_traffic(options)


def _add_check_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="verify a live pipeline end to end: /metrics, scrape, metric names, tokens, exemplars, Tempo or "
             "Jaeger, Loki",
        description=(
            "Verifies a live telemetry pipeline step by step and says what is wrong: the service's metrics endpoint, "
            "its scrape target, the LLM metric families and their naming scheme, token usage, exemplars, and a canary "
            "LLM call's trace in Tempo (TraceQL on gen_ai.* attributes) and/or Jaeger (search on gen_ai.* tags) and "
            "logs in Loki (by trace id). Each step "
            "prints pass/fail with the queries it ran. Exit status 0 when no step failed, 1 otherwise."
        ),
    )
    check.add_argument("--metrics-url", help="the service's metrics endpoint, e.g. http://checkout:9464/metrics")
    check.add_argument("--metrics-header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                       help="header for the metrics endpoint only (credentials the scraper uses); repeatable")
    check.add_argument("--prometheus-url", help="Prometheus, or Mimir's Prometheus API (http://mimir:9009/prometheus)")
    check.add_argument("--job", help="look only at series and targets of this job label")
    check.add_argument("--tempo-url", help="Tempo's HTTP API, e.g. http://tempo:3200")
    check.add_argument("--jaeger-url", help="Jaeger's query service (its UI address), e.g. http://jaeger:16686")
    check.add_argument("--loki-url", help="Loki's HTTP API, e.g. http://loki:3100")
    check.add_argument("--loki-selector", help="LogQL stream selector of the canary's logs "
                                               "(default {service_name=\"<service name>\"})")
    check.add_argument("--header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                       help="header for Prometheus, Tempo, Jaeger and Loki (X-Scope-OrgID, Authorization); repeatable; "
                            "values are never printed")
    check.add_argument("--no-canary", action="store_true", help="make no LLM call (Tempo, Jaeger and Loki steps then fail)")
    check.add_argument("--otlp-endpoint", help="collector for the canary's telemetry (default OTEL_EXPORTER_OTLP_ENDPOINT)")
    check.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                       help="default OTEL_EXPORTER_OTLP_PROTOCOL or grpc")
    check.add_argument("--base-url", help="where the canary call goes (default: an upstream simulator in this process)")
    check.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                       help="environment variable holding the canary's API key (default OPENAI_API_KEY)")
    check.add_argument("--model", default="gpt-4o-mini", help="the canary's model (default gpt-4o-mini)")
    check.add_argument("--service-name", default="otel-llm-check", help="service.name of the canary (default otel-llm-check)")
    check.add_argument("--wait", type=_seconds, default=30.0,
                       help="seconds to keep looking for the canary in Tempo, Jaeger and Loki (default 30)")
    check.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds per HTTP request (default 10)")
    check.add_argument("--require-exemplars", action="store_true", help="fail (not warn) when there are no exemplars")
    check.add_argument("--json", action="store_true", help="print the result as JSON")


def run_check_command(args: argparse.Namespace) -> int:
    from .check import CheckOptions, run_check

    options = CheckOptions(
        metrics_url=args.metrics_url, metrics_headers=dict(args.metrics_header), prometheus_url=args.prometheus_url,
        job=args.job, tempo_url=args.tempo_url, jaeger_url=args.jaeger_url, loki_url=args.loki_url, loki_selector=args.loki_selector,
        headers=dict(args.header), canary=not args.no_canary, otlp_endpoint=args.otlp_endpoint,
        otlp_protocol=args.otlp_protocol, base_url=args.base_url, api_key_env=args.api_key_env, model=args.model,
        service_name=args.service_name, wait=args.wait, timeout=args.timeout,
        require_exemplars=args.require_exemplars, json=args.json,
    )
    return run_check(options)[0]


def _demo_upstream(sim: Any) -> Any:
    """The simulator served by uvicorn with the server-side middleware around it, when the demo extra
    (uvicorn, starlette) is there; else the plain simulator (client side only)."""
    try:
        import uvicorn  # noqa: F401

        from .demo.upstream._asgi import ASGIUpstream
        from .server import LLMServerMiddleware
    except ImportError:
        return sim
    return ASGIUpstream(sim, wrap=LLMServerMiddleware)


def run_demo(args: argparse.Namespace) -> int:
    from .demo.summary import LiveSummary, ServedSummary
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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Both sides of every call: the simulator answers through LLMServerMiddleware (under uvicorn).
    upstream = _demo_upstream(UpstreamSimulator(port=args.upstream_port, latency=latency, error_rate=args.error_rate,
                                                seed=args.seed))
    try:
        upstream.start()
    except OSError as exc:
        telemetry.shutdown()
        print(f"error: cannot start the upstream simulator on port {args.upstream_port}: {exc.strerror}; "
              f"pick another --upstream-port (0 picks a free one)", file=sys.stderr)
        return 2

    summary = LiveSummary(window=10.0)
    recorder = telemetry.recorder
    recorder.add_listener(summary)
    served_recorder = getattr(getattr(upstream, "asgi", None), "recorder", None)  # the middleware's, when served
    served = ServedSummary(window=10.0) if served_recorder is not None else None
    if served is not None:
        served_recorder.add_listener(served)
    client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-demo-not-a-real-key", max_retries=0, timeout=30)
    loop = TrafficLoop(client, Workload(seed=args.seed), rate=args.rate, concurrency=args.concurrency)
    gateway = None
    if not args.no_gateway:
        try:
            from .demo.gateway import start_gateway

            gateway = start_gateway(telemetry, upstream, host=args.host, port=args.gateway_port,
                                    rate=args.gateway_rate, fast=args.fast, seed=args.seed)
        except (ImportError, OSError) as exc:
            telemetry.shutdown()
            upstream.stop()
            if isinstance(exc, ImportError):
                print(f"error: the demo gateway needs {exc.name or 'its extras'}: pip install 'otel-llm[demo]' "
                      f"(or run with --no-gateway)", file=sys.stderr)
            else:
                print(f"error: cannot start the demo gateway on port {args.gateway_port}: {exc.strerror or exc}; "
                      f"pick another --gateway-port (0 picks a free one) or run with --no-gateway", file=sys.stderr)
            return 2

    print("otel-llm demo", flush=True)
    served_note = " (ASGI, server-side telemetry)" if served is not None else ""
    print(f"  upstream (OpenAI-compatible simulator)  {upstream.base_url}{served_note}")
    print(f"  Prometheus metrics                      {telemetry.prometheus_url}")
    if otlp_endpoint:
        print(f"  OTLP push ({telemetry.otlp_protocol})                   {otlp_endpoint}")
    else:
        print("  OTLP push                               off (set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317)")
    print(f"  traffic                                 {args.rate:g} calls/s, {args.concurrency} workers")
    if gateway is not None:
        busy = f" ({gateway.port_note})" if gateway.port_note else ""
        print(f"  gateway (FastAPI: openai + anthropic)   {gateway.url}/v1/chat, {args.gateway_rate:g} req/s{busy}")
        print(f"  live dashboard                          {gateway.url}/observability/dashboard")
        print(f"  metrics by category, JSON, CSV, health  {gateway.url}/observability/")
        print(f"  gateway scenario                        {gateway.demo.scenario.describe()}")
    print("  stop with Ctrl-C" + (f" (or after {args.duration:g}s)" if args.duration else ""), flush=True)

    loop.start()
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            pause = args.interval if deadline is None else min(args.interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            print(summary.snapshot().line(), flush=True)
            if served is not None:
                print(served.line(), flush=True)
    except KeyboardInterrupt:
        print("stopping...", flush=True)
    finally:
        loop.stop()
        if gateway is not None:
            gateway.stop()
        final = summary.snapshot()
        recorder.remove_listener(summary)
        telemetry.shutdown()
        upstream.stop()
    print(f"done: {final.total_requests} calls, {final.total_errors} failed, "
          f"{final.total_tokens} tokens, ${final.total_cost_usd:.4f}", flush=True)
    if served is not None:
        print(f"served: {served.total_requests} requests ({served.total_streams} streamed), "
              f"{served.total_errors} failed, by the upstream simulator", flush=True)
    return 0 if final.total_requests > final.total_errors else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
