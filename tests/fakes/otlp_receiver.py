"""A loopback OpenTelemetry collector: `POST /v1/traces` with an OTLP/HTTP protobuf body
(`ExportTraceServiceRequest`), answered like a collector answers. What it received is kept as
`ReceivedSpan`s, attribute values decoded to Python values; requests that break the protocol get
the collector's error status and are recorded in `violations`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: str  # SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT, ...
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str  # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR
    status_message: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    def strings(self) -> list[str]:
        """Every string the span carries: its name, attribute and event values, status message."""
        found = [self.name, self.status_message]
        for attributes in (self.attributes, *(attrs for _, attrs in self.events)):
            for value in attributes.values():
                found += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        return found


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _span(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
        kind=Span.SpanKind.Name(span.kind), start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
        attributes=_attributes(span.attributes), status=Status.StatusCode.Name(span.status.code),
        status_message=span.status.message, events=[(e.name, _attributes(e.attributes)) for e in span.events],
        resource=resource, scope=scope)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver = self.server.receiver
        problem = None
        if self.path != "/v1/traces":
            problem = (404, f"POST {self.path}: the traces path is /v1/traces")
        elif self.headers.get("Content-Type") != PROTOBUF:
            problem = (415, f"Content-Type {self.headers.get('Content-Type')!r}, not {PROTOBUF}")
        else:
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except DecodeError as error:
                problem = (400, f"not an ExportTraceServiceRequest: {error}")
            else:
                receiver._received(request)
        if problem is not None:
            receiver.violations.append(problem[1])
            self._answer(problem[0], b"")
        else:
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class OTLPReceiver:
    """`with OTLPReceiver() as collector:` point OTEL_EXPORTER_OTLP_ENDPOINT at `collector.url`."""

    def __init__(self) -> None:
        self.requests = 0
        self.violations: list[str] = []
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.name == name]

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        return sorted((span for span in self.spans if span.parent_id == parent.span_id), key=lambda s: s.start_ns)

    def _received(self, request: ExportTraceServiceRequest) -> None:
        spans = [_span(span, _attributes(resource_spans.resource.attributes), scope_spans.scope.name)
                 for resource_spans in request.resource_spans for scope_spans in resource_spans.scope_spans
                 for span in scope_spans.spans]
        with self._lock:
            self.requests += 1
            self._spans += spans

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
