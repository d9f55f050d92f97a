"""Plain data records for the fake's in-memory GitHub state.

Records hold facts only; ``render.py`` turns them into the JSON shapes of GitHub's schemas.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

AuthKind = Literal["token", "installation", "jwt", "user"]  # user: a GitHub App user access token
PermissionLevel = Literal["none", "read", "triage", "write", "maintain", "admin"]

# GitHub's legacy `permission` field for a role (the collaborator-permission endpoint).
LEGACY_PERMISSION: dict[str, str] = {
    "admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read",
    "none": "none",
}
# Order of installation permission levels ("metadata: read" < "contents: write", ...).
ACCESS_RANK: dict[str, int] = {"none": 0, "read": 1, "write": 2, "admin": 3}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_sha(text: str) -> str:
    """The git blob id of ``text`` (what the contents API reports as ``sha``)."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def node_id(kind: str, number: int) -> str:
    return f"{kind}_kwDO{number:08d}"


SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class User:
    login: str
    id: int
    type: Literal["User", "Organization", "Bot"] = "User"
    site_admin: bool = False


@dataclass
class Commit:
    sha: str
    message: str
    parents: list[str]
    files: dict[str, str]  # full snapshot: path -> text
    author_name: str
    author_email: str
    date: datetime

    @property
    def tree_sha(self) -> str:
        listing = "\n".join(f"{path}\0{blob_sha(text)}"
                            for path, text in sorted(self.files.items()))
        return hashlib.sha1(listing.encode()).hexdigest()


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class Reaction:
    id: int
    content: str
    user: User
    created_at: datetime


@dataclass
class IssueComment:
    id: int
    issue_number: int
    body: str
    user: User
    created_at: datetime
    updated_at: datetime
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class ReviewComment:
    """A pull request review comment (only reactions are served for these)."""

    id: int
    pull_number: int
    body: str
    path: str
    line: int
    user: User
    created_at: datetime
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class PullInfo:
    """The pull-request half of an issue that is a pull request."""

    id: int
    head_ref: str
    head_sha: str  # last known; the live branch head wins while the branch exists
    base_ref: str
    base_sha: str
    head_owner: str
    draft: bool = False
    merged: bool = False
    maintainer_can_modify: bool = False
    requested_reviewers: list[User] = field(default_factory=list)
    requested_teams: list[str] = field(default_factory=list)


@dataclass
class Issue:
    """An issue or, when ``pull`` is set, a pull request (they share numbers, as on GitHub)."""

    number: int
    id: int
    title: str
    body: str | None
    user: User
    created_at: datetime
    updated_at: datetime
    state: Literal["open", "closed"] = "open"
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[User] = field(default_factory=list)
    locked: bool = False
    pull: PullInfo | None = None


@dataclass
class CheckRun:
    id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    started_at: datetime | None
    completed_at: datetime | None
    external_id: str | None
    details_url: str | None
    app_id: int
    check_suite_id: int
    output_title: str | None = None
    output_summary: str | None = None
    output_text: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None  # who created it


@dataclass
class Workflow:
    id: int
    name: str
    path: str  # ".github/workflows/<file>"
    created_at: datetime
    state: str = "active"
    inputs: dict[str, dict[str, Any]] | None = None  # declared workflow_dispatch inputs, if known
    run_name: str | None = None  # str.format_map template over the dispatch inputs

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Job:
    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None
    started_at: datetime
    completed_at: datetime | None
    log_text: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=lambda: ["ubuntu-latest"])
    runner_name: str | None = "GitHub Actions 1"


@dataclass
class Artifact:
    """A workflow run's artifact: a zip archive (GitHub keeps them for the retention period)."""

    id: int
    name: str
    data: bytes
    created_at: datetime
    expired: bool = False


@dataclass
class WorkflowRun:
    id: int
    workflow_id: int
    run_number: int
    name: str
    display_title: str
    event: str
    status: str
    conclusion: str | None
    head_branch: str | None
    head_sha: str
    actor: User
    created_at: datetime
    updated_at: datetime
    run_attempt: int = 1
    inputs: dict[str, Any] | None = None
    jobs: list[Job] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)


@dataclass
class Dispatch:
    repo: str
    workflow_id: int
    workflow_path: str
    ref: str
    inputs: dict[str, Any]
    return_run_details: bool
    token: str | None
    run_id: int | None
    at: datetime


@dataclass
class Repo:
    owner: User
    name: str
    id: int
    private: bool
    default_branch: str
    description: str | None
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role
    labels: dict[str, Label] = field(default_factory=dict)  # lower-cased name -> label
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, IssueComment] = field(default_factory=dict)
    review_comments: dict[int, ReviewComment] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    check_suites: dict[tuple[int, str], int] = field(default_factory=dict)  # (app, sha) -> id
    workflows: dict[int, Workflow] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)
    next_number: int = 1
    topics: list[str] = field(default_factory=list)
    language: str | None = None
    archived: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    def resolve_ref(self, ref: str) -> str | None:
        """A branch, tag, ``refs/...`` name or (abbreviated) commit sha -> full commit sha."""
        for prefix, table in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if ref.startswith(prefix):
                return table.get(ref[len(prefix):])
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.tags:
            return self.tags[ref]
        if ref in self.commits:
            return ref
        if re.fullmatch(r"[0-9a-f]{7,39}", ref):
            matches = [sha for sha in self.commits if sha.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return None


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner: User
    client_id: str
    permissions: dict[str, str]
    events: list[str]
    created_at: datetime


@dataclass
class ManifestApp:
    """An App created from a manifest (``POST /app-manifests/{code}/conversions``), with the
    credentials GitHub hands out once, in the answer to that call."""

    app: App
    description: str | None
    external_url: str
    pem: str  # the private key, PKCS#1 PEM as GitHub sends it
    webhook_secret: str | None
    client_secret: str


@dataclass
class Installation:
    id: int
    app_id: int
    account: User
    permissions: dict[str, str]
    repositories: list[str] | None  # repo names; None = all repositories of the account
    events: list[str]
    created_at: datetime


@dataclass
class IssuedToken:
    """An installation access token minted by POST /app/installations/{id}/access_tokens."""

    token: str
    installation_id: int
    expires_at: datetime
    permissions: dict[str, str]
    repositories: list[str] | None  # narrowed repo names, None = the installation's set
    created_at: datetime


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token, what kind it is, and the account it acts as."""

    token: str
    kind: AuthKind
    user: User
    app_id: int | None = None
    installation: Installation | None = None
    issued: IssuedToken | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str  # API path without the server prefix, still percent-encoded
    query: dict[str, list[str]]
    json: Any
    token: str | None
    auth_kind: AuthKind | None
    headers: dict[str, str]
    status: int | None = None  # filled in once answered (None: connection reset)
    operation: str | None = None  # "METHOD /template" when the path matched a route


@dataclass
class Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int | None  # None: reset the connection
    remaining: int
    headers: dict[str, str]
    body: Any
    apply: bool = False  # carry the request out first: the write happens, the client is told otherwise
    delay: float = 0.0  # seconds to wait before failing (longer than the client's timeout: a timeout)


@dataclass
class ReplicaLag:
    """Objects made by POSTs matching ``path_regex`` are "not found" for their first ``times``
    requests, as on GitHub when a read reaches a replica that has not seen the create yet."""

    path_regex: re.Pattern[str]
    times: int
