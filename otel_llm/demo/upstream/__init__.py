"""OpenAI- and Anthropic-compatible upstream simulator (stdlib only) for the demo, the traffic generator and
the tests. One server serves both SDKs: OpenAI clients use ``sim.base_url``, Anthropic clients
``sim.anthropic_base_url``.

OpenAI: ``/v1/chat/completions`` (plain and SSE streaming), ``/v1/embeddings``, ``/v1/responses`` (plain
and streaming) and ``/v1/models``. Anthropic: ``/v1/messages`` (plain and SSE streaming, ``tool_use`` for
weather questions when tools are given, ``thinking`` blocks when requested, ``cache_control`` prompt
caching) and ``/v1/messages/count_tokens``. Output text and token counts are deterministic functions of the
request, so tests can assert exact values. Every answer carries the API's rate-limit headers and a request id.

Streamed chat completions that ask for ``stream_options.include_usage`` get the usage in a separate last
chunk with ``choices: []``, as OpenAI sends it; ``UpstreamSimulator(stream_usage="last-choice-chunk")`` (or
the request header ``x-sim-stream-usage: last-choice-chunk``) puts it on the last chunk that has choices
instead, as some OpenAI-compatible servers do.

Structured output: a ``response_format`` of type ``json_schema`` gets JSON content that fits the schema; a
``tool_choice`` that forces a tool (OpenAI ``"required"`` or a named function, Anthropic ``any`` or a named
``tool``) gets a call of it with arguments that fit its schema.

Failures are triggered by model name, each in the shape of the API asked:

==========================  ===========================================  ===========================================
model                       OpenAI                                       Anthropic
==========================  ===========================================  ===========================================
error-500                   500 ``server_error``                         500 ``api_error``
error-429                   429 ``rate_limit_exceeded``, retry-after: 0  429 ``rate_limit_error``, retry-after: 0
error-400                   400 ``model_not_found``                      400 ``invalid_request_error``
bad-*                       400 ``model_not_found``                      404 ``not_found_error`` (unknown model)
error-529                   (answers normally)                           529 ``overloaded_error``
error-timeout               sleeps ``timeout_sleep`` seconds, then answers normally
error-malformed             200 ``application/json`` whose body is not JSON (streaming: a non-JSON event)
error-midstream             streaming: sends half of the events, then drops the connection (no end)
error-overloaded-midstream  (answers normally)                           streaming: half of the events, then an
                                                                         ``error`` event (``overloaded_error``)
error-disconnect            closes the socket without sending any response
==========================  ===========================================  ===========================================

Bodies over ``max_request_bytes`` get 400 ``context_length_exceeded`` (OpenAI) / 413 ``request_too_large``
(Anthropic), prompts over 100k characters 400; ``error_rate`` adds random 500s/429s from a seeded RNG.
Requests without an API key (``Authorization: Bearer``; Anthropic also ``x-api-key``) get 401.
"""

from ._common import MODELS, LatencyProfile, LoggedRequest
from ._openai import STREAM_USAGE_HEADER, STREAM_USAGE_LAST_CHOICE_CHUNK, STREAM_USAGE_SEPARATE_CHUNK
from ._server import UpstreamSimulator, main

__all__ = [
    "MODELS",
    "STREAM_USAGE_HEADER",
    "STREAM_USAGE_LAST_CHOICE_CHUNK",
    "STREAM_USAGE_SEPARATE_CHUNK",
    "LatencyProfile",
    "LoggedRequest",
    "UpstreamSimulator",
    "main",
]
