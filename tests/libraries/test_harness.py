"""The harness's own parts: the loopback guard, the canonical form, the documented request change and
the recording proxy's reading of the server's answers."""

from __future__ import annotations

import socket

import anthropic
import openai
import pytest

from tests.libraries.harness import canonical, documented_change, expected_tokens

PROMPT = [{"role": "user", "content": "Say hello there"}]


def test_connections_beyond_loopback_are_refused_before_any_packet():
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback only"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: the guard refuses before connecting


def test_canonical_numbers_made_up_ids_in_order_and_keeps_their_reuse():
    first = {"id": "chatcmpl-0123456789abcdef01234567", "created": 1,
             "calls": ["call_aaaaaaaaaaaaaaaaaaaaaaaa", "call_aaaaaaaaaaaaaaaaaaaaaaaa", "call_bbbbbbbbbbbbbbbbbbbbbbbb"]}
    second = {"id": "chatcmpl-fedcba9876543210fedcba98", "created": 2,
              "calls": ["call_cccccccccccccccccccccccc", "call_cccccccccccccccccccccccc", "call_dddddddddddddddddddddddd"]}
    other = {**second, "calls": ["call_cccccccccccccccccccccccc", "call_dddddddddddddddddddddddd",
                                 "call_dddddddddddddddddddddddd"]}

    assert canonical(first) == canonical(second) != canonical(other)
    assert canonical(first)["calls"] == ["<id2>", "<id2>", "<id3>"]
    assert canonical({"text": "the same"}) != canonical({"text": "not the same"})


def test_documented_change_adds_include_usage_only_when_the_caller_did_not_choose():
    path = "/v1/chat/completions"
    plain = {"model": "m", "stream": True}
    assert documented_change(plain, path) == {**plain, "stream_options": {"include_usage": True}}
    kept = {**plain, "stream_options": {"include_obfuscation": False}}
    assert documented_change(kept, path)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    for chosen in (True, False):
        explicit = {**plain, "stream_options": {"include_usage": chosen}}
        assert documented_change(explicit, path) == explicit
    assert documented_change({"model": "m"}, path) == {"model": "m"}
    assert documented_change(plain, "/v1/responses") == plain
    assert documented_change(plain, "/v1/messages") == plain


def test_proxy_records_requests_and_the_servers_final_counts(wire):
    proxy = wire.proxies["separate-chunk"]
    proxy.reset()
    client = openai.OpenAI(base_url=wire.endpoint().openai_url, api_key="sk-test", max_retries=0)
    done = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True,
                                            stream_options={"include_usage": True})
    next(iter(stream))  # abandoned: the proxy still reads the whole answer
    stream.close()
    with anthropic.Anthropic(base_url=wire.endpoint().anthropic_url, api_key="sk-ant", max_retries=0) as claude:
        with claude.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=PROMPT) as events:
            final = events.get_final_message()
    plain, streamed, messages = proxy.exchanges()

    assert plain.body == {"model": "gpt-4o-mini", "messages": PROMPT}
    assert plain.usage() == (done.usage.prompt_tokens, done.usage.completion_tokens)
    assert plain.response_id() == done.id
    assert streamed.streamed and streamed.body["stream_options"] == {"include_usage": True}
    assert streamed.usage() == plain.usage()  # the same prompt: the same deterministic answer
    assert expected_tokens(streamed, consumed=False) == (None, None)
    assert messages.usage() == (final.usage.input_tokens, final.usage.output_tokens) != (final.usage.input_tokens, 1)
    assert expected_tokens(messages, consumed=False) == (final.usage.input_tokens, None)
