"""The upstream simulator, exercised through the real openai SDK (sync and async) over loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from otel_llm.demo.upstream import LatencyProfile, LoggedRequest, UpstreamSimulator

MESSAGES = [{"role": "user", "content": "Say hello there"}]  # 3 words -> 4 prompt tokens
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
RESPONSE_EVENTS_HEAD = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
RESPONSE_EVENTS_TAIL = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def sim():
    with UpstreamSimulator(timeout_sleep=2.0) as server:
        yield server


@pytest.fixture
def client(sim):
    sim.reset_log()
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(sim):
    sim.reset_log()
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


def _raw_request(sim, method, path, *, auth="Bearer sk-test", body=None):
    """(status, headers, parsed JSON body) of a plain urllib request."""
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{sim.port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


# -- chat completions --------------------------------------------------------------------------


def test_chat_non_stream_parses_with_usage_and_is_deterministic(client):
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert resp.id.startswith("chatcmpl-") and resp.id != again.id
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.system_fingerprint == "fp_sim0001"
    assert resp.service_tier == "default"
    [choice] = resp.choices
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    words = choice.message.content.split()
    assert 8 <= len(words) <= 40 and choice.message.content.endswith(".")
    assert choice.message.content == again.choices[0].message.content
    usage = resp.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, len(words))
    assert usage.total_tokens == 4 + len(words)
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_n2_returns_two_distinct_choices(client):
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2)

    assert resp.model == "gpt-4o-2024-08-06"
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].message.content != resp.choices[1].message.content
    total_words = sum(len(c.message.content.split()) for c in resp.choices)
    assert resp.usage.completion_tokens == total_words


@pytest.mark.parametrize("limit_param", ["max_tokens", "max_completion_tokens"])
def test_chat_token_limit_gives_finish_reason_length(client, limit_param):
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **{limit_param: 3})

    assert resp.choices[0].finish_reason == "length"
    assert len(resp.choices[0].message.content.split()) == 3
    assert resp.usage.completion_tokens == 3


def test_reasoning_models_report_reasoning_tokens(client):
    resp = client.chat.completions.create(model="o3-mini", messages=MESSAGES)

    visible = len(resp.choices[0].message.content.split())
    assert resp.model == "o3-mini-2025-01-31"
    assert resp.usage.completion_tokens_details.reasoning_tokens == 2 * visible
    assert resp.usage.completion_tokens == 3 * visible


def test_unknown_model_gets_deterministic_dated_name(client):
    resp = client.chat.completions.create(model="my-model", messages=MESSAGES)
    assert resp.model == "my-model-2024-01-01"


def test_repeated_long_prompt_is_cached(client):
    messages = [{"role": "user", "content": "lorem " * 1000}]  # 1300 prompt tokens
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages).usage
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages).usage

    assert first.prompt_tokens == second.prompt_tokens == 1300
    assert (first.prompt_tokens_details.cache_write_tokens, first.prompt_tokens_details.cached_tokens) == (1280, 0)
    assert (second.prompt_tokens_details.cache_write_tokens, second.prompt_tokens_details.cached_tokens) == (0, 1280)


def test_weather_question_with_tools_returns_tool_call(client):
    messages = [{"role": "user", "content": "What's the weather in New York?"}]
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "New York"}


def test_streamed_tool_call_accumulates_arguments(client):
    messages = [{"role": "user", "content": "weather in Paris please"}]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], stream=True)

    chunks = list(stream)
    head = chunks[0].choices[0].delta.tool_calls[0]
    assert (head.function.name, head.id[:5]) == ("get_weather", "call_")
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments for c in chunks[:-1])
    assert json.loads(arguments) == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_without_include_usage_has_no_usage_chunk(client):
    expected = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"
    assert len({c.id for c in chunks}) == 1
    content_chunks = chunks[1:-1]
    assert len(content_chunks) == len(expected.split())  # one word per chunk
    assert "".join(c.choices[0].delta.content for c in content_chunks) == expected
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_with_include_usage_ends_with_usage_chunk(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    *body, last = chunks
    assert last.choices == []
    assert all(c.usage is None and len(c.choices) == 1 for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    words = len(body) - 2  # minus the role chunk and the finish chunk
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (4, words, 4 + words)


def _words_and_usage(chunks):
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usages = [c.usage for c in chunks if c.usage is not None]
    return len(text.split()), usages


def test_stream_usage_on_last_choice_chunk_mode():
    with UpstreamSimulator(stream_usage="last-choice-chunk") as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as c:
        chunks = list(c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
        plain = list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert all(len(chunk.choices) == 1 for chunk in chunks)  # no usage-only chunk
    *body, last = chunks
    assert last.choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in body)
    words, [usage] = _words_and_usage(chunks)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, words, 4 + words)
    # Not asked for: no usage anywhere, the same chunks as the default mode sends.
    assert _words_and_usage(plain) == (words, []) and len(plain) == len(chunks)


@pytest.mark.parametrize("n", [1, 2])
def test_stream_usage_mode_per_request_header(sim, client, n):
    assert sim.stream_usage == "separate-chunk"
    kwargs = dict(model="gpt-4o-mini", messages=MESSAGES, n=n, stream=True, stream_options={"include_usage": True})
    separate = list(client.chat.completions.create(**kwargs))
    on_last = list(client.chat.completions.create(**kwargs, extra_headers={"x-sim-stream-usage": "last-choice-chunk"}))

    assert separate[-1].choices == [] and len(on_last) == len(separate) - 1
    assert [c.choices[0].finish_reason for c in on_last if c.choices[0].finish_reason] == ["stop"] * n
    assert on_last[-1].choices[0].finish_reason == "stop" and on_last[-1].choices[0].index == n - 1
    assert on_last[-1].usage == separate[-1].usage
    assert [c.usage for c in on_last[:-1]] == [None] * (len(on_last) - 1)
    assert [entry.headers.get("x-sim-stream-usage") for entry in sim.request_log] == [None, "last-choice-chunk"]


def test_stream_usage_mode_rejects_unknown_values(client):
    with pytest.raises(ValueError, match="stream_usage"):
        UpstreamSimulator(stream_usage="first-chunk")
    with pytest.raises(openai.BadRequestError, match="x-sim-stream-usage"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                       stream_options={"include_usage": True},
                                       extra_headers={"x-sim-stream-usage": "first-chunk"})


@pytest.mark.asyncio
async def test_async_stream_with_usage_and_n2(aclient):
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, n=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]

    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    assert finishes == ["stop", "stop"]
    assert chunks[-1].usage.completion_tokens == len(texts[0].split()) + len(texts[1].split())
    assert texts[0] != texts[1]


# -- embeddings, responses, models ------------------------------------------------------------


def test_embeddings_are_deterministic_in_both_encodings(client):
    single = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    batch = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "other"])
    floats = client.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="float")
    small = client.embeddings.create(model="text-embedding-3-small", input="hello world", dimensions=4)

    assert single.model == "text-embedding-3-small"
    assert len(single.data) == 1 and len(single.data[0].embedding) == 8
    assert single.usage.prompt_tokens == single.usage.total_tokens == 3
    assert [d.index for d in batch.data] == [0, 1]
    assert batch.usage.prompt_tokens == 3 + 1
    assert batch.data[0].embedding == single.data[0].embedding == floats.data[0].embedding  # base64 == float
    assert batch.data[1].embedding != batch.data[0].embedding
    assert abs(sum(v * v for v in single.data[0].embedding) - 1.0) < 1e-5
    assert len(small.data[0].embedding) == 4


def test_responses_non_stream(client):
    resp = client.responses.create(model="gpt-4o-mini", input="Say hello there", instructions="Be brief")

    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.status == "completed" and resp.error is None and resp.incomplete_details is None
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.instructions == "Be brief"
    [message] = resp.output
    assert message.type == "message" and message.content[0].type == "output_text"
    words = len(resp.output_text.split())
    assert words >= 8
    usage = resp.usage
    # "Be brief" + "Say hello there": 5 words -> 7 tokens
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (7, words, 7 + words)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_max_output_tokens_is_incomplete(client):
    resp = client.responses.create(model="gpt-4o-mini", input="Say hello there", max_output_tokens=2)

    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert len(resp.output_text.split()) == 2


def test_responses_stream_events_and_final_usage(client):
    events = list(client.responses.create(model="gpt-4o-mini", input="Say hello there", stream=True))

    types = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert types == RESPONSE_EVENTS_HEAD + ["response.output_text.delta"] * len(deltas) + RESPONSE_EVENTS_TAIL
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == "".join(deltas) == events[-4].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, len(deltas))


@pytest.mark.asyncio
async def test_async_responses_stream(aclient):
    stream = await aclient.responses.create(model="gpt-4o-mini", input="Say hello there", stream=True)
    events = [e async for e in stream]

    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.total_tokens == 4 + events[-1].response.usage.output_tokens


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "exc", "status", "code"),
    [
        ("error-500", openai.InternalServerError, 500, None),
        ("error-429", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("error-400", openai.BadRequestError, 400, "model_not_found"),
        ("bad-model", openai.BadRequestError, 400, "model_not_found"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_errors_raise_matching_sdk_exception(client, model, exc, status, code, stream):
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)

    err = info.value
    assert err.status_code == status and err.code == code
    assert err.request_id.startswith("req_")
    assert err.response.headers["x-ratelimit-limit-requests"] == "10000"
    if status == 429:
        assert err.response.headers["retry-after"] == "0"
        assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_status_error_on_embeddings_and_responses(client):
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="error-500", input="x")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="error-429", input="x")


def test_timeout(sim, client):
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="error-timeout", messages=MESSAGES)
    assert time.monotonic() - start < sim.timeout_sleep


def test_timeout_model_answers_after_sleeping():
    with UpstreamSimulator(timeout_sleep=0.2) as fast:
        c = openai.OpenAI(base_url=fast.base_url, api_key="sk-test", max_retries=0)
        start = time.monotonic()
        resp = c.chat.completions.create(model="error-timeout", messages=MESSAGES)
        assert time.monotonic() - start >= 0.2
        assert resp.choices[0].finish_reason == "stop"


def test_disconnect_raises_connection_error(client):
    with pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="error-disconnect", messages=MESSAGES)
    assert not isinstance(info.value, openai.APITimeoutError)


def test_malformed_json_body(client):
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="error-malformed", messages=MESSAGES)
    with pytest.raises(json.JSONDecodeError):
        list(client.chat.completions.create(model="error-malformed", messages=MESSAGES, stream=True))


def test_midstream_disconnect_raises_while_iterating(client):
    received = []
    stream = client.chat.completions.create(model="error-midstream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) >= 3
    assert received[0].choices[0].delta.role == "assistant"


@pytest.mark.asyncio
async def test_async_midstream_on_responses_stream(aclient):
    received = []
    stream = await aclient.responses.create(model="error-midstream", input="Say hello there", stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            received.append(event.type)
    assert received[:4] == RESPONSE_EVENTS_HEAD
    assert "response.completed" not in received


def test_missing_auth_is_401_without_echoing_key(sim, client):
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Authorization": openai.omit}
        )
    assert info.value.status_code == 401
    assert info.value.body["type"] == "invalid_request_error"

    status, _, body = _raw_request(sim, "POST", "/v1/chat/completions", auth="Bearer ", body={"model": "gpt-4o"})
    assert status == 401 and "sk-test" not in json.dumps(body)


def test_unknown_path_is_404_with_openai_error_shape(sim):
    status, headers, body = _raw_request(sim, "GET", "/v1/nope")

    assert status == 404
    assert body == {
        "error": {"message": "Invalid URL (GET /v1/nope)", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert headers["x-request-id"].startswith("req_")


def test_invalid_json_body_is_400(sim):
    req = urllib.request.Request(
        f"{sim.base_url}/chat/completions", data=b"{nope", method="POST", headers={"Authorization": "Bearer k"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"


def test_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 100_001}])
    assert info.value.code == "context_length_exceeded"


def test_oversized_body_is_context_length_exceeded():
    with UpstreamSimulator(max_request_bytes=2_000) as small:
        c = openai.OpenAI(base_url=small.base_url, api_key="sk-test", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "word " * 1000}])
        assert info.value.code == "context_length_exceeded"
        assert small.request_log[-1].body is None
        # the connection stays usable: the oversized body was drained
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_error_rate_is_seeded_and_deterministic():
    def outcomes(seed):
        with UpstreamSimulator(error_rate=0.5, seed=seed) as server:
            c = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
            result = []
            for _ in range(12):
                try:
                    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                    result.append(200)
                except openai.APIStatusError as err:
                    result.append(err.status_code)
            return result

    first = outcomes(seed=42)
    assert first == outcomes(seed=42)
    assert set(first) == {200, 429, 500}


# -- headers, request log, lifecycle -----------------------------------------------------------


def test_rate_limit_headers_decrease_per_request(client):
    raw1 = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    raw2 = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    h1, h2 = raw1.headers, raw2.headers
    assert h1["x-ratelimit-limit-requests"] == "10000" and h1["x-ratelimit-limit-tokens"] == "10000000"
    assert int(h2["x-ratelimit-remaining-requests"]) == int(h1["x-ratelimit-remaining-requests"]) - 1
    tokens2 = raw2.parse().usage.total_tokens
    assert int(h2["x-ratelimit-remaining-tokens"]) == int(h1["x-ratelimit-remaining-tokens"]) - tokens2
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert h1[name].endswith("s") and 0 < float(h1[name][:-1]) <= 60
    assert h1["x-request-id"].startswith("req_") and h1["x-request-id"] != h2["x-request-id"]


def test_request_log_records_bodies_without_api_key(sim, client):
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.5)
    client.embeddings.create(model="text-embedding-3-small", input="hi")

    log = sim.request_log
    assert [(e.method, e.path) for e in log] == [("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")]
    method, path, body, headers = log[0]
    assert body == {"messages": MESSAGES, "model": "gpt-4o-mini", "temperature": 0.5}
    assert headers["authorization"] == "[REDACTED]"
    assert headers["content-type"] == "application/json"
    assert "sk-test" not in repr(log)
    sim.reset_log()
    assert sim.request_log == []


def test_request_log_is_bounded():
    with UpstreamSimulator() as server:
        for i in range(1500):  # straight to the log, not over HTTP, to stay fast
            server._record(LoggedRequest("GET", f"/v1/{i}", None, {}))
        log = server.request_log
        assert len(log) == 1000 and log[0].path == "/v1/500" and log[-1].path == "/v1/1499"


def test_concurrent_requests(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    sim.reset_log()
    results, errors = [], []

    def work(i):
        try:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"request {i}"}], stream=True
            )
            results.append("".join(c.choices[0].delta.content or "" for c in stream))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == [] and len(results) == 12 and all(results)
    assert len(sim.request_log) == 12


def test_latency_profile_delays_first_chunk():
    latency = LatencyProfile(first_chunk=0.15, per_chunk=0.005)
    with UpstreamSimulator(latency=latency) as slow:
        c = openai.OpenAI(base_url=slow.base_url, api_key="sk-test", max_retries=0)
        start = time.monotonic()
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        first = next(iter(stream))
        ttft = time.monotonic() - start
        rest = list(stream)
        total = time.monotonic() - start
    assert first.choices[0].delta.role == "assistant"
    assert ttft >= 0.15
    assert total >= 0.15 + 0.005 * len(rest)

    realistic = LatencyProfile.realistic()
    low, high = (realistic.first_chunk * (1 + s * realistic.jitter) for s in (-1, 1))
    assert 0.2 <= low and high <= 0.6
    assert 0.01 <= realistic.per_chunk <= 0.03


def test_stop_is_fast_with_busy_and_idle_connections():
    server = UpstreamSimulator(timeout_sleep=30).start()
    port = server.port
    idle = socket.create_connection(("127.0.0.1", port))  # a keep-alive connection that never sends
    c = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=5)
    outcome = []

    def stuck_request():
        try:
            c.chat.completions.create(model="error-timeout", messages=MESSAGES)
            outcome.append("answered")
        except openai.APIError as err:
            outcome.append(type(err))

    stuck = threading.Thread(target=stuck_request, daemon=True)
    stuck.start()
    time.sleep(0.1)

    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 1.0
    stuck.join(timeout=5)
    assert outcome == [openai.APIConnectionError]  # dropped, not answered, and not left hanging
    assert idle.recv(1) == b""  # the server closed it
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    server.stop()  # idempotent


def test_main_runs_in_foreground_and_stops_on_sigterm():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_llm.demo.upstream", "--port", str(port), "--error-rate", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == f"upstream simulator listening on http://127.0.0.1:{port}/v1"
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).usage.prompt_tokens == 4
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


# -- structured output (what LangChain's with_structured_output and pydantic-ai's output types ask for) --

CITY_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"},
                                                "tags": {"type": "array", "items": {"type": "string"}}},
               "required": ["name", "population", "tags"]}


def _fits_city(value):
    return (isinstance(value, dict) and set(value) == {"name", "population", "tags"}
            and isinstance(value["name"], str) and isinstance(value["population"], int)
            and isinstance(value["tags"], list) and all(isinstance(t, str) for t in value["tags"]))


def test_chat_json_schema_response_format_answers_fitting_json(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "City", "schema": CITY_SCHEMA}}
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, response_format=response_format)
    streamed = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, response_format=response_format,
                                              stream=True)

    assert _fits_city(json.loads(resp.choices[0].message.content))
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == resp.choices[0].message.content


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "city"}}])
def test_chat_forced_tool_choice_calls_the_tool_with_fitting_arguments(client, tool_choice):
    tools = [WEATHER_TOOL, {"type": "function", "function": {"name": "city", "parameters": CITY_SCHEMA}}]
    if tool_choice == "required":
        tools.reverse()
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, tool_choice=tool_choice)

    [call] = resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "tool_calls" and call.function.name == "city"
    assert _fits_city(json.loads(call.function.arguments))


@pytest.mark.parametrize("tool_choice", [{"type": "any"}, {"type": "tool", "name": "city"}])
def test_messages_forced_tool_choice_uses_the_tool_with_fitting_input(sim, tool_choice):
    import anthropic

    tools = [{"name": "city", "input_schema": CITY_SCHEMA},
             {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{sim.port}", api_key="sk-ant", max_retries=0) as c:
        msg = c.messages.create(model="claude-haiku-4-5", max_tokens=100, tools=tools, tool_choice=tool_choice,
                                messages=MESSAGES)
        with c.messages.stream(model="claude-haiku-4-5", max_tokens=100, tools=tools, tool_choice=tool_choice,
                               messages=MESSAGES) as stream:
            final = stream.get_final_message()

    [block] = msg.content
    assert (msg.stop_reason, block.type, block.name) == ("tool_use", "tool_use", "city")
    assert _fits_city(block.input) and final.content[0].input == block.input
    assert final.usage.output_tokens == msg.usage.output_tokens
