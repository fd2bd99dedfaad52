"""Whatever the capture mode, no API key or Authorization header reaches any exported signal."""

from __future__ import annotations

import logging

import anthropic
import openai
import pytest

from otel_llm.sdk import configure

from .conftest import ANTHROPIC_KEY, API_KEY

pytestmark = pytest.mark.slow
PROMPT = "the launch code is swordfish"


def _traffic(upstream):
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0)
    claude = anthropic.Anthropic(base_url=upstream.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    messages = [{"role": "user", "content": f"{PROMPT}; my key is {API_KEY}"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=messages)
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=messages) as stream:
        stream.until_done()
    for failing in ("error-500", "error-429", "bad-model"):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model=failing, messages=messages)
        with pytest.raises(anthropic.APIStatusError):
            claude.messages.create(model=failing, max_tokens=50, messages=messages)
    # the app's own log lines go through the same pipeline
    logging.getLogger("checkout").warning("calling the LLM with key %s", API_KEY[:6] + "...")


@pytest.mark.parametrize("mode", ["NO_CONTENT", "SPAN_AND_EVENT"])
def test_no_secret_in_any_signal(mode, monkeypatch, otlp_receiver, upstream):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)
    telemetry = configure(
        "secrets-scan", traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="otlp",
        otlp_endpoint=otlp_receiver.grpc_endpoint, otlp_protocol="grpc", set_global=False,
    )
    telemetry.logs.attach(logging.getLogger("checkout"))
    try:
        _traffic(upstream)
    finally:
        telemetry.shutdown()
    exported = otlp_receiver.dump()
    assert len([s for s in otlp_receiver.spans() if s["scope"] == "otel_llm"]) == 10
    assert otlp_receiver.metrics() and otlp_receiver.logs()
    for secret in (API_KEY, ANTHROPIC_KEY, API_KEY[3:], ANTHROPIC_KEY[7:]):
        assert secret not in exported
    lowered = exported.lower()
    assert "bearer" not in lowered and "authorization" not in lowered and "x-api-key" not in lowered
    for headers in otlp_receiver.headers:
        assert "authorization" not in headers
    events = [r for r in otlp_receiver.logs() if r["event_name"] == "gen_ai.client.inference.operation.details"]
    if mode == "NO_CONTENT":
        assert PROMPT not in exported and not events
    else:
        assert len(events) == 10 and PROMPT in exported  # content opted in: the text, never the key
        spans = {s["span_id"]: s for s in otlp_receiver.spans()}
        assert all(e["span_id"] in spans and e["trace_id"] == spans[e["span_id"]]["trace_id"] for e in events)
