"""OpenTelemetry traces of sessions (`session_spans`) and of the App's work (`app_spans`), sent over
OTLP/HTTP (protobuf) with the official SDK (`export`).

Tracing is on when an endpoint is known: `telemetry.endpoint` in the config, else the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT. The SDK is imported only then,
so that a session without tracing does not pay for it. Sending spans never stops nor fails a
session: they go out in the background, the last ones are waited for a bounded time, and a
collector that cannot be reached is reported once (see `export`); tracing that cannot be set up (an
endpoint that is not an http(s) URL, an OTEL_* setting the SDK refuses) is one warning line, and the
session goes on untraced.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from bot.agent.events import Sink
    from bot.config import Telemetry
    from bot.secrets import Redactor

TRACES_PATH = "v1/traces"
HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")  # `name=value,...`
WHY_LIMIT = 300  # characters of why tracing is off


def traces_endpoint(environ: Mapping[str, str], configured: str | None = None) -> str | None:
    """The OTLP/HTTP URL spans are sent to, or None: tracing is off.

    `configured` and OTEL_EXPORTER_OTLP_ENDPOINT are base URLs (the signal's path is added, as the
    OpenTelemetry specification says); OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is.
    OTEL_SDK_DISABLED=true turns tracing off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if configured:
        return _signal_url(configured)
    if traces := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return traces
    if base := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return _signal_url(base)
    return None


def _signal_url(base: str) -> str:
    return base.strip() + ("" if base.strip().endswith("/") else "/") + TRACES_PATH


def header_values(environ: Mapping[str, str]) -> list[str]:
    """The collector's credentials, to redact: each item of the OTLP headers variables and its value, as written
    and URL-decoded (the SDK's own messages quote an item it cannot parse)."""
    found: list[str] = []
    for name in HEADER_VARIABLES:
        for item in environ.get(name, "").split(","):
            value = item.partition("=")[2]
            found += [item.strip(), value.strip(), unquote(value).strip()]
    return found


def tracing_off(error: Exception) -> str:
    """The warning for tracing that could not be set up (the caller redacts it)."""
    why = str(error).strip().partition("\n")[0][:WHY_LIMIT] or type(error).__name__
    return f"OpenTelemetry tracing is off ({why}); nothing else is affected"


@contextmanager
def session_tracing(settings: Telemetry, environ: Mapping[str, str], redactor: Redactor) -> Iterator[list[Sink]]:
    """The sinks that trace a session: one when tracing is on, none when it is off or cannot be set up (one
    warning line). Leaving the block ends what is still open and sends the last spans, waiting a bounded time.
    `redactor` learns the collector's credentials."""
    redactor.add(*header_values(environ))
    endpoint = traces_endpoint(environ, settings.endpoint) if settings.enabled else None
    if endpoint is None:
        yield []
        return
    try:
        from bot.telemetry.session_spans import SessionTracer  # the SDK, only when tracing is on

        tracer = SessionTracer(endpoint, environ=environ, redactor=redactor, content=settings.content)
    except Exception as error:  # noqa: BLE001 - telemetry never fails a session
        print(f"fixloop: warning: {redactor.text(tracing_off(error))}", file=sys.stderr, flush=True)
        yield []
        return
    try:
        yield [tracer]
    finally:
        tracer.close()
