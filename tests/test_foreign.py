"""GenAI spans otel-llm did not make get a cost and reach the gateway, counted once.

The foreign instrumentation is the official one for the openai SDK
(``opentelemetry-instrumentation-genai-openai``), on the real SDK against the upstream simulator;
hand-made spans stand for framework instrumentations (LangChain's, OpenInference's) around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor as OfficialOpenAIInstrumentor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv as sc
from otel_llm.foreign import ForeignSpans, install
from otel_llm.gateway import Gateway
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.pricing import Price, PriceTable

from .conftest import API_KEY

MESSAGES = [{"role": "user", "content": "Price me, whoever records me."}]
PRICES = PriceTable({("*", "gpt-4o-mini"): Price(input_per_mtok=1000.0, output_per_mtok=4000.0)}, use_library=False)


@pytest.fixture
def setup(telemetry: Any, upstream: Any) -> Iterator[Any]:
    """The recorder with the foreign-span processor on the in-memory tracer provider, a gateway on
    it, and the official openai instrumentation; ``setup.ours()`` adds otel-llm's."""

    class Setup:
        recorder = telemetry.recorder(prices=PRICES)
        processor = ForeignSpans(recorder)
        gateway = Gateway(meter_provider=telemetry.meter_provider).attach(recorder)
        official = OfficialOpenAIInstrumentor()
        mine = OpenAIInstrumentor()
        client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)

        def ours(self) -> None:
            self.mine.instrument(recorder=self.recorder)

    setup = Setup()
    telemetry.tracer_provider.add_span_processor(setup.processor)
    setup.official.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    yield setup
    setup.official.uninstrument()
    if setup.mine.is_instrumented_by_opentelemetry:
        setup.mine.uninstrument()
    setup.gateway.detach()


def _calls(setup: Any) -> list[Any]:
    results = [setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)]
    stream = setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = list(stream)
    results.append(chunks[-1])
    return results


def _expected_cost(results: list[Any]) -> float:
    return sum(r.usage.prompt_tokens * 1000 / 1e6 + r.usage.completion_tokens * 4000 / 1e6 for r in results)


def _cost(telemetry: Any) -> float:
    return sum(p.value for p in telemetry.points(sc.METRIC_COST[0]))


def _health(setup: Any) -> tuple[int, int]:
    """(calls, failures) in the gateway's health window for openai."""
    health = setup.gateway.snapshot()["providers"]["openai"]["health"]
    return health["calls"], health["failures"]


def test_the_official_instrumentations_spans_are_priced_and_reach_the_gateway(setup: Any, telemetry: Any) -> None:
    results = _calls(setup)
    spans = [s for s in telemetry.spans() if s.attributes.get(sc.OPERATION_NAME) == "chat"]
    assert len(spans) == 2 and all(s.instrumentation_scope.name != sc.INSTRUMENTATION_SCOPE for s in spans)
    assert _cost(telemetry) == pytest.approx(_expected_cost(results))
    (point,) = telemetry.points(sc.METRIC_COST[0])
    assert point.attributes[sc.PROVIDER_NAME] == "openai"
    assert point.attributes[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert setup.processor.counted == 2
    assert _health(setup) == (2, 0)


def test_with_ours_installed_too_every_call_is_counted_once(setup: Any, telemetry: Any) -> None:
    setup.ours()
    results = _calls(setup)
    spans = [s for s in telemetry.spans() if s.attributes.get(sc.OPERATION_NAME) == "chat"]
    assert len(spans) == 4  # two instrumentations, two spans per call
    ours = [s for s in spans if s.instrumentation_scope.name == sc.INSTRUMENTATION_SCOPE]
    assert all(s.parent is not None and s.parent.span_id in {t.context.span_id for t in spans} for s in ours)
    assert _cost(telemetry) == pytest.approx(_expected_cost(results))
    assert sum(s.attributes[sc.COST_USD] for s in ours) == pytest.approx(_expected_cost(results))
    assert (setup.processor.counted, setup.processor.skipped) == (0, 2)
    assert _health(setup) == (2, 0)


def test_a_framework_span_around_the_official_one_is_counted_once(setup: Any, telemetry: Any) -> None:
    """LangChain-style: a chat span with the same usage around the SDK's span (no otel-llm)."""
    tracer = telemetry.tracer_provider.get_tracer("some.framework.instrumentation")
    attributes = {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: "gpt-4o-mini"}
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attributes) as outer:
        result = setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        outer.set_attributes({sc.USAGE_INPUT_TOKENS: result.usage.prompt_tokens,
                              sc.USAGE_OUTPUT_TOKENS: result.usage.completion_tokens})
    assert _cost(telemetry) == pytest.approx(_expected_cost([result]))
    assert (setup.processor.counted, setup.processor.skipped) == (1, 1)


def test_agent_tool_and_other_spans_are_not_calls(setup: Any, telemetry: Any) -> None:
    tracer = telemetry.tracer_provider.get_tracer("some.agent.framework")
    usage = {sc.USAGE_INPUT_TOKENS: 1000, sc.USAGE_OUTPUT_TOKENS: 1000, sc.REQUEST_MODEL: "gpt-4o-mini",
             sc.PROVIDER_NAME: "openai"}
    with tracer.start_as_current_span("invoke_agent planner", attributes={sc.OPERATION_NAME: "invoke_agent", **usage}):
        with tracer.start_as_current_span("execute_tool search", attributes={sc.OPERATION_NAME: "execute_tool", **usage}):
            pass
    with tracer.start_as_current_span("GET /", attributes=usage):  # no operation
        pass
    with tracer.start_as_current_span("chat x", attributes={sc.OPERATION_NAME: "chat", sc.USAGE_INPUT_TOKENS: 5}):
        pass  # no provider: nothing to price it by, no gateway series to put it in
    assert telemetry.points(sc.METRIC_COST[0]) == []
    assert setup.processor.counted == 0


def test_legacy_names_and_a_failed_call(setup: Any, telemetry: Any) -> None:
    """Pre-1.37 instrumentations (gen_ai.system, prompt/completion tokens); a failed call is a failure
    for the gateway."""
    tracer = telemetry.tracer_provider.get_tracer("openllmetry.like")
    legacy = {sc.OPERATION_NAME: "chat", "gen_ai.system": "OpenAI", sc.REQUEST_MODEL: "gpt-4o-mini",
              "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 10}
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=legacy):
        pass
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes={**legacy, sc.ERROR_TYPE: "APITimeoutError"}) as span:
        span.set_status(Status(StatusCode.ERROR))
    assert _cost(telemetry) == pytest.approx(2 * (100 * 1000 + 10 * 4000) / 1e6)
    assert _health(setup) == (2, 1)


def test_install_is_once_per_provider_and_can_be_switched_off(telemetry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = telemetry.recorder()
    first = install(telemetry.tracer_provider, recorder)
    assert first is not None and install(telemetry.tracer_provider, recorder) is first
    monkeypatch.setenv(sc.ENV_FOREIGN_SPANS, "false")
    other = type(telemetry)()
    assert install(other.tracer_provider, other.recorder()) is None


def test_our_errors_never_reach_the_span_pipeline(setup: Any, telemetry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(call: Any) -> None:
        raise RuntimeError("bug in a listener")

    setup.recorder.add_listener(broken)
    monkeypatch.setattr(setup.recorder.prices, "cost", lambda *a, **k: 1 / 0)
    result = setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.usage.completion_tokens > 0
    assert len([s for s in telemetry.spans() if s.attributes.get(sc.OPERATION_NAME) == "chat"]) == 1


def test_spans_that_never_end_do_not_stop_the_deduplication(setup: Any, telemetry: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Some instrumentations leak the span of a stream their caller abandoned: the table of spans in
    flight starts over when full instead of refusing new ones."""
    import otel_llm.foreign as foreign

    monkeypatch.setattr(foreign, "_MAX_TRACKED", 5)
    tracer = telemetry.tracer_provider.get_tracer("leaky.instrumentation")
    for _ in range(7):  # started, never ended
        tracer.start_span("chat gpt-4o-mini", attributes={sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai"})
    setup.ours()
    results = _calls(setup)
    assert _cost(telemetry) == pytest.approx(_expected_cost(results))
    assert setup.processor.skipped == 2


def test_a_span_another_instrumentation_makes_inside_our_call_is_not_counted_again(setup: Any,
                                                                                  telemetry: Any) -> None:
    """The other order of nesting (theirs inside ours: two wrappers on one method, ours outermost)."""
    tracer = telemetry.tracer_provider.get_tracer("inner.instrumentation")
    usage = {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: "gpt-4o-mini",
             sc.USAGE_INPUT_TOKENS: 100, sc.USAGE_OUTPUT_TOKENS: 10}
    with setup.recorder.start_call("chat", "openai", "gpt-4o-mini") as call:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=usage):
            pass
        call.set_usage(100, 10)
    assert _cost(telemetry) == pytest.approx((100 * 1000 + 10 * 4000) / 1e6)
    assert (setup.processor.counted, setup.processor.skipped) == (0, 1)
    assert _health(setup) == (1, 0)
