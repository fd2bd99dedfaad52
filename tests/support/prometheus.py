"""Run the real Prometheus binary against test scrape targets.

    with PrometheusServer(["127.0.0.1:9464"]) as prom:
        prom.wait_for_series('gen_ai_client_token_usage_count{job="test"}')

Notes:

* The config is written as JSON (valid YAML), so no YAML library is needed.
* Prometheus (2.42) throttles service-discovery updates to once per 5 s, so the
  first scrape happens ~5-6 s after start no matter how short ``scrape_interval``
  is. Start one server per test module where you can, and keep ``wait_for_*``
  timeouts >= 15 s.
* If the binary is missing the test is skipped (local dev only; CI installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest

from tests.support.faults import free_port

__all__ = ["PrometheusServer", "ScrapeJob", "PrometheusQueryError", "find_prometheus"]

DEFAULT_BINARY = "/usr/bin/prometheus"


class PrometheusQueryError(RuntimeError):
    """The Prometheus HTTP API answered with status "error" (e.g. a bad PromQL query)."""

    def __init__(self, error_type: str, error: str, query: str) -> None:
        super().__init__(f"{error_type}: {error} (query: {query!r})")
        self.error_type = error_type
        self.error = error


@dataclass
class ScrapeJob:
    """One scrape_config. ``targets`` are ``host:port`` strings."""

    targets: Sequence[str]
    job_name: str = "test"
    metrics_path: str = "/metrics"
    scheme: str = "http"
    # {"type": "Bearer", "credentials": "..."}; a plain string means a Bearer token.
    authorization: dict[str, str] | str | None = None
    basic_auth: dict[str, str] | None = None  # {"username": "...", "password": "..."}
    params: dict[str, list[str]] | None = None
    scrape_interval: str | float | None = None  # default: the server's scrape_interval
    extra: dict[str, Any] = field(default_factory=dict)  # any other scrape_config keys, verbatim

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "job_name": self.job_name,
            "metrics_path": self.metrics_path,
            "scheme": self.scheme,
            "static_configs": [{"targets": list(self.targets)}],
        }
        if isinstance(self.authorization, str):
            config["authorization"] = {"type": "Bearer", "credentials": self.authorization}
        elif self.authorization is not None:
            config["authorization"] = dict(self.authorization)
        if self.basic_auth is not None:
            config["basic_auth"] = dict(self.basic_auth)
        if self.params is not None:
            config["params"] = self.params
        if self.scrape_interval is not None:
            interval = _duration(self.scrape_interval)
            config["scrape_interval"] = interval
            config["scrape_timeout"] = interval  # must not exceed the interval
        config.update(self.extra)
        return config


def find_prometheus(binary: str | None = None) -> str | None:
    """Path of the prometheus binary (``binary``, else $PROMETHEUS_BIN, else PATH, else
    /usr/bin/prometheus), or None if that is not an executable."""
    candidate = binary or os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or DEFAULT_BINARY
    return candidate if os.access(candidate, os.X_OK) else None


class PrometheusServer:
    """A real ``prometheus`` process on 127.0.0.1:<free port> with a temporary TSDB.

    ``scrape_targets``: ``"host:port"`` strings (all put in one job named ``"test"``),
    ``ScrapeJob`` objects, or dicts of ``ScrapeJob`` fields.
    ``extra_flags``: e.g. ``["--enable-feature=exemplar-storage", "--web.enable-remote-write-receiver"]``.
    ``rule_files``: paths, or dicts (a rule file's content, e.g. ``{"groups": [...]}``) written for you.
    ``extra_config``: top-level config keys merged into the generated config (``remote_write``, ...).
    """

    def __init__(
        self,
        scrape_targets: Sequence[str | ScrapeJob | dict[str, Any]] = (),
        *,
        scrape_interval: str | float = 1.0,
        extra_flags: Sequence[str] = (),
        rule_files: Sequence[str | os.PathLike[str] | dict[str, Any]] = (),
        extra_config: dict[str, Any] | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.jobs = _jobs(scrape_targets)
        self.scrape_interval = _duration(scrape_interval)
        self.extra_flags = list(extra_flags)
        self.rule_files = list(rule_files)
        self.extra_config = dict(extra_config or {})
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.config: dict[str, Any] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._log_text = ""

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Prometheus is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = find_prometheus(self.binary)
        if binary is None:
            (pytest.fail if os.environ.get("CI") else pytest.skip)(
                f"prometheus binary not found ({self.binary or os.environ.get('PROMETHEUS_BIN') or DEFAULT_BINARY}): "
                "install it with `apt-get install prometheus` (or set PROMETHEUS_BIN); "
                ".ci/run installs it, so this skip only happens on a dev machine"
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="otel-llm-prometheus-"))
        self.config = self._write_config()
        last_error = ""
        for _attempt in range(3):  # retry if the free port got taken in between
            self.port = free_port()
            self._launch(binary)
            last_error = self._wait_ready()
            if not last_error:
                return self
            self._terminate()
            if "address already in use" not in last_error:
                break
        self.stop()
        raise RuntimeError(f"Prometheus did not become ready: {last_error}\n--- log ---\n{self._log_text[-5000:]}")

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        """Prometheus' own log output (stdout+stderr) so far."""
        if self._tmp is not None and (self._tmp / "prometheus.log").exists():
            self._log_text = (self._tmp / "prometheus.log").read_text(errors="replace")
        return self._log_text

    def _write_config(self) -> dict[str, Any]:
        assert self._tmp is not None
        rule_paths = []
        for index, rule in enumerate(self.rule_files):
            if isinstance(rule, dict):
                path = self._tmp / f"rules-{index}.yml"
                path.write_text(json.dumps(rule, indent=2))
                rule_paths.append(str(path))
            else:
                rule_paths.append(str(Path(rule).resolve()))
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [job.to_config() for job in self.jobs],
        }
        if rule_paths:
            config["rule_files"] = rule_paths
        config.update(self.extra_config)
        (self._tmp / "prometheus.yml").write_text(json.dumps(config, indent=2))
        return config

    def _launch(self, binary: str) -> None:
        assert self._tmp is not None
        command = [
            binary,
            f"--config.file={self._tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={self._tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_flags,
        ]
        with open(self._tmp / "prometheus.log", "wb") as log:  # a file, so a full pipe can never block it
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_ready(self) -> str:
        """'' when /-/ready answers 200, else a description of the failure."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"process exited with code {self._process.returncode}: {self.log()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return ""
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return f"/-/ready not 200 after {self.startup_timeout}s"

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log()

    # ------------------------------------------------------------------ HTTP API

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; returns ``data``; raises PrometheusQueryError on status "error"."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422/503 carry a JSON error body
            text = error.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                raise PrometheusQueryError(f"HTTP {error.code}", text, str(params.get("query", path))) from None
        if body.get("status") != "success":
            raise PrometheusQueryError(body.get("errorType", "?"), body.get("error", "?"), str(params.get("query", path)))
        return body["data"]

    def query(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        """Instant query. Returns the result list: ``[{"metric": {...}, "value": [ts, "1.5"]}, ...]``.

        Scalar/string results are wrapped as ``[{"metric": {}, "value": [ts, "..."]}]``.
        """
        data = self.api("query", query=promql, time=time)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_value(self, promql: str) -> float:
        """Instant query expected to return exactly one sample; returns it as float."""
        result = self.query(promql)
        if len(result) != 1:
            raise AssertionError(f"expected exactly one series for {promql!r}, got {result}")
        return float(result[0]["value"][1])

    def query_range(
        self, promql: str, start: float | None = None, end: float | None = None, step: str | float = "1s"
    ) -> list[dict[str, Any]]:
        """Range query. Returns ``[{"metric": {...}, "values": [[ts, "1.5"], ...]}, ...]``.

        Defaults: ``end`` = now, ``start`` = end - 5 minutes.
        """
        end = time.time() if end is None else end
        start = end - 300 if start is None else start
        return self.api("query_range", query=promql, start=start, end=end, step=step)["result"]

    def exemplars(self, promql: str, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
        """/api/v1/query_exemplars (needs ``--enable-feature=exemplar-storage``).

        Returns ``[{"seriesLabels": {...}, "exemplars": [{"labels": {"trace_id": ...}, "value": "1", "timestamp": 1.7e9}]}]``.
        Defaults: ``end`` = now, ``start`` = end - 5 minutes.
        """
        end = time.time() if end is None else end
        start = end - 300 if start is None else start
        return self.api("query_exemplars", query=promql, start=start, end=end)

    def targets(self, state: str = "active") -> list[dict[str, Any]]:
        """Scrape targets: dicts with ``labels`` (job, instance), ``scrapePool``, ``scrapeUrl``,
        ``health`` ("up" | "down" | "unknown"), ``lastError``, ``lastScrape``, ..."""
        data = self.api("targets", state=state)
        return data["activeTargets"] if state == "active" else data.get("droppedTargets", [])

    def targets_summary(self) -> str:
        try:
            targets = self.targets()
        except Exception as error:  # noqa: BLE001 - only used in failure messages
            return f"(cannot list targets: {error})"
        if not targets:
            return "  (no active targets yet -- Prometheus applies discovered targets ~5 s after start)"
        return "\n".join(
            f"  job={t['labels'].get('job')} {t['scrapeUrl']} health={t['health']} "
            f"lastError={t['lastError']!r} lastScrape={t['lastScrape']}"
            for t in targets
        )

    # ------------------------------------------------------------------ polling

    def wait_for_series(self, promql: str, timeout: float = 20.0, interval: float = 0.2) -> list[dict[str, Any]]:
        """Poll an instant query until it returns at least one sample; return the result.

        A syntactically bad query raises PrometheusQueryError at once. On timeout raises
        AssertionError with the last result and the health/lastError of every target.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.query(promql)
                if last:
                    return last
            except PrometheusQueryError as error:
                if error.error_type == "bad_data":
                    raise
                last = error
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        raise AssertionError(
            f"Prometheus: no sample for {promql!r} within {timeout}s; last result: {last!r}\n"
            f"targets:\n{self.targets_summary()}"
        )

    def wait_for_target(
        self, job: str, health: str = "up", timeout: float = 20.0, interval: float = 0.2
    ) -> dict[str, Any]:
        """Poll /api/v1/targets until a target of ``job`` has ``health`` ("up"/"down"); return it."""
        deadline = time.monotonic() + timeout
        while True:
            for target in self.targets():
                if target["labels"].get("job") == job and target["health"] == health:
                    return target
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        raise AssertionError(
            f"Prometheus: no target of job {job!r} with health {health!r} within {timeout}s\n"
            f"targets:\n{self.targets_summary()}"
        )


# ---------------------------------------------------------------------- helpers


def _jobs(scrape_targets: Sequence[str | ScrapeJob | dict[str, Any]]) -> list[ScrapeJob]:
    if isinstance(scrape_targets, str):
        scrape_targets = [scrape_targets]
    plain = [t for t in scrape_targets if isinstance(t, str)]
    jobs = [ScrapeJob(targets=plain)] if plain else []
    for item in scrape_targets:
        if isinstance(item, ScrapeJob):
            jobs.append(item)
        elif isinstance(item, dict):
            jobs.append(ScrapeJob(**item))
    names = [job.job_name for job in jobs]
    if len(names) != len(set(names)):
        raise ValueError(f"duplicate job names {names}; give each ScrapeJob its own job_name")
    return jobs


def _duration(value: str | float) -> str:
    """1 -> "1s", 0.5 -> "500ms", "2s" -> "2s"."""
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return f"{int(value)}s"
    return f"{int(round(value * 1000))}ms"


