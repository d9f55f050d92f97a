"""GitHub events as typed data, parsed leniently (unknown fields are ignored).

The same parser serves both ways in: a webhook delivery (App server) and the event file of a
workflow run (`GITHUB_EVENT_PATH`, Actions-only mode).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import MalformedEvent


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class User(_Lenient):
    login: str
    id: int | None = None
    type: str = "User"

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot" or self.login.endswith("[bot]")


class Repository(_Lenient):
    full_name: str
    default_branch: str = "main"
    private: bool = False
    id: int | None = None
    owner: User | None = None


class Label(_Lenient):
    name: str


class Issue(_Lenient):
    number: int
    title: str
    body: str | None = None
    user: User
    html_url: str = ""
    pull_request: dict[str, Any] | None = None  # present when the issue is a pull request

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Comment(_Lenient):
    id: int
    body: str = ""
    user: User
    html_url: str = ""
    path: str | None = None  # review comments: the file
    line: int | None = None


class BranchRef(_Lenient):
    ref: str
    sha: str
    repo: Repository | None = None  # None when the fork was deleted


class PullRequest(_Lenient):
    number: int
    title: str
    body: str | None = None
    user: User
    head: BranchRef
    base: BranchRef
    draft: bool = False
    html_url: str = ""


class WorkflowRun(_Lenient):
    id: int
    name: str | None = None
    display_title: str = ""
    path: str = ""
    event: str = ""
    status: str | None = None
    conclusion: str | None = None
    head_branch: str | None = None
    head_sha: str
    html_url: str = ""
    run_attempt: int = 1
    head_repository: Repository | None = None
    pull_requests: list[dict[str, Any]] = []


class Installation(_Lenient):
    id: int = Field(ge=1, lt=2**63)  # stored as a SQLite integer
    account: User | None = None


class App(_Lenient):
    id: int | None = None
    slug: str | None = None
    name: str | None = None


class CheckSuite(_Lenient):
    id: int
    head_branch: str | None = None  # None for pull requests from forks
    head_sha: str
    conclusion: str | None = None
    app: App = App()
    pull_requests: list[dict[str, Any]] = []


class CheckRun(_Lenient):
    id: int
    name: str
    head_sha: str
    external_id: str | None = None
    app: App = App()


class RequestedAction(_Lenient):
    identifier: str


class RepositoryRef(_Lenient):
    full_name: str


class Event(_Lenient):
    repository: Repository
    sender: User
    installation: Installation | None = None


class IssueLabeled(Event):
    issue: Issue
    label: Label


class IssueCommentCreated(Event):
    issue: Issue
    comment: Comment


class ReviewCommentCreated(Event):
    pull_request: PullRequest
    comment: Comment


class WorkflowRunCompleted(Event):
    workflow_run: WorkflowRun


class CheckSuiteCompleted(Event):
    check_suite: CheckSuite


class CheckRunRequestedAction(Event):
    check_run: CheckRun
    requested_action: RequestedAction


class PullRequestChanged(Event):
    action: str
    pull_request: PullRequest


class InstallationChanged(_Lenient):
    """`installation` and `installation_repositories` events (they carry no single repository)."""

    action: str
    installation: Installation
    sender: User
    repositories: list[RepositoryRef] = []
    repositories_added: list[RepositoryRef] = []
    repositories_removed: list[RepositoryRef] = []


class WorkflowDispatch(Event):
    inputs: dict[str, Any] | None = Field(default=None)
    ref: str = ""
    workflow: str = ""


# (event name, action) → model; action None for events without one, "*" for any action.
EVENT_TYPES: dict[tuple[str, str | None], type[_Lenient]] = {
    ("issues", "labeled"): IssueLabeled,
    ("issue_comment", "created"): IssueCommentCreated,
    ("pull_request_review_comment", "created"): ReviewCommentCreated,
    ("workflow_run", "completed"): WorkflowRunCompleted,
    ("workflow_dispatch", None): WorkflowDispatch,
    ("check_suite", "completed"): CheckSuiteCompleted,
    ("check_run", "requested_action"): CheckRunRequestedAction,
    ("pull_request", "opened"): PullRequestChanged,
    ("pull_request", "edited"): PullRequestChanged,
    ("installation", "*"): InstallationChanged,
    ("installation_repositories", "*"): InstallationChanged,
}
# The events fixloop acts on, by name: the App's server answers others at once, and subscribes to
# these (bot.app.manifest), so adding an event above is all it takes.
EVENT_NAMES = frozenset(name for name, _ in EVENT_TYPES)


def parse_event(name: str, payload: Any) -> Event | InstallationChanged | None:
    """The typed event, or None when fixloop does not act on this event or action."""
    if not isinstance(payload, dict):
        raise MalformedEvent(f"a {name} payload must be a JSON object")
    action = payload.get("action")
    action = action if isinstance(action, str) else None
    model = EVENT_TYPES.get((name, action)) or (EVENT_TYPES.get((name, "*")) if action else None)
    if model is None:
        return None
    try:
        return model.model_validate(payload)  # type: ignore[return-value]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedEvent(f"{name}.{action or ''} payload: {where}: {first['msg']}") from None


def signature_for(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` as GitHub computes it: sha256= + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a delivery's signature; a missing header never verifies."""
    if not secret or not header:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII text, and a header can hold anything.
    return hmac.compare_digest(signature_for(secret, body).encode(), header.strip().encode("utf-8", "replace"))
