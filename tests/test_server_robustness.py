"""Whatever bodies pass (huge, empty, not JSON, wrong types, SSE cut anywhere, broken gzip), the
middleware never raises from its own code, never reports an internal error, and the app and the
client get exactly the bytes they would have got without it.

Hypothesis drives the middleware in-process (an ASGI call with scripted receive/send); the
parametrized cases go through uvicorn on loopback with httpx.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_llm import recorder as client_recorder
from otel_llm import semconv as sc
from otel_llm.server import LLMServerMiddleware, ServerRecorder
from tests.test_server import serving

ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"]


@pytest.fixture(autouse=True)
def no_internal_errors() -> Any:
    before = set(client_recorder._reported)
    yield
    new = set(client_recorder._reported) - before
    assert not new, f"internal errors reported: {sorted(new)}"


def _middleware(app: Any, telemetry: Any, **options: Any) -> LLMServerMiddleware:
    return LLMServerMiddleware(app, recorder=ServerRecorder(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider), **options)


def _echo_app(response_messages: list[dict[str, Any]] | None, seen: list[bytes]) -> Any:
    """Reads the whole body (recording the pieces it got), then sends ``response_messages`` or, if
    None, echoes the body back as JSON."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pieces = []
        while True:
            message = await receive()
            pieces.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(b"".join(pieces))
        if response_messages is None:
            body = b"".join(pieces)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        for message in response_messages:
            await send(message)

    return app


async def _drive(app: Any, path: str, request_pieces: list[bytes]) -> list[dict[str, Any]]:
    """One ASGI http request through ``app``: the request body in ``request_pieces``; returns what was sent."""
    queue = [{"type": "http.request", "body": piece, "more_body": i < len(request_pieces) - 1}
             for i, piece in enumerate(request_pieces or [b""])]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
request_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "model": json_values, "stream": json_values, "stream_options": json_values, "messages": json_values,
        "temperature": json_values, "max_tokens": json_values, "n": json_values,
    }).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ROUTES), body=request_bodies, cuts=st.lists(st.integers(0, 400), max_size=4))
def test_any_request_body_reaches_the_app_intact(telemetry: Any, path: str, body: bytes, cuts: list[int]) -> None:
    seen: list[bytes] = []
    pieces = _split(body, cuts)
    bare_sent = asyncio.run(_drive(_echo_app(None, []), path, pieces))
    sent = asyncio.run(_drive(_middleware(_echo_app(None, seen), telemetry), path, pieces))
    assert seen == [body]
    assert sent == bare_sent


sse_events = st.lists(
    st.one_of(
        json_values.map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"),
        st.sampled_from([
            b"data: [DONE]\n\n", b": keep-alive\n\n", b"event: message_start\ndata: {\"message\": 5}\n\n",
            b"event: message_delta\ndata: {\"usage\": {\"output_tokens\": \"many\"}, \"delta\": []}\n\n",
            b"data: {\"choices\": [{\"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": -3}}\n\n",
            b"data: {\"usage\": {\"completion_tokens\": 1e400}}\n\n",
            b"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": [1, 2]}}\n\n",
            b"data: {\"type\": \"response.completed\", \"response\": {\"usage\": null, \"status\": 7}}\n\n",
            b"data: {\"error\": \"x\" }\r\n\r\n", b"content_block_delta\n\n", b"data: {\"choices\": [{\"de",
        ]),
        st.binary(max_size=60),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ROUTES), events=sse_events, cuts=st.lists(st.integers(0, 2000), max_size=8),
       stream=st.booleans(), status=st.sampled_from([200, 200, 400, 500, 529]), compress=st.booleans(),
       finish=st.booleans())
def test_any_response_reaches_the_client_intact(telemetry: Any, path: str, events: list[bytes], cuts: list[int],
                                                stream: bool, status: int, compress: bool, finish: bool) -> None:
    """Random SSE or JSON-ish bodies, cut anywhere, maybe gzip, maybe never finished."""
    body = b"".join(events)
    if compress:
        body = gzip.compress(body)[: max(1, len(body) // (3 if not finish else 1))]  # maybe a broken gzip too
    content_type = b"text/event-stream" if stream else b"application/json"
    headers = [(b"content-type", content_type)] + ([(b"content-encoding", b"gzip")] if compress else [])
    messages: list[dict[str, Any]] = [{"type": "http.response.start", "status": status, "headers": headers}]
    messages += [{"type": "http.response.body", "body": piece, "more_body": True} for piece in _split(body, cuts)]
    if finish:
        messages.append({"type": "http.response.body", "body": b"", "more_body": False})
    request = [json.dumps({"model": "m", "stream": stream}).encode()]
    bare = asyncio.run(_drive(_echo_app(messages, []), path, request))
    sent = asyncio.run(_drive(_middleware(_echo_app(messages, []), telemetry), path, request))
    assert sent == bare


def test_oversized_request_body_still_yields_the_model(telemetry: Any) -> None:
    """A 3 MiB request (a base64 image, say) is parsed by its head and tail only: model and stream found."""
    big = {"messages": [{"role": "user", "content": "A" * (3 << 20)}], "model": "big-model", "stream": False}
    seen: list[bytes] = []
    body = json.dumps(big).encode()
    app = _middleware(_echo_app(None, seen), telemetry, max_request_bytes=1 << 20)
    asyncio.run(_drive(app, "/v1/chat/completions", _split(body, list(range(0, len(body), 65536)))))
    assert seen == [body]
    (point,) = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert point.attributes[sc.REQUEST_MODEL] == "big-model"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("empty", b""),
        ("not json", b"model=gpt&stream=true"),
        ("wrong types", json.dumps({"model": 42, "stream": "yes", "stream_options": [1], "max_tokens": "9"}).encode()),
        ("huge", json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * (4 << 20)}]}).encode()),
        ("not utf-8", b"\xff\xfe{\"model\": \"m\"}"),
    ],
)
def test_strange_request_bodies_over_real_http(telemetry: Any, name: str, body: bytes) -> None:
    seen_bare: list[bytes] = []
    seen: list[bytes] = []
    with serving(_echo_app(None, seen_bare)) as bare_base:
        expected = httpx.post(bare_base + "/v1/chat/completions", content=body, timeout=30)
    with serving(_middleware(_echo_app(None, seen), telemetry)) as base:
        got = httpx.post(base + "/v1/chat/completions", content=body, timeout=30)
    assert seen == seen_bare == [body]
    assert (got.status_code, got.content) == (expected.status_code, expected.content)
    assert got.content == body


def test_sse_cut_mid_event_over_real_http_is_one_request(telemetry: Any) -> None:
    """The app's stream stops inside an event and the app returns: the client gets the cut bytes,
    the request is recorded once as failed (the response never ended properly)."""
    cut = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {"choices": [{"del'
    messages = [{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]},
                {"type": "http.response.body", "body": cut, "more_body": True}]
    with serving(_middleware(_echo_app(messages, []), telemetry)) as base:
        with httpx.Client(timeout=10) as client:
            with client.stream("POST", base + "/v1/chat/completions", content=b'{"model":"m","stream":true}') as r:
                received = b""
                try:
                    for piece in r.iter_raw():
                        received += piece
                except httpx.HTTPError:
                    pass
    assert received == cut
    import time

    time.sleep(0.2)
    (point,) = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert point.count == 1
    assert point.attributes[sc.ERROR_TYPE] == "incomplete_response"


@pytest.mark.parametrize("messages", [
    [{"type": "http.response.start", "status": "200", "headers": None},
     {"type": "http.response.body", "body": "text, not bytes"}],
    [{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]},
     {"type": "http.response.body", "body": bytearray(b'data: {"choices": [{"delta": {}}]}\n\n'), "more_body": True},
     {"type": "http.response.body", "body": 42}],
    [{"type": "http.response.body", "body": b"a body before any start"}],
    [{"type": "http.response.start", "status": 200}, {"type": "http.response.start", "status": 500}],
    [{"type": "websocket.send", "text": "wrong protocol"}],
])
def test_messages_that_are_not_asgi_pass_as_they_are(telemetry: Any, messages: list[dict[str, Any]]) -> None:
    """What the app sends wrong is the server's to refuse: the middleware hands it on unchanged and
    reports no error of its own."""
    bare = asyncio.run(_drive(_echo_app(messages, []), "/v1/chat/completions", [b'{"model": "m"}']))
    sent = asyncio.run(_drive(_middleware(_echo_app(messages, []), telemetry), "/v1/chat/completions",
                              [b'{"model": "m"}']))
    assert sent == bare
    (point,) = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert point.count == 1


@settings(max_examples=150, deadline=None)
@given(chunks=st.integers(1, 8), compact=st.booleans(), usage_null=st.booleans(), usage_on_last_choice=st.booleans(),
       crlf=st.booleans(), cuts=st.lists(st.integers(0, 5000), max_size=10), prompt=st.integers(0, 10**6),
       completion=st.integers(0, 10**6), reason=st.sampled_from(["stop", "length", "tool_calls"]))
def test_openai_stream_reading_matches_a_full_parse(chunks: int, compact: bool, usage_null: bool,
                                                    usage_on_last_choice: bool, crlf: bool, cuts: list[int],
                                                    prompt: int, completion: int, reason: str) -> None:
    """The cheap per-chunk reader finds what parsing every event would find, whatever the spacing,
    where the usage sits (its own chunk or the last choice chunk, null before), line ends and cuts."""
    from otel_llm.server._parse import ResponseFields, SSEReader

    separators = (",", ":") if compact else (", ", ": ")
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "served-model"}
    events = []
    for index in range(chunks):
        last = index == chunks - 1
        event: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": {"content": f"w{index} \"error\": 1"},
                                                      "finish_reason": reason if last else None}]}
        if usage_null:
            event["usage"] = None
        if last and usage_on_last_choice:
            event["usage"] = usage
        events.append(event)
    if not usage_on_last_choice:
        events.append({**base, "choices": [], "usage": usage})
    stream = b"".join(b"data: " + json.dumps(e, separators=separators).encode() + b"\n\n" for e in events)
    stream += b"data: [DONE]\n\n"
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    fields = ResponseFields()
    reader = SSEReader("chat_completions", fields)
    first_token_pieces = [reader.feed(piece) for piece in _split(stream, cuts)]
    reader.feed(b"\n\n")
    assert sum(first_token_pieces) == 1 and reader.first_token
    assert (fields.input_tokens, fields.output_tokens) == (prompt, completion)
    assert fields.finish_reasons == [reason]
    assert fields.model == "served-model" and fields.error_type is None
