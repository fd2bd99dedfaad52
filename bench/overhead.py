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
# Instruction counts also run each instrumentation on no-op providers: its own code without the SDK.
INSTRUCTION_MODES = MODES + ("otel_llm-nosdk", "official-nosdk")
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
    return exporter


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


def count_instructions(modes: list[str], calls: int, warmup: int) -> int:
    """Instructions per call: (count with 2*calls - count with calls) / calls, so start-up cancels out."""
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    per_call: dict[tuple[str, str], float] = {}
    for scenario in ("sync", "stream_1", "stream_1_usage", "stream_50"):
        n = max(calls // CHUNKS.get(scenario, 1), 20)
        for mode in modes:
            low = _instructions(mode, scenario, n, warmup)
            high = _instructions(mode, scenario, 2 * n, warmup)
            per_call[(mode, scenario)] = (high - low) / n
            print(f"{scenario:<15}{mode:<16}{per_call[(mode, scenario)] / 1000:10.1f} k instructions/call",
                  flush=True)
    print("\nadded instructions (thousands): per call (sync), per streamed call (stream_1, and stream_1_usage"
          " where the caller asks for usage), per chunk")
    base = {s: per_call[("baseline", s)] for s in ("sync", "stream_1", "stream_1_usage", "stream_50")}
    for mode in modes:
        sync = (per_call[(mode, "sync")] - base["sync"]) / 1000
        stream = (per_call[(mode, "stream_1")] - base["stream_1"]) / 1000
        usage = (per_call[(mode, "stream_1_usage")] - base["stream_1_usage"]) / 1000
        chunk = ((per_call[(mode, "stream_50")] - per_call[(mode, "stream_1")])
                 - (base["stream_50"] - base["stream_1"])) / 49 / 1000
        print(f"  {mode:<16} sync {sync:8.1f}   stream {stream:8.1f}   stream+usage {usage:8.1f}   chunk {chunk:6.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind (deterministic, ~50x slower) instead of timing")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.calls, args.warmup)))
        return 0
    if args.instructions:
        modes = args.modes.split(",") if args.modes != ",".join(MODES) else list(INSTRUCTION_MODES)
        return count_instructions(modes, args.calls, args.warmup)

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
