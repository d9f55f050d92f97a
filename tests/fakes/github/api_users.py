"""The signed-in person, with the user access token of a GitHub App's OAuth web flow (`oauth`): who they
are, and the App's installations and repositories they can reach (both the installation's and theirs)."""

from __future__ import annotations

from . import render
from .model import Installation, Repo
from .render import JsonObj
from .routes import ApiError, Ctx, Reply, not_found, paginate, route


def _visible(ctx: Ctx, inst: Installation) -> list[Repo]:
    """The installation's repositories the caller has a role on (GitHub: "repositories that the user can access")."""
    login = ctx.who.user.login
    return sorted((r for r in ctx.state.installation_repos(inst) if ctx.state.role_of(r, login) != "none"),
                  key=lambda r: r.full_name)


def _require_user(ctx: Ctx) -> None:
    if ctx.who.kind != "user":
        raise ApiError(403, "Resource not accessible by integration")


@route("GET", "/user")
def get_authenticated_user(ctx: Ctx) -> Reply:
    u = ctx.who.user
    body: JsonObj = {**render.user(ctx.urls, u), "name": None, "company": None, "blog": None, "location": None,
                     "email": None, "hireable": None, "bio": None, "public_repos": 0, "public_gists": 0,
                     "followers": 0, "following": 0, "created_at": "2020-01-01T00:00:00Z",
                     "updated_at": "2020-01-01T00:00:00Z"}
    return Reply(200, body)


@route("GET", "/user/installations")
def list_installations_for_user(ctx: Ctx) -> Reply:
    _require_user(ctx)
    app = ctx.state.app
    reachable = [i for i in ctx.state.installations() if app is not None and _visible(ctx, i)]
    page, headers = paginate(ctx, reachable)
    assert app is not None or not page
    return Reply(200, {"total_count": len(reachable),
                       "installations": [render.installation(ctx.urls, i, app) for i in page if app]}, headers)


@route("GET", "/user/installations/{installation_id}/repositories")
def list_installation_repos_for_user(ctx: Ctx) -> Reply:
    _require_user(ctx)
    inst = ctx.state.find_installation(ctx.int_param("installation_id"))
    if inst is None:
        raise not_found()
    repos = _visible(ctx, inst)
    if not repos:
        raise not_found()
    page, headers = paginate(ctx, repos)
    return Reply(200, {"total_count": len(repos), "repository_selection": "all" if inst.repositories is None
                       else "selected", "repositories": [render.repository(ctx.urls, r) for r in page]}, headers)
