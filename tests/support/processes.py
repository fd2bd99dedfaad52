"""Starting, waiting on and stopping the test's child processes (collectors, backends, the demo)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def stop(process: subprocess.Popen[Any] | None, *, kill: bool = False, timeout: float = 20.0) -> None:
    """Terminate (or kill) ``process`` if it still runs, and wait for it; kill it if it does not go."""
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(what: str, probe: Callable[[], Any], timeout: float, context: Callable[[], str] = str,
               interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy (OSError and AssertionError count as not yet);
    else fail, saying ``what``, the last result and ``context()`` (a log, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = probe()
            if last:
                return last
        except (OSError, AssertionError) as error:
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: nothing within {timeout}s (last: {last!r})\n{context()}")
        time.sleep(interval)


def wait_collector_ready(log: Path, process: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """Until the collector writing ``log`` says "Everything is ready"; fails if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while "Everything is ready" not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{log.name}: collector not ready (exit code {process.poll()}):\n"
                        f"{log.read_text(errors='replace')[-4000:] if log.exists() else ''}")
        time.sleep(0.2)
