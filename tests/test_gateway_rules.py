"""Token efficiency is a recording rule (docs/gateway.md), not a new metric: promtool accepts it
and a real Prometheus records output/input tokens from a scrape of the fallback endpoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from otel_llm.exposition import AccessControl, serve
from tests.test_exposition import Pipeline

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RECORD = "gen_ai:client_token_efficiency:ratio_rate5m"


def readme_rule() -> dict:
    text = (REPO / "docs" / "gateway.md").read_text()
    block = re.search(r"```yaml\n(# token efficiency.*?)```", text, re.S)
    assert block, "docs/gateway.md lost its token-efficiency rule"
    return yaml.safe_load(block.group(1))


def test_promtool_accepts_the_rule(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    path = tmp_path / "gateway-rules.yaml"
    path.write_text(yaml.safe_dump(readme_rule()))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS: 1 rules found" in result.stdout, result.stdout + result.stderr


def test_prometheus_records_token_efficiency(prometheus_factory):
    rules = readme_rule()
    assert [r["record"] for g in rules["groups"] for r in g["rules"]] == [RECORD]
    for group in rules["groups"]:
        group["interval"] = "1s"  # evaluate every second here (1m in docs/gateway.md)
    pipeline = Pipeline.create()
    stop = threading.Event()

    def traffic() -> None:  # 40 output tokens per 100 input tokens, steadily, so rate() moves
        while not stop.wait(0.1):
            pipeline.calls(2, usage=(100, 40))
            pipeline.calls(1, "anthropic", "claude-haiku-4-5", usage=(50, 100))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        with serve(port=0, app=pipeline.app(access=AccessControl())) as server:
            prometheus = prometheus_factory([f"127.0.0.1:{server.port}"], rule_files=[rules])
            result = prometheus.wait_for_series(f'{RECORD}{{gen_ai_provider_name="anthropic"}}', timeout=25)
            assert float(result[0]["value"][1]) == pytest.approx(2.0)
            assert prometheus.query_value(f'{RECORD}{{gen_ai_request_model="gpt-4o-mini"}}') == pytest.approx(0.4)
    finally:
        stop.set()
        thread.join(5)
