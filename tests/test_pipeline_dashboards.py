"""Every dashboard panel, template variable, rule input and datasource query of ``grafana/`` returns data from a
Prometheus 3 that got its metrics ONLY through the shipped collector, in both of Mimir's naming schemes.

    otel-llm demo (upstream simulator under LLMServerMiddleware, instrumented openai SDK, demo gateway)
        --OTLP gRPC--> otelcol-llm --config collector-config/otelcol.yaml (unmodified)
            metrics --otlp_http/mimir--> fan-out --> Prometheus 3, UnderscoreEscapingWithSuffixes (shipped Mimir)
                                                 --> Prometheus 3, UnderscoreEscapingWithoutSuffixes (Mimir default)
            traces  --otlp_grpc/tempo--> Jaeger v2;  logs --otlp_http/loki--> the project's OTLP receiver

Nobody scrapes anything here: the demo's own /metrics endpoint is on a free port nobody reads; the only
Prometheus scrape is the collector's own ``prometheus/self`` receiver, inside the collector, as shipped.
The queries are tests/dashboard_queries.py's (the same extraction tests/test_dashboards_live.py runs against
scraped data). The demo plays the client, the server side (gen_ai.server.*) and the gateway (llm.gateway.*),
so every producer the dashboards read from is present.

``EXPECTED_EMPTY`` lists what cannot have data through this path, with the reason; the test checks that each
listed query really is empty (in both schemes), so the list cannot rot: once fixed, the entry must go.

Exemplars: tests/test_pipeline_collector.py proves that error and spanmetrics latency exemplars carry trace ids
Jaeger returns; here only the dashboards' exemplar-enabled panels are checked to have exemplars whose traces
Jaeger returns.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dashboard_queries import (
    DASHBOARDS,
    EmptyPanel,
    Query,
    extract_queries,
    format_report,
    queries_without_data,
    render,
)
from tests.support.backends import NO_SUFFIXES, SUFFIXES, Jaeger, OTLPFanout, Prometheus3
from tests.support.faults import free_port
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import stop
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

# The demo's gateway scenario (otel_llm/demo/gateway.py) opens Anthropic's breaker 20-36 s into its cycle, and
# the collector flushes spanmetrics every 15 s and scrapes itself every 15 s: allow for a first cycle plus that.
DATA_TIMEOUT = 120.0
EXPORT_INTERVAL_MS = 2000

# (dashboard or rule group, panel/variable/rule name) -> why it has no data through this path.
# Each entry must really be empty in both schemes (test_expected_empty_is_really_empty).
EXPECTED_EMPTY: dict[tuple[str, str], str] = {
    ("otel_llm_pipeline", "OtelCollectorExportFailing"): (
        "otelcol_exporter_send_failed_{spans,metric_points,log_records} exist only once an export failed: the "
        "collector (v0.161) creates them at the first failure, a healthy pipeline has none (its :8888 shows only "
        "otelcol_exporter_sent_*); tests/test_check_pipeline.py sees them appear when the exporter's path is wrong"),
}


@dataclass
class DashboardPipeline:
    pipeline: Pipeline
    demo: subprocess.Popen[bytes]
    demo_log: Path
    service: str
    started: float

    def prometheus(self, scheme: str) -> Prometheus3:
        return self.pipeline.suffixes if scheme == "suffixes" else self.pipeline.plain

    def diagnostics(self) -> str:
        demo = self.demo_log.read_text(errors="replace")[-2000:] if self.demo_log.exists() else ""
        return (f"fan-out failures: {self.pipeline.fanout.failures[-3:]}\n--- demo ---\n{demo}\n"
                f"--- collector log ---\n{self.pipeline.log()}")


@pytest.fixture(scope="module")
def dashboards() -> Iterator[DashboardPipeline]:
    binary = _collector_binary()
    PORTS_LOCK.touch(exist_ok=True)
    with open(PORTS_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests/test_pipeline_collector.py's lock: one shipped config at a time
        held = {port: why for port in FIXED_PORTS if (why := _port_holder(port))}
        if held:
            pytest.fail(f"the shipped otelcol.yaml binds fixed ports, and these are taken on this machine: {held}")
        tmp = Path(tempfile.mkdtemp(prefix="otel-llm-dashboards-"))
        with Prometheus3(translation_strategy=SUFFIXES) as suffixes, \
                Prometheus3(translation_strategy=NO_SUFFIXES) as plain, \
                Jaeger() as jaeger, OTLPReceiver(grpc=False, http=True) as logs, \
                OTLPFanout([suffixes.otlp_endpoint, plain.otlp_endpoint]) as fanout:
            env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
            env.update({
                "MIMIR_OTLP_ENDPOINT": fanout.url,
                "TEMPO_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
                "LOKI_OTLP_ENDPOINT": logs.http_endpoint,
                "DEPLOYMENT_ENVIRONMENT": "dashboards-test",
            })
            run = uuid.uuid4().hex[:8]
            pipeline = Pipeline(suffixes, plain, jaeger, logs, fanout, tmp / "otelcol.log", run,
                                command=[binary, f"--config={CONFIG}"], env=env)
            demo = None
            try:
                pipeline.start_collector()
                service = f"dash-demo-{run}"
                demo_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
                demo_env.update({"OTEL_SERVICE_NAME": service, "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_INTERVAL_MS)})
                demo_log = tmp / "demo.log"
                with open(demo_log, "wb") as out:
                    demo = subprocess.Popen(
                        [sys.executable, "-m", "otel_llm.cli", "demo", "--fast", "--rate", "10", "--duration", "600",
                         "--otlp-endpoint", "http://127.0.0.1:4317", "--metrics-port", str(free_port()),
                         "--gateway-port", "0", "--interval", "30", "--seed", "11", "--error-rate", "0.05"],
                        env=demo_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                yield DashboardPipeline(pipeline, demo, demo_log, service, time.monotonic())
            finally:
                stop(demo)
                pipeline.stop_collector()
                shutil.rmtree(tmp, ignore_errors=True)


def _key(entry: EmptyPanel | Query) -> tuple[str, str]:
    return entry.dashboard, entry.panel


def _empty_after_waiting(dashboards: DashboardPipeline, prom: Prometheus3, queries: list[Query]) -> list[EmptyPanel]:
    """The queries still empty once the demo had DATA_TIMEOUT seconds (from its start) to fill them."""
    deadline = dashboards.started + DATA_TIMEOUT
    while True:
        if dashboards.demo.poll() is not None:
            pytest.fail(f"otel-llm demo exited with {dashboards.demo.returncode}\n{dashboards.diagnostics()}")
        empty = queries_without_data(prom.url, queries)
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(2)


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_every_panel_variable_and_rule_returns_data_through_the_collector(
        dashboards: DashboardPipeline, scheme: str) -> None:
    prom = dashboards.prometheus(scheme)
    queries = extract_queries()
    assert {q.kind for q in queries} >= {"panel", "variable", "recording", "alert", "datasource"}
    required = [q for q in queries if _key(q) not in EXPECTED_EMPTY]
    empty = _empty_after_waiting(dashboards, prom, required)
    print(f"[{scheme}] {sum(len(q.probes) for q in required)} probes of {len(required)} queries; "
          f"{len(empty)} empty")
    assert not empty, (
        f"[{scheme}] {len(empty)} queries returned no data from the Prometheus fed only through the collector:\n"
        f"{format_report(empty)}\n{dashboards.diagnostics()}")


def test_expected_empty_is_really_empty(dashboards: DashboardPipeline) -> None:
    """Each EXPECTED_EMPTY entry names a real query and every probe of it is empty in both schemes (else: delete
    the entry)."""
    queries = extract_queries()
    unknown = [key for key in EXPECTED_EMPTY if key not in {_key(q) for q in queries}]
    assert not unknown, f"EXPECTED_EMPTY names queries that do not exist (renamed?): {unknown}"
    listed = [q for q in queries if _key(q) in EXPECTED_EMPTY]
    probes = {key: sum(len(q.probes) for q in listed if _key(q) == key) for key in EXPECTED_EMPTY}
    # give the data its time: every other query has data first (or the time is up)
    for scheme in ("suffixes", "plain"):
        _empty_after_waiting(dashboards, dashboards.prometheus(scheme), [q for q in queries if q not in listed])
    for scheme in ("suffixes", "plain"):
        empty = [_key(e) for e in queries_without_data(dashboards.prometheus(scheme).url, listed)]
        has_data = [key for key in EXPECTED_EMPTY if empty.count(key) != probes[key]]
        assert not has_data, f"[{scheme}] listed as empty but returning data (remove from EXPECTED_EMPTY): {has_data}"


def test_the_two_schemes_hold_different_names(dashboards: DashboardPipeline) -> None:
    """The naming trap is real on this path: each Prometheus holds its scheme's names only."""
    suffixes, plain = dashboards.pipeline.suffixes, dashboards.pipeline.plain
    service = dashboards.service
    for prom in (suffixes, plain):  # what they hold came by OTLP from the collector: they scrape nothing
        assert prom.targets() == [], prom.targets_summary()
    for prom, name in ((suffixes, "gen_ai_client_operation_duration_seconds_count"),
                       (plain, "gen_ai_client_operation_duration_count")):
        prom.wait_for_series(f'{name}{{job="{service}"}}', timeout=DATA_TIMEOUT)
    for prom, wrong in ((suffixes, "gen_ai_client_operation_duration_count"),
                        (plain, "gen_ai_client_operation_duration_seconds_count"),
                        (plain, "llm_client_cost_total")):
        assert not prom.query(f'{wrong}{{job="{service}"}}'), f"{prom.translation_strategy} stored {wrong}"


def _exemplar_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel, rendered expr) of every dashboard target with exemplars switched on."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        stack = list(board.get("panels", []))
        while stack:
            panel = stack.pop()
            stack += panel.get("panels", [])
            for target in panel.get("targets", []):
                if target.get("exemplar") and "expr" in target:
                    found.append((board["title"], panel.get("title", ""), render(target["expr"])))
    return found


def test_exemplar_panels_open_traces_that_jaeger_returns(dashboards: DashboardPipeline) -> None:
    """Every panel that shows exemplars has some, and the traces behind them (the sampled ones: the shipped
    tail sampling keeps errors and 10% of the rest) are in the trace store under the exemplar's trace_id."""
    targets = _exemplar_targets()
    assert targets, "no dashboard target has exemplars on"
    prom = dashboards.pipeline.suffixes
    jaeger = dashboards.pipeline.jaeger
    now = time.time()
    missing = []
    for dashboard, panel, expr in targets:
        series = prom.exemplars(expr, start=now - 3600, end=now + 60)
        trace_ids = {e["labels"].get("trace_id") for s in series for e in s["exemplars"]}
        if not trace_ids or None in trace_ids:
            missing.append(f"{dashboard} / {panel}: exemplar trace ids {sorted(map(str, trace_ids))[:5]}")
            continue
        if not any(jaeger.trace(trace_id) for trace_id in sorted(trace_ids)):
            missing.append(f"{dashboard} / {panel}: none of {len(trace_ids)} exemplar traces is in Jaeger")
    assert not missing, "\n".join(missing) + f"\n{dashboards.diagnostics()}"
