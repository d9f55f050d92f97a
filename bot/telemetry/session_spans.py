"""A session's trace, built from its events (a sink, like the trajectory).

`fixloop session` is the root; under it the baseline's `fixloop validation` and one `fixloop iteration`
per round; under an iteration its model calls (`chat {model}`, GenAI semantic conventions), tool
calls (`execute_tool {name}`) and validation run. Times come from the events: a span ends when its
event arrives and starts `duration_s` earlier.

Spans carry names, numbers and outcomes. How a session ended is its status and a fixed category
(`fixloop.reason`, from its events: which limit, a refusal), never the reason's text, which can quote the
model server's answer and, through it, the prompt. The session's own numbers are `fixloop.*` attributes,
so that a backend adding up `gen_ai.usage.*` counts each model call once. With `telemetry: {content: true}`
they also carry the task, the model's replies, tool names and input and output, the validation feedback,
the ending's reason and the limits' details, each passed through the session's Redactor (and only then cut
to CONTENT_LIMIT characters, so that no part of a secret escapes it). Every other string is redacted too.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from bot.agent.events import (
    ChangesMade,
    Event,
    IterationEnded,
    IterationStarted,
    LimitReached,
    ModelCalled,
    SessionEnded,
    SessionStarted,
    ToolCalled,
    ValidationRan,
)
from bot.agent.tools import BASH, EDITOR
from bot.agent.usage import Usage
from bot.search import TOOL_NAME as SEARCH
from bot.secrets import Redactor
from bot.telemetry.export import Pipeline

CONTENT_LIMIT = 16_000  # characters of one content attribute
TOOLS = {EDITOR, BASH, SEARCH}  # the names a tool call's span may carry: the model's own, only as content
CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # a tool call's id, as providers make them (else not sent)
# config `provider` → (gen_ai.provider.name, gen_ai.system: the same, as the attribute it replaces names it)
GENAI_PROVIDERS = {
    "anthropic": ("anthropic", "anthropic"),
    "bedrock": ("aws.bedrock", "aws.bedrock"),
    "vertex": ("gcp.vertex_ai", "gcp.vertex_ai"),
    "foundry": ("azure.ai.inference", "az.ai.inference"),
    "openai": ("openai", "openai"),
}

Attributes = dict[str, AttributeValue]


class SessionTracer:
    """The sink that turns a session's events into spans; `close` sends the last of them."""

    def __init__(self, endpoint: str, *, environ: Mapping[str, str], redactor: Redactor, content: bool) -> None:
        self._environ, self._redactor, self._content = environ, redactor, content
        self._pipeline = Pipeline(endpoint, environ=environ, warn=self._warn)
        self._session: Span | None = None
        self._iteration: Span | None = None
        self._model = ""
        self._chat: Attributes = {}  # what every model call of the session shares
        # What says, without the reason's text, why a session was not validated.
        self._limit: str | None = None  # the last limit reached
        self._iteration_limit: object = None
        self._iterations_failed = 0  # iterations whose validation failed
        self._passed = self._refused = False  # the last iteration's validation passed; the model declined

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self._started(event)
        elif isinstance(event, IterationStarted):
            self._iteration = self._pipeline.tracer.start_span(
                "fixloop iteration", context=self._under(self._session), attributes={"fixloop.iteration": event.n})
        elif isinstance(event, ModelCalled):
            self._model_called(event)
        elif isinstance(event, ToolCalled):
            self._tool_called(event)
        elif isinstance(event, ChangesMade) and self._iteration is not None:
            self._iteration.set_attribute("fixloop.changes.files", len(event.changed_files))
        elif isinstance(event, ValidationRan):
            self._validated(event)
        elif isinstance(event, IterationEnded) and self._iteration is not None:
            self._passed = event.passed
            self._iterations_failed += event.feedback is not None
            self._iteration.set_attributes({"fixloop.iteration.turns": event.turns,
                                            "fixloop.iteration.passed": event.passed, **_usage(event.usage)})
            if self._content and event.feedback is not None:
                self._iteration.set_attribute("fixloop.validation.feedback", self._text(event.feedback))
            self._iteration.end()
            self._iteration = None
        elif isinstance(event, LimitReached) and self._session is not None:
            self._limit = event.limit
            limit: Attributes = {"fixloop.limit": event.limit}
            if self._content:
                limit["fixloop.limit.detail"] = self._text(event.detail)
            self._session.add_event("fixloop.limit_reached", self._clean(limit))
        elif isinstance(event, SessionEnded):
            self._ended(event)

    def close(self) -> None:
        """End the spans a session cut short left open, then send what is not sent yet (bounded)."""
        for span in (self._iteration, self._session):
            if span is not None and span.is_recording():
                span.set_status(Status(StatusCode.ERROR, "the session stopped before its end"))
                span.end()
        self._pipeline.close()

    def _started(self, event: SessionStarted) -> None:
        attributes: Attributes = {
            "fixloop.session.id": event.session_id, "fixloop.task.kind": event.task_kind,
            "fixloop.model": event.model, "fixloop.provider": event.provider, "fixloop.repository": event.repo,
            "vcs.ref.base.revision": event.base_commit, "fixloop.confined": event.confined,
            **_pipeline_run(self._environ),
        }
        if self._content:
            attributes["fixloop.task"] = self._text(event.task)
        self._session = self._pipeline.tracer.start_span("fixloop session", attributes=self._clean(attributes))
        self._model = event.model
        self._iteration_limit = event.limits.get("iterations")
        provider, system = GENAI_PROVIDERS.get(event.provider, (event.provider, event.provider))
        self._chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.system": system,
                      "gen_ai.request.model": event.model, "gen_ai.conversation.id": event.session_id}

    def _model_called(self, event: ModelCalled) -> None:
        self._refused = event.stop_reason == "refusal"
        usage = event.usage
        attributes: Attributes = {
            **self._chat,
            # The GenAI conventions count cached prompt tokens as input tokens too.
            "gen_ai.usage.input_tokens": usage.input_tokens + usage.cache_read_input_tokens
            + usage.cache_creation_input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
            "gen_ai.response.finish_reasons": [event.stop_reason],
            "fixloop.turn": event.turn, "fixloop.tool_calls": event.tool_calls,
        }
        if self._content:
            attributes["gen_ai.output.messages"] = self._json([{
                "role": "assistant", "parts": [{"type": "text", "content": event.text}],
                "finish_reason": event.stop_reason}])
        self._finished(f"chat {self._model}", event.duration_s, attributes, kind=SpanKind.CLIENT)

    def _tool_called(self, event: ToolCalled) -> None:
        name = event.name if self._content or event.name in TOOLS else "unknown"
        attributes: Attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                  "fixloop.turn": event.turn}
        if self._content or CALL_ID.fullmatch(event.call_id):
            attributes["gen_ai.tool.call.id"] = event.call_id
        if self._content:
            attributes["gen_ai.tool.call.arguments"] = self._json(event.input)
            attributes["gen_ai.tool.call.result"] = self._text(event.result)
        if event.is_error:
            attributes["error.type"] = "tool_error"
        span = self._finished(f"execute_tool {self._redactor.text(name)}", event.duration_s, attributes)
        if event.is_error:
            span.set_status(Status(StatusCode.ERROR))

    def _validated(self, event: ValidationRan) -> None:
        result = event.result
        attributes: Attributes = {
            "fixloop.iteration": event.iteration, "fixloop.validation.passed": result.passed,
            "fixloop.validation.commands": len(result.commands),
            "fixloop.validation.failed_commands": sum(not outcome.passed for outcome in result.commands),
            "fixloop.validation.failed_tests": len(result.failed_tests),
        }
        parent = self._iteration if event.iteration else self._session  # 0: the baseline, before any iteration
        self._finished("fixloop validation", sum(outcome.duration_s for outcome in result.commands), attributes,
                       parent=parent)

    def _ended(self, event: SessionEnded) -> None:
        if self._iteration is not None:
            self._iteration.end()
            self._iteration = None
        if self._session is None:
            return
        category = self._category(event)
        attributes: Attributes = {"fixloop.status": event.status, "fixloop.reason": category,
                                  "fixloop.user_error": event.user_error, **_usage(event.usage)}
        if self._content:
            attributes["fixloop.reason.detail"] = self._text(event.reason)
        if event.cost_usd is not None:
            attributes["fixloop.cost_usd"] = event.cost_usd
        self._session.set_attributes(self._clean(attributes))
        if event.status == "error":
            self._session.set_status(Status(StatusCode.ERROR, category))
        self._session.end()

    def _category(self, event: SessionEnded) -> str:
        """Why the session ended, in fixed words taken from its events and status, not from the reason's text."""
        if event.status == "validated":
            return "validation passed"
        if event.status == "error":
            return "user error" if event.user_error else "error"
        if event.status == "cancelled":
            return "cancelled"
        if self._limit is not None:
            return f"limit reached: {self._limit}"
        if self._refused:
            return "the model declined the task"
        if self._passed:
            return "the change was refused"  # validation passed; a protected path, a secret or no change
        if self._iterations_failed == self._iteration_limit:
            return "limit reached: iterations"
        return "not validated"

    def _finished(self, name: str, duration_s: float, attributes: Attributes, *, kind: SpanKind = SpanKind.INTERNAL,
                  parent: Span | None = None) -> Span:
        """A span that ends now and began `duration_s` ago, under `parent` (default: the iteration)."""
        end = time.time_ns()
        span = self._pipeline.tracer.start_span(name, context=self._under(parent or self._iteration), kind=kind,
                                                attributes=self._clean(attributes),
                                                start_time=end - round(duration_s * 1e9))
        span.end(end_time=end)
        return span

    def _under(self, span: Span | None) -> Context | None:
        return trace.set_span_in_context(span) if span is not None else None

    def _text(self, text: str) -> str:
        return self._redactor.text(text)[:CONTENT_LIMIT]

    def _json(self, data: Any) -> str:
        return json.dumps(self._redactor.data(data), ensure_ascii=False)[:CONTENT_LIMIT]

    def _clean(self, attributes: Attributes) -> Attributes:
        """`attributes` with every string redacted (content was, before it was cut: this is for the rest; the only
        sequence, the finish reasons, holds fixed words)."""
        return {name: self._redactor.text(value) if isinstance(value, str) else value
                for name, value in attributes.items()}

    def _warn(self, line: str) -> None:
        print(f"fixloop: warning: {self._redactor.text(line)}", file=sys.stderr, flush=True)


def _usage(usage: Usage) -> Attributes:
    return {f"fixloop.usage.{name}": getattr(usage, name) for name in Usage.model_fields}


def _pipeline_run(environ: Mapping[str, str]) -> Attributes:
    """The GitHub Actions run the session is part of, in the CI/CD and VCS semantic conventions."""
    found: Attributes = {}
    run_id, repository = environ.get("GITHUB_RUN_ID"), environ.get("GITHUB_REPOSITORY")
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    if run_id:
        found["cicd.pipeline.run.id"] = run_id
    if workflow := environ.get("GITHUB_WORKFLOW"):
        found["cicd.pipeline.name"] = workflow
    if repository:
        found["vcs.repository.url.full"] = f"{server}/{repository}"
        if run_id:
            found["cicd.pipeline.run.url.full"] = f"{server}/{repository}/actions/runs/{run_id}"
    return found
