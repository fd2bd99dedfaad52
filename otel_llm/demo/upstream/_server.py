"""The simulator: a ThreadingHTTPServer on a daemon thread serving both APIs, its shared state, and ``main``."""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer
from typing import Any

from ._anthropic import ANTHROPIC, AnthropicEndpoints
from ._common import RATE_LIMIT_WINDOW, ApiError, Drop, LatencyProfile, LoggedRequest, Quota
from ._handler import log
from ._openai import OPENAI, STREAM_USAGE_HEADER, STREAM_USAGE_MODES, STREAM_USAGE_SEPARATE_CHUNK, OpenAIEndpoints


class UpstreamSimulator:
    """An OpenAI- and Anthropic-compatible HTTP server on a daemon thread. Use as a context manager or
    start()/stop(). OpenAI clients take ``base_url``, Anthropic clients ``anthropic_base_url``.

    ``stream_usage`` says where a streamed chat completion that asked for ``stream_options.include_usage``
    gets its usage: ``"separate-chunk"`` (OpenAI's way and the default: an extra last chunk with
    ``choices: []``) or ``"last-choice-chunk"`` (as some OpenAI-compatible servers do: on the last chunk
    that has choices, the one with the finish_reason). A request picks its own with the header
    ``x-sim-stream-usage``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: LatencyProfile = LatencyProfile(),
        error_rate: float = 0.0,
        seed: int | None = None,
        timeout_sleep: float = 5.0,
        max_request_bytes: int = 1 << 20,
        stream_usage: str = STREAM_USAGE_SEPARATE_CHUNK,
    ) -> None:
        if stream_usage not in STREAM_USAGE_MODES:
            raise ValueError(f"stream_usage must be one of {STREAM_USAGE_MODES}, not {stream_usage!r}")
        self.host, self._port = host, port
        self.stream_usage = stream_usage
        self.latency, self.error_rate = latency, error_rate
        self.timeout_sleep, self.max_request_bytes = timeout_sleep, max_request_bytes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._log: deque[LoggedRequest] = deque(maxlen=1000)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._cached: set[str] = set()
        self._window_start, self._window = time.monotonic(), (0, 0, 0)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def base_url(self) -> str:
        """For OpenAI clients."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For Anthropic clients (they append ``/v1/messages`` themselves)."""
        return f"http://{self.host}:{self.port}"

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def start(self) -> UpstreamSimulator:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self._port), _Handler)
            self._server.sim = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="upstream-sim", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency or error-timeout
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock keep-alive connections waiting for a next request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state shared by the handler threads -------------------------------------------------

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _wait(self, seconds: float) -> None:
        """Sleep, but drop the connection at once if the simulator is stopping."""
        if seconds > 0 and self._stopping.wait(seconds):
            raise Drop

    def _sleep(self, mean: float) -> None:
        """A latency-profile delay: ``mean`` with jitter."""
        if mean > 0:
            with self._lock:
                factor = 1 + self._rng.uniform(-self.latency.jitter, self.latency.jitter)
            self._wait(mean * factor)

    def _random_failure(self) -> str | None:
        """The kind of error (``server`` or ``rate_limit``) ``error_rate`` picks for this request, if any."""
        with self._lock:
            if self.error_rate <= 0 or self._rng.random() >= self.error_rate:
                return None
            return "server" if self._rng.random() < 0.5 else "rate_limit"

    def _stream_usage_mode(self, headers: Any) -> str:
        """This request's ``stream_usage`` mode: its ``x-sim-stream-usage`` header, else the simulator's."""
        mode = headers.get(STREAM_USAGE_HEADER) or self.stream_usage
        if mode not in STREAM_USAGE_MODES:
            raise ApiError(400, f"{STREAM_USAGE_HEADER} must be one of {', '.join(STREAM_USAGE_MODES)}")
        return mode

    def _cache_hit(self, prompt: str) -> bool:
        """Whether the simulated prompt cache holds ``prompt``; it does from now on."""
        key = hashlib.sha256(prompt.encode()).hexdigest()
        with self._lock:
            hit = key in self._cached
            if len(self._cached) > 10_000:
                self._cached.clear()
            self._cached.add(key)
        return hit

    def _consume(self, input_tokens: int, output_tokens: int) -> Quota:
        """Count a request against the rate-limit window."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= RATE_LIMIT_WINDOW:
                self._window_start, self._window = now, (0, 0, 0)
            requests, inputs, outputs = self._window
            self._window = requests + 1, inputs + input_tokens, outputs + output_tokens
            return Quota(*self._window, max(0.0, RATE_LIMIT_WINDOW - (now - self._window_start)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sim: UpstreamSimulator

    def server_bind(self) -> None:  # without HTTPServer's reverse-DNS lookup, which can stall for seconds
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients resetting connections is normal
            log.exception("upstream simulator: error while handling a request from %s", client_address)


class _Handler(OpenAIEndpoints, AnthropicEndpoints):  # the two mixins' method names must not overlap
    apis = (ANTHROPIC, OPENAI)  # OPENAI's empty path prefix takes everything else


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the OpenAI- and Anthropic-compatible upstream simulator in "
                                                 "the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--realistic", action="store_true", help="add realistic latency (TTFT, per-chunk delays)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests failing with 500/429")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout-sleep", type=float, default=5.0, help="how long model error-timeout stalls")
    parser.add_argument("--stream-usage", choices=STREAM_USAGE_MODES, default=STREAM_USAGE_SEPARATE_CHUNK,
                        help="where streamed chat completions put the usage they were asked for")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    latency = LatencyProfile.realistic() if args.realistic else LatencyProfile()
    sim = UpstreamSimulator(args.host, args.port, latency=latency, error_rate=args.error_rate, seed=args.seed,
                            timeout_sleep=args.timeout_sleep, stream_usage=args.stream_usage)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with sim:
        print(f"upstream simulator listening on {sim.base_url}", flush=True)
        print(f"Anthropic clients: base_url={sim.anthropic_base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
