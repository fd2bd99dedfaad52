"""The server side: LLMServerMiddleware under real uvicorn on loopback, the real openai and anthropic
SDKs as clients.

The app here is a small scripted LLM API (FastAPI): what it answers, how fast, and how it fails are
set per request by ``x-scenario``/``x-chunks``/``x-delay`` headers. Token counts the app sends are
derived from the request, so every test compares the server-side telemetry with what the client
SDK itself parsed from the wire.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import fastapi
import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from otel_llm import semconv as sc
from otel_llm.demo.gateway import AppServer, bind
from otel_llm.pricing import Price, PriceTable
from otel_llm.server import LLMServerMiddleware, ServerRecorder, instrument_app

API_KEY = "sk-test-server-0123456789SECRET"
PRICES = PriceTable({("*", "priced-model"): Price(input_per_mtok=2.0, output_per_mtok=8.0)}, use_library=False)


# --- the scripted app ----------------------------------------------------------------------------


def _prompt_tokens(body: dict[str, Any]) -> int:
    """Deterministic 'usage' from the request: 5 per message plus one per 4 characters of content."""
    total = 0
    for message in body.get("messages") or [{"content": body.get("input") or body.get("prompt") or ""}]:
        content = message.get("content") if isinstance(message, dict) else message
        total += 5 + len(json.dumps(content)) // 4
    return total


def _headers(request: Request) -> tuple[str, int, float, float]:
    scenario = request.headers.get("x-scenario", "ok")
    chunks = int(request.headers.get("x-chunks", "5"))
    delay = float(request.headers.get("x-delay", "0"))
    first = float(request.headers.get("x-first-delay", "0"))
    return scenario, chunks, delay, first


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def make_app(log: list[str] | None = None) -> FastAPI:
    """The scripted LLM API. ``log`` collects what the app saw (to check the body reached it intact).
    ``fastapi.FastAPI`` is looked up now: under FastAPIInstrumentor it is their subclass."""
    app = fastapi.FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        raw = await request.body()
        if log is not None:
            log.append(raw.decode("utf-8", "replace"))
        scenario, chunks, delay, first = _headers(request)
        if scenario == "raise_before":
            raise RuntimeError("app bug before any byte")
        if scenario == "error_400":
            return JSONResponse({"error": {"message": "bad", "type": "invalid_request_error", "code": None}}, 400)
        if scenario == "error_429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, 429)
        if scenario == "error_500_plain":
            return PlainTextResponse("upstream exploded", 500)
        body = json.loads(raw)
        model = body["model"]
        prompt = _prompt_tokens(body)
        served = model + "-2026-01-01"
        usage = {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks,
                 "prompt_tokens_details": {"cached_tokens": min(3, prompt)}}
        if not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "w " * chunks},
                             "finish_reason": "stop"}],
                "usage": usage,
            })
        include_usage = (body.get("stream_options") or {}).get("include_usage", False)

        async def events() -> Any:
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": served}
            await asyncio.sleep(first)
            for index in range(chunks):
                if index:
                    await asyncio.sleep(delay)
                if scenario == "raise_mid" and index == 2:
                    raise ValueError("app bug mid-stream")
                delta = {"role": "assistant", "content": "w "} if index == 0 else {"content": "w "}
                finish = "stop" if index == chunks - 1 else None
                yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            if scenario == "error_event":
                yield _sse({"error": {"message": "overloaded", "type": "server_overloaded"}})
                return
            if include_usage:
                yield _sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = json.loads(await request.body())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        prompt = sum(1 + len(str(text)) // 4 for text in inputs)
        return JSONResponse({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [0.25] * 8} for i in range(len(inputs))],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        })

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        raw = await request.body()
        scenario, chunks, delay, first = _headers(request)
        if scenario == "error_400":
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}, 400)
        if scenario == "error_529":
            return JSONResponse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, 529)
        body = json.loads(raw)
        prompt = _prompt_tokens(body)
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"] + "-20260101",
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": prompt, "output_tokens": 1, "cache_read_input_tokens": 4,
                             "cache_creation_input_tokens": 2}}
        if not body.get("stream"):
            message.update(content=[{"type": "text", "text": "w " * chunks}], stop_reason="end_turn")
            message["usage"] = {**message["usage"], "output_tokens": chunks}
            return JSONResponse(message)

        async def events() -> Any:
            yield _sse({"type": "message_start", "message": message}, "message_start")
            await asyncio.sleep(first)
            yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                       "content_block_start")
            for index in range(chunks):
                if index:
                    await asyncio.sleep(delay)
                if scenario == "raise_mid" and index == 2:
                    raise ValueError("app bug mid-stream")
                yield _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "w "}},
                           "content_block_delta")
            if scenario == "error_event":
                yield _sse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, "error")
                return
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": chunks}}, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


# --- harness -------------------------------------------------------------------------------------


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn on a loopback port; yields the base URL."""
    sock, _ = bind("127.0.0.1", 0)
    server = AppServer(app, sock).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


class Served:
    """The scripted app behind the middleware, under uvicorn, with its telemetry."""

    def __init__(self, telemetry: Any, app: Any = None, **options: Any) -> None:
        self.telemetry = telemetry
        self.recorder = ServerRecorder(tracer_provider=telemetry.tracer_provider,
                                       meter_provider=telemetry.meter_provider, prices=PRICES)
        self.log: list[str] = []
        self.app = app if app is not None else make_app(self.log)
        instrument_app(self.app, recorder=self.recorder, **options)

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10, **kwargs)

    def async_openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base, api_key=API_KEY, max_retries=0, timeout=10)

    def __enter__(self) -> Served:
        self._serving = serving(self.app)
        self.base = self._serving.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._serving.__exit__(*exc)

    def wait_finished(self, count: int, timeout: float = 5.0) -> None:
        """The middleware records when the app's call returns, a moment after the client saw the end."""
        deadline = time.monotonic() + timeout
        while self.finished() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.finished()} requests recorded, expected {count}")
            time.sleep(0.01)
        time.sleep(0.05)

    def finished(self) -> int:
        return sum(p.count for p in self.telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0]))

    def points(self, spec: tuple[str, str, str]) -> list[Any]:
        return self.telemetry.points(spec[0])


def attrs(point: Any) -> dict[str, Any]:
    return dict(point.attributes)


def tokens(served: Served) -> dict[str, int]:
    found: dict[str, int] = {}
    for point in served.points(sc.METRIC_SERVER_TOKEN_USAGE):
        kind = point.attributes[sc.TOKEN_TYPE]
        found[kind] = found.get(kind, 0) + int(point.sum)
    return found


def server_spans(telemetry: Any) -> list[Any]:
    return [s for s in telemetry.spans() if s.kind.name == "SERVER"]


MESSAGES = [{"role": "user", "content": "Say hello to the server side, please."}]


# --- OpenAI SDK ----------------------------------------------------------------------------------


def test_openai_json_tokens_model_finish_and_cost_equal_what_the_client_parsed(telemetry: Any) -> None:
    with Served(telemetry) as served:
        result = served.openai().chat.completions.create(model="priced-model", messages=MESSAGES,
                                                         temperature=0.5, max_tokens=40)
        served.wait_finished(1)
    assert tokens(served) == {"input": result.usage.prompt_tokens, "output": result.usage.completion_tokens}
    (duration,) = served.points(sc.METRIC_SERVER_REQUEST_DURATION)
    port = int(served.base.rsplit(":", 1)[1])
    assert attrs(duration) == {
        sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai", sc.HTTP_ROUTE: "/v1/chat/completions",
        sc.REQUEST_MODEL: "priced-model", sc.RESPONSE_MODEL: result.model,
        # as the client addressed the server: the client side's server.address and server.port
        sc.SERVER_ADDRESS: "127.0.0.1", sc.SERVER_PORT: port,
    }
    assert served.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN) == []  # not a stream
    (span,) = server_spans(telemetry)
    assert span.name == "chat priced-model"
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert span.attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == result.usage.prompt_tokens_details.cached_tokens
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[sc.RESPONSE_ID] == result.id
    assert span.attributes[sc.REQUEST_TEMPERATURE] == 0.5 and span.attributes[sc.REQUEST_MAX_TOKENS] == 40
    expected_cost = (result.usage.prompt_tokens * 2.0 + result.usage.completion_tokens * 8.0) / 1e6
    assert span.attributes[sc.COST_USD] == pytest.approx(expected_cost)
    (cost,) = served.points(sc.METRIC_SERVER_COST)
    assert cost.value == pytest.approx(expected_cost)
    assert served.log and json.loads(served.log[0])["messages"] == MESSAGES


def test_openai_stream_tokens_ttft_and_time_per_token_match_the_client(telemetry: Any) -> None:
    chunks, first, delay = 8, 0.20, 0.04
    with Served(telemetry) as served:
        client = served.openai()
        start = time.perf_counter()
        stream = client.chat.completions.create(
            model="m-stream", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-chunks": str(chunks), "x-first-delay": str(first), "x-delay": str(delay)},
        )
        arrivals, usage = [], None
        for chunk in stream:
            if chunk.choices:
                arrivals.append(time.perf_counter())
            if chunk.usage:
                usage = chunk.usage
        served.wait_finished(1)
    client_ttft = arrivals[0] - start
    client_gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert tokens(served) == {"input": usage.prompt_tokens, "output": usage.completion_tokens}
    (ttft,) = served.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)
    assert ttft.count == 1
    # the server saw the request after the client sent it and the chunk before the client got it
    assert first - 0.002 <= ttft.sum <= client_ttft + 0.002
    assert client_ttft - ttft.sum < 0.08  # request send, response write and SDK parse on a busy machine
    (tpot,) = served.points(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN)
    assert tpot.count == 1
    assert tpot.sum == pytest.approx(sum(client_gaps) / len(client_gaps), abs=0.015)
    (span,) = server_spans(telemetry)
    assert span.attributes[sc.REQUEST_STREAM] is True
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[sc.RESPONSE_MODEL] == "m-stream-2026-01-01"
    (streams,) = served.points(sc.METRIC_SERVER_STREAMS)
    assert streams.value == 1 and streams.attributes[sc.STREAM_OUTCOME] == "completed"


def test_stream_without_usage_records_no_tokens_but_its_ttft(telemetry: Any) -> None:
    with Served(telemetry) as served:
        list(served.openai().chat.completions.create(model="m", messages=MESSAGES, stream=True))
        served.wait_finished(1)
    assert tokens(served) == {}
    assert served.points(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN) == []
    assert [p.count for p in served.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)] == [1]


def test_embeddings_and_async_client(telemetry: Any) -> None:
    async def run(client: openai.AsyncOpenAI) -> Any:
        return await client.embeddings.create(model="embed-1", input=["alpha", "beta gamma"])

    with Served(telemetry) as served:
        result = asyncio.run(run(served.async_openai()))
        served.wait_finished(1)
    assert tokens(served) == {"input": result.usage.prompt_tokens}
    (duration,) = served.points(sc.METRIC_SERVER_REQUEST_DURATION)
    assert duration.attributes[sc.OPERATION_NAME] == "embeddings"
    assert duration.attributes[sc.HTTP_ROUTE] == "/v1/embeddings"


# --- Anthropic SDK -------------------------------------------------------------------------------


def test_anthropic_json_and_stream_tokens_equal_what_the_client_parsed(telemetry: Any) -> None:
    with Served(telemetry) as served:
        client = served.anthropic()
        message = client.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES)
        start = time.perf_counter()
        first_delta = None
        with client.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES,
                                    extra_headers={"x-first-delay": "0.15", "x-chunks": "6"}) as stream:
            for event in stream:
                if event.type == "content_block_delta" and first_delta is None:
                    first_delta = time.perf_counter() - start
            final = stream.get_final_message()
        served.wait_finished(2)
    expected_input = [
        m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.cache_creation_input_tokens
        for m in (message, final)
    ]
    by_type: dict[str, list[int]] = {}
    for point in served.points(sc.METRIC_SERVER_TOKEN_USAGE):
        by_type.setdefault(point.attributes[sc.TOKEN_TYPE], []).append(int(point.sum))
    assert sum(by_type["input"]) == sum(expected_input)
    assert sum(by_type["output"]) == message.usage.output_tokens + final.usage.output_tokens
    spans = sorted(server_spans(telemetry), key=lambda s: s.start_time)
    assert [s.attributes[sc.PROVIDER_NAME] for s in spans] == ["anthropic", "anthropic"]
    assert spans[1].attributes[sc.USAGE_OUTPUT_TOKENS] == final.usage.output_tokens
    assert spans[1].attributes[sc.USAGE_INPUT_TOKENS] == expected_input[1]
    assert spans[1].attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == final.usage.cache_read_input_tokens
    assert spans[1].attributes[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    (ttft,) = served.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)
    assert 0.15 - 0.002 <= ttft.sum <= first_delta + 0.002 and first_delta - ttft.sum < 0.08


# --- errors, each recorded once ------------------------------------------------------------------


def _error_points(served: Served) -> dict[str, int]:
    found: dict[str, int] = {}
    for point in served.points(sc.METRIC_SERVER_REQUEST_DURATION):
        error = point.attributes.get(sc.ERROR_TYPE)
        found[error] = found.get(error, 0) + point.count
    return found


@pytest.mark.parametrize(
    ("scenario", "expected", "client_error"),
    [
        ("error_400", "invalid_request_error", openai.BadRequestError),
        ("error_429", "rate_limit_exceeded", openai.RateLimitError),
        ("error_500_plain", "5xx", openai.InternalServerError),
        ("raise_before", "RuntimeError", openai.InternalServerError),
    ],
)
def test_errors_before_any_byte_are_recorded_once_by_type(telemetry: Any, scenario: str, expected: str,
                                                           client_error: type[Exception]) -> None:
    with Served(telemetry) as served:
        with pytest.raises(client_error):
            served.openai().chat.completions.create(model="m", messages=MESSAGES,
                                                    extra_headers={"x-scenario": scenario})
        served.wait_finished(1)
    assert _error_points(served) == {expected: 1}
    (span,) = server_spans(telemetry)
    assert span.attributes[sc.ERROR_TYPE] == expected
    assert span.status.status_code.name == "ERROR"


def test_anthropic_error_types_come_from_the_body(telemetry: Any) -> None:
    with Served(telemetry) as served:
        client = served.anthropic()
        for scenario in ("error_400", "error_529"):
            with pytest.raises(anthropic.APIStatusError):
                client.messages.create(model="c", max_tokens=5, messages=MESSAGES,
                                       extra_headers={"x-scenario": scenario})
        served.wait_finished(2)
    assert _error_points(served) == {"invalid_request_error": 1, "overloaded_error": 1}


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_app_error_mid_stream_is_one_failed_request(telemetry: Any, api: str) -> None:
    with Served(telemetry) as served:
        headers = {"x-scenario": "raise_mid", "x-chunks": "6"}
        with pytest.raises(Exception):  # the SDK sees a cut stream
            if api == "openai":
                list(served.openai().chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                             extra_headers=headers))
            else:
                with served.anthropic().messages.stream(model="c", max_tokens=9, messages=MESSAGES,
                                                        extra_headers=headers) as stream:
                    list(stream)
        served.wait_finished(1)
    assert _error_points(served) == {"ValueError": 1}
    (streams,) = served.points(sc.METRIC_SERVER_STREAMS)
    assert streams.attributes[sc.STREAM_OUTCOME] == "failed" and streams.value == 1
    assert served.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN) == []  # successful responses only
    assert len(server_spans(telemetry)) == 1


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_error_event_in_a_stream_is_its_error_type(telemetry: Any, api: str) -> None:
    with Served(telemetry) as served:
        headers = {"x-scenario": "error_event", "x-chunks": "3"}
        try:
            if api == "openai":
                list(served.openai().chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                             extra_headers=headers))
            else:
                with served.anthropic().messages.stream(model="c", max_tokens=9, messages=MESSAGES,
                                                        extra_headers=headers) as stream:
                    list(stream)
        except Exception:
            pass  # the SDKs raise on an error event
        served.wait_finished(1)
    expected = "server_overloaded" if api == "openai" else "overloaded_error"
    assert _error_points(served) == {expected: 1}


def test_client_disconnect_mid_stream_is_one_cancelled_request(telemetry: Any) -> None:
    with Served(telemetry) as served:
        stream = served.openai().chat.completions.create(
            model="m", messages=MESSAGES, stream=True, extra_headers={"x-chunks": "200", "x-delay": "0.01"})
        for index, _ in enumerate(stream):
            if index == 3:
                break
        stream.close()
        served.wait_finished(1)
        assert served.recorder.active_streams.total() == 0
        assert served.recorder.active_requests.total() == 0
    assert _error_points(served) == {None: 1}
    (streams,) = served.points(sc.METRIC_SERVER_STREAMS)
    assert streams.attributes[sc.STREAM_OUTCOME] == "cancelled"
    (span,) = server_spans(telemetry)
    assert span.attributes[sc.SERVER_REQUEST_CANCELLED] is True
    assert sc.ERROR_TYPE not in span.attributes


def test_async_client_cancel_mid_stream_is_one_cancelled_request(telemetry: Any) -> None:
    async def run(client: openai.AsyncOpenAI) -> None:
        async def consume() -> None:
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, extra_headers={"x-chunks": "500", "x-delay": "0.01"})
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()

    with Served(telemetry) as served:
        asyncio.run(run(served.async_openai()))
        served.wait_finished(1)
    assert _error_points(served) == {None: 1}
    (streams,) = served.points(sc.METRIC_SERVER_STREAMS)
    assert streams.attributes[sc.STREAM_OUTCOME] == "cancelled"


def test_in_flight_counts_rise_during_a_stream_and_fall_after(telemetry: Any) -> None:
    with Served(telemetry) as served:
        stream = served.openai().chat.completions.create(
            model="m-live", messages=MESSAGES, stream=True, extra_headers={"x-chunks": "30", "x-delay": "0.02"})
        iterator = iter(stream)
        next(iterator)
        during = {p.attributes.get(sc.REQUEST_MODEL): p.value for p in served.points(sc.METRIC_SERVER_ACTIVE_STREAMS)}
        requests = sum(p.value for p in served.points(sc.METRIC_SERVER_ACTIVE_REQUESTS))
        list(iterator)
        served.wait_finished(1)
        after = sum(p.value for p in served.points(sc.METRIC_SERVER_ACTIVE_STREAMS))
    assert during == {"m-live": 1} and requests == 1 and after == 0


# --- routes and pass-through ---------------------------------------------------------------------


def test_other_paths_pass_through_untouched_and_unrecorded(telemetry: Any) -> None:
    with Served(telemetry) as served:
        assert httpx.get(served.base + "/health").json() == {"status": "ok"}
        assert httpx.post(served.base + "/v2/chat/completions", json={}).status_code == 404
    assert served.finished() == 0 and server_spans(telemetry) == []


def test_prefix_behind_a_router(telemetry: Any) -> None:
    from fastapi import APIRouter

    app = make_app()
    outer = FastAPI()
    router = APIRouter(prefix="/openai")
    for route in app.router.routes:
        if getattr(route, "path", "").startswith("/v1/"):
            router.add_api_route(route.path, route.endpoint, methods=list(route.methods))
    outer.include_router(router)
    with Served(telemetry, app=outer, prefixes=["/openai/v1"]) as served:
        client = openai.OpenAI(base_url=served.base + "/openai/v1", api_key=API_KEY, max_retries=0)
        result = client.chat.completions.create(model="m", messages=MESSAGES)
        served.wait_finished(1)
    (duration,) = served.points(sc.METRIC_SERVER_REQUEST_DURATION)
    assert duration.attributes[sc.HTTP_ROUTE] == "/openai/v1/chat/completions"
    assert tokens(served)["output"] == result.usage.completion_tokens


# --- spans: the HTTP server span when there is one, never two -------------------------------------


def test_opentelemetry_fastapi_span_carries_the_attributes_and_no_second_span(telemetry: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = make_app()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=telemetry.tracer_provider,
                                       meter_provider=telemetry.meter_provider)
    try:
        with Served(telemetry, app=app) as served:
            result = served.openai().chat.completions.create(model="m", messages=MESSAGES)
            served.wait_finished(1)
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    (span,) = server_spans(telemetry)
    assert span.instrumentation_scope.name.startswith("opentelemetry.instrumentation")
    assert span.attributes[sc.REQUEST_MODEL] == "m"
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens
    assert span.attributes[sc.OPERATION_NAME] == "chat"


def test_our_span_continues_the_callers_trace_and_client_spans_nest_under_it(telemetry: Any) -> None:
    """A gateway: the served request calls a provider through the instrumented SDK."""
    from otel_llm.instrumentation.openai import OpenAIInstrumentor

    inner = make_app()
    with serving(inner) as upstream_base:
        gateway = FastAPI()
        provider = openai.AsyncOpenAI(base_url=upstream_base + "/v1", api_key=API_KEY, max_retries=0)

        @gateway.post("/v1/chat/completions")
        async def forward(request: Request) -> Response:
            body = json.loads(await request.body())
            result = await provider.chat.completions.create(model=body["model"], messages=body["messages"])
            return Response(result.model_dump_json(), media_type="application/json")

        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(recorder=telemetry.recorder())
        try:
            with Served(telemetry, app=gateway) as served:
                from opentelemetry.sdk.trace import TracerProvider

                caller = TracerProvider().get_tracer("caller")
                from opentelemetry import propagate, trace

                with trace.use_span(caller.start_span("caller"), end_on_exit=True) as parent:
                    headers: dict[str, str] = {}
                    propagate.inject(headers)
                    served.openai().chat.completions.create(model="m", messages=MESSAGES, extra_headers=headers)
                served.wait_finished(1)
        finally:
            instrumentor.uninstrument()
    spans = telemetry.spans()
    (server,) = [s for s in spans if s.kind.name == "SERVER"]
    clients = [s for s in spans if s.kind.name == "CLIENT" and s.name.startswith("chat")]
    assert server.context.trace_id == parent.get_span_context().trace_id
    assert server.parent.span_id == parent.get_span_context().span_id
    # the gateway's own provider call (the test's call to the gateway is a CLIENT span too, outside)
    (forwarded,) = [c for c in clients if c.parent is not None and c.parent.span_id == server.context.span_id]
    assert forwarded.context.trace_id == server.context.trace_id


# --- bytes: identical with and without the middleware ---------------------------------------------


def _raw_exchange(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, list[bytes]]:
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", base + path, content=body,
                           headers={"content-type": "application/json", **headers}) as response:
            pieces = list(response.iter_raw())
            return response.status_code, b"".join(pieces), pieces


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("stream", [True, False])
def test_bytes_identical_with_and_without_the_middleware(telemetry: Any, path: str, stream: bool) -> None:
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": stream, "max_tokens": 5,
                       "stream_options": {"include_usage": True} if path.endswith("completions") else None}).encode()
    headers = {"x-chunks": "12", "x-delay": "0.002"}
    with serving(make_app()) as bare:
        expected = _raw_exchange(bare, path, body, headers)
    with Served(telemetry) as served:
        got = _raw_exchange(served.base, path, body, headers)
        served.wait_finished(1)
    assert got[0] == expected[0] == 200
    assert got[1] == expected[1]
    assert len(got[1]) > 200


def _raw_app(messages: list[dict[str, Any]]) -> Any:
    """A bare ASGI app that sends exactly the given ASGI messages after reading the body."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        for message in messages:
            await send(message)

    return app


def _stream_messages(pieces: list[bytes], headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    start = {"type": "http.response.start", "status": 200,
             "headers": headers or [(b"content-type", b"text/event-stream")]}
    body = [{"type": "http.response.body", "body": piece, "more_body": True} for piece in pieces]
    return [start, *body, {"type": "http.response.body", "body": b"", "more_body": False}]


def _chat_sse(chunks: int, usage: dict[str, int]) -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "raw-model"}
    out = b"".join(_sse({**base, "choices": [{"index": 0, "delta": {"content": "x"},
                                             "finish_reason": "length" if i == chunks - 1 else None}]})
                   for i in range(chunks))
    return out + _sse({**base, "choices": [], "usage": usage}) + b"data: [DONE]\n\n"


def test_gzip_and_chunked_sse_split_anywhere_is_read(telemetry: Any) -> None:
    """A gzip-compressed SSE stream sent in 7-byte pieces (chunked transfer), CRLF line ends."""
    sse = _chat_sse(6, {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27}).replace(b"\n", b"\r\n")
    compressed = gzip.compress(sse)
    pieces = [compressed[i:i + 7] for i in range(0, len(compressed), 7)]
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"content-encoding", b"gzip")]
    app = LLMServerMiddleware(_raw_app(_stream_messages(pieces, headers)), recorder=ServerRecorder(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, prices=PRICES))
    with serving(app) as base:
        status, raw, _ = _raw_exchange(base, "/v1/chat/completions", b'{"model": "m", "stream": true}', {})
    assert status == 200 and raw == compressed
    time.sleep(0.1)
    found = {p.attributes[sc.TOKEN_TYPE]: int(p.sum) for p in telemetry.points(sc.METRIC_SERVER_TOKEN_USAGE[0])}
    assert found == {"input": 21, "output": 6}
    (span,) = server_spans(telemetry)
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("length",)
    assert span.attributes[sc.RESPONSE_MODEL] == "raw-model"


def test_gzip_json_response_is_read(telemetry: Any) -> None:
    body = gzip.compress(json.dumps({"id": "x", "model": "gz", "choices": [{"finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode())
    messages = [{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]},
                {"type": "http.response.body", "body": body[:10], "more_body": True},
                {"type": "http.response.body", "body": body[10:]}]
    app = LLMServerMiddleware(_raw_app(messages), tracer_provider=telemetry.tracer_provider,
                              meter_provider=telemetry.meter_provider, prices=PRICES)
    with serving(app) as base:
        status, raw, _ = _raw_exchange(base, "/v1/chat/completions", b'{"model": "m"}', {})
    assert raw == body
    time.sleep(0.1)
    found = {p.attributes[sc.TOKEN_TYPE]: int(p.sum) for p in telemetry.points(sc.METRIC_SERVER_TOKEN_USAGE[0])}
    assert found == {"input": 3, "output": 4}


def test_stream_is_never_delayed_each_piece_reaches_the_client_before_the_next_is_made(telemetry: Any) -> None:
    """The app waits for the client to have seen piece n before sending piece n+1: a middleware that
    buffered would deadlock here (the test would time out)."""
    seen = [threading.Event() for _ in range(5)]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for index in range(5):
            await send({"type": "http.response.body", "body": _sse({"choices": [{"delta": {"content": str(index)}}]}),
                        "more_body": True})
            deadline = time.monotonic() + 3
            while not seen[index].is_set():
                assert time.monotonic() < deadline, f"piece {index} never reached the client"
                await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    wrapped = LLMServerMiddleware(app, tracer_provider=telemetry.tracer_provider,
                                  meter_provider=telemetry.meter_provider)
    with serving(wrapped) as base:
        with httpx.Client(timeout=10) as client:
            with client.stream("POST", base + "/v1/chat/completions", content=b'{"stream":true}') as response:
                index = 0
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        seen[index].set()
                        index += 1
    assert index == 5


@pytest.mark.parametrize("order", ["theirs first", "ours first"])
def test_under_opentelemetry_instrument_both_instrumentors_one_span(telemetry: Any, monkeypatch: pytest.MonkeyPatch,
                                                                    order: str) -> None:
    """What ``opentelemetry-instrument`` does: FastAPIInstrumentor and ours (switched on by the
    environment) both instrument before the app exists. One SERVER span, theirs, with our attributes,
    for a JSON answer and for a stream."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from otel_llm.server.instrumentor import LLMServerInstrumentor

    monkeypatch.setenv(sc.ENV_SERVER_INSTRUMENTATION, "true")
    theirs, ours = FastAPIInstrumentor(), LLMServerInstrumentor()
    kwargs = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    for instrumentor in ([theirs, ours] if order == "theirs first" else [ours, theirs]):
        instrumentor.instrument(**kwargs)
    try:
        app = make_app()
        assert isinstance(app, fastapi.FastAPI)
        with serving(app) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
            result = client.chat.completions.create(model="m-json", messages=MESSAGES)
            chunks = list(client.chat.completions.create(model="m-sse", messages=MESSAGES, stream=True,
                                                         stream_options={"include_usage": True}))
            deadline = time.monotonic() + 5
            while len(server_spans(telemetry)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)
    finally:
        ours.uninstrument()
        theirs.uninstrument()
    spans = sorted(server_spans(telemetry), key=lambda s: s.start_time)
    assert len(spans) == 2, [s.name for s in spans]
    assert all(s.instrumentation_scope.name.startswith("opentelemetry.instrumentation") for s in spans)
    assert spans[0].attributes[sc.USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens
    assert spans[1].attributes[sc.USAGE_OUTPUT_TOKENS] == chunks[-1].usage.completion_tokens
    assert spans[1].attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    durations = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert sum(p.count for p in durations) == 2


# --- recorded once, wherever the middleware sits ---------------------------------------------------


def test_wrapped_by_hand_and_by_the_instrumentor_records_once(telemetry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app the service wraps by hand (``app = LLMServerMiddleware(app)``) while
    ``OTEL_LLM_SERVER_INSTRUMENTATION=true`` adds the middleware again inside it: one request, one record."""
    from otel_llm.server.instrumentor import LLMServerInstrumentor

    monkeypatch.setenv(sc.ENV_SERVER_INSTRUMENTATION, "true")
    instrumentor = LLMServerInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        recorder = ServerRecorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
        app = LLMServerMiddleware(make_app(), recorder=recorder)
        with serving(app) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
            client.chat.completions.create(model="m-json", messages=MESSAGES)
            list(client.chat.completions.create(model="m-sse", messages=MESSAGES, stream=True))
            deadline = time.monotonic() + 5
            while len(server_spans(telemetry)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
    finally:
        instrumentor.uninstrument()
    durations = telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])
    assert sum(p.count for p in durations) == 2
    assert len(server_spans(telemetry)) == 2
    assert recorder.active_requests.total() == 0


def test_a_request_the_app_makes_in_process_to_another_served_app_is_recorded_too(telemetry: Any) -> None:
    """A gateway app that forwards to an in-process upstream app (both with the middleware): two
    requests, two records, the upstream's span a descendant of the gateway's."""
    upstream = make_app()
    instrument_app(upstream, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    gateway = fastapi.FastAPI()

    @gateway.post("/v1/chat/completions")
    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream), base_url="http://upstream") as http:
            answer = await http.post("/v1/chat/completions", content=await request.body(),
                                     headers={"content-type": "application/json"})
        return Response(answer.content, answer.status_code, media_type="application/json")

    instrument_app(gateway, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    with serving(gateway) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
        result = client.chat.completions.create(model="m-json", messages=MESSAGES)
        deadline = time.monotonic() + 5
        while len(server_spans(telemetry)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    spans = server_spans(telemetry)
    assert len(spans) == 2
    by_address = {s.attributes[sc.SERVER_ADDRESS]: s for s in spans}
    assert set(by_address) == {"127.0.0.1", "upstream"}
    assert by_address["upstream"].context.trace_id == by_address["127.0.0.1"].context.trace_id
    assert all(s.attributes[sc.USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens for s in spans)


@pytest.mark.parametrize(("headers", "server", "expected"), [
    ([(b"host", b"api.internal:8443")], ("10.0.0.5", 8000), ("api.internal", 8443)),
    ([(b"Host", b"LLM.Example.com")], None, ("llm.example.com", None)),
    ([(b"host", b"[::1]:9000")], None, ("::1", 9000)),
    ([(b"host", b"[::1]")], None, ("::1", None)),
    ([(b"host", b"h:notaport")], None, ("h", None)),
    ([(b"host", b"")], ("127.0.0.1", 8000), ("127.0.0.1", 8000)),
    ([], ("127.0.0.1", 8000), ("127.0.0.1", 8000)),
    ([], None, None),
    ([], "unix-socket", None),
])
def test_server_address_is_the_host_the_client_addressed(headers: Any, server: Any, expected: Any) -> None:
    from otel_llm.server.recorder import _server_of

    assert _server_of(headers, server) == expected


def test_server_addresses_beyond_the_limit_fold_into_other(telemetry: Any) -> None:
    from otel_llm.server._routes import route_table

    recorder = ServerRecorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                              max_metric_values=2)
    route = route_table(["/v1"])["/v1/chat/completions"]
    for host in (b"a:1", b"b:1", b"c:1", b"a:1"):
        request = recorder.start(route, "POST", [(b"host", host)])
        assert request is not None
        request.finish("completed")
    seen = [(p.attributes.get(sc.SERVER_ADDRESS), p.attributes.get(sc.SERVER_PORT), p.count)
            for p in telemetry.points(sc.METRIC_SERVER_REQUEST_DURATION[0])]
    assert sorted(seen, key=str) == sorted([("a", 1, 2), ("b", 1, 1), ("_OTHER", None, 1)], key=str)


def test_two_server_recorders_on_one_meter_provider_both_count(telemetry: Any) -> None:
    """Two apps in one process, each wrapped with its own middleware: both apps' requests in flight
    and streams are reported (the observable instruments' tallies are shared per meter)."""
    from otel_llm.server._routes import route_table

    route = route_table(["/v1"])["/v1/chat/completions"]
    recorders = [ServerRecorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
                 for _ in range(2)]
    requests = [recorder.start(route, "POST", [(b"host", b"app%d:80" % i)]) for i, recorder in enumerate(recorders)]
    in_flight = {p.attributes[sc.SERVER_ADDRESS]: p.value
                 for p in telemetry.points(sc.METRIC_SERVER_ACTIVE_REQUESTS[0])}
    assert in_flight == {"app0": 1, "app1": 1}
    for request in requests:
        request.finish("completed")
