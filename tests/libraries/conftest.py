"""Fixtures for the tests through real libraries (LangChain, pydantic-ai, LiteLLM, OpenAI Agents).

Nothing these libraries do may leave the machine: their phone-home and downloads are switched off
here, before any of them is imported, and every test runs under a guard that refuses connections
to anything but loopback.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest

# LiteLLM fetches its model-cost map from the internet at import unless told not to; its offline
# mode also keeps it from fetching tokenizers and other catalogs on its own.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
# OpenAI Agents exports its traces to OpenAI by default.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
# LangSmith tracing (LangChain) stays off.
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"

pytest.register_assert_rewrite("tests.libraries.harness")  # its asserts explain their failures

from otel_llm.demo.upstream import STREAM_USAGE_HEADER, LatencyProfile, UpstreamSimulator  # noqa: E402
from tests.libraries.harness import Harness, Wire  # noqa: E402
from tests.support.recording_proxy import RecordingProxy  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "issue9(point, why): covers what point `point` of issue 9 found broken "
                                       "(select them with -m issue9)")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_loopback(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        loopback = ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConnectionRefusedError(f"tests through libraries: connection to {host!r} refused (loopback only)")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_loopback(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_loopback(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A library that phones home or downloads fails the test instead of reaching the network; no SDK
    picks up real credentials or endpoints from the environment."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def _wire(latency: LatencyProfile) -> Iterator[Wire]:
    with UpstreamSimulator(timeout_sleep=2.0, seed=7, latency=latency) as sim, RecordingProxy(sim.port) as separate, \
            RecordingProxy(sim.port, add_headers={STREAM_USAGE_HEADER: "last-choice-chunk"}) as last_choice:
        wire = Wire(sim, {"separate-chunk": separate, "last-choice-chunk": last_choice})
        try:
            yield wire
        finally:
            wire.loop.run_until_complete(wire.loop.shutdown_asyncgens())
            wire.loop.close()
            gc.unfreeze()  # the harness froze what survived its runs


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    """One simulator per module, behind two recording proxies: one leaves it in its default mode (a
    stream's usage in a separate chunk without choices), one asks it per request for the usage on
    the last chunk with choices."""
    yield from _wire(LatencyProfile())


@pytest.fixture(scope="module")
def paced_wire() -> Iterator[Wire]:
    """The same with 20 ms between streamed chunks, so a consumer can cancel while a stream is still
    coming (without a pause the library's reader has the whole stream before the consumer acts)."""
    yield from _wire(LatencyProfile(per_chunk=0.02))


@pytest.fixture
def harness(wire: Wire) -> Harness:
    return Harness(wire)


@pytest.fixture
def paced_harness(paced_wire: Wire) -> Harness:
    return Harness(paced_wire)
