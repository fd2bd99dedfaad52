"""The recorder alone: names, units, buckets, lifecycle, exemplars, error handling."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import llm_call
from otel_llm import semconv as sc
from otel_llm.content import CaptureMode, capture_mode_from_env
from otel_llm.pricing import Price, PriceTable


def test_span_and_metrics_follow_semconv(telemetry):
    recorder = telemetry.recorder()
    call = recorder.start_call("chat", "openai", "gpt-4o-mini", server_address="api.openai.com", server_port=443)
    call.set_response(model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-1", finish_reasons=["stop"])
    call.set_usage(120, 30, cache_read_tokens=20, reasoning_tokens=5)
    call.end()

    (span,) = telemetry.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == "otel_llm"
    assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"
    attrs = dict(span.attributes)
    assert attrs[sc.PROVIDER_NAME] == "openai"
    assert "gen_ai.system" not in attrs
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 120
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 30
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 20
    assert attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 5
    assert attrs[sc.SERVER_PORT] == 443
    # gpt-4o-mini: $0.15 / MTok input, $0.075 cached input, $0.60 output
    assert attrs[sc.COST_USD] == pytest.approx((100 * 0.15 + 20 * 0.075 + 30 * 0.6) / 1e6)

    duration = telemetry.metric("gen_ai.client.operation.duration")
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert tuple(point.explicit_bounds) == sc.DURATION_BUCKETS
    assert dict(point.attributes) == {
        sc.OPERATION_NAME: "chat",
        sc.PROVIDER_NAME: "openai",
        sc.REQUEST_MODEL: "gpt-4o-mini",
        sc.RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.SERVER_ADDRESS: "api.openai.com",
        sc.SERVER_PORT: 443,
    }
    tokens = telemetry.metric("gen_ai.client.token.usage")
    assert tokens.unit == "{token}"
    by_type = {p.attributes[sc.TOKEN_TYPE]: p for p in tokens.data.data_points}
    assert by_type["input"].sum == 120 and by_type["output"].sum == 30
    assert tuple(by_type["input"].explicit_bounds) == sc.TOKEN_BUCKETS
    (cost,) = telemetry.points("llm.client.cost")
    assert cost.value == pytest.approx(attrs[sc.COST_USD])


def test_metric_exemplars_carry_the_call_trace_id(telemetry):
    call = telemetry.recorder().start_call("chat", "openai", "gpt-4o-mini", stream=True)
    call.chunk()
    call.chunk()
    call.set_usage(10, 2)
    call.end()
    (span,) = telemetry.spans()
    collected = telemetry.collect()
    for name in (
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    ):  # llm.client.cost is an observable counter: summed in process, no exemplars
        points = collected.get(name)
        assert points, name
        for point in points:
            assert point.exemplars, name
            assert {e.trace_id for e in point.exemplars} == {span.context.trace_id}, name


def test_stream_metrics_one_record_per_chunk_after_the_first(telemetry):
    call = telemetry.recorder().start_call("chat", "openai", "m", stream=True)
    for _ in range(5):
        call.chunk()
    call.end()
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    (tpoc,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1
    assert tpoc.count == 4
    assert telemetry.spans()[0].attributes[sc.REQUEST_STREAM] is True


def test_non_stream_call_records_no_chunk_metrics(telemetry):
    telemetry.recorder().start_call("chat", "openai", "m").end()
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk") == []
    assert telemetry.points("gen_ai.client.operation.time_per_output_chunk") == []


def test_fail_sets_error_type_status_and_metric_attribute(telemetry):
    class UpstreamBroke(Exception):
        pass

    call = telemetry.recorder().start_call("chat", "openai", "m")
    call.fail(UpstreamBroke("Incorrect API key provided: sk-abc123456789. Bearer abc.def"))
    (span,) = telemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "test_fail_sets_error_type_status_and_metric_attribute.<locals>.UpstreamBroke"
    assert "sk-abc123456789" not in span.status.description
    assert "abc.def" not in span.status.description
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.attributes[sc.ERROR_TYPE] == span.attributes[sc.ERROR_TYPE]


def test_call_ends_exactly_once_across_threads(telemetry):
    recorder = telemetry.recorder()
    calls = [recorder.start_call("chat", "openai", "m") for _ in range(50)]
    barrier = threading.Barrier(4)

    def finish_all():
        barrier.wait()
        for call in calls:
            call.set_usage(1, 1)
            call.end()
            call.fail(RuntimeError("late"))

    threads = [threading.Thread(target=finish_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(telemetry.spans()) == 50
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.count == 50
    assert all(span.status.status_code is StatusCode.UNSET for span in telemetry.spans())


def test_manual_api_context_manager_records_and_reraises(telemetry):
    recorder = telemetry.recorder()
    with llm_call("chat", "openai", "gpt-4o-mini", server_address="llm.internal", recorder=recorder) as call:
        from opentelemetry import trace

        assert trace.get_current_span() is call.span
        call.set_response(model="gpt-4o-mini", finish_reasons=["stop"])
        call.set_usage(10, 5)
    with pytest.raises(TimeoutError):
        with llm_call("embeddings", "openai", "text-embedding-3-small", recorder=recorder):
            raise TimeoutError("upstream took too long")
    ok, failed = telemetry.spans()
    assert ok.attributes[sc.USAGE_OUTPUT_TOKENS] == 5 and ok.status.status_code is StatusCode.UNSET
    assert failed.name == "embeddings text-embedding-3-small"
    assert failed.attributes[sc.ERROR_TYPE] == "TimeoutError"


def test_our_own_errors_never_reach_the_caller(telemetry, caplog, monkeypatch):
    monkeypatch.setattr("otel_llm.recorder._reported", set())  # each place reports once per process

    class BrokenPrices(PriceTable):
        def cost(self, *args, **kwargs):
            raise ZeroDivisionError("bug in otel-llm")

    call = telemetry.recorder(prices=BrokenPrices()).start_call("chat", "openai", "m")
    call.set_usage(1, 1)
    call.end()  # must not raise
    call.set_usage("not a number")  # must not raise either
    assert "internal error in LLMCall cost" in caplog.text
    assert "ZeroDivisionError: bug in otel-llm" in caplog.text  # the traceback, as text
    [span] = telemetry.spans()  # pricing failed: the span still ended, with its tokens
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 1


def test_listener_sees_finished_calls_and_its_errors_are_contained(telemetry):
    recorder = telemetry.recorder(prices=PriceTable({("openai", "m"): Price(1.0, 2.0)}, use_library=False))
    seen = []
    recorder.add_listener(seen.append)
    recorder.add_listener(lambda call: 1 / 0)
    call = recorder.start_call("chat", "openai", "m")
    call.set_usage(1_000_000, 1_000_000)
    call.end()
    assert seen == [call]
    assert call.cost == pytest.approx(3.0)
    assert call.duration is not None and call.duration >= 0


def test_content_is_dropped_unless_opted_in(telemetry):
    messages = [{"role": "user", "parts": [{"type": "text", "content": "my secret plan"}]}]
    call = telemetry.recorder(capture=CaptureMode.NO_CONTENT).start_call("chat", "openai", "m")
    call.set_content(input_messages=messages)
    call.end()
    call = telemetry.recorder(capture=CaptureMode.SPAN_ONLY).start_call("chat", "openai", "m")
    call.set_content(input_messages=messages)
    call.end()
    without, with_content = telemetry.spans()
    assert sc.INPUT_MESSAGES not in without.attributes
    assert "my secret plan" in with_content.attributes[sc.INPUT_MESSAGES]


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        (None, CaptureMode.NO_CONTENT),
        ("SPAN_ONLY", CaptureMode.SPAN_ONLY),
        ("event_only", CaptureMode.EVENT_ONLY),
        ("SPAN_AND_EVENT", CaptureMode.SPAN_AND_EVENT),
        ("true", CaptureMode.SPAN_ONLY),
        ("bogus", CaptureMode.NO_CONTENT),
    ],
)
def test_capture_mode_from_env(monkeypatch, raw, mode):
    if raw is None:
        monkeypatch.delenv(sc.ENV_CAPTURE_CONTENT, raising=False)
    else:
        monkeypatch.setenv(sc.ENV_CAPTURE_CONTENT, raw)
    assert capture_mode_from_env() is mode


def test_cost_counter_sums_per_attribute_set_and_overflows_visibly(telemetry):
    from otel_llm.recorder import CostTotals

    recorder = telemetry.recorder(prices=PriceTable({("*", "m"): Price(1.0, 0.0)}, use_library=False))
    recorder.cost = CostTotals(limit=3)  # small limit to see the overflow
    for index in range(5):
        for _ in range(2):
            call = recorder.start_call("chat", "openai", "m", server_address=f"host{index}")
            call.set_usage(1_000_000, 0)
            call.end()
    observed = {obs.attributes.get("server.address", "overflow"): obs.value for obs in recorder.cost.observe()}
    assert observed == {"host0": 2.0, "host1": 2.0, "host2": 2.0, "overflow": 4.0}
    assert sum(observed.values()) == 10.0


def test_cost_counter_is_exported_as_a_monotonic_sum(telemetry):
    recorder = telemetry.recorder(prices=PriceTable({("*", "m"): Price(2.0, 0.0)}, use_library=False))
    for _ in range(3):
        call = recorder.start_call("chat", "openai", "m")
        call.set_usage(500_000, 0)
        call.end()
    metric = telemetry.metric("llm.client.cost")
    assert metric.unit == "{USD}"
    assert metric.data.is_monotonic
    (point,) = metric.data.data_points
    assert point.value == pytest.approx(3.0)


def test_two_recorders_on_one_meter_provider_both_report_cost(telemetry):
    """The SDK keeps the first callback registered for an observable instrument's name: every recorder
    on a meter adds to one tally, so the second recorder's cost is not lost (as it was, under
    opentelemetry-instrument, for whichever SDK's instrumentor came second)."""
    from otel_llm.pricing import Price, PriceTable

    prices = PriceTable({("*", "m"): Price(input_per_mtok=1e6, output_per_mtok=0.0)}, use_library=False)
    first, second = telemetry.recorder(prices=prices), telemetry.recorder(prices=prices)
    for recorder, provider in ((first, "openai"), (second, "anthropic")):
        with recorder.start_call("chat", provider, "m") as call:
            call.set_usage(2, 0)
    costs = {p.attributes[sc.PROVIDER_NAME]: p.value for p in telemetry.points(sc.METRIC_COST[0])}
    assert costs == {"openai": 2.0, "anthropic": 2.0}


def test_instrumentors_without_a_recorder_share_one_per_providers(telemetry):
    from otel_llm.instrumentation._common import recorder_from

    kwargs = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    assert recorder_from(kwargs) is recorder_from(dict(kwargs))
    other = type(telemetry)()
    assert recorder_from({"tracer_provider": other.tracer_provider, "meter_provider": other.meter_provider}) \
        is not recorder_from(kwargs)
