"""GitHub App operations (JWT-authenticated; creating one from a manifest needs no authentication) and the rate
limit."""

from __future__ import annotations

import secrets
import string
from datetime import timedelta

from . import render
from .model import App, IssuedToken, Repo, utcnow
from .render import JsonObj
from .routes import RATE_LIMIT, ApiError, Ctx, Reply, not_found, paginate, route

# ------------------------------------------------------------------------------------------------
# GitHub App


def _require_app(ctx: Ctx) -> App:
    if ctx.state.app is None:
        raise not_found()
    return ctx.state.app


@route("GET", "/app", auth="jwt")
def get_app(ctx: Ctx) -> Reply:
    return Reply(200, render.app(ctx.urls, _require_app(ctx)))


@route("GET", "/app/installations", auth="jwt")
def list_installations(ctx: Ctx) -> Reply:
    app = _require_app(ctx)
    page, headers = paginate(ctx, ctx.state.installations())
    return Reply(200, [render.installation(ctx.urls, i, app) for i in page], headers)


@route("GET", "/installation/repositories")
def list_installation_repositories(ctx: Ctx) -> Reply:
    inst = ctx.who.installation
    if inst is None:
        raise ApiError(403, "This endpoint needs an installation access token.")
    repos = sorted(ctx.state.installation_repos(inst), key=lambda r: r.full_name)
    page, headers = paginate(ctx, repos)
    return Reply(200, {"total_count": len(repos), "repository_selection": "all" if inst.repositories is None
                       else "selected", "repositories": [render.repository(ctx.urls, r) for r in page]}, headers)


@route("GET", "/repos/{owner}/{repo}/installation", auth="jwt")
def get_repo_installation(ctx: Ctx) -> Reply:
    app = _require_app(ctx)
    repo = ctx.repo
    inst = ctx.state.installation_for(repo.owner.login)
    if inst is None or (inst.repositories is not None and repo.name not in inst.repositories):
        raise not_found()
    return Reply(200, render.installation(ctx.urls, inst, app))


TOKEN_ALPHABET = string.ascii_letters + string.digits


@route("POST", "/app/installations/{installation_id}/access_tokens", auth="jwt")
def create_installation_token(ctx: Ctx) -> Reply:
    _require_app(ctx)
    inst = ctx.state.find_installation(ctx.int_param("installation_id"))
    if inst is None:
        raise not_found()
    body: JsonObj = ctx.body or {}
    available = ctx.state.installation_repos(inst)
    by_name = {r.name.lower(): r for r in available}
    by_id = {r.id: r for r in available}
    chosen: list[Repo] | None = None
    if body.get("repositories") or body.get("repository_ids"):
        try:
            chosen = [by_name[n.split("/")[-1].lower()] for n in body.get("repositories", [])]
            chosen += [by_id[i] for i in body.get("repository_ids", [])]
        except KeyError:
            raise ApiError(422, "There is at least one repository that does not exist or is "
                                "not accessible to the parent installation.") from None
    requested: dict[str, str] = dict(body.get("permissions") or {})
    for name, level in requested.items():
        if not render.permission_allows(inst.permissions, name, level):
            raise ApiError(422, "The permissions requested are not granted to this "
                                "installation.")
    permissions = requested or dict(inst.permissions)
    token = "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
    expires = utcnow() + timedelta(hours=1)
    ctx.state.remember_token(IssuedToken(
        token, inst.id, expires, permissions,
        None if chosen is None else [r.name for r in chosen], utcnow()))
    selection = "selected" if chosen is not None or inst.repositories is not None else "all"
    repos_json = None if chosen is None else [render.repository(ctx.urls, r) for r in chosen]
    return Reply(201, render.installation_token(ctx.urls, token, expires, permissions,
                                                repos_json, selection))


@route("POST", "/app-manifests/{code}/conversions", auth="optional")
def create_app_from_manifest(ctx: Ctx) -> Reply:
    created = ctx.state.create_manifest_app(ctx.params["code"])
    if created is None:  # GitHub's answer to a code it never issued, one that expired, or one already used
        raise not_found()
    return Reply(201, {**render.app(ctx.urls, created.app), "description": created.description,
                       "external_url": created.external_url, "client_secret": created.client_secret,
                       "webhook_secret": created.webhook_secret, "pem": created.pem})


# ------------------------------------------------------------------------------------------------
# misc


@route("GET", "/rate_limit", auth="optional")
def rate_limit(ctx: Ctx) -> Reply:
    return Reply(200, render.rate_limit(RATE_LIMIT, ctx.rate_used,
                                        utcnow() + timedelta(hours=1)))
