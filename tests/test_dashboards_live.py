"""Every PromQL query of every dashboard, rule and datasource returns data from a real Prometheus.

A real `prometheus` (Debian package) scrapes the /metrics endpoint of the
instrumented demo under LLM traffic (fixture ``llm_metrics_source``), once per
metric naming scheme:

* ``prometheus-exposition``: what a scrape of the SDK's Prometheus endpoint (or a
  remote write) stores: ``gen_ai_client_operation_duration_seconds_bucket``,
  ``llm_client_cost_total``, plus ``otel_scope_*`` labels.
* ``otlp-into-mimir-default``: what OTLP into Mimir stores by default (no unit or
  type suffixes, no scope labels): ``gen_ai_client_operation_duration_bucket``,
  ``llm_client_cost``. Mimicked with ``metric_relabel_configs``.
* ``otlp-into-mimir-with-suffixes``: what the shipped stack stores (deploy/mimir
  sets ``otel_metric_suffixes_enabled: true``): like the exposition, but no scope
  labels, a gauge of unit ``1`` gets ``_ratio``, and ``{token}/s`` a second ``_per_second``
  (the real translation: tests/test_pipeline_dashboards.py).

The test names every dashboard panel, variable, rule or datasource query that
returns nothing.

Optional producers: the gateway metrics of issue 5 (``llm.gateway.*``,
``llm.client.active_requests``) and the collector's own telemetry and
spanmetrics connector are not emitted by the instrumented service. Queries on
them are reported but do not fail the test UNLESS the source says it provides
them. The demo plays a small gateway and provides the gateway metrics, so
every provider-health panel is enforced. No collector runs here, so the
collector-fed alert probes are only covered by `promtool test rules`
(tests/test_rules.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from tests.dashboard_queries import (
    OPTIONAL_SOURCES,
    Query,
    extract_queries,
    format_report,
    optional_source,
    queries_without_data,
)
from tests.support.faults import free_port
from tests.support.prometheus import PrometheusServer, ScrapeJob

pytestmark = pytest.mark.slow

GATEWAY = next(name for name in OPTIONAL_SOURCES if name.startswith("gateway"))
JOB = "otel-llm"  # the job name of collector-config/prometheus/scrape.yaml; the alerts select on it
DATA_TIMEOUT = 45.0

_DROP_SCOPE_LABELS = {"regex": "otel_scope_.+", "action": "labeldrop"}

# metric_relabel_configs that turn the exposition names into what Mimir's OTLP endpoint stores.
SCHEMES: dict[str, list[dict]] = {
    "prometheus-exposition": [],
    "otlp-into-mimir-default": [
        {"source_labels": ["__name__"], "regex": "(.+)_seconds_(bucket|sum|count)", "target_label": "__name__", "replacement": "${1}_${2}"},
        {"source_labels": ["__name__"], "regex": "(.+)_total", "target_label": "__name__", "replacement": "${1}"},
        _DROP_SCOPE_LABELS,
    ],
    "otlp-into-mimir-with-suffixes": [
        # gauge with unit "1": Mimir's translation appends _ratio (the Python exporter does not)
        {"source_labels": ["__name__"], "regex": "(llm_gateway_(?:provider_health|model_availability))", "target_label": "__name__", "replacement": "${1}_ratio"},
        # unit {token}/s: the translator appends _per_second although the name ends in it already
        {"source_labels": ["__name__"], "regex": "(llm_client_stream_output_tokens_per_second)_(bucket|sum|count)", "target_label": "__name__", "replacement": "${1}_per_second_${2}"},
        _DROP_SCOPE_LABELS,
    ],
}


@dataclass
class MetricsSource:
    """A scrape target under LLM traffic, and which optional producers' series it carries."""

    target: str  # host:port serving /metrics
    provides: set[str] = field(default_factory=set)  # keys of OPTIONAL_SOURCES




def _wait_for_metrics(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"traffic generator exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if b"gen_ai_client_operation_duration" in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} served no LLM metrics within {timeout}s")


@pytest.fixture(scope="module")
def llm_metrics_source() -> Iterator[MetricsSource]:
    """The instrumented demo (`otel-llm demo`: upstream simulator, real openai SDK, steady traffic with
    streams and deliberate errors) serving its Prometheus endpoint on 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_llm.cli", "demo", "--fast", "--rate", "20", "--duration", "300",
         "--metrics-port", str(port), "--interval", "60", "--seed", "11", "--error-rate", "0.05",
         "--gateway-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_metrics(f"http://127.0.0.1:{port}/metrics", process)
        # the demo's gateway (otel_llm.demo.gateway) emits every gateway metric: its panels are enforced
        yield MetricsSource(f"127.0.0.1:{port}", provides={GATEWAY})
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def prometheus_per_scheme(llm_metrics_source: MetricsSource) -> Iterator[dict[str, PrometheusServer]]:
    """One real Prometheus per naming scheme, all scraping the same source every second."""
    servers = {
        scheme: PrometheusServer(
            [ScrapeJob([llm_metrics_source.target], job_name=JOB, extra={"metric_relabel_configs": relabel} if relabel else {})],
            scrape_interval=1.0,
        )
        for scheme, relabel in SCHEMES.items()
    }
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _split(queries: list[Query], source: MetricsSource) -> tuple[list[Query], list[Query]]:
    required, optional = [], []
    for query in queries:
        producer = optional_source(query.rendered)
        (optional if producer and producer not in source.provides else required).append(query)
    return required, optional


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_panel_and_rule_returns_data(
    scheme: str, prometheus_per_scheme: dict[str, PrometheusServer], llm_metrics_source: MetricsSource
) -> None:
    prometheus = prometheus_per_scheme[scheme]
    queries = extract_queries()
    assert len({q.source for q in queries}) >= 5, "expected 3 dashboards, 2 rule files and the datasources"
    required, optional = _split(queries, llm_metrics_source)

    deadline = time.monotonic() + DATA_TIMEOUT
    while True:  # Prometheus scrapes first ~5 s after start, rate() needs two samples
        empty = queries_without_data(prometheus.url, required)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1)

    optional_empty = queries_without_data(prometheus.url, optional)
    if optional_empty:
        # Not a failure: their producer is not part of this source (see module doc).
        print(f"[{scheme}] optional queries without data (producer absent):\n{format_report(optional_empty)}")
    assert not empty, (
        f"[{scheme}] {len(empty)} of {sum(len(q.probes) for q in required)} queries returned no data:\n"
        f"{format_report(empty)}\ntargets:\n{prometheus.targets_summary()}"
    )


def test_the_schemes_really_differ(prometheus_per_scheme: dict[str, PrometheusServer]) -> None:
    """The naming trap is real here: a hard-coded name works in one scheme and is empty in the other."""
    exposition = prometheus_per_scheme["prometheus-exposition"]
    mimir = prometheus_per_scheme["otlp-into-mimir-default"]
    exposition.wait_for_series("gen_ai_client_operation_duration_seconds_bucket", timeout=30)
    mimir.wait_for_series("gen_ai_client_operation_duration_bucket", timeout=30)
    mimir.wait_for_series("llm_client_cost", timeout=30)

    assert not exposition.query("gen_ai_client_operation_duration_bucket")
    assert not mimir.query("gen_ai_client_operation_duration_seconds_bucket")
    assert not mimir.query("llm_client_cost_total")
    assert not mimir.query('{__name__=~".+_total|.+_seconds_(bucket|sum|count)"}'), "relabelling left a suffix"
    assert not mimir.query('{otel_scope_name!=""}'), "Mimir's OTLP endpoint adds no scope labels by default"
    suffixed = prometheus_per_scheme["otlp-into-mimir-with-suffixes"]
    suffixed.wait_for_series("llm_client_cost_total", timeout=30)
    suffixed.wait_for_series("llm_gateway_provider_health_ratio", timeout=30)
    assert not suffixed.query("llm_gateway_provider_health")
    suffixed.wait_for_series("llm_client_stream_output_tokens_per_second_per_second_count", timeout=30)
    assert not suffixed.query("llm_client_stream_output_tokens_per_second_count")
    assert not suffixed.query('{otel_scope_name!=""}')


def test_checker_names_a_panel_without_data(prometheus_per_scheme: dict[str, PrometheusServer]) -> None:
    """Negative control: a query on a series nobody emits is reported with its dashboard and panel."""
    prometheus = prometheus_per_scheme["prometheus-exposition"]
    prometheus.wait_for_series("gen_ai_client_operation_duration_seconds_count", timeout=30)
    bogus = Query(
        "grafana/dashboards/x.json", "Some dashboard", "Misspelled panel", "panel",
        "sum(rate(gen_ai_client_operation_duration_count_typo[1m]))",
        "sum(rate(gen_ai_client_operation_duration_count_typo[1m]))",
        ("sum(rate(gen_ai_client_operation_duration_count_typo[1m]))",),
    )
    nan = Query("x", "Some dashboard", "NaN panel", "panel", "0/0", "0/0", ("0/0",))
    empty = queries_without_data(prometheus.url, [bogus, nan])
    assert [(e.dashboard, e.panel) for e in empty] == [("Some dashboard", "Misspelled panel"), ("Some dashboard", "NaN panel")]
