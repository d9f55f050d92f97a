"""The web UI at /ui: watch, start and govern sessions and campaigns (`fixloop serve`, FIXLOOP_UI=on).

Pages are rendered on the server (Jinja2, escaping everything) and read with JavaScript off; one small
script of the App's own (static/live.js) refreshes a running session's page. People sign in with GitHub
(`_signin`) and see only the repositories that both the App's installation and they can reach; starting,
stopping and retrying need write permission on the repository, as comment commands do. Every form
carries the person's CSRF token, cookies are signed, HTTP-only, Secure and SameSite, and every page is
served with a strict Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.app.campaign_store import ENDED as TARGET_ENDED
from bot.app.campaign_store import STATES as TARGET_STATES
from bot.app.store import SessionFilter, SessionRecord
from bot.app.ui import _views
from bot.app.ui._signin import LIFETIME, SESSION_COOKIE, STATE_COOKIE, STATE_LIFETIME, GitHubSignIn, Person, Signer
from bot.errors import ConfigError, GitHubError, NotStarted
from bot.github.commands import CAMPAIGN_STEERING
from bot.github.rules import WRITE_ROLES
from bot.task import DISPATCH_KINDS, Origin, Ref, Task

if TYPE_CHECKING:
    from bot.app.server import Service

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
PAGE_SIZE = 100  # sessions a list page shows, unless asked for more
MAX_PAGE = 10_000
MAX_FORM = 64 * 1024
STATUSES = ("dispatching", "dispatched", "in_progress", "completed", "failed")

_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
_templates.filters.update(when=_views.when, dollars=_views.dollars, outcome=_views.outcome)


class _SignInFirst(Exception):
    pass


def ui_router(service: Service) -> APIRouter:
    settings = service.settings
    assert settings.public_url and settings.client_id and settings.client_secret, "checked by AppSettings"
    public = settings.public_url
    signer = Signer(settings.webhook_secret)
    sign_in = GitHubSignIn(settings.api_url, settings.client_id, settings.client_secret)
    secure = urlsplit(public).scheme == "https"  # plain http only on this machine (AppSettings): a try-out
    router = APIRouter(prefix="/ui")

    # -- who is asking ---------------------------------------------------------------------------
    def person(request: Request) -> Person:
        session_id = signer.unsign(request.cookies.get(SESSION_COOKIE))
        found = service.store.ui_session(session_id) if session_id else None
        if found is None:
            raise _SignInFirst
        login, repositories, csrf = found
        return Person(login, tuple(repositories), csrf)

    async def form(request: Request, who: Person) -> dict[str, str]:
        """The posted form, once its CSRF token and origin are checked."""
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin(public):
            raise HTTPException(403, "this form was posted from another site")
        body = await request.body()
        if len(body) > MAX_FORM:
            raise HTTPException(413, "the form is too large")
        fields = {name: values[-1] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(fields.get("csrf", ""), who.csrf):
            raise HTTPException(403, "the form's token is missing or stale: reload the page and try again")
        return fields

    def may_write(who: Person, repository: str) -> bool:
        try:
            installation = service.tokens.installation_for(repository)
            return service.processor.client(installation, repository).permission(who.login) in WRITE_ROLES
        except GitHubError:
            return False

    def page(template: str, who: Person | None, status: int = 200, **context: Any) -> HTMLResponse:
        html = _templates.get_template(template).render(who=who, **context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def visible_session(who: Person, session_id: str) -> SessionRecord:
        found = service.store.session(session_id)
        if found is None or not who.may_see(found.repository):  # the same answer: existence is not told either
            raise HTTPException(404, "no such session among the repositories you can see")
        return found

    async def signed_in(request: Request) -> Person:
        try:
            return await run_in_threadpool(person, request)
        except _SignInFirst:
            raise HTTPException(303, headers={"Location": "/ui/signin?" + urlencode({"next": _local(
                request.url.path + (f"?{request.url.query}" if request.url.query else ""))})}) from None

    # -- signing in -------------------------------------------------------------------------------
    @router.get("/signin")
    async def signin_page(next: str = "/ui/", error: str = "") -> HTMLResponse:
        return page("signin.html", None, next=_local(next), error=error[:200])

    @router.get("/login")
    async def login(next: str = "/ui/") -> Response:
        state = secrets.token_urlsafe(24)
        answer = RedirectResponse(sign_in.authorize_url(f"{public}/ui/callback", state), status_code=303)
        answer.set_cookie(STATE_COOKIE, signer.sign(f"{state}|{_local(next)}"), max_age=STATE_LIFETIME, path="/ui",
                          secure=secure, httponly=True, samesite="lax")
        return answer

    @router.get("/callback")
    async def callback(request: Request, code: str = "", state: str = "") -> Response:
        expected, _, next_page = (signer.unsign(request.cookies.get(STATE_COOKIE)) or "").partition("|")
        if not code or not state or not expected or not hmac.compare_digest(state, expected):
            return page("signin.html", None, 400, next="/ui/",
                        error="That sign-in did not start here, or took too long. Sign in again.")
        try:
            login, repositories = await run_in_threadpool(sign_in.person, code)
        except GitHubError as error:
            return page("signin.html", None, 502, next="/ui/", error=str(error))
        session_id, _ = await run_in_threadpool(service.store.open_ui_session, login, repositories, LIFETIME)
        answer = RedirectResponse(_local(next_page), status_code=303)
        answer.set_cookie(SESSION_COOKIE, signer.sign(session_id), max_age=LIFETIME, path="/ui", secure=secure,
                          httponly=True, samesite="lax")
        answer.delete_cookie(STATE_COOKIE, path="/ui")
        return answer

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        who = await signed_in(request)
        await form(request, who)
        session_id = signer.unsign(request.cookies.get(SESSION_COOKIE))
        if session_id:
            await run_in_threadpool(service.store.close_ui_session, session_id)
        answer = RedirectResponse("/ui/signin", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/ui")
        return answer

    # -- sessions ---------------------------------------------------------------------------------
    @router.get("/")
    async def sessions(request: Request, repository: str = "", kind: str = "", status: str = "", requester: str = "",
                       before: float | None = None, limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE)) -> HTMLResponse:
        who = await signed_in(request)
        where = SessionFilter(repositories=list(who.repositories), repository=repository or None, kind=kind or None,
                              status=status or None, requester=requester or None)
        found = await run_in_threadpool(service.store.find_sessions, where, limit=limit + 1, before=before)
        rows = _views.rows(found[:limit])
        older = None if len(found) <= limit else "?" + urlencode({**{k: v for k, v in (
            ("repository", repository), ("kind", kind), ("status", status), ("requester", requester)) if v},
            **({"limit": limit} if limit != PAGE_SIZE else {}), "before": found[limit - 1].created})
        return page("sessions.html", who, rows=rows, older=older, filters={
            "repository": repository, "kind": kind, "status": status, "requester": requester},
            kinds=DISPATCH_KINDS, statuses=STATUSES)

    @router.get("/sessions/{session_id}")
    async def session(request: Request, session_id: str) -> HTMLResponse:
        who = await signed_in(request)
        shown = await run_in_threadpool(_session_page, who, session_id)
        can_write = await run_in_threadpool(may_write, who, shown.record.repository)
        return page("session.html", who, s=shown, can_write=can_write)

    @router.get("/sessions/{session_id}/live")
    async def session_live(request: Request, session_id: str) -> HTMLResponse:
        """The changing part of a session's page, for static/live.js."""
        who = await signed_in(request)
        shown = await run_in_threadpool(_session_page, who, session_id)
        return page("_session_body.html", who, s=shown)

    def _session_page(who: Person, session_id: str) -> _views.SessionPage:
        record = visible_session(who, session_id)
        return _views.session_page(record, service.store.events(record.id))

    @router.post("/sessions/{session_id}/{action}")
    async def steer_session(request: Request, session_id: str, action: str) -> Response:
        who = await signed_in(request)
        fields = await form(request, who)
        if action not in ("stop", "retry"):
            raise HTTPException(404, f"sessions take stop or retry, not {action!r}")

        def steer() -> SessionRecord:
            found = visible_session(who, session_id)
            if not may_write(who, found.repository):
                raise HTTPException(403, f"stopping and retrying need write access to {found.repository}")
            if action == "stop":
                return service.stop_session(found, who.login)
            return service.retry_session(found, who.login, correlation=f"ui-{secrets.token_hex(8)}",
                                         resume=fields.get("continue") == "on")

        try:
            changed = await run_in_threadpool(steer)
        except NotStarted as refused:
            raise HTTPException(refused.status, str(refused)) from None
        return RedirectResponse(f"/ui/sessions/{changed.id}", status_code=303)

    @router.get("/new")
    async def new_session(request: Request, repository: str = "") -> HTMLResponse:
        who = await signed_in(request)
        return page("new.html", who, repository=repository, ref="", task="", iterations="", error="")

    @router.post("/new")
    async def start_session(request: Request) -> Response:
        who = await signed_in(request)
        fields = await form(request, who)
        repository, ref = fields.get("repository", ""), fields.get("ref", "").strip()
        text, iterations = fields.get("task", "").strip(), fields.get("iterations", "").strip()

        def again(status: int, error: str) -> HTMLResponse:
            return page("new.html", who, status, repository=repository, ref=ref, task=text, iterations=iterations,
                        error=error)

        if not who.may_see(repository):
            return again(403, "Choose one of the repositories you can see.")
        if not text:
            return again(422, "Say what the session should do.")
        if len(text) > 10_000:
            return again(422, "The task is longer than 10,000 characters.")
        if iterations and not (iterations.isdigit() and 1 <= int(iterations) <= 50):
            return again(422, "Iterations must be a whole number from 1 to 50 (the repository's limit applies too).")
        try:  # HEAD, as in git: the repository's default branch
            target = Ref(ref=ref or "HEAD", iterations=int(iterations) if iterations else None)
        except ValueError:
            return again(422, f"{ref!r} is not a branch or a commit.")

        def start() -> SessionRecord:
            if not may_write(who, repository):
                raise HTTPException(403, f"starting a session needs write access to {repository}")
            task = Task(kind="task", title=text.splitlines()[0][:100], instructions=text,
                        source=f"@{who.login} in fixloop's web UI")
            return service.start_session(task, Origin(repository=repository, requester=who.login, target=target),
                                         correlation=f"ui-{secrets.token_hex(8)}")

        try:
            started = await run_in_threadpool(start)
        except NotStarted as refused:
            return again(refused.status, str(refused))
        except ConfigError as error:
            return again(422, str(error))
        return RedirectResponse(f"/ui/sessions/{started.id}", status_code=303)

    # -- campaigns and cost -----------------------------------------------------------------------
    @router.get("/campaigns")
    async def campaigns(request: Request) -> HTMLResponse:
        who = await signed_in(request)

        def listed() -> list[tuple[Any, dict[str, int]]]:
            rows = []
            for record in service.store.campaigns.campaigns():
                if who.may_see(record.tracking_repository):
                    counts: dict[str, int] = {}
                    for target in service.store.campaigns.targets(record.id):
                        counts[target.state] = counts.get(target.state, 0) + 1
                    rows.append((record, counts))
            return rows

        return page("campaigns.html", who, rows=await run_in_threadpool(listed), states=TARGET_STATES)

    def visible_campaign(who: Person, campaign_id: str) -> Any:
        record = service.store.campaigns.campaign(campaign_id)
        if record is None or not who.may_see(record.tracking_repository):
            raise HTTPException(404, "no such campaign among the repositories you can see")
        return record

    @router.get("/campaigns/{campaign_id}")
    async def campaign(request: Request, campaign_id: str) -> HTMLResponse:
        who = await signed_in(request)

        def shown() -> tuple[Any, list[Any], bool]:
            record = visible_campaign(who, campaign_id)
            return record, service.store.campaigns.targets(record.id), may_write(who, record.tracking_repository)

        record, targets, can_write = await run_in_threadpool(shown)
        counts = {state: sum(1 for t in targets if t.state == state) for state in TARGET_STATES}
        visible = [t for t in targets if who.may_see(t.repository)]  # the others are counted, never named
        return page("campaign.html", who, c=record, targets=visible, total=len(targets),
                    finished=sum(1 for t in targets if t.state in TARGET_ENDED), counts=counts, can_write=can_write,
                    steering=CAMPAIGN_STEERING)

    @router.post("/campaigns/{campaign_id}/{action}")
    async def steer_campaign(request: Request, campaign_id: str, action: str) -> Response:
        who = await signed_in(request)
        fields = await form(request, who)
        if action not in CAMPAIGN_STEERING:
            raise HTTPException(404, f"campaigns take {', '.join(CAMPAIGN_STEERING)}, not {action!r}")

        def steer() -> None:
            record = visible_campaign(who, campaign_id)
            if not may_write(who, record.tracking_repository):
                raise HTTPException(403, f"steering this campaign needs write access to {record.tracking_repository}")
            try:
                service.campaigns.steer(campaign_id, action, from_patch=fields.get("from_patch") == "on")
            except ConfigError as error:
                raise HTTPException(409, str(error)) from None
            service.campaign_changed()

        await run_in_threadpool(steer)
        return RedirectResponse(f"/ui/campaigns/{campaign_id}", status_code=303)

    @router.get("/cost")
    async def cost(request: Request) -> HTMLResponse:
        who = await signed_in(request)
        costs = await run_in_threadpool(service.store.cost_by_week, SessionFilter(repositories=list(who.repositories)))
        return page("cost.html", who, chart=_views.cost_chart(costs))

    return router


async def error_page(request: Request, error: StarletteHTTPException) -> Response:
    """HTTP errors of the UI's pages as pages (the API's stay JSON)."""
    if not request.url.path.startswith("/ui"):
        return await http_exception_handler(request, error)
    if error.status_code == 303 and error.headers:
        return RedirectResponse(error.headers["Location"], status_code=303)
    html = _templates.get_template("error.html").render(who=None, status=error.status_code, message=error.detail)
    return HTMLResponse(html, status_code=error.status_code, headers=HEADERS)


class ServerTiming:
    """ASGI middleware: the UI's answers say how long the App took to produce them (`Server-Timing: app;dur=`, in
    milliseconds, up to their headers: the pages are rendered by then), for operators and the benchmark."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [*message.get("headers", []), (b"server-timing", took)]
            await send(message)

        await self.app(scope, receive, timed)


def _local(target: str) -> str:
    """A page of the UI to go back to: never another site (an open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return "/ui/"
    return target


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
