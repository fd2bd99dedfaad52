"""Per-call cost of the instrumentation, against an uninstrumented baseline and the official
OpenTelemetry OpenAI instrumentation (``opentelemetry-instrumentation-genai-openai``).

The real ``openai`` SDK talks to a mock transport of the HTTP client it is built on (``httpx2`` for
openai 3.x, ``httpx`` for 2.x) that returns canned bodies, so the numbers are the SDK plus the
instrumentation, no network. Spans go to an in-memory exporter through a SimpleSpanProcessor,
metrics to an InMemoryMetricReader (the OTel SDK's own cost is part of what is measured).

Every (mode, scenario) runs in a fresh process; rounds are interleaved and the median is reported,
because these machines are noisy. Run: ``python bench/overhead.py [--rounds 5] [--calls 2000]``
(needs ``pip install -e '.[bench]'``).
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

MODES = ("baseline", "otel_llm", "official")
# Instruction counts also run each instrumentation on no-op providers (its own code without the
# SDK), and "floor": the least any GenAI instrumentation pays the OTel SDK for a non-streamed call.
INSTRUCTION_MODES = MODES + ("otel_llm-nosdk", "official-nosdk", "floor")
SCENARIOS = ("sync", "async", "stream_1", "stream_1_usage", "stream_50")
CHUNKS = {"stream_1": 1, "stream_1_usage": 1, "stream_50": 50}
MODEL = "gpt-4o-mini"


def _bodies(chunks: int) -> tuple[bytes, bytes]:
    completion = {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }
    events = []
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    for index in range(chunks):
        delta = {"role": "assistant", "content": "word "} if index == 0 else {"content": "word "}
        finish = "stop" if index == chunks - 1 else None
        events.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    usage_chunk = {**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}}
    stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    stream_with_usage = stream + f"data: {json.dumps(usage_chunk)}\n\n"
    return json.dumps(completion).encode(), (stream + "data: [DONE]\n\n").encode(), (stream_with_usage + "data: [DONE]\n\n").encode()


def _http_module():
    import openai._base_client as base_client

    return sys.modules["httpx2"] if "httpx2" in vars(base_client) else sys.modules["httpx"]


def _setup(mode: str):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider: Any = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider: Any = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if mode.endswith("-nosdk"):  # the instrumentation's own code alone: the OTel API's no-op providers
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        tracer_provider, meter_provider = NoOpTracerProvider(), NoOpMeterProvider()
        mode = mode.removesuffix("-nosdk")
    if mode == "otel_llm":
        from otel_llm.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif mode == "official":
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor as OfficialInstrumentor

        OfficialInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif mode == "floor":
        _install_floor(tracer_provider, meter_provider)
    elif mode != "baseline":
        raise SystemExit(f"unknown mode {mode!r}: use one of {', '.join(INSTRUCTION_MODES)}")
    return exporter


def _install_floor(tracer_provider: Any, meter_provider: Any) -> None:
    """One CLIENT span with the conventions' attributes and the three records every call needs
    (duration, input and output tokens, in the span's context for exemplars), around the same
    request method otel-llm wraps, with nothing read from the request or the answer."""
    import wrapt
    from opentelemetry import trace
    from opentelemetry.metrics import get_meter

    from otel_llm import semconv as sc

    tracer = trace.get_tracer("floor", tracer_provider=tracer_provider)
    meter = get_meter("floor", meter_provider=meter_provider)
    duration = meter.create_histogram(sc.METRIC_OPERATION_DURATION[0], unit="s",
                                      explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)
    tokens = meter.create_histogram(sc.METRIC_TOKEN_USAGE[0], unit="{token}",
                                    explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS)
    metric = {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: MODEL,
              sc.SERVER_ADDRESS: "bench.local", sc.SERVER_PORT: 80}
    inputs, outputs = {**metric, sc.TOKEN_TYPE: "input"}, {**metric, sc.TOKEN_TYPE: "output"}
    answer = {sc.RESPONSE_MODEL: "gpt-4o-mini-2024-07-18", sc.RESPONSE_ID: "chatcmpl-bench",
              sc.RESPONSE_FINISH_REASONS: ("stop",), sc.USAGE_INPUT_TOKENS: 12, sc.USAGE_OUTPUT_TOKENS: 2}

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        start = time.perf_counter()
        span = tracer.start_span("chat " + MODEL, kind=trace.SpanKind.CLIENT, attributes=metric)
        context = trace.set_span_in_context(span)
        result = wrapped(*args, **kwargs)
        span.set_attributes(answer)
        duration.record(time.perf_counter() - start, metric, context)
        tokens.record(12, inputs, context)
        tokens.record(2, outputs, context)
        span.end()
        return result

    wrapt.wrap_function_wrapper("openai._base_client", "SyncAPIClient.request", wrapper)


def worker(mode: str, scenario: str, calls: int, warmup: int) -> dict[str, float]:
    import openai

    exporter = _setup(mode)
    http = _http_module()
    completion, stream_body, stream_usage_body = _bodies(CHUNKS.get(scenario, 1))

    def respond(request):
        body = json.loads(request.content)
        if body.get("stream"):
            with_usage = (body.get("stream_options") or {}).get("include_usage")
            return http.Response(200, headers={"content-type": "text/event-stream"},
                                 content=stream_usage_body if with_usage else stream_body)
        return http.Response(200, headers={"content-type": "application/json"}, content=completion)

    messages = [{"role": "user", "content": "hello"}]
    if scenario == "async":
        client = openai.AsyncOpenAI(api_key="sk-bench", base_url="http://bench.local/v1", max_retries=0,
                                    http_client=http.AsyncClient(transport=http.MockTransport(respond)))

        async def run(n: int) -> None:
            for _ in range(n):
                await client.chat.completions.create(model=MODEL, messages=messages)
                if len(exporter._finished_spans) > 1000:
                    exporter.clear()

        asyncio.run(run(warmup))
        loop = asyncio.new_event_loop()
        cpu, wall = time.process_time(), time.perf_counter()
        loop.run_until_complete(run(calls))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop.close()
    else:
        client = openai.OpenAI(api_key="sk-bench", base_url="http://bench.local/v1", max_retries=0,
                               http_client=http.Client(transport=http.MockTransport(respond)))
        stream = scenario.startswith("stream")

        # stream_1_usage: the caller asks for usage itself, so every mode parses the same chunks
        options = {"stream_options": {"include_usage": True}} if scenario == "stream_1_usage" else {}

        def run(n: int) -> None:
            for _ in range(n):
                if stream:
                    for _chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True, **options):
                        pass
                else:
                    client.chat.completions.create(model=MODEL, messages=messages)
                if len(exporter._finished_spans) > 1000:
                    exporter.clear()

        run(warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        run(calls)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us": cpu / calls * 1e6, "wall_us": wall / calls * 1e6}


def _instructions(mode: str, scenario: str, calls: int, warmup: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--worker", mode, scenario, "--calls", str(calls), "--warmup", str(warmup)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if not match:
        raise RuntimeError(f"no instruction count in valgrind output:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def count_instructions(modes: list[str], calls: int, warmup: int, scenarios: list[str]) -> int:
    """Instructions per call: (count with 2*calls - count with calls) / calls, so start-up cancels out."""
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    per_call: dict[tuple[str, str], float] = {}
    for scenario in scenarios:
        n = max(calls // CHUNKS.get(scenario, 1), 20)
        for mode in modes:
            low = _instructions(mode, scenario, n, warmup)
            high = _instructions(mode, scenario, 2 * n, warmup)
            per_call[(mode, scenario)] = (high - low) / n
            print(f"{scenario:<15}{mode:<16}{per_call[(mode, scenario)] / 1000:10.1f} k instructions/call",
                  flush=True)
    print("\nadded instructions (thousands) per call: sync; per streamed call: stream_1, and stream_1_usage"
          " where the caller asks for usage; per chunk: from stream_1 and stream_50")

    def added(mode: str, scenario: str) -> float | None:
        if (mode, scenario) not in per_call:
            return None
        return (per_call[(mode, scenario)] - per_call[("baseline", scenario)]) / 1000

    for mode in modes:
        row = [f"  {mode:<16}"]
        for scenario in ("sync", "stream_1", "stream_1_usage"):
            value = added(mode, scenario)
            if value is not None:
                row.append(f"{scenario} {value:8.1f}")
        first, fifty = added(mode, "stream_1"), added(mode, "stream_50")
        if first is not None and fifty is not None:
            row.append(f"chunk {(fifty - first) / 49:6.2f}")
        print("   ".join(row))
    floor, ours = added("floor", "sync"), added("otel_llm", "sync")
    if floor and ours is not None:
        print(f"\notel_llm / floor (sync): {ours / floor:.2f}  (floor: one span + the three records, {floor:.1f}k)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind (deterministic, ~50x slower) instead of timing")
    parser.add_argument("--scenarios", default="sync,stream_1,stream_1_usage,stream_50",
                        help="with --instructions: the scenarios to count (baseline is always counted)")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.calls, args.warmup)))
        return 0
    if args.instructions:
        modes = args.modes.split(",") if args.modes != ",".join(MODES) else list(INSTRUCTION_MODES)
        if "baseline" not in modes:
            modes.insert(0, "baseline")
        return count_instructions(modes, args.calls, args.warmup, args.scenarios.split(","))

    modes = args.modes.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    jobs = [(mode, scenario) for mode in modes for scenario in SCENARIOS]
    for round_index in range(args.rounds):
        random.shuffle(jobs)
        for mode, scenario in jobs:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", mode, scenario, "--calls", str(args.calls),
                 "--warmup", str(args.warmup)],
                capture_output=True, text=True, check=True,
            )
            results.setdefault((mode, scenario), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def median(mode: str, scenario: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(mode, scenario)])

    print(f"\nopenai SDK per-call cost, median of {args.rounds} interleaved rounds x {args.calls} calls "
          f"(each run a fresh process)\n")
    print(f"{'scenario':<16}{'mode':<10}{'cpu us/call':>13}{'added cpu':>11}{'wall us/call':>14}{'added wall':>12}")
    for scenario in SCENARIOS:
        base_cpu, base_wall = median("baseline", scenario, "cpu_us"), median("baseline", scenario, "wall_us")
        for mode in modes:
            cpu, wall = median(mode, scenario, "cpu_us"), median(mode, scenario, "wall_us")
            print(f"{scenario:<16}{mode:<10}{cpu:>13.1f}{cpu - base_cpu:>11.1f}{wall:>14.1f}{wall - base_wall:>12.1f}")
    print("\nadded cost per streamed chunk ((stream_50 - stream_1) / 49, minus the baseline's):")
    per_chunk = {}
    for mode in modes:
        per_chunk[mode] = {
            key: (median(mode, "stream_50", key) - median(mode, "stream_1", key)) / 49 for key in ("cpu_us", "wall_us")
        }
    for mode in modes:
        added = {key: per_chunk[mode][key] - per_chunk["baseline"][key] for key in per_chunk[mode]}
        print(f"  {mode:<10} cpu {added['cpu_us']:6.1f} us/chunk   wall {added['wall_us']:6.1f} us/chunk")
    if "official" in modes and "otel_llm" in modes:
        print("\nratio of added CPU, otel_llm / official (aim: <= 0.5):")
        for scenario in SCENARIOS:
            base = median("baseline", scenario, "cpu_us")
            ours, theirs = median("otel_llm", scenario, "cpu_us") - base, median("official", scenario, "cpu_us") - base
            print(f"  {scenario:<16}{ours / theirs if theirs > 0 else float('nan'):6.2f}")
        ours = per_chunk["otel_llm"]["cpu_us"] - per_chunk["baseline"]["cpu_us"]
        theirs = per_chunk["official"]["cpu_us"] - per_chunk["baseline"]["cpu_us"]
        print(f"  {'per chunk':<16}{ours / theirs if theirs > 0 else float('nan'):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
