"""The real backends (tests/support/backends.py) are real, and behave as the product assumes.

The otel_llm Recorder, through the real OpenTelemetry SDK and its OTLP exporters, pushes:

* metrics to two Prometheus 3 servers built from their Go module, one per naming scheme of Mimir's
  ``/otlp`` (the same translator): with suffixes (what deploy/ ships) and without (Mimir's default);
* spans to a Jaeger v2 built from its Go module, one service over OTLP/gRPC and one over OTLP/HTTP.

Then the names the real translator stored are compared with docs/naming.md, the exemplars' trace ids with
the spans the calls made, and Jaeger's search by service and by ``gen_ai.request.model`` with what was sent.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_llm import semconv as sc
from otel_llm.content import CaptureMode
from otel_llm.pricing import PriceTable
from otel_llm.recorder import Recorder
from tests.support.backends import NO_SUFFIXES, SUFFIXES, Jaeger, Prometheus3, backend_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# (operation, provider, request model, response model, streamed chunks, error or None, input, output tokens)
CALLS = [
    ("chat", "openai", "gpt-4o", "gpt-4o-2024-08-06", 0, None, 120, 30),
    ("chat", "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 6, None, 80, 200),
    ("chat", "openai", "gpt-4o-mini", None, 0, TimeoutError("upstream timed out"), None, None),
]


@dataclass
class Pushed:
    suffixes: Prometheus3
    plain: Prometheus3
    jaeger: Jaeger
    service: str  # spans by OTLP/gRPC, metrics by OTLP/HTTP
    http_service: str  # spans by OTLP/HTTP
    trace_models: dict[str, str] = field(default_factory=dict)  # trace id (hex) -> request model
    http_trace_ids: set[str] = field(default_factory=set)


def _make_calls(recorder: Recorder, calls: list[tuple[Any, ...]]) -> dict[str, str]:
    trace_models = {}
    for operation, provider, model, response_model, chunks, error, input_tokens, output_tokens in calls:
        call = recorder.start_call(operation, provider, model, server_address="api.example.test", server_port=443,
                                   stream=bool(chunks))
        trace_models[format(call.span.get_span_context().trace_id, "032x")] = model
        for _ in range(chunks):
            time.sleep(0.002)
            call.chunk()
        if error is not None:
            call.fail(error)
            continue
        call.set_response(model=response_model, response_id=f"resp-{uuid.uuid4().hex[:8]}", finish_reasons=["stop"])
        call.set_usage(input_tokens, output_tokens)
        call.end()
    return trace_models


@pytest.fixture(scope="module")
def pushed() -> Any:
    run = uuid.uuid4().hex[:8]
    with Prometheus3(translation_strategy=SUFFIXES) as suffixes, Prometheus3(translation_strategy=NO_SUFFIXES) as plain, \
            Jaeger() as jaeger:
        result = Pushed(suffixes, plain, jaeger, f"otel-llm-backends-{run}", f"otel-llm-backends-http-{run}")
        resource = Resource.create({"service.name": result.service, "deployment.environment.name": "backends-test"})
        readers = [
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=prom.otlp_metrics_url),
                                          export_interval_millis=3_600_000)
            for prom in (suffixes, plain)
        ]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            BatchSpanProcessor(GrpcSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True))
        )
        http_provider = TracerProvider(resource=Resource.create({"service.name": result.http_service}))
        http_provider.add_span_processor(
            BatchSpanProcessor(HttpSpanExporter(endpoint=f"{jaeger.otlp_http_endpoint}/v1/traces"))
        )
        recorder = Recorder(tracer_provider=tracer_provider, meter_provider=meter_provider, prices=PriceTable(),
                            capture=CaptureMode.NO_CONTENT)
        http_recorder = Recorder(tracer_provider=http_provider, meter_provider=MeterProvider(), prices=PriceTable(),
                                 capture=CaptureMode.NO_CONTENT)
        try:
            result.trace_models = _make_calls(recorder, CALLS)
            result.http_trace_ids = set(_make_calls(http_recorder, CALLS[:1]))
            assert tracer_provider.force_flush(10_000) and http_provider.force_flush(10_000)
            assert meter_provider.force_flush(10_000)
            yield result
        finally:
            meter_provider.shutdown()
            tracer_provider.shutdown()
            http_provider.shutdown()


def _naming_table() -> dict[str, tuple[str, str]]:
    """docs/naming.md: OTel metric name -> (first name with suffixes, first name without)."""
    table = {}
    for line in (ROOT / "docs" / "naming.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        otel = re.findall(r"`([^`]+)`", cells[0])[0]
        with_suffixes = re.findall(r"`([^`]+)`", cells[1])
        without = re.findall(r"`([^`]+)`", cells[2])
        if with_suffixes:
            table[otel] = (with_suffixes[0], with_suffixes[0] if cells[2].startswith("same") else without[0])
    return table


def _buildinfo(prom: Prometheus3) -> dict[str, Any]:
    return prom.api("status/buildinfo")


# ------------------------------------------------------------------------------------------ Prometheus 3


def test_prometheus_is_version_3_with_the_configured_naming_schemes(pushed: Pushed) -> None:
    for prom, strategy in ((pushed.suffixes, SUFFIXES), (pushed.plain, NO_SUFFIXES)):
        assert _buildinfo(prom)["version"].startswith("3."), _buildinfo(prom)
        config = prom.api("status/config")["yaml"]
        assert f"translation_strategy: {strategy}" in config, config
        flags = prom.api("status/flags")
        assert flags["web.enable-otlp-receiver"] == "true"
        assert "exemplar-storage" in flags["enable-feature"]


def test_with_suffixes_the_translator_adds_unit_and_type_suffixes(pushed: Pushed) -> None:
    names = pushed.suffixes.wait_for_metric_names(
        lambda n: "gen_ai_client_operation_duration_seconds_bucket" in n and "llm_client_cost_total" in n
    )
    assert "gen_ai_client_operation_duration_bucket" not in names
    assert "llm_client_cost" not in names
    assert "gen_ai_client_token_usage_bucket" in names  # a {token} unit is an annotation: no suffix


def test_without_suffixes_the_translator_keeps_the_bare_names(pushed: Pushed) -> None:
    names = pushed.plain.wait_for_metric_names(
        lambda n: "gen_ai_client_operation_duration_bucket" in n and "llm_client_cost" in n
    )
    assert not [n for n in names if n.endswith(("_seconds_bucket", "_seconds_count", "_total"))], names
    assert "gen_ai_client_token_usage_bucket" in names


def test_stored_names_are_the_ones_docs_naming_md_promises(pushed: Pushed) -> None:
    """Every metric the recorder emitted is stored under the name docs/naming.md gives for its scheme."""
    emitted = [sc.METRIC_OPERATION_DURATION, sc.METRIC_TOKEN_USAGE, sc.METRIC_TIME_TO_FIRST_CHUNK,
               sc.METRIC_TIME_PER_OUTPUT_CHUNK, sc.METRIC_COST]
    table = _naming_table()
    missing_rows = [name for name, _unit, _description in emitted if name not in table]
    assert not missing_rows, f"docs/naming.md has no row for {missing_rows}"
    for prom, column in ((pushed.suffixes, 0), (pushed.plain, 1)):
        expected = {table[name][column] for name, _unit, _description in emitted}
        names = prom.wait_for_metric_names(lambda n, expected=expected: expected <= set(n))
        assert expected <= set(names)


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_histogram_series_labels_and_buckets(pushed: Pushed, scheme: str) -> None:
    prom: Prometheus3 = getattr(pushed, scheme)
    base = "gen_ai_client_operation_duration" + ("_seconds" if scheme == "suffixes" else "")
    selector = f'{base}_count{{job="{pushed.service}"}}'
    series = prom.wait_for_series(selector)
    by_model = {s["metric"]["gen_ai_request_model"]: s for s in series}
    assert set(by_model) == {model for _o, _p, model, *_rest in CALLS}
    for s in series:
        assert float(s["value"][1]) == 1.0
        labels = s["metric"]
        assert labels["service_name"] == pushed.service  # promoted, as the shipped Mimir does
        assert labels["deployment_environment_name"] == "backends-test"
        assert labels["gen_ai_operation_name"] == "chat"
    assert by_model["gpt-4o-mini"]["metric"].get("error_type") == "TimeoutError"
    assert "error_type" not in by_model["gpt-4o"]["metric"]
    buckets = prom.query(f'{base}_bucket{{job="{pushed.service}", gen_ai_request_model="gpt-4o"}}')
    bounds = sorted(float(b["metric"]["le"]) for b in buckets)
    assert bounds == [*sorted(float(b) for b in sc.DURATION_BUCKETS), float("inf")]
    streamed = prom.query_value(
        f'sum({base.replace("duration", "time_per_output_chunk")}_count{{job="{pushed.service}"}})'
    )
    assert streamed == 5.0  # six chunks: one time-to-first-chunk, five gaps


@pytest.mark.parametrize("scheme", ["suffixes", "plain"])
def test_exemplars_carry_the_trace_ids_of_the_calls(pushed: Pushed, scheme: str) -> None:
    prom: Prometheus3 = getattr(pushed, scheme)
    base = "gen_ai_client_operation_duration" + ("_seconds" if scheme == "suffixes" else "")
    found = prom.wait_for_exemplars(f'{base}_bucket{{job="{pushed.service}"}}')
    seen = {}
    for series in found:
        for exemplar in series["exemplars"]:
            trace_id = exemplar["labels"]["trace_id"]
            assert re.fullmatch(r"[0-9a-f]{32}", trace_id), exemplar
            assert re.fullmatch(r"[0-9a-f]{16}", exemplar["labels"].get("span_id", "")), exemplar
            seen[trace_id] = series["seriesLabels"]["gen_ai_request_model"]
    # each exemplar sits on the series of the call whose trace it names
    assert seen and all(pushed.trace_models.get(trace_id) == model for trace_id, model in seen.items()), (
        seen, pushed.trace_models)
    assert set(seen.values()) == set(pushed.trace_models.values())


# ------------------------------------------------------------------------------------------ Jaeger v2


def test_jaeger_is_v2_and_lists_both_services(pushed: Pushed) -> None:
    binary = backend_binary("JAEGER_BIN", "jaeger")
    version = json.loads(subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
                         .stdout.strip().splitlines()[-1])["gitVersion"]
    assert version.startswith("v1.") and int(version.split(".")[1]) >= 60, version  # Jaeger v2 is tagged v1.6x+
    with urllib.request.urlopen(f"{pushed.jaeger.url}/api/services", timeout=5) as response:
        assert response.status == 200
    pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    pushed.jaeger.wait_for_traces(pushed.http_service)
    assert {pushed.service, pushed.http_service} <= set(pushed.jaeger.services())


def test_jaeger_finds_the_calls_by_service(pushed: Pushed) -> None:
    traces = pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    assert {int(t["traceID"], 16) for t in traces} == {int(t, 16) for t in pushed.trace_models}
    http_traces = pushed.jaeger.wait_for_traces(pushed.http_service)
    assert {int(t["traceID"], 16) for t in http_traces} == {int(t, 16) for t in pushed.http_trace_ids}
    for trace in traces:
        (span,) = trace["spans"]
        tags = Jaeger.span_tags(span)
        assert span["operationName"] == f"chat {tags['gen_ai.request.model']}"
        assert tags["span.kind"] == "client"
        assert tags["gen_ai.provider.name"] in {"openai", "anthropic"}
        assert Jaeger.process_tags(trace, span)["deployment.environment.name"] == "backends-test"


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"])
def test_jaeger_finds_the_calls_by_gen_ai_request_model(pushed: Pushed, model: str) -> None:
    pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    traces = pushed.jaeger.find_traces(pushed.service, {"gen_ai.request.model": model})
    wanted = {int(t, 16) for t, m in pushed.trace_models.items() if m == model}
    assert {int(t["traceID"], 16) for t in traces} == wanted


def test_jaeger_tag_search_filters_and_finds_errors(pushed: Pushed) -> None:
    pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    assert pushed.jaeger.find_traces(pushed.service, {"gen_ai.request.model": "no-such-model"}) == []
    failed = pushed.jaeger.find_traces(pushed.service, {"error.type": "TimeoutError"})
    assert [Jaeger.span_tags(t["spans"][0])["gen_ai.request.model"] for t in failed] == ["gpt-4o-mini"]
    assert Jaeger.span_tags(failed[0]["spans"][0])["otel.status_code"] == "ERROR"


def test_exemplar_trace_ids_are_found_in_jaeger(pushed: Pushed) -> None:
    """What Grafana does with an exemplar: open its trace id in the trace store."""
    pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    found = pushed.suffixes.wait_for_exemplars(f'gen_ai_client_operation_duration_seconds_bucket{{job="{pushed.service}"}}')
    trace_ids = {e["labels"]["trace_id"] for series in found for e in series["exemplars"]}
    assert trace_ids
    for trace_id in trace_ids:
        trace = pushed.jaeger.trace(trace_id)
        assert trace is not None, f"exemplar trace {trace_id} not in Jaeger"
        assert Jaeger.span_tags(trace["spans"][0])["gen_ai.request.model"] == pushed.trace_models[trace_id]
    assert pushed.jaeger.trace("0123456789abcdef0123456789abcdef") is None


def test_jaeger_memory_store_error_tag_search_does_not_find_errors(pushed: Pushed) -> None:
    """A limitation of Jaeger v1.76.0 that anything searching Jaeger for errors (``otel-llm check
    --jaeger-url``, docs) must work around: on its v2 memory store, ``tags={"error":"true"}`` (the UI's
    search) arrives as the string "true", read as boolean false, so it matches spans with status OK and never
    the failed ones. Search by ``error.type`` instead. When this test fails, Jaeger fixed it: drop the
    workaround (tests/test_pipeline_collector.py's ``_error_traces``)."""
    pushed.jaeger.wait_for_traces(pushed.service, minimum=len(CALLS))
    error_search = pushed.jaeger.find_traces(pushed.service, {"error": "true"})
    failed_trace = {int(t, 16) for t, model in pushed.trace_models.items() if model == "gpt-4o-mini"}
    assert not {int(t["traceID"], 16) for t in error_search} & failed_trace
    by_type = pushed.jaeger.find_traces(pushed.service, {"error.type": "TimeoutError"})
    assert {int(t["traceID"], 16) for t in by_type} == failed_trace
