"""`otel-llm demo` end to end: upstream, instrumented SDK, traffic, Prometheus endpoint, OTLP push."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from otel_llm.cli import main
from tests.support.faults import free_port

pytestmark = pytest.mark.slow




def test_demo_runs_the_whole_path(prometheus_factory, otlp_receiver):
    port = free_port()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "otel_llm.cli", "demo", "--fast", "--duration", "14", "--rate", "20",
         "--metrics-port", str(port), "--interval", "1", "--seed", "3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        prometheus = prometheus_factory([f"127.0.0.1:{port}"])
        tokens = prometheus.wait_for_series("sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum[1m]))")
        assert {r["metric"]["gen_ai_token_type"] for r in tokens} == {"input", "output"}
        p95 = prometheus.wait_for_series(
            "histogram_quantile(0.95, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[1m])))"
        )
        assert float(p95[0]["value"][1]) > 0
        models = prometheus.query("count by (gen_ai_request_model) (gen_ai_client_operation_duration_seconds_count)")
        assert {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"} <= {r["metric"]["gen_ai_request_model"] for r in models}
        assert prometheus.query("sum(llm_client_cost_total) > 0")
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/metrics" in stdout
    assert "req/s" in stdout and "tokens/min" in stdout
    assert "done:" in stdout
    # both sides of every call: the simulator served at least every call the client made
    calls = int(re.search(r"^done: (\d+) calls", stdout, re.M).group(1))
    served = re.search(r"^served: (\d+) requests \((\d+) streamed\)", stdout, re.M)
    assert served is not None, stdout
    assert int(served.group(1)) >= calls > 0 and int(served.group(2)) > 0
    assert re.search(r"^  served +\d+\.\d req/s  TTFT p50 +\d+ms", stdout, re.M), stdout
    spans = otlp_receiver.wait_for(lambda r: [s for s in r.spans() if s["scope"] == "otel_llm"] or None)
    assert {s["resource"]["service.name"] for s in spans} == {"otel-llm-demo"}
    operations = {s["attributes"]["gen_ai.operation.name"] for s in spans}
    assert operations == {"chat", "embeddings"}
    assert any(s["attributes"].get("gen_ai.request.stream") for s in spans)
    assert "sk-demo-not-a-real-key" not in otlp_receiver.dump()


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--rate", "-1"])
    assert exit_info.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_demo_reports_a_busy_metrics_port(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["demo", "--fast", "--duration", "1", "--metrics-port", str(busy.getsockname()[1])])
    assert code == 2
    assert "cannot serve Prometheus metrics" in capsys.readouterr().err
