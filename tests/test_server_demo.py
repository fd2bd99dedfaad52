"""The demo's upstream simulator served through LLMServerMiddleware (``ASGIUpstream``: its own handlers
behind an ASGI bridge under uvicorn): both sides of every call, from the real SDKs instrumented by
otel_llm to the server-side telemetry of the answer."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest

from otel_llm import semconv as sc
from otel_llm.demo.upstream import UpstreamSimulator
from otel_llm.demo.upstream._asgi import ASGIUpstream
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.server import LLMServerMiddleware, ServerRecorder

MESSAGES = [{"role": "user", "content": "What is the weather like on the server side?"}]


@pytest.fixture
def served(telemetry: Any) -> Any:
    recorder = ServerRecorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    upstream = ASGIUpstream(UpstreamSimulator(seed=3), wrap=lambda app: LLMServerMiddleware(app, recorder=recorder))
    with upstream:
        yield upstream


def _wait(telemetry: Any, count: int) -> None:
    deadline = time.monotonic() + 5
    while sum(p.count for p in telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])) < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)


def _served_tokens(telemetry: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for point in telemetry.points(sc.METRIC_SERVER_TOKEN_USAGE[0]):
        kind = point.attributes[sc.TOKEN_TYPE]
        found[kind] = found.get(kind, 0) + int(point.sum)
    return found


def test_both_sides_of_an_openai_stream_agree(served: Any, telemetry: Any) -> None:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        client = openai.OpenAI(base_url=served.base_url, api_key="sk-demo", max_retries=0, timeout=10)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}))
        _wait(telemetry, 1)
    finally:
        instrumentor.uninstrument()
    usage = chunks[-1].usage
    assert _served_tokens(telemetry) == {"input": usage.prompt_tokens, "output": usage.completion_tokens}
    client_tokens = {p.attributes[sc.TOKEN_TYPE]: int(p.sum) for p in telemetry.points(sc.METRIC_TOKEN_USAGE[0])}
    assert client_tokens == _served_tokens(telemetry)
    spans = telemetry.spans()
    assert {s.kind.name for s in spans} == {"CLIENT", "SERVER"}
    (server,) = [s for s in spans if s.kind.name == "SERVER"]
    assert server.attributes[sc.RESPONSE_MODEL] == chunks[0].model


def test_anthropic_client_span_is_the_parent_of_the_served_span(served: Any, telemetry: Any) -> None:
    """The anthropic SDK sends the trace context of otel_llm's CLIENT span: one trace, both sides."""
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        client = anthropic.Anthropic(base_url=served.anthropic_base_url, api_key="sk-ant-demo", max_retries=0,
                                     timeout=10, open_telemetry={"tracer_provider": telemetry.tracer_provider})
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
        _wait(telemetry, 1)
    finally:
        instrumentor.uninstrument()
    spans = telemetry.spans()
    (client_span,) = [s for s in spans if s.kind.name == "CLIENT"]
    (server_span,) = [s for s in spans if s.kind.name == "SERVER"]
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.attributes[sc.USAGE_OUTPUT_TOKENS] == message.usage.output_tokens


@pytest.mark.parametrize(("model", "expected"), [("error-429", "rate_limit_exceeded"), ("error-500", "server_error"),
                                                 ("error-midstream", "UpstreamDropped")])
def test_simulated_failures_are_served_errors_recorded_once(served: Any, telemetry: Any, model: str,
                                                            expected: str) -> None:
    client = openai.OpenAI(base_url=served.base_url, api_key="sk-demo", max_retries=0, timeout=10)
    with pytest.raises(openai.OpenAIError):
        list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    _wait(telemetry, 1)
    (point,) = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert point.count == 1 and point.attributes[sc.ERROR_TYPE] == expected


def test_plain_and_bridged_simulator_answer_alike(telemetry: Any, served: Any) -> None:
    """The bridge changes nothing the SDK sees: same content, usage and finish reason as the stdlib server."""
    with UpstreamSimulator(seed=3) as plain:
        answers = []
        for base in (plain.base_url, served.base_url):
            client = openai.OpenAI(base_url=base, api_key="sk-demo", max_retries=0, timeout=10)
            result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=30)
            answers.append((result.choices[0].message.content, result.usage.prompt_tokens,
                            result.usage.completion_tokens, result.choices[0].finish_reason, result.model))
    assert answers[0] == answers[1]
