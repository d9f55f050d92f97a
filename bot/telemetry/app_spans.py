"""The App's spans: one per webhook delivery it processes (`fixloop delivery`) and one per workflow
dispatch (`fixloop dispatch`, under the delivery that asked for it). Without an endpoint the tracer
is OpenTelemetry's no-op one, and the same code records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import NoOpTracer, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from bot.telemetry import traces_endpoint
from bot.telemetry.export import Pipeline

OUTCOME_LIMIT = 500
Dispatched = Callable[[int | None, str | None], None]  # told the run's id and URL, when GitHub gives them


class AppTracing:
    """The App's tracer (OTEL_EXPORTER_OTLP_ENDPOINT's collector, else none) and its two kinds of span."""

    def __init__(self, endpoint: str | None, *, environ: Mapping[str, str], warn: Callable[[str], None]) -> None:
        self._pipeline = Pipeline(endpoint, environ=environ, warn=warn) if endpoint else None
        self._tracer: Tracer = self._pipeline.tracer if self._pipeline else NoOpTracer()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], warn: Callable[[str], None]) -> AppTracing:
        return cls(traces_endpoint(environ), environ=environ, warn=warn)

    @contextmanager
    def delivery(self, delivery: str, event: str, payload: Any) -> Iterator[Callable[[str], None]]:
        """A delivery's span; call what this yields with the delivery's outcome (`decision: detail`)."""
        attributes: dict[str, AttributeValue] = {"fixloop.delivery.id": delivery, "fixloop.delivery.event": event}
        fields = payload if isinstance(payload, dict) else {}
        if isinstance(action := fields.get("action"), str):
            attributes["fixloop.delivery.action"] = action
        repository = fields.get("repository")
        if isinstance(repository, dict) and isinstance(name := repository.get("full_name"), str):
            attributes["fixloop.repository"] = name
        if isinstance(repository, dict) and isinstance(url := repository.get("html_url"), str):
            attributes["vcs.repository.url.full"] = url
        with self._tracer.start_as_current_span("fixloop delivery", kind=SpanKind.CONSUMER,
                                                attributes=attributes) as span:

            def decided(outcome: str) -> None:
                span.set_attributes({"fixloop.delivery.decision": outcome.split(":", 1)[0].split(" ", 1)[0],
                                     "fixloop.delivery.outcome": outcome[:OUTCOME_LIMIT]})

            yield decided

    @contextmanager
    def dispatch(self, repository: str, kind: str, session_id: str) -> Iterator[Dispatched]:
        """A workflow dispatch's span; call what this yields with the run's id and URL, when GitHub
        gives them. An exception leaving the block marks the dispatch failed (and goes on)."""
        attributes: dict[str, AttributeValue] = {"fixloop.repository": repository, "fixloop.task.kind": kind,
                                                 "fixloop.session.id": session_id}
        with self._tracer.start_as_current_span("fixloop dispatch", kind=SpanKind.CLIENT, attributes=attributes,
                                                record_exception=False, set_status_on_exception=False) as span:

            def dispatched(run_id: int | None, run_url: str | None) -> None:
                if run_id is not None:
                    span.set_attribute("cicd.pipeline.run.id", str(run_id))
                if run_url:
                    span.set_attribute("cicd.pipeline.run.url.full", run_url)

            try:
                yield dispatched
            except Exception as error:
                span.set_attributes({"fixloop.dispatch.result": "failed", "error.type": type(error).__name__})
                span.set_status(Status(StatusCode.ERROR, str(error)[:OUTCOME_LIMIT]))
                raise
            span.set_attribute("fixloop.dispatch.result", "ok")

    def close(self) -> None:
        """Send the spans not sent yet, waiting a bounded time."""
        if self._pipeline is not None:
            self._pipeline.close()
