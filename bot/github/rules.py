"""Trigger rules: an event plus the repository's config → run a Task, reply, stop, or ignore.

This is the one place the App server and `fixloop action` share, so the same event gets the same
decision either way. Who may trigger: people with write, maintain or admin permission. Bots,
fixloop itself included, never trigger (no loops), except that a failed CI run on a pull request of
a bot listed in `ci.allowed_bots` (a dependency bot) gets a session. Fork pull requests never get
a session.
Permission lookups are passed in, so the rules stay pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from bot.config import Config
from bot.errors import MalformedEvent
from bot.github.commands import (
    CAMPAIGN_ACTIONS,
    CONTINUE,
    Command,
    UnknownCommand,
    help_text,
    parse_command,
    unknown_reply,
)
from bot.github.events import (
    CheckRunRequestedAction,
    CheckSuiteCompleted,
    Event,
    IssueCommentCreated,
    IssueLabeled,
    ReviewCommentCreated,
    User,
    WorkflowDispatch,
    WorkflowRunCompleted,
)
from bot.github.tracking import Tracked, read_tracked
from bot.task import WORKFLOW_FILE, Comment, Context, FailedRun, Origin, Task, Thread, from_inputs, split_head

WRITE_ROLES = frozenset({"admin", "maintain", "write"})
ACTIONS_BOT = "github-actions[bot]"  # who pushes with a workflow's GITHUB_TOKEN, fixloop's Action included
SESSION_CHECK = "fixloop"  # the name of fixloop's session check run; its iterations' start with it
FAILED_CONCLUSIONS = frozenset({"failure", "timed_out"})


@dataclass(frozen=True)
class Run:
    task: Task
    origin: Origin


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


@dataclass(frozen=True)
class CampaignAsk:
    """`/fixloop campaign <action>` on an issue: the campaign file is in the issue's body."""

    number: int
    requester: str
    action: str  # one of commands.CAMPAIGN_ACTIONS
    text: str  # the issue's body
    comment_id: int
    options: tuple[str, ...] = ()  # the words after the action (`--from-patch`)


Decision = Run | Reply | Stop | Ignore | CampaignAsk


def addressed_number(decision: Decision) -> int | None:
    """The issue or pull request a decision answers on, if any."""
    if isinstance(decision, Run):
        return decision.origin.number
    return decision.number if isinstance(decision, Reply | Stop | CampaignAsk) else None
PermissionOf = Callable[[str], str]


def decide(event: Event, config: Config, *, permission_of: PermissionOf, workflow_file: str = WORKFLOW_FILE,
           app_slug: str | None = None) -> Decision:
    """What fixloop does about `event`, for the App and the Action alike: Ignore (with the reason),
    Reply (a comment, e.g. to someone without write access), Stop (cancel the target's runs), or Run
    (a Task). Pure: who may ask comes from `permission_of`, everything else from the event and the
    repository's config (read from the default branch by the caller)."""
    if isinstance(event, WorkflowDispatch):
        return _dispatch(event)
    if event.sender.is_bot and not _listed_bot(event, config, app_slug):
        return Ignore(f"events from bots ({event.sender.login}) never start fixloop, except failed CI runs of "
                      "the bots in ci.allowed_bots")
    if isinstance(event, IssueLabeled):
        return _labeled(event, config, permission_of)
    if isinstance(event, IssueCommentCreated | ReviewCommentCreated):
        return _comment(event, config, permission_of)
    if isinstance(event, WorkflowRunCompleted):
        return _ci_failure(event, config, permission_of, workflow_file)
    if isinstance(event, CheckSuiteCompleted):
        return _check_suite_failure(event, config, permission_of, app_slug)
    if isinstance(event, CheckRunRequestedAction):
        return _button(event, permission_of, app_slug)
    return Ignore(f"fixloop does not act on {type(event).__name__}")


def owner_aware(event: Event, lookup: PermissionOf) -> PermissionOf:
    """`lookup`, except that the owner of a personal repository is known to be its admin."""
    owner = event.repository.owner
    personal = owner.login if owner and owner.type == "User" else None
    return lambda login: "admin" if login == personal else lookup(login)


def _listed_bot(event: Event, config: Config, app_slug: str | None) -> bool:
    """Whether `event` is a finished CI run caused by a bot in `ci.allowed_bots` (never fixloop itself)."""
    login = event.sender.login
    own = login == ACTIONS_BOT or (app_slug is not None and login == f"{app_slug}[bot]")
    return isinstance(event, WorkflowRunCompleted | CheckSuiteCompleted) and login in config.ci.allowed_bots and not own


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
    origin = Origin(repository=event.repository.full_name, requester=event.sender.login,
                    target=Thread(number=issue.number, pull_request=issue.is_pull_request))
    return Run(Task(kind="issue", title=issue.title, source=f"issue #{issue.number} by @{issue.user.login}",
                    instructions=(f"Resolve issue #{issue.number} (labelled {event.label.name!r} by "
                                  f"@{event.sender.login})."),
                    context=[Context(source=f"issue #{issue.number} by @{issue.user.login}",
                                     text=f"{issue.title}\n\n{issue.body or ''}".strip())]), origin)


def _comment(event: IssueCommentCreated | ReviewCommentCreated, config: Config,
             permission_of: PermissionOf) -> Decision:
    parsed = parse_command(event.comment.body, config.trigger.command)
    if parsed is None:
        return Ignore("the comment is not a fixloop command")
    kind: Literal["issue", "review"]
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
    if parsed.verb == "campaign":
        action, *options = [w.casefold() for w in parsed.argument.split()] or ["start"]
        if not isinstance(event, IssueCommentCreated) or is_pr or action not in CAMPAIGN_ACTIONS:
            return answer(f"`{word} campaign` goes on an issue whose body holds a campaign file, followed by one of "
                          + ", ".join(f"`{a}`" for a in CAMPAIGN_ACTIONS) + ".")
        return CampaignAsk(number, login, action, event.issue.body or "", event.comment.id, tuple(options))
    if parsed.verb == "deflake" and (not parsed.argument or parsed.argument.startswith("-")):  # not an option
        return answer(f"`{word} deflake` needs a test id, e.g. `{word} deflake tests/test_api.py::test_timeout`.")
    resume = parsed.verb == "retry" and CONTINUE in parsed.argument.split()
    if resume:
        parsed = Command(parsed.verb, " ".join(w for w in parsed.argument.split() if w != CONTINUE), parsed.rest)
    comment = Comment(id=event.comment.id, kind=kind)
    if (isinstance(event, IssueCommentCreated) and not is_pr and parsed.verb in ("fix", "retry")
            and event.issue.user.is_bot and (tracked := read_tracked(event.issue.body or "")) is not None):
        # The hidden line names the branch: it gets no further than an automatic CI session could.
        if tracked.branch.startswith(config.branch_prefix) or not _branch_enabled(
                tracked.branch, config, event.repository.default_branch):
            return answer("fixloop works on CI failures of watched branches only (`ci.branches`), and the branch "
                          "this issue tracks is not one.")
        return _tracked_task(event, tracked, parsed, resume, comment)
    origin = Origin(repository=event.repository.full_name, target=Thread(number=number, pull_request=is_pr),
                    requester=login, comment=comment)
    task = _command_task(event, parsed, number, is_pr, title)
    return Run(task.model_copy(update={"resume": resume}), origin)


def _tracked_task(event: IssueCommentCreated, tracked: Tracked, command: Command, resume: bool,
                  comment: Comment) -> Run:
    """`fix` or `retry` on fixloop's tracking issue of a branch: a session on that branch's CI failure (the
    latest failed run the issue names), going on from the kept work when asked."""
    login = event.sender.login
    run = _ci_task(event, "CI", tracked.branch, tracked.head_sha, event.issue.html_url, tracked.run_id)
    asked = command.argument or "Try again."
    task = run.task.model_copy(update={
        "instructions": f"{run.task.instructions}\n\n@{login} asked on tracking issue #{event.issue.number}: {asked}",
        "source": f"@{login} on tracking issue #{event.issue.number}", "resume": resume})
    return Run(task, run.origin.model_copy(update={"requester": login, "comment": comment}))


def _command_task(event: IssueCommentCreated | ReviewCommentCreated, command: Command, number: int, is_pr: bool,
                  title: str) -> Task:
    login = event.sender.login
    what = "pull request" if is_pr else "issue"
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
                source=f"@{login} on {what} #{number}", test=command.argument if command.verb == "deflake" else None)


def _branch_enabled(branch: str, config: Config, default_branch: str) -> bool:
    patterns = config.ci.branches or [default_branch]
    return any(fnmatchcase(branch, pattern) for pattern in patterns)


def _ci_failure(event: WorkflowRunCompleted, config: Config, permission_of: PermissionOf,
                workflow_file: str) -> Decision:
    run = event.workflow_run
    if run.conclusion not in FAILED_CONCLUSIONS:
        return Ignore(f"the workflow run concluded {run.conclusion!r}, not a failure")
    if run.path.rsplit("/", 1)[-1] == workflow_file:
        return Ignore("fixloop does not react to its own workflow")
    if run.head_repository and run.head_repository.full_name != event.repository.full_name:
        return Ignore("runs of pull requests from forks never start a session (they must not get secrets)")
    name = run.name or run.path
    names = {n for n in (run.name, run.path, run.path.rsplit("/", 1)[-1]) if n}
    if gate := _ci_gate(config, run.head_branch, names, event.repository.default_branch, event.sender,
                        permission_of, pull_requests=len(run.pull_requests)):
        return gate
    return _ci_task(event, name, run.head_branch or "", run.head_sha, run.html_url, run.id)


def _ci_gate(config: Config, branch: str | None, names: set[str], default_branch: str, sender: User,
             permission_of: PermissionOf, *, pull_requests: int) -> Ignore | None:
    """The checks every automatic CI session passes: enabled, watched branch and workflow, a writer.
    A listed bot's run (see `_listed_bot`) needs none of `auto`, `branches` and write access, since
    listing the bot is the opt-in, but must be on one of its pull requests (`pull_requests` of them)
    and not on one of fixloop's own branches.

    `names` are the ways the failed workflow or CI app can be named in `ci.workflows`."""
    unwatched = config.ci.workflows and not any(fnmatchcase(n, p) for p in config.ci.workflows for n in names)
    if sender.is_bot:
        if not branch or not pull_requests:
            return Ignore(f"the run of @{sender.login} is not on a pull request of this repository")
        if branch.startswith(config.branch_prefix):
            return Ignore(f"branch {branch!r} is one of fixloop's own")
    elif not config.ci.auto:
        return Ignore("automatic CI sessions are off (set `ci: {auto: true}` in .github/fixloop.yml)")
    elif not branch or not _branch_enabled(branch, config, default_branch):
        return Ignore(f"branch {branch!r} is not watched (ci.branches)")
    if unwatched:
        return Ignore(f"workflow {sorted(names)[0]!r} is not watched (ci.workflows)")
    if not sender.is_bot and not _may_trigger(sender.login, permission_of):
        return Ignore(f"@{sender.login}, who started the run, has no write access")
    return None


def _ci_task(event: Event, name: str, branch: str, sha: str, url: str, run_id: int | None) -> Run:
    return Run(Task(
        kind="ci_failure", title=f"Fix CI: {name} failed on {branch}",
        instructions=f"The CI check {name!r} failed on branch {branch} at {sha}. Make it pass again.",
        context=[Context(source=f"CI run of {name}", text=f"{name} failed on {branch} at {sha}: {url}")],
        source=f"a failed run of {name} on {branch}",
    ), Origin(repository=event.repository.full_name, requester=event.sender.login,
              target=FailedRun(run_id=run_id, head_sha=sha, branch=branch)))


def _check_suite_failure(event: CheckSuiteCompleted, config: Config, permission_of: PermissionOf,
                         app_slug: str | None) -> Decision:
    """Failures reported by other CI apps (Actions failures arrive as workflow_run instead)."""
    suite = event.check_suite
    if suite.conclusion not in FAILED_CONCLUSIONS:
        return Ignore(f"the check suite concluded {suite.conclusion!r}, not a failure")
    if suite.app.slug in ("github-actions", app_slug):
        return Ignore(f"check suites of {suite.app.slug} are handled elsewhere (workflow_run) or are fixloop's own")
    if suite.head_branch is None:
        return Ignore("the check suite belongs to a pull request from a fork, which never starts a session")
    name = suite.app.name or suite.app.slug or "CI"
    names = {n for n in (suite.app.name, suite.app.slug) if n} or {name}
    if gate := _ci_gate(config, suite.head_branch, names, event.repository.default_branch, event.sender,
                        permission_of, pull_requests=len(suite.pull_requests)):
        return gate
    return _ci_task(event, name, suite.head_branch, suite.head_sha, f"check suite {suite.id}", None)


def _button(event: CheckRunRequestedAction, permission_of: PermissionOf, app_slug: str | None) -> Decision:
    """Retry and Stop buttons on fixloop's own check runs."""
    run, action = event.check_run, event.requested_action.identifier
    if (app_slug and run.app.slug != app_slug) or not run.name.startswith(SESSION_CHECK) or not run.external_id:
        return Ignore("the button is not on a fixloop check run")
    if not _may_trigger(event.sender.login, permission_of):
        return Ignore(f"@{event.sender.login} has no write access")
    kind, _, rest = run.external_id.partition(":")
    repository, login = event.repository.full_name, event.sender.login
    if kind in ("issue", "pr") and rest.isdigit():
        number = int(rest)
        if action == "stop":
            return Stop(number, login)
        if action == "retry":
            what = "pull request" if kind == "pr" else "issue"
            return Run(Task(kind="command" if kind == "pr" else "issue", title=f"#{number}",
                            instructions=f"@{login} pressed Retry on fixloop's check run for {what} #{number}.",
                            source=f"@{login} on {what} #{number}"),
                       Origin(repository=repository, target=Thread(number=number, pull_request=kind == "pr"),
                              requester=login))
    if kind == "ci" and action == "retry":
        run_id, _, head = rest.partition(":")
        branch, sha = split_head(head)
        return _ci_task(event, "CI", branch, sha, f"retry of {run.external_id}", int(run_id) or None)
    return Ignore(f"unknown button {action!r} for {run.external_id!r}")


def _dispatch(event: WorkflowDispatch) -> Decision:
    """The App's hand-over: it already checked who asked; the inputs say what to do."""
    try:
        task, origin = from_inputs(event.inputs or {}, repository=event.repository.full_name, sender=event.sender.login)
    except MalformedEvent as error:
        return Ignore(str(error))
    return Run(task, origin)
