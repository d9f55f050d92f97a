"""Routing: a table of (method, path template) -> handler, plus helpers shared by handlers.

Handlers live in the ``api_*`` modules and register themselves with ``@route``.  They receive a
``Ctx`` (state, caller, decoded path parameters, query, parsed JSON body) and return a
``Reply`` or raise ``ApiError``; the server takes care of auth, validation, recording and
serialisation.  They run with the state lock held.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote, urlencode

from . import render
from .model import Caller, Issue, Repo, utcnow
from .render import JsonObj, Urls
from .state import GitHubState

DOCS = "https://docs.github.com/rest"
RATE_LIMIT = 5000
# Template variables that may contain "/" (file paths, refs, branch names).
GREEDY_PARAMS = frozenset({"path", "ref", "branch"})

AuthMode = Literal["token", "jwt", "optional"]


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer in GitHub's shape: {"message", "documentation_url", ["errors"]}."""

    def __init__(self, status: int, message: str, *, errors: list[Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> JsonObj:
        data: JsonObj = {"message": self.message, "documentation_url": DOCS,
                         "status": str(self.status)}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(*errors: JsonObj) -> ApiError:
    return ApiError(422, "Validation Failed", errors=list(errors))


@dataclass
class Options:
    supports_run_details: bool
    require_known_shas: bool
    dispatch_creates_runs: bool
    api_root: str  # for URLs that are not part of the API (log downloads)


@dataclass
class Ctx:
    state: GitHubState
    urls: Urls
    options: Options
    caller: Caller | None
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    path: str  # API path as requested (percent-encoded, no prefix)
    rate_used: int = 0  # requests made with the caller's token in this rate-limit window

    @property
    def who(self) -> Caller:
        assert self.caller is not None, "route requires authentication"
        return self.caller

    @property
    def repo(self) -> Repo:
        repo = self.state.find_repo(self.params["owner"], self.params["repo"])
        if repo is None:
            raise not_found()
        return repo

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def int_param(self, name: str) -> int:
        return int(self.params[name])


Handler = Callable[[Ctx], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    auth: AuthMode
    # Installation-token permissions that allow the call (any one of them suffices).
    permissions: tuple[tuple[str, str], ...]
    regex: re.Pattern[str]

    @property
    def operation(self) -> str:
        return f"{self.method} {self.template}"


ROUTES: list[Route] = []


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal)
        if name:
            # A file path may be empty (`/contents/` lists the root, as on GitHub); refs and branches may not.
            shape = ".*" if name == "path" else ".+" if name in GREEDY_PARAMS else "[^/]+"
            pattern += f"(?P<{name}>{shape})"
    return re.compile(f"^{pattern}$")


def route(method: str, template: str, *, auth: AuthMode = "token",
          perms: Sequence[tuple[str, str]] = ()) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, handler, auth, tuple(perms), _compile(template)))
        # Most literal text first, so ".../commits/{ref}/check-runs" beats ".../commits/{ref}".
        ROUTES.sort(key=lambda r: -len(re.sub(r"\{\w+\}", "", r.template)))
        return handler
    return register


def match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, decoded params, path_known) for a percent-encoded API path."""
    path_known = False
    for candidate in ROUTES:
        m = candidate.regex.match(path)
        if m is None:
            continue
        path_known = True
        if candidate.method == method:
            return candidate, {k: unquote(v) for k, v in m.groupdict().items()}, True
    return None, {}, path_known


# ------------------------------------------------------------------------------------------------
# shared helpers


def paginate(ctx: Ctx, items: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
    per_page = min(int(ctx.q("per_page", "30") or 30), 100)
    page = max(int(ctx.q("page", "1") or 1), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = list(items[(page - 1) * per_page: page * per_page])
    links = []

    def link(n: int, rel: str) -> str:
        query = {k: v[-1] for k, v in ctx.query.items()} | {"per_page": str(per_page),
                                                             "page": str(n)}
        return f'<{ctx.urls.api}{ctx.path}?{urlencode(query)}>; rel="{rel}"'

    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chunk, ({"Link": ", ".join(links)} if links else {})


def live_shas(repo: Repo, issue: Issue) -> tuple[str, str]:
    assert issue.pull is not None
    p = issue.pull
    head = repo.branches.get(p.head_ref, p.head_sha) if issue.state == "open" else p.head_sha
    base = repo.branches.get(p.base_ref, p.base_sha)
    return head, base


def ancestors(repo: Repo, sha: str) -> set[str]:
    seen: set[str] = set()
    stack = [sha]
    while stack:
        current = stack.pop()
        if current in seen or current not in repo.commits:
            continue
        seen.add(current)
        stack.extend(repo.commits[current].parents)
    return seen


def render_pull(ctx: Ctx, repo: Repo, issue: Issue, *, full: bool) -> JsonObj:
    head, base = live_shas(repo, issue)
    n_comments = sum(1 for c in repo.comments.values() if c.issue_number == issue.number)
    return render.pull_request(ctx.urls, repo, issue, head, base,
                               ctx.state.author_association(repo, issue.user), n_comments,
                               full=full)


def open_pulls_for_sha(ctx: Ctx, repo: Repo, sha: str) -> list[JsonObj]:
    out = []
    for issue in repo.issues.values():
        if issue.pull and issue.state == "open":
            head, base = live_shas(repo, issue)
            if head == sha:
                out.append(render.pull_request_minimal(ctx.urls, repo, issue, head, base))
    return out


def get_issue(repo: Repo, number: int) -> Issue:
    issue = repo.issues.get(number)
    if issue is None:
        raise not_found()
    return issue


def get_pull(repo: Repo, number: int) -> Issue:
    issue = get_issue(repo, number)
    if issue.pull is None:
        raise not_found()
    return issue


def now_or(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
