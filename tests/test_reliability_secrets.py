"""No secrets anywhere: every exported signal and every log line of a run that does everything.

One run, in one process, with every Python logger at DEBUG (the openai, anthropic, httpx, grpc and
OpenTelemetry loggers included), their records at INFO and above also exported as OTLP log records
(the default level of the log handler):

* calls of every kind through both SDKs (plain, streamed, async, embeddings, Responses API), and
  every failure the upstream simulator can produce;
* a provider that echoes the API key in its error message (as OpenAI does, masked, on a 401), and
  a proxy that echoes the whole Authorization header;
* ``otel-llm traffic`` and ``otel-llm check`` (canary included) with the key in the environment;
* export by OTLP (traces, metrics, logs) and a Prometheus endpoint.

Then the scan: the full protobuf text and bytes of every OTLP request and their headers, the
Prometheus exposition, every log record (message, arguments, exception text), and the commands'
output must hold no API key (nor a recognisable part of one) and no bearer token, DEBUG records
included; and, with content capture off, no message text (the SDKs' own DEBUG records aside: the
anthropic SDK logs its request options there). With content capture on, the same scan finds the
message text: the scan is able to see it. With DEBUG records exported by OTLP too, the LLM SDKs'
and HTTP clients' records stay out of the export (otel_llm.logs), so no prompt leaves that way.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import traceback
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import openai._base_client as openai_base_client
import pytest

from otel_llm.check import CheckOptions, run_check
from otel_llm.sdk import configure
from otel_llm.traffic import TrafficOptions, run_traffic
from tests.conftest import ANTHROPIC_KEY, API_KEY

pytestmark = pytest.mark.slow
http = sys.modules["httpx2"] if "httpx2" in vars(openai_base_client) else sys.modules["httpx"]

PROMPT = "PROMPT-MARKER-7f3a the quarterly numbers are confidential"
ANSWER = "RESPONSE-MARKER-91b2 here are the confidential numbers"
# What must never appear: the keys, recognisable parts of them, and what carries them.
SECRETS = (API_KEY, ANTHROPIC_KEY, API_KEY[3:], API_KEY[-16:], ANTHROPIC_KEY[7:], ANTHROPIC_KEY[-14:])
CARRIERS = ("bearer sk-", "authorization:", "x-api-key:")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name} {record.levelname} {record.getMessage()} args={record.args!r}"
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is still scanned raw
            text = f"{record.name} {record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.lines.append((record.levelno, text))


@dataclass
class Run:
    texts: dict[str, str] = field(default_factory=dict)  # where -> everything found there
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def corpus(self) -> str:
        return "\n".join(self.texts.values())


def _echoing_provider(request: Any) -> Any:
    """401 with the key echoed masked (OpenAI's wording), 400 echoing the whole header (a careless
    proxy), else a chat completion whose text is ANSWER."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    model = json.loads(request.content).get("model")
    if model == "echo-401":
        body = {"error": {"message": f"Incorrect API key provided: {key[:8]}{'*' * 16}{key[-6:]}. You can find your "
                                     f"API key at https://platform.openai.com/account/api-keys.",
                          "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
        return http.Response(401, json=body)
    if model == "echo-header":
        body = {"error": {"message": f"bad header Authorization: {request.headers.get('authorization')}", "type": "proxy"}}
        return http.Response(400, json=body)
    return http.Response(200, json={
        "id": "chatcmpl-echo", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
    })


def _workload(upstream: Any) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    client = openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=1.5)
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    for _chunk in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
        pass
    client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
    client.responses.create(model="gpt-4o-mini", input=PROMPT)
    for _event in client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True):
        pass
    for model in ("error-500", "error-429", "error-400", "bad-model", "error-timeout", "error-malformed",
                  "error-disconnect"):
        with pytest.raises(Exception):
            client.chat.completions.create(model=model, messages=messages)
    with pytest.raises(Exception):
        for _chunk in client.chat.completions.create(model="error-midstream", messages=messages, stream=True):
            pass

    async def in_async() -> None:
        async_client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=5)
        await async_client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        async for _chunk in await async_client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
            pass
        await async_client.close()

    asyncio.run(in_async())
    claude = anthropic.Anthropic(base_url=upstream.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=5)
    claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=messages)
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=messages) as stream:
        stream.until_done()
    for model in ("error-529", "bad-model"):
        with pytest.raises(anthropic.APIStatusError):
            claude.messages.create(model=model, max_tokens=50, messages=messages)
    echo = openai.OpenAI(base_url="http://provider.test/v1", api_key=API_KEY, max_retries=0,
                         http_client=http.Client(transport=http.MockTransport(_echoing_provider)))
    echo.chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.AuthenticationError) as caught:
        echo.chat.completions.create(model="echo-401", messages=messages)
    assert API_KEY[-6:] in str(caught.value)  # the provider did echo it: the caller sees it, telemetry must not
    with pytest.raises(openai.BadRequestError) as caught:
        echo.chat.completions.create(model="echo-header", messages=messages)
    assert API_KEY in str(caught.value)


def _run_everything(mode: str, upstream: Any, receiver: Any, monkeypatch: Any, export_level: str = "info") -> Run:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)
    monkeypatch.setenv("OTEL_PYTHON_LOG_HANDLER_LEVEL", export_level)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    collect = Collect()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    run = Run()
    try:
        telemetry = configure("secrets-run", traces_exporter="otlp", metrics_exporter="otlp,prometheus",
                              logs_exporter="otlp", otlp_endpoint=receiver.grpc_endpoint, otlp_protocol="grpc",
                              prometheus_host="127.0.0.1", prometheus_port=0, set_global=False)
        telemetry.logs.attach()  # the root logger: every record of the run is also exported
        try:
            _workload(upstream)
            with urllib.request.urlopen(telemetry.prometheus_url, timeout=5) as response:
                run.texts["prometheus exposition"] = response.read().decode()
        finally:
            telemetry.shutdown()
        out, err = io.StringIO(), io.StringIO()
        run_traffic(TrafficOptions(base_url=upstream.base_url, count=6, rate=100, error_share=0.5,
                                   error_kinds=("bad-model",), seed=1, otlp_endpoint=receiver.http_endpoint,
                                   otlp_protocol="http/protobuf", progress=False), out, err)
        run.texts["otel-llm traffic"] = out.getvalue() + err.getvalue()
        out = io.StringIO()
        run_check(CheckOptions(base_url=upstream.base_url, otlp_endpoint=receiver.grpc_endpoint,
                               tempo_url=f"http://127.0.0.1:{_closed_port()}", wait=0, timeout=2), out)
        run.texts["otel-llm check"] = out.getvalue()
    finally:
        root.removeHandler(collect)
        root.setLevel(previous_level)
    run.texts["log lines, INFO and above"] = "\n".join(text for level, text in collect.lines if level >= logging.INFO)
    run.texts["log lines, DEBUG"] = "\n".join(text for level, text in collect.lines if level < logging.INFO)
    run.texts["otlp requests"] = "\n".join(str(request.message) for request in receiver.requests)
    run.texts["otlp bytes"] = "\n".join(request.message.SerializeToString().decode("latin-1")
                                        for request in receiver.requests)
    run.texts["otlp headers"] = "\n".join(json.dumps(headers) for headers in receiver.headers)
    run.spans = receiver.spans()
    run.logs = receiver.logs()
    assert len(collect.lines) > 100  # the DEBUG loggers of the SDKs and exporters did talk
    return run


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _findings(run: Run, needles: tuple[str, ...], *, case_insensitive: bool = False,
              skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for where, text in run.texts.items():
        if where in skip:
            continue
        haystack = text.lower() if case_insensitive else text
        for needle in needles:
            index = haystack.find(needle.lower() if case_insensitive else needle)
            if index >= 0:
                found.append(f"{where}: {needle!r} in ...{text[max(0, index - 80):index + 80]!r}...")
    return found


def test_no_key_no_token_no_content_anywhere(upstream, otlp_receiver, monkeypatch):
    run = _run_everything("NO_CONTENT", upstream, otlp_receiver, monkeypatch)
    llm_spans = [s for s in run.spans if s["scope"] == "otel_llm"]
    assert len(llm_spans) >= 25 and run.logs  # the run produced what is scanned
    assert any("Incorrect API key provided: [REDACTED]" in s["status_message"] for s in llm_spans)
    assert any(s["status_message"] == "Error code: 400 - bad header [REDACTED] [REDACTED]" for s in llm_spans)
    assert _findings(run, SECRETS) == []  # DEBUG log lines of every library included
    assert _findings(run, CARRIERS, case_insensitive=True) == []
    # The SDKs' own DEBUG lines may hold request bodies (anthropic logs its request options): an app that
    # turns DEBUG on sees its prompts in its own log; what otel-llm exports and logs holds none.
    assert _findings(run, ("PROMPT-MARKER-7f3a", "RESPONSE-MARKER-91b2"), skip=("log lines, DEBUG",)) == []


def test_with_content_on_the_scan_sees_the_text_and_still_no_key(upstream, otlp_receiver, monkeypatch):
    run = _run_everything("SPAN_AND_EVENT", upstream, otlp_receiver, monkeypatch)
    assert _findings(run, ("PROMPT-MARKER-7f3a",)) and _findings(run, ("RESPONSE-MARKER-91b2",))
    assert _findings(run, SECRETS) == []
    assert _findings(run, CARRIERS, case_insensitive=True) == []


def test_debug_log_export_carries_no_message_text(upstream, otlp_receiver, monkeypatch):
    """OTEL_PYTHON_LOG_HANDLER_LEVEL=debug: the anthropic SDK's DEBUG record of its request options (the
    prompt) is logged locally, never exported."""
    run = _run_everything("NO_CONTENT", upstream, otlp_receiver, monkeypatch, export_level="debug")
    assert _findings(run, SECRETS) == []
    assert [f for f in _findings(run, ("PROMPT-MARKER-7f3a",)) if f.startswith("otlp")] == []
    assert _findings(run, ("PROMPT-MARKER-7f3a",)), "the local DEBUG lines do hold it: the scan can see it"
