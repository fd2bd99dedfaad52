"""Real backends for the pipeline tests, built from their Go modules by ``tests/backends/build.sh``.

* ``Prometheus3``: Prometheus 3 with its OTLP receiver on (``/api/v1/otlp/v1/metrics``) and exemplar
  storage. Its ``otlp.translation_strategy`` is the translator Mimir's ``/otlp`` endpoint runs:
  ``SUFFIXES`` (UnderscoreEscapingWithSuffixes: ``gen_ai_client_operation_duration_seconds``, the shipped
  Mimir setting ``otel_metric_suffixes_enabled: true``) or ``NO_SUFFIXES``
  (UnderscoreEscapingWithoutSuffixes: ``gen_ai_client_operation_duration``, Mimir's default).
  Promoted resource attributes default to the shipped Mimir's ``promote_otel_resource_attributes``.
* ``Jaeger``: Jaeger v2 with memory storage, OTLP gRPC/HTTP in, the query API out.
* ``OTLPFanout``: one OTLP/HTTP endpoint that forwards every request to several (one collector exporter
  feeding a Prometheus of each naming scheme).

Everything binds 127.0.0.1 on free ports, keeps its files in a temporary directory, and is stopped and
cleaned up by ``stop()`` / the context manager / the fixtures below.

Binaries: ``$PROMETHEUS3_BIN`` / ``$JAEGER_BIN`` (``.ci/run`` exports them from build.sh), else the newest
``prometheus-v*`` / ``jaeger-v*`` in build.sh's cache directory (``$OTEL_LLM_BACKENDS_DIR`` or
``${XDG_CACHE_HOME:-~/.cache}/otel-llm/backends``). Neither: the test is skipped and says how to build them. A variable
that names a missing file is an error, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import free_port
from tests.support.prometheus import PrometheusServer

__all__ = [
    "SUFFIXES", "NO_SUFFIXES", "MIMIR_PROMOTED_RESOURCE_ATTRIBUTES", "backend_binary", "backends_dir",
    "Prometheus3", "Jaeger", "OTLPFanout", "prometheus3_factory", "jaeger", "NetNamespace", "Relay", "in_netns",
    "netns_supported",
]

SUFFIXES = "UnderscoreEscapingWithSuffixes"  # Mimir with otel_metric_suffixes_enabled: true (what deploy/ ships)
NO_SUFFIXES = "UnderscoreEscapingWithoutSuffixes"  # Mimir's default (-distributor.otel-metric-suffixes-enabled=false)
# deploy/mimir/mimir.yaml: limits.promote_otel_resource_attributes
MIMIR_PROMOTED_RESOURCE_ATTRIBUTES = ("service.name", "service.namespace", "deployment.environment.name")

BUILD_HINT = "build it with tests/backends/build.sh (Go >= 1.26 and its module proxy; .ci/run does this)"


def backends_dir() -> Path:
    """build.sh's default output directory."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("OTEL_LLM_BACKENDS_DIR") or Path(cache) / "otel-llm" / "backends")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name.rsplit("-v", 1)[-1]))


def backend_binary(env_var: str, name: str) -> str:
    """Path of a backend binary: ``$env_var``, else the newest ``<name>-v*`` in build.sh's cache.

    Skips the test when neither exists; fails when ``$env_var`` names something that is not executable.
    """
    configured = os.environ.get(env_var)
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"${env_var}={configured} is not an executable file; {BUILD_HINT}")
        return configured
    directory = backends_dir()
    cached = sorted(
        (p for p in directory.glob(f"{name}-v*") if p.is_file() and os.access(p, os.X_OK)), key=_version_key
    )
    if not cached:
        pytest.skip(f"{name}: ${env_var} is not set and {directory} holds no {name}-v* binary; {BUILD_HINT}")
    return str(cached[-1])


def _http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- Prometheus 3


class Prometheus3(PrometheusServer):
    """A real Prometheus 3 taking OTLP metrics, with exemplar storage and a chosen naming scheme.

        with Prometheus3(translation_strategy=NO_SUFFIXES) as prom:
            exporter = OTLPMetricExporter(endpoint=prom.otlp_metrics_url)
            ...
            prom.wait_for_series("gen_ai_client_operation_duration_bucket")

    ``otlp_endpoint`` is the base URL an ``otlp_http`` exporter (which appends ``/v1/metrics``) is given,
    the counterpart of Mimir's ``http://mimir:9009/otlp``. The query helpers are PrometheusServer's.
    """

    def __init__(
        self,
        *,
        translation_strategy: str = SUFFIXES,
        promote_resource_attributes: Sequence[str] = MIMIR_PROMOTED_RESOURCE_ATTRIBUTES,
        otlp: Mapping[str, Any] | None = None,
        out_of_order_time_window: str = "5m",  # deploy/mimir/mimir.yaml: limits.out_of_order_time_window
        extra_flags: Sequence[str] = (),
        extra_config: Mapping[str, Any] | None = None,
        binary: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        otlp_config: dict[str, Any] = {"translation_strategy": translation_strategy}
        if promote_resource_attributes:
            otlp_config["promote_resource_attributes"] = list(promote_resource_attributes)
        otlp_config.update(otlp or {})
        config: dict[str, Any] = {
            "otlp": otlp_config,
            "storage": {"tsdb": {"out_of_order_time_window": out_of_order_time_window}},
        }
        config.update(extra_config or {})
        super().__init__(
            (),
            extra_flags=["--web.enable-otlp-receiver", "--enable-feature=exemplar-storage", *extra_flags],
            extra_config=config,
            binary=binary,
            startup_timeout=startup_timeout,
        )
        self.translation_strategy = translation_strategy

    def start(self) -> Prometheus3:
        if self.binary is None:
            self.binary = backend_binary("PROMETHEUS3_BIN", "prometheus")
        super().start()
        return self

    def __enter__(self) -> Prometheus3:
        return self.start()

    @property
    def otlp_endpoint(self) -> str:
        """Base URL for an exporter that appends ``/v1/metrics`` (the collector's ``otlp_http``)."""
        return f"{self.url}/api/v1/otlp"

    @property
    def otlp_metrics_url(self) -> str:
        """Full URL for an exporter given the signal URL (Python's ``OTLPMetricExporter(endpoint=...)``)."""
        return f"{self.otlp_endpoint}/v1/metrics"

    def metric_names(self) -> list[str]:
        """Every metric name Prometheus stores (``/api/v1/label/__name__/values``)."""
        return list(self.api("label/__name__/values"))

    def wait_for_metric_names(
        self, predicate: Callable[[list[str]], bool], timeout: float = 30.0, interval: float = 0.3
    ) -> list[str]:
        """Poll the stored metric names until ``predicate(names)`` holds; return them."""
        deadline = time.monotonic() + timeout
        names: list[str] = []
        while True:
            names = self.metric_names()
            if predicate(names):
                return names
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"Prometheus 3 ({self.translation_strategy}): condition on metric names not met within "
                    f"{timeout}s; names: {sorted(names)}\n--- log ---\n{self.log()[-3000:]}"
                )
            time.sleep(interval)

    def wait_for_exemplars(self, promql: str, timeout: float = 30.0, interval: float = 0.3) -> list[dict[str, Any]]:
        """Poll ``/api/v1/query_exemplars`` until it returns at least one exemplar; return the series list."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = self.exemplars(promql)
            if any(series.get("exemplars") for series in last):
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"Prometheus 3: no exemplar for {promql!r} within {timeout}s; last: {last!r}")
            time.sleep(interval)


# ---------------------------------------------------------------------------------------------- Jaeger v2


class Jaeger:
    """A real Jaeger v2 (``jaeger --config``), memory storage, on 127.0.0.1 free ports.

    ``otlp_grpc_endpoint`` (``127.0.0.1:port``) and ``otlp_http_endpoint`` (``http://127.0.0.1:port``) take
    spans; ``url`` is the query service (HTTP API used by the Jaeger UI, and ``/api/v3``).
    """

    def __init__(self, *, binary: str | None = None, max_traces: int = 100_000, startup_timeout: float = 60.0) -> None:
        self.binary = binary
        self.max_traces = max_traces
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_text = ""

    # -------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port('query_http')}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self._port('otlp_grpc')}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port('otlp_http')}"

    def _port(self, name: str) -> int:
        if name not in self.ports:
            raise RuntimeError("Jaeger is not running")
        return self.ports[name]

    def config(self) -> dict[str, Any]:
        """The Jaeger v2 (collector-style) configuration this instance runs with."""
        listen = {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}},
                # No own-metrics endpoint: its default (:8888) is the collector's under test.
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": self.max_traces}}}},
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    # Its own query spans would go by OTLP to localhost:4317: the collector under test.
                    "enable_tracing": False,
                    "http": {"endpoint": listen["query_http"]},
                    "grpc": {"endpoint": listen["query_grpc"]},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {"grpc": {"endpoint": listen["otlp_grpc"]}, "http": {"endpoint": listen["otlp_http"]}}
                }
            },
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def start(self) -> Jaeger:
        binary = self.binary or backend_binary("JAEGER_BIN", "jaeger")
        self._tmp = Path(tempfile.mkdtemp(prefix="otel-llm-jaeger-"))
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            self.ports = {name: free_port() for name in ("otlp_grpc", "otlp_http", "query_http", "query_grpc")}
            config_path = self._tmp / "jaeger.yaml"
            config_path.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
            with open(self._tmp / "jaeger.log", "wb") as log:
                self._process = subprocess.Popen(
                    [binary, f"--config={config_path}"], stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self._tmp,
                    env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
                )
            last_error = self._wait_ready()
            if not last_error:
                return self
            self._terminate()
            if "address already in use" not in last_error:
                break
        self.stop()
        raise RuntimeError(f"Jaeger did not become ready: {last_error}\n--- log ---\n{self._log_text[-5000:]}")

    def _wait_ready(self) -> str:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"process exited with code {self._process.returncode}: {self.log()[-3000:]}"
            try:
                _http_json(f"{self.url}/api/services", timeout=1)
                if _port_open(self.ports["otlp_grpc"]) and _port_open(self.ports["otlp_http"]):
                    return ""
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        return f"query API or OTLP ports not answering after {self.startup_timeout}s"

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

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Jaeger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        if self._tmp is not None and (self._tmp / "jaeger.log").exists():
            self._log_text = (self._tmp / "jaeger.log").read_text(errors="replace")
        return self._log_text

    # -------------------------------------------------------------- query API

    def services(self) -> list[str]:
        return list(_http_json(f"{self.url}/api/services")["data"] or [])

    def find_traces(
        self, service: str, tags: Mapping[str, Any] | None = None, *, operation: str | None = None,
        lookback: str = "1h", limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Search (``/api/traces``, the UI's API): traces of ``service`` with a span carrying all ``tags``
        (span, scope, resource or span-event attributes). ``/api/v3/traces`` has no attribute search.
        Jaeger v1.76.0's memory store never matches ``{"error": "true"}`` against failed spans: search by
        ``error.type`` (tests/test_backends.py shows it)."""
        params: dict[str, Any] = {"service": service, "lookback": lookback, "limit": limit}
        if tags:
            params["tags"] = json.dumps({key: str(value) for key, value in tags.items()})
        if operation:
            params["operation"] = operation
        return list(_http_json(f"{self.url}/api/traces?{urllib.parse.urlencode(params)}")["data"] or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace by its hex id (``/api/traces/{id}``), or None when Jaeger does not have it."""
        try:
            data = _http_json(f"{self.url}/api/traces/{trace_id}")["data"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return data[0] if data else None

    def wait_for_traces(
        self, service: str, tags: Mapping[str, Any] | None = None, *, minimum: int = 1, timeout: float = 30.0,
        interval: float = 0.3,
    ) -> list[dict[str, Any]]:
        """Poll ``find_traces`` until at least ``minimum`` traces match; return them."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while True:
            try:
                found = self.find_traces(service, tags)
            except urllib.error.HTTPError:
                found = []
            if len(found) >= minimum:
                return found
            if time.monotonic() >= deadline:
                services = self.services()
                raise AssertionError(
                    f"Jaeger: {len(found)} traces of service {service!r} with tags {tags!r} within {timeout}s "
                    f"(wanted >= {minimum}); services: {services}\n--- log ---\n{self.log()[-3000:]}"
                )
            time.sleep(interval)

    @staticmethod
    def span_tags(span: Mapping[str, Any]) -> dict[str, Any]:
        """A span's tags from the ``/api/traces`` JSON as a plain dict."""
        return {tag["key"]: tag["value"] for tag in span.get("tags", [])}

    @staticmethod
    def process_tags(trace: Mapping[str, Any], span: Mapping[str, Any]) -> dict[str, Any]:
        """The resource (process) tags of a span, service name included as ``service.name``."""
        process = trace.get("processes", {}).get(span.get("processID"), {})
        tags = {tag["key"]: tag["value"] for tag in process.get("tags", [])}
        tags.setdefault("service.name", process.get("serviceName"))
        return tags


# ---------------------------------------------------------------------------------------------- OTLP fan-out


class OTLPFanout:
    """An OTLP/HTTP endpoint on 127.0.0.1 that forwards each POST, bytes and content headers unchanged, to
    every target base URL (``<target><path>``). Answers with the worst target status, so an exporter sees a
    failure when any backend refused. ``forwarded`` counts requests by path."""

    _FORWARD_HEADERS = ("Content-Type", "Content-Encoding")

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = [t.rstrip("/") for t in targets]
        self.forwarded: dict[str, int] = {}
        self.failures: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("OTLPFanout is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OTLPFanout:
        fanout = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {h: self.headers[h] for h in fanout._FORWARD_HEADERS if self.headers.get(h)}
                worst, answer = 200, b""
                for target in fanout.targets:
                    request = urllib.request.Request(target + self.path, data=body, headers=headers, method="POST")
                    try:
                        with urllib.request.urlopen(request, timeout=10) as response:
                            status, text = response.status, response.read()
                    except urllib.error.HTTPError as error:
                        status, text = error.code, error.read()
                        fanout.failures.append(f"{target}{self.path}: HTTP {status} {text[:300]!r}")
                    except OSError as error:
                        status, text = 503, str(error).encode()
                        fanout.failures.append(f"{target}{self.path}: {error}")
                    if status >= worst:
                        worst, answer = status, text
                fanout.forwarded[self.path] = fanout.forwarded.get(self.path, 0) + 1
                self.send_response(worst)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-fanout", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OTLPFanout:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def prometheus3_factory() -> Iterator[Callable[..., Prometheus3]]:
    """``start(**Prometheus3 kwargs) -> started Prometheus3``; all stopped at teardown."""
    servers: list[Prometheus3] = []

    def start(**kwargs: Any) -> Prometheus3:
        server = Prometheus3(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def jaeger() -> Iterator[Jaeger]:
    """A started Jaeger v2; stopped after the test."""
    with Jaeger() as server:
        yield server


# ---------------------------------------------------------------------------------------------- network namespaces
#
# The shipped collector configs bind fixed ports (0.0.0.0:4317, :4318, :13133, :8888), so two of them cannot run
# side by side on one host. Each runs in a network namespace of its own (its own loopback, nothing routed
# anywhere), and ``Relay`` threads of the test process carry TCP between one namespace's loopback and another's.
# Where a config dials a fixed port that its own receiver holds in its namespace (the load balancer sends to the
# samplers' 4317 and listens on [::]:4317 itself), ``NetNamespace.link`` joins two namespaces by a veth pair
# that exists only between them.

_CLONE_NEWNET = 0x40000000
_libc: Any = None


def _setns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (sockets it creates stay there)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            import ctypes

            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)


def in_netns(path: str | None, function: Callable[[], Any]) -> Any:
    """``function()`` run in a thread inside the network namespace ``path`` (None: this process's)."""
    if path is None:
        return function()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            _setns(path)
            result["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            result["error"] = error

    thread = threading.Thread(target=run, name="in-netns")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def netns_supported() -> str | None:
    """None when this machine can make network namespaces (root, unshare, ip), else why not."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = [tool for tool in ("unshare", "nsenter", "ip", "mount") if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {missing}"
    probe = subprocess.run(["unshare", "--net", "--mount", "ip", "link", "set", "lo", "up"], capture_output=True,
                           text=True)
    return None if probe.returncode == 0 else f"unshare --net failed: {probe.stderr.strip()}"


class NetNamespace:
    """A network (and mount) namespace with only a loopback interface, held open by a sleeping process.

    ``addresses``: extra IPv6 addresses for its loopback (e.g. ``fd00::1``); ``hosts``: the content of its
    private /etc/hosts (bind-mounted inside the namespace only); ``setup``: shell commands run inside before it
    is up, e.g. mounts only its processes see (its mount propagation is private: nothing reaches the host).
    ``popen(command)`` starts a process inside.
    """

    def __init__(self, name: str, *, addresses: Sequence[str] = (), hosts: str | None = None,
                 setup: Sequence[str] = ()) -> None:
        self.name = name
        self.addresses = list(addresses)
        self.hosts = hosts
        self.setup = list(setup)
        self._holder: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def net(self) -> str:
        if self._holder is None:
            raise RuntimeError(f"namespace {self.name} is not up")
        return f"/proc/{self._holder.pid}/ns/net"

    @property
    def mnt(self) -> str:
        return self.net[: -len("net")] + "mnt"

    def start(self) -> NetNamespace:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"otel-llm-netns-{self.name}-"))
        script = ["ip link set lo up"]
        script += [f"ip -6 addr add {address}/128 dev lo" for address in self.addresses]
        if self.hosts is not None:
            hosts = self._tmp / "hosts"
            hosts.write_text(self.hosts)
            script.append(f"mount --bind {hosts} /etc/hosts")
        script += self.setup
        ready = self._tmp / "ready"
        script += [f"touch {ready}", "exec sleep 100000"]
        self._holder = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-ec",
                                         "; ".join(script)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self._holder.poll() is not None or time.monotonic() > deadline:
                error = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
                self.stop()
                raise RuntimeError(f"namespace {self.name} did not come up: {error}")
            time.sleep(0.05)
        return self

    def link(self, other: NetNamespace, subnet: int) -> tuple[str, str]:
        """A veth pair from this namespace to ``other`` (nothing else on it), IPv6 ``fdNN::1`` here and
        ``fdNN::2`` there (NN = ``subnet``); returns the two addresses."""
        assert self._holder is not None and other._holder is not None
        here, there = f"fd{subnet:02x}::1", f"fd{subnet:02x}::2"
        name, peer = f"veth{subnet}", f"veth{subnet}p"
        for namespace, script in (
            (self, f"ip link add {name} type veth peer name {peer} netns {other._holder.pid}; "
                   f"ip -6 addr add {here}/64 dev {name} nodad; ip link set {name} up"),
            (other, f"ip -6 addr add {there}/64 dev {peer} nodad; ip link set {peer} up"),
        ):
            done = subprocess.run(["nsenter", f"--net={namespace.net}", "sh", "-ec", script], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise RuntimeError(f"veth {self.name} -> {other.name}: {done.stderr.strip()}")
        return here, there

    def popen(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``command`` inside this namespace (network and mounts)."""
        return subprocess.Popen(["nsenter", f"--net={self.net}", f"--mount={self.mnt}", "--", *command], **kwargs)

    def stop(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> NetNamespace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Relay:
    """TCP from ``listen`` (host, port) in namespace ``listen_ns`` to ``target`` (host, port) in ``target_ns``
    (None: the test process's own namespace). Bytes are copied both ways unchanged (gRPC, HTTP)."""

    def __init__(self, listen_ns: str | None, listen: tuple[str, int], target_ns: str | None,
                 target: tuple[str, int]) -> None:
        self.listen_ns, self.listen, self.target_ns, self.target = listen_ns, listen, target_ns, target
        self.connections = 0
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Relay:
        host, port = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = in_netns(self.listen_ns, lambda: socket.create_server((host, port), family=family))
        threading.Thread(target=self._accept, name=f"relay-{port}", daemon=True).start()
        return self

    def _accept(self) -> None:
        server = self._server
        while server is not None:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = in_netns(self.target_ns, lambda: socket.create_connection(self.target, timeout=5))
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the relay thread
            except OSError:
                pass
            server.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
