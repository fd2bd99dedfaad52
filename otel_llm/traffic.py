"""``otel-llm traffic``: LLM calls through the instrumented ``openai`` SDK, to see telemetry flow.

Sends chat completions (a share of them streamed, a share of them failing on purpose) to any
OpenAI-compatible base URL, or to the upstream simulator started in this process when none is
given, at a rate, for a duration or a number of calls. The calls are instrumented by otel-llm
and exported like any service's: OTLP to ``--otlp-endpoint`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
and/or a Prometheus ``/metrics`` endpoint on ``--metrics-port``.

A progress bar runs on stderr; the summary at the end says what was sent, what failed (on
purpose or not), latency percentiles, tokens, and what happened to the telemetry. The exit status
is 1 when no call got through. The API key is read from the environment variable named by
``--api-key-env`` and never printed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .demo.workload import DEFAULT_MODELS, PORTABLE_ERRORS, TrafficLoop, Workload

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_COUNT = 20
SIMULATOR_KEY = "sk-otel-llm-simulator"  # the in-process simulator wants some key, any key


@dataclass
class TrafficOptions:
    base_url: str | None = None  # None: start the upstream simulator in this process
    api_key_env: str = DEFAULT_API_KEY_ENV
    rate: float = 5.0
    duration: float | None = None
    count: int | None = None  # neither duration nor count: DEFAULT_COUNT calls
    concurrency: int = 4
    stream_share: float = 0.3
    error_share: float = 0.05
    error_kinds: Sequence[str] = PORTABLE_ERRORS
    models: Sequence[str] | None = None  # default: DEFAULT_MODELS on the simulator, gpt-4o-mini elsewhere
    seed: int | None = None
    timeout: float = 30.0
    otlp_endpoint: str | None = None  # default OTEL_EXPORTER_OTLP_ENDPOINT; neither: no OTLP push
    otlp_protocol: str | None = None
    metrics_port: int | None = None  # serve Prometheus /metrics on this port (0: a free one)
    metrics_host: str = "127.0.0.1"
    service_name: str | None = None  # default OTEL_SERVICE_NAME or "otel-llm-traffic"
    progress: bool | None = None  # None: a live bar on a terminal, a line every progress_interval otherwise
    progress_interval: float = 5.0
    json: bool = False
    simulator_options: dict[str, Any] = field(default_factory=dict)  # for tests: UpstreamSimulator kwargs


def display_url(url: str) -> str:
    """``url`` without user info or query (where credentials hide)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Progress:
    """A progress bar on a terminal; elsewhere a plain line every ``interval`` seconds."""

    def __init__(self, stream: TextIO, loop: TrafficLoop, totals: Any, count: int | None,
                 duration: float | None, interactive: bool, interval: float) -> None:
        self.stream, self.loop, self.totals = stream, loop, totals
        self.count, self.duration = count, duration
        self.interactive = interactive
        self.interval = 0.2 if interactive else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-llm-traffic-progress", daemon=True)
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self.interactive:
            self._write(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def text(self) -> str:
        elapsed = time.monotonic() - self._started
        sent, failed = self.totals.sent, self.totals.failed
        fractions = []
        if self.count:
            fractions.append(sent / self.count)
        if self.duration:
            fractions.append(elapsed / self.duration)
        done = min(1.0, max(fractions)) if fractions else 0.0
        width = 24
        bar = "#" * round(done * width) + "-" * (width - round(done * width))
        goal = f"/{self.count}" if self.count else ""
        clock = f"{elapsed:.1f}s" + (f"/{self.duration:g}s" if self.duration else "")
        rate = sent / elapsed if elapsed > 0 else 0.0
        return f"[{bar}] {sent}{goal} calls  {clock}  {rate:.1f}/s  failed {failed}"

    def _write(self, final: bool = False) -> None:
        try:
            if self.interactive:
                self.stream.write("\r" + self.text() + ("\n" if final else ""))
            else:
                self.stream.write(self.text() + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


def run_traffic(options: TrafficOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the traffic; returns the exit status (0: some calls got through, 1: none did, 2: bad setup)."""
    from .demo.summary import TrafficTotals
    from .sdk import ConfigError, configure

    out = out or sys.stdout
    err = err or sys.stderr
    info = err if options.json else out  # with --json, stdout carries only the JSON summary

    try:
        import openai
    except ImportError:
        print("error: otel-llm traffic needs the openai SDK: pip install 'otel-llm[openai]'", file=err)
        return 2

    count = options.count if options.count is not None or options.duration is not None else DEFAULT_COUNT
    simulator = None
    if options.base_url is None:
        from .demo.upstream import UpstreamSimulator

        simulator = UpstreamSimulator(**options.simulator_options)
        try:
            simulator.start()
        except OSError as exc:
            print(f"error: cannot start the upstream simulator: {exc.strerror}", file=err)
            return 2
        base_url = simulator.base_url
        api_key = os.environ.get(options.api_key_env) or SIMULATOR_KEY
        models = list(options.models or DEFAULT_MODELS)
        target = f"{base_url} (upstream simulator in this process)"
    else:
        base_url = options.base_url
        api_key = os.environ.get(options.api_key_env, "")
        if not api_key:
            print(f"error: no API key: set {options.api_key_env} (any value for servers without auth), "
                  f"or name another variable with --api-key-env", file=err)
            return 2
        models = list(options.models or ("gpt-4o-mini",))
        target = display_url(base_url)

    otlp_endpoint = options.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    metric_exporters = (["otlp"] if otlp_endpoint else []) + (["prometheus"] if options.metrics_port is not None else [])
    try:
        telemetry = configure(
            options.service_name or os.environ.get("OTEL_SERVICE_NAME") or "otel-llm-traffic",
            traces_exporter="otlp" if otlp_endpoint else "none",
            metrics_exporter=",".join(metric_exporters) or "none",
            logs_exporter="none",
            otlp_endpoint=options.otlp_endpoint,
            otlp_protocol=options.otlp_protocol,
            prometheus_host=options.metrics_host,
            prometheus_port=options.metrics_port,
            set_global=False,
        )
    except ConfigError as exc:
        if simulator is not None:
            simulator.stop()
        print(f"error: {exc}", file=err)
        return 2

    totals = TrafficTotals()
    if telemetry.recorder is not None:
        telemetry.recorder.add_listener(totals)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=options.timeout)
    try:
        workload = Workload(
            models=models, stream_share=options.stream_share, embeddings_share=0.0, responses_share=0.0,
            error_share=options.error_share, error_kinds=tuple(options.error_kinds), seed=options.seed,
            rotate_models=True,
        )
        loop = TrafficLoop(client, workload, rate=options.rate, concurrency=options.concurrency,
                           max_calls=count, on_result=totals.add)
    except ValueError as exc:
        telemetry.shutdown()
        if simulator is not None:
            simulator.stop()
        print(f"error: {exc}", file=err)
        return 2

    exporting = []
    if otlp_endpoint:
        exporting.append(f"OTLP {display_url(otlp_endpoint)} ({telemetry.otlp_protocol})")
    if telemetry.prometheus_url:
        exporting.append(f"Prometheus {telemetry.prometheus_url}")
    plan = [f"{count} calls" if count else None, f"for {options.duration:g}s" if options.duration else None]
    errors = f"{options.error_share:.0%} deliberate errors ({', '.join(options.error_kinds)})" if options.error_share else "no deliberate errors"
    print("otel-llm traffic", file=info)
    print(f"  target      {target}", file=info)
    print(f"  telemetry   {'; '.join(exporting) or 'not exported (set --otlp-endpoint or --metrics-port)'}", file=info)
    print(f"  plan        {' '.join(p for p in plan if p)} at {options.rate:g}/s, {options.concurrency} workers, "
          f"{options.stream_share:.0%} streamed, {errors}", file=info)
    print(f"  models      {', '.join(models)}", file=info, flush=True)

    interactive = options.progress if options.progress is not None else err.isatty()
    progress = _Progress(err, loop, totals, count, options.duration, interactive, options.progress_interval)
    started = time.monotonic()
    interrupted = False
    loop.start()
    if options.progress is not False:
        progress.start()
    try:
        deadline = started + options.duration if options.duration else None
        while not loop.done.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            loop.done.wait(0.1 if remaining is None else min(0.1, remaining))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        loop.stop(timeout=options.timeout + 5)
        elapsed = time.monotonic() - started
        if options.progress is not False:
            progress.stop()
        if telemetry.recorder is not None:
            telemetry.recorder.remove_listener(totals)
        telemetry.shutdown()  # flushes; bounded even when the collector is down
        if simulator is not None:
            simulator.stop()

    report = totals.report(elapsed, _telemetry_outcome(telemetry, otlp_endpoint))
    if options.json:
        print(json.dumps({**report.as_dict(), "interrupted": interrupted}, indent=2), file=out, flush=True)
    else:
        print("\n".join(["", *report.lines(), *_telemetry_lines(report.telemetry)]), file=out, flush=True)
    if report.succeeded == 0:
        print("error: no call got through" + (f" ({', '.join(f'{k} {v}' for k, v in report.errors.items())})"
                                              if report.errors else ""), file=err)
        return 1
    return 0


def _telemetry_outcome(telemetry: Any, otlp_endpoint: str | None) -> dict[str, object]:
    outcome: dict[str, object] = {}
    if otlp_endpoint:
        outcome["otlp_endpoint"] = display_url(otlp_endpoint)
        processors = telemetry.span_processors
        outcome["spans_exported"] = sum(p.counts.get("exported") for p in processors)
        outcome["spans_dropped"] = telemetry.spans_dropped()
    if telemetry.prometheus_url:
        outcome["prometheus_url"] = telemetry.prometheus_url
    return outcome


def _telemetry_lines(outcome: dict[str, object]) -> list[str]:
    if "otlp_endpoint" not in outcome:
        return []
    dropped = {k: v for k, v in outcome["spans_dropped"].items() if v}  # type: ignore[union-attr]
    line = f"spans     {outcome['spans_exported']} exported to {outcome['otlp_endpoint']}"
    if dropped:
        line += ", lost: " + ", ".join(f"{k} {v}" for k, v in dropped.items())
        if "export_failed" in dropped or "shutdown_timeout" in dropped:
            line += " (is the collector up and listening there?)"
    return [line]
