"""``/dashboard`` in a real headless Chromium (Debian ``chromium``): the page fetches the summary and
draws tiles, charts and tables; a screenshot goes to ``artifacts/dashboard.png`` (git-ignored)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from otel_llm.exposition import AccessControl, serve
from tests.test_exposition import KEYS, TOKEN, Pipeline

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
HOSTILE_MODEL = '<img src=x onerror="document.title=1">'


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    (pytest.fail if os.environ.get("CI") else pytest.skip)(
        "chromium not installed (apt-get install chromium); .ci/run installs it")
    raise AssertionError  # unreachable


def run_chromium(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="otel-llm-chromium-") as profile:
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
             "--window-size=1400,1500", "--virtual-time-budget=4000", *args, url],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def live():
    """A pipeline with history: calls in steps of 5 s on the injected clock, one summary per step."""
    p = Pipeline.create(service="checkout-api")
    app = p.app(access=AccessControl(token=TOKEN), history_step=5, rate_window=30, refresh_seconds=1)
    pool = p.gateway.key_pool("openai-prod", KEYS)
    p.gateway.breaker_state("openai", "closed")
    p.gateway.breaker_state("anthropic", "closed")
    for step in range(12):
        p.clock.t += 5
        p.calls(8 + step % 4, usage=(400, 120), headers={"x-ratelimit-remaining-requests": str(9000 - step * 10),
                                                         "x-ratelimit-remaining-tokens": str(800_000 - step * 5000)})
        p.calls(4, "anthropic", "claude-sonnet-4-5", usage=(900, 300), stream=True)
        p.calls(1 if step % 3 else 3, error="InternalServerError")
        if step == 6:
            p.gateway.breaker_state("anthropic", "open")
            pool.mark_invalid(KEYS[1])
        app.summary()
    p.calls(1, model=HOSTILE_MODEL, usage=(1, 1))
    with serve(port=0, app=app) as server:
        yield server


def test_dashboard_renders_live_data_in_chromium(live):
    dom = run_chromium(f"{live.url}/dashboard#token={TOKEN}", "--dump-dom")
    assert 'data-loaded="true"' in dom, dom[-3000:]
    visible = re.sub(r"<script>.*?</script>", "", dom, flags=re.S)
    for label in ("Requests / s", "Error rate", "Latency p50 / p95", "Time to first token", "Tokens / min", "Cost",
                  "In flight", "Anomalies"):
        assert f'<div class="label">{label}</div>' in visible
    requests = re.search(r'<div class="label">Requests / s</div><div class="value">([^<]+)</div>', visible).group(1)
    assert float(requests) > 0
    status = re.search(r'<span id="status" class="badge (\w+)" title="([^"]*)">', visible)
    assert "service checkout-api" in visible and status.groups() == (
        "degraded", "error rate 0.1093 &gt;= degraded threshold 0.05"), status.groups()  # 20 of 183 calls failed
    assert visible.count("<polyline") >= 6  # rate, errors, p50, p95, TTFT p95, tokens, cost
    for cell in ("openai", "anthropic", "claude-sonnet-4-5", "gpt-4o-mini", "openai-prod"):
        assert f"<td>{cell}</td>" in visible
    assert '<span class="state-open">open</span>' in visible and '<span class="state-closed">closed</span>' in visible
    assert re.search(r'class="bar"><i style="width:\d+%;background:[^"]+"></i></span>0\.\d\d', visible)
    assert "<td class=\"num\">8.9k</td>" in visible and "745.0k" in visible  # rate-limit remaining, compact
    assert "&lt;img src=x" in visible and "<img" not in visible  # a model name is text, never markup
    for key in KEYS:
        assert key not in dom
    assert live.app.gateway.key_id(KEYS[1]) in visible


def test_dashboard_without_the_token_says_why(live):
    dom = run_chromium(f"{live.url}/dashboard", "--dump-dom")
    assert "cannot load the summary: summary: HTTP 401" in dom
    assert 'data-loaded="true"' not in dom


def test_dashboard_screenshot(live):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    run_chromium(f"{live.url}/dashboard#token={TOKEN}", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 1500) and len(data) > 50_000  # a blank page compresses to a few KB
