"""The simulator's own request handlers served as an ASGI app, so that an ASGI middleware (the demo
puts ``otel_llm.server.LLMServerMiddleware`` around it) sees every request it answers.

The handlers stay what they are (``BaseHTTPRequestHandler`` writing HTTP/1.1 to a file, sleeping
between chunks): each request runs one on a worker thread, reading the request from memory and
writing into a parser that turns the status line, the headers and the (chunked or
content-length) body into ASGI messages as they are written. A handler that drops the connection
(``error-midstream``, ``error-disconnect``) ends the ASGI call with :class:`UpstreamDropped`, so the
server closes the connection (before any byte, uvicorn answers 500 instead: ASGI has no way to close
without a response).
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from ._server import UpstreamSimulator, _Handler

_HOP_BY_HOP = {b"connection", b"transfer-encoding", b"keep-alive", b"server", b"date"}


class UpstreamDropped(ConnectionError):
    """The simulated upstream dropped the connection on purpose."""


class _Connection:
    """Stands in for the handler's socket: only ``shutdown`` (a deliberate drop) is used."""

    def __init__(self, emit: Any) -> None:
        self._emit = emit

    def shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        self._emit(("drop",))

    def close(self) -> None:
        pass


class _ResponseParser(io.RawIOBase):
    """The handler's ``wfile``: parses what it writes into ("start", status, headers), ("body", bytes)
    and ("end",) items for the ASGI side. Raises BrokenPipeError once the client is gone."""

    def __init__(self, emit: Any) -> None:
        self._emit = emit
        self._buffer = b""
        self._state = "head"
        self._chunked = False
        self._left = 0  # content-length bytes still to come
        self.gone = threading.Event()  # the ASGI side could not deliver: the client went away

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.gone.is_set():
            raise BrokenPipeError("the client went away")
        data = bytes(data)
        self._buffer += data
        self._parse()
        return len(data)

    def _parse(self) -> None:
        while True:
            if self._state == "head":
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
                lines = head.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                headers = []
                length = None
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name, value = name.strip().lower(), value.strip()
                    if name == b"transfer-encoding" and value.lower() == b"chunked":
                        self._chunked = True
                    if name == b"content-length":
                        length = int(value)
                    if name not in _HOP_BY_HOP:
                        headers.append((name, value))
                self._emit(("start", status, headers))
                if self._chunked:
                    self._state = "chunk-size"
                else:
                    self._left = length or 0
                    self._state = "body"
                    if self._left == 0:
                        self._state = "done"
                        self._emit(("end",))
            elif self._state == "body":
                if not self._buffer:
                    return
                piece, self._buffer = self._buffer[: self._left], self._buffer[self._left:]
                self._left -= len(piece)
                self._emit(("body", piece))
                if self._left <= 0:
                    self._state = "done"
                    self._emit(("end",))
            elif self._state == "chunk-size":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return
                size = int(self._buffer[:end].split(b";")[0], 16)
                self._buffer = self._buffer[end + 2:]
                if size == 0:
                    self._state = "done"
                    self._emit(("end",))
                else:
                    self._left = size
                    self._state = "chunk-data"
            elif self._state == "chunk-data":
                if len(self._buffer) < self._left + 2:
                    return
                piece = self._buffer[: self._left]
                self._buffer = self._buffer[self._left + 2:]
                self._emit(("body", piece))
                self._state = "chunk-size"
            else:  # done: anything more is ignored
                self._buffer = b""
                return


class _BridgeHandler(_Handler):
    """The simulator's handler on an in-memory request and a parsing ``wfile``."""

    def setup(self) -> None:
        raw, parser, emit = self.request
        self.connection = _Connection(emit)
        self.rfile = io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]
        self.wfile = parser
        self.sim = self.server.sim

    def finish(self) -> None:
        pass


class UpstreamASGIApp:
    """``UpstreamASGIApp(sim)``: the simulator ``sim`` (not started) as an ASGI app."""

    def __init__(self, sim: UpstreamSimulator, max_workers: int = 128) -> None:
        self.sim = sim
        self._server = SimpleNamespace(sim=sim)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="upstream-asgi")

    def close(self) -> None:
        self.sim._stopping.set()  # wakes handlers sleeping in latency
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        body = []
        while True:
            message = await receive()
            body.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        payload = b"".join(body)
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        head = [f"{scope['method']} ".encode() + target + b" HTTP/1.1"]
        for name, value in scope.get("headers") or ():
            if name.lower() not in (b"connection", b"content-length", b"transfer-encoding"):
                head.append(name + b": " + value)
        head += [b"Content-Length: " + str(len(payload)).encode(), b"Connection: close"]
        raw = b"\r\n".join(head) + b"\r\n\r\n" + payload

        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def emit(item: tuple[Any, ...]) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        parser = _ResponseParser(emit)
        client = tuple(scope.get("client") or ("127.0.0.1", 0))

        def run() -> None:
            try:
                _BridgeHandler((raw, parser, emit), client, self._server)  # type: ignore[arg-type]
            except Exception:  # the handler's own errors are logged by it; never leave the ASGI side waiting
                pass
            finally:
                emit(("exit",))

        worker = loop.run_in_executor(self._executor, run)
        started = ended = False
        try:
            while True:
                item = await items.get()
                kind = item[0]
                if kind == "start" and not started:
                    started = True
                    await send({"type": "http.response.start", "status": item[1], "headers": item[2]})
                elif kind == "body" and started and not ended:
                    await send({"type": "http.response.body", "body": item[1], "more_body": True})
                elif kind == "end" and started and not ended:
                    ended = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                elif kind in ("drop", "exit"):
                    if not ended:
                        raise UpstreamDropped("the simulated upstream dropped the connection")
                    return
        except BaseException:
            parser.gone.set()  # the handler's next write fails, as on a closed socket
            raise
        finally:
            if worker.done():
                worker.exception()


class ASGIUpstream:
    """The simulator served by uvicorn through :class:`UpstreamASGIApp`, ``wrap`` (e.g. a middleware
    class or factory) applied to the app. Same surface as :class:`UpstreamSimulator` for the demo:
    ``start()``, ``stop()``, ``base_url``, ``anthropic_base_url``, ``port``."""

    def __init__(self, sim: UpstreamSimulator, wrap: Any = None) -> None:
        self.sim = sim
        self.app = UpstreamASGIApp(sim)
        self.asgi = wrap(self.app) if wrap is not None else self.app
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self, timeout: float = 10.0) -> ASGIUpstream:
        import uvicorn

        sock = socket.socket(socket.AF_INET6 if ":" in self.sim.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.sim.host, self.sim._port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        self._sock = sock
        self.sim._port = sock.getsockname()[1]
        # "critical": the simulator drops connections on purpose (error-midstream), which uvicorn logs
        # as an application error with a traceback every time.
        config = uvicorn.Config(self.asgi, log_level="critical", access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="upstream-asgi", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the upstream simulator (uvicorn) did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.app.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = None

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    @property
    def anthropic_base_url(self) -> str:
        return self.sim.anthropic_base_url

    def __getattr__(self, name: str) -> Any:  # request_log, reset_log, latency, ...
        return getattr(self.sim, name)

    def __enter__(self) -> ASGIUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
