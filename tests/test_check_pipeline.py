"""``otel-llm check`` against the real pipeline: the shipped collector-config/otelcol.yaml (unmodified) run by
otelcol-llm, Prometheus 3 in Mimir's place (its OTLP endpoint ``/api/v1/otlp``), Jaeger v2 for traces (the
check's ``--jaeger-url`` step), the project's OTLP receiver for logs.

    otel-llm traffic / the check's canary --OTLP--> otelcol-llm
        metrics --> fan-out --> Prometheus 3 (UnderscoreEscapingWithSuffixes: the shipped Mimir setting)
                            --> Prometheus 3 (NoTranslation: names keep their dots; no dashboard matches them)
        traces  --> Jaeger A                         (Jaeger B gets nothing)
        logs    --> OTLP receiver

The check passes on the healthy path, and names the broken piece when one is broken:
* a naming-scheme mismatch (the Prometheus whose translation keeps dots): "metric families" fails;
* a trace store that never got the canary (Jaeger B): "jaeger" fails, while Jaeger A has the canary;
* the metrics exporter pointed at a wrong path (Mimir's ``/otlp`` on a Prometheus, which serves
  ``/api/v1/otlp``), with the collector restarted on that endpoint: "metric families" fails with a hint naming
  the exporter's path, while the canary still reaches Jaeger (the traces path is fine).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import SUFFIXES, Jaeger, OTLPFanout, Prometheus3
from tests.support.faults import free_port
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import wait_until
from tests.test_pipeline_collector import (
    CONFIG,
    FIXED_PORTS,
    PORTS_LOCK,
    ROOT,
    Pipeline,
    _collector_binary,
    _port_holder,
)

pytestmark = pytest.mark.slow

DOTTED = "NoTranslation"  # Prometheus 3's OTLP translation keeping the OTel names (gen_ai.client.operation.duration)
WAIT = 60.0
GRPC = "http://127.0.0.1:4317"


@dataclass
class CheckRun:
    code: int
    result: dict[str, Any]
    stderr: str

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return {step["name"]: step for step in self.result.get("steps", [])}

    def status(self) -> dict[str, str]:
        return {name: step["status"] for name, step in self.steps.items()}

    def show(self, step: str) -> None:
        """Print what the check said at ``step`` (kept in the test log)."""
        found = self.steps[step]
        print(f"{found['status'].upper()} {step}: {found['summary']}\n    -> {found.get('hint')}")

    def describe(self) -> str:
        return json.dumps(self.result, indent=1)[-6000:] + "\n--- stderr ---\n" + self.stderr[-2000:]


@dataclass
class CheckPipeline:
    pipeline: Pipeline
    jaeger_b: Jaeger
    run: str
    traffic_service: str
    runs: dict[str, CheckRun] = field(default_factory=dict)


def _wait(what: str, probe: Callable[[], Any], pipeline: Pipeline, timeout: float = WAIT) -> Any:
    return wait_until(what, probe, timeout, lambda: f"fan-out failures: {pipeline.fanout.failures[-3:]}\n"
                                                    f"--- collector ---\n{pipeline.log()}")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def _traffic(service: str) -> None:
    """`otel-llm traffic` through the collector (gRPC): some streamed calls, some errors; it flushes at exit."""
    done = subprocess.run(
        [sys.executable, "-m", "otel_llm.cli", "traffic", "--count", "40", "--rate", "100", "--concurrency", "4",
         "--seed", "5", "--error-share", "0.1", "--otlp-endpoint", GRPC, "--otlp-protocol", "grpc",
         "--service-name", service, "--json", "--no-progress"],
        env=_clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["succeeded"] > 0


def _start_check(prometheus: str | None, jaeger: str, service: str, *extra: str,
                 otlp: str = GRPC) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "otel_llm.cli", "check", *(["--prometheus-url", prometheus] if prometheus else []),
               "--jaeger-url", jaeger, "--otlp-endpoint", otlp, "--otlp-protocol", "grpc", "--service-name", service,
               "--json", *extra]
    return subprocess.Popen(command, env=_clean_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen[str]) -> CheckRun:
    out, err = process.communicate(timeout=180)
    try:
        result = json.loads(out)
    except ValueError:
        result = {}
    assert result.get("steps"), f"otel-llm check printed no JSON (exit {process.returncode}):\n{out[-2000:]}\n{err[-3000:]}"
    return CheckRun(process.returncode, result, err)


def _own_metric(name: str, exporter: str) -> float:
    """The collector's own counter ``name`` for ``exporter``, read from its :8888 (0 when it does not exist)."""
    with urllib.request.urlopen("http://127.0.0.1:8888/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = re.compile(rf'^{name}(?:_total)?{{[^}}]*exporter="{re.escape(exporter)}"[^}}]*}} (\S+)$', re.M)
    return sum(float(value) for value in pattern.findall(text))


@pytest.fixture(scope="module")
def checked() -> Iterator[CheckPipeline]:
    binary = _collector_binary()
    PORTS_LOCK.touch(exist_ok=True)
    with open(PORTS_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests/test_pipeline_collector.py's lock: one shipped config at a time
        held = {port: why for port in FIXED_PORTS if (why := _port_holder(port))}
        if held:
            pytest.fail(f"the shipped otelcol.yaml binds fixed ports, and these are taken on this machine: {held}")
        tmp = Path(tempfile.mkdtemp(prefix="otel-llm-check-pipeline-"))
        with Prometheus3(translation_strategy=SUFFIXES) as good, Prometheus3(translation_strategy=DOTTED) as dotted, \
                Jaeger() as jaeger_a, Jaeger() as jaeger_b, OTLPReceiver(grpc=False, http=True) as logs, \
                OTLPFanout([good.otlp_endpoint, dotted.otlp_endpoint]) as fanout:
            env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
            env.update({
                "MIMIR_OTLP_ENDPOINT": fanout.url,
                "TEMPO_OTLP_ENDPOINT": jaeger_a.otlp_grpc_endpoint,
                "LOKI_OTLP_ENDPOINT": logs.http_endpoint,
                "DEPLOYMENT_ENVIRONMENT": "check-test",
            })
            run = uuid.uuid4().hex[:8]
            pipeline = Pipeline(good, dotted, jaeger_a, logs, fanout, tmp / "otelcol.log", run,
                                command=[binary, f"--config={CONFIG}"], env=env)
            state = CheckPipeline(pipeline, jaeger_b, run, f"check-traffic-{run}")
            try:
                pipeline.start_collector()
                _traffic(state.traffic_service)
                job = state.traffic_service
                _wait("traffic metrics and exemplars in the Prometheus with suffixes",
                      lambda: good.query(f'gen_ai_client_operation_duration_seconds_count{{job="{job}"}}')
                      and any(s["exemplars"] for s in good.exemplars(
                          f'gen_ai_client_operation_duration_seconds_bucket{{job="{job}"}}')), pipeline)
                _wait("traffic metrics (dotted names) in the NoTranslation Prometheus",
                      lambda: any(n.startswith("gen_ai.client.operation.duration") for n in dotted.metric_names()),
                      pipeline)
                # three checks at once: they mostly wait (tail sampling holds a trace 10 s before Jaeger gets it)
                started = {
                    "healthy": _start_check(good.url, jaeger_a.url, f"check-healthy-{run}", "--require-exemplars",
                                            "--job", job),
                    "dotted": _start_check(dotted.url, jaeger_a.url, f"check-dotted-{run}"),
                    "no-canary-store": _start_check(good.url, jaeger_b.url, f"check-jaeger-b-{run}", "--wait", "15"),
                }
                state.runs = {name: _finish(process) for name, process in started.items()}
                yield state
            finally:
                pipeline.stop_collector()
                shutil.rmtree(tmp, ignore_errors=True)


def test_check_passes_against_the_real_pipeline(checked: CheckPipeline) -> None:
    run = checked.runs["healthy"]
    assert run.code == 0 and run.result["ok"] is True, run.describe()
    status = run.status()
    assert status == {"metrics endpoint": "skip", "scrape target": "skip", "metric families": "pass",
                      "token usage": "pass", "exemplars": "pass", "canary call": "pass", "tempo": "skip",
                      "jaeger": "pass", "loki": "skip"}, run.describe()
    assert run.steps["metric families"]["data"]["scheme"] == "prometheus"
    # --job of a service whose metrics are pushed: no scrape target is not a failure, and the check says why
    assert "pushed" in run.steps["scrape target"]["summary"], run.steps["scrape target"]
    # the canary's trace really is the one Jaeger returns, with its gen_ai span
    trace_id = run.steps["canary call"]["data"]["trace_id"]
    assert run.steps["jaeger"]["data"]["trace_id"] == trace_id
    trace = checked.pipeline.jaeger.trace(trace_id)
    assert trace is not None
    assert any(Jaeger.span_tags(s).get("gen_ai.provider.name") for s in trace["spans"]), trace["spans"]
    # its exemplars step found trace ids of this pipeline
    assert re.fullmatch(r"[0-9a-f]{32}", run.steps["exemplars"]["data"]["trace_id"])


def test_the_canarys_logs_reach_the_log_store_with_its_trace_id(checked: CheckPipeline) -> None:
    """The check's Loki step needs Loki's API; here the logs go to the project's OTLP receiver (in Loki's place)
    and the canary's log records arrive there with its trace id, through the collector's logs pipeline."""
    run = checked.runs["healthy"]
    trace_id = run.steps["canary call"]["data"]["trace_id"]
    service = f"check-healthy-{checked.run}"
    records = _wait("the canary's log records",
                    lambda: [r for r in checked.pipeline.logs.logs() if r["resource"].get("service.name") == service],
                    checked.pipeline)
    assert {r["trace_id"] for r in records} == {trace_id}, records
    assert any("otel-llm check canary" in str(r.get("body")) for r in records), records


def test_check_names_a_naming_scheme_mismatch(checked: CheckPipeline) -> None:
    """Prometheus' OTLP translation set to keep the OTel names: every dashboard query finds nothing there,
    and the check says so at "metric families" (its other steps still pass: the canary reaches Jaeger)."""
    run = checked.runs["dotted"]
    run.show("metric families")
    assert run.code == 1 and run.result["ok"] is False, run.describe()
    failed = {name for name, status in run.status().items() if status == "fail"}
    assert "metric families" in failed, run.describe()
    families = run.steps["metric families"]
    assert "dots" in families["summary"] and "UnderscoreEscapingWithSuffixes" in (families["hint"] or "")
    assert run.status()["canary call"] == "pass" and run.status()["jaeger"] == "pass", run.describe()
    assert failed <= {"metric families", "token usage", "exemplars"}, run.describe()


def test_check_names_a_trace_store_that_never_got_the_canary(checked: CheckPipeline) -> None:
    run = checked.runs["no-canary-store"]
    run.show("jaeger")
    assert run.code == 1, run.describe()
    failed = {name for name, status in run.status().items() if status == "fail"}
    assert failed == {"jaeger"}, run.describe()
    step = run.steps["jaeger"]
    trace_id = run.steps["canary call"]["data"]["trace_id"]
    assert trace_id in step["summary"] and "not in Jaeger" in step["summary"], step
    assert "exporter" in step["hint"] or "export" in step["hint"], step
    assert step["data"]["attempts"] >= 2, step  # it kept looking
    # the canary went through; it is in the store the collector exports to, not in the one the check was given
    _wait(f"canary {trace_id} in Jaeger A", lambda: checked.pipeline.jaeger.trace(trace_id), checked.pipeline)
    assert checked.jaeger_b.trace(trace_id) is None


def test_check_names_a_metrics_exporter_pointed_at_the_wrong_path(checked: CheckPipeline) -> None:
    """The collector restarted with MIMIR_OTLP_ENDPOINT = Mimir's path (/otlp) on a Prometheus 3 (which takes
    OTLP at /api/v1/otlp): the exporter's sends fail (the collector counts them), nothing is stored, and the check
    fails at "metric families" naming the exporter's path, while the canary's trace still reaches Jaeger.
    Last in this module: it replaces the collector."""
    pipeline = checked.pipeline
    with Prometheus3(translation_strategy=SUFFIXES) as fresh:
        pipeline.stop_collector()
        pipeline.env = {**pipeline.env, "MIMIR_OTLP_ENDPOINT": f"{fresh.url}/otlp"}
        pipeline.start_collector()
        _traffic(f"check-wrong-path-traffic-{checked.run}")
        _wait("otelcol_exporter_send_failed_metric_points of otlp_http/mimir on :8888",
              lambda: _own_metric("otelcol_exporter_send_failed_metric_points", "otlp_http/mimir") > 0, pipeline)
        run = _finish(_start_check(fresh.url, pipeline.jaeger.url, f"check-wrong-path-{checked.run}"))
        stored = [n for n in fresh.metric_names() if n.startswith(("gen_ai", "llm"))]
    assert not stored, f"metrics arrived although the exporter's path is wrong: {stored[:5]}"
    run.show("metric families")
    assert run.code == 1, run.describe()
    status = run.status()
    families = run.steps["metric families"]
    assert families["status"] == "fail" and "no gen_ai_* or llm_* metric stored" in families["summary"], families
    assert "/api/v1/otlp" in families["hint"] and "exporter" in families["hint"], families
    assert status["canary call"] == "pass" and status["jaeger"] == "pass", run.describe()
    assert _own_metric("otelcol_exporter_sent_metric_points", "otlp_http/mimir") == 0


def test_jaeger_step_without_a_collector_and_urls_that_are_not_jaegers_query_api() -> None:
    """The canary sent straight to Jaeger's OTLP port (no collector, no sampling): found at Jaeger's query URL;
    Jaeger's OTLP/HTTP port given as --jaeger-url, or a port where nothing listens, are named as such."""
    with Jaeger() as jaeger:
        otlp, otlp_http = f"http://{jaeger.otlp_grpc_endpoint}", jaeger.otlp_http_endpoint
        runs = {
            "query": _start_check(None, jaeger.url, "check-direct", otlp=otlp),
            "otlp-port": _start_check(None, otlp_http, "check-otlp-port", "--wait", "2", otlp=otlp),
            "nothing": _start_check(None, f"http://127.0.0.1:{free_port()}", "check-nothing", "--wait", "2", otlp=otlp),
        }
        done = {name: _finish(process) for name, process in runs.items()}
    found = done["query"]
    assert found.code == 0 and found.status()["jaeger"] == "pass", found.describe()
    assert found.steps["jaeger"]["data"]["trace_id"] == found.steps["canary call"]["data"]["trace_id"]
    for name in ("otlp-port", "nothing"):
        run = done[name]
        run.show("jaeger")
        assert run.code == 1 and run.status()["jaeger"] == "fail", run.describe()
        assert run.status()["canary call"] == "pass", run.describe()
        assert "query service" in (run.steps["jaeger"]["hint"] or ""), run.describe()
    assert "connection refused" in done["nothing"].steps["jaeger"]["summary"]
    assert f"{otlp_http} answers 40" in done["otlp-port"].steps["jaeger"]["summary"]
