"""Where spans go: a tracer whose spans a BatchSpanProcessor hands to the OTLP/HTTP exporter in its
own thread, so that neither a slow nor an absent collector holds up the work being traced.

The exporter logs every failed attempt and every retry; fixloop keeps those lines, and everything else the
OpenTelemetry packages log (which can quote the collector's credentials), off stderr and reports a
failure once itself (`warn`). At the end, the last spans are waited for at most
OTEL_BSP_EXPORT_TIMEOUT (milliseconds; here 5 s by default); after that the exporter stops retrying
and what is left is dropped.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

DEFAULT_FLUSH_TIMEOUT = 5.0  # seconds
REASON_LIMIT = 300


class _ExporterLog(logging.Filter):
    """Drops the OTLP exporter's log records, keeping the last one's message as the reason to report."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        self.last = record.getMessage()
        return False


_EXPORTER_LOG = _ExporterLog()
_SILENT = logging.NullHandler()


class _ReportedOnce(SpanExporter):
    """The OTLP exporter, whose first failure is reported through `warn`, and only that one."""

    def __init__(self, endpoint: str, warn: Callable[[str], None]) -> None:
        self._otlp = OTLPSpanExporter(endpoint=endpoint)
        url = urlsplit(endpoint)
        self._where = f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else "")  # no credentials
        self._warn = warn
        self._lock = threading.Lock()
        self._warned = self._stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._otlp.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.report(_EXPORTER_LOG.last or "the collector did not accept them")
        return result

    def report(self, why: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        self._warn(f"OpenTelemetry spans cannot be sent to {self._where} ({why[:REASON_LIMIT]}); they are dropped, "
                   "nothing else is affected")

    def shutdown(self) -> None:
        """Stop, also interrupting the wait between retries of an export under way."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._otlp.shutdown()  # type: ignore[no-untyped-call]  # not annotated in the exporter


class Pipeline:
    """`tracer`'s spans are sent to `endpoint` (an OTLP/HTTP traces URL) in the background until `close`."""

    def __init__(self, endpoint: str, *, environ: Mapping[str, str], warn: Callable[[str], None]) -> None:
        """Raises what the SDK raises for settings it refuses, and ValueError for an endpoint that is not an
        http(s) URL with a host."""
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("the endpoint is not an http(s) URL with a host")
        sdk = logging.getLogger("opentelemetry")
        sdk.addHandler(_SILENT)  # once: addHandler ignores repeats
        sdk.propagate = False
        logging.getLogger(OTLPSpanExporter.__module__).addFilter(_EXPORTER_LOG)  # once: addFilter ignores repeats
        _EXPORTER_LOG.last = ""
        self._exporter = _ReportedOnce(endpoint, warn)
        self._provider = TracerProvider(resource=Resource.create(_service(environ)), shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(self._exporter))
        self._flush_timeout = _flush_timeout(environ)
        self.tracer: Tracer = self._provider.get_tracer("fixloop")

    def close(self) -> None:
        """Send the spans not sent yet, waiting for them a bounded time; past it they are dropped."""
        flushing = threading.Thread(target=self._provider.shutdown, name="fixloop-telemetry-flush", daemon=True)
        flushing.start()
        flushing.join(self._flush_timeout)
        if flushing.is_alive():
            last = f": {_EXPORTER_LOG.last}" if _EXPORTER_LOG.last else ""
            self._exporter.report(f"no answer within {self._flush_timeout:g} s{last}")
            self._exporter.shutdown()


def _service(environ: Mapping[str, str]) -> dict[str, str]:
    service = {"service.name": environ.get("OTEL_SERVICE_NAME") or "fixloop"}
    with suppress(PackageNotFoundError):  # run from a checkout that was not installed: no version
        service["service.version"] = version("fixloop")
    return service


def _flush_timeout(environ: Mapping[str, str]) -> float:
    """OTEL_BSP_EXPORT_TIMEOUT in seconds; the default for a value that is no usable wait."""
    try:
        seconds = float(environ.get("OTEL_BSP_EXPORT_TIMEOUT", "")) / 1000
    except ValueError:
        return DEFAULT_FLUSH_TIMEOUT
    return seconds if math.isfinite(seconds) and 0 <= seconds <= threading.TIMEOUT_MAX else DEFAULT_FLUSH_TIMEOUT
