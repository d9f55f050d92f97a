"""Operations on pull requests and issues: comments, reactions, labels, review requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import render
from .model import Issue, IssueComment, PullInfo, Reaction, Repo, utcnow
from .render import JsonObj
from .routes import (
    ApiError,
    Ctx,
    Reply,
    ancestors,
    get_issue,
    get_pull,
    not_found,
    now_or,
    paginate,
    render_pull,
    route,
    validation_failed,
)

# ------------------------------------------------------------------------------------------------
# pull requests


def _parse_head(ctx: Ctx, repo: Repo, head: str) -> tuple[str, str]:
    owner, _, branch = head.rpartition(":")
    return (owner or repo.owner.login), branch


def _duplicate_pull(repo: Repo, head_owner: str, head_ref: str, base_ref: str,
                    exclude: int | None = None) -> Issue | None:
    for issue in repo.issues.values():
        p = issue.pull
        if (p and issue.state == "open" and issue.number != exclude and p.head_ref == head_ref
                and p.base_ref == base_ref and p.head_owner.lower() == head_owner.lower()):
            return issue
    return None


@route("POST", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "write")])
def create_pull(ctx: Ctx) -> Reply:
    repo = ctx.repo
    body: JsonObj = ctx.body
    head_owner, head_ref = _parse_head(ctx, repo, body["head"])
    base_ref = body["base"]
    if "title" not in body and "issue" not in body:
        raise validation_failed({"resource": "PullRequest", "field": "title",
                                 "code": "missing_field"})
    if base_ref not in repo.branches:
        raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
    if head_owner.lower() != repo.owner.login.lower() or head_ref not in repo.branches:
        raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
    if _duplicate_pull(repo, head_owner, head_ref, base_ref):
        raise validation_failed({
            "resource": "PullRequest", "code": "custom",
            "message": f"A pull request already exists for {head_owner}:{head_ref}."})
    head_sha, base_sha = repo.branches[head_ref], repo.branches[base_ref]
    if head_sha in ancestors(repo, base_sha):
        raise validation_failed({"resource": "PullRequest", "code": "custom",
                                 "message": f"No commits between {base_ref} and {head_ref}"})
    now = utcnow()
    if "issue" in body:
        issue = get_issue(repo, body["issue"])
        if issue.pull is not None:
            raise validation_failed({"resource": "PullRequest", "field": "issue",
                                     "code": "invalid"})
    else:
        issue = Issue(repo.next_number, ctx.state.new_id(), body["title"], body.get("body"),
                      ctx.who.user, now, now)
        repo.issues[issue.number] = issue
        repo.next_number += 1
    issue.pull = PullInfo(ctx.state.new_id(), head_ref, head_sha, base_ref, base_sha,
                          head_owner, draft=bool(body.get("draft", False)),
                          maintainer_can_modify=bool(body.get("maintainer_can_modify", False)))
    return Reply(201, render_pull(ctx, repo, issue, full=True))


@route("GET", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "read")])
def list_pulls(ctx: Ctx) -> Reply:
    repo = ctx.repo
    state = ctx.q("state", "open")
    pulls = [i for i in repo.issues.values() if i.pull and (state == "all" or i.state == state)]
    head = ctx.q("head")
    # GitHub needs "owner:branch"; a bare branch name is silently ignored (lists everything).
    if head and ":" in head:
        owner, _, branch = head.partition(":")
        pulls = [i for i in pulls if i.pull and i.pull.head_ref == branch
                 and i.pull.head_owner.lower() == owner.lower()]
    if ctx.q("base"):
        pulls = [i for i in pulls if i.pull and i.pull.base_ref == ctx.q("base")]
    sort = ctx.q("sort", "created")
    direction = ctx.q("direction", "desc" if sort == "created" else "asc")
    key: Callable[[Issue], Any] = (lambda i: i.updated_at) if sort == "updated" else (
        lambda i: i.number)
    pulls.sort(key=key, reverse=direction == "desc")
    page, headers = paginate(ctx, pulls)
    return Reply(200, [render_pull(ctx, repo, i, full=False) for i in page], headers)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", perms=[("pull_requests", "read")])
def get_pull_request(ctx: Ctx) -> Reply:
    repo = ctx.repo
    return Reply(200, render_pull(ctx, repo, get_pull(repo, ctx.int_param("pull_number")),
                                  full=True))


@route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", perms=[("pull_requests", "write")])
def update_pull(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_pull(repo, ctx.int_param("pull_number"))
    assert issue.pull is not None
    body: JsonObj = ctx.body or {}
    # Note: like GitHub, "draft" is not updatable here (that needs GraphQL); it is ignored.
    if "base" in body and body["base"] not in repo.branches:
        raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
    reopening = body.get("state") == "open" and issue.state == "closed"
    if reopening and _duplicate_pull(repo, issue.pull.head_owner, issue.pull.head_ref,
                                     body.get("base", issue.pull.base_ref), exclude=issue.number):
        raise validation_failed({
            "resource": "PullRequest", "code": "custom",
            "message": f"A pull request already exists for "
                       f"{issue.pull.head_owner}:{issue.pull.head_ref}."})
    if "title" in body:
        issue.title = body["title"]
    if "body" in body:
        issue.body = body["body"]
    if "base" in body:
        issue.pull.base_ref = body["base"]
    if "maintainer_can_modify" in body:
        issue.pull.maintainer_can_modify = body["maintainer_can_modify"]
    if "state" in body and body["state"] != issue.state:
        if body["state"] == "closed":
            issue.pull.head_sha = repo.branches.get(issue.pull.head_ref, issue.pull.head_sha)
        issue.state = body["state"]
        issue.closed_at = utcnow() if issue.state == "closed" else None
    issue.updated_at = utcnow()
    return Reply(200, render_pull(ctx, repo, issue, full=True))


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
       perms=[("pull_requests", "write")])
def request_reviewers(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_pull(repo, ctx.int_param("pull_number"))
    assert issue.pull is not None
    body: JsonObj = ctx.body or {}
    logins: list[str] = body.get("reviewers", [])
    if any(login.lower() == issue.user.login.lower() for login in logins):
        raise validation_failed({"resource": "PullRequest", "code": "custom",
                                 "message": "Review cannot be requested from pull request "
                                            "author."})
    users = [ctx.state.find_user(login) for login in logins]
    if any(u is None or ctx.state.role_of(repo, u.login) == "none" for u in users):
        raise validation_failed({
            "resource": "PullRequest", "code": "custom",
            "message": "Reviews may only be requested from collaborators. One or more of the "
                       "users or teams you specified is not a collaborator of the "
                       f"{repo.full_name} repository."})
    for u in users:
        assert u is not None
        if all(r.login != u.login for r in issue.pull.requested_reviewers):
            issue.pull.requested_reviewers.append(u)
    for team in body.get("team_reviewers", []):
        if team not in issue.pull.requested_teams:
            issue.pull.requested_teams.append(team)
    return Reply(201, render_pull(ctx, repo, issue, full=False))


# ------------------------------------------------------------------------------------------------
# issues, comments, reactions, labels

ISSUE_READ = [("issues", "read"), ("pull_requests", "read")]
ISSUE_WRITE = [("issues", "write"), ("pull_requests", "write")]


def render_issue_comment(ctx: Ctx, repo: Repo, c: IssueComment) -> JsonObj:
    return render.issue_comment(ctx.urls, repo, c, ctx.state.author_association(repo, c.user))


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}", perms=ISSUE_READ)
def get_issue_route(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    n_comments = sum(1 for c in repo.comments.values() if c.issue_number == issue.number)
    return Reply(200, render.issue(ctx.urls, repo, issue, n_comments,
                                   ctx.state.author_association(repo, issue.user)))


@route("POST", "/repos/{owner}/{repo}/issues", perms=[("issues", "write")])
def create_issue(ctx: Ctx) -> Reply:
    repo = ctx.repo
    now = utcnow()
    with ctx.state.lock:
        issue = Issue(repo.next_number, ctx.state.new_id(), ctx.body["title"], ctx.body.get("body"), ctx.who.user,
                      now, now)
        issue.labels = [ctx.state.ensure_label(repo, name).name for name in ctx.body.get("labels") or []]
        repo.issues[issue.number] = issue
        repo.next_number += 1
    return Reply(201, render.issue(ctx.urls, repo, issue, 0, ctx.state.author_association(repo, issue.user)))


@route("GET", "/repos/{owner}/{repo}/issues", perms=ISSUE_READ)
def list_issues(ctx: Ctx) -> Reply:
    """Issues and pull requests (as GitHub lists both here), filtered by state, labels (all of them) and
    creator, newest first unless asked otherwise."""
    repo = ctx.repo
    state = ctx.q("state", "open")
    issues = [i for i in repo.issues.values() if state == "all" or i.state == state]
    if ctx.q("labels"):
        wanted = {name.strip().lower() for name in ctx.q("labels").split(",") if name.strip()}
        issues = [i for i in issues if wanted <= {name.lower() for name in i.labels}]
    if ctx.q("creator"):
        issues = [i for i in issues if i.user.login.lower() == ctx.q("creator").lower()]
    sort = ctx.q("sort", "created")
    key: Callable[[Issue], Any] = (lambda i: i.updated_at) if sort == "updated" else (lambda i: i.number)
    issues.sort(key=key, reverse=ctx.q("direction", "desc") == "desc")
    page, headers = paginate(ctx, issues)
    return Reply(200, [render.issue(ctx.urls, repo, i, sum(1 for c in repo.comments.values()
                                                          if c.issue_number == i.number),
                                    ctx.state.author_association(repo, i.user)) for i in page], headers)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/assignees", perms=ISSUE_WRITE)
def add_assignees(ctx: Ctx) -> Reply:
    """Like GitHub: people who may not be assigned (no write access, unknown) are left out silently."""
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    for login in (ctx.body or {}).get("assignees", []):
        user = ctx.state.find_user(login)
        if (user is not None and ctx.state.role_of(repo, user.login) in ("write", "maintain", "admin")
                and all(a.login != user.login for a in issue.assignees)):
            issue.assignees.append(user)
    issue.updated_at = utcnow()
    return Reply(201, render.issue(ctx.urls, repo, issue, sum(1 for c in repo.comments.values()
                                                             if c.issue_number == issue.number),
                                   ctx.state.author_association(repo, issue.user)))


@route("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}", perms=[("issues", "write")])
def update_issue(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    for name in ("title", "body"):
        if name in ctx.body:
            setattr(issue, name, ctx.body[name])
    if ctx.body.get("state") in ("open", "closed"):
        issue.state = ctx.body["state"]
        issue.closed_at = utcnow() if issue.state == "closed" else None
    issue.updated_at = utcnow()
    n_comments = sum(1 for c in repo.comments.values() if c.issue_number == issue.number)
    return Reply(200, render.issue(ctx.urls, repo, issue, n_comments, ctx.state.author_association(repo, issue.user)))


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", perms=ISSUE_READ)
def list_issue_comments(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    comments = [c for c in repo.comments.values() if c.issue_number == issue.number]
    since = ctx.q("since")
    if since:
        comments = [c for c in comments if c.updated_at >= now_or(since)]
    page, headers = paginate(ctx, comments)
    return Reply(200, [render_issue_comment(ctx, repo, c) for c in page], headers)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", perms=ISSUE_WRITE)
def create_issue_comment(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    if issue.locked:
        raise ApiError(403, "Unable to create comment because issue is locked.")
    now = utcnow()
    c = IssueComment(ctx.state.new_id(), issue.number, ctx.body["body"], ctx.who.user, now, now)
    repo.comments[c.id] = c
    return Reply(201, render_issue_comment(ctx, repo, c))


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", perms=ISSUE_WRITE)
def update_issue_comment(ctx: Ctx) -> Reply:
    repo = ctx.repo
    c = repo.comments.get(ctx.int_param("comment_id"))
    if c is None:
        raise not_found()
    c.body = ctx.body["body"]
    c.updated_at = utcnow()
    return Reply(200, render_issue_comment(ctx, repo, c))


def _react(ctx: Ctx, reactions: list[Reaction]) -> Reply:
    content = ctx.body["content"]
    for existing in reactions:
        if existing.content == content and existing.user.login == ctx.who.user.login:
            return Reply(200, render.reaction(ctx.urls, existing))
    r = Reaction(ctx.state.new_id(), content, ctx.who.user, utcnow())
    reactions.append(r)
    return Reply(201, render.reaction(ctx.urls, r))


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
       perms=ISSUE_WRITE)
def react_issue_comment(ctx: Ctx) -> Reply:
    c = ctx.repo.comments.get(ctx.int_param("comment_id"))
    if c is None:
        raise not_found()
    return _react(ctx, c.reactions)


@route("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
       perms=[("pull_requests", "write")])
def react_review_comment(ctx: Ctx) -> Reply:
    c = ctx.repo.review_comments.get(ctx.int_param("comment_id"))
    if c is None:
        raise not_found()
    return _react(ctx, c.reactions)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", perms=ISSUE_WRITE)
def add_labels(ctx: Ctx) -> Reply:
    repo = ctx.repo
    issue = get_issue(repo, ctx.int_param("issue_number"))
    raw = ctx.body if isinstance(ctx.body, list) else (ctx.body or {}).get("labels", [])
    names = [item if isinstance(item, str) else item["name"] for item in raw]
    for name in names:
        lab = ctx.state.ensure_label(repo, name)
        if lab.name.lower() not in (n.lower() for n in issue.labels):
            issue.labels.append(lab.name)
    issue.updated_at = utcnow()
    return Reply(200, [render.label(ctx.urls, repo, repo.labels[n.lower()])
                       for n in issue.labels])


# ------------------------------------------------------------------------------------------------
