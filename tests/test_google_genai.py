"""The google-genai instrumentor with the real ``google-genai`` SDK against a Gemini REST server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import warnings
from importlib.metadata import entry_points, version

import pytest
from genai_prices import Usage, calc_price
from google import genai
from google.genai import _api_client, errors, models, types
from opentelemetry.trace import SpanKind, StatusCode
from packaging.requirements import Requirement

from otel_llm import semconv as sc
from otel_llm.content import CaptureMode
from otel_llm.instrumentation import google_genai as ours
from otel_llm.instrumentation.google_genai import PATCHES, GoogleGenAIInstrumentor, model_name
from tests.support import gemini_server as wire
from tests.support.gemini_server import GeminiServer

from .conftest import _instrumenting

API_KEY = "AIza-test-0123456789SECRET"
MODEL = "gemini-2.5-flash"
EMBEDDER = "gemini-embedding-001"
OUTPUT_TOKENS = wire.USAGE["candidatesTokenCount"] + wire.USAGE["thoughtsTokenCount"]


@pytest.fixture(scope="module")
def server():
    with GeminiServer() as running:
        yield running


@pytest.fixture
def instrument(telemetry):
    yield from _instrumenting(telemetry, GoogleGenAIInstrumentor())


def make_client(server, **kwargs):
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.base_url), **kwargs)


@pytest.fixture
def client(server):
    return make_client(server)


def llm_spans(telemetry):
    return [s for s in telemetry.spans() if s.instrumentation_scope.name == "otel_llm"]


def only_span(telemetry):
    spans = llm_spans(telemetry)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def gemini_cost(model, input_tokens, output_tokens=0, cache_read=0):
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read)
    return float(calc_price(usage, model_ref=model, provider_id="google").total_price)


def internal_errors(caplog):
    return [r for r in caplog.records if "otel-llm internal error" in r.getMessage()]


# --- what is recorded ------------------------------------------------------------------------------


def test_generate_content_span_metrics_and_cost(instrument, telemetry, client, server):
    instrument()
    config = types.GenerateContentConfig(temperature=0.4, top_p=0.9, top_k=20, max_output_tokens=200,
                                         stop_sequences=["END"], seed=7, candidate_count=1)
    response = client.models.generate_content(model=MODEL, contents="Say hello", config=config)
    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == "generate_content gemini-2.5-flash" and span.kind is SpanKind.CLIENT
    assert attrs[sc.OPERATION_NAME] == sc.OP_GENERATE_CONTENT
    assert attrs[sc.PROVIDER_NAME] == sc.PROVIDER_GCP_GEMINI
    assert (attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT]) == ("127.0.0.1", server.port)
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.4 and attrs[sc.REQUEST_TOP_P] == 0.9 and attrs[sc.REQUEST_TOP_K] == 20
    assert attrs[sc.REQUEST_MAX_TOKENS] == 200 and attrs[sc.REQUEST_SEED] == 7
    assert attrs[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert sc.REQUEST_CHOICE_COUNT not in attrs  # 1 is the default: not reported
    assert sc.REQUEST_STREAM not in attrs
    assert attrs[sc.RESPONSE_MODEL] == response.model_version == MODEL
    assert attrs[sc.RESPONSE_ID] == response.response_id == wire.RESPONSE_ID
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    usage = response.usage_metadata
    assert attrs[sc.USAGE_INPUT_TOKENS] == usage.prompt_token_count == 12
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == usage.candidates_token_count + usage.thoughts_token_count == 12
    assert attrs[sc.USAGE_INPUT_TOKENS] + attrs[sc.USAGE_OUTPUT_TOKENS] == usage.total_token_count
    assert attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == usage.thoughts_token_count == 7
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == usage.cached_content_token_count == 4
    # gemini-2.5-flash from genai-prices: (12 - 4) input + 4 cache read + (5 + 7) output
    expected = gemini_cost(MODEL, 12, OUTPUT_TOKENS, cache_read=4)
    assert expected == pytest.approx((8 * 0.30 + 4 * 0.03 + 12 * 2.50) / 1e6)
    assert attrs[sc.COST_USD] == pytest.approx(expected)

    metrics = telemetry.collect()
    tokens = {p.attributes[sc.TOKEN_TYPE]: p for p in metrics["gen_ai.client.token.usage"]}
    assert (tokens["input"].sum, tokens["output"].sum) == (12, OUTPUT_TOKENS)
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.count == 1
    assert duration.attributes == {
        sc.OPERATION_NAME: sc.OP_GENERATE_CONTENT, sc.PROVIDER_NAME: sc.PROVIDER_GCP_GEMINI,
        sc.REQUEST_MODEL: MODEL, sc.RESPONSE_MODEL: MODEL,
        sc.SERVER_ADDRESS: "127.0.0.1", sc.SERVER_PORT: server.port,
    }
    (cost,) = metrics["llm.client.cost"]
    assert cost.value == pytest.approx(expected)
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics


def test_tool_use_prompt_tokens_count_as_input(instrument, telemetry):
    """Results of the model's built-in tools are fed back as input: input + output = total."""
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "MAX_TOKENS"}],
              "usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 30, "candidatesTokenCount": 2,
                                "totalTokenCount": 42}}
    with _OneAnswer(answer) as url:
        client = genai.Client(api_key=API_KEY, http_options={"base_url": url})
        instrument()
        client.models.generate_content(model=MODEL, contents="search")
    attrs = only_span(telemetry).attributes
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (40, 2)
    assert sc.USAGE_REASONING_OUTPUT_TOKENS not in attrs and sc.USAGE_CACHE_READ_INPUT_TOKENS not in attrs
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("max_tokens",)


class _OneAnswer:
    """A server that answers every request with one JSON body (for usage shapes the main one lacks)."""

    def __init__(self, answer):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        body = json.dumps(answer).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("given", "name"), [
    ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("publishers/google/models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("tunedModels/my-model-123", "tunedModels/my-model-123"),
    ("gemini-2.5-flash", "gemini-2.5-flash"),
])
def test_model_name_without_its_resource_path(given, name):
    assert model_name(given) == name


def test_resource_path_model_is_named_and_priced(instrument, telemetry, client):
    instrument()
    client.models.generate_content(model="models/gemini-2.5-flash", contents="hi")
    attrs = only_span(telemetry).attributes
    assert attrs[sc.REQUEST_MODEL] == MODEL
    assert attrs[sc.COST_USD] == pytest.approx(gemini_cost(MODEL, 12, OUTPUT_TOKENS, cache_read=4))


def test_stream_chunks_usage_and_time_to_first_chunk(instrument, telemetry, client):
    instrument()
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert [c.text for c in chunks] == list(wire.STREAM_PIECES)
    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == "generate_content gemini-2.5-flash"
    assert attrs[sc.REQUEST_STREAM] is True
    # every chunk carries usage; the last one the final counts
    assert chunks[0].usage_metadata.candidates_token_count is None
    assert attrs[sc.USAGE_INPUT_TOKENS] == 12 and attrs[sc.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS
    assert attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 7 and attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.RESPONSE_ID] == wire.RESPONSE_ID and attrs[sc.RESPONSE_MODEL] == MODEL
    assert attrs[sc.COST_USD] == pytest.approx(gemini_cost(MODEL, 12, OUTPUT_TOKENS, cache_read=4))
    metrics = telemetry.collect()
    (ttfc,) = metrics["gen_ai.client.operation.time_to_first_chunk"]
    (tpoc,) = metrics["gen_ai.client.operation.time_per_output_chunk"]
    assert ttfc.count == 1 and tpoc.count == len(chunks) - 1
    assert 0 < ttfc.sum <= metrics["gen_ai.client.operation.duration"][0].sum


async def test_async_generate_and_stream(instrument, telemetry, client):
    instrument()
    response = await client.aio.models.generate_content(model=MODEL, contents="hi")
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
    chunks = [chunk async for chunk in stream]
    plain, streamed = llm_spans(telemetry)
    assert plain.attributes[sc.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS
    assert plain.attributes[sc.RESPONSE_ID] == response.response_id
    assert streamed.attributes[sc.REQUEST_STREAM] is True
    assert streamed.attributes[sc.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1 and len(chunks) == len(wire.STREAM_PIECES)


def test_embeddings(instrument, telemetry, client):
    instrument()
    result = client.models.embed_content(model=EMBEDDER, contents=["one", "two"])
    assert len(result.embeddings) == 2
    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == "embeddings gemini-embedding-001"
    assert attrs[sc.OPERATION_NAME] == sc.OP_EMBEDDINGS and attrs[sc.PROVIDER_NAME] == sc.PROVIDER_GCP_GEMINI
    assert attrs[sc.USAGE_INPUT_TOKENS] == result.usage_metadata.prompt_token_count == 6
    assert sc.USAGE_OUTPUT_TOKENS not in attrs
    assert attrs[sc.COST_USD] == pytest.approx(gemini_cost(EMBEDDER, 6))
    tokens = telemetry.points("gen_ai.client.token.usage")
    assert [(p.attributes[sc.TOKEN_TYPE], p.sum) for p in tokens] == [("input", 6)]


async def test_async_embeddings(instrument, telemetry, client):
    instrument()
    await client.aio.models.embed_content(model=EMBEDDER, contents="one")
    assert only_span(telemetry).attributes[sc.USAGE_INPUT_TOKENS] == wire.EMBEDDING_TOKENS_PER_TEXT


def test_vertex_client_and_request_base_url(instrument, telemetry, server):
    instrument()
    vertex = genai.Client(vertexai=True, api_key=API_KEY, http_options={"base_url": server.base_url})
    vertex.models.generate_content(model=MODEL, contents="hi")
    vertex.models.embed_content(model=EMBEDDER, contents=["a", "b"])  # Vertex AI's :predict
    gemini = make_client(server)
    moved = types.GenerateContentConfig(http_options=types.HttpOptions(base_url=server.base_url.replace("127.0.0.1", "localhost")))
    gemini.models.generate_content(model=MODEL, contents="hi", config=moved)
    generated, embedded, elsewhere = llm_spans(telemetry)
    assert server.requests[-3].path.endswith("/publishers/google/models/gemini-2.5-flash:generateContent")
    assert server.requests[-2].path.endswith(":predict")
    assert generated.attributes[sc.PROVIDER_NAME] == embedded.attributes[sc.PROVIDER_NAME] == sc.PROVIDER_GCP_VERTEX_AI
    assert embedded.attributes[sc.USAGE_INPUT_TOKENS] == 2 * wire.EMBEDDING_TOKENS_PER_TEXT
    assert elsewhere.attributes[sc.PROVIDER_NAME] == sc.PROVIDER_GCP_GEMINI
    assert (elsewhere.attributes[sc.SERVER_ADDRESS], elsewhere.attributes[sc.SERVER_PORT]) == ("localhost", server.port)


def test_default_base_url_is_the_gemini_api():
    client = genai.Client(api_key=API_KEY)
    starter = ours._Starter(None, {})
    assert starter._server(client.models._api_client, None) == ("generativelanguage.googleapis.com", 443, "gcp.gemini")


def test_chat_session_is_one_span_per_request(instrument, telemetry, client):
    instrument()
    chat = client.chats.create(model=MODEL)
    chat.send_message("one")
    chat.send_message("two")
    for _chunk in chat.send_message_stream("three"):
        pass
    spans = llm_spans(telemetry)
    assert [s.attributes.get(sc.REQUEST_STREAM, False) for s in spans] == [False, False, True]
    assert all(s.attributes[sc.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS for s in spans)


async def test_async_chat(instrument, telemetry, client):
    instrument()
    chat = client.aio.chats.create(model=MODEL)
    await chat.send_message("one")
    async for _chunk in await chat.send_message_stream("two"):
        pass
    assert len(llm_spans(telemetry)) == 2


def test_automatic_function_calling_is_one_span_per_model_request(instrument, telemetry, client, server):
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    instrument()
    before = len(server.requests)
    response = client.models.generate_content(model="call-a-tool", contents="Weather in Paris?",
                                              config=types.GenerateContentConfig(tools=[get_weather]))
    assert response.text == wire.TEXT
    assert len(server.requests) - before == 2
    first, second = llm_spans(telemetry)
    assert first.attributes[sc.USAGE_INPUT_TOKENS] == second.attributes[sc.USAGE_INPUT_TOKENS] == 12


# --- interception point: clients and methods from before instrument(), uninstrument ---------------


def test_clients_and_methods_from_before_instrument_and_uninstrument(telemetry, server):
    client = make_client(server)
    generate = client.models.generate_content
    stream = client.models.generate_content_stream
    chat = client.chats.create(model=MODEL)
    instrumentor = GoogleGenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        generate(model=MODEL, contents="hi")
        list(stream(model=MODEL, contents="hi"))
        chat.send_message("hi")
        assert len(llm_spans(telemetry)) == 3
    finally:
        instrumentor.uninstrument()
    generate(model=MODEL, contents="hi")
    chat.send_message("hi")
    assert len(llm_spans(telemetry)) == 3


def test_uninstrument_restores_the_sdk_exactly(telemetry):
    def current():
        return {(owner, method): getattr(models, owner).__dict__[method] for owner, method, _ in PATCHES}

    before = current()
    instrumentor = GoogleGenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    assert all(current()[key] is not before[key] for key in before)
    instrumentor.uninstrument()
    assert current() == before and all(current()[key] is before[key] for key in before)


def test_entry_point_and_supported_versions():
    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "otel_llm_google_genai"]
    assert entry.load() is GoogleGenAIInstrumentor
    (requirement,) = GoogleGenAIInstrumentor().instrumentation_dependencies()
    assert Requirement(requirement).specifier.contains(version("google-genai"))
    assert not Requirement(requirement).specifier.contains("1.40.0")  # Models._embed_content came with 2.0


# --- streams end exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["exhausted", "break", "close", "garbage_collected", "abandoned_unstarted"])
def test_stream_ends_exactly_once(instrument, telemetry, client, how):
    recorder = instrument()
    ended = []
    recorder.add_listener(ended.append)
    stream = client.models.generate_content_stream(model=MODEL, contents="hi")
    if how == "exhausted":
        list(stream)
    elif how == "break":
        for _chunk in stream:
            break
        del stream
    elif how == "close":
        next(stream)
        stream.close()
        stream.close()
    elif how == "garbage_collected":
        next(stream)
        del stream
    else:  # never iterated: the SDK never sends the request, so there is no call
        del stream
    gc.collect()
    if how == "abandoned_unstarted":
        assert llm_spans(telemetry) == [] and ended == []
        return
    span = only_span(telemetry)
    assert len(ended) == 1 and span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert telemetry.points("gen_ai.client.operation.duration")[0].count == 1
    if how == "exhausted":
        assert sc.CALL_CANCELLED not in span.attributes
    else:
        assert span.attributes[sc.CALL_CANCELLED] is True


def test_stream_raising_midway_fails_once_with_the_sdk_error(instrument, telemetry, client):
    recorder = instrument()
    ended = []
    recorder.add_listener(ended.append)
    seen = []
    with pytest.raises(errors.ServerError) as raised:
        for chunk in client.models.generate_content_stream(model="error-midstream", contents="hi"):
            seen.append(chunk)
    assert len(seen) == 1 and raised.value.code == 500
    span = only_span(telemetry)
    assert len(ended) == 1
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "INTERNAL"  # Google's status, from the error event
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 12  # the prompt count came with the first event


async def test_async_stream_cancelled(instrument, telemetry, client):
    recorder = instrument()
    ended = []
    recorder.add_listener(ended.append)
    started = asyncio.Event()

    async def consume():
        async for _chunk in await client.aio.models.generate_content_stream(model="slow-stream", contents="hi"):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only_span(telemetry)
    assert len(ended) == 1
    assert span.attributes[sc.CALL_CANCELLED] is True and sc.ERROR_TYPE not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("how", ["break", "aclose"])
async def test_async_stream_left_early(instrument, telemetry, client, how):
    instrument()
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
    if how == "break":
        async for _chunk in stream:
            break
    else:
        await stream.__anext__()
    await stream.aclose()
    del stream
    # the SDK's inner async generators are closed by the event loop's finalizer hook, as tasks
    for _ in range(5):
        await asyncio.sleep(0)
    span = only_span(telemetry)
    assert span.attributes[sc.CALL_CANCELLED] is True and span.end_time is not None


# --- the caller's exceptions, untouched; malformed bodies -----------------------------------------


def _raised(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


@pytest.mark.parametrize(("model", "error", "status"), [
    ("error-400", errors.ClientError, "INVALID_ARGUMENT"),
    ("error-403", errors.ClientError, "PERMISSION_DENIED"),
    ("error-404", errors.ClientError, "NOT_FOUND"),
    ("error-429", errors.ClientError, "RESOURCE_EXHAUSTED"),
    ("error-500", errors.ServerError, "INTERNAL"),
    ("error-503", errors.ServerError, "UNAVAILABLE"),
])
def test_api_errors_reraised_untouched(instrument, telemetry, client, monkeypatch, model, error, status):
    baseline = _raised(lambda: client.models.generate_content(model=model, contents="hi"))
    instrument()
    # what the SDK raised at the bottom, to show the caller gets that very object
    raised_inside = []
    original = _api_client.BaseApiClient._request

    def spy(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except Exception as exc:
            raised_inside.append(exc)
            raise

    monkeypatch.setattr(_api_client.BaseApiClient, "_request", spy)
    instrumented = _raised(lambda: client.models.generate_content(model=model, contents="hi"))
    assert instrumented is raised_inside[0]
    assert type(instrumented) is type(baseline) is error
    assert (instrumented.code, instrumented.status, str(instrumented)) == (baseline.code, baseline.status, str(baseline))
    assert instrumented.__traceback__ is not None and instrumented.__cause__ is baseline.__cause__ is None
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    # error.type: Google's status (one exception class covers every 4xx, a 429 and a 400 alike)
    assert span.attributes[sc.ERROR_TYPE] == status == instrumented.status
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes[sc.ERROR_TYPE] == status


async def test_async_api_error_reraised(instrument, telemetry, client):
    with pytest.raises(errors.ClientError) as uninstrumented:
        await client.aio.models.generate_content(model="error-429", contents="hi")
    baseline = uninstrumented.value
    instrument()
    with pytest.raises(errors.ClientError) as raised:
        async for _chunk in await client.aio.models.generate_content_stream(model="error-429", contents="hi"):
            pass
    assert str(raised.value) == str(baseline)
    assert only_span(telemetry).attributes[sc.ERROR_TYPE] == "RESOURCE_EXHAUSTED"


def _run(client, model, kind):
    if kind == "stream":
        return [c.model_dump() for c in client.models.generate_content_stream(model=model, contents="hi")]
    if kind == "embed":
        return client.models.embed_content(model=model, contents=["a", "b"]).model_dump()
    return client.models.generate_content(model=model, contents="hi").model_dump()


@pytest.mark.parametrize(("model", "kind"), [
    ("malformed-json", "generate"),
    ("short-body", "generate"),
    ("disconnect", "generate"),
    ("truncated-sse", "stream"),
    ("error-429", "stream"),
    ("error-500", "embed"),
])
def test_malformed_and_broken_bodies_give_the_caller_what_the_sdk_alone_gives(
    instrument, telemetry, client, caplog, model, kind
):
    baseline = _raised(lambda: _run(client, model, kind))
    instrument()
    instrumented = _raised(lambda: _run(client, model, kind))
    assert type(instrumented) is type(baseline)
    assert str(instrumented) == str(baseline)
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    # Google's status when the body gave one, else the exception class
    assert span.attributes[sc.ERROR_TYPE] == (getattr(baseline, "status", None) or type(baseline).__qualname__)
    assert internal_errors(caplog) == []


# --- the caller sees the same with and without instrumentation ------------------------------------


def _without_dates(value):
    """A result's dump without the HTTP Date header (the only thing two identical answers differ in)."""
    if isinstance(value, dict):
        return {k: _without_dates(v) for k, v in value.items() if k != "date"}
    if isinstance(value, list):
        return [_without_dates(v) for v in value]
    return value


def _everything(client, server):
    """Results, warnings, what the server got and the SDK's log records, for each call path."""
    config = types.GenerateContentConfig(temperature=0.2, system_instruction="Be brief.")
    results = []
    first = len(server.requests)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    sdk_logger = logging.getLogger("google_genai")
    sdk_logger.addHandler(handler)
    level = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results.append(client.models.generate_content(model=MODEL, contents="hi", config=config).model_dump())
        results.append([c.model_dump() for c in client.models.generate_content_stream(model=MODEL, contents="hi")])
        results.append(client.models.embed_content(model=EMBEDDER, contents=["a", "b"]).model_dump())
        chat = client.chats.create(model=MODEL)
        results.append(chat.send_message("hi").model_dump())
        results.append([m.model_dump() for m in chat.get_history()])

        async def aio():
            out = [(await client.aio.models.generate_content(model=MODEL, contents="hi")).model_dump()]
            out.append([c.model_dump() async for c in await client.aio.models.generate_content_stream(model=MODEL, contents="hi")])
            out.append((await client.aio.models.embed_content(model=EMBEDDER, contents="a")).model_dump())
            return out

        try:
            results.extend(asyncio.run(aio()))
        finally:
            sdk_logger.removeHandler(handler)
            sdk_logger.setLevel(level)
    sent = [(r.path, r.body, {k: v for k, v in r.headers.items() if k.lower() != "host"})
            for r in server.requests[first:]]
    logged = [(r.name, r.levelno, r.getMessage()) for r in records]
    return _without_dates(results), [(w.category, str(w.message)) for w in caught], sent, logged


def test_results_warnings_and_requests_are_the_same_with_and_without_instrumentation(instrument, telemetry, client, server):
    baseline = _everything(client, server)
    instrument(capture=CaptureMode.SPAN_AND_EVENT)  # the most our code does per call
    instrumented = _everything(client, server)
    assert instrumented[0] == baseline[0]
    assert instrumented[1] == baseline[1]
    assert instrumented[2] == baseline[2]
    assert instrumented[3] == baseline[3] and baseline[3]  # the SDK's own log records (AFC notices)
    assert len(llm_spans(telemetry)) == 7


def test_stream_returned_is_the_sdks_own_generator(instrument, client):
    import inspect

    instrument()
    stream = client.models.generate_content_stream(model=MODEL, contents="hi")
    assert inspect.isgenerator(stream) and stream.__qualname__ == "Models.generate_content_stream"
    list(stream)


# --- our errors never escape ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["_record_response", "_set_usage", "_chunk_handler_item", "_Starter.start",
                                   "_record_embeddings"])
def test_a_fault_in_our_code_never_reaches_the_caller(instrument, telemetry, client, monkeypatch, caplog, where):
    def boom(*args, **kwargs):
        raise RuntimeError("injected fault in otel-llm")

    if where == "_chunk_handler_item":
        monkeypatch.setattr(ours, "_chunk_handler", lambda call: boom)
    elif where == "_Starter.start":
        monkeypatch.setattr(ours._Starter, "_server", boom)
    else:
        monkeypatch.setattr(ours, where, boom)
    monkeypatch.setattr("otel_llm.recorder._reported", set())
    instrument()
    response = client.models.generate_content(model=MODEL, contents="hi")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    embedded = client.models.embed_content(model=EMBEDDER, contents=["a"])
    assert response.text == wire.TEXT and "".join(c.text for c in chunks) == wire.TEXT
    assert len(embedded.embeddings) == 1
    assert internal_errors(caplog)  # reported, not raised
    spans = llm_spans(telemetry)
    if where == "_Starter.start":
        assert spans == []  # the requests passed through unrecorded
    else:
        assert len(spans) == 3 and all(s.end_time is not None for s in spans)
        assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_a_fault_capturing_content_leaves_the_call_recorded(instrument, telemetry, client, monkeypatch, caplog):
    monkeypatch.setattr(ours, "_capture_input", lambda *a: 1 / 0)
    monkeypatch.setattr("otel_llm.recorder._reported", set())
    instrument(capture=CaptureMode.SPAN_ONLY)
    client.models.generate_content(model=MODEL, contents="hi")
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == OUTPUT_TOKENS
    assert internal_errors(caplog)


# --- message content: only when opted in -----------------------------------------------------------


def test_no_content_unless_opted_in(instrument, telemetry, client):
    config = types.GenerateContentConfig(system_instruction="You are terse.")
    instrument()
    client.models.generate_content(model=MODEL, contents="Say hello to the tests", config=config)
    list(client.models.generate_content_stream(model=MODEL, contents="Say hello to the tests", config=config))
    for span in llm_spans(telemetry):
        assert not {sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS, sc.TOOL_DEFINITIONS} & set(span.attributes)
        assert not any("Say hello" in str(v) or API_KEY in str(v) for v in span.attributes.values())


def test_content_when_opted_in(instrument, telemetry, client):
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    instrument(capture=CaptureMode.SPAN_ONLY)
    config = types.GenerateContentConfig(system_instruction="You are terse.", tools=[get_weather])
    client.models.generate_content(model=MODEL, contents="Say hello to the tests", config=config)
    list(client.models.generate_content_stream(model=MODEL, contents="Say hello to the tests"))
    plain, streamed = llm_spans(telemetry)
    assert json.loads(plain.attributes[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hello to the tests"}]}]
    assert json.loads(plain.attributes[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "You are terse."}]
    assert json.loads(plain.attributes[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": wire.TEXT}], "finish_reason": "stop"}]
    assert json.loads(plain.attributes[sc.TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "get_weather", "description": "The weather in a city."}]
    assert json.loads(streamed.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == wire.TEXT
