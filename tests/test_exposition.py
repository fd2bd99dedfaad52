"""The Prometheus fallback endpoints: categories and filters, content negotiation, CSV, catalog, the JSON
summary and health with exact numbers (injected clock), access control, the ASGI mount in FastAPI, the
wrapper for HTTPS-enforcing apps and the standalone server."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, ProcessCollector

from otel_llm.content import CaptureMode
from otel_llm.exposition import (
    AccessControl,
    ConfigError,
    ExpositionApp,
    HealthThresholds,
    Request,
    serve,
)
from otel_llm.gateway import Gateway, GatewayConfig
from otel_llm.pricing import PriceTable
from otel_llm.recorder import Recorder

KEYS = ("sk-proj-exposition-AAAAAAAAAAAAAAAAAAAA", "sk-proj-exposition-BBBBBBBBBBBBBBBBBBBB")
TOKEN = "scrape-token-0123456789abcdef"


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Pipeline:
    """An SDK pipeline whose Prometheus reader registers into a private registry, a recorder and a gateway."""

    registry: CollectorRegistry
    meter_provider: MeterProvider
    recorder: Recorder
    gateway: Gateway
    clock: Clock

    @classmethod
    def create(cls, service: str = "checkout") -> Pipeline:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # the "system" category has something to show
        reader = PrometheusMetricReader(registry=registry)
        meter_provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
        recorder = Recorder(tracer_provider=TracerProvider(), meter_provider=meter_provider, prices=PriceTable(),
                            capture=CaptureMode.NO_CONTENT)
        clock = Clock()
        gateway = Gateway(recorder, meter_provider=meter_provider, clock=clock, config=GatewayConfig(),
                          key_id_salt="exposition-tests-salt")
        return cls(registry, meter_provider, recorder, gateway, clock)

    def calls(self, count: int, provider: str = "openai", model: str = "gpt-4o-mini", *, usage: tuple[int, int] = (100, 50),
              error: str | None = None, stream: bool = False, headers: dict[str, str] | None = None) -> None:
        for _ in range(count):
            call = self.recorder.start_call("chat", provider, model, stream=stream)
            if stream:
                call.chunk()
                call.chunk()
            call.response_headers = headers
            if error:
                call.fail(error)
            else:
                call.set_usage(*usage)
                call.end()

    def app(self, **options: Any) -> ExpositionApp:
        options.setdefault("access", AccessControl())
        return ExpositionApp(self.registry, gateway=self.gateway, clock=self.clock, **options)


def get(app: ExpositionApp, path: str, *, query: dict[str, list[str]] | None = None, headers: dict[str, str] | None = None,
        client: str = "127.0.0.1", method: str = "GET") -> Any:
    return app.handle(Request(method, path, query or {}, {k.lower(): v for k, v in (headers or {}).items()}, client))


@pytest.fixture
def pipeline() -> Pipeline:
    p = Pipeline.create()
    p.calls(18, usage=(100, 50))
    p.calls(2, error="InternalServerError")
    p.calls(5, "anthropic", "claude-haiku-4-5", usage=(10, 20), stream=True,
            headers={"anthropic-ratelimit-requests-remaining": "42", "anthropic-ratelimit-tokens-remaining": "9000"})
    p.gateway.breaker_state("openai", "closed")
    p.gateway.breaker_state("anthropic", "closed")
    p.gateway.breaker_state("anthropic", "open")
    pool = p.gateway.key_pool("openai-prod", KEYS)
    pool.mark_invalid(KEYS[1])
    return p


def text(response: Any) -> str:
    return response.body.decode()


def series_names(body: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}


# -- /metrics, categories and filters -------------------------------------------------------------


def test_metrics_in_prometheus_text_and_openmetrics(pipeline):
    app = pipeline.app()
    plain = get(app, "/metrics")
    assert plain.status == 200 and plain.content_type.startswith("text/plain; version=0.0.4")
    names = series_names(text(plain))
    assert {"gen_ai_client_operation_duration_seconds_count", "llm_client_cost_total", "llm_gateway_provider_health",
            "llm_gateway_circuit_breaker_state", "process_cpu_seconds_total", "target_info"} <= names
    om = get(app, "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
    assert om.content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text(om).endswith("# EOF\n") and "# UNIT gen_ai_client_operation_duration_seconds seconds" in text(om)
    zipped = get(app, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert ("content-encoding", "gzip") in zipped.headers
    assert gzip.decompress(zipped.body).decode().count("\n") == text(plain).count("\n")
    assert get(app, "/metrics", method="HEAD").status == 200
    assert get(app, "/metrics", method="POST").status == 405


@pytest.mark.parametrize(("category", "present", "absent"), [
    ("providers", {"llm_gateway_provider_health", "llm_gateway_circuit_breaker_state", "llm_gateway_key_pool_keys",
                   "llm_gateway_rate_limit_remaining", "llm_client_active_requests"},
     {"gen_ai_client_token_usage_sum", "process_cpu_seconds_total"}),
    ("models", {"gen_ai_client_operation_duration_seconds_bucket", "gen_ai_client_token_usage_sum",
                "llm_gateway_model_availability", "llm_client_cost_total"}, {"llm_gateway_circuit_breaker_state"}),
    ("business", {"llm_client_cost_total", "gen_ai_client_token_usage_sum", "llm_gateway_key_pool_keys"},
     {"gen_ai_client_operation_duration_seconds_bucket", "llm_gateway_provider_health"}),
    ("performance", {"gen_ai_client_operation_duration_seconds_bucket", "llm_client_active_requests",
                     "llm_client_streams_total", "llm_gateway_anomalies_total", "llm_gateway_provider_health"},
     {"llm_client_cost_total", "process_cpu_seconds_total"}),
    ("system", {"process_cpu_seconds_total"}, {"llm_client_cost_total", "gen_ai_client_token_usage_sum"}),
])
def test_category_views(pipeline, category, present, absent):
    app = pipeline.app()
    for response in (get(app, f"/metrics/{category}"), get(app, "/metrics", query={"category": [category]})):
        names = series_names(text(response))
        assert present <= names, present - names
        assert not absent & names, absent & names
        assert "target_info" in names  # every view keeps the resource


def test_name_and_match_filters(pipeline):
    app = pipeline.app()
    names = series_names(text(get(app, "/metrics", query={"name[]": ["llm_client_cost_total", "llm_gateway_key_pool_keys"]})))
    assert names == {"llm_client_cost_total", "llm_gateway_key_pool_keys", "target_info"}
    body = text(get(app, "/metrics", query={
        "match[]": ['{__name__=~"llm_gateway_circuit_breaker_.+", gen_ai_provider_name="anthropic"}']}))
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    assert lines and all('gen_ai_provider_name="anthropic"' in line for line in lines)
    assert series_names(body) == {"llm_gateway_circuit_breaker_state", "llm_gateway_circuit_breaker_transitions_total"}
    both = series_names(text(get(app, "/metrics", query={"match[]": ["llm_client_cost_total"],
                                                          "category": ["system"]})))
    assert {"llm_client_cost_total", "process_cpu_seconds_total"} <= both  # filters add up


@pytest.mark.parametrize(("query", "message"), [
    ({"category": ["billing"]}, "unknown category billing; use one of system, providers"),
    ({"match[]": ['{job=~".*"}']}, "matches everything"),
    ({"match[]": ['up{job="a" oops}']}, "cannot read the label matcher"),
    ({"match[]": ['{__name__=~"("}']}, "bad regular expression"),
])
def test_bad_filters_are_400_with_what_to_fix(pipeline, query, message):
    response = get(pipeline.app(), "/metrics", query=query)
    assert response.status == 400 and message in text(response)


def test_csv_export(pipeline):
    response = get(pipeline.app(), "/metrics.csv", query={"category": ["business"]})
    assert response.status == 200 and response.content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text(response))))
    cost = [r for r in rows if r["sample"] == "llm_client_cost_total"]
    assert {json.loads(r["labels"])["gen_ai_request_model"] for r in cost} == {"gpt-4o-mini", "claude-haiku-4-5"}
    expected = 18 * (100 * 0.15 + 50 * 0.6) / 1e6  # gpt-4o-mini at $0.15/$0.60 per million tokens
    openai_cost = sum(float(r["value"]) for r in cost if json.loads(r["labels"])["gen_ai_provider_name"] == "openai")
    assert openai_cost == pytest.approx(expected)
    assert {r["metric"] for r in rows} >= {"llm_client_cost", "gen_ai_client_token_usage", "llm_gateway_key_pool_keys"}


def test_catalog_lists_every_metric_with_unit_labels_and_meaning(pipeline):
    catalog = json.loads(text(get(pipeline.app(), "/catalog")))
    assert set(catalog["categories"]) == {"system", "providers", "models", "business", "performance"}
    by_name = {m["name"]: m for m in catalog["metrics"]}
    health = by_name["llm_gateway_provider_health"]
    assert health["otel_name"] == "llm.gateway.provider.health" and health["unit"] == "1"
    assert health["labels"] == ["gen_ai_provider_name"] and "success ratio" in health["meaning"]
    assert health["present"] and "providers" in health["categories"]
    duration = by_name["gen_ai_client_operation_duration_seconds"]
    assert duration["unit"] == "s" and "error_type" in duration["labels"] and duration["type"] == "histogram"
    assert by_name["llm_client_cost"]["samples"] == ["llm_client_cost_total"]
    assert not by_name["gen_ai_client_operation_time_per_output_chunk_seconds"]["present"] or \
        by_name["gen_ai_client_operation_time_per_output_chunk_seconds"]["series"] > 0
    assert by_name["process_cpu_seconds"]["categories"] == ["system"]
    assert all(m["meaning"] for m in catalog["metrics"] if m["name"].startswith(("llm_", "gen_ai_")))


# -- summary and health, exact --------------------------------------------------------------------


def test_summary_figures_over_the_window():
    p = Pipeline.create()
    app = p.app(rate_window=60, history_step=10)  # first snapshot at t=100, before any call
    p.calls(18, usage=(100, 50))
    p.calls(2, error="RateLimitError")
    p.calls(5, "anthropic", "claude-haiku-4-5", usage=(10, 20))
    p.clock.t = 150.0
    s = json.loads(text(get(app, "/summary")))
    window = s["window"]
    assert (window["seconds"], window["requests"], window["errors"]) == (50.0, 25.0, 2.0)
    assert window["requests_per_second"] == 0.5 and window["error_rate"] == 0.08
    assert window["tokens_per_minute"] == pytest.approx((18 * 150 + 5 * 30) * 60 / 50)
    cost = 18 * (100 * 0.15 + 50 * 0.6) / 1e6 + 5 * (10 * 1.0 + 20 * 5.0) / 1e6  # haiku 4.5: $1/$5 per M
    assert s["totals"] == {"requests": 25.0, "errors": 2.0, "input_tokens": 1850.0, "output_tokens": 1000.0,
                           "cost_usd": pytest.approx(cost)}
    assert window["cost_per_hour"] == pytest.approx(cost * 3600 / 50, rel=1e-5)
    assert 0 < window["latency_p50"] <= window["latency_p95"] <= window["latency_p99"] < 1.0  # in-process calls
    models = {(m["provider"], m["model"]): m for m in s["models"]}
    assert models[("openai", "gpt-4o-mini")]["requests"] == 20 and models[("openai", "gpt-4o-mini")]["error_rate"] == 0.1
    assert models[("anthropic", "claude-haiku-4-5")]["requests_per_second"] == 0.1
    assert models[("openai", "gpt-4o-mini")]["availability"] == 0.9
    providers = {row["provider"]: row for row in s["providers"]}
    assert providers["openai"]["health"] == 0.9 and providers["anthropic"]["health"] == 1.0
    assert s["service"] == "checkout" and s["in_flight"] == 0
    assert s["gateway"]["providers"]["openai"]["health"]["failures"] == 2

    p.clock.t = 160.0
    p.calls(4, "anthropic", "claude-haiku-4-5", usage=(10, 20))
    s = json.loads(text(get(app, "/summary")))  # the reference is still t=100: 60 s back
    assert (s["window"]["seconds"], s["window"]["requests"]) == (60.0, 29.0)
    assert [round(point["t"]) for point in s["history"]] == [150, 160]
    assert s["history"][0]["requests_per_second"] == 0.5 and s["history"][1]["requests_per_second"] == 0.4


def test_health_verdicts_with_the_numbers_that_decided_them():
    p = Pipeline.create()
    app = p.app(health=HealthThresholds(degraded=0.05, unhealthy=0.25, window=300, min_calls=10), history_step=10)
    p.calls(5, error="InternalServerError")
    p.clock.t = 110.0
    detailed = json.loads(text(get(app, "/health/detailed")))
    assert detailed["status"] == "healthy" and "fewer than min_calls=10" in detailed["reason"]
    p.calls(45, usage=(1, 1))
    p.clock.t = 150.0
    response = get(app, "/health/detailed")
    detailed = json.loads(text(response))
    assert response.status == 200
    assert (detailed["status"], detailed["calls"], detailed["errors"], detailed["error_rate"]) == ("degraded", 50, 5, 0.1)
    assert detailed["reason"] == "error rate 0.1000 >= degraded threshold 0.05"
    assert detailed["providers"]["openai"] == {"calls": 50.0, "errors": 5.0, "error_rate": 0.1}
    p.calls(20, error="APITimeoutError")
    p.clock.t = 160.0
    short = get(app, "/health")
    assert short.status == 503 and json.loads(text(short)) == {"status": "unhealthy"}  # 25/70 >= 0.25
    p.clock.t = 455.0  # 300 s later, the window starts after the failures (snapshot at t=160)
    detailed = json.loads(text(get(app, "/health/detailed")))
    assert (detailed["status"], detailed["calls"], detailed["window_seconds"]) == ("healthy", 0, 295.0)


def test_bad_exposition_settings_say_what_to_fix():
    with pytest.raises(ConfigError, match="0 < degraded <= unhealthy <= 1"):
        HealthThresholds(degraded=0.5, unhealthy=0.2)
    with pytest.raises(ConfigError, match="not an address or CIDR block"):
        AccessControl(allow=["10.0.0.0/33"])
    with pytest.raises(ConfigError, match="rate_window must be > 0"):
        ExpositionApp(CollectorRegistry(), access=AccessControl(), rate_window=0)
    with pytest.raises(ConfigError, match="basic auth needs a user and a password"):
        AccessControl(basic_auth=("prometheus", ""))


def test_access_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_EXPOSITION_TOKEN", TOKEN)
    monkeypatch.setenv("OTEL_LLM_EXPOSITION_BASIC_AUTH", "prom:pw")
    monkeypatch.setenv("OTEL_LLM_EXPOSITION_ALLOW", "10.0.0.0/8, 127.0.0.1")
    access = AccessControl.from_env()
    assert access.token == TOKEN and access.basic_auth == ("prom", "pw") and len(access.allow) == 2
    monkeypatch.setenv("OTEL_LLM_EXPOSITION_ALLOW", "pods")
    with pytest.raises(ConfigError, match="OTEL_LLM_EXPOSITION_ALLOW: 'pods' is not an address"):
        AccessControl.from_env()


# -- access control -------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_bearer_token_and_basic_auth(pipeline):
    app = pipeline.app(access=AccessControl(token=TOKEN, basic_auth=("prom", "pw")))
    missing = get(app, "/metrics/providers")
    assert missing.status == 401
    assert dict(missing.headers)["www-authenticate"] == 'Bearer realm="otel-llm", Basic realm="otel-llm", charset="UTF-8"'
    assert get(app, "/metrics", headers={"Authorization": "Bearer wrong"}).status == 401
    assert get(app, "/metrics", headers=basic("prom", "nope")).status == 401
    assert get(app, "/metrics", headers={"Authorization": "Basic !!!"}).status == 401
    assert get(app, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert get(app, "/metrics", headers=basic("prom", "pw")).status == 200
    for path in ("/summary", "/metrics.csv", "/catalog", "/health/detailed", "/dashboard", "/"):
        assert get(app, path).status == 401, path
    assert get(app, "/health").status == 200  # liveness probes need no secret (no numbers in it)
    for response in (missing, get(app, "/metrics", headers={"Authorization": "Bearer wrong"})):
        assert TOKEN not in text(response) and "pw" not in text(response).split()


def test_bearer_only_serves_the_dashboard_shell(pipeline):
    app = pipeline.app(access=AccessControl(token=TOKEN))
    shell = get(app, "/dashboard")
    assert shell.status == 200 and b"<script>" in shell.body and b"checkout" not in shell.body  # no data in it
    assert get(app, "/summary").status == 401


def test_cidr_allowlist_and_trusted_proxies(pipeline):
    app = pipeline.app(access=AccessControl(token=TOKEN, allow=["10.0.0.0/8", "::1"]))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    outside = get(app, "/metrics", headers=auth, client="192.0.2.10")
    assert outside.status == 403 and "192.0.2.10 is not in the allowlist" in text(outside)
    assert get(app, "/metrics", headers=auth, client="10.1.2.3").status == 200
    assert get(app, "/metrics", headers=auth, client="::1").status == 200
    assert get(app, "/metrics", client="10.1.2.3").status == 401  # inside, but no token
    assert get(app, "/dashboard", client="192.0.2.10").status == 403  # the allowlist holds for the shell too
    spoofed = {**auth, "X-Forwarded-For": "10.9.9.9"}  # an untrusted peer cannot pretend
    assert get(app, "/metrics", headers=spoofed, client="192.0.2.10").status == 403

    proxied = pipeline.app(access=AccessControl(token=TOKEN, allow=["203.0.113.0/24"], trusted_proxies=["10.0.0.0/24"]))
    via_proxy = {**auth, "X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.7"}
    assert get(proxied, "/metrics", headers=via_proxy, client="10.0.0.5").status == 200  # client 203.0.113.9
    assert get(proxied, "/metrics", headers={**auth, "X-Forwarded-For": "198.51.100.7"},
               client="10.0.0.5").status == 403


def test_no_key_in_any_endpoint(pipeline):
    app = pipeline.app()
    bodies = [text(get(app, path)) for path in ("/", "/metrics", "/metrics.csv", "/catalog", "/summary",
                                                "/health/detailed", "/dashboard")]
    bodies.append(text(get(app, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})))
    summary = json.loads(bodies[4])
    pools = {pool["group"]: pool for pool in summary["key_pools"]}
    assert pools["openai-prod"]["active"] == 1 and pools["openai-prod"]["invalid"] == 1
    assert {k["id"] for k in pools["openai-prod"]["keys"]} == {pipeline.gateway.key_id(k) for k in KEYS}
    for key in KEYS:
        assert not any(key in body or key[-12:] in body for body in bodies)


# -- ASGI: FastAPI mount, the HTTPS-enforcing app, standalone --------------------------------------


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), {k.lower(): v for k, v in error.headers.items()}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:  # noqa: ANN401
        return None


def status(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The status code as answered (redirects not followed)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}),
                         timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_mounted_in_fastapi(pipeline):
    from fastapi import FastAPI

    from otel_llm.demo.gateway import AppServer, bind

    api = FastAPI()

    @api.get("/orders")
    def orders() -> dict[str, int]:
        return {"orders": 3}

    api.mount("/observability", pipeline.app(access=AccessControl(token=TOKEN)))
    sock, _ = bind("127.0.0.1", 0)
    server = AppServer(api, sock).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert fetch(f"{base}/orders")[:2] == (200, '{"orders":3}')
        status, body, headers = fetch(f"{base}/observability/metrics/providers", auth)
        assert status == 200 and "llm_gateway_provider_health" in body
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert fetch(f"{base}/observability/metrics/providers")[0] == 401
        status, body, _ = fetch(f"{base}/observability/", auth)
        assert status == 200 and 'href="/observability/metrics/providers"' in body  # links know the mount point
        status, body, _ = fetch(f"{base}/observability/summary", auth)
        assert status == 200 and json.loads(body)["totals"]["requests"] == 25
        assert fetch(f"{base}/observability/dashboard")[0] == 200
    finally:
        server.stop()


def test_wrap_lets_the_scraper_past_an_https_enforcing_app(pipeline):
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.httpsredirect import HTTPSRedirectMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from otel_llm.demo.gateway import AppServer, bind

    class RejectPlainHTTP:  # what "secure" middlewares do to a plain-HTTP scrape: 403
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("scheme") != "https":
                await PlainTextResponse("HTTPS required", status_code=403)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("shop")

    routes = [Route("/", home)]
    exposition = pipeline.app(access=AccessControl(token=TOKEN, allow=["127.0.0.0/8"]))
    for middleware, refused in ((Middleware(RejectPlainHTTP), 403), (Middleware(HTTPSRedirectMiddleware), 307)):
        app = Starlette(routes=routes, middleware=[middleware])
        app.mount("/observability", exposition)  # mounted inside: the scrape meets the middleware
        sock, _ = bind("127.0.0.1", 0)
        server = AppServer(exposition.wrap(app, "/observability"), sock).start()
        inner_sock, _ = bind("127.0.0.1", 0)
        inner = AppServer(app, inner_sock).start()
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert status(inner.port, "/observability/metrics", auth) == refused  # the failure
            assert status(server.port, "/observability/metrics", auth) == 200  # the way through
            assert status(server.port, "/observability/metrics") == 401  # still guarded
            assert status(server.port, "/") == refused  # the rest of the app keeps its rules
        finally:
            server.stop()
            inner.stop()


def test_standalone_server(pipeline):
    with serve(port=0, app=pipeline.app(access=AccessControl(basic_auth=("prom", "pw")))) as server:
        status, body, _ = fetch(f"{server.url}/metrics/business", basic("prom", "pw"))
        assert status == 200 and "llm_client_cost_total" in body
        status, _, headers = fetch(f"{server.url}/metrics/business")
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert fetch(f"{server.url}/nope", basic("prom", "pw"))[0] == 404
    busy = serve(port=0, app=pipeline.app())
    try:
        with pytest.raises(ConfigError, match="cannot serve the metrics endpoints on 127.0.0.1:.*pick another port"):
            serve(port=busy.port, app=pipeline.app())
    finally:
        busy.stop()
