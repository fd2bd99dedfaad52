"""`otel-llm check`: each step against what it checks, saying what is wrong in words.

* Metrics steps: a real Prometheus (one per module) scrapes a real instrumented service (the OTel
  SDK's Prometheus endpoint after real openai SDK calls) under two naming schemes (as scraped,
  and renamed the way Mimir's OTLP endpoint names by default), plus endpoints that block the
  scraper (401), redirect to HTTPS, carry no LLM series, carry exemplars (OpenMetrics), and
  record calls without tokens.
* Canary, Tempo and Loki steps: the canary's spans and logs go by real OTLP to a real receiver;
  Tempo and Loki answer from recorded responses in their documented formats
  (tests/data/recorded/), served on 127.0.0.1. A fixed id generator and seed give the canary the
  recorded trace id.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace.id_generator import IdGenerator

from otel_llm.check import FAIL, PASS, SKIP, WARN, CheckOptions, run_check
from otel_llm.cli import main
from otel_llm.sdk import configure
from tests.conftest import API_KEY
from tests.support.faults import free_port
from tests.support.prometheus import ScrapeJob

pytestmark = pytest.mark.slow

RECORDED = Path(__file__).parent / "data" / "recorded"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SEED = 424242
SCRAPE_TOKEN = "s3cret-scrape-token-0123456789"
MIMIR_DEFAULT_NAMES = [  # metric_relabel_configs: exposition names -> Mimir's OTLP names at its defaults
    {"source_labels": ["__name__"], "regex": "(.+)_seconds_(bucket|sum|count)", "target_label": "__name__",
     "replacement": "${1}_${2}"},
    {"source_labels": ["__name__"], "regex": "(.+)_total", "target_label": "__name__", "replacement": "${1}"},
    {"regex": "otel_scope_.+", "action": "labeldrop"},
]




def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; version=0.0.4",
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# ---------------------------------------------------------------------- the scraped side

_LABELS = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini"'
EXEMPLARS = f"""# TYPE gen_ai_client_operation_duration_seconds histogram
# UNIT gen_ai_client_operation_duration_seconds seconds
# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.
gen_ai_client_operation_duration_seconds_bucket{{{_LABELS},le="0.32"}} 1 # {{trace_id="{TRACE_ID}",span_id="53995c3f42cd8ad8"}} 0.25
gen_ai_client_operation_duration_seconds_bucket{{{_LABELS},le="+Inf"}} 1
gen_ai_client_operation_duration_seconds_count{{{_LABELS}}} 1
gen_ai_client_operation_duration_seconds_sum{{{_LABELS}}} 0.25
# TYPE gen_ai_client_token_usage histogram
# HELP gen_ai_client_token_usage Measures number of input and output tokens used.
gen_ai_client_token_usage_bucket{{{_LABELS},gen_ai_token_type="input",le="16"}} 1
gen_ai_client_token_usage_bucket{{{_LABELS},gen_ai_token_type="input",le="+Inf"}} 1
gen_ai_client_token_usage_count{{{_LABELS},gen_ai_token_type="input"}} 1
gen_ai_client_token_usage_sum{{{_LABELS},gen_ai_token_type="input"}} 9
gen_ai_client_token_usage_bucket{{{_LABELS},gen_ai_token_type="output",le="16"}} 1
gen_ai_client_token_usage_bucket{{{_LABELS},gen_ai_token_type="output",le="+Inf"}} 1
gen_ai_client_token_usage_count{{{_LABELS},gen_ai_token_type="output"}} 1
gen_ai_client_token_usage_sum{{{_LABELS},gen_ai_token_type="output"}} 16
# EOF
""".encode()
NO_TOKENS = f"""# TYPE gen_ai_client_operation_duration_seconds histogram
gen_ai_client_operation_duration_seconds_bucket{{{_LABELS},le="+Inf"}} 7
gen_ai_client_operation_duration_seconds_count{{{_LABELS}}} 7
gen_ai_client_operation_duration_seconds_sum{{{_LABELS}}} 2.5
""".encode()
IDLE = b"""# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="idle-service"} 1.0
"""


@dataclass
class Scraped:
    service: str  # host:port of the instrumented service's /metrics
    gate: str  # host:port of the other endpoints below
    tokens: dict[str, int]  # what the service recorded, by gen_ai.token.type
    calls: int


@pytest.fixture(scope="module")
def scraped(upstream) -> Iterator[Scraped]:
    """The instrumented service, after real calls (chat, streams, an error), and a second server
    with: /metrics proxying it behind a bearer token, /redirect/metrics (308 to https),
    /idle/metrics (no LLM series), /exemplars/metrics (OpenMetrics with exemplars),
    /notokens/metrics (calls without token usage)."""
    telemetry = configure("checked-service", traces_exporter="none", metrics_exporter="prometheus",
                          logs_exporter="none", prometheus_host="127.0.0.1", prometheus_port=0, set_global=False)
    tokens = {"input": 0, "output": 0}
    calls = []
    telemetry.recorder.add_listener(calls.append)
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o-mini"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hello {model}"}])
    for _chunk in client.chat.completions.create(model="gpt-4o", stream=True,
                                                 messages=[{"role": "user", "content": "stream please"}]):
        pass
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bad-model-x", messages=[{"role": "user", "content": "hi"}])
    for instrumentor in telemetry.instrumentors:  # done calling: leave the openai SDK to the canary tests
        instrumentor.uninstrument()
    telemetry.instrumentors.clear()
    for call in calls:
        tokens["input"] += call.input_tokens or 0
        tokens["output"] += call.output_tokens or 0
    service_url = telemetry.prometheus_url

    class Gate(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                if self.headers.get("Authorization") != f"Bearer {SCRAPE_TOKEN}":
                    return self._reply(401, b"Unauthorized\n", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
                with urllib.request.urlopen(service_url, timeout=5) as response:
                    return self._reply(200, response.read())
            if self.path == "/redirect/metrics":
                return self._reply(308, b"", headers={"Location": f"https://127.0.0.1:{self.server.server_address[1]}/metrics"})
            if self.path == "/idle/metrics":
                return self._reply(200, IDLE)
            if self.path == "/notokens/metrics":
                return self._reply(200, NO_TOKENS)
            if self.path == "/exemplars/metrics":
                return self._reply(200, EXEMPLARS, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            return self._reply(404, b"404 page not found\n")

    gate, gate_url = _serve(Gate)
    try:
        yield Scraped(service_url.split("//")[1].split("/")[0], gate_url.split("//")[1], tokens, len(calls))
    finally:
        gate.shutdown()
        gate.server_close()
        telemetry.shutdown()


@pytest.fixture(scope="module")
def prometheus(scraped, request) -> Iterator[Any]:
    from tests.support.prometheus import PrometheusServer

    jobs = [
        ScrapeJob([scraped.service], job_name="otel-llm"),
        ScrapeJob([scraped.service], job_name="mimir-default", extra={"metric_relabel_configs": MIMIR_DEFAULT_NAMES}),
        ScrapeJob([scraped.gate], job_name="auth-blocked"),
        ScrapeJob([scraped.gate], job_name="idle", metrics_path="/idle/metrics"),
        ScrapeJob([scraped.gate], job_name="exemplars", metrics_path="/exemplars/metrics"),
        ScrapeJob([scraped.gate], job_name="notokens", metrics_path="/notokens/metrics"),
    ]
    server = PrometheusServer(jobs, extra_flags=["--enable-feature=exemplar-storage"]).start()
    try:
        for job, health in (("otel-llm", "up"), ("mimir-default", "up"), ("auth-blocked", "down"), ("idle", "up"),
                            ("exemplars", "up"), ("notokens", "up")):
            server.wait_for_target(job, health)
        server.wait_for_series('gen_ai_client_token_usage_sum{job="mimir-default"}')
        server.wait_for_series('gen_ai_client_operation_duration_seconds_count{job="notokens"}')
        exemplar_query = '{__name__="gen_ai_client_operation_duration_seconds_bucket", job="exemplars"}'
        for _ in range(100):
            if server.exemplars(exemplar_query):
                break
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def _check(**kwargs: Any) -> tuple[int, Any, str]:
    import io

    kwargs.setdefault("canary", False)
    out = io.StringIO()
    code, report = run_check(CheckOptions(**kwargs), out)
    return code, report, out.getvalue()


def _statuses(report: Any) -> dict[str, str]:
    return {step.name: step.status for step in report.steps}


# ---------------------------------------------------------------------- Prometheus steps


def test_healthy_scrape_pipeline_passes_with_exact_tokens(scraped, prometheus):
    code, report, text = _check(metrics_url=f"http://{scraped.service}/metrics", prometheus_url=prometheus.url,
                                job="otel-llm")
    assert code == 0, text
    assert _statuses(report) == {
        "metrics endpoint": PASS, "scrape target": PASS, "metric families": PASS, "token usage": PASS,
        "exemplars": WARN, "canary call": SKIP, "tempo": SKIP, "jaeger": SKIP, "loki": SKIP,
    }
    families = report.step("metric families")
    assert families.data["scheme"] == "prometheus"
    assert "gen_ai_client_operation_duration_seconds_*, gen_ai_client_token_usage_* present" == families.summary
    assert any("they match" in d for d in families.details)
    assert any("gen_ai_client_operation_duration_bucket, llm_client_cost) finds nothing here" in d
               for d in families.details)
    assert report.step("token usage").data["tokens"] == {k: float(v) for k, v in scraped.tokens.items()}
    assert report.step("scrape target").data["job"] == "otel-llm"
    # The exposition of the Python SDK has no exemplars: a warning that says so, not a failure.
    assert "Prometheus exposition carries none" in report.step("exemplars").hint
    # Every step shows what it ran, as a command line to copy.
    assert f"curl -sG '{prometheus.url}/api/v1/query' --data-urlencode 'query=sum by (gen_ai_token_type) " \
           f"(gen_ai_client_token_usage_sum{{job=\"otel-llm\"}})'" in text
    assert "PASS  metric families" in text and "OK: 4 passed, 0 failed, 1 warnings, 4 skipped" in text


def test_mimir_default_names_are_recognised(scraped, prometheus):
    code, report, text = _check(metrics_url=f"http://{scraped.service}/metrics", prometheus_url=prometheus.url,
                                job="mimir-default")
    assert code == 0, text
    families = report.step("metric families")
    assert families.status == PASS and families.data["scheme"] == "mimir-otlp-default"
    assert families.summary == "gen_ai_client_operation_duration_*, gen_ai_client_token_usage_* present"
    assert any("Mimir's OTLP endpoint at its defaults" in d for d in families.details)
    assert any("(gen_ai_client_operation_duration_seconds_bucket, llm_client_cost_total) finds nothing here" in d
               for d in families.details)
    assert "llm_client_cost" in families.data["names"] and "llm_client_cost_total" not in families.data["names"]
    assert report.step("token usage").data["tokens"] == {k: float(v) for k, v in scraped.tokens.items()}


def test_both_schemes_in_one_store_warn_of_double_counting(prometheus):
    code, report, _ = _check(prometheus_url=prometheus.url)
    families = report.step("metric families")
    assert families.status == WARN and families.data["scheme"] == "both"
    assert "every sum over both counts twice" in families.details[0]
    assert code == 0  # warnings do not fail the check


def test_auth_rule_blocking_the_scraper_is_named(scraped, prometheus):
    url = f"http://{scraped.gate}/metrics"
    code, report, text = _check(metrics_url=url, prometheus_url=prometheus.url, job="auth-blocked")
    assert code == 1
    endpoint, target = report.step("metrics endpoint"), report.step("scrape target")
    assert endpoint.status == FAIL and endpoint.summary == f"{url} answers 401: an auth rule blocks the scraper"
    assert target.status == FAIL and "401 Unauthorized" in target.summary
    assert target.hint.startswith("an auth rule blocks the scraper")
    assert report.step("metric families").status == FAIL  # nothing stored for that job

    # With the scraper's credentials the endpoint answers; the token is never printed.
    code, report, text = _check(metrics_url=url, metrics_headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert report.step("metrics endpoint").status == PASS
    assert SCRAPE_TOKEN not in text and "(+ Authorization: ...)" in text


def test_https_redirect_is_named(scraped):
    code, report, _ = _check(metrics_url=f"http://{scraped.gate}/redirect/metrics")
    step = report.step("metrics endpoint")
    assert code == 1 and step.status == FAIL
    assert step.summary.endswith("answers 308, redirecting to https://" + scraped.gate
                                 + "/metrics: an HTTPS rule redirects plain-HTTP scrapes")
    assert "scheme: https" in step.hint


def test_service_without_llm_calls(scraped, prometheus):
    code, report, _ = _check(metrics_url=f"http://{scraped.gate}/idle/metrics", prometheus_url=prometheus.url,
                             job="idle")
    assert code == 1
    assert _statuses(report)["metrics endpoint"] == WARN
    assert report.step("scrape target").status == PASS
    families = report.step("metric families")
    assert families.status == FAIL and families.summary == "no gen_ai_* or llm_* metric stored for job idle"
    assert families.hint.startswith("the target is up but exports no LLM metrics")
    tokens = report.step("token usage")
    assert tokens.status == FAIL and tokens.summary == "no LLM call recorded yet for job idle"
    assert "otel-llm traffic" in tokens.hint


def test_calls_without_token_usage(prometheus):
    code, report, _ = _check(prometheus_url=prometheus.url, job="notokens")
    assert code == 1
    families = report.step("metric families")
    assert families.status == FAIL and families.summary.startswith("missing gen_ai.client.token.usage")
    tokens = report.step("token usage")
    assert tokens.summary == "7 LLM calls recorded, but no token usage" and "include_usage" in tokens.hint


def test_exemplars_with_trace_ids_pass(prometheus):
    code, report, _ = _check(prometheus_url=prometheus.url, job="exemplars", require_exemplars=True)
    assert code == 0
    exemplars = report.step("exemplars")
    assert exemplars.status == PASS and exemplars.data == {"exemplars": 1, "trace_id": TRACE_ID}
    assert report.step("token usage").data["tokens"] == {"input": 9.0, "output": 16.0}


def test_missing_exemplars_fail_when_required(prometheus):
    _, report, _ = _check(prometheus_url=prometheus.url, job="otel-llm", require_exemplars=True)
    assert report.step("exemplars").status == FAIL


def test_unscraped_endpoint_and_dead_prometheus(prometheus):
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    code, report, _ = _check(metrics_url=dead, prometheus_url=prometheus.url)
    assert code == 1
    assert report.step("metrics endpoint").summary == f"{dead} does not answer: connection refused"
    assert "OTEL_EXPORTER_PROMETHEUS_HOST" in report.step("metrics endpoint").hint
    target = report.step("scrape target")
    assert target.summary == f"Prometheus does not scrape {dead}" and "scrape_configs" in target.hint

    # a job that is neither scraped nor stored: not scraped is the failure
    code, report, _ = _check(prometheus_url=prometheus.url, job="nobody-sends-this")
    target = report.step("scrape target")
    assert code == 1 and target.status == FAIL and target.summary == "Prometheus does not scrape job nobody-sends-this"

    dead_prometheus = f"http://127.0.0.1:{free_port()}"
    code, report, _ = _check(prometheus_url=dead_prometheus)
    assert report.step("metric families").summary == f"Prometheus at {dead_prometheus} does not answer: connection refused"


def test_json_output_and_exit_status(scraped, prometheus, capsys):
    code = main(["check", "--metrics-url", f"http://{scraped.service}/metrics", "--prometheus-url", prometheus.url,
                 "--job", "otel-llm", "--json", "--no-canary"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"] is True
    assert result["counts"] == {"pass": 4, "fail": 0, "warn": 1, "skip": 4}
    step = next(s for s in result["steps"] if s["name"] == "metric families")
    assert step["data"]["scheme"] == "prometheus" and step["queries"]


def test_nothing_to_check_is_a_usage_error(capsys):
    assert main(["check"]) == 2
    assert "nothing to check" in capsys.readouterr().err


# ---------------------------------------------------------------------- canary, Tempo, Loki


class FixedIds(IdGenerator):
    """The recorded trace id; span ids in the recorded order (the canary span, then the LLM span)."""

    def __init__(self) -> None:
        self._spans = iter([0x00F067AA0BA902B7, 0x53995C3F42CD8AD8] + list(range(1, 100)))

    def generate_trace_id(self) -> int:
        return int(TRACE_ID, 16)

    def generate_span_id(self) -> int:
        return next(self._spans)


class Backends:
    """Tempo's and Loki's HTTP APIs answering from tests/data/recorded/; records every request."""

    def __init__(self) -> None:
        self.search = (200, "tempo/search_canary.json")
        self.trace = (200, "tempo/trace_canary.json")
        self.loki_traced = (200, "loki/query_range_canary.json")
        self.loki_plain = (200, "loki/query_range_service_without_trace.json")
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.on_request: Any = None  # called with (path, params) before answering
        backends = self

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parts.query))
                backends.requests.append((parts.path, params))
                if backends.on_request is not None:
                    backends.on_request(parts.path, params)
                if parts.path == "/api/search":
                    status, name = backends.search
                elif parts.path.startswith("/api/traces/"):
                    status, name = backends.trace
                elif parts.path == "/loki/api/v1/query_range":
                    status, name = backends.loki_traced if "trace_id=" in params.get("query", "") else backends.loki_plain
                else:
                    status, name = 404, "tempo/trace_not_found.txt"
                kind = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
                self._reply(status, (RECORDED / name).read_bytes(), kind)

        self.server, self.url = _serve(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def backends() -> Iterator[Backends]:
    made = Backends()
    yield made
    made.close()


def _canary_check(backends: Backends, receiver: Any, **kwargs: Any) -> tuple[int, Any, str]:
    import io

    settings = {"tempo_url": backends.url, "loki_url": backends.url, "otlp_endpoint": receiver.http_endpoint,
                "otlp_protocol": "http/protobuf", "wait": 0, "poll_interval": 0.05, **kwargs}
    options = CheckOptions(**settings)
    out = io.StringIO()
    code, report = run_check(options, out, id_generator=FixedIds(), canary_seed=SEED)
    return code, report, out.getvalue()


TRACEQL = f'{{ span.gen_ai.operation.name = "chat" && span.gen_ai.request.model = "gpt-4o-mini" && span.gen_ai.request.seed = {SEED} }}'
LOGQL = f'{{service_name="otel-llm-check"}} | trace_id="{TRACE_ID}"'


def test_canary_found_in_tempo_by_traceql_and_in_loki_by_trace_id(backends, otlp_receiver, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # the in-process simulator takes any key; it must not leak
    code, report, text = _canary_check(backends, otlp_receiver)
    assert code == 0, text
    assert _statuses(report) == {
        "metrics endpoint": SKIP, "scrape target": SKIP, "metric families": SKIP, "token usage": SKIP,
        "exemplars": SKIP, "canary call": PASS, "tempo": PASS, "jaeger": SKIP, "loki": PASS,
    }
    # The canary really went through OTLP: its LLM span, with the seed the TraceQL looks for, and its logs.
    spans = otlp_receiver.wait_for(lambda r: [s for s in r.spans() if s["scope"] == "otel_llm"])
    assert [(s["trace_id"], s["name"]) for s in spans] == [(TRACE_ID, "chat gpt-4o-mini")]
    assert spans[0]["attributes"]["gen_ai.request.seed"] == SEED
    assert spans[0]["resource"]["service.name"] == "otel-llm-check"
    logs = otlp_receiver.wait_for(lambda r: r.logs())
    assert {record["trace_id"] for record in logs} == {TRACE_ID}
    assert any("calling gpt-4o-mini" in record["body"] for record in logs)
    canary = report.step("canary call")
    assert canary.data["spans_exported"] == 2 and canary.data["logs_exported"] == 2
    # Exactly the documented queries, in order.
    assert backends.requests[0][0] == "/api/search" and backends.requests[0][1]["q"] == TRACEQL
    assert backends.requests[1][0] == f"/api/traces/{TRACE_ID}"
    assert backends.requests[2][0] == "/loki/api/v1/query_range"
    assert backends.requests[2][1]["query"] == LOGQL and backends.requests[2][1]["direction"] == "backward"
    tempo = report.step("tempo")
    assert tempo.summary == f"canary trace {TRACE_ID} found by TraceQL on gen_ai.* attributes"
    assert "span 'chat gpt-4o-mini': gen_ai.provider.name=openai, gen_ai.request.model=gpt-4o-mini, " \
           "gen_ai.response.model=gpt-4o-mini-2024-07-18, gen_ai.usage.input_tokens=9, " \
           "gen_ai.usage.output_tokens=16" in tempo.details
    assert report.step("loki").summary == f"2 log lines with trace_id {TRACE_ID}"
    assert API_KEY not in text + otlp_receiver.dump()


def test_categorized_loki_answer_is_read(backends, otlp_receiver):
    backends.loki_traced = (200, "loki/query_range_canary_categorized.json")
    _, report, _ = _canary_check(backends, otlp_receiver, tempo_url=None)
    assert report.step("loki").status == PASS and report.step("loki").data["lines"] == 1
    assert report.step("tempo").status == SKIP


def test_trace_missing_from_tempo_and_logs_without_trace_ids(backends, otlp_receiver):
    backends.search = (200, "tempo/search_other_trace.json")  # a match, but another service's trace
    backends.trace = (404, "tempo/trace_not_found.txt")
    backends.loki_traced = (200, "loki/query_range_empty.json")
    code, report, text = _canary_check(backends, otlp_receiver)
    assert code == 1
    tempo, loki = report.step("tempo"), report.step("loki")
    assert tempo.status == FAIL and tempo.summary.startswith(f"the canary trace {TRACE_ID} is not in Tempo")
    assert "otel_llm.check.canary" in tempo.hint and "tail-samples" in tempo.hint
    assert loki.status == FAIL and "arrive, but none with trace_id" in loki.summary
    assert "allow_structured_metadata" in loki.hint
    assert backends.paths().count("/loki/api/v1/query_range") == 2  # with the trace filter, then without
    assert "FAIL  tempo" in text and "FAIL  loki" in text


def test_trace_stored_but_not_searchable(backends, otlp_receiver):
    backends.search = (200, "tempo/search_empty.json")
    backends.loki_traced = backends.loki_plain = (200, "loki/query_range_empty.json")
    _, report, _ = _canary_check(backends, otlp_receiver)
    tempo = report.step("tempo")
    assert tempo.summary.startswith("the canary trace is stored (by id) but not found by TraceQL")
    assert "attributes processor" in tempo.hint
    assert report.step("loki").summary.startswith('no logs of {service_name="otel-llm-check"}')


def test_tempo_rejecting_the_traceql_is_reported(backends, otlp_receiver):
    backends.search = (400, "tempo/search_traceql_error.txt")
    _, report, _ = _canary_check(backends, otlp_receiver, loki_url=None)
    tempo = report.step("tempo")
    assert tempo.status == FAIL
    assert tempo.summary == ("Tempo answers 400 to the search: invalid TraceQL query: parse error at line 1, col 80: "
                             "syntax error: unexpected IDENTIFIER")


def test_search_is_retried_until_the_trace_arrives(backends, otlp_receiver):
    backends.search = (200, "tempo/search_empty.json")

    def arrive_on_third_search(path: str, params: dict[str, str]) -> None:
        if backends.paths().count("/api/search") == 3:
            backends.search = (200, "tempo/search_canary.json")

    backends.on_request = arrive_on_third_search
    _, report, _ = _canary_check(backends, otlp_receiver, wait=30, loki_url=None)
    assert report.step("tempo").status == PASS
    assert report.step("tempo").data["attempts"] == 3


def test_collector_down_fails_the_canary_and_says_where(backends, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # keep the exporters' final retries short
    import io

    dead = f"http://127.0.0.1:{free_port()}"
    options = CheckOptions(tempo_url=backends.url, otlp_endpoint=dead, otlp_protocol="http/protobuf", wait=0,
                           timeout=1)
    code, report = run_check(options, io.StringIO(), id_generator=FixedIds(), canary_seed=SEED)
    canary = report.step("canary call")
    assert code == 1 and canary.status == FAIL
    assert canary.summary.startswith(f"the canary's spans did not reach {dead}: export_failed 2")
    assert "gRPC is 4317, http/protobuf 4318" in canary.hint


def test_canary_needs_an_otlp_endpoint(backends, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    code, report, _ = _check(tempo_url=backends.url, canary=True)
    assert code == 1
    assert report.step("canary call").summary == "no OTLP endpoint to send the canary's telemetry to"
    assert report.step("tempo").summary == "no canary trace to look for (see the canary step)"
    assert backends.requests == []
