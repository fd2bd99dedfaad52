"""Added CPU of ``LLMServerMiddleware`` per served request and per streamed chunk, against the bare
app and against the OpenTelemetry ASGI middleware alone (``opentelemetry-instrumentation-asgi``).

The app is a bare ASGI app that reads the request body and sends canned OpenAI-style answers: a
chat completion (``json``), or a stream of 1 or 50 chunks plus a usage chunk (``stream_1``,
``stream_50``). Requests are driven in-process (an ASGI call with scripted ``receive``/``send``, no
sockets, no server), so the numbers are the middleware stacks' own CPU. Spans go to an in-memory
exporter through a SimpleSpanProcessor, metrics to an InMemoryMetricReader: the OTel SDK's cost is
part of what is measured, as in ``bench/overhead.py``.

Modes: ``bare``; ``otel_asgi`` (OpenTelemetryMiddleware alone, its defaults); ``otel_llm``
(LLMServerMiddleware alone, its own SERVER span); ``otel_asgi+otel_llm`` (ours inside theirs,
annotating their span: the usual deployment). Every (mode, scenario) runs in a fresh process;
rounds are interleaved and the median is reported. ``--instructions`` counts instructions under
valgrind instead (deterministic): (count with 2n requests - count with n) / n.

Run: ``python bench/server.py [--rounds 5] [--requests 2000]`` or ``python bench/server.py --instructions``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

MODES = ("bare", "otel_asgi", "otel_llm", "otel_asgi+otel_llm")
# Instruction counts also run ours on the OpenTelemetry API's no-op providers: its own code without the SDK.
INSTRUCTION_MODES = MODES + ("otel_llm-nosdk",)
SCENARIOS = ("json", "stream_1", "stream_50")
CHUNKS = {"stream_1": 1, "stream_50": 50}
MODEL = "gpt-4o-mini"


def _request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello in five words, please, and nothing else at all."},
    ], "temperature": 0.2, "max_tokens": 64}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def _response_messages(scenario: str) -> list[dict[str, Any]]:
    served = MODEL + "-2024-07-18"
    usage = {"prompt_tokens": 31, "completion_tokens": CHUNKS.get(scenario, 5), "total_tokens": 36}
    if scenario == "json":
        body = json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how are you?"},
                         "finish_reason": "stop"}],
            "usage": usage,
        }).encode()
        return [
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body},
        ]
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": served}
    chunks = CHUNKS[scenario]
    messages: list[dict[str, Any]] = [{"type": "http.response.start", "status": 200,
                                       "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]}]
    for index in range(chunks):
        delta = {"role": "assistant", "content": "word "} if index == 0 else {"content": "word "}
        event = {**base, "choices": [{"index": 0, "delta": delta,
                                      "finish_reason": "stop" if index == chunks - 1 else None}]}
        messages.append({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                         "more_body": True})
    messages.append({"type": "http.response.body",
                     "body": f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode(),
                     "more_body": True})
    messages.append({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
    messages.append({"type": "http.response.body", "body": b"", "more_body": False})
    return messages


def _app(messages: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        for message in messages:
            await send(message)

    return app


def _stack(mode: str, app: Any) -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider: Any = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if mode.endswith("-nosdk"):
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        tracer_provider, meter_provider = NoOpTracerProvider(), NoOpMeterProvider()  # type: ignore[assignment]
    if "otel_llm" in mode:
        from otel_llm.pricing import PriceTable
        from otel_llm.server import LLMServerMiddleware

        app = LLMServerMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider,
                                  prices=PriceTable())
    if "otel_asgi" in mode:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app = OpenTelemetryMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return app, exporter


def worker(mode: str, scenario: str, requests: int, warmup: int) -> dict[str, float]:
    messages = _response_messages(scenario)
    app, exporter = _stack(mode, _app(messages))
    body = _request_body(scenario != "json")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), (b"user-agent", b"bench")]}
    request_message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return request_message

    async def send(message: dict[str, Any]) -> None:
        return None

    async def run(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)
            if len(exporter._finished_spans) > 1000:
                exporter.clear()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run(warmup))
    cpu, wall = time.process_time(), time.perf_counter()
    loop.run_until_complete(run(requests))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    loop.close()
    return {"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6}


def _instructions(mode: str, scenario: str, requests: int, warmup: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--worker", mode, scenario, "--requests", str(requests), "--warmup", str(warmup)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if not match:
        raise RuntimeError(f"no instruction count in valgrind output:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def _report(per: dict[tuple[str, str], float], modes: list[str], unit: str, scale: float) -> None:
    """Added cost over bare per request (json, stream_1) and per chunk, and ours against otel_asgi."""

    def added(mode: str, scenario: str) -> float:
        return (per[(mode, scenario)] - per[("bare", scenario)]) / scale

    def chunk(mode: str) -> float:
        return (added(mode, "stream_50") - added(mode, "stream_1")) / 49

    print(f"\nadded {unit} over the bare app: per request (json, stream_1), per streamed chunk "
          "((stream_50 - stream_1) / 49)")
    for mode in modes:
        if mode == "bare":
            continue
        print(f"  {mode:<20} json {added(mode, 'json'):8.1f}   stream_1 {added(mode, 'stream_1'):8.1f}"
              f"   chunk {chunk(mode):7.2f}")
    if {"otel_asgi", "otel_llm", "otel_asgi+otel_llm"} <= set(modes):
        print(f"\notel_llm's own share, against the OpenTelemetry ASGI middleware alone ({unit}):")
        for label, value in (
            ("json", added("otel_asgi+otel_llm", "json") - added("otel_asgi", "json")),
            ("stream_1", added("otel_asgi+otel_llm", "stream_1") - added("otel_asgi", "stream_1")),
            ("chunk", chunk("otel_asgi+otel_llm") - chunk("otel_asgi")),
        ):
            print(f"  added by otel_llm inside otel_asgi, {label:<9}{value:8.2f}")
        print("\nratio otel_llm alone / otel_asgi alone (added over bare):")
        for label, ours, theirs in (
            ("json", added("otel_llm", "json"), added("otel_asgi", "json")),
            ("stream_1", added("otel_llm", "stream_1"), added("otel_asgi", "stream_1")),
            ("chunk", chunk("otel_llm"), chunk("otel_asgi")),
        ):
            print(f"  {label:<9}{ours / theirs if theirs > 0 else float('nan'):6.2f}")
    if "otel_llm-nosdk" in modes:
        print(f"\notel_llm's own code (no-op SDK providers), {unit}: json {added('otel_llm-nosdk', 'json'):.1f}, "
              f"stream_1 {added('otel_llm-nosdk', 'stream_1'):.1f}, chunk {chunk('otel_llm-nosdk'):.2f}")


def count_instructions(modes: list[str], requests: int, warmup: int) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    per: dict[tuple[str, str], float] = {}
    for scenario in SCENARIOS:
        n = max(requests // CHUNKS.get(scenario, 1), 20)
        for mode in modes:
            low = _instructions(mode, scenario, n, warmup)
            high = _instructions(mode, scenario, 2 * n, warmup)
            per[(mode, scenario)] = (high - low) / n
            print(f"{scenario:<12}{mode:<22}{per[(mode, scenario)] / 1000:10.1f} k instructions/request", flush=True)
    _report(per, modes, "k instructions", 1000)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind (deterministic, ~50x slower) instead of timing")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.requests, args.warmup)))
        return 0
    modes = args.modes.split(",")
    if args.instructions and args.modes == ",".join(MODES):
        modes = list(INSTRUCTION_MODES)
    if "bare" not in modes:
        modes.insert(0, "bare")
    if args.instructions:
        return count_instructions(modes, args.requests, args.warmup)

    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    jobs = [(mode, scenario) for mode in modes for scenario in SCENARIOS]
    for round_index in range(args.rounds):
        random.shuffle(jobs)
        for mode, scenario in jobs:
            n = max(args.requests // CHUNKS.get(scenario, 1) * (5 if scenario == "stream_50" else 1), 50)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", mode, scenario, "--requests", str(n),
                 "--warmup", str(args.warmup)],
                capture_output=True, text=True, check=True,
            )
            results.setdefault((mode, scenario), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    medians = {key: statistics.median(r["cpu_us"] for r in runs) for key, runs in results.items()}
    print(f"\nCPU per served request, median of {args.rounds} interleaved rounds (each run a fresh process)\n")
    print(f"{'scenario':<12}{'mode':<22}{'cpu us/request':>16}{'wall us/request':>17}")
    for scenario in SCENARIOS:
        for mode in modes:
            wall = statistics.median(r["wall_us"] for r in results[(mode, scenario)])
            print(f"{scenario:<12}{mode:<22}{medians[(mode, scenario)]:>16.1f}{wall:>17.1f}")
    _report(medians, modes, "CPU us", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
