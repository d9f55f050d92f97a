"""Trigger rules: an event plus the repository's config → run a Task, reply, stop, or ignore.

This is the one place the App server and `fixloop action` share, so the same event gets the same
decision either way. Who may trigger: people with write, maintain or admin permission. Bots,
fixloop itself included, never trigger (no loops). Fork pull requests never get a session.
Permission lookups are passed in, so the rules stay pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bot.config import Config
from bot.github.commands import Command, UnknownCommand, help_text, parse_command, unknown_reply
from bot.github.events import (
    Event, IssueCommentCreated, IssueLabeled, ReviewCommentCreated, WorkflowDispatch, WorkflowRunCompleted,
)
from bot.task import Context, Target, Task

WRITE_ROLES = frozenset({"admin", "maintain", "write"})
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out"})
DISPATCH_KINDS = frozenset({"issue", "command", "ci_failure", "deflake"})


@dataclass(frozen=True)
class Run:
    task: Task


@dataclass(frozen=True)
class Reply:
    """Answer on the issue or pull request instead of running (help, refusals, bad commands)."""

    number: int
    body: str
    comment_id: int | None = None
    comment_kind: str | None = None


@dataclass(frozen=True)
class Stop:
    number: int
    requester: str


@dataclass(frozen=True)
class Ignore:
    reason: str


Decision = Run | Reply | Stop | Ignore
PermissionOf = Callable[[str], str]


def decide(event: Event, config: Config, *, permission_of: PermissionOf, workflow_file: str = "fixloop.yml") -> Decision:
    if isinstance(event, WorkflowDispatch):
        return _dispatch(event)
    if event.sender.is_bot:
        return Ignore(f"events from bots ({event.sender.login}) never start fixloop")
    if isinstance(event, IssueLabeled):
        return _labeled(event, config, permission_of)
    if isinstance(event, IssueCommentCreated | ReviewCommentCreated):
        return _comment(event, config, permission_of)
    if isinstance(event, WorkflowRunCompleted):
        return _ci_failure(event, config, permission_of, workflow_file)
    return Ignore(f"fixloop does not act on {type(event).__name__}")


def _may_trigger(login: str, permission_of: PermissionOf) -> bool:
    return permission_of(login) in WRITE_ROLES


def _refusal(login: str, what: str) -> str:
    return (
        f"Thanks, @{login}! fixloop only {what} for people with write access to this repository, "
        "so nothing was started. A maintainer can start it for you."
    )


def _labeled(event: IssueLabeled, config: Config, permission_of: PermissionOf) -> Decision:
    if event.label.name.casefold() != config.trigger.label.casefold():
        return Ignore(f"label {event.label.name!r} is not the trigger label {config.trigger.label!r}")
    issue = event.issue
    if not _may_trigger(event.sender.login, permission_of):
        return Reply(issue.number, _refusal(event.sender.login, "runs on labels"))
    target = Target(repository=event.repository.full_name, number=issue.number, pull_request=issue.is_pull_request,
                    requester=event.sender.login)
    return Run(Task(kind="issue", title=issue.title, source=f"issue #{issue.number} by @{issue.user.login}",
                    instructions=f"Resolve issue #{issue.number} (labelled {event.label.name!r} by @{event.sender.login}).",
                    context=[Context(source=f"issue #{issue.number} by @{issue.user.login}",
                                     text=f"{issue.title}\n\n{issue.body or ''}".strip())],
                    target=target))


def _comment(event: IssueCommentCreated | ReviewCommentCreated, config: Config, permission_of: PermissionOf) -> Decision:
    parsed = parse_command(event.comment.body, config.trigger.command)
    if parsed is None:
        return Ignore("the comment is not a fixloop command")
    if isinstance(event, IssueCommentCreated):
        number, is_pr, kind = event.issue.number, event.issue.is_pull_request, "issue"
        title = event.issue.title
    else:
        number, is_pr, kind = event.pull_request.number, True, "review"
        title = event.pull_request.title
    login, word = event.sender.login, config.trigger.command

    def answer(body: str) -> Reply:
        return Reply(number, body, event.comment.id, kind)

    if isinstance(parsed, UnknownCommand):
        return answer(unknown_reply(parsed, word))
    if parsed.verb == "help":
        return answer(help_text(word))
    if not _may_trigger(login, permission_of):
        return answer(_refusal(login, "takes commands"))
    if parsed.verb == "stop":
        return Stop(number, login)
    if parsed.verb == "deflake" and not parsed.argument:
        return answer(f"`{word} deflake` needs a test id, e.g. `{word} deflake tests/test_api.py::test_timeout`.")
    return Run(_command_task(event, parsed, number, is_pr, title, kind))


def _command_task(event: IssueCommentCreated | ReviewCommentCreated, command: Command, number: int, is_pr: bool,
                  title: str, kind: str) -> Task:
    login = event.sender.login
    what = "pull request" if is_pr else "issue"
    target = Target(repository=event.repository.full_name, number=number, pull_request=is_pr, requester=login,
                    comment_id=event.comment.id, comment_kind="issue" if kind == "issue" else "review",
                    test_id=command.argument if command.verb == "deflake" else None)
    where = ""
    if isinstance(event, ReviewCommentCreated) and event.comment.path:
        where = f" about {event.comment.path}" + (f" line {event.comment.line}" if event.comment.line else "")
    if command.verb == "deflake":
        instructions = f"Test {command.argument!r} is suspected to be flaky. Find out why and fix it."
        task_kind = "deflake"
    else:
        asked = command.argument or ("Try again." if command.verb == "retry" else f"Work on this {what}.")
        instructions = f"@{login} asked on {what} #{number}{where}: {asked}"
        task_kind = "command" if is_pr else "issue"
    context = [Context(source=f"the rest of @{login}'s comment", text=command.rest)] if command.rest else []
    return Task(kind=task_kind, title=title, instructions=instructions, context=context,
                source=f"@{login} on {what} #{number}", target=target)


def _branch_enabled(branch: str, config: Config, default_branch: str) -> bool:
    patterns = config.ci.branches or [default_branch]
    return any(fnmatchcase(branch, pattern) for pattern in patterns)


def _workflow_enabled(run_name: str, run_path: str, config: Config) -> bool:
    if not config.ci.workflows:
        return True
    names = {run_name, run_path, run_path.rsplit("/", 1)[-1]}
    return any(fnmatchcase(name, pattern) for pattern in config.ci.workflows for name in names)


def _ci_failure(event: WorkflowRunCompleted, config: Config, permission_of: PermissionOf, workflow_file: str) -> Decision:
    run = event.workflow_run
    if run.conclusion not in FAILED_CONCLUSIONS:
        return Ignore(f"the workflow run concluded {run.conclusion!r}, not a failure")
    if run.path.rsplit("/", 1)[-1] == workflow_file:
        return Ignore("fixloop does not react to its own workflow")
    if not config.ci.auto:
        return Ignore("automatic CI sessions are off (set `ci: {auto: true}` in .github/fixloop.yml)")
    if run.head_repository and run.head_repository.full_name != event.repository.full_name:
        return Ignore("runs of pull requests from forks never start a session (they must not get secrets)")
    branch = run.head_branch or ""
    if not branch or not _branch_enabled(branch, config, event.repository.default_branch):
        return Ignore(f"branch {branch!r} is not watched (ci.branches)")
    if not _workflow_enabled(run.name or "", run.path, config):
        return Ignore(f"workflow {run.name!r} is not watched (ci.workflows)")
    if not _may_trigger(event.sender.login, permission_of):
        return Ignore(f"@{event.sender.login}, who started the run, has no write access")
    name = run.name or run.path
    return Run(Task(
        kind="ci_failure", title=f"Fix CI: {name} failed on {branch}",
        instructions=f"The workflow {name!r} failed on branch {branch} at {run.head_sha}. Make it pass again.",
        context=[Context(source=f"workflow run {run.id}", text=f"{name} ({run.event}) concluded {run.conclusion}: {run.html_url}")],
        source=f"a failed run of {name} on {branch}",
        target=Target(repository=event.repository.full_name, requester=event.sender.login, ci_run_id=run.id,
                      ci_head_sha=run.head_sha, ci_branch=branch),
    ))


def _dispatch(event: WorkflowDispatch) -> Decision:
    """The App's hand-over: it already checked who asked; the inputs say what to do."""
    inputs = event.inputs or {}
    kind = str(inputs.get("kind") or "")
    raw_target = str(inputs.get("target") or "").strip().lstrip("#")
    if kind not in DISPATCH_KINDS:
        return Ignore(f"workflow_dispatch input kind={kind!r} is not one of {sorted(DISPATCH_KINDS)}")
    if not raw_target.isdigit():
        return Ignore(f"workflow_dispatch input target={raw_target!r} is not a number")
    number = int(raw_target)
    requester = str(inputs.get("requester") or event.sender.login)
    instructions = str(inputs.get("instructions") or "")
    target = Target(repository=event.repository.full_name, requester=requester,
                    correlation_id=str(inputs.get("correlation_id") or "") or None)
    if kind == "ci_failure":
        target = target.model_copy(update={"ci_run_id": number})
        title = f"Fix CI: workflow run {number} failed"
    else:
        target = target.model_copy(update={"number": number, "test_id": instructions if kind == "deflake" else None})
        title = f"#{number}"
    return Run(Task(kind=kind, title=title, instructions=instructions or "Work on the target.",  # type: ignore[arg-type]
                    source=f"@{requester} through the fixloop App", target=target))
