"""The server view of the Prometheus fallback endpoints: ``/summary``'s ``served`` rows with exact numbers
(injected clock), the catalog, and ``/dashboard``'s "Served" table in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_llm.exposition import AccessControl, ExpositionApp, serve
from otel_llm.pricing import PriceTable
from otel_llm.server import LLMServerMiddleware, ServerRecorder
from tests.test_exposition import Clock, get, text
from tests.test_server_robustness import _drive, _echo_app

ROUTE = "/v1/chat/completions"


def _json_answer(status: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]},
            {"type": "http.response.body", "body": json.dumps(body).encode()}]


def _stream_answer(chunks: int, output: int) -> list[dict[str, Any]]:
    base = {"id": "c", "model": "m-served"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}] * chunks
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": output}})
    messages: list[dict[str, Any]] = [{"type": "http.response.start", "status": 200,
                                       "headers": [(b"content-type", b"text/event-stream")]}]
    messages += [{"type": "http.response.body", "body": f"data: {json.dumps(e)}\n\n".encode(), "more_body": True}
                 for e in events]
    messages.append({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
    return messages


class Served:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.meter_provider = MeterProvider(resource=Resource.create({"service.name": "model-server"}),
                                            metric_readers=[PrometheusMetricReader(registry=self.registry)])
        self.recorder = ServerRecorder(tracer_provider=TracerProvider(), meter_provider=self.meter_provider,
                                       prices=PriceTable(use_library=False))
        self.clock = Clock()

    def serve(self, model: str, answer: list[dict[str, Any]], stream: bool = False) -> None:
        app = LLMServerMiddleware(_echo_app(answer, []), recorder=self.recorder)
        body = json.dumps({"model": model, "stream": stream}).encode()
        asyncio.run(_drive(app, ROUTE, [body]))

    def app(self, **options: Any) -> ExpositionApp:
        options.setdefault("access", AccessControl())
        return ExpositionApp(self.registry, clock=self.clock, **options)


def _traffic(served: Served) -> None:
    for _ in range(3):
        served.serve("m", _json_answer(200, {"model": "m-served", "choices": [{"finish_reason": "stop"}],
                                             "usage": {"prompt_tokens": 10, "completion_tokens": 4}}))
    for _ in range(2):
        served.serve("m", _stream_answer(6, 6), stream=True)
    served.serve("m", _json_answer(429, {"error": {"type": "requests", "code": "rate_limit_exceeded"}}))
    served.serve("other", _json_answer(503, {"detail": "down"}))


def test_summary_has_the_served_view_per_route_and_model() -> None:
    served = Served()
    app = served.app(rate_window=60, history_step=10)
    get(app, "/summary")  # the reference snapshot at t=100, before any request
    _traffic(served)
    served.clock.t = 150.0
    summary = json.loads(text(get(app, "/summary")))
    rows = {(r["route"], r["model"]): r for r in summary["served"]}
    assert set(rows) == {(ROUTE, "m"), (ROUTE, "other")}
    m = rows[(ROUTE, "m")]
    assert (m["requests"], m["errors"], m["error_types"]) == (6.0, 1.0, {"rate_limit_exceeded": 1.0})
    assert m["requests_per_second"] == pytest.approx(6 / 50) and m["error_rate"] == round(1 / 6, 6)
    assert m["output_tokens_per_second"] == pytest.approx((3 * 4 + 2 * 6) / 50)
    assert m["ttft_p95"] is not None and 0 < m["ttft_p95"] < 1  # in-process streams
    assert m["time_per_output_token_p95"] is not None
    assert m["active_streams"] == 0.0
    other = rows[(ROUTE, "other")]
    assert other["error_types"] == {"5xx": 1.0} and other["ttft_p95"] is None


def test_catalog_knows_the_server_metrics() -> None:
    served = Served()
    _traffic(served)
    catalog = json.loads(text(get(served.app(), "/catalog")))
    by_name = {m["name"]: m for m in catalog["metrics"]}
    duration = by_name["gen_ai_server_request_duration_seconds"]
    assert duration["present"] and duration["otel_name"] == "gen_ai.server.request.duration"
    assert {"http_route", "error_type", "gen_ai_request_model"} <= set(duration["labels"])
    assert "performance" in duration["categories"] and "models" in duration["categories"]
    for name in ("gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds",
                 "llm_server_token_usage", "llm_server_active_streams", "llm_server_active_requests",
                 "llm_server_streams"):
        assert by_name[name]["present"] and by_name[name]["meaning"], name
    assert "business" in by_name["llm_server_token_usage"]["categories"]


@pytest.mark.slow
def test_dashboard_draws_the_served_table_in_chromium() -> None:
    from tests.test_exposition_dashboard import run_chromium

    served = Served()
    app = served.app(history_step=5, rate_window=30, refresh_seconds=1)
    for _ in range(3):
        served.clock.t += 5
        _traffic(served)
        app.summary()
    with serve(port=0, app=app) as server:
        dom = run_chromium(f"{server.url}/dashboard", "--dump-dom")
    assert 'data-loaded="true"' in dom, dom[-3000:]
    visible = re.sub(r"<script>.*?</script>", "", dom, flags=re.S)
    table = re.search(r'<table id="served">(.*?)</table>', visible, re.S).group(1)
    for header in ("Route", "Error types", "TTFT p95", "Time/token p95", "Tokens out/s", "Streams now"):
        assert f">{header}</th>" in table
    assert f"<td>{ROUTE}</td><td>m</td>" in table and "<td>other</td>" in table
    assert "rate_limit_exceeded 3" in table and "5xx 3" in table
    assert '<td class="num">18</td>' in table  # requests served of model m: 3 rounds of 6
