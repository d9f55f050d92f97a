"""Operations on repositories: metadata, contents, collaborators, branches, commits and
check runs."""

from __future__ import annotations

from . import render
from .model import CheckRun, Repo, User, utcnow
from .render import JsonObj
from .routes import (
    ApiError,
    Ctx,
    Reply,
    not_found,
    now_or,
    open_pulls_for_sha,
    paginate,
    route,
)

# ------------------------------------------------------------------------------------------------
# repositories, contents, collaborators, branches, commits


@route("GET", "/repos/{owner}/{repo}", perms=[("metadata", "read")])
def get_repository(ctx: Ctx) -> Reply:
    repo = ctx.repo
    perms = None
    if ctx.who.kind == "token":
        role = ctx.state.role_of(repo, ctx.who.user.login)
        if role != "none":
            perms = render.repo_permissions(role)
    return Reply(200, render.repository(ctx.urls, repo, full=True, permissions=perms))


@route("GET", "/orgs/{org}/repos")
def list_organisation_repositories(ctx: Ctx) -> Reply:
    """The organisation's repositories the caller can see (public ones, and private ones it has a role in)."""
    org = ctx.params["org"].lower()
    repos = sorted((r for r in ctx.state.repositories() if r.owner.login.lower() == org and (
        not r.private or ctx.state.role_of(r, ctx.who.user.login) != "none")), key=lambda r: r.name)
    page, headers = paginate(ctx, repos)
    return Reply(200, [render.repository(ctx.urls, r) for r in page], headers)


@route("GET", "/repos/{owner}/{repo}/contents/{path}", perms=[("contents", "read")])
def get_contents(ctx: Ctx) -> Reply:
    repo = ctx.repo
    ref = ctx.q("ref") or repo.default_branch
    sha = repo.resolve_ref(ref)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    files = repo.commits[sha].files
    path = ctx.params["path"].strip("/")
    if path in files:
        return Reply(200, render.file_content(ctx.urls, repo, path, files[path], ref))
    prefix = path + "/" if path else ""
    children: dict[str, str | None] = {}
    for file_path, text in files.items():
        if file_path.startswith(prefix):
            rest = file_path[len(prefix):]
            child = rest.split("/", 1)[0]
            children[prefix + child] = text if "/" not in rest else None
    if not children:
        raise not_found()
    return Reply(200, [render.directory_entry(ctx.urls, repo, p, t, ref)
                       for p, t in sorted(children.items())])


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission",
       perms=[("metadata", "read")])
def get_collaborator_permission(ctx: Ctx) -> Reply:
    repo = ctx.repo
    u = ctx.state.find_user(ctx.params["username"])
    if u is None:
        raise not_found()
    role = ctx.state.role_of(repo, u.login)
    if role == "none" and not repo.private:
        role = "read"
    return Reply(200, render.collaborator_permission(ctx.urls, u, role))


def _commit_author(ctx: Ctx, login: str) -> User | None:
    return ctx.state.find_user(login)


@route("GET", "/repos/{owner}/{repo}/branches/{branch}", perms=[("contents", "read")])
def get_branch(ctx: Ctx) -> Reply:
    repo = ctx.repo
    name = ctx.params["branch"]
    sha = repo.branches.get(name)
    if sha is None:
        raise ApiError(404, "Branch not found")
    c = repo.commits[sha]
    return Reply(200, render.branch(ctx.urls, repo, name, c, _commit_author(ctx, c.author_name)))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}", perms=[("contents", "read")])
def get_commit(ctx: Ctx) -> Reply:
    repo = ctx.repo
    sha = repo.resolve_ref(ctx.params["ref"])
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ctx.params['ref']}")
    c = repo.commits[sha]
    return Reply(200, render.commit(ctx.urls, repo, c, _commit_author(ctx, c.author_name)))


# ------------------------------------------------------------------------------------------------
# check runs


def _app_for(ctx: Ctx) -> tuple[int, JsonObj]:
    caller = ctx.who
    if caller.kind == "installation" and ctx.state.app is not None:
        return ctx.state.app.id, render.app(ctx.urls, ctx.state.app)
    return ctx.state.actions_app.id, render.app(ctx.urls, ctx.state.actions_app)


def _app_json(ctx: Ctx, app_id: int) -> JsonObj:
    app = ctx.state.app if ctx.state.app and ctx.state.app.id == app_id else ctx.state.actions_app
    return render.app(ctx.urls, app)


def render_check_run(ctx: Ctx, repo: Repo, run: CheckRun) -> JsonObj:
    return render.check_run(ctx.urls, repo, run, _app_json(ctx, run.app_id),
                            open_pulls_for_sha(ctx, repo, run.head_sha))


def _apply_output(run: CheckRun, output: JsonObj | None) -> None:
    if not output:
        return
    run.output_title = output.get("title", run.output_title)
    run.output_summary = output.get("summary", run.output_summary)
    if "text" in output:
        run.output_text = output["text"]
    run.annotations.extend(dict(a) for a in output.get("annotations", []))
    run.images.extend(dict(i) for i in output.get("images", []))


def _apply_status(run: CheckRun, body: JsonObj) -> None:
    if "started_at" in body:
        run.started_at = now_or(body["started_at"])
    if "status" in body:
        run.status = body["status"]
    if body.get("conclusion") is not None:
        run.conclusion = body["conclusion"]
        run.status = "completed"
    if run.status == "completed":
        if run.conclusion is None:
            raise ApiError(422, "Invalid request.\n\n\"conclusion\" wasn't supplied.")
        run.completed_at = now_or(body.get("completed_at")) if (
            "completed_at" in body or run.completed_at is None) else run.completed_at
    if run.status != "completed":
        run.conclusion, run.completed_at = None, None


@route("POST", "/repos/{owner}/{repo}/check-runs", perms=[("checks", "write")])
def create_check_run(ctx: Ctx) -> Reply:
    repo = ctx.repo
    body: JsonObj = ctx.body
    sha = body["head_sha"]
    if ctx.options.require_known_shas and repo.resolve_ref(sha) != sha:
        raise ApiError(422, f"No commit found for SHA: {sha}")
    app_id, _ = _app_for(ctx)
    suite = repo.check_suites.setdefault((app_id, sha), ctx.state.new_id())
    run = CheckRun(ctx.state.new_id(), sha, body["name"], "queued", None, utcnow(), None,
                   body.get("external_id"), body.get("details_url"), app_id, suite,
                   token=ctx.who.token)
    _apply_status(run, body)
    _apply_output(run, body.get("output"))
    run.actions = [dict(a) for a in body.get("actions", [])]
    repo.check_runs[run.id] = run
    return Reply(201, render_check_run(ctx, repo, run))


def _get_check_run(ctx: Ctx) -> tuple[Repo, CheckRun]:
    repo = ctx.repo
    run = repo.check_runs.get(ctx.int_param("check_run_id"))
    if run is None:
        raise not_found()
    return repo, run


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "write")])
def update_check_run(ctx: Ctx) -> Reply:
    repo, run = _get_check_run(ctx)
    app_id, _ = _app_for(ctx)
    if app_id != run.app_id:
        raise ApiError(403, "Resource not accessible by integration")
    body: JsonObj = ctx.body
    updated = CheckRun(**{**run.__dict__, "annotations": list(run.annotations),
                          "images": list(run.images)})
    for key in ("name", "external_id", "details_url"):
        if key in body:
            setattr(updated, key, body[key])
    _apply_status(updated, body)  # may raise: leave the stored run untouched
    _apply_output(updated, body.get("output"))
    if "actions" in body:
        updated.actions = [dict(a) for a in body["actions"]]
    repo.check_runs[run.id] = updated
    return Reply(200, render_check_run(ctx, repo, updated))


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "read")])
def get_check_run(ctx: Ctx) -> Reply:
    repo, run = _get_check_run(ctx)
    return Reply(200, render_check_run(ctx, repo, run))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", perms=[("checks", "read")])
def list_check_runs_for_ref(ctx: Ctx) -> Reply:
    repo = ctx.repo
    sha = repo.resolve_ref(ctx.params["ref"])
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ctx.params['ref']}")
    runs = [r for r in repo.check_runs.values() if r.head_sha == sha]
    if ctx.q("check_name"):
        runs = [r for r in runs if r.name == ctx.q("check_name")]
    if ctx.q("status"):
        runs = [r for r in runs if r.status == ctx.q("status")]
    if ctx.q("app_id"):
        runs = [r for r in runs if str(r.app_id) == ctx.q("app_id")]
    if ctx.q("filter", "latest") == "latest":
        latest: dict[tuple[str, int], CheckRun] = {}
        for r in runs:
            latest[(r.name, r.app_id)] = r
        runs = list(latest.values())
    runs.sort(key=lambda r: -r.id)
    page, headers = paginate(ctx, runs)
    return Reply(200, {"total_count": len(runs),
                       "check_runs": [render_check_run(ctx, repo, r) for r in page]}, headers)


# ------------------------------------------------------------------------------------------------
