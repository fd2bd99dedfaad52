"""A FastAPI app these tests did not write: fakellm (PyPI, ``fakellm==0.3.5``), a mock OpenAI- and
Anthropic-compatible server, instrumented by ``LLMServerInstrumentor`` (the ``opentelemetry-instrument``
path, switched on by ``OTEL_LLM_SERVER_INSTRUMENTATION``), under uvicorn, the real SDKs as clients.

fakellm loads its rules from ``FAKELLM_CONFIG`` at import, and counts tokens with tiktoken when it
can; tiktoken would fetch its encoding from the internet, so it is hidden while fakellm is imported
(fakellm then uses its own estimate, which is what it sends and what we must record).
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from otel_llm import semconv as sc
from tests.conftest import Telemetry
from tests.test_server import API_KEY, MESSAGES, serving

pytest.importorskip("fakellm", reason="fakellm (the third-party server) is not installed: pip install fakellm==0.3.5")

RULES = """
rules:
  - name: overloaded
    when:
      header.x-fail: "yes"
    respond:
      status: 429
      error: "mock overload"
  - name: fixed
    when:
      model_matches: "fixed-.*"
    respond:
      content: "one two three four five six seven eight nine ten"
"""


def _import_fakellm(config: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKELLM_CONFIG", config)
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "tiktoken" or name.startswith("tiktoken.")}
    sys.modules["tiktoken"] = None  # type: ignore[assignment]  # ImportError on import: no download attempted
    try:
        for name in [n for n in sys.modules if n == "fakellm" or n.startswith("fakellm.")]:
            del sys.modules[name]
        return importlib.import_module("fakellm.server")
    finally:
        del sys.modules["tiktoken"]
        sys.modules.update(hidden)


class Harness:
    def __init__(self, telemetry: Telemetry, base: str) -> None:
        self.telemetry = telemetry
        self.base = base

    def finished(self) -> int:
        return sum(p.count for p in self.telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0]))

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + 5
        while self.finished() < count:
            assert time.monotonic() < deadline, f"{self.finished()} requests recorded, expected {count}"
            time.sleep(0.01)
        time.sleep(0.05)

    def points(self, spec: tuple[str, str, str]) -> list[Any]:
        return self.telemetry.points(spec[0])

    def spans(self) -> list[Any]:
        return [s for s in self.telemetry.spans() if s.kind.name == "SERVER"]


@pytest.fixture
def fakellm(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, telemetry: Telemetry) -> Iterator[Harness]:
    from otel_llm.server.instrumentor import LLMServerInstrumentor

    config = tmp_path / "fakellm.yaml"
    config.write_text(RULES)
    module = _import_fakellm(str(config), monkeypatch)
    monkeypatch.setenv(sc.ENV_SERVER_INSTRUMENTATION, "true")
    instrumentor = LLMServerInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        with serving(module.app) as base:
            yield Harness(telemetry, base)
    finally:
        instrumentor.uninstrument()


def test_instrumentor_is_off_without_the_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                                               telemetry: Telemetry) -> None:
    from fastapi import FastAPI

    from otel_llm.server.instrumentor import LLMServerInstrumentor

    monkeypatch.delenv(sc.ENV_SERVER_INSTRUMENTATION, raising=False)
    instrumentor = LLMServerInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        app = FastAPI()
        app.build_middleware_stack()
        assert app.user_middleware == []
    finally:
        instrumentor.uninstrument()


def test_openai_json_tokens_and_model_as_fakellm_sent_them(fakellm: Harness) -> None:
    client = openai.OpenAI(base_url=fakellm.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
    result = client.chat.completions.create(model="fixed-model", messages=MESSAGES)
    fakellm.wait(1)
    found = {p.attributes[sc.TOKEN_TYPE]: int(p.sum) for p in fakellm.points(sc.METRIC_SERVER_TOKEN_USAGE)}
    assert found == {"input": result.usage.prompt_tokens, "output": result.usage.completion_tokens}
    assert found["output"] > 0
    (duration,) = fakellm.points(sc.METRIC_SERVER_REQUEST_DURATION)
    assert duration.attributes[sc.RESPONSE_MODEL] == result.model
    assert duration.attributes[sc.HTTP_ROUTE] == "/v1/chat/completions"
    (span,) = fakellm.spans()
    assert span.name == "chat fixed-model"
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)


def test_openai_stream_ttft_within_the_clients_and_no_invented_tokens(fakellm: Harness) -> None:
    """fakellm's OpenAI streams carry no usage even when asked: we record none rather than guess."""
    client = openai.OpenAI(base_url=fakellm.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
    start = time.perf_counter()
    first = None
    stream = client.chat.completions.create(model="fixed-model", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    pieces = 0
    for chunk in stream:
        if first is None:
            first = time.perf_counter() - start
        pieces += 1
    fakellm.wait(1)
    assert pieces > 5
    (ttft,) = fakellm.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)
    assert 0 < ttft.sum <= first
    assert fakellm.points(sc.METRIC_SERVER_TOKEN_USAGE) == []
    (streams,) = fakellm.points(sc.METRIC_SERVER_STREAMS)
    assert streams.attributes[sc.STREAM_OUTCOME] == "completed"


def test_anthropic_stream_tokens_equal_the_final_message(fakellm: Harness) -> None:
    client = anthropic.Anthropic(base_url=fakellm.base, api_key=API_KEY, max_retries=0, timeout=10)
    with client.messages.stream(model="fixed-claude", max_tokens=50, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    fakellm.wait(1)
    found = {p.attributes[sc.TOKEN_TYPE]: int(p.sum) for p in fakellm.points(sc.METRIC_SERVER_TOKEN_USAGE)}
    assert found == {"input": final.usage.input_tokens, "output": final.usage.output_tokens}
    (span,) = fakellm.spans()
    assert span.attributes[sc.PROVIDER_NAME] == "anthropic"
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == (final.stop_reason,)
    assert [p.count for p in fakellm.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)] == [1]


def test_error_rule_is_recorded_with_fakellms_error_type(fakellm: Harness) -> None:
    client = openai.OpenAI(base_url=fakellm.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-fail": "yes"})
    fakellm.wait(1)
    expected = raised.value.body["type"] if isinstance(raised.value.body, dict) else None
    (duration,) = fakellm.points(sc.METRIC_SERVER_REQUEST_DURATION)
    assert expected and duration.attributes[sc.ERROR_TYPE] == expected
