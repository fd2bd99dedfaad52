"""A real OTLP receiver for tests: gRPC and/or HTTP, on 127.0.0.1, ephemeral ports.

Exporters under test send real bytes to it; tests then read back plain Python
data (dicts, lists, str/int/float/bool) decoded from the protobuf requests::

    with OTLPReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        ...
        receiver.wait_for(lambda r: r.spans(), timeout=5)
        assert receiver.spans()[0]["name"] == "chat gpt-4o"

Fault injection (switchable at any time, from any thread):

* ``receiver.mode = "ok"``    -- accept and store (default)
* ``receiver.mode = "error"`` -- answer gRPC ``UNAVAILABLE`` / HTTP ``503``; nothing is stored
* ``receiver.mode = "slow"``  -- wait ``receiver.delay`` seconds, then accept and store
  (the data is stored even if the client gave up meanwhile, like a real slow collector)

Every request (accepted or not) is recorded in ``receiver.requests`` with its headers.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["OTLPReceiver", "ReceivedRequest", "MODES"]

MODES = ("ok", "error", "slow")

# signal -> (request class, response class)
_MESSAGES: dict[str, tuple[type[Message], type[Message]]] = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}
_HTTP_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request as seen by the receiver."""

    signal: str  # "traces" | "metrics" | "logs"
    transport: str  # "grpc" | "http"
    headers: dict[str, str]  # lower-cased names; gRPC: invocation metadata
    accepted: bool  # False when answered with an error (mode "error")
    message: Message  # the decoded Export*ServiceRequest
    received_at: float  # time.time()


class OTLPReceiver:
    """Real OTLP/gRPC and OTLP/HTTP (protobuf) receiver bound to 127.0.0.1."""

    def __init__(self, grpc: bool = True, http: bool = True, host: str = "127.0.0.1") -> None:
        if not (grpc or http):
            raise ValueError("enable at least one of grpc/http")
        self._enable_grpc = grpc
        self._enable_http = http
        self._host = host
        self.mode = "ok"
        self.delay = 1.0  # seconds, used by mode "slow"
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._grpc_server: grpc.Server | None = None
        self._grpc_port: int | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OTLPReceiver:
        self._stopping.clear()
        if self._enable_grpc:
            self._start_grpc()
        if self._enable_http:
            self._start_http()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in "slow" mode
        if self._grpc_server is not None:
            self._grpc_server.stop(0)
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` -- pass to the gRPC exporters (they treat http:// as insecure)."""
        if self._grpc_server is None:
            raise RuntimeError("gRPC receiver is not running")
        return f"http://{self._host}:{self._grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` -- base URL; the HTTP exporters need ``http_url(signal)``."""
        if self._http_server is None:
            raise RuntimeError("HTTP receiver is not running")
        return f"http://{self._host}:{self._http_server.server_address[1]}"

    def http_url(self, signal: str) -> str:
        """Full OTLP/HTTP URL for ``"traces"``, ``"metrics"`` or ``"logs"``."""
        if signal not in _MESSAGES:
            raise ValueError(f"unknown signal {signal!r}")
        return f"{self.http_endpoint}/v1/{signal}"

    # ------------------------------------------------------------------ stored data

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far (accepted or rejected), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Headers (gRPC: invocation metadata) of every request, oldest first, lower-cased names."""
        return [r.headers for r in self.requests]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def _accepted(self, signal: str) -> list[Message]:
        return [r.message for r in self.requests if r.accepted and r.signal == signal]

    def spans(self) -> list[dict[str, Any]]:
        """Accepted spans, flattened; see ``_span_dict`` for the shape."""
        out = []
        for request in self._accepted("traces"):
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(_span_dict(span, resource, scope_spans.scope.name))
        return out

    def metrics(self) -> list[dict[str, Any]]:
        """Accepted metric data points, one dict per point; see ``_point_dict``."""
        out = []
        for request in self._accepted("metrics"):
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        out.extend(_metric_points(metric, resource, scope_metrics.scope.name))
        return out

    def logs(self) -> list[dict[str, Any]]:
        """Accepted log records; see ``_log_dict``."""
        out = []
        for request in self._accepted("logs"):
            for resource_logs in request.resource_logs:
                resource = _attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        out.append(_log_dict(record, resource, scope_logs.scope.name))
        return out

    def wait_for(
        self,
        predicate: Callable[[OTLPReceiver], Any],
        timeout: float = 10.0,
        interval: float = 0.05,
        message: str = "condition not met",
    ) -> Any:
        """Poll ``predicate(receiver)`` until it returns something truthy, and return that.

        Exceptions raised by the predicate (e.g. IndexError before data arrives) count
        as "not yet". On timeout raises AssertionError with a dump of what arrived.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                result = predicate(self)
                if result:
                    return result
            except Exception as error:  # noqa: BLE001 - "not yet"
                last_error = error
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        detail = f"\nlast predicate error: {last_error!r}" if last_error else ""
        raise AssertionError(f"OTLPReceiver: {message} within {timeout}s{detail}\n{self.dump()}")

    def dump(self) -> str:
        """A readable summary of everything received (for failure messages)."""
        requests = self.requests
        lines = [f"mode={self.mode!r}; {len(requests)} request(s) received:"]
        for r in requests:
            status = "accepted" if r.accepted else "REJECTED"
            lines.append(f"  {r.transport} {r.signal} {status} headers={r.headers}")
        spans = self.spans()
        lines.append(f"spans ({len(spans)}):")
        lines += [f"  {s['name']!r} kind={s['kind']} trace={s['trace_id']} attrs={s['attributes']}" for s in spans]
        points = self.metrics()
        lines.append(f"metric points ({len(points)}):")
        for p in points:
            value = p["value"] if "value" in p else f"count={p.get('count')} sum={p.get('sum')}"
            lines.append(f"  {p['name']} ({p['type']}) {value} attrs={p['attributes']}")
        logs = self.logs()
        lines.append(f"logs ({len(logs)}):")
        lines += [f"  {r['severity_text']!r} body={r['body']!r} attrs={r['attributes']}" for r in logs]
        text = "\n".join(lines)
        return text if len(text) < 20_000 else text[:20_000] + "\n... (truncated)"

    # ------------------------------------------------------------------ request handling

    def _handle(self, signal: str, transport: str, headers: dict[str, str], message: Message) -> bool:
        """Apply the fault mode, record the request; return True if it should be answered OK."""
        mode = self.mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if mode == "slow":
            self._stopping.wait(self.delay)
        accepted = mode != "error"
        with self._lock:
            self._requests.append(ReceivedRequest(signal, transport, headers, accepted, message, time.time()))
        return accepted

    def _start_grpc(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="otlp-grpc"))
        receiver = self

        def export(signal: str) -> Callable[[Any, Message, grpc.ServicerContext], Message]:
            def method(_servicer: Any, request: Message, context: grpc.ServicerContext) -> Message:
                headers = _merge_headers((k, v) for k, v in context.invocation_metadata())
                if not receiver._handle(signal, "grpc", headers, request):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "OTLPReceiver in error mode")
                return _MESSAGES[signal][1]()

            return method

        servicers = [
            (trace_service_pb2_grpc, "TraceServiceServicer", "traces"),
            (metrics_service_pb2_grpc, "MetricsServiceServicer", "metrics"),
            (logs_service_pb2_grpc, "LogsServiceServicer", "logs"),
        ]
        for module, base_name, signal in servicers:
            base = getattr(module, base_name)
            servicer_class = type(f"Test{base_name}", (base,), {"Export": export(signal)})
            getattr(module, f"add_{base_name}_to_server")(servicer_class(), server)

        self._grpc_port = server.add_insecure_port(f"{self._host}:0")
        server.start()
        self._grpc_server = server

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so nothing lingers after stop().
            def do_POST(self) -> None:  # noqa: N802
                signal = _HTTP_PATHS.get(self.path.split("?", 1)[0])
                if signal is None:
                    return self._reply(HTTPStatus.NOT_FOUND, _status(5, f"unknown path {self.path}"))
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if content_type != "application/x-protobuf":
                    message = f"unsupported Content-Type {content_type!r}; this receiver only speaks protobuf"
                    return self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, _status(3, message))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = _decompress(body, self.headers.get("Content-Encoding", ""))
                    request = _MESSAGES[signal][0].FromString(body)
                except (OSError, zlib.error, DecodeError, ValueError) as error:
                    return self._reply(HTTPStatus.BAD_REQUEST, _status(3, f"cannot decode body: {error}"))
                headers = _merge_headers((k, v) for k, v in self.headers.items())
                if receiver._handle(signal, "http", headers, request):
                    self._reply(HTTPStatus.OK, _MESSAGES[signal][1]().SerializeToString())
                else:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, _status(14, "OTLPReceiver in error mode"))

            def _reply(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

        server = ThreadingHTTPServer((self._host, 0), Handler)
        server.daemon_threads = True
        self._http_server = server
        self._http_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-http", daemon=True
        )
        self._http_thread.start()


# ---------------------------------------------------------------------- helpers


def _status(code: int, message: str) -> bytes:
    """A serialized google.rpc.Status, the OTLP/HTTP error body."""
    return status_pb2.Status(code=code, message=message).SerializeToString()


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)  # zlib wrapper (what the Python exporter sends)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _merge_headers(items: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in items:
        key = key.lower()
        if isinstance(value, bytes):  # gRPC "-bin" metadata
            value = value.hex()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _any_value(value: Any) -> Any:
    """AnyValue -> str | bool | int | float | bytes | list | dict | None."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in key_values}


def _short_enum(full_name: str, prefix: str) -> str:
    return full_name[len(prefix) :] if full_name.startswith(prefix) else full_name


def _span_dict(span: Any, resource: dict[str, Any], scope: str) -> dict[str, Any]:
    return {
        "name": span.name,
        # "INTERNAL" | "SERVER" | "CLIENT" | "PRODUCER" | "CONSUMER" | "UNSPECIFIED" (== SpanKind.X.name)
        "kind": _short_enum(trace_pb2.Span.SpanKind.Name(span.kind), "SPAN_KIND_"),
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": _hex(span.parent_span_id),
        "attributes": _attributes(span.attributes),
        # "UNSET" | "OK" | "ERROR" (== StatusCode.X.name)
        "status_code": _short_enum(trace_pb2.Status.StatusCode.Name(span.status.code), "STATUS_CODE_"),
        "status_message": span.status.message,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "events": [
            {"name": e.name, "attributes": _attributes(e.attributes), "time_unix_nano": e.time_unix_nano}
            for e in span.events
        ],
        "links": [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(), "attributes": _attributes(link.attributes)}
            for link in span.links
        ],
        "resource": resource,
        "scope": scope,
    }


def _number(point: Any) -> int | float | None:
    kind = point.WhichOneof("value")  # "as_int" | "as_double"
    return getattr(point, kind) if kind else None


def _exemplars(point: Any) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": _hex(e.trace_id),
            "span_id": _hex(e.span_id),
            "value": _number(e),
            "attributes": _attributes(e.filtered_attributes),
            "time_unix_nano": e.time_unix_nano,
        }
        for e in point.exemplars
    ]


def _metric_points(metric: Any, resource: dict[str, Any], scope: str) -> list[dict[str, Any]]:
    metric_type = metric.WhichOneof("data")  # gauge | sum | histogram | exponential_histogram | summary
    data = getattr(metric, metric_type)
    temporality = None
    if hasattr(data, "aggregation_temporality"):
        temporality = _short_enum(
            metrics_pb2.AggregationTemporality.Name(data.aggregation_temporality), "AGGREGATION_TEMPORALITY_"
        )
    points = []
    for point in data.data_points:
        p: dict[str, Any] = {
            "name": metric.name,
            "description": metric.description,
            "unit": metric.unit,
            "type": metric_type,
            "attributes": _attributes(point.attributes),
            "temporality": temporality,  # "DELTA" | "CUMULATIVE" | None (gauge, summary)
            "start_time_unix_nano": point.start_time_unix_nano,
            "time_unix_nano": point.time_unix_nano,
            "resource": resource,
            "scope": scope,
        }
        if metric_type in ("gauge", "sum"):
            p["value"] = _number(point)
        if metric_type == "sum":
            p["is_monotonic"] = data.is_monotonic
        if metric_type in ("histogram", "exponential_histogram", "summary"):
            p["count"] = point.count
            p["sum"] = point.sum
        if metric_type in ("histogram", "exponential_histogram"):
            p["min"] = point.min if point.HasField("min") else None
            p["max"] = point.max if point.HasField("max") else None
        if metric_type == "histogram":
            p["bucket_counts"] = list(point.bucket_counts)
            p["explicit_bounds"] = list(point.explicit_bounds)
        if metric_type == "exponential_histogram":
            p["scale"] = point.scale
            p["zero_count"] = point.zero_count
            p["positive"] = {"offset": point.positive.offset, "bucket_counts": list(point.positive.bucket_counts)}
            p["negative"] = {"offset": point.negative.offset, "bucket_counts": list(point.negative.bucket_counts)}
        if metric_type == "summary":
            p["quantiles"] = {q.quantile: q.value for q in point.quantile_values}
        if metric_type != "summary":
            p["exemplars"] = _exemplars(point)
        points.append(p)
    return points


def _log_dict(record: Any, resource: dict[str, Any], scope: str) -> dict[str, Any]:
    return {
        "body": _any_value(record.body) if record.HasField("body") else None,
        "severity_text": record.severity_text,
        "severity_number": record.severity_number,  # int, e.g. 9 == SeverityNumber.INFO.value
        "attributes": _attributes(record.attributes),
        "trace_id": _hex(record.trace_id),
        "span_id": _hex(record.span_id),
        "event_name": record.event_name or None,
        "time_unix_nano": record.time_unix_nano,
        "observed_time_unix_nano": record.observed_time_unix_nano,
        "resource": resource,
        "scope": scope,
    }
