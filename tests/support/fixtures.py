"""Pytest fixtures for the real receivers; use from a conftest with
``from tests.support.fixtures import *``."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import PrometheusServer

__all__ = ["otlp_receiver", "prometheus_factory"]


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A started OTLPReceiver with both gRPC and HTTP listeners; stopped after the test."""
    with OTLPReceiver(grpc=True, http=True) as receiver:
        yield receiver


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """``start(scrape_targets, **PrometheusServer kwargs) -> started PrometheusServer``;
    every server started through it is stopped at teardown."""
    servers: list[PrometheusServer] = []

    def start(*args: Any, **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(*args, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
