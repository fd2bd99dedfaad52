"""What a faulty collector costs an instrumented service: latency per LLM call, CPU, memory, and what
telemetry is lost, with the collector up, down, slow or answering errors; and how export resumes.

The real ``openai`` SDK talks to a mock transport of its HTTP client (no network for the LLM call,
as in bench/overhead.py), instrumented through ``otel_llm.sdk.configure()`` exactly as a service
would be: our batch span processor and OTLP/gRPC span exporter, a periodic OTLP/gRPC metric
reader (every second). The collector is the test OTLP receiver in its own process:

* ``none``  -- not instrumented at all (the baseline)
* ``ok``    -- instrumented, collector up
* ``down``  -- instrumented, nothing listening on the collector's port
* ``slow``  -- instrumented, the collector answers after 2 s (longer than nothing: it holds the exporter)
* ``error`` -- instrumented, the collector answers UNAVAILABLE to everything

Each (fault, round) is a fresh process making N calls, back to back (the worst case: the export
threads compete with the app for the GIL the whole time) or paced with ``--rate``. Reported: per-call wall latency (p50,
p99, mean), CPU per call, max RSS growth, spans exported and lost by reason, and how long
``Telemetry.shutdown()`` took. Then recovery: the collector answers errors, then comes back;
the time from its return to the first accepted span and metric export, and what was lost.

Run from the repository root: ``python bench/faults.py [--rounds 3] [--calls 5000] [--rate 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULTS = ("none", "ok", "down", "slow", "error")
MODEL = "gpt-4o-mini"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """The test OTLP receiver in its own process, steered over stdin: ``mode ok|error|slow``,
    ``delay S``, ``stats`` (prints accepted span and metric requests as JSON)."""

    CODE = r"""
import json, sys, threading, time
sys.path.insert(0, %r)
from tests.support.otlp_receiver import OTLPReceiver
r = OTLPReceiver(grpc=True, http=False).start()
stats = {"spans": 0, "metric_requests": 0, "first_span_at": None, "first_metric_at": None}
lock = threading.Lock()
def drain():
    while True:
        time.sleep(0.2)
        requests = r.requests
        r.clear()
        with lock:
            for q in requests:
                if not q.accepted:
                    continue
                if q.signal == "traces":
                    stats["spans"] += sum(len(ss.spans) for rs in q.message.resource_spans for ss in rs.scope_spans)
                    stats["first_span_at"] = stats["first_span_at"] or q.received_at
                elif q.signal == "metrics":
                    stats["metric_requests"] += 1
                    stats["first_metric_at"] = stats["first_metric_at"] or q.received_at
threading.Thread(target=drain, daemon=True).start()
print(r.grpc_endpoint, flush=True)
for line in sys.stdin:
    command, _, value = line.strip().partition(" ")
    if command == "mode":
        r.mode = value
    elif command == "delay":
        r.delay = float(value)
    elif command == "stats":
        time.sleep(0.3)
        with lock:
            print(json.dumps(stats), flush=True)
    elif command == "reset":
        with lock:
            stats.update(spans=0, metric_requests=0, first_span_at=None, first_metric_at=None)
    print("ok", flush=True) if command != "stats" else None
r.stop()
"""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.CODE % ROOT], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.endpoint = self.process.stdout.readline().strip()

    def send(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        return json.loads(self.send("stats"))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def _client() -> Any:
    import openai
    import openai._base_client as base_client

    http = sys.modules["httpx2"] if "httpx2" in vars(base_client) else sys.modules["httpx"]
    body = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }).encode()

    def respond(request: Any) -> Any:
        return http.Response(200, headers={"content-type": "application/json"}, content=body)

    return openai.OpenAI(api_key="sk-bench", base_url="http://bench.local/v1", max_retries=0,
                         http_client=http.Client(transport=http.MockTransport(respond)))


def worker(fault: str, endpoint: str, calls: int, warmup: int, rate: float = 0.0) -> dict[str, Any]:
    telemetry = None
    if fault != "none":
        from otel_llm.sdk import configure

        telemetry = configure("bench-faults", traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="none",
                              otlp_endpoint=endpoint, otlp_protocol="grpc", metric_export_interval_ms=1000,
                              set_global=False)
    import logging

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # the exporters' retry warnings
    client = _client()
    messages = [{"role": "user", "content": "hello"}]
    for _ in range(warmup):
        client.chat.completions.create(model=MODEL, messages=messages)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    latencies = []
    cpu = time.process_time()
    next_slot = time.perf_counter()
    for _ in range(calls):
        if rate > 0:  # paced: the export threads get the idle time between calls, as in most services
            next_slot += 1.0 / rate
            pause = next_slot - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        start = time.perf_counter()
        client.chat.completions.create(model=MODEL, messages=messages)
        latencies.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    result: dict[str, Any] = {
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": sorted(latencies)[int(len(latencies) * 0.99)] * 1e6,
        "mean_us": statistics.fmean(latencies) * 1e6,
        "cpu_us": cpu / calls * 1e6,
        "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before,
    }
    if telemetry is not None:
        processor = telemetry.span_processors[0]
        result["queued_at_end"] = processor.pending()
        started = time.perf_counter()
        telemetry.shutdown()
        result["shutdown_s"] = time.perf_counter() - started
        result["exported"] = processor.counts.get("exported")
        result["dropped"] = telemetry.spans_dropped()
        result["in_flight"] = processor.in_flight()
    return result


def recovery_worker(endpoint: str, outage_calls: int, calls_after: int) -> dict[str, Any]:
    """Calls during an outage (the parent switched the collector to errors), a signal on stdout, the
    parent switches it back, more calls; reports counts."""
    from otel_llm.sdk import configure

    import logging

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    telemetry = configure("bench-recovery", traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="none",
                          otlp_endpoint=endpoint, otlp_protocol="grpc", metric_export_interval_ms=1000,
                          set_global=False)
    client = _client()
    messages = [{"role": "user", "content": "hello"}]
    for _ in range(outage_calls):
        client.chat.completions.create(model=MODEL, messages=messages)
        time.sleep(0.002)  # ~ a few hundred calls per second
    print("outage-done", flush=True)
    sys.stdin.readline()  # the collector is back
    back = time.time()
    for _ in range(calls_after):
        client.chat.completions.create(model=MODEL, messages=messages)
        time.sleep(0.002)
    time.sleep(2.5)  # two metric intervals
    processor = telemetry.span_processors[0]
    exported = processor.counts.get("exported")
    dropped = telemetry.spans_dropped()
    telemetry.shutdown()
    return {"back_at": back, "exported_before_shutdown": exported, "dropped": dropped,
            "exported": processor.counts.get("exported")}


def _run_worker(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _recovery(receiver: Receiver, outage_calls: int, calls_after: int) -> dict[str, Any]:
    receiver.send("mode error")
    receiver.send("reset")
    process = subprocess.Popen([sys.executable, __file__, "--recovery-worker", receiver.endpoint, str(outage_calls),
                                str(calls_after)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "outage-done"
    receiver.send("mode ok")
    process.stdin.write("go\n")
    process.stdin.flush()
    result = json.loads(process.stdout.read().strip().splitlines()[-1])
    process.wait(timeout=60)
    stats = receiver.stats()
    result["spans_received"] = stats["spans"]
    result["first_span_after_s"] = (stats["first_span_at"] or float("nan")) - result["back_at"]
    result["first_metrics_after_s"] = (stats["first_metric_at"] or float("nan")) - result["back_at"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="calls per second (default 0: back to back, the worst case for the app thread)")
    parser.add_argument("--worker", nargs=2, metavar=("FAULT", "ENDPOINT"), help=argparse.SUPPRESS)
    parser.add_argument("--recovery-worker", nargs=3, metavar=("ENDPOINT", "OUTAGE", "AFTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.calls, args.warmup, args.rate)))
        return
    if args.recovery_worker:
        endpoint, outage, after = args.recovery_worker
        print(json.dumps(recovery_worker(endpoint, int(outage), int(after))))
        return

    receiver = Receiver()
    results: dict[str, list[dict[str, Any]]] = {fault: [] for fault in FAULTS}
    try:
        for round_number in range(args.rounds):
            for fault in FAULTS:
                receiver.send("mode " + {"slow": "slow", "error": "error"}.get(fault, "ok"))
                receiver.send("delay 2")
                endpoint = f"http://127.0.0.1:{_free_port()}" if fault == "down" else receiver.endpoint
                results[fault].append(_run_worker(["--calls", str(args.calls), "--warmup", str(args.warmup),
                                                   "--rate", str(args.rate), "--worker", fault, endpoint]))
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        recovery = _recovery(receiver, outage_calls=1000, calls_after=500)
    finally:
        receiver.close()

    def median(fault: str, key: str) -> float:
        return statistics.median(r[key] for r in results[fault])

    pace = f"at {args.rate:g} calls/s" if args.rate > 0 else "back to back"
    print(f"\nper LLM call (openai SDK, mock transport), {args.calls} calls {pace}, median of {args.rounds} rounds")
    print(f"{'collector':<10}{'p50 us':>9}{'(range)':>14}{'p99 us':>9}{'mean us':>9}{'+p50':>8}{'+p99':>8}{'cpu us':>9}"
          f"{'RSS +MiB':>10}{'exported':>10}  {'lost (queue_full / export_failed / shutdown_timeout / in flight)':<60}"
          f"{'shutdown s':>11}")
    base = {key: median("none", key) for key in ("p50_us", "p99_us")}
    for fault in FAULTS:
        spread = f"{min(r['p50_us'] for r in results[fault]):.0f}-{max(r['p50_us'] for r in results[fault]):.0f}"
        row = f"{fault:<10}{median(fault, 'p50_us'):>9.1f}{spread:>14}{median(fault, 'p99_us'):>9.1f}{median(fault, 'mean_us'):>9.1f}"
        row += f"{median(fault, 'p50_us') - base['p50_us']:>+8.1f}{median(fault, 'p99_us') - base['p99_us']:>+8.1f}"
        row += f"{median(fault, 'cpu_us'):>9.1f}{median(fault, 'rss_growth_kib') / 1024:>10.1f}"
        if fault == "none":
            row += f"{'-':>10}  {'-':<60}{'-':>11}"
        else:
            lost = " / ".join(f"{statistics.median(r['dropped'][k] for r in results[fault]):.0f}"
                              for k in ("queue_full", "export_failed", "shutdown_timeout"))
            lost += f" / {statistics.median(r['in_flight'] for r in results[fault]):.0f}"
            row += f"{median(fault, 'exported'):>10.0f}  {lost:<60}{median(fault, 'shutdown_s'):>11.2f}"
        print(row)
    total = args.calls + args.warmup
    print(f"(each run ends {total} spans; lost + exported + in flight = {total})")
    print("\nrecovery: 1000 calls while the collector answers errors, then it comes back, 500 more calls")
    print(f"  first accepted span export   {recovery['first_span_after_s']:.2f} s after it came back")
    print(f"  first accepted metric export {recovery['first_metrics_after_s']:.2f} s after it came back")
    print(f"  spans received {recovery['spans_received']}, exported {recovery['exported']}, lost {recovery['dropped']}")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
