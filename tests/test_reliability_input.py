"""Bad input from providers never reaches the caller through our code, and we record what we can.

* Fixed cases with the real SDKs: usage missing, null or nonsensical (strings, negatives, counts
  beyond int64 that would poison every later OTLP metric export), unknown or missing finish
  reasons, empty choices, non-JSON bodies, truncated SSE streams, dropped connections, huge answers.
* Property-based (hypothesis), differential: for arbitrary JSON answers and arbitrary, possibly
  truncated SSE streams served to the real ``openai`` SDK, the instrumented call returns or raises
  exactly what the uninstrumented call does, and leaves exactly one ended span.
* Property-based on the stream proxies (sync and async): whatever the stream yields, raises, or the
  consumer does (exhaust, break, close, leave a ``with`` block, drop it), the consumer sees
  exactly the stream's items and exceptions, and the call ends exactly once.
* Property-based on the recorder: any sequence of calls with any values never raises, ends once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import openai._base_client as openai_base_client
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_llm.recorder import LLMCall
from otel_llm.streaming import AsyncStreamProxy, SyncStreamProxy
from tests.conftest import API_KEY

http = sys.modules["httpx2"] if "httpx2" in vars(openai_base_client) else sys.modules["httpx"]
MESSAGES = [{"role": "user", "content": "hello"}]
FAST = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@pytest.fixture
def instrumented(telemetry: Any, instrument: Any) -> Any:
    """The openai SDK instrumented into the in-memory pipeline, for a whole hypothesis run."""
    instrument()
    return telemetry


def _uninstrumented(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` run with the SDK's own request method (the instrumentation wraps the client's)."""

    def run() -> Any:
        wrapper = openai_base_client.SyncAPIClient.__dict__["request"]
        openai_base_client.SyncAPIClient.request = wrapper.__wrapped__
        try:
            return call()
        finally:
            openai_base_client.SyncAPIClient.request = wrapper

    return run


def _client(respond: Callable[[Any], Any]) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url="http://provider.test/v1", max_retries=0,
                         http_client=http.Client(transport=http.MockTransport(respond)))


def _json(body: Any, status: int = 200) -> Callable[[Any], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda request: http.Response(status, headers={"content-type": "application/json"}, content=raw)


def _sse(raw: bytes) -> Callable[[Any], Any]:
    return lambda request: http.Response(200, headers={"content-type": "text/event-stream"}, content=raw)


def _llm_spans(telemetry: Any) -> list[Any]:
    """Finished LLM spans (no garbage collection: property tests call this per example)."""
    return [s for s in telemetry.span_exporter.get_finished_spans() if s.instrumentation_scope.name == "otel_llm"]


def _exportable(telemetry: Any) -> None:
    """What was recorded can be encoded for OTLP (a bad value would fail the whole batch or every export)."""
    encode_spans(telemetry.span_exporter.get_finished_spans())
    encode_metrics(telemetry.metric_reader.get_metrics_data())


# ---------------------------------------------------------------------- fixed cases


COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"usage": None}, {"gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.finish_reasons": ("stop",)}),
        ({"usage": "__delete__"}, {"gen_ai.response.id": "chatcmpl-1"}),
        ({"usage": {"prompt_tokens": None, "completion_tokens": 7}}, {"gen_ai.usage.output_tokens": 7}),
        ({"usage": {"prompt_tokens": "many", "completion_tokens": -4}}, {"gen_ai.response.id": "chatcmpl-1"}),
        ({"usage": {"prompt_tokens": 2**70, "completion_tokens": 5}}, {"gen_ai.usage.output_tokens": 5}),
        ({"usage": {"prompt_tokens": 12.0, "completion_tokens": True}}, {"gen_ai.usage.input_tokens": 12}),
        ({"usage": {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": "x"}}}, {"gen_ai.usage.input_tokens": 9}),
        ({"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "gpu_on_fire"}]},
         {"gen_ai.response.finish_reasons": ("gpu_on_fire",)}),
        ({"choices": [{"index": 0, "message": None, "finish_reason": None}]}, {"gen_ai.response.finish_reasons": ("unknown",)}),
        ({"choices": []}, {"gen_ai.usage.input_tokens": 12}),
        ({"choices": None, "model": None}, {"gen_ai.usage.input_tokens": 12}),
        ({"model": 42, "id": ["not", "an", "id"]}, {"gen_ai.usage.input_tokens": 12}),
    ],
)
def test_odd_answers_are_recorded_as_far_as_they_go(change, expected, telemetry, instrument):
    instrument()
    body = {k: v for k, v in {**COMPLETION, **change}.items() if v != "__delete__"}
    result = _client(_json(body)).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.id == body.get("id")  # the SDK's own object, untouched
    [span] = _llm_spans(telemetry)
    for key, value in expected.items():
        assert span.attributes.get(key) == value, key
    assert "error.type" not in span.attributes
    usage = body.get("usage") or {}
    for key, field in (("gen_ai.usage.input_tokens", "prompt_tokens"), ("gen_ai.usage.output_tokens", "completion_tokens")):
        raw = usage.get(field) if isinstance(usage, dict) else None
        valid = not isinstance(raw, bool) and isinstance(raw, (int, float)) and 0 <= raw < 2**63
        assert span.attributes.get(key) == (int(raw) if valid else None), key
    _exportable(telemetry)


def test_non_json_answer_fails_the_call_with_the_sdks_error(telemetry, instrument, upstream):
    instrument()
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
    with pytest.raises(json.JSONDecodeError) as caught:
        client.chat.completions.create(model="error-malformed", messages=MESSAGES)
    stream = client.chat.completions.create(model="error-malformed", messages=MESSAGES, stream=True)
    with pytest.raises(json.JSONDecodeError):
        list(stream)
    spans = _llm_spans(telemetry)
    assert [s.attributes["error.type"] for s in spans] == ["JSONDecodeError", "JSONDecodeError"]
    assert caught.value.doc  # the SDK's exception object, as the SDK raised it


def test_truncated_stream_keeps_what_arrived(telemetry, instrument, upstream):
    instrument()
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
    stream = client.chat.completions.create(model="error-midstream", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(Exception) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "half of the stream arrives before the connection drops"
    [span] = _llm_spans(telemetry)
    assert span.attributes["error.type"] == type(caught.value).__qualname__
    assert span.attributes["gen_ai.response.id"] == received[0].id  # what arrived is recorded
    points = telemetry.collect()
    assert sum(p.count for p in points["gen_ai.client.operation.time_to_first_chunk"]) == 1
    assert sum(p.count for p in points["gen_ai.client.operation.time_per_output_chunk"]) == len(
        [c for c in received if c.choices]) - 1


def test_connection_dropped_without_an_answer(telemetry, instrument, upstream):
    instrument()
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="error-disconnect", messages=MESSAGES)
    [span] = _llm_spans(telemetry)
    assert span.attributes["error.type"] == "APIConnectionError"


def test_anthropic_stream_broken_midway(telemetry, instrument_anthropic, anthropic_client):
    instrument_anthropic()
    for model, error in (("error-midstream", Exception), ("error-overloaded-midstream", anthropic.APIStatusError)):
        with pytest.raises(error):
            with anthropic_client.messages.stream(model=model, max_tokens=50, messages=MESSAGES) as stream:
                for _event in stream:
                    pass
    spans = _llm_spans(telemetry)
    assert len(spans) == 2 and all(s.attributes.get("error.type") for s in spans)
    _exportable(telemetry)


def test_huge_answers(telemetry, instrument):
    instrument()
    text = "lorem ipsum " * 500_000  # 6 MB of text
    choices = [{"index": i, "message": {"role": "assistant", "content": text if i == 0 else "x"},
                "finish_reason": "length"} for i in range(2_000)]
    body = {**COMPLETION, "choices": choices, "usage": {"prompt_tokens": 2**63 - 1, "completion_tokens": 10**12}}
    result = _client(_json(body)).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2000)
    assert len(result.choices) == 2_000
    [span] = _llm_spans(telemetry)
    assert span.attributes["gen_ai.usage.input_tokens"] == 2**63 - 1
    assert len(span.attributes["gen_ai.response.finish_reasons"]) == 2_000
    assert "gen_ai.output.messages" not in span.attributes  # content capture is off: 6 MB not copied
    events = "".join(f"data: {json.dumps({'id': 'c', 'model': 'm', 'choices': [{'index': 0, 'delta': {'content': 'w '}}]})}\n\n"
                     for _ in range(20_000)) + "data: [DONE]\n\n"
    assert sum(1 for _ in _client(_sse(events.encode())).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True)) == 20_000
    assert sum(p.count for p in telemetry.collect()["gen_ai.client.operation.time_per_output_chunk"]) == 19_999
    _exportable(telemetry)


# ---------------------------------------------------------------------- differential, SDK level

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False), st.text(max_size=12))
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=6)
_counts = st.one_of(st.integers(min_value=-3, max_value=2**64), st.just(None), st.text(max_size=4), _json_values)
_usage = st.one_of(st.none(), _json_values, st.fixed_dictionaries({}, optional={
    "prompt_tokens": _counts, "completion_tokens": _counts, "total_tokens": _counts,
    "prompt_tokens_details": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"cached_tokens": _counts})),
    "completion_tokens_details": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"reasoning_tokens": _counts})),
}))
_finish = st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls", "content_filter"]), st.text(max_size=10),
                    st.integers())
_message = st.one_of(st.none(), _json_values, st.fixed_dictionaries({}, optional={
    "role": st.one_of(st.just("assistant"), _scalars), "content": st.one_of(st.text(max_size=30), _json_values),
}))
_choice = st.one_of(_json_values, st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.integers(0, 3), _scalars), "message": _message, "finish_reason": _finish,
}))
_completion = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=10), _scalars), "object": st.just("chat.completion"),
    "model": st.one_of(st.text(max_size=20), _scalars), "choices": st.one_of(st.lists(_choice, max_size=3), _json_values),
    "usage": _usage, "service_tier": _scalars, "system_fingerprint": _scalars,
})
_bodies = st.one_of(
    _completion.map(lambda body: json.dumps(body).encode()),
    _json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
    _completion.flatmap(lambda body: st.integers(0, max(0, len(json.dumps(body)) - 1)).map(
        lambda cut: json.dumps(body).encode()[:cut])),  # truncated JSON
)


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return ("raised", type(exc), str(exc))
    return ("returned", type(result), _shown(result))


def _shown(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<unrepresentable {type(exc).__name__}>"


@FAST
@given(body=_bodies, status=st.sampled_from([200, 200, 200, 201, 400, 500]))
def test_any_answer_gives_the_caller_what_the_uninstrumented_sdk_gives(body, status, instrumented):
    telemetry = instrumented
    telemetry.span_exporter.clear()
    client = _client(_json(body, status))
    create = client.chat.completions.create
    plain = _outcome(_uninstrumented(lambda: create(model="gpt-4o-mini", messages=MESSAGES)))
    assert not _llm_spans(telemetry)
    instrumented = _outcome(lambda: create(model="gpt-4o-mini", messages=MESSAGES))
    assert instrumented == plain
    [span] = _llm_spans(telemetry)  # one call, one ended span
    assert span.end_time is not None
    if plain[0] == "raised":
        assert span.attributes["error.type"] == plain[1].__qualname__
    else:  # what could be read was recorded
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        model = parsed.get("model") if isinstance(parsed, dict) else None
        if isinstance(model, str) and model:  # even when choices are malformed
            assert span.attributes.get("gen_ai.response.model") == model
    encode_spans([span])


def _sse_event(kind: str, value: Any) -> bytes:
    if kind == "chunk":
        return f"data: {json.dumps(value)}\n\n".encode()
    if kind == "garbage":
        return f"data: {value}\n\n".encode()
    if kind == "error":
        return f"event: error\ndata: {json.dumps({'error': {'message': str(value)}})}\n\n".encode()
    if kind == "comment":
        return b": keep-alive\n\n"
    return b"data: [DONE]\n\n"


_delta = st.one_of(_json_values, st.fixed_dictionaries({}, optional={"content": st.one_of(st.text(max_size=8), _scalars),
                                                                     "role": _scalars}))
_stream_choice = st.one_of(_json_values, st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.integers(0, 2), _scalars), "delta": _delta, "finish_reason": _finish}))
_chunk = st.one_of(_json_values, st.fixed_dictionaries({"id": st.just("chatcmpl-s")}, optional={
    "model": st.one_of(st.text(max_size=10), _scalars), "choices": st.one_of(st.lists(_stream_choice, max_size=2), _json_values),
    "usage": _usage,
}))
_events = st.lists(st.one_of(
    st.tuples(st.just("chunk"), _chunk), st.tuples(st.just("chunk"), _chunk),
    st.tuples(st.just("garbage"), st.text(alphabet="abc{[", max_size=6)),
    st.tuples(st.just("error"), st.text(max_size=6)), st.tuples(st.just("comment"), st.none()),
    st.tuples(st.just("done"), st.none()),
), max_size=8)


@FAST
@given(events=_events, cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_any_stream_gives_the_caller_what_the_uninstrumented_sdk_gives(events, cut, instrumented):
    telemetry = instrumented
    telemetry.span_exporter.clear()
    raw = b"".join(_sse_event(kind, value) for kind, value in events)
    raw = raw if cut is None else raw[:cut]  # a truncated stream
    client = _client(_sse(raw))
    create = client.chat.completions.create
    # The caller asks for usage itself: the instrumentation then hides nothing and sends the same request.
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    def consume(stream_call: Callable[[], Any]) -> tuple[Any, ...]:
        items: list[str] = []
        try:
            for item in stream_call():
                items.append(_shown(item))
        except Exception as exc:  # noqa: BLE001 - compared
            return ("raised", items, type(exc), str(exc))
        return ("done", items)

    plain = _uninstrumented(lambda: consume(lambda: create(**kwargs)))()
    instrumented = consume(lambda: create(**kwargs))
    assert instrumented == plain
    [span] = _llm_spans(telemetry)  # read to the end or raised: ended without garbage collection
    assert span.end_time is not None
    if plain[0] == "raised":
        assert span.attributes["error.type"] == plain[2].__qualname__
    encode_spans([span])


# ---------------------------------------------------------------------- the stream proxies


class FakeStream:
    """A stream: yields ``items``, then raises ``error`` (or stops); records close()."""

    def __init__(self, items: list[Any], error: BaseException | None) -> None:
        self._items = list(items)
        self.error = error
        self.closed = 0

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> Any:
        if self._items:
            return self._items.pop(0)
        if self.error is not None:
            raise self.error
        raise StopIteration

    def close(self) -> None:
        self.closed += 1

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class FakeAsyncStream(FakeStream):
    def __aiter__(self) -> FakeAsyncStream:
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(0)
        try:
            return self.__next__()
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:  # type: ignore[override]
        self.closed += 1

    async def __aenter__(self) -> FakeAsyncStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def _handler(behaviours: list[str]) -> Callable[[Any], bool]:
    def on_item(item: Any) -> bool:
        behaviour = behaviours[item]
        if behaviour == "raise":
            raise ValueError("a bug of ours while reading a chunk")
        return behaviour == "hide"

    return on_item


_behaviours = st.lists(st.sampled_from(["pass", "pass", "hide", "raise"]), max_size=12)
_consumers = st.tuples(st.sampled_from(["exhaust", "break", "close", "with", "drop"]), st.integers(0, 12))


def _expected(behaviours: list[str], consumer: tuple[str, int], failing: bool) -> tuple[list[int], bool]:
    """(items the consumer receives, whether it receives the stream's error)."""
    visible = [i for i, b in enumerate(behaviours) if b != "hide"]
    action, stop = consumer
    if action == "exhaust" or stop >= len(visible):
        return visible, failing
    return visible[:stop], False


@FAST
@given(behaviours=_behaviours, failing=st.booleans(), consumer=_consumers)
def test_sync_proxy_passes_everything_through_and_ends_once(behaviours, failing, consumer, telemetry):
    recorder = telemetry.recorder()
    telemetry.span_exporter.clear()
    error = RuntimeError("connection reset mid-stream") if failing else None
    stream = FakeStream(list(range(len(behaviours))), error)
    call = recorder.start_call("chat", "openai", "gpt-4o-mini", stream=True)
    action, stop = consumer

    def consume() -> tuple[list[int], BaseException | None]:  # the proxy is gone when it returns
        proxy = SyncStreamProxy(stream, call, _handler(behaviours))
        received: list[int] = []
        try:
            if action == "with":
                with proxy as entered:
                    for item in entered:
                        if len(received) == stop:
                            break
                        received.append(item)
            else:
                for item in proxy:
                    if action != "exhaust" and len(received) == stop:
                        break
                    received.append(item)
                if action == "close":
                    proxy.close()
        except RuntimeError as exc:
            return received, exc
        return received, None

    received, raised = consume()
    if not call.ended:  # left by break or dropped: ended when collected
        gc.collect()
    items, gets_error = _expected(behaviours, consumer, failing)
    assert received == items
    assert (raised is error) if gets_error else raised is None
    spans = _llm_spans(telemetry)
    assert len(spans) == 1 and call.ended
    assert spans[0].attributes.get("error.type") == ("RuntimeError" if gets_error else None)
    if action == "with" or action == "close" and raised is None:
        assert stream.closed >= 1


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(behaviours=_behaviours, failing=st.booleans(), consumer=_consumers)
def test_async_proxy_passes_everything_through_and_ends_once(behaviours, failing, consumer, telemetry):
    recorder = telemetry.recorder()
    telemetry.span_exporter.clear()
    error = RuntimeError("connection reset mid-stream") if failing else None
    stream = FakeAsyncStream(list(range(len(behaviours))), error)
    call = recorder.start_call("chat", "openai", "gpt-4o-mini", stream=True)
    action, stop = consumer

    async def consume() -> tuple[list[int], BaseException | None]:
        proxy = AsyncStreamProxy(stream, call, _handler(behaviours))
        received: list[int] = []
        try:
            if action == "with":
                async with proxy as entered:
                    async for item in entered:
                        if len(received) == stop:
                            break
                        received.append(item)
            else:
                async for item in proxy:
                    if action != "exhaust" and len(received) == stop:
                        break
                    received.append(item)
                if action in ("close", "break"):
                    await proxy.close()
        except RuntimeError as exc:
            return received, exc
        return received, None

    received, raised = asyncio.run(consume())
    if not call.ended:
        gc.collect()
    items, gets_error = _expected(behaviours, consumer, failing)
    assert received == items
    assert (raised is error) if gets_error else raised is None
    assert len(_llm_spans(telemetry)) == 1 and call.ended
    assert _llm_spans(telemetry)[0].attributes.get("error.type") == ("RuntimeError" if gets_error else None)


def test_async_stream_cancelled_while_waiting_for_a_chunk(telemetry):
    recorder = telemetry.recorder()

    class Stalled(FakeAsyncStream):
        async def __anext__(self) -> Any:
            await asyncio.sleep(3600)

    async def main() -> None:
        call = recorder.start_call("chat", "openai", "gpt-4o-mini", stream=True)
        proxy = AsyncStreamProxy(Stalled([], None), call, lambda item: False)
        task = asyncio.ensure_future(proxy.__anext__())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [span] = _llm_spans(telemetry)  # cancelled by the consumer: not an error
    assert "error.type" not in span.attributes
    assert span.attributes["llm.call.cancelled"] is True


# ---------------------------------------------------------------------- the recorder

_anything = st.one_of(_scalars, _json_values, st.just(float("nan")), st.just(float("inf")), st.binary(max_size=4))
_operations = st.lists(st.one_of(
    st.tuples(st.just("chunk")),
    st.tuples(st.just("set_response"), st.fixed_dictionaries({}, optional={
        "model": _anything, "response_id": _anything, "finish_reasons": st.one_of(st.lists(_anything, max_size=3), _anything)})),
    st.tuples(st.just("set_usage"), st.fixed_dictionaries({}, optional={
        "input_tokens": _anything, "output_tokens": _anything, "cache_read_tokens": _anything,
        "cache_creation_tokens": _anything, "reasoning_tokens": _anything})),
    st.tuples(st.just("set_content"), st.fixed_dictionaries({}, optional={"input_messages": _anything})),
    st.tuples(st.just("end")),
    st.tuples(st.just("fail"), st.one_of(st.text(max_size=8), st.just(RuntimeError("x")), st.just(KeyboardInterrupt()))),
), max_size=10)


@FAST
@given(operations=_operations, model=_anything, stream=st.booleans())
def test_recorder_takes_anything_and_ends_once(operations, model, stream, telemetry):
    recorder = telemetry.recorder()
    telemetry.span_exporter.clear()
    call: LLMCall = recorder.start_call("chat", "openai", model if isinstance(model, str) else None, stream=stream)
    for operation in operations:
        name, *args = operation
        method = getattr(call, name)
        method(*args) if name in ("chunk", "end", "fail") else method(**args[0])
    call.end()
    spans = _llm_spans(telemetry)
    assert len(spans) == 1 and call.ended
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        value = spans[0].attributes.get(key)
        assert value is None or (type(value) is int and 0 <= value < 2**63)
    encode_spans(spans)
    encode_metrics(telemetry.metric_reader.get_metrics_data())
