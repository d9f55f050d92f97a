"""`fixloop action --event FILE [--dry-run]`: what the Action would do for a saved event, without
GitHub: its decision and plan, and (without --dry-run) the session itself, run on the local checkout
with the configured model, and the pull request and comment it would publish.

A local checkout stands in for the repository on GitHub: its HEAD is the default branch (the config
is read from it), whoever asks has write access (a rehearsal is its owner's), and the issue, pull
request or workflow run comes from the event itself. Nothing is written anywhere: every comment,
reaction, cancellation and check run is printed instead, exactly as it would be sent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from bot.action import render
from bot.action.plan import Plan, Refusal, plan_session
from bot.action.publish import marker
from bot.agent.model import make_model
from bot.config import Config
from bot.errors import EXIT_USAGE, ConfigError
from bot.github.client import IssueInfo, PullInfo, WorkflowRunInfo
from bot.github.events import Event, parse_event
from bot.handler import Answered, Handler, acknowledge
from bot.reporting.terminal import TerminalReporter
from bot.secrets import Redactor
from bot.session import SessionSpec, run_session
from bot.task import WORKFLOW_FILE
from bot.workspace import read_file_at, repository_root, resolve_commit

# How to tell a saved payload's event by its keys, first match wins (GitHub sends the name in a header).
_SHAPES = (("workflow_dispatch", ("inputs", "workflow")), ("workflow_run", ("workflow_run",)),
           ("check_suite", ("check_suite",)), ("check_run", ("check_run",)),
           ("pull_request_review_comment", ("comment", "pull_request")), ("issue_comment", ("comment", "issue")),
           ("issues", ("issue", "label")), ("pull_request", ("pull_request",)))


def event_name_of(payload: dict[str, Any]) -> str:
    for name, keys in _SHAPES:
        if all(key in payload for key in keys):
            return name
    raise ConfigError("cannot tell which event this payload is; pass --event-name (e.g. issues, issue_comment)")


class LocalRepository:
    """A `Repository` over a local checkout and one event's payload, printing what would be written."""

    def __init__(self, repo: Path, payload: dict[str, Any], out: TextIO, redactor: Redactor) -> None:
        self.repo, self.payload, self.out, self.redactor = repo, payload, out, redactor
        self.head = resolve_commit(repo, "HEAD")
        self.name = str((payload.get("repository") or {}).get("full_name") or "")
        self.default_branch = str((payload.get("repository") or {}).get("default_branch") or "main")

    def say(self, what: str, body: str = "") -> None:
        text = f"would {what}" + ("\n" + "\n".join(f"    {line}" for line in body.splitlines()) if body else "")
        print(self.redactor.text(text), file=self.out)

    # -- read: the checkout and the event ------------------------------------------------------
    def file_text(self, path: str, ref: str) -> str | None:
        return read_file_at(self.repo, self.head, path)

    def permission(self, login: str) -> str:
        return "admin"

    def branch_sha(self, branch: str) -> str | None:
        return self.head if branch == self.default_branch else None  # fixloop's own branch is not there yet

    def open_pull_for(self, head_branch: str) -> PullInfo | None:
        return None

    def issue(self, number: int) -> IssueInfo:
        issue = self.payload.get("issue") or {}
        if issue.get("number") != number:
            return IssueInfo(number, f"#{number}", "", "someone", "", is_pull_request=False)
        return IssueInfo(number, str(issue.get("title") or ""), str(issue.get("body") or ""),
                         str((issue.get("user") or {}).get("login") or ""), str(issue.get("html_url") or ""),
                         is_pull_request="pull_request" in issue)

    def pull(self, number: int) -> PullInfo:
        pull = self.payload.get("pull_request") or {}
        head, base = pull.get("head") or {}, pull.get("base") or {}
        issue = self.issue(number)
        return PullInfo(number=number, title=str(pull.get("title") or issue.title),
                         body=str(pull.get("body") or issue.body),
                         author=str((pull.get("user") or {}).get("login") or issue.author), url=issue.url,
                         head_ref=str(head.get("ref") or "(the pull request's branch)"),
                         head_sha=str(head.get("sha") or self.head),
                         head_repository=str((head.get("repo") or {}).get("full_name") or self.name),
                         base_ref=str(base.get("ref") or self.default_branch), draft=bool(pull.get("draft")))

    def workflow_run(self, run_id: int) -> WorkflowRunInfo:
        run = self.payload.get("workflow_run") or {}
        return WorkflowRunInfo(id=run_id, name=str(run.get("name") or "CI"),
                               head_sha=str(run.get("head_sha") or self.head),
                               head_branch=str(run.get("head_branch") or self.default_branch),
                               url=str(run.get("html_url") or ""), conclusion=run.get("conclusion"))

    # -- write: printed, never sent ------------------------------------------------------------
    def comment(self, number: int, body: str) -> str:
        self.say(f"comment on #{number}:", body)
        return "(not posted: a rehearsal)"

    def react(self, comment_id: int, kind: str, content: str) -> None:
        self.say(f"react {content} to {kind} comment {comment_id}")

    def cancel_active_runs(self, workflow_file: str, number: int, *, except_run: int | None) -> list[int]:
        self.say(f"cancel the active runs of {workflow_file} for #{number}")
        return []

    def create_check_run(self, *, name: str, head_sha: str, status: str, output: dict[str, Any],
                         conclusion: str | None = None, details_url: str | None = None,
                         external_id: str | None = None, actions: list[dict[str, str]] | None = None) -> int:
        self.say(f"create check run {name!r} on {head_sha[:10]} ({conclusion or status}): {output.get('title', '')}",
                  str(output.get("summary", "")))
        return 0


def rehearse(event_file: Path, *, event_name: str | None, repo: Path, out: TextIO, dry_run: bool) -> int:
    """Print the decision, the plan and every write for `event_file`, and without `dry_run` run the
    session locally; returns the exit code the Action would have."""
    try:
        payload = json.loads(event_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the event file {event_file}: {error}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{event_file} is not a webhook payload (a JSON object)")
    name = event_name or event_name_of(payload)
    event = parse_event(name, payload)
    if not isinstance(event, Event):
        print(f"Decision: fixloop does not act on {name}.{payload.get('action') or ''} events.", file=out)
        return 0
    redactor = Redactor.from_environment(os.environ)
    github = LocalRepository(repository_root(repo), payload, out, redactor)
    handled = Handler(github, redactor=redactor, workflow_file=WORKFLOW_FILE, check_sha=github.head).handle(
        event, github.permission)
    if isinstance(handled, Answered):
        print(f"Decision: {handled.outcome}", file=out)
        return EXIT_USAGE if handled.invalid_config else 0
    run = handled.run
    print(redactor.text(f"Decision: run a {run.task.kind} session for {run.origin.key()}: {run.task.title}\n"
                        f"  instructions: {run.task.instructions}"), file=out)
    acknowledge(github, run)
    plan = plan_session(run.task, run.origin, github, handled.config, handled.default_branch)
    if isinstance(plan, Refusal):
        if plan.number:
            github.comment(plan.number, f"fixloop did not start: {plan.reason}")
        print(redactor.text(f"Not started: {plan.reason}"), file=out)
        return 0
    print(redactor.text(
        f"Plan: start from {plan.base_sha[:10]} ({plan.fetch_ref}); push {plan.branch}; open a draft pull request "
        f"against {plan.pr_base}" + (f" that fixes #{plan.fixes}" if plan.fixes else "")
        + (f"; report on #{plan.comment_on}" if plan.comment_on else "") + f"; check runs on {plan.check_sha[:10]}.\n"
        f"  validation: {'; '.join(handled.config.validation)}"), file=out)
    if dry_run:
        print("A session would now run (the model, the tools, validation), then publish. Nothing was sent.", file=out)
        return 0
    return _session(plan, handled.config, github, redactor, out)


def _session(plan: Plan, config: Config, github: LocalRepository, redactor: Redactor, out: TextIO) -> int:
    """The session on the local checkout (a local branch, no push), then what publishing would send."""
    report = run_session(SessionSpec(repo=github.repo, task=plan.task, config=config, model=make_model(config),
                                     base=plan.base_sha, sinks=[TerminalReporter(redactor)]))
    links = render.Links()
    if report.status == "validated" and report.commit:
        title = f"fixloop: {plan.task.title}"[:250]
        body = render.pull_request_body(report, task_source=plan.task.source, fixes=plan.fixes, links=links,
                                        marker=marker(plan.origin.correlation_id))
        github.say(f"push {report.commit[:10]} to {plan.branch} (here: local branch {report.branch}) and open a "
                    f"draft pull request against {plan.pr_base}: {title}", body)
    if plan.comment_on is not None:
        github.comment(plan.comment_on, render.outcome_comment(report, pull_url="(the draft pull request)" if
                                                               report.commit else None, updated=False, problem=None,
                                                               links=links))
    print(redactor.text(f"Session: {report.status}: {report.reason} ({Path(report.trajectory).parent}). "
                        "Nothing was sent."), file=out)
    return report.exit_code
