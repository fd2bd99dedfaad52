"""The upstream simulator's Anthropic Messages API, exercised through the real anthropic SDK (sync and async)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import anthropic
import httpx2
import openai
import pytest

from otel_llm.demo.upstream import LatencyProfile, UpstreamSimulator

API_KEY = "sk-ant-test-0123456789SECRET"
MODEL = "claude-haiku-4-5"  # claude-sonnet-4-5 makes the SDK warn that it is deprecated
MESSAGES = [{"role": "user", "content": "Say hello there"}]  # 3 words -> 4 input tokens
WEATHER_TOOL = {"name": "get_weather",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
STREAM_HEAD = ["message_start", "content_block_start"]
STREAM_TAIL = ["content_block_stop", "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def sim():
    with UpstreamSimulator(timeout_sleep=2.0) as server:
        yield server


def _client_kwargs(sim):
    # strict validation: every answer must parse into the SDK's own models
    return {"base_url": sim.anthropic_base_url, "api_key": API_KEY, "max_retries": 0,
            "_strict_response_validation": True}


@pytest.fixture
def client(sim):
    sim.reset_log()
    with anthropic.Anthropic(**_client_kwargs(sim)) as c:
        yield c


@pytest.fixture
async def aclient(sim):
    sim.reset_log()
    async with anthropic.AsyncAnthropic(**_client_kwargs(sim)) as c:
        yield c


def _create(client, **kwargs):
    return client.messages.create(**{"model": MODEL, "max_tokens": 1000, "messages": MESSAGES, **kwargs})


def _raw(sim, path, body, headers):
    """(status, headers, raw body) of a plain urllib POST."""
    req = urllib.request.Request(f"{sim.anthropic_base_url}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _long_system(word):
    """A system prompt of 1000 words (1300 tokens) marked for caching; ``word`` keeps it unique per test."""
    return [{"type": "text", "text": f"{word} " * 1000, "cache_control": {"type": "ephemeral"}}]


# -- non-streaming -----------------------------------------------------------------------------


def test_message_is_deterministic_with_usage(sim, client):
    msg = _create(client)
    again = _create(client)

    assert msg.id.startswith("msg_") and msg.id != again.id
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", "claude-haiku-4-5-20251001")
    [block] = msg.content
    assert block.type == "text" and block.text == again.content[0].text
    words = block.text.split()
    assert 8 <= len(words) <= 40 and block.text.endswith(".")
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    usage = msg.usage
    assert (usage.input_tokens, usage.output_tokens) == (4, len(words))
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    # the same deterministic text as the OpenAI side of the same server gives for the same prompt
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as oai:
        chat = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert chat.choices[0].message.content == block.text


def test_dated_model_names(client):
    with pytest.warns(DeprecationWarning, match="deprecated"):  # the SDK's own warning, not the simulator's
        assert _create(client, model="claude-sonnet-4-5").model == "claude-sonnet-4-5-20250929"
    assert _create(client, model="claude-opus-4-5-20251101").model == "claude-opus-4-5-20251101"
    assert _create(client, model="my-claude").model == "my-claude-2024-01-01"


def test_max_tokens_and_stop_sequences(client):
    short = _create(client, max_tokens=3)
    assert short.stop_reason == "max_tokens"
    assert len(short.content[0].text.split()) == short.usage.output_tokens == 3

    full = _create(client).content[0].text
    stop = full.split()[2]
    cut = _create(client, stop_sequences=["never there", stop])
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop)
    assert cut.content[0].text == full[:full.index(stop)]


def test_cache_control_prompt_is_written_then_read(client):
    system = _long_system("cached")
    first = _create(client, system=system).usage
    second = _create(client, system=system).usage

    # input_tokens excludes cached tokens: 1300 system tokens are cached, the 4 of the user turn are not
    assert (first.input_tokens, first.cache_creation_input_tokens, first.cache_read_input_tokens) == (4, 1300, 0)
    assert (second.input_tokens, second.cache_creation_input_tokens, second.cache_read_input_tokens) == (4, 0, 1300)
    assert first.cache_creation.ephemeral_5m_input_tokens == 1300
    total = client.messages.count_tokens(model=MODEL, system=system, messages=MESSAGES).input_tokens
    assert total == second.input_tokens + second.cache_read_input_tokens


def test_top_level_cache_control_caches_the_whole_prompt(client):
    messages = [{"role": "user", "content": "auto " * 1000}]
    first = _create(client, messages=messages, cache_control={"type": "ephemeral"}).usage
    second = _create(client, messages=messages, cache_control={"type": "ephemeral"}).usage

    assert (first.input_tokens, first.cache_creation_input_tokens, first.cache_read_input_tokens) == (0, 1300, 0)
    assert (second.input_tokens, second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 0, 1300)


def test_no_caching_without_cache_control_or_below_1024_tokens(client):
    unmarked = [{"type": "text", "text": "plain " * 1000}]
    small = [{"type": "text", "text": "tiny " * 100, "cache_control": {"type": "ephemeral"}}]
    for system, input_tokens in ((unmarked, 1304), (small, 134)):
        for _ in range(2):
            usage = _create(client, system=system).usage
            assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (
                input_tokens, 0, 0)


def test_count_tokens(client):
    assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == 4
    counted = client.messages.count_tokens(model=MODEL, system="Be brief", messages=MESSAGES)
    assert counted.input_tokens == _create(client, system="Be brief").usage.input_tokens == 7


def test_weather_question_with_tools_calls_the_tool(client):
    question = [{"role": "user", "content": "What's the weather in New York?"}]
    msg = _create(client, tools=[WEATHER_TOOL], messages=question)

    assert msg.stop_reason == "tool_use"
    text, call = msg.content
    assert text.type == "text" and "New York" in text.text
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"location": "New York"})
    assert call.id.startswith("toolu_")
    # answering the tool call gets a text answer
    follow_up = [
        *question,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
    ]
    assert _create(client, tools=[WEATHER_TOOL], messages=follow_up).stop_reason == "end_turn"


def test_thinking_blocks_when_requested(client):
    msg = _create(client, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024})

    thinking, text = msg.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    thought = len(thinking.thinking.split())
    assert msg.usage.output_tokens == thought + len(text.text.split())
    assert msg.usage.output_tokens_details.thinking_tokens == thought
    with pytest.raises(anthropic.BadRequestError):
        _create(client, max_tokens=1000, thinking={"type": "enabled", "budget_tokens": 1024})


# -- streaming ---------------------------------------------------------------------------------


def test_stream_raw_events_in_order_with_cumulative_usage(client):
    expected = _create(client).content[0].text
    events = list(_create(client, stream=True))

    types = [e.type for e in events]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert types == STREAM_HEAD + ["content_block_delta"] * len(deltas) + STREAM_TAIL
    assert len(deltas) == len(expected.split()) and "".join(deltas) == expected  # one word per delta
    start = events[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None
    assert (start.usage.input_tokens, start.usage.output_tokens) == (4, 1)
    assert events[1].content_block.type == "text" and events[1].content_block.text == ""
    assert {e.index for e in events[1:-2]} == {0}
    delta = events[-2]
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("end_turn", None)
    assert delta.usage.output_tokens == len(deltas)


def test_stream_wire_format(sim):
    body = {"model": MODEL, "max_tokens": 3, "messages": MESSAGES, "stream": True}
    status, headers, raw = _raw(sim, "/v1/messages", body, {"x-api-key": API_KEY})

    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert headers["Content-Type"].startswith("text/event-stream")
    frames = [frame.split("\n") for frame in raw.decode().strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in frames]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 3 + STREAM_TAIL
    for name, (_, data) in zip(names, frames):
        assert json.loads(data.removeprefix("data: "))["type"] == name


def test_stream_helper_text_and_final_message(client):
    with client.messages.stream(model=MODEL, max_tokens=1000, messages=MESSAGES, system=_long_system("helper")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()

    assert final.content[0].text == text and text
    assert final.stop_reason == "end_turn"
    usage = final.usage
    assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (4, 1300, 0)
    assert usage.output_tokens == len(text.split())


def test_stream_helper_tool_use_and_thinking(client):
    kwargs = {"model": MODEL, "max_tokens": 2000, "tools": [WEATHER_TOOL],
              "thinking": {"type": "enabled", "budget_tokens": 1024},
              "messages": [{"role": "user", "content": "weather in Paris please"}]}
    with client.messages.stream(**kwargs) as s:
        final = s.get_final_message()

    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature
    assert final.content[2].input == {"location": "Paris"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == _create(client, **kwargs).usage.output_tokens


def test_stream_max_tokens(client):
    with client.messages.stream(model=MODEL, max_tokens=2, messages=MESSAGES) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.usage.output_tokens, len(final.content[0].text.split())) == ("max_tokens", 2, 2)


def test_latency_profile_delays_the_first_delta():
    with UpstreamSimulator(latency=LatencyProfile(first_chunk=0.15, per_chunk=0.005)) as slow:
        c = anthropic.Anthropic(base_url=slow.anthropic_base_url, api_key=API_KEY, max_retries=0)
        start = time.monotonic()
        arrivals = [(event.type, time.monotonic() - start) for event in _create(c, stream=True)]
    first_delta = next(at for name, at in arrivals if name == "content_block_delta")
    assert arrivals[0][1] < 0.15 <= first_delta  # message_start at once, the first token after the TTFT


async def test_async_create_and_stream_helper(aclient):
    msg = await aclient.messages.create(model=MODEL, max_tokens=1000, messages=MESSAGES)
    async with aclient.messages.stream(model=MODEL, max_tokens=1000, messages=MESSAGES) as s:
        text = "".join([piece async for piece in s.text_stream])
        final = await s.get_final_message()

    assert text == msg.content[0].text == final.content[0].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, msg.usage.output_tokens)
    assert (await aclient.messages.count_tokens(model=MODEL, messages=MESSAGES)).input_tokens == 4


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "exc", "status", "error_type"),
    [
        ("error-500", anthropic.InternalServerError, 500, "api_error"),
        ("error-529", anthropic.OverloadedError, 529, "overloaded_error"),
        ("error-429", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("error-400", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("bad-model", anthropic.NotFoundError, 404, "not_found_error"),  # Anthropic: 404 for an unknown model
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_errors_raise_matching_sdk_exception(client, model, exc, status, error_type, stream):
    with pytest.raises(exc) as info:
        _create(client, model=model, stream=stream)

    err = info.value
    assert isinstance(err, anthropic.APIStatusError)
    assert (err.status_code, err.type) == (status, error_type)
    assert err.body["type"] == "error" and err.body["error"]["message"]
    assert err.request_id.startswith("req_") and err.body["request_id"] == err.request_id
    assert err.response.headers["anthropic-ratelimit-requests-limit"] == "10000"
    if status == 429:
        assert err.response.headers["retry-after"] == "0"
        assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    if status == 529:
        assert isinstance(err, anthropic.InternalServerError)


def test_count_tokens_fails_by_model_name_too(client):
    with pytest.raises(anthropic.InternalServerError):
        client.messages.count_tokens(model="error-500", messages=MESSAGES)


def test_timeout(sim, client):
    start = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(model="error-timeout", max_tokens=10, messages=MESSAGES)
    assert time.monotonic() - start < sim.timeout_sleep


def test_disconnect_raises_connection_error(client):
    with pytest.raises(anthropic.APIConnectionError) as info:
        _create(client, model="error-disconnect")
    assert not isinstance(info.value, anthropic.APITimeoutError)


def test_malformed_json(client):
    with pytest.raises(json.JSONDecodeError):
        _create(client, model="error-malformed")
    with pytest.raises(json.JSONDecodeError):
        list(_create(client, model="error-malformed", stream=True))


def test_midstream_disconnect_raises_while_iterating(client):
    received = []
    # unlike openai's, the anthropic SDK does not wrap a transport error while reading a stream
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        for event in _create(client, model="error-midstream", stream=True):
            received.append(event.type)
    assert received[:3] == STREAM_HEAD + ["content_block_delta"]
    assert "message_stop" not in received


def test_midstream_overloaded_error_event(client):
    received = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in _create(client, model="error-overloaded-midstream", stream=True):
            received.append(event.type)
    # the status is the stream's 200, so the SDK raises the base class; the body says what happened
    assert (info.value.status_code, info.value.type) == (200, "overloaded_error")
    assert received[:2] == STREAM_HEAD and "message_stop" not in received

    with pytest.raises(anthropic.APIStatusError) as info:  # and through the helper
        with client.messages.stream(model="error-overloaded-midstream", max_tokens=100, messages=MESSAGES) as s:
            "".join(s.text_stream)
    assert info.value.type == "overloaded_error"


async def test_async_midstream_errors(aclient):
    with pytest.raises(anthropic.APIStatusError) as info:
        async with aclient.messages.stream(model="error-overloaded-midstream", max_tokens=100, messages=MESSAGES) as s:
            await s.get_final_message()
    assert info.value.type == "overloaded_error"
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async for _ in await aclient.messages.create(model="error-midstream", max_tokens=100, messages=MESSAGES,
                                                      stream=True):
            pass
    with pytest.raises(anthropic.RateLimitError):
        await aclient.messages.create(model="error-429", max_tokens=100, messages=MESSAGES)


def test_error_rate_is_seeded_and_deterministic():
    def outcomes(seed):
        with UpstreamSimulator(error_rate=0.5, seed=seed) as server:
            c = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=API_KEY, max_retries=0)
            result = []
            for _ in range(12):
                try:
                    _create(c)
                    result.append(200)
                except anthropic.APIStatusError as err:
                    result.append(err.status_code)
            return result

    first = outcomes(seed=42)
    assert first == outcomes(seed=42)
    assert set(first) == {200, 429, 500}


def test_invalid_requests(sim, client):
    status, _, body = _raw(sim, "/v1/messages", {"model": MODEL, "messages": MESSAGES}, {"x-api-key": API_KEY})
    assert status == 400 and json.loads(body)["error"] == {"type": "invalid_request_error",
                                                           "message": "max_tokens: Field required"}
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        _create(client, messages=[{"role": "user", "content": "x" * 100_001}])
    status, _, body = _raw(sim, "/v1/messages/nope", {}, {"x-api-key": API_KEY})
    assert status == 404 and json.loads(body)["error"] == {"type": "not_found_error", "message": "Not Found"}


def test_oversized_body_is_413():
    with UpstreamSimulator(max_request_bytes=2_000) as small:
        c = anthropic.Anthropic(base_url=small.anthropic_base_url, api_key=API_KEY, max_retries=0)
        with pytest.raises(anthropic.ContentTooLargeError) as info:
            _create(c, messages=[{"role": "user", "content": "word " * 1000}])
        assert info.value.type == "request_too_large"
        assert _create(c).content  # the connection stays usable: the oversized body was drained


# -- auth, headers, request log ----------------------------------------------------------------


def test_missing_key_is_401_authentication_error(sim, client):
    with pytest.raises(anthropic.AuthenticationError) as info:
        _create(client, extra_headers={"Authorization": anthropic.omit})
    assert info.value.status_code == 401 and info.value.type == "authentication_error"

    body = {"model": MODEL, "max_tokens": 10, "messages": MESSAGES}
    status, _, raw = _raw(sim, "/v1/messages", body, {"x-api-key": " "})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    status, _, raw = _raw(sim, "/v1/messages", body, {"x-api-key": API_KEY})  # what other clients send
    assert status == 200 and json.loads(raw)["type"] == "message"


def test_rate_limit_headers(client):
    raw1 = client.messages.with_raw_response.create(model=MODEL, max_tokens=1000, messages=MESSAGES)
    raw2 = client.messages.with_raw_response.create(model=MODEL, max_tokens=1000, messages=MESSAGES)

    h1, h2 = raw1.headers, raw2.headers
    prefix = "anthropic-ratelimit-"
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert int(h1[f"{prefix}{name}-limit"]) >= int(h1[f"{prefix}{name}-remaining"]) > 0
        reset = datetime.strptime(h1[f"{prefix}{name}-reset"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert 0 <= (reset - datetime.now(timezone.utc)).total_seconds() <= 61
    assert int(h2[f"{prefix}requests-remaining"]) == int(h1[f"{prefix}requests-remaining"]) - 1
    usage = raw2.parse().usage
    for name, spent in (("tokens", usage.input_tokens + usage.output_tokens), ("input-tokens", usage.input_tokens),
                        ("output-tokens", usage.output_tokens)):
        assert int(h2[f"{prefix}{name}-remaining"]) == int(h1[f"{prefix}{name}-remaining"]) - spent
    assert h1["request-id"].startswith("req_") and h1["request-id"] != h2["request-id"]
    assert raw1.request_id == h1["request-id"]


def test_request_log_redacts_keys(sim, client):
    _create(client, metadata={"user_id": "u-1"})
    _raw(sim, "/v1/messages/count_tokens", {"model": MODEL, "messages": MESSAGES}, {"x-api-key": API_KEY})

    log = sim.request_log
    assert [(e.method, e.path) for e in log] == [("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")]
    assert log[0].body == {"model": MODEL, "max_tokens": 1000, "messages": MESSAGES,
                           "metadata": {"user_id": "u-1"}}
    assert log[0].headers["authorization"] == "[REDACTED]"  # this SDK sends its api_key as a Bearer token
    assert log[0].headers["anthropic-version"]
    assert log[1].headers["x-api-key"] == "[REDACTED]"
    assert API_KEY not in repr(log)
