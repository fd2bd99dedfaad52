"""The bytes arrive: OTLP over real gRPC and HTTP, Prometheus exposition scraped by a real Prometheus,
and ``opentelemetry-instrument`` picking the instrumentor up by entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import openai
import pytest

from otel_llm import semconv as sc
from otel_llm.sdk import ConfigError, configure
from tests.support.faults import free_port

from .conftest import API_KEY

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "hello exporters"}]


def _calls(upstream):
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="error-500", messages=MESSAGES)
    return completion, chunks




@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_push_delivers_spans_and_metrics_with_exemplars(protocol, otlp_receiver, upstream):
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    telemetry = configure(
        "checkout-service",
        resource_attributes={"deployment.environment.name": "test"},
        traces_exporter="otlp",
        metrics_exporter="otlp",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        metric_export_interval_ms=60_000,
        set_global=False,
    )
    try:
        completion, _chunks = _calls(upstream)
    finally:
        telemetry.shutdown()  # flushes spans and collects metrics once

    spans = [s for s in otlp_receiver.spans() if s["scope"] == "otel_llm"]
    assert len(spans) == 3
    by_model = {s["attributes"][sc.REQUEST_MODEL]: s for s in spans}
    ok = by_model["gpt-4o-mini"]
    assert ok["kind"] == "CLIENT"
    assert ok["resource"]["service.name"] == "checkout-service"
    assert ok["resource"]["deployment.environment.name"] == "test"
    assert ok["attributes"][sc.USAGE_OUTPUT_TOKENS] == completion.usage.completion_tokens
    assert by_model["gpt-4o"]["attributes"][sc.REQUEST_STREAM] is True
    assert by_model["error-500"]["status_code"] == "ERROR"
    assert by_model["error-500"]["attributes"][sc.ERROR_TYPE] == "InternalServerError"

    points = otlp_receiver.metrics()
    names = {p["name"] for p in points}
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
        "llm.client.cost",
    } <= names
    duration = [p for p in points if p["name"] == "gen_ai.client.operation.duration"]
    assert all(p["temporality"] == "CUMULATIVE" for p in duration)
    assert duration[0]["explicit_bounds"] == list(sc.DURATION_BUCKETS)
    assert duration[0]["resource"]["service.name"] == "checkout-service"
    trace_ids = {s["trace_id"] for s in spans}
    exemplar_ids = {e["trace_id"] for p in duration for e in p["exemplars"]}
    assert exemplar_ids and exemplar_ids <= trace_ids
    failed = [p for p in duration if p["attributes"].get(sc.ERROR_TYPE) == "InternalServerError"]
    assert failed and failed[0]["count"] == 1
    for headers in otlp_receiver.headers:
        assert "authorization" not in headers


def test_otlp_settings_from_standard_env(otlp_receiver, upstream, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=llm-platform")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    telemetry = configure(set_global=False)
    try:
        _calls(upstream)
    finally:
        telemetry.shutdown()
    spans = otlp_receiver.spans()
    assert spans and all(s["resource"]["service.name"] == "from-env" for s in spans)
    assert spans[0]["resource"]["team"] == "llm-platform"
    assert any(r.transport == "http" for r in otlp_receiver.requests)
    assert otlp_receiver.metrics()


def test_prometheus_fallback_scraped_by_real_prometheus(prometheus_factory, upstream):
    telemetry = configure(
        "fallback-service",
        traces_exporter="none",
        metrics_exporter="prometheus",
        prometheus_host="127.0.0.1",
        prometheus_port=0,
        set_global=False,
    )
    try:
        _calls(upstream)
        host, port = telemetry.prometheus_address
        prometheus = prometheus_factory([f"{host}:{port}"])
        tokens = prometheus.wait_for_series('sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)')
        by_type = {r["metric"]["gen_ai_token_type"]: float(r["value"][1]) for r in tokens}
        assert by_type["input"] > 0 and by_type["output"] > 0
        latency = prometheus.query(
            'histogram_quantile(0.95, sum by (le, gen_ai_request_model) '
            '(gen_ai_client_operation_duration_seconds_bucket{gen_ai_provider_name="openai"}))'
        )
        assert {r["metric"]["gen_ai_request_model"] for r in latency} == {"gpt-4o-mini", "gpt-4o", "error-500"}
        errors = prometheus.query('sum(gen_ai_client_operation_duration_seconds_count{error_type!=""})')
        assert float(errors[0]["value"][1]) == 1
        cost = prometheus.query("sum(llm_client_cost_total)")
        assert float(cost[0]["value"][1]) > 0
        ttfc = prometheus.query("sum(gen_ai_client_operation_time_to_first_chunk_seconds_count)")
        assert float(ttfc[0]["value"][1]) == 1
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics_exporter": "otlp,zipkin"}, "unknown exporter zipkin"),
        ({"otlp_protocol": "http/json"}, "set OTEL_EXPORTER_OTLP_PROTOCOL to 'grpc'"),
        ({"metrics_exporter": "prometheus", "prometheus_port": 70000}, "not a port number"),
    ],
)
def test_bad_config_says_what_to_fix(kwargs, message):
    kwargs.setdefault("traces_exporter", "otlp")
    with pytest.raises(ConfigError, match=message):
        configure(set_global=False, **kwargs)


def test_prometheus_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve Prometheus metrics on 127.0.0.1:{port}"):
            configure(traces_exporter="none", metrics_exporter="prometheus", prometheus_host="127.0.0.1",
                      prometheus_port=port, set_global=False)


APP = textwrap.dedent(
    """
    import sys, urllib.request, openai
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-app-secret-key-123456", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True):
        pass
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics", timeout=5).read().decode()
    print("PROMETHEUS_HAS_TOKENS", "gen_ai_client_token_usage_bucket" in text)
    print("PROMETHEUS_HAS_DURATION", "gen_ai_client_operation_duration_seconds_bucket" in text)
    """
)


def _run_instrumented(tmp_path, app_source, upstream, otlp_receiver, service, **env):
    """``opentelemetry-instrument python app.py BASE_URL PROMETHEUS_PORT`` with OTLP to the receiver."""
    app = tmp_path / "app.py"
    app.write_text(app_source)
    prometheus_port = free_port()
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(prometheus_port),
        **env,
    }
    instrument = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    return subprocess.run([instrument, sys.executable, str(app), upstream.base_url, str(prometheus_port)],
                          env=env, capture_output=True, text=True, timeout=60)


def test_opentelemetry_instrument_picks_up_the_instrumentor(tmp_path, otlp_receiver, upstream):
    # the official instrumentation is installed too (for the benchmark): ours must coexist with it
    result = _run_instrumented(tmp_path, APP, upstream, otlp_receiver, "instrumented-app",
                               OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="openai")
    assert result.returncode == 0, result.stderr
    assert "PROMETHEUS_HAS_TOKENS True" in result.stdout
    assert "PROMETHEUS_HAS_DURATION True" in result.stdout
    spans = otlp_receiver.wait_for(lambda r: [s for s in r.spans() if s["scope"] == "otel_llm"] or None)
    assert len(spans) == 2
    assert {s["resource"]["service.name"] for s in spans} == {"instrumented-app"}
    assert all(s["attributes"][sc.USAGE_OUTPUT_TOKENS] > 0 for s in spans)
    assert otlp_receiver.wait_for(
        lambda r: {p["name"] for p in r.metrics()} >= {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"}
    )
    assert "sk-app-secret-key-123456" not in otlp_receiver.dump()


COST_APP = textwrap.dedent(
    """
    import sys, urllib.request, openai
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-app-secret-key-123456", max_retries=0)
    for model in ("gpt-4o-mini", "gpt-4o"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics", timeout=5).read().decode()
    print("COST", sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("llm_client_cost_total{")))
    """
)


def test_with_the_official_openai_instrumentation_active_too_cost_is_counted_once(tmp_path, otlp_receiver, upstream):
    """Both openai instrumentations under ``opentelemetry-instrument``: two spans per call, one cost."""
    result = _run_instrumented(tmp_path, COST_APP, upstream, otlp_receiver, "doubly-instrumented-app",
                               OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="")
    assert result.returncode == 0, result.stderr
    spans = otlp_receiver.wait_for(lambda r: (lambda found: found if len(found) >= 4 else None)(
        [s for s in r.spans() if s["resource"]["service.name"] == "doubly-instrumented-app"
         and s["attributes"].get(sc.OPERATION_NAME) == "chat"]))
    ours = [s for s in spans if s["scope"] == "otel_llm"]
    theirs = [s for s in spans if s["scope"] != "otel_llm"]
    assert len(ours) == 2 and len(theirs) == 2, [s["scope"] for s in spans]
    assert all(s["attributes"].get(sc.USAGE_OUTPUT_TOKENS) for s in theirs)  # theirs could be priced: it is not
    cost = float(result.stdout.split("COST", 1)[1].split()[0])
    assert cost > 0, result.stderr[-3000:]
    assert cost == pytest.approx(sum(s["attributes"][sc.COST_USD] for s in ours))
