"""Helpers for tests: a free loopback port, an exporter gate that holds the export worker, a liveness wait."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A loopback port with nothing listening on it (also: a collector that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gate:
    """Wraps a real span or log exporter: ``export`` sets ``entered``, runs the real export (real
    network, to the receiver in whatever fault mode), then holds the worker until ``release``,
    then sets ``returned``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def export(self, batch: Any) -> Any:
        self.entered.set()
        try:
            return self.inner.export(batch)
        finally:
            self.release.wait(30)
            self.returned.set()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.release.set()
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Liveness wait (fails only if something never happens)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)
