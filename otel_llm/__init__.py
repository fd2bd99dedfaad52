"""otel-llm: OpenTelemetry GenAI telemetry for services that call LLMs."""

from .recorder import LLMCall, Recorder, get_recorder, llm_call
from .version import __version__

__all__ = ["LLMCall", "Recorder", "__version__", "get_recorder", "llm_call"]
