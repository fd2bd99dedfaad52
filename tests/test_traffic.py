"""`otel-llm traffic`: LLM calls through the instrumented openai SDK, counted exactly, telemetry delivered.

The in-process upstream simulator answers deterministically, and a seeded workload plans the same
calls on every run, so the summary's numbers are asserted exactly against a replay of the plan
and against the telemetry a real OTLP receiver got.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from otel_llm.cli import main
from otel_llm.demo.workload import DEFAULT_MODELS, OVERSIZE, PORTABLE_ERRORS, Workload
from otel_llm.traffic import TrafficOptions, display_url, run_traffic
from tests.conftest import API_KEY
from tests.support.faults import free_port

pytestmark = pytest.mark.slow




def _plan(count: int, seed: int, error_share: float, stream_share: float = 0.3, models=DEFAULT_MODELS) -> list:
    """The calls `otel-llm traffic` plans for these options (the same Workload, replayed)."""
    workload = Workload(models=models, stream_share=stream_share, embeddings_share=0.0, responses_share=0.0,
                        error_share=error_share, error_kinds=PORTABLE_ERRORS, seed=seed, rotate_models=True)
    return [workload.next_call() for _ in range(count)]


def _llm_spans(receiver) -> list[dict]:
    return [s for s in receiver.spans() if s["scope"] == "otel_llm"]


def test_default_upstream_counts_exactly_and_telemetry_matches(otlp_receiver, capsys):
    count, seed = 40, 5
    plan = _plan(count, seed, error_share=0.25)
    deliberate = [call for call in plan if call.error]
    assert {call.error for call in deliberate} == {"bad-model", OVERSIZE}  # the seed exercises both kinds

    code = main(["traffic", "--count", str(count), "--rate", "400", "--concurrency", "8", "--seed", str(seed),
                 "--error-share", "0.25", "--otlp-endpoint", otlp_receiver.http_endpoint,
                 "--otlp-protocol", "http/protobuf", "--json", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)

    assert summary["sent"] == count
    assert summary["deliberate_errors"] == len(deliberate)
    assert summary["failed"] == len(deliberate) and summary["unexpected_failures"] == 0
    assert summary["errors"] == {"BadRequestError": len(deliberate)}  # model_not_found and context_length_exceeded
    assert summary["succeeded"] == count - len(deliberate)
    assert summary["streams"] == sum(call.kind == "stream" for call in plan)
    assert summary["recorded_calls"] == count
    assert summary["p50_ms"] is not None and summary["p95_ms"] >= summary["p50_ms"]
    assert summary["telemetry"]["spans_exported"] == count
    assert set(summary["telemetry"]["spans_dropped"].values()) == {0}

    # Every call is one span at the receiver; the summary's tokens are exactly the spans' tokens.
    spans = _llm_spans(otlp_receiver)
    assert len(spans) == count
    assert Counter(s["attributes"].get("error.type") for s in spans) == Counter(
        {None: count - len(deliberate), "BadRequestError": len(deliberate)})
    assert summary["input_tokens"] == sum(s["attributes"].get("gen_ai.usage.input_tokens", 0) for s in spans) > 0
    assert summary["output_tokens"] == sum(s["attributes"].get("gen_ai.usage.output_tokens", 0) for s in spans) > 0
    # Models rotate in turn; the deliberate bad model replaces the model of its turn.
    assert Counter(s["attributes"]["gen_ai.request.model"] for s in spans) == Counter(call.model for call in plan)
    assert sum(bool(s["attributes"].get("gen_ai.request.stream")) for s in spans) == summary["streams"]
    # The metrics agree: one duration point per call, token sums equal.
    points = otlp_receiver.metrics()
    last = {}
    for point in points:  # cumulative: the last export of each series holds the totals
        last[(point["name"], tuple(sorted(point["attributes"].items())))] = point
    durations = [p for (name, _), p in last.items() if name == "gen_ai.client.operation.duration"]
    assert sum(p["count"] for p in durations) == count
    token_sums = Counter()
    for (name, _), point in last.items():
        if name == "gen_ai.client.token.usage":
            token_sums[point["attributes"]["gen_ai.token.type"]] += point["sum"]
    assert token_sums == {"input": summary["input_tokens"], "output": summary["output_tokens"]}
    assert "otel-llm traffic" in captured.err  # the header goes to stderr with --json


def test_base_url_key_from_env_is_used_and_never_printed(upstream, monkeypatch, capsys):
    monkeypatch.setenv("MY_LLM_KEY", API_KEY)
    code = main(["traffic", "--base-url", upstream.base_url, "--api-key-env", "MY_LLM_KEY", "--count", "6",
                 "--rate", "200", "--error-share", "0", "--stream-share", "0.5", "--models", "gpt-4o,o3-mini",
                 "--seed", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "sent      6 calls" in captured.out
    assert "failed    0 (0 on purpose, 0 unexpected): none" in captured.out
    assert f"target      {upstream.base_url}" in captured.out
    assert "models      gpt-4o, o3-mini" in captured.out
    assert API_KEY not in captured.out + captured.err
    assert "MY_LLM_KEY" not in captured.out  # not even the variable's name is needed in the output


def test_missing_key_for_a_base_url_is_a_usage_error(upstream, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    code = main(["traffic", "--base-url", upstream.base_url, "--api-key-env", "NO_SUCH_KEY_VAR", "--count", "1"])
    assert code == 2
    assert "set NO_SUCH_KEY_VAR" in capsys.readouterr().err


def test_nothing_got_through_exits_1_and_says_why(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["traffic", "--base-url", dead, "--count", "3", "--rate", "100", "--error-share", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "failed    3 (0 on purpose, 3 unexpected): APIConnectionError 3" in captured.out
    assert "error: no call got through (APIConnectionError 3)" in captured.err
    assert API_KEY not in captured.out + captured.err


def test_only_deliberate_errors_is_nothing_through(capsys):
    code = main(["traffic", "--count", "4", "--rate", "100", "--error-share", "1", "--errors", "bad-model",
                 "--json", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["failed"] == summary["deliberate_errors"] == 4 and summary["succeeded"] == 0


def test_duration_mode_progress_bar_and_collector_down(monkeypatch):
    # The collector is down: the calls are unaffected, and the summary says the spans were lost.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # the exporters give up after 1 s, not 10
    out, err = io.StringIO(), io.StringIO()
    options = TrafficOptions(duration=1.0, rate=20, concurrency=2, error_share=0.0, seed=9, progress=True,
                             otlp_endpoint=f"http://127.0.0.1:{free_port()}", otlp_protocol="http/protobuf")
    code = run_traffic(options, out, err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    sent = int(text.split("sent      ")[1].split(" calls")[0])
    # 20 calls/s for 1 s: the slots are at 0, 0.05, ..., 0.95 s (one more may start at the deadline)
    assert 1 <= sent <= 21
    assert "failed    0 (0 on purpose, 0 unexpected)" in text
    assert "spans     0 exported" in text and f"export_failed {sent}" in text
    assert "is the collector up and listening there?" in text
    bar = err.getvalue()
    assert "\r[" in bar and "calls" in bar and bar.endswith("\n")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--errors", "gpu-fire"], "unknown error kind gpu-fire"),
        (["--rate", "0"], "must be > 0"),
        (["--count", "0"], "must be >= 1"),
        (["--stream-share", "1.5"], "between 0 and 1"),
        (["--models", " , "], "at least one name"),
    ],
)
def test_bad_arguments_say_what_to_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["traffic", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_urls_are_shown_without_credentials():
    assert display_url("https://user:s3cret@llm.example:8443/v1?api-key=abc") == "https://llm.example:8443/v1"
    assert display_url("http://127.0.0.1:4317") == "http://127.0.0.1:4317"
