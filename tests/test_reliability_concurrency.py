"""Many threads and many asyncio tasks making LLM calls at once: exact totals, every span ended.

The real openai SDK (sync and async) against the upstream simulator, every kind of call and of
ending mixed: plain, embeddings, streamed to the end (usage asked for by the caller, or on its
behalf and hidden), streams left by ``break`` or closed early, failed calls, and (async) calls
cancelled in flight. Every answer the callers read is matched, by response id, to its span: the
span holds exactly the tokens of that answer, and the metric sums equal the sum of all answers.
No lost updates, no call recorded twice, no span left open.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from typing import Any

import openai
import pytest

from otel_llm.demo.upstream._common import text_of, tokens
from tests.conftest import API_KEY

pytestmark = pytest.mark.slow

SYNC_KINDS = ("chat", "stream", "stream_usage", "stream_break", "stream_close", "error", "embeddings")
ASYNC_KINDS = (*SYNC_KINDS, "cancelled")


class Seen:
    """What the callers read: per response id, the tokens of that answer (None: no usage read)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.answers: dict[str, tuple[int, int] | None] = {}
        self.embedding_tokens = 0

    def add(self, kind: str, response_id: str | None = None, usage: tuple[int, int] | None = None) -> None:
        with self.lock:
            self.calls[kind] += 1
            if response_id is not None:
                self.answers[response_id] = usage

    def embedded(self, prompt_tokens: int) -> None:
        with self.lock:
            self.calls["embeddings"] += 1
            self.embedding_tokens += prompt_tokens

    def total(self, index: int) -> int:
        values = [u[index] for u in self.answers.values() if u is not None]
        return sum(values) + (self.embedding_tokens if index == 0 else 0)


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question number {i} about concurrency"}]


def _hidden_usage(messages: list[dict[str, str]], words: int) -> tuple[int, int]:
    """The usage of a stream whose usage chunk was hidden from the caller: the simulator counts
    prompt tokens with ``tokens()`` and one completion token per streamed word."""
    return tokens(text_of(messages)), words


def _model(i: int) -> str:
    return ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")[i % 3]


def _sync_call(client: openai.OpenAI, kind: str, i: int, seen: Seen) -> None:
    model, messages = _model(i), _messages(i)
    if kind == "chat":
        answer = client.chat.completions.create(model=model, messages=messages)
        seen.add(kind, answer.id, (answer.usage.prompt_tokens, answer.usage.completion_tokens))
    elif kind == "stream_usage":  # the caller asked for usage itself: it sees the usage chunk
        usage, response_id = None, None
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True,
                                                    stream_options={"include_usage": True}):
            response_id, usage = chunk.id, chunk.usage or usage
        seen.add(kind, response_id, (usage.prompt_tokens, usage.completion_tokens))
    elif kind == "stream":  # usage asked for on the caller's behalf: hidden from it, recorded by us
        words, response_id = 0, None
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            response_id = chunk.id
            words += sum(1 for c in chunk.choices if c.delta.content)
        seen.add(kind, response_id, _hidden_usage(messages, words))
    elif kind == "stream_break":
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            seen.add(kind, chunk.id, None)
            break
    elif kind == "stream_close":
        stream = client.chat.completions.create(model=model, messages=messages, stream=True)
        seen.add(kind, next(iter(stream)).id, None)
        stream.close()
    elif kind == "error":
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="error-500", messages=messages)
        seen.add(kind)
    else:
        seen.embedded(client.embeddings.create(model="text-embedding-3-small", input=f"text {i}").usage.prompt_tokens)


async def _async_call(client: openai.AsyncOpenAI, kind: str, i: int, seen: Seen) -> None:
    model, messages = _model(i), _messages(i)
    if kind == "chat":
        answer = await client.chat.completions.create(model=model, messages=messages)
        seen.add(kind, answer.id, (answer.usage.prompt_tokens, answer.usage.completion_tokens))
    elif kind == "stream_usage":
        usage, response_id = None, None
        async for chunk in await client.chat.completions.create(model=model, messages=messages, stream=True,
                                                                stream_options={"include_usage": True}):
            response_id, usage = chunk.id, chunk.usage or usage
        seen.add(kind, response_id, (usage.prompt_tokens, usage.completion_tokens))
    elif kind == "stream":
        words, response_id = 0, None
        async for chunk in await client.chat.completions.create(model=model, messages=messages, stream=True):
            response_id = chunk.id
            words += sum(1 for c in chunk.choices if c.delta.content)
        seen.add(kind, response_id, _hidden_usage(messages, words))
    elif kind == "stream_break":
        stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
        async for chunk in stream:
            seen.add(kind, chunk.id, None)
            break
        await stream.close()  # async streams are not closed by garbage collection in time: close, as callers should
    elif kind == "stream_close":
        stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
        seen.add(kind, (await stream.__anext__()).id, None)
        await stream.close()
    elif kind == "error":
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="error-500", messages=messages)
        seen.add(kind)
    elif kind == "cancelled":  # the upstream stalls (error-timeout); the caller gives up: the task is cancelled
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.chat.completions.create(model="error-timeout", messages=messages), 0.3)
        seen.add(kind)
    else:
        seen.embedded((await client.embeddings.create(model="text-embedding-3-small", input=f"text {i}")).usage.prompt_tokens)


def _assert_exact(telemetry: Any, ended: list[Any], seen: Seen, total: int) -> None:
    gc.collect()  # streams left by break end when collected
    spans = [s for s in telemetry.spans() if s.instrumentation_scope.name == "otel_llm"]
    assert sum(seen.calls.values()) == total
    # One span per call, each ended exactly once.
    assert len(spans) == len(ended) == total
    assert all(s.end_time is not None for s in spans)
    assert len({s.context.span_id for s in spans}) == total
    # Every answer a caller read is in its span, exactly.
    by_id = {s.attributes.get("gen_ai.response.id"): s for s in spans if s.attributes.get("gen_ai.response.id")}
    for response_id, usage in seen.answers.items():
        attributes = by_id[response_id].attributes
        recorded = (attributes.get("gen_ai.usage.input_tokens"), attributes.get("gen_ai.usage.output_tokens"))
        assert recorded == (usage if usage is not None else (None, None)), response_id
    # The metrics: one duration point per call, errors by type, token sums equal to the answers'.
    points = telemetry.collect()
    durations = points["gen_ai.client.operation.duration"]
    assert sum(p.count for p in durations) == total
    errors = Counter()
    for point in durations:
        if point.attributes.get("error.type"):
            errors[point.attributes["error.type"]] += point.count
    # A cancelled task is the caller stopping, not an error: marked on its span instead.
    assert errors == Counter({"InternalServerError": seen.calls["error"]})
    cancelled_spans = [s for s in spans if s.attributes.get("llm.call.cancelled")]
    assert not [s for s in cancelled_spans if s.attributes.get("error.type")]
    assert len(cancelled_spans) >= seen.calls["cancelled"]  # and every stream left early
    sums = Counter()
    for point in points["gen_ai.client.token.usage"]:
        sums[point.attributes["gen_ai.token.type"]] += point.sum
    assert sums == {"input": seen.total(0), "output": seen.total(1)}
    assert sum(call.input_tokens or 0 for call in ended) == seen.total(0)


def test_many_threads_exact_totals_and_every_span_ended(telemetry, instrument, upstream):
    recorder = instrument()
    ended: list[Any] = []
    recorder.add_listener(ended.append)  # list.append: atomic
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=30)
    threads, per_thread = 16, 21
    seen = Seen()
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for j in range(per_thread):
                _sync_call(client, SYNC_KINDS[(t + j) % len(SYNC_KINDS)], t * 1000 + j, seen)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not failures, failures
    assert set(seen.calls) == set(SYNC_KINDS)
    _assert_exact(telemetry, ended, seen, threads * per_thread)


async def test_many_asyncio_tasks_exact_totals_and_every_span_ended(telemetry, instrument, upstream):
    recorder = instrument()
    ended: list[Any] = []
    recorder.add_listener(ended.append)
    client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=30)
    tasks = 256
    seen = Seen()
    results = await asyncio.gather(
        *(_async_call(client, ASYNC_KINDS[i % len(ASYNC_KINDS)], i, seen) for i in range(tasks)),
        return_exceptions=True,
    )
    assert [r for r in results if r is not None] == []
    await client.close()
    assert set(seen.calls) == set(ASYNC_KINDS)
    _assert_exact(telemetry, ended, seen, tasks)


def test_recorder_from_many_threads_loses_no_update(telemetry):
    """The recorder alone, at full speed, from 32 threads: every token and call is counted once."""
    recorder = telemetry.recorder()
    threads, per_thread = 32, 500
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        for j in range(per_thread):
            call = recorder.start_call("chat", "openai", f"model-{j % 4}", server_address="llm.internal",
                                       server_port=8000, stream=bool(j % 2))
            if j % 2:
                for _ in range(3):
                    call.chunk()
            call.set_response(model=f"model-{j % 4}-2025", response_id=f"{t}-{j}", finish_reasons=["stop"])
            call.set_usage(t + 1, j)
            if j % 10 == 0:
                call.fail("Timeout")
            else:
                call.end()
            call.end()  # a second end changes nothing

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    total = threads * per_thread
    points = telemetry.collect()
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == total
    assert sum(p.count for p in points["gen_ai.client.operation.duration"] if p.attributes.get("error.type")) \
        == threads * (per_thread // 10)
    sums = Counter()
    for point in points["gen_ai.client.token.usage"]:
        sums[point.attributes["gen_ai.token.type"]] += point.sum
    assert sums["input"] == sum((t + 1) * per_thread for t in range(threads))
    assert sums["output"] == threads * sum(range(per_thread))
    assert sum(p.count for p in points["gen_ai.client.operation.time_to_first_chunk"]) == total // 2
    assert sum(p.count for p in points["gen_ai.client.operation.time_per_output_chunk"]) == total // 2 * 2
    assert len(telemetry.spans()) == total
