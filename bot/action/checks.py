"""Check runs as the session goes: one per iteration (`fixloop / iteration N`), completed when
its validation finishes, with annotations at failing tests' file:line.

A sink of session events. A failure to talk to GitHub here is reported and survived: the
session's work and its honest ending must not depend on a progress display.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.action import render
from bot.agent.events import (
    ChangesMade,
    Event,
    IterationStarted,
    ModelCalled,
    SessionEnded,
    ToolCalled,
    ValidationRan,
)
from bot.agent.usage import Usage
from bot.errors import GitHubError
from bot.github.client import GitHubClient
from bot.github.limits import batches
from bot.search import TOOL_NAME as SEARCH_TOOL
from bot.secrets import Redactor


class CheckRunReporter:
    def __init__(self, github: GitHubClient, *, head_sha: str, task_title: str, redactor: Redactor,
                 warn: Callable[[str], None], details_url: str | None = None) -> None:
        self.github, self.head_sha, self.task_title = github, head_sha, task_title
        self.redactor, self.warn, self.details_url = redactor, warn, details_url
        self.total = Usage()
        self.cost_usd: float | None = 0.0
        self.view: render.IterationView | None = None
        self.check_id: int | None = None
        self.created: list[int] = []

    def __call__(self, event: Event) -> None:
        try:
            self._handle(event)
        except GitHubError as error:
            self.warn(f"check run not updated: {error}")

    def _handle(self, event: Event) -> None:
        view = self.view
        if isinstance(event, IterationStarted):
            self.view = render.IterationView(event.n)
            self.check_id = self.github.create_check_run(
                name=render.iteration_check_name(event.n), head_sha=self.head_sha, status="in_progress",
                output=self.redactor.data(render.iteration_in_progress(self.view, self.task_title)),
                details_url=self.details_url)
            self.created.append(self.check_id)
        elif view is None:
            return
        elif isinstance(event, ModelCalled):
            view.usage = view.usage + event.usage
            self.total, self.cost_usd = self.total + event.usage, event.session_cost_usd
            if event.text.strip():
                view.said.append(event.text.strip())
        elif isinstance(event, ToolCalled):
            view.tool_calls += 1
            if event.name == SEARCH_TOOL:
                view.searches.append(render.Search(str(event.input.get("program", "")), event.result, event.is_error))
        elif isinstance(event, ChangesMade):
            view.diff_stat = event.diff_stat
        elif isinstance(event, ValidationRan) and event.iteration == view.n:
            view.validation = event.result
            self._complete("success" if event.result.passed else "failure")
        elif isinstance(event, SessionEnded) and self.check_id is not None:
            self._complete(render.conclusion_for(event.status), stopped=event.reason)

    def _complete(self, conclusion: str, stopped: str | None = None) -> None:
        assert self.view is not None and self.check_id is not None
        output = render.iteration_done(self.view, total=self.total, cost_usd=self.cost_usd, stopped=stopped)
        failed = self.view.validation.failed_tests if self.view.validation else []
        for index, batch in enumerate(batches(render.failure_annotations(failed))):
            payload = self.redactor.data({**output, "annotations": batch} if batch else output)
            self.github.update_check_run(self.check_id, output=payload, conclusion=conclusion if index == 0 else None)
        self.check_id = None
