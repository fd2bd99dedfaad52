"""The shipped collector-config/otelcol.yaml, unmodified, run by our collector distribution against real backends.

    app traffic --OTLP gRPC + HTTP--> otelcol-llm --config collector-config/otelcol.yaml
        metrics --otlp_http/mimir--> fan-out --> Prometheus 3, with suffixes (the shipped Mimir setting)
                                             --> Prometheus 3, without suffixes (Mimir's default)
        traces  --otlp_grpc/tempo--> Jaeger v2 (in Tempo's place)
        logs    --otlp_http/loki---> the project's OTLP receiver (in Loki's place)

The endpoints come in through the variables the config reads (MIMIR_OTLP_ENDPOINT, TEMPO_OTLP_ENDPOINT,
LOKI_OTLP_ENDPOINT, DEPLOYMENT_ENVIRONMENT); nothing in the file changes. The traffic is the project's own:
``otel-llm traffic`` (the demo's upstream simulator, the instrumented openai SDK) over gRPC and over HTTP,
plus a small instrumented app for the log path and the ``otel-llm check`` canary span.

The config's receivers bind fixed ports (4317, 4318, 13133 and 8888 for its own telemetry): the runs take
a file lock so two test sessions on one machine take turns, and fail naming a port somebody else holds.

Skipped when the distribution binary is not there: ``$OTELCOL_LLM_BIN`` (``.ci/run`` builds it with
collector-config/distribution/build.sh).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otel_llm.check import CANARY_ATTRIBUTE, CANARY_SPAN
from tests.support.backends import (
    NO_SUFFIXES, SUFFIXES, Jaeger, NetNamespace, OTLPFanout, Prometheus3, Relay, netns_supported,
)
from tests.support.faults import free_port
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import stop, wait_collector_ready, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "collector-config" / "otelcol.yaml"
FIXED_PORTS = (4317, 4318, 13133, 8888)  # otlp grpc/http, health_check, own telemetry: as in the shipped file
PORTS_LOCK = Path(tempfile.gettempdir()) / "otel-llm-collector-fixed-ports.lock"
SAMPLED_SHARE = 0.10  # tail_sampling's probabilistic policy: sampling_percentage 10
CALLS_PER_SERVICE = 150
ERROR_SHARE = 0.2
WAIT = 90.0  # decision_wait 10s, batch 5s, span_metrics flush 15s, self-scrape every 15s


def _collector_binary() -> str:
    """$OTELCOL_LLM_BIN, else the newest otelcol-llm in collector-config/distribution/build.sh's cache."""
    configured = os.environ.get("OTELCOL_LLM_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"OTELCOL_LLM_BIN={configured} is not an executable file")
        return configured
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-llm" / "otelcol-llm"
    built = sorted((p for p in cache.glob("*/otelcol-llm") if os.access(p, os.X_OK)), key=lambda p: p.stat().st_mtime)
    if not built:
        pytest.skip(f"otelcol-llm not built: OTELCOL_LLM_BIN is not set and {cache} holds none; build it with "
                    "collector-config/distribution/build.sh (.ci/run does)")
    return str(built[-1])


def _port_holder(port: int) -> str | None:
    """None when ``port`` can be bound on all interfaces, else why not."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as error:
            return str(error)
    return None


@dataclass
class Pipeline:
    suffixes: Prometheus3
    plain: Prometheus3
    jaeger: Jaeger
    logs: OTLPReceiver
    fanout: OTLPFanout
    collector_log: Path
    run: str
    services: dict[str, str] = field(default_factory=dict)  # role -> service.name
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> otel-llm traffic --json
    canary_trace_ids: list[str] = field(default_factory=list)
    driver_trace_ids: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    collector: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.collector_log.read_text(errors="replace")[-4000:] if self.collector_log.exists() else ""

    def start_collector(self, timeout: float = 60.0) -> None:
        """Start otelcol-llm on the shipped config; return once its health_check answers 200."""
        with open(self.collector_log, "ab") as out:
            self.collector = subprocess.Popen(self.command, env=self.env, cwd=self.collector_log.parent, stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.collector.poll() is not None:
                pytest.fail(f"otelcol-llm exited with {self.collector.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen("http://127.0.0.1:13133/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"otelcol-llm health_check not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def stop_collector(self, kill: bool = False) -> None:
        collector, self.collector = self.collector, None
        stop(collector, kill=kill)

    def both(self) -> list[tuple[str, Prometheus3]]:
        return [("suffixes", self.suffixes), ("plain", self.plain)]


def _wait(what: str, probe: Callable[[], Any], pipeline: Pipeline, timeout: float = WAIT) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the collector's log."""
    return wait_until(what, probe, timeout, lambda: f"fan-out failures: {pipeline.fanout.failures[-3:]}\n"
                                                    f"--- collector log ---\n{pipeline.log()}")


def _traffic(service: str, endpoint: str, protocol: str, seed: int, extra_env: dict[str, str],
             plan: tuple[str, ...] = ("--count", str(CALLS_PER_SERVICE), "--rate", "200"),
             error_share: float = ERROR_SHARE) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY", **extra_env})
    command = [sys.executable, "-m", "otel_llm.cli", "traffic", *plan,
               "--concurrency", "8", "--seed", str(seed), "--error-share", str(error_share), "--stream-share", "0.3",
               "--otlp-endpoint", endpoint, "--otlp-protocol", protocol, "--service-name", service,
               "--json", "--no-progress"]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# An instrumented app for the log path: content events (SPAN_AND_EVENT) and a Python log record inside a span,
# both by OTLP/HTTP; prints the trace ids of its spans.
_DRIVER = textwrap.dedent("""
    import json, logging, sys
    import openai
    from opentelemetry import trace
    from otel_llm.demo.upstream import UpstreamSimulator
    from otel_llm.sdk import configure

    service, endpoint = sys.argv[1], sys.argv[2]
    simulator = UpstreamSimulator()
    simulator.start()
    telemetry = configure(service, traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="otlp",
                          otlp_endpoint=endpoint, otlp_protocol="http/protobuf")
    client = openai.OpenAI(base_url=simulator.base_url, api_key="sk-driver", max_retries=0)
    tracer = trace.get_tracer("pipeline-driver")
    trace_ids = []
    for i in range(3):
        with tracer.start_as_current_span("handle request") as span:
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
            client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": "PIPELINE-SECRET-PROMPT %d" % i}])
            logging.getLogger("pipeline.driver").warning("answered request %d", i)
    telemetry.shutdown()
    simulator.stop()
    print(json.dumps(trace_ids))
""")


def _canaries(endpoint: str, service: str, count: int) -> list[str]:
    """Spans like ``otel-llm check``'s canary (its name and attribute), sent by OTLP/gRPC; their trace ids.

    Several: one alone would also be kept by the 10% probabilistic policy one time in ten."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace_ids = []
    for _ in range(count):
        with provider.get_tracer("otel-llm-check").start_as_current_span(CANARY_SPAN) as span:
            span.set_attribute(CANARY_ATTRIBUTE, uuid.uuid4().hex)
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return trace_ids


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    binary = _collector_binary()
    PORTS_LOCK.touch(exist_ok=True)
    with open(PORTS_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session running the shipped config waits here
        held = {port: why for port in FIXED_PORTS if (why := _port_holder(port))}
        if held:
            pytest.fail(f"the shipped otelcol.yaml binds fixed ports, and these are taken on this machine: {held}")
        tmp = Path(tempfile.mkdtemp(prefix="otel-llm-pipeline-"))
        with Prometheus3(translation_strategy=SUFFIXES) as suffixes, \
                Prometheus3(translation_strategy=NO_SUFFIXES) as plain, \
                Jaeger() as jaeger, OTLPReceiver(grpc=False, http=True) as logs, \
                OTLPFanout([suffixes.otlp_endpoint, plain.otlp_endpoint]) as fanout:
            env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
            env.update({
                "MIMIR_OTLP_ENDPOINT": fanout.url,
                "TEMPO_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
                "LOKI_OTLP_ENDPOINT": logs.http_endpoint,
                "DEPLOYMENT_ENVIRONMENT": "pipeline-test",
            })
            result = Pipeline(suffixes, plain, jaeger, logs, fanout, tmp / "otelcol.log", uuid.uuid4().hex[:8],
                              command=[binary, f"--config={CONFIG}"], env=env)
            try:
                result.start_collector()
                _drive(result)
                yield result
            finally:
                result.stop_collector()
                shutil.rmtree(tmp, ignore_errors=True)


def _drive(pipeline: Pipeline) -> None:
    run = pipeline.run
    pipeline.services = {"grpc": f"pipe-grpc-{run}", "http-keep": f"pipe-http-keep-{run}",
                         "logs": f"pipe-logs-{run}", "canary": f"pipe-canary-{run}"}
    processes = {
        "grpc": _traffic(pipeline.services["grpc"], "http://127.0.0.1:4317", "grpc", 11, {}),
        "http-keep": _traffic(pipeline.services["http-keep"], "http://127.0.0.1:4318", "http/protobuf", 12,
                              {"OTEL_RESOURCE_ATTRIBUTES": "llm.content.keep=true"}),
    }
    driver_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    driver_env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_AND_EVENT"
    driver = subprocess.run([sys.executable, "-c", _DRIVER, pipeline.services["logs"], "http://127.0.0.1:4318"],
                            env=driver_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert driver.returncode == 0, driver.stderr[-3000:]
    pipeline.driver_trace_ids = json.loads(driver.stdout.strip().splitlines()[-1])
    pipeline.canary_trace_ids = _canaries("http://127.0.0.1:4317", pipeline.services["canary"], 6)
    for role, process in processes.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"otel-llm traffic ({role}) failed:\n{err[-3000:]}"
        pipeline.summaries[role] = json.loads(out)


def _metric_names(prom: Prometheus3) -> set[str]:
    return set(prom.metric_names())


# ------------------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_app_metrics_arrive_through_the_collector_in_each_naming_scheme(pipeline: Pipeline, scheme: str) -> None:
    prom: Prometheus3 = getattr(pipeline, scheme)
    base = "gen_ai_client_operation_duration" + ("_seconds" if scheme == "suffixes" else "")
    other = "gen_ai_client_operation_duration" + ("" if scheme == "suffixes" else "_seconds")
    for role in ("grpc", "http-keep"):  # OTLP/gRPC and OTLP/HTTP into the collector
        service = pipeline.services[role]
        sent = pipeline.summaries[role]["sent"]
        # every call's duration arrived (the collector may still be delivering the last export)
        _wait(f"all {sent} calls of {service} counted",
              lambda service=service, sent=sent: (r := prom.query(f'sum({base}_count{{job="{service}"}})'))
              and float(r[0]["value"][1]) == sent, pipeline)
    names = _metric_names(prom)
    assert f"{other}_count" not in names, f"{scheme}: the other scheme's name is stored too"
    labels = prom.query(f'{base}_count{{job="{pipeline.services["grpc"]}"}}')[0]["metric"]
    # added by the collector's resource processor (DEPLOYMENT_ENVIRONMENT) and promoted like the shipped Mimir
    assert labels["deployment_environment_name"] == "pipeline-test"
    assert labels["service_name"] == pipeline.services["grpc"]
    errors = prom.query_value(f'sum({base}_count{{job="{pipeline.services["grpc"]}", error_type!=""}})')
    assert errors == pipeline.summaries["grpc"]["failed"]


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_spanmetrics_count_every_span_before_sampling(pipeline: Pipeline, scheme: str) -> None:
    prom: Prometheus3 = getattr(pipeline, scheme)
    calls = "traces_span_metrics_calls" + ("_total" if scheme == "suffixes" else "")
    duration = "traces_span_metrics_duration" + ("_seconds" if scheme == "suffixes" else "")
    service = pipeline.services["grpc"]
    sent = pipeline.summaries["grpc"]["sent"]
    _wait(f"{calls} of {service} = {sent}",
          lambda: prom.query(f'sum({calls}{{job="{service}", gen_ai_provider_name="openai"}})')
          and prom.query_value(f'sum({calls}{{job="{service}", gen_ai_provider_name="openai"}})') == sent, pipeline)
    series = prom.query(f'{calls}{{job="{service}"}}')
    models = {s["metric"].get("gen_ai_request_model") for s in series}
    assert len(models) >= 2 and None not in models, models
    assert {s["metric"].get("gen_ai_operation_name") for s in series} == {"chat"}
    errors = prom.query_value(f'sum({calls}{{job="{service}", status_code="STATUS_CODE_ERROR"}})')
    assert errors == pipeline.summaries["grpc"]["failed"]
    assert prom.query(f'{duration}_bucket{{job="{service}"}}'), f"no {duration}_bucket"


OWN_SPANS = '{__name__=~"otelcol_receiver_accepted_spans(_total)?", receiver="otlp"}'


def test_collectors_own_telemetry_arrives(pipeline: Pipeline) -> None:
    """prometheus/self scrapes :8888 into the metrics pipeline: the collector's count of accepted spans arrives
    in both schemes and covers every span the traffic sent."""
    sent = sum(summary["sent"] for summary in pipeline.summaries.values())
    for scheme, prom in pipeline.both():
        _wait(f"otelcol_receiver_accepted_spans >= {sent} ({scheme})",
              lambda prom=prom: (found := prom.query(f"sum({OWN_SPANS})")) and float(found[0]["value"][1]) >= sent,
              pipeline)
        jobs = {s["metric"].get("job") for s in prom.query(OWN_SPANS)}
        assert len(jobs) == 1 and None not in jobs, jobs


def test_collectors_own_telemetry_has_the_job_the_alert_rules_select(pipeline: Pipeline) -> None:
    """The self-scrape's series arrive with job = the collector's own service.name (otelcol-llm here,
    otelcol-contrib for the contrib image), not the scrape's job_name "otelcol": grafana/rules select
    ``up{job=~"otelcol.*"}``, and so must anything else looking for the collector."""
    rules = (ROOT / "grafana" / "rules" / "otel-llm-alerts.yaml").read_text()
    selectors = sorted(set(re.findall(r'up\{job=~"([^"]*otelcol[^"]*)"\}', rules)))
    assert selectors, "no up{job=~...otelcol...} selector in the alert rules"
    for scheme, prom in pipeline.both():
        _wait(f"own telemetry ({scheme})", lambda prom=prom: prom.query(OWN_SPANS), pipeline)
        jobs = {s["metric"]["job"] for s in prom.query(OWN_SPANS)}
        for selector in selectors:
            found = _wait(f"up{{job=~{selector!r}}} ({scheme})",
                          lambda prom=prom, selector=selector: prom.query(f'up{{job=~"{selector}"}}'), pipeline,
                          timeout=30)
            assert {s["metric"]["job"] for s in found} == jobs, (selector, jobs)


# ------------------------------------------------------------------------------------------ traces


def _traces(pipeline: Pipeline, role: str, tags: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return pipeline.jaeger.find_traces(pipeline.services[role], tags, limit=5000)


def _error_traces(pipeline: Pipeline, role: str) -> list[dict[str, Any]]:
    """Traces of ``role`` with a failed LLM call, found by ``error.type`` (the kinds the traffic reported).

    Not by Jaeger's ``error=true`` tag: through /api/traces that search never matches on Jaeger v2's
    memory storage (the tag arrives as a string, the store wants a boolean), see tests/test_backends.py."""
    found: dict[str, dict[str, Any]] = {}
    for kind in pipeline.summaries[role]["errors"]:
        for trace in _traces(pipeline, role, {"error.type": kind}):
            found[trace["traceID"]] = trace
    return list(found.values())


def _settled(probe: Callable[[], int], quiet: float = 6.0, timeout: float = WAIT) -> int:
    """``probe()`` once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = probe(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(1)
        now = probe()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_tail_sampling_keeps_every_error_trace_and_about_the_configured_share(pipeline: Pipeline) -> None:
    kept_ok, succeeded = 0, 0
    for role in ("grpc", "http-keep"):
        failed = pipeline.summaries[role]["failed"]
        assert failed > 0, "the traffic made no error calls: nothing to check"
        _wait(f"{failed} error traces of {role} in Jaeger",
              lambda role=role: len(_error_traces(pipeline, role)) >= failed, pipeline)
        errors = _error_traces(pipeline, role)
        assert len(errors) == failed
        for trace in errors:
            assert Jaeger.span_tags(trace["spans"][0]).get("otel.status_code") == "ERROR"
        every = _settled(lambda role=role: len(_traces(pipeline, role)))
        kept_ok += every - len(errors)
        succeeded += pipeline.summaries[role]["succeeded"]
    share = kept_ok / succeeded
    print(f"tail sampling kept {kept_ok} of {succeeded} traces without error ({share:.1%})")
    # binomial(n~240, p=0.1): 3% and 20% are more than 3.5 standard deviations away
    assert 0.03 <= share <= 0.20, f"kept {kept_ok} of {succeeded} traces without error ({share:.1%}); configured 10%"


def test_tail_sampling_keeps_the_check_canary(pipeline: Pipeline) -> None:
    for trace_id in pipeline.canary_trace_ids:
        trace = _wait(f"canary trace {trace_id} in Jaeger", lambda t=trace_id: pipeline.jaeger.trace(t), pipeline)
        (span,) = trace["spans"]
        assert span["operationName"] == CANARY_SPAN and Jaeger.span_tags(span).get(CANARY_ATTRIBUTE)


def test_message_content_is_removed_unless_the_service_keeps_it(pipeline: Pipeline) -> None:
    content_keys = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
    removed = _wait("error traces of the service without llm.content.keep", lambda: _error_traces(pipeline, "grpc"),
                    pipeline)
    kept = _wait("traces of the service with llm.content.keep=true", lambda: _traces(pipeline, "http-keep"), pipeline)
    removed_spans = [s for t in removed + _traces(pipeline, "grpc") for s in t["spans"]]
    leaked = [s["spanID"] for s in removed_spans if set(Jaeger.span_tags(s)) & set(content_keys)]
    assert not leaked, f"content left the collector on spans {leaked[:5]}"
    kept_spans = [s for t in kept for s in t["spans"]]
    with_content = [s for s in kept_spans if "gen_ai.input.messages" in Jaeger.span_tags(s)]
    assert with_content, "llm.content.keep=true but no span kept gen_ai.input.messages (was content captured?)"
    print(f"content: {len(removed_spans)} spans without keep carry none; {len(with_content)} of {len(kept_spans)} "
          f"spans with keep carry gen_ai.input.messages")
    assert Jaeger.process_tags(kept[0], kept[0]["spans"][0])["llm.content.keep"] == "true"


# ------------------------------------------------------------------------------------------ exemplars


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_error_latency_exemplars_carry_trace_ids_that_jaeger_returns(pipeline: Pipeline, scheme: str) -> None:
    """Errors are always sampled, so every exemplar on an error series opens its trace in the trace store."""
    prom: Prometheus3 = getattr(pipeline, scheme)
    base = "gen_ai_client_operation_duration" + ("_seconds" if scheme == "suffixes" else "")
    service = pipeline.services["grpc"]
    found = _wait(f"exemplars on {base}_bucket errors",
                  lambda: [s for s in prom.exemplars(f'{base}_bucket{{job="{service}", error_type!=""}}')
                           if s["exemplars"]], pipeline)
    trace_ids = {e["labels"]["trace_id"] for s in found for e in s["exemplars"]}
    for trace_id in trace_ids:
        trace = _wait(f"trace {trace_id} of an error exemplar", lambda t=trace_id: pipeline.jaeger.trace(t), pipeline)
        tags = Jaeger.span_tags(trace["spans"][0])
        assert tags.get("otel.status_code") == "ERROR" and tags.get("error.type"), tags
    everything = prom.exemplars(f'{base}_bucket{{job="{service}"}}')
    assert all(e["labels"].get("trace_id") for s in everything for e in s["exemplars"])


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_spanmetrics_latency_exemplars_carry_trace_ids_that_jaeger_returns(pipeline: Pipeline, scheme: str) -> None:
    prom: Prometheus3 = getattr(pipeline, scheme)
    duration = "traces_span_metrics_duration" + ("_seconds" if scheme == "suffixes" else "")
    service = pipeline.services["grpc"]
    found = _wait(f"exemplars on {duration}_bucket errors",
                  lambda: [s for s in prom.exemplars(f'{duration}_bucket{{job="{service}", status_code="STATUS_CODE_ERROR"}}')
                           if s["exemplars"]], pipeline)
    trace_ids = {e["labels"]["trace_id"] for s in found for e in s["exemplars"]}
    assert trace_ids
    for trace_id in trace_ids:
        _wait(f"trace {trace_id} of a span_metrics exemplar", lambda t=trace_id: pipeline.jaeger.trace(t), pipeline)


# ------------------------------------------------------------------------------------------ logs


def test_logs_arrive_with_trace_ids_and_without_content(pipeline: Pipeline) -> None:
    service = pipeline.services["logs"]

    def records() -> list[dict[str, Any]]:
        return [r for r in pipeline.logs.logs() if r["resource"].get("service.name") == service]

    found = _wait("log records of the driver", lambda: len(r := records()) >= 6 and r, pipeline)
    by_trace = {}
    for record in found:
        assert record["trace_id"], record
        by_trace.setdefault(record["trace_id"], []).append(record)
    assert set(pipeline.driver_trace_ids) <= set(by_trace), (pipeline.driver_trace_ids, list(by_trace))
    texts = json.dumps(found)
    assert "PIPELINE-SECRET-PROMPT" not in texts, "prompt content reached the log store"
    events = [r for r in found if r["event_name"] == "gen_ai.client.inference.operation.details"]
    assert events, "no content event arrived (the driver captures SPAN_AND_EVENT)"
    assert all("gen_ai.input.messages" not in r["attributes"] for r in events)
    assert any(r["resource"].get("deployment.environment.name") == "pipeline-test" for r in found)


# ------------------------------------------------------------------------------------------ otel-llm check


_CHECKS: dict[str, tuple[int, dict[str, Any], str]] = {}


def _check(pipeline: Pipeline, scheme: str) -> tuple[int, dict[str, Any], str]:
    """`otel-llm check --json` (once per scheme): metric steps on the grpc traffic's job in that scheme's
    Prometheus 3, the canary call through the collector."""
    if scheme not in _CHECKS:
        prom: Prometheus3 = getattr(pipeline, scheme)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        command = [sys.executable, "-m", "otel_llm.cli", "check", "--prometheus-url", prom.url,
                   "--job", pipeline.services["grpc"], "--service-name", f"pipe-check-{scheme}-{pipeline.run}",
                   "--otlp-endpoint", "http://127.0.0.1:4317", "--otlp-protocol", "grpc", "--require-exemplars",
                   "--jaeger-url", pipeline.jaeger.url, "--json"]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
        _CHECKS[scheme] = (done.returncode, json.loads(done.stdout or "{}"), done.stderr)
    return _CHECKS[scheme]


def _steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in result.get("steps", [])}


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_otel_llm_check_metric_steps_pass_with_prometheus_3_in_mimirs_place(pipeline: Pipeline, scheme: str) -> None:
    """`otel-llm check` reads the Prometheus 3 that got the metrics only through the collector: the metric
    families (in the scheme it finds), token usage and exemplars pass, and its canary goes through the collector."""
    _wait("traffic metrics stored", lambda: getattr(pipeline, scheme).query(
        f'{{__name__=~"gen_ai_client_operation_duration(_seconds)?_count", job="{pipeline.services["grpc"]}"}}'),
          pipeline)
    _code, result, err = _check(pipeline, scheme)
    steps = _steps(result)
    assert steps, f"no JSON steps from otel-llm check:\n{err[-3000:]}"
    for name in ("metric families", "token usage", "exemplars", "canary call"):
        assert steps[name]["status"] == "pass", json.dumps(steps[name], indent=1)
    schemes = steps["metric families"]["data"].get("schemes")
    assert schemes and len(schemes) == 1, steps["metric families"]


def test_otel_llm_check_passes_against_this_pipeline(pipeline: Pipeline) -> None:
    """The whole check, Jaeger step included: its canary goes through the collector's tail sampling to Jaeger."""
    code, result, _err = _check(pipeline, "suffixes")
    steps = _steps(result)
    failed = {name: step["summary"] for name, step in steps.items() if step["status"] == "fail"}
    assert code == 0 and not failed, failed
    assert steps["jaeger"]["status"] == "pass", steps["jaeger"]


@contextmanager
def _collector_in_netns(env: dict[str, str], host_ports: list[int]) -> Iterator[tuple[str, Path]]:
    """The shipped otelcol.yaml in a network namespace of its own (its fixed ports free there), beside the
    module's collector. ``host_ports``: backends' ports on this loopback, relayed into the namespace on the same
    numbers. Yields the OTLP/gRPC endpoint (relayed to its 4317) and its log file."""
    why = netns_supported()
    if why:
        pytest.skip(f"a second collector runs in a network namespace: {why}")
    binary = _collector_binary()
    tmp = Path(tempfile.mkdtemp(prefix="otel-llm-collector-ns-"))
    relays: list[Relay] = []
    try:
        with NetNamespace("collector") as namespace:
            entry = free_port()
            relays.append(Relay(None, ("127.0.0.1", entry), namespace.net, ("127.0.0.1", 4317)).start())
            for port in host_ports:
                relays.append(Relay(namespace.net, ("127.0.0.1", port), None, ("127.0.0.1", port)).start())
            log = tmp / "otelcol.log"
            base = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
            with open(log, "wb") as out:
                process = namespace.popen([binary, f"--config={CONFIG}"], env={**base, **env}, cwd=tmp, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                wait_collector_ready(log, process)
                yield f"http://127.0.0.1:{entry}", log
            finally:
                stop(process)
    finally:
        for relay in relays:
            relay.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_otel_llm_check_names_an_exporter_pointed_at_the_wrong_path() -> None:
    """The shipped config with MIMIR_OTLP_ENDPOINT set the Mimir way (``.../otlp``) on a Prometheus (which takes
    ``/api/v1/otlp``): the collector logs the refused exports, and `otel-llm check` fails the metric step and
    points at the OTLP path, while its canary call still goes through."""
    run = uuid.uuid4().hex[:8]
    with Prometheus3(translation_strategy=SUFFIXES) as prom, Jaeger() as jaeger, OTLPReceiver(grpc=False) as logs:
        ports = [prom.port, int(jaeger.otlp_grpc_endpoint.rsplit(":", 1)[1]), int(logs.http_endpoint.rsplit(":", 1)[1])]
        env = {"MIMIR_OTLP_ENDPOINT": f"{prom.url}/otlp", "TEMPO_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
               "LOKI_OTLP_ENDPOINT": logs.http_endpoint}
        with _collector_in_netns(env, ports) as (endpoint, log):
            service = f"pipe-wrong-path-{run}"
            traffic = _traffic(service, endpoint, "grpc", 31, {}, plan=("--count", "20", "--rate", "50"))
            out, err = traffic.communicate(timeout=120)
            assert traffic.returncode == 0, err[-2000:]
            deadline = time.monotonic() + 30  # the batch processor sends within 5 s
            while "otlp_http/mimir" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.5)
            text = log.read_text(errors="replace")
            assert "otlp_http/mimir" in text and "404" in text, text[-3000:]
            assert not [n for n in prom.metric_names() if n.startswith("gen_ai")]
            command = [sys.executable, "-m", "otel_llm.cli", "check", "--prometheus-url", prom.url, "--job", service,
                       "--service-name", f"pipe-check-{run}", "--otlp-endpoint", endpoint, "--otlp-protocol", "grpc",
                       "--json"]
            env_check = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            done = subprocess.run(command, env=env_check, cwd=ROOT, capture_output=True, text=True, timeout=240)
    steps = _steps(json.loads(done.stdout or "{}"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    families = steps["metric families"]
    assert families["status"] == "fail"
    assert "otlp" in (families["hint"] or "").lower(), families
    assert steps["canary call"]["status"] == "pass", steps["canary call"]


# ------------------------------------------------------------------------------------------ faults


def test_collector_killed_mid_traffic_and_restarted(pipeline: Pipeline) -> None:
    """SIGKILL mid-traffic, 15 s down, restarted: the app's calls are unaffected, every span is either
    delivered or counted as lost (and the count arrives through the restarted collector), cumulative metrics
    catch up completely, and traces flow again. Last in this module: it replaces the collector."""
    service = f"pipe-fault-{pipeline.run}"
    traffic = _traffic(service, "http://127.0.0.1:4317", "grpc", 13, {"OTEL_METRIC_EXPORT_INTERVAL": "2000"},
                       plan=("--duration", "35", "--rate", "20"), error_share=0.0)
    time.sleep(8)
    pipeline.stop_collector(kill=True)  # no flush: what it held in its batches and sampling buffers is gone
    time.sleep(15)  # longer than the SDK exporters' retry window (10 s)
    pipeline.start_collector()
    restarted_at = time.time()
    out, err = traffic.communicate(timeout=180)
    assert traffic.returncode == 0, err[-3000:]
    summary = json.loads(out)

    # the application did not notice
    assert summary["unexpected_failures"] == 0 and summary["failed"] == 0, summary
    assert summary["succeeded"] == summary["sent"] == summary["recorded_calls"]
    # every span delivered or counted as lost
    telemetry = summary["telemetry"]
    dropped = sum(telemetry["spans_dropped"].values())
    assert telemetry["spans_exported"] + dropped == summary["recorded_calls"], telemetry
    assert dropped > 0, f"a 15 s outage cost no span? {telemetry}"
    print(f"collector outage: {summary['sent']} calls, {telemetry['spans_exported']} spans delivered, lost {telemetry['spans_dropped']}")
    sent = summary["sent"]
    for scheme, prom in pipeline.both():
        base = "gen_ai_client_operation_duration" + ("_seconds" if scheme == "suffixes" else "")
        lost = "otel_llm_spans_dropped" + ("_total" if scheme == "suffixes" else "")
        # cumulative temporality: the first export after the outage carries everything missed
        _wait(f"{base}_count of {service} = {sent} ({scheme})",
              lambda prom=prom, base=base: (r := prom.query(f'sum({base}_count{{job="{service}"}})'))
              and float(r[0]["value"][1]) == sent, pipeline)
        # the app's own count of lost spans arrives too
        _wait(f"{lost} of {service} = {dropped} ({scheme})",
              lambda prom=prom, lost=lost: (r := prom.query(f'sum({lost}{{job="{service}"}})'))
              and float(r[0]["value"][1]) == dropped, pipeline)
    # traces flow again: spans started after the restart are in the trace store
    after = _wait("traces started after the restart",
                  lambda: [t for t in pipeline.jaeger.find_traces(service, limit=5000)
                           if min(s["startTime"] for s in t["spans"]) / 1e6 > restarted_at], pipeline)
    assert after
