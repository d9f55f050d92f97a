"""The App's spans: one per webhook delivery it processes (`fixloop delivery`) and one per workflow
dispatch (`fixloop dispatch`, under the delivery that asked for it). Without an endpoint (or when tracing
cannot be set up: one warning) the tracer is OpenTelemetry's no-op one, and the same code records nothing.
Every string a span carries passes through the App's Redactor, as its logs do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import NoOpTracer, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from bot.secrets import Redactor
from bot.telemetry import header_values, traces_endpoint, tracing_off
from bot.telemetry.export import Pipeline

OUTCOME_LIMIT = 500
Dispatched = Callable[[int | None, str | None], None]  # told the run's id and URL, when GitHub gives them


class AppTracing:
    """The App's tracer (OTEL_EXPORTER_OTLP_ENDPOINT's collector, else none) and its two kinds of span."""

    def __init__(self, endpoint: str | None, *, environ: Mapping[str, str], warn: Callable[[str], None],
                 redactor: Redactor) -> None:
        """`redactor`: the App's (it learns the collector's credentials)."""
        redactor.add(*header_values(environ))
        self._redact = redactor.text
        self._pipeline: Pipeline | None = None
        try:
            if endpoint:
                self._pipeline = Pipeline(endpoint, environ=environ, warn=lambda line: warn(self._redact(line)))
        except Exception as error:  # noqa: BLE001 - telemetry never stops the App
            warn(self._redact(tracing_off(error)))
        self._tracer: Tracer = self._pipeline.tracer if self._pipeline else NoOpTracer()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], warn: Callable[[str], None], redactor: Redactor) -> AppTracing:
        return cls(traces_endpoint(environ), environ=environ, warn=warn, redactor=redactor)

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
                                                attributes=self._redacted(attributes)) as span:

            def decided(outcome: str) -> None:
                span.set_attributes(self._redacted({
                    "fixloop.delivery.decision": outcome.split(":", 1)[0].split(" ", 1)[0],
                    "fixloop.delivery.outcome": self._redact(outcome)[:OUTCOME_LIMIT]}))

            yield decided

    @contextmanager
    def dispatch(self, repository: str, kind: str, session_id: str) -> Iterator[Dispatched]:
        """A workflow dispatch's span; call what this yields with the run's id and URL, when GitHub
        gives them. An exception leaving the block marks the dispatch failed (and goes on)."""
        attributes: dict[str, AttributeValue] = {"fixloop.repository": repository, "fixloop.task.kind": kind,
                                                 "fixloop.session.id": session_id}
        with self._tracer.start_as_current_span("fixloop dispatch", kind=SpanKind.CLIENT,
                                                attributes=self._redacted(attributes), record_exception=False,
                                                set_status_on_exception=False) as span:

            def dispatched(run_id: int | None, run_url: str | None) -> None:
                if run_id is not None:
                    span.set_attribute("cicd.pipeline.run.id", str(run_id))
                if run_url:
                    span.set_attribute("cicd.pipeline.run.url.full", self._redact(run_url))

            try:
                yield dispatched
            except Exception as error:
                span.set_attributes({"fixloop.dispatch.result": "failed", "error.type": type(error).__name__})
                span.set_status(Status(StatusCode.ERROR, self._redact(str(error))[:OUTCOME_LIMIT]))
                raise
            span.set_attribute("fixloop.dispatch.result", "ok")

    def close(self) -> None:
        """Send the spans not sent yet, waiting a bounded time."""
        if self._pipeline is not None:
            self._pipeline.close()

    def _redacted(self, attributes: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        """`attributes` with their strings redacted (the App's are strings and numbers)."""
        return {name: self._redact(value) if isinstance(value, str) else value for name, value in attributes.items()}
