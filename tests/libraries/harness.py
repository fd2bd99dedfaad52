"""Run one library scenario twice, without and with otel-llm, and check that instrumentation is invisible
to the library and that its telemetry matches the server.

A scenario is a function (sync or ``async``) of an :class:`Endpoint` that makes its library calls against
the endpoint's URLs and returns what the library gave it (texts, chunks, usage, messages: anything
:func:`canonical` can turn into plain data). It builds its clients and models itself, so both runs
start from the same state.

What :meth:`Harness.compare` checks:

- the library's result is identical: the value returned or the exception raised, and the warnings
  issued (ids and timestamps the server makes up anew for every answer are replaced by placeholders
  numbered in order of appearance, so a reused id still has to be reused);
- the requests on the wire (as the recording proxy saw them) are identical, except the one documented
  change: a streamed chat completion whose caller did not choose ``stream_options.include_usage``
  gets ``include_usage: true`` added; a caller's explicit choice is left as it is;
- exactly one ended otel-llm span per inference request, with the token counts of the server's
  answer to that request (a stream the consumer did not read to its end reports no output tokens,
  and an OpenAI one no tokens at all: the usage comes at the end), failed (ERROR, ``error.type``)
  exactly when the server answered with an error, and metric totals that add up to the same counts
  and calls.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import decimal
import enum
import gc
import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from otel_llm import semconv as sc
from otel_llm.demo.upstream import UpstreamSimulator
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import ANTHROPIC_KEY, API_KEY, Telemetry
from tests.support.recording_proxy import Exchange, RecordingProxy

SERVER_MODES = ("separate-chunk", "last-choice-chunk")
INFERENCE_PATHS = ("/chat/completions", "/responses", "/embeddings", "/messages")
CANCELLED = "llm.call.cancelled"  # the span attribute a consumer's cancellation is recorded with

_ID = re.compile(
    r"\b(?:chatcmpl-|msg_|call_|toolu_|resp_|req_|fc_|lc_run--|run-|pyd_ai_)[0-9a-zA-Z_-]{8,}"
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
)
_TIME_KEYS = frozenset({"created", "created_at", "completed_at", "timestamp", "start_timestamp"})


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a scenario sends its calls: ``openai_url`` for OpenAI clients (with ``/v1``),
    ``anthropic_url`` for Anthropic clients."""

    openai_url: str
    anthropic_url: str
    server: str  # the stream-usage mode of the OpenAI-compatible server behind these URLs
    openai_key: str = API_KEY
    anthropic_key: str = ANTHROPIC_KEY


@dataclasses.dataclass
class Wire:
    sim: UpstreamSimulator
    proxies: dict[str, RecordingProxy]  # by server mode
    # One event loop for all async scenarios of a module, as an application has one: libraries cache
    # async HTTP clients (LangChain per base URL), whose connections belong to the loop they were made in.
    loop: asyncio.AbstractEventLoop = dataclasses.field(default_factory=asyncio.new_event_loop)

    def endpoint(self, server: str = "separate-chunk") -> Endpoint:
        url = self.proxies[server].url
        return Endpoint(url + "/v1", url, server)


@dataclasses.dataclass(repr=False)
class Run:
    outcome: Any  # canonical ("returned", value) or ("raised", exception type, message)
    warnings: list[tuple[str, str]]
    exchanges: list[Exchange]
    telemetry: Telemetry | None = None
    _spans: list[Any] | None = None

    def __repr__(self) -> str:
        kind = "instrumented" if self.telemetry else "plain"
        return f"<{kind} run: {len(self.exchanges)} requests, {len(self.warnings)} warnings>"

    @property
    def calls(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.endswith(INFERENCE_PATHS)]

    def spans(self) -> list[Any]:
        """otel-llm's spans (the run is over and collected: they are all finished)."""
        assert self.telemetry is not None
        if self._spans is None:
            self._spans = [s for s in self.telemetry.span_exporter.get_finished_spans()
                           if s.instrumentation_scope.name == sc.INSTRUMENTATION_SCOPE]
        return self._spans


def covers(point: int, why: str) -> Any:
    """Marks a test that failed before point ``point`` of issue 9 was fixed, and why (``-m issue9``)."""
    return pytest.mark.issue9(point, why)


class _Ids:
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, match: re.Match[str]) -> str:
        return self.seen.setdefault(match.group(0), f"<id{len(self.seen) + 1}>")


def canonical(value: Any, ids: _Ids | None = None, key: str | None = None, depth: int = 0) -> Any:
    """Plain, comparable data: pydantic models and dataclasses as dicts, made-up ids as numbered
    placeholders, timestamps as ``<time>``."""
    ids = ids or _Ids()
    if depth > 40:
        return "<deep>"
    if key in _TIME_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return "<time>"
    if isinstance(value, (datetime.datetime, datetime.date, datetime.timedelta)):
        return "<time>"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _ID.sub(ids, value)
    if isinstance(value, bytes):
        return canonical(value.decode(errors="replace"), ids)
    if isinstance(value, (decimal.Decimal, enum.Enum)):
        return repr(value)
    if isinstance(value, BaseException):
        return ("raised", f"{type(value).__module__}.{type(value).__qualname__}", canonical(str(value), ids))
    if isinstance(value, dict):
        return {canonical(k, ids): canonical(v, ids, k if isinstance(k, str) else None, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v, ids, None, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(repr(canonical(v, ids, None, depth + 1)) for v in value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return {"__type__": type(value).__qualname__,
                **canonical(dump(), ids, None, depth + 1)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__qualname__,
                **{f.name: canonical(getattr(value, f.name), ids, f.name, depth + 1)
                   for f in dataclasses.fields(value) if f.repr}}
    raise TypeError(f"canonical: don't know how to compare a {type(value).__qualname__}; return plain data")


def documented_change(body: Any, path: str) -> Any:
    """The request body otel-llm sends for a caller's ``body``: the README's one change."""
    if not (isinstance(body, dict) and path.endswith("/chat/completions") and body.get("stream") is True):
        return body
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return body  # the caller chose: left as it is
    changed = copy.deepcopy(body)
    changed["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return changed


def expected_tokens(exchange: Exchange, consumed: bool) -> tuple[int | None, int | None]:
    """The (input, output) tokens the span of this request must carry: the server's counts, except for
    a stream the consumer left before its end (its usage was never seen; Anthropic's ``message_start``
    gives the final input count, its output count is a placeholder)."""
    tokens_in, tokens_out = exchange.usage()
    if exchange.streamed and not consumed:
        return (tokens_in, None) if exchange.path.endswith("/messages") else (None, None)
    return tokens_in, tokens_out


class Harness:
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def run(self, scenario: Callable[[Endpoint], Any], server: str = "separate-chunk", *,
            instrumented: bool) -> Run:
        proxy = self.wire.proxies[server]
        endpoint = self.wire.endpoint(server)
        proxy.reset()
        telemetry = Telemetry() if instrumented else None
        instrumentors = (OpenAIInstrumentor(), AnthropicInstrumentor())
        if telemetry is not None:
            recorder = telemetry.recorder()
            for instrumentor in instrumentors:
                instrumentor.instrument(recorder=recorder)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result = scenario(endpoint)
                    if inspect.isawaitable(result):
                        result = self.wire.loop.run_until_complete(result)
                    outcome = ("returned", result)
                except Exception as exc:  # the library's exception is part of its result
                    outcome = exc
                ids = _Ids()
                outcome = canonical(outcome, ids)
                self._settle()
            issued = [(w.category.__name__, canonical(str(w.message), ids)) for w in caught]
        finally:
            if telemetry is not None:
                for instrumentor in instrumentors:
                    instrumentor.uninstrument()
        return Run(outcome, issued, proxy.exchanges(), telemetry)

    def _settle(self) -> None:
        """What a running application would do next: collect abandoned streams, and let the event loop
        run the clean-ups that left async generators and cancelled tasks scheduled on it."""
        gc.collect()
        loop = self.wire.loop
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0.01))
            gc.collect()

    def compare(self, scenario: Callable[[Endpoint], Any], server: str = "separate-chunk", *,
                consumed: bool | None = True, cancelled: bool = False, warm_up: bool = False) -> tuple[Run, Run]:
        """Both runs, and every check of the module docstring. ``consumed=False``: the scenario leaves
        its streams before their end; ``None``: the library decides, depending on timing, whether it
        still reads them to the end (the counts must then be either the final or the left-early ones);
        ``cancelled``: the scenario cancels the task that reads them. ``warm_up``
        runs the scenario once before, uncompared, for libraries that import modules (and warn) lazily
        on their first call of a kind."""
        # What earlier tests left behind must not warn during these runs; then the survivors go to the
        # permanent generation, so that the collections after each run (which finish abandoned streams)
        # need not scan the libraries' large module graphs again (unfrozen when the module's wire goes).
        gc.collect()
        gc.freeze()
        if warm_up:
            self.run(scenario, server, instrumented=False)
        plain = self.run(scenario, server, instrumented=False)
        instrumented = self.run(scenario, server, instrumented=True)
        assert plain.calls, "the scenario made no call"
        assert_same_result(plain, instrumented)
        assert_same_requests(plain, instrumented)
        counts = assert_one_span_per_call(instrumented, consumed)
        assert_metric_totals(instrumented, counts)
        if cancelled:
            assert_cancelled_not_failed(instrumented)
        return plain, instrumented


def assert_same_result(plain: Run, instrumented: Run) -> None:
    assert instrumented.outcome == plain.outcome, "the library's result changed under instrumentation"
    assert instrumented.warnings == plain.warnings, "the warnings changed under instrumentation"


def assert_same_requests(plain: Run, instrumented: Run) -> None:
    """Request by request; as a multiset, since concurrent calls (``asyncio.gather``) arrive in any order."""
    def key(item: tuple[str, str, Any]) -> str:
        return repr(item)

    expected = sorted(((e.method, e.path, canonical(documented_change(e.body, e.path))) for e in plain.exchanges),
                      key=key)
    sent = sorted(((e.method, e.path, canonical(e.body)) for e in instrumented.exchanges), key=key)
    assert sent == expected, "the requests on the wire changed beyond the documented stream_options"


def assert_one_span_per_call(run: Run, consumed: bool | None) -> list[tuple[int | None, int | None]]:
    """Returns each call's (input, output) tokens, as checked."""
    spans = run.spans()
    calls = run.calls
    assert len(spans) == len(calls), f"{len(spans)} otel-llm spans for {len(calls)} calls"
    assert len({s.context.span_id for s in spans}) == len(spans)
    assert all(s.end_time is not None for s in spans)
    counts = []
    for exchange, span in _pair(calls, spans, consumed):
        allowed = [expected_tokens(exchange, c) for c in ((True, False) if consumed is None else (consumed,))]
        got = (span.attributes.get(sc.USAGE_INPUT_TOKENS), span.attributes.get(sc.USAGE_OUTPUT_TOKENS))
        assert got in allowed, f"span tokens {got} != server's {' or '.join(map(str, allowed))} ({exchange.path})"
        counts.append(got)
        if exchange.failed:  # the provider failed: the call failed
            assert span.status.status_code == StatusCode.ERROR and span.attributes.get(sc.ERROR_TYPE), (
                f"a failed answer's ({exchange.status}) span: {span.status.status_code}, no error.type")
        else:  # answered (and perhaps left or cancelled by the consumer): not a failure
            assert span.status.status_code != StatusCode.ERROR and sc.ERROR_TYPE not in span.attributes, (
                f"an answer's span failed: {span.attributes.get(sc.ERROR_TYPE)}")
    return counts


def _pair(calls: list[Exchange], spans: list[Any], consumed: bool | None) -> list[tuple[Exchange, Any]]:
    """Each call with its span, by the response id the server answered with. A stream left before its
    end may not have told the span its id (the Responses API repeats it only in its last event): those
    calls take the spans without one, in order."""
    by_id = {s.attributes.get(sc.RESPONSE_ID): s for s in spans if s.attributes.get(sc.RESPONSE_ID)}
    anonymous = [s for s in sorted(spans, key=lambda s: s.start_time) if not s.attributes.get(sc.RESPONSE_ID)]
    pairs = []
    for exchange in calls:
        response_id = exchange.response_id()
        if response_id in by_id:
            pairs.append((exchange, by_id[response_id]))
            continue
        assert response_id is None or (exchange.streamed and consumed is not True), (
            f"no span for {exchange.path} answered with {response_id}")
        assert anonymous, f"no span for {exchange.path}"
        pairs.append((exchange, anonymous.pop(0)))
    return pairs


def _histogram_totals(run: Run, name: str, key: str | None = None) -> dict[Any, tuple[int, float]]:
    totals: dict[Any, tuple[int, float]] = {}
    for point in run.telemetry.points(name):
        group = point.attributes.get(key) if key else None
        count, total = totals.get(group, (0, 0))
        totals[group] = (count + point.count, total + point.sum)
    return totals


def assert_metric_totals(run: Run, expected: list[tuple[int | None, int | None]]) -> None:
    """The metrics add up to the calls and to their tokens (as the spans carry them, checked before)."""
    durations = _histogram_totals(run, sc.METRIC_OPERATION_DURATION[0])
    assert sum(count for count, _ in durations.values()) == len(run.calls), "operation.duration count != calls"
    by_type = _histogram_totals(run, sc.METRIC_TOKEN_USAGE[0], sc.TOKEN_TYPE)
    for token_type, index in ((sc.TOKEN_TYPE_INPUT, 0), (sc.TOKEN_TYPE_OUTPUT, 1)):
        values = [counts[index] for counts in expected if counts[index] is not None]
        assert by_type.get(token_type, (0, 0)) == (len(values), sum(values)), f"{token_type} token totals"


def assert_cancelled_not_failed(run: Run) -> None:
    """A consumer's cancellation is not a failed call: no ERROR status, no error.type, but it is said."""
    spans = [span for exchange, span in _pair(run.calls, run.spans(), False) if exchange.streamed]
    assert spans, "no span for the cancelled stream"
    for span in spans:
        assert span.status.status_code == StatusCode.UNSET, f"cancelled stream's span: {span.status}"
        assert sc.ERROR_TYPE not in span.attributes
        assert span.attributes.get(CANCELLED) is True
    errors = [p for p in run.telemetry.points(sc.METRIC_OPERATION_DURATION[0]) if sc.ERROR_TYPE in p.attributes]
    assert not errors, "a cancelled call counted as an error in the duration metric"
