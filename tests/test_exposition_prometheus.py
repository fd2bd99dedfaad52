"""A real Prometheus scrapes the category endpoints with and without credentials: 401/403 without, data with.

One Prometheus, one job per case, against two standalone servers over the same metrics: one guarded by a
bearer token or basic auth (127.0.0.0/8 allowed), one whose allowlist leaves 127.0.0.1 out.
"""

from __future__ import annotations

import time

import pytest

from otel_llm.exposition import AccessControl, serve
from tests.support.prometheus import ScrapeJob
from tests.test_exposition import KEYS, TOKEN, Pipeline

pytestmark = pytest.mark.slow


def _target(prometheus, job: str, timeout: float = 25.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for target in prometheus.targets():
            if target["labels"]["job"] == job and target["health"] != "unknown":
                return target
        assert time.monotonic() < deadline, f"job {job} was never scraped:\n{prometheus.targets_summary()}"
        time.sleep(0.2)


def test_prometheus_scrapes_categories_with_credentials_only(prometheus_factory):
    pipeline = Pipeline.create()
    pipeline.calls(12, usage=(100, 50), headers={"x-ratelimit-remaining-requests": "77"})
    pipeline.calls(3, "anthropic", "claude-haiku-4-5", usage=(10, 20), error=None)
    pipeline.gateway.breaker_state("anthropic", "closed")
    pipeline.gateway.breaker_state("anthropic", "open")
    pipeline.gateway.key_pool("openai-prod", KEYS).mark_invalid(KEYS[0])
    guarded = serve(port=0, app=pipeline.app(access=AccessControl(token=TOKEN, basic_auth=("prom", "pw"),
                                                                  allow=["127.0.0.0/8"])))
    elsewhere = serve(port=0, app=pipeline.app(access=AccessControl(token=TOKEN, allow=["10.0.0.0/8"])))
    try:
        host, other = f"127.0.0.1:{guarded.port}", f"127.0.0.1:{elsewhere.port}"
        prometheus = prometheus_factory([
            ScrapeJob([host], job_name="no-credentials", metrics_path="/metrics/providers"),
            ScrapeJob([host], job_name="wrong-token", metrics_path="/metrics/providers", authorization="not-it"),
            ScrapeJob([host], job_name="bearer", metrics_path="/metrics/providers", authorization=TOKEN),
            ScrapeJob([host], job_name="basic", metrics_path="/metrics", params={"category": ["business"]},
                      basic_auth={"username": "prom", "password": "pw"}),
            ScrapeJob([host], job_name="match", metrics_path="/metrics", authorization=TOKEN,
                      params={"match[]": ['{__name__=~"llm_gateway_circuit_breaker_.+"}']}),
            ScrapeJob([other], job_name="outside-allowlist", metrics_path="/metrics/providers", authorization=TOKEN),
        ], scrape_interval=1.0)

        for job, code in (("no-credentials", "401"), ("wrong-token", "401"), ("outside-allowlist", "403")):
            target = _target(prometheus, job)
            assert target["health"] == "down" and code in target["lastError"], target
        for job in ("bearer", "basic", "match"):
            assert _target(prometheus, job)["health"] == "up"

        # bearer + /metrics/providers: gateway series, no token series
        health = prometheus.wait_for_series('llm_gateway_provider_health{job="bearer"}')
        assert {r["metric"]["gen_ai_provider_name"] for r in health} == {"openai", "anthropic"}
        assert prometheus.query_value('llm_gateway_circuit_breaker_state{job="bearer", gen_ai_provider_name="anthropic"}') == 2
        assert prometheus.query_value('llm_gateway_rate_limit_remaining{job="bearer", llm_rate_limit_kind="requests"}') == 77
        assert prometheus.query_value('sum(llm_gateway_key_pool_keys{job="bearer", llm_key_pool_key_state="invalid"})') == 1
        assert not prometheus.query('gen_ai_client_token_usage_sum{job="bearer"}')
        # basic auth + category=business: cost and tokens, no provider health
        prometheus.wait_for_series('llm_client_cost_total{job="basic"}')
        assert prometheus.query_value('sum(gen_ai_client_token_usage_sum{job="basic", gen_ai_token_type="input"})') == 1230
        assert not prometheus.query('llm_gateway_provider_health{job="basic"}')
        # match[]: the breaker series only (plus nothing else)
        prometheus.wait_for_series('llm_gateway_circuit_breaker_transitions_total{job="match"}')
        names = {r["metric"]["__name__"] for r in prometheus.query('{job="match", __name__=~"llm_.+|gen_ai_.+"}')}
        assert names == {"llm_gateway_circuit_breaker_state", "llm_gateway_circuit_breaker_transitions_total"}
        assert not prometheus.query('{job=~"no-credentials|wrong-token|outside-allowlist", __name__=~"llm_.+"}')
    finally:
        guarded.stop()
        elsewhere.stop()
