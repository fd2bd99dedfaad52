"""A recording HTTP proxy on loopback: sits between a client and an upstream (the simulator), passes
requests and responses through unchanged (streamed responses chunk by chunk, as they arrive) and
records every exchange: the request as it was on the wire and the answer the upstream gave.

Tests compare what a library sent with and without instrumentation, and read the server's own token
counts from the answers (:meth:`Exchange.usage`). ``add_headers`` are added to every forwarded request
(the simulator reads its per-request options from headers); they are not part of the recorded request.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "content-length", "host"}


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]  # the request's, lower-cased names
    body: Any  # the request body, parsed JSON (None when absent or not JSON)
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response: bytes = b""  # the whole answer the upstream sent, even if the client left early
    client_left: bool = False  # the client closed the connection before the answer was through
    broken: bool = False  # the upstream's answer broke off (connection dropped before its end)

    @property
    def failed(self) -> bool:
        """The server failed this request: an error status, an answer broken off, or an ``error`` event."""
        return self.status >= 400 or self.broken or (self.streamed and any(name == "error" for name, _ in self.events()))

    @property
    def streamed(self) -> bool:
        return self.response_headers.get("content-type", "").startswith("text/event-stream")

    def events(self) -> list[tuple[str | None, Any]]:
        """An SSE answer's events as (event name, parsed data); ``[DONE]`` and non-JSON data stay strings."""
        found = []
        for block in self.response.decode(errors="replace").split("\n\n"):
            name, data = None, []
            for line in block.splitlines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
            if data:
                text = "\n".join(data)
                try:
                    found.append((name, json.loads(text)))
                except ValueError:
                    found.append((name, text))
        return found

    def json(self) -> Any:
        try:
            return json.loads(self.response)
        except ValueError:
            return None

    def response_id(self) -> str | None:
        """The id of the completion / message / response the server answered with."""
        if not self.streamed:
            data = self.json()
            return data.get("id") if isinstance(data, dict) else None
        for _name, data in self.events():
            if isinstance(data, dict):
                for candidate in (data.get("message"), data.get("response"), data):
                    if isinstance(candidate, dict) and isinstance(candidate.get("id"), str):
                        return candidate["id"]
        return None

    def usage(self) -> tuple[int | None, int | None]:
        """(input, output) tokens as the server reported them in this answer, in the GenAI conventions'
        terms (Anthropic's cache reads and writes count as input); None where the answer carried none.
        For an Anthropic stream the output is the final count of ``message_delta``, never the
        placeholder of ``message_start``."""
        if self.streamed:
            usage_in = usage_out = None
            for name, data in self.events():
                if not isinstance(data, dict):
                    continue
                if name == "message_start":
                    usage_in = _anthropic_input(data["message"]["usage"])
                elif name == "message_delta":
                    usage_out = data["usage"]["output_tokens"]
                elif name in ("response.completed", "response.incomplete"):
                    usage = data["response"]["usage"]
                    usage_in, usage_out = usage["input_tokens"], usage["output_tokens"]
                elif name is None and data.get("usage"):
                    usage_in, usage_out = data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]
            return usage_in, usage_out
        data = self.json()
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            return None, None
        if "prompt_tokens" in usage:
            return usage["prompt_tokens"], usage.get("completion_tokens")
        if self.path.endswith("/messages"):
            return _anthropic_input(usage), usage["output_tokens"]
        return usage.get("input_tokens"), usage.get("output_tokens")


def _anthropic_input(usage: dict[str, Any]) -> int:
    return (usage["input_tokens"] + (usage.get("cache_read_input_tokens") or 0)
            + (usage.get("cache_creation_input_tokens") or 0))


class RecordingProxy:
    """``RecordingProxy(upstream_port).start()``; clients use ``url`` (+ ``/v1`` for OpenAI clients)."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1",
                 add_headers: dict[str, str] | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.add_headers = dict(add_headers or {})
        self._lock = threading.Condition()
        self._exchanges: list[Exchange] = []
        self._in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="recording-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.wait_idle()
        with self._lock:
            self._exchanges.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no exchange is in flight (an abandoned stream's answer is still read to its end)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError("recording proxy: exchanges still in flight")

    def exchanges(self) -> list[Exchange]:
        """Every finished exchange so far, in the order the requests arrived."""
        self.wait_idle()
        with self._lock:
            return list(self._exchanges)

    def _begin(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)
            self._in_flight += 1

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: RecordingProxy

    def server_bind(self) -> None:  # no reverse-DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients resetting connections is normal here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_DELETE = do_PUT = do_GET

    def _forward(self) -> None:
        proxy = self.server.proxy
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        exchange = Exchange(self.command, self.path.split("?")[0], headers, body)
        proxy._begin(exchange)
        try:
            self._relay(proxy, exchange, raw)
        finally:
            proxy._done()

    def _relay(self, proxy: RecordingProxy, exchange: Exchange, raw: bytes) -> None:
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
        try:
            forwarded = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            forwarded.update(proxy.add_headers)
            try:
                upstream.request(self.command, self.path, body=raw or None, headers=forwarded)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException):  # the upstream dropped the connection: so do we
                exchange.broken = True
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            exchange.status = response.status
            exchange.response_headers = {k.lower(): v for k, v in response.getheaders()}
            chunked = response.getheader("Content-Length") is None
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", response.getheader("Content-Length"))
            self.end_headers()
            received = bytearray()
            complete = True
            while True:
                try:
                    data = response.read1(65536) if chunked else response.read()
                except (OSError, http.client.HTTPException):  # upstream broke mid-answer
                    complete = False
                    break
                if not data:
                    break
                received += data
                self._send(exchange, b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if not chunked:
                    break
            exchange.response = bytes(received)
            exchange.broken = not complete
            if not complete:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            elif chunked:
                self._send(exchange, b"0\r\n\r\n")
        finally:
            upstream.close()

    def _send(self, exchange: Exchange, data: bytes) -> None:
        if exchange.client_left:
            return
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            exchange.client_left = True
            self.close_connection = True
