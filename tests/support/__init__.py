"""Test-support code: real OTLP receivers and a real Prometheus server."""

from tests.support.otlp_receiver import OTLPReceiver, ReceivedRequest
from tests.support.prometheus import PrometheusQueryError, PrometheusServer, ScrapeJob

__all__ = ["OTLPReceiver", "ReceivedRequest", "PrometheusServer", "PrometheusQueryError", "ScrapeJob"]
