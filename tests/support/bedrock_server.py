"""A loopback HTTP server answering in Amazon Bedrock Runtime's wire format, for the real boto3 client.

Routes are Bedrock's: ``POST /model/{modelId}/converse``, ``/converse-stream``, ``/invoke`` and
``/invoke-with-response-stream``. Converse and InvokeModel answer JSON (InvokeModel with the
``X-Amzn-Bedrock-*-Token-Count`` headers Bedrock sends); the two streams answer
``application/vnd.amazon.eventstream``, encoded by :func:`encode_event` (prelude with total and
headers length and its CRC32, string headers, payload, message CRC32), which botocore decodes.

What a request gets depends on its model id: a family prefix (``anthropic.``, ``amazon.nova``,
``amazon.titan-text``, ``amazon.titan-embed``, ``meta.llama``, ``mistral.``, ``cohere.command``,
``cohere.embed``) picks the body shape; a ``fault-`` model id picks a fault (``ERRORS``,
``STREAM_FAULTS``, ``MALFORMED``). A Converse request with a ``cachePoint`` block reports cache
read and write tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

TEXT_PIECES = ["Hello", " from", " Bedrock"]
TEXT = "".join(TEXT_PIECES)
INPUT_TOKENS = 12
OUTPUT_TOKENS = 6
CACHE_READ_TOKENS = 100
CACHE_WRITE_TOKENS = 40

# model id -> (HTTP status, x-amzn-errortype, message)
ERRORS = {
    "fault-throttling": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "fault-validation": (400, "ValidationException", "The provided model identifier is invalid."),
    "fault-unmodeled": (400, "BrandNewException", "A code this botocore does not model."),
}
# stream faults: model id -> what goes wrong after the first events
STREAM_FAULTS = ("fault-truncated", "fault-bad-crc", "fault-midstream-exception")
MALFORMED = "fault-malformed-json"


# --- the AWS event-stream framing --------------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack("!B", len(name_bytes)) + name_bytes + b"\x07" + struct.pack("!H", len(value_bytes)) + value_bytes


def encode_event(headers: dict[str, str], payload: bytes, *, corrupt_crc: bool = False) -> bytes:
    """One event-stream message: total length, headers length, prelude CRC32, headers, payload, message CRC32."""
    encoded_headers = b"".join(_string_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded_headers))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded_headers + payload
    crc = binascii.crc32(message) & 0xFFFFFFFF
    if corrupt_crc:
        crc ^= 0xFFFFFFFF
    return message + struct.pack("!I", crc)


def event(event_type: str, body: Any, **kwargs: Any) -> bytes:
    return encode_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body).encode(), **kwargs,
    )


def exception_event(exception_type: str, message: str) -> bytes:
    return encode_event(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def chunk_event(body: Any) -> bytes:
    """An InvokeModelWithResponseStream ``chunk``: the model's JSON, base64 in ``bytes``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return event("chunk", {"bytes": base64.b64encode(raw).decode()})


# --- bodies ------------------------------------------------------------------------------------------


def converse_usage(cached: bool) -> dict[str, int]:
    usage = {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS}
    if cached:  # Bedrock's inputTokens leaves the cached input out; totalTokens has it
        usage.update(cacheReadInputTokens=CACHE_READ_TOKENS, cacheWriteInputTokens=CACHE_WRITE_TOKENS)
        usage["totalTokens"] += CACHE_READ_TOKENS + CACHE_WRITE_TOKENS
    return usage


def converse_body(cached: bool) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": TEXT}]}},
        "stopReason": "end_turn",
        "usage": converse_usage(cached),
        "metrics": {"latencyMs": 42},
    }


def converse_stream_events(cached: bool) -> list[bytes]:
    return [
        event("messageStart", {"role": "assistant"}),
        *(event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0}) for piece in TEXT_PIECES),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": converse_usage(cached), "metrics": {"latencyMs": 42}}),
    ]


def invoke_body(model_id: str) -> dict[str, Any]:
    """A non-streamed InvokeModel body in the model family's own shape."""
    if model_id.startswith(("anthropic.", "us.anthropic.")):
        return {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
                "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}}
    if model_id.startswith(("amazon.nova", "us.amazon.nova")):
        return {"output": {"message": {"role": "assistant", "content": [{"text": TEXT}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS}}
    if model_id.startswith("amazon.titan-embed"):
        return {"embedding": [0.125, -0.5, 0.25], "inputTextTokenCount": INPUT_TOKENS}
    if model_id.startswith("amazon.titan"):
        return {"inputTextTokenCount": INPUT_TOKENS,
                "results": [{"tokenCount": OUTPUT_TOKENS, "outputText": TEXT, "completionReason": "FINISH"}]}
    if model_id.startswith(("meta.llama", "us.meta.llama")):
        return {"generation": TEXT, "prompt_token_count": INPUT_TOKENS, "generation_token_count": OUTPUT_TOKENS,
                "stop_reason": "stop"}
    if model_id.startswith("mistral."):
        return {"outputs": [{"text": TEXT, "stop_reason": "stop"}]}
    if model_id.startswith("cohere.embed"):
        return {"id": "emb-1", "embeddings": [[0.125, -0.5]], "texts": ["hi"], "response_type": "embeddings_floats"}
    if model_id.startswith("cohere."):
        return {"response_id": "co-1", "text": TEXT, "generation_id": "gen-1", "finish_reason": "COMPLETE"}
    return {"text": TEXT}


def invoke_stream_chunks(model_id: str) -> list[dict[str, Any]]:
    """The model family's streamed chunks; the last carries ``amazon-bedrock-invocationMetrics``."""
    if model_id.startswith(("anthropic.", "us.anthropic.")):
        chunks = [
            {"type": "message_start", "message": {"id": "msg_bdrk_02", "type": "message", "role": "assistant",
                                                  "model": "claude-3-haiku-20240307", "content": [],
                                                  "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
              for piece in TEXT_PIECES),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": OUTPUT_TOKENS}},
            {"type": "message_stop"},
        ]
    elif model_id.startswith(("amazon.nova", "us.amazon.nova")):
        chunks = [
            {"messageStart": {"role": "assistant"}},
            *({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}} for piece in TEXT_PIECES),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {"metadata": {"usage": {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS}}},
        ]
    elif model_id.startswith("amazon.titan"):
        chunks = [{"outputText": piece, "index": 0, "totalOutputTextTokenCount": 2 * (i + 1),
                   "completionReason": None if i < len(TEXT_PIECES) - 1 else "FINISH",
                   "inputTextTokenCount": INPUT_TOKENS} for i, piece in enumerate(TEXT_PIECES)]
    elif model_id.startswith(("meta.llama", "us.meta.llama")):
        chunks = [{"generation": piece, "prompt_token_count": INPUT_TOKENS if i == 0 else None,
                   "generation_token_count": 2 * (i + 1),
                   "stop_reason": None if i < len(TEXT_PIECES) - 1 else "stop"} for i, piece in enumerate(TEXT_PIECES)]
    elif model_id.startswith("mistral."):
        chunks = [{"outputs": [{"text": piece, "stop_reason": None if i < len(TEXT_PIECES) - 1 else "stop"}]}
                  for i, piece in enumerate(TEXT_PIECES)]
    else:  # cohere.command-r
        chunks = [{"is_finished": False, "event_type": "text-generation", "text": piece} for piece in TEXT_PIECES]
        chunks.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE"})
    chunks[-1] = {**chunks[-1], "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": INPUT_TOKENS, "outputTokenCount": OUTPUT_TOKENS, "invocationLatency": 120,
        "firstByteLatency": 40}}
    return chunks


# --- the server --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each event leaves at once

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _, _, model_id, action = self.path.split("/", 3)
        model_id = unquote(model_id)
        self.server.requests.append((action, model_id, dict(self.headers), body))
        cached = b"cachePoint" in body
        if model_id in ERRORS:
            status, code, message = ERRORS[model_id]
            return self._send(status, json.dumps({"message": message}).encode(), "application/json",
                              {"x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"})
        if action == "converse":
            payload = b'{"output": {"message": ' if model_id == MALFORMED else json.dumps(converse_body(cached)).encode()
            return self._send(200, payload, "application/json")
        if action == "invoke":
            payload = b'{"generation": "Hel' if model_id == MALFORMED else json.dumps(invoke_body(model_id)).encode()
            return self._send(200, payload, "application/json", {
                "X-Amzn-Bedrock-Input-Token-Count": str(INPUT_TOKENS),
                "X-Amzn-Bedrock-Output-Token-Count": str(OUTPUT_TOKENS),
                "X-Amzn-Bedrock-Invocation-Latency": "120",
            })
        if action == "converse-stream":
            return self._stream(model_id, converse_stream_events(cached))
        if action == "invoke-with-response-stream":
            if model_id == MALFORMED:
                return self._stream(model_id, [chunk_event(b'{"generation": "Hel'), *map(
                    chunk_event, invoke_stream_chunks("meta.llama3-8b-instruct-v1:0"))])
            return self._stream(model_id, [chunk_event(c) for c in invoke_stream_chunks(model_id)])
        return self._send(404, b'{"message": "unknown route"}', "application/json",
                          {"x-amzn-errortype": "ResourceNotFoundException"})

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", "5f0c0e44-0000-4000-8000-000000000000")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, model_id: str, events: list[bytes]) -> None:
        events = list(events)
        declared = sum(map(len, events))
        if model_id == "fault-bad-crc":
            events[2] = events[2][:-4] + struct.pack("!I", struct.unpack("!I", events[2][-4:])[0] ^ 0xFFFFFFFF)
        elif model_id == "fault-midstream-exception":
            events = events[:2] + [exception_event("modelStreamErrorException", "The model stopped unexpectedly.")]
            declared = sum(map(len, events))
        elif model_id == "fault-truncated":  # two whole events, half of the third, then the connection closes
            events = events[:2] + [events[2][: len(events[2]) // 2]]
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Content-Length", str(declared))
        self.send_header("x-amzn-RequestId", "5f0c0e44-0000-4000-8000-000000000001")
        self.end_headers()
        for encoded in events:
            self.wfile.write(encoded)
            self.wfile.flush()
            time.sleep(self.server.chunk_delay)
        if model_id == "fault-truncated":
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str, dict[str, str], bytes]]
    chunk_delay: float


class BedrockServer:
    """``with BedrockServer() as server: boto3.client(..., endpoint_url=server.url)``."""

    def __init__(self, chunk_delay: float = 0.0) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._server.chunk_delay = chunk_delay
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        """(action, model id, headers, body) of every request received."""
        return self._server.requests

    def start(self) -> BedrockServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> BedrockServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
