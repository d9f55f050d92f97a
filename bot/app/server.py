"""`fixloop serve`: the App's ASGI app (FastAPI on uvicorn).

POST /webhook verifies the signature over the raw body before anything else is read from it,
records the delivery (deduplicated by `X-GitHub-Delivery`, also across restarts), answers at
once, and leaves the GitHub calls to worker threads. The recorded deliveries are the queue: the
workers of every replica claim them from the database (see `store`), so none is lost to a restart
and none is processed twice. On SIGTERM a replica stops claiming at once, gives the deliveries in
hand a few seconds, and hands back the rest.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.app import run_events
from bot.app.campaigns import Campaigns, view
from bot.app.logs import logger
from bot.app.metrics import CONTENT_TYPE, Metrics
from bot.app.oidc import ActionsTokenVerifier
from bot.app.processor import Processor
from bot.app.run_events import MAX_EVENT, RunEvent
from bot.app.settings import AppSettings
from bot.app.store import ACTIVE, SessionRecord, Store
from bot.app.ui import STATIC, ServerTiming, error_page, ui_router
from bot.campaign import LOGIN
from bot.errors import ConfigError, GitHubError, MalformedEvent, NotStarted
from bot.github.app_auth import InstallationTokens
from bot.github.client import RequestPolicy
from bot.github.commands import CAMPAIGN_STEERING
from bot.github.events import EVENT_NAMES, verify_signature
from bot.github.rules import Run
from bot.secrets import Redactor
from bot.task import RUN_EVENTS_PATH, FailedRun, Origin, Ref, SessionKind, Task, Thread, from_inputs
from bot.telemetry.app_spans import AppTracing

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
POLL = 0.5  # seconds between looks for deliveries that other replicas received
HEARTBEAT = 2.0  # seconds between "alive" records, and looks for deliveries a stopped replica held
STALE = 15.0  # seconds of silence after which a replica counts as stopped
OPTIMIZE_EVERY = 600.0  # seconds between refreshes of the database's statistics for its query planner
STOP_GRACE = 7.0  # seconds the deliveries in hand get to finish on stop (SIGTERM exits within 10 s)


class SessionRequest(BaseModel):
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    kind: SessionKind
    target: int = Field(0, ge=0, description="Issue or pull request number; for ci_failure, the failed workflow run "
                                             "id; none for task.")
    instructions: str = Field("", max_length=10_000)
    test: str | None = Field(None, max_length=1_000, pattern=r"^[^-]", description="For deflake: the test id.")
    ref: str | None = Field(None, max_length=255, description="For task: the branch or commit (default: the "
                                                              "repository's default branch).")
    title: str | None = Field(None, max_length=200, description="For task: the task in a line (default: its first).")
    iterations: int | None = Field(None, ge=1, le=100, description="For task: at most this many iterations, within "
                                                                   "the repository's own limit.")
    requester: str = "api"

    @model_validator(mode="after")
    def _complete(self) -> SessionRequest:
        if self.kind == "deflake" and not self.test:
            raise ValueError("kind deflake needs `test`, the id of the flaky test")
        if self.kind == "task" and not self.instructions.strip():
            raise ValueError("kind task needs `instructions`, the task in words")
        if self.kind != "task" and self.target < 1:
            raise ValueError(f"kind {self.kind} needs `target`, the issue, pull request or workflow run")
        if self.kind == "task":
            Ref(ref=self.ref or "HEAD")  # a branch or a commit, else refused here (422), before anything else
            self.title = self.title or self.instructions.strip().splitlines()[0][:100]
        return self


class CampaignRequest(BaseModel):
    file: str = Field(min_length=1, max_length=1_000_000, description="The campaign file (YAML).")
    requester: str | None = Field(None, pattern=LOGIN,
                                  description="The GitHub login of the person who starts it, for the record.")


class Service:
    """The store, the processor and the worker threads behind the HTTP routes."""

    def __init__(self, settings: AppSettings, *, store: Store | None = None, tokens: InstallationTokens | None = None,
                 metrics: Metrics | None = None, workers: int = 4, policy: RequestPolicy = RequestPolicy(),
                 resume_pause: float = 1.0, tracing: AppTracing | None = None) -> None:
        """`policy` and `resume_pause`: see `Processor` (`policy` is also the default tokens' policy);
        `tracing`: where the spans of deliveries and dispatches go (default: OTEL_EXPORTER_OTLP_ENDPOINT's
        collector, if it is set). Campaigns dispatch at most one run per `settings.campaign_pace` seconds
        in each installation."""
        self.settings = settings
        self.store = store or Store(settings.database)
        self.tokens = tokens or InstallationTokens(app_id=settings.app_id, private_key=settings.private_key,
                                                   api_url=settings.api_url, policy=policy)
        self.metrics = metrics or Metrics()
        self.tracing = tracing or AppTracing.from_environ(os.environ, warn=logger.warning,
                                                          redactor=Redactor(settings.secrets))
        self.processor = Processor(settings, self.store, self.tokens, self.metrics, policy=policy,
                                   resume_pause=resume_pause, tracing=self.tracing)
        self.campaigns = Campaigns(self.store, self.processor, self.tokens, pace=settings.campaign_pace)
        self.verifier = (ActionsTokenVerifier(settings.oidc_issuer, settings.public_url)
                         if settings.public_url is not None else None)
        self.processor.campaigns = self.campaigns
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stopping = threading.Event()
        self._arrived = threading.Semaphore(0)  # a delivery this replica recorded: a worker looks at once
        self._campaign_work = threading.Event()  # a campaign started, changed or a target ended: look at once
        self.workers = [threading.Thread(target=self._work, name=f"fixloop-worker-{i}", daemon=True)
                        for i in range(workers)]
        self._heart = threading.Thread(target=self._beat, name="fixloop-heartbeat", daemon=True)
        self._dispatcher = threading.Thread(target=self._campaign_loop, name="fixloop-campaigns", daemon=True)

    def start(self) -> None:
        if self.processor.app_slug is None:
            try:
                self.processor.app_slug = self.tokens.app_slug()
            except GitHubError as error:
                logger.warning("the App's slug is unknown (%s): set APP_SLUG so fixloop can tell its own check runs",
                               error)
        self.store.heartbeat(self.replica)
        self.store.reclaim(STALE)  # deliveries a stopped replica held (this one, before a restart): finish them
        self._heart.start()
        self._dispatcher.start()
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        """Stop claiming at once; the deliveries in hand get STOP_GRACE seconds, then go back to the queue
        for the other replicas (or this one's restart)."""
        self._stopping.set()
        for _ in self.workers:
            self._arrived.release()
        self._campaign_work.set()
        deadline = time.monotonic() + STOP_GRACE
        for worker in (*self.workers, self._heart, self._dispatcher):
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        busy = [worker.name for worker in (*self.workers, self._dispatcher) if worker.is_alive()]
        if busy:  # still holding work: handed over once this process is gone, never while it may still act
            logger.warning("stopping with %d worker(s) still busy; the other replicas take over what they hold once "
                           "this process has exited", len(busy))
        else:
            self.store.leave(self.replica)
        self.tracing.close()

    def arrived(self) -> None:
        """A delivery was recorded here: wake a worker rather than wait for its next look."""
        self._arrived.release()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                pending = self.store.next_delivery(self.replica)
            except Exception:  # noqa: BLE001 - the database away for a moment: look again later
                self.metrics.error("worker")
                logger.exception("the delivery queue could not be read")
                pending = None
            if pending is None:
                self._arrived.acquire(timeout=POLL)
                continue
            try:
                self._handle(pending.id, pending.event, pending.payload)
            except Exception:  # noqa: BLE001 - nothing about one delivery may stop a worker
                self.metrics.error("worker")
                logger.exception("delivery could not be recorded", extra={"delivery": pending.id})

    def start_session(self, task: Task, origin: Origin, *, correlation: str) -> SessionRecord:
        """Start a session asked for through the API or the web UI (whoever asks was checked by them): the
        repository's config applies, one session per target, then the dispatch. Raises NotStarted."""
        try:
            installation = self.tokens.installation_for(origin.repository)
            github = self.processor.client(installation, origin.repository)
            default_branch = github.default_branch()
        except GitHubError as error:
            raise NotStarted(404, f"the App cannot reach {origin.repository}: {error}") from None
        target = origin.target
        if isinstance(target, Ref):
            if target.ref == "HEAD":  # as in git: the default branch
                target = target.model_copy(update={"ref": default_branch})
                origin = origin.model_copy(update={"target": target})
            if not re.fullmatch(r"[0-9a-f]{40}", target.ref) and github.branch_sha(target.ref) is None:
                raise NotStarted(422, f"{target.ref!r} is neither a branch of {origin.repository} nor a full commit id")
        try:
            outcome = self.processor.start(correlation, github, Run(task, origin), default_branch)
        except ConfigError as error:
            raise NotStarted(422, str(error)) from None
        session = self.store.session_for_correlation(correlation)
        if session is None:
            raise NotStarted(409, outcome)
        if session.status == "failed":
            raise NotStarted(502, session.reason or outcome)
        return session

    def retry_session(self, session: SessionRecord, requester: str, *, correlation: str,
                      resume: bool = False) -> SessionRecord:
        """The same task dispatched again, for `requester`; `resume`: going on from the kept work on its WIP
        branch. Raises NotStarted."""
        if not session.inputs:
            raise NotStarted(409, "this session was started before fixloop kept what it dispatched; start it again")
        try:
            task, origin = from_inputs(json.loads(session.inputs), repository=session.repository, sender=requester)
        except MalformedEvent as error:
            raise NotStarted(409, f"this session cannot be retried: {error}") from None
        if resume and task.kind == "campaign":
            raise NotStarted(422, "a campaign's target goes on from its kept work with the campaign's "
                                  "`retry-failed --from-patch`")
        task = task.model_copy(update={"source": f"@{requester}, retrying {session.id}", "resume": resume})
        return self.start_session(task, origin.model_copy(update={"requester": requester, "correlation_id": None}),
                                  correlation=correlation)

    def stop_session(self, session: SessionRecord, requester: str) -> SessionRecord:
        """Cancel the session's workflow run and record who stopped it. Raises NotStarted."""
        if session.status not in ACTIVE:
            raise NotStarted(409, f"session {session.id} is not running ({session.status})")
        if session.run_id is None:  # marked stopped while its run goes on would free its target for a second one
            raise NotStarted(409, f"session {session.id}'s workflow run is not known yet: try again in a moment")
        try:
            installation = self.tokens.installation_for(session.repository)
            self.processor.client(installation, session.repository).cancel_run(session.run_id)
        except GitHubError as error:
            raise NotStarted(502, f"GitHub did not cancel run {session.run_id}: {error}") from None
        self.store.update_session(session.id, status="completed", conclusion="cancelled",
                                  reason=f"stopped by @{requester}")
        stopped = self.store.session(session.id)
        assert stopped is not None
        return stopped

    def campaign_changed(self) -> None:
        """Campaign work may be waiting (a campaign started or was steered): look at once."""
        self._campaign_work.set()

    def _campaign_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.campaigns.step(self.replica)
            except Exception:  # noqa: BLE001 - nothing about one campaign may stop the others
                self.metrics.error("campaign")
                logger.exception("campaign work failed")
                worked = False
            if not worked:
                self._campaign_work.wait(POLL)
                self._campaign_work.clear()

    def _beat(self) -> None:
        optimized = time.monotonic()
        while not self._stopping.wait(HEARTBEAT):
            try:
                if time.monotonic() - optimized > OPTIMIZE_EVERY:
                    optimized = time.monotonic()
                    self.store.optimize()
                if not self.store.heartbeat(self.replica):
                    logger.error("this replica was taken for stopped (its heartbeat was late): the others took over "
                                 "what it held; check the database's reachability")
                if self.store.reclaim(STALE):
                    self._arrived.release()
            except Exception:  # noqa: BLE001 - the database away for a moment: beat again later
                logger.exception("the replica's heartbeat could not be recorded")

    def _handle(self, delivery: str, event: str, payload: Any) -> None:
        with self.tracing.delivery(delivery, event, payload) as decided:
            try:
                outcome = self.processor.process(delivery, event, payload)
            except Exception as error:  # noqa: BLE001 - a bug is recorded as the delivery's outcome, and counted
                outcome = f"error: {type(error).__name__}: {error}"
                self.metrics.error("process")
                logger.exception("delivery failed", extra={"delivery": delivery, "event": event})
            # Outcomes can echo payload text; lone surrogates cannot be stored or logged as UTF-8.
            outcome = outcome.encode("utf-8", "replace").decode("utf-8")
            decided(outcome)
        self._record(delivery, outcome)
        if outcome.startswith("campaign "):  # a target ended: its slot and its tracking issue are free to move
            self.campaign_changed()
        self.metrics.delivery(event, outcome.split(":", 1)[0].split(" ", 1)[0])
        logger.info(outcome, extra={"delivery": delivery, "event": event, "outcome": outcome})

    def _record(self, delivery: str, outcome: str) -> None:
        """The delivery's outcome, retried through a brief loss of the database (else its lease runs out and
        another replica processes it again, which finds its session and does nothing twice)."""
        for attempt in range(4):
            try:
                if not self.store.finish_delivery(delivery, outcome, self.replica):
                    logger.warning("delivery %s was taken over by another replica before it finished here", delivery,
                                   extra={"delivery": delivery})
                return
            except Exception:  # the database away for a moment: try again
                if attempt == 3:
                    raise
                time.sleep(0.5 * 2**attempt)

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until every recorded delivery has been processed, by any replica (tests)."""
        deadline = time.monotonic() + timeout
        while self.store.unfinished_deliveries():
            if time.monotonic() > deadline:
                raise TimeoutError(f"deliveries still unprocessed after {timeout:.0f} s")
            time.sleep(0.02)


def create_app(settings: AppSettings, service: Service | None = None, *,
               policy: RequestPolicy = RequestPolicy()) -> FastAPI:
    """`policy`: how the App's GitHub requests are paced and retried, when no `service` is given."""
    service = service or Service(settings, policy=policy)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await run_in_threadpool(service.stop)

    app = FastAPI(title="fixloop", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    def reject(status: int, event: str, outcome: str, message: str) -> JSONResponse:
        service.metrics.delivery(event, outcome)
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            return await _webhook(request)
        finally:
            service.metrics.webhook_latency(time.perf_counter() - started)

    async def _webhook(request: Request) -> JSONResponse:
        event = request.headers.get("x-github-event") or "unknown"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return reject(413, event, "too_large", "payloads are at most 25 MB")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return reject(413, event, "too_large", "payloads are at most 25 MB")
        if not verify_signature(settings.webhook_secret, bytes(body), request.headers.get("x-hub-signature-256")):
            return reject(401, event, "bad_signature", "missing or wrong X-Hub-Signature-256")
        delivery = request.headers.get("x-github-delivery")
        if not delivery or event == "unknown":
            return reject(400, event, "bad_request", "X-GitHub-Event and X-GitHub-Delivery are required")
        if event == "ping":
            service.metrics.delivery(event, "pong")
            return JSONResponse({"pong": True})
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, too deeply nested, or an integer too long
            return reject(400, event, "bad_request", "the body is not JSON that fixloop can read")
        if not isinstance(payload, dict):
            return reject(400, event, "bad_request", "the body must be a JSON object")
        if event not in EVENT_NAMES:
            service.metrics.delivery(event, "unhandled")
            return JSONResponse({"ignored": f"fixloop does not act on {event} events"}, status_code=202)
        if not await run_in_threadpool(service.store.claim_delivery, delivery[:200], event, payload):
            service.metrics.delivery(event, "duplicate")
            return JSONResponse({"duplicate": delivery}, status_code=200)
        service.arrived()
        return JSONResponse({"accepted": delivery}, status_code=202)

    def authorize(authorization: str | None = Header(None)) -> None:
        """The API's bearer token, checked before anything else about the request."""
        if settings.api_token is None:
            raise HTTPException(404, "the sessions API is off: set FIXLOOP_API_TOKEN to turn it on")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), settings.api_token.encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    api = [Depends(authorize)]

    @app.post("/api/sessions", status_code=201, dependencies=api)
    async def start_session(request: SessionRequest) -> SessionRecord:
        return await run_in_threadpool(_start_session, request)

    def _start_session(request: SessionRequest) -> SessionRecord:
        task = Task(kind=request.kind, title=request.title or f"#{request.target}", instructions=request.instructions,
                    test=request.test, source=f"{request.requester} through the fixloop API")
        target: Thread | FailedRun | Ref = (
            FailedRun(run_id=request.target) if request.kind == "ci_failure" else
            Ref(ref=request.ref or "HEAD", iterations=request.iterations) if request.kind == "task" else
            Thread(number=request.target))
        try:
            return service.start_session(task, Origin(repository=request.repository, requester=request.requester,
                                              target=target), correlation=f"api-{secrets.token_hex(8)}")
        except NotStarted as refused:
            raise HTTPException(refused.status, str(refused)) from None

    @app.get("/api/sessions/{session_id}", dependencies=api)
    async def get_session(session_id: str) -> SessionRecord:
        found = await run_in_threadpool(service.store.session, session_id)
        if found is None:
            raise HTTPException(404, f"no session {session_id}")
        return found

    @app.post("/api/sessions/{session_id}/{action}", dependencies=api)
    async def steer_session(session_id: str, action: str, requester: str = Query("api", pattern=LOGIN),
                            go_on: bool = Query(False, alias="continue")) -> SessionRecord:
        """`stop` cancels the session's run; `retry` dispatches its task again (a new session), and with
        `continue=true` the new session goes on from the kept work on the WIP branch."""
        def steer() -> SessionRecord:
            found = service.store.session(session_id)
            if found is None:
                raise HTTPException(404, f"no session {session_id}")
            try:
                if action == "stop":
                    return service.stop_session(found, requester)
                if action == "retry":
                    return service.retry_session(found, requester, correlation=f"api-{secrets.token_hex(8)}",
                                                 resume=go_on)
            except NotStarted as refused:
                raise HTTPException(refused.status, str(refused)) from None
            raise HTTPException(404, f"sessions take stop or retry, not {action!r}")
        return await run_in_threadpool(steer)

    @app.get("/api/sessions", dependencies=api)
    async def list_sessions(repo: str | None = Query(None)) -> list[SessionRecord]:
        return await run_in_threadpool(service.store.sessions, repo)

    @app.post("/api/campaigns", status_code=201, dependencies=api)
    async def start_campaign(request: CampaignRequest) -> dict[str, Any]:
        return await run_in_threadpool(_start_campaign, request)

    def _start_campaign(request: CampaignRequest) -> dict[str, Any]:
        try:
            record = service.campaigns.start(request.file, request.requester)
        except ConfigError as error:
            raise HTTPException(422, str(error)) from None
        service.campaign_changed()
        return view(record, service.store.campaigns.targets(record.id))

    @app.get("/api/campaigns", dependencies=api)
    async def list_campaigns() -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]]:
            return [{k: v for k, v in view(c, service.store.campaigns.targets(c.id)).items() if k != "targets"}
                    for c in service.store.campaigns.campaigns()]
        return await run_in_threadpool(listed)

    @app.get("/api/campaigns/{campaign_id}", dependencies=api)
    async def get_campaign(campaign_id: str) -> dict[str, Any]:
        return await run_in_threadpool(_campaign_view, campaign_id)

    def _campaign_view(campaign_id: str) -> dict[str, Any]:
        record = service.store.campaigns.campaign(campaign_id)
        if record is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return view(record, service.store.campaigns.targets(campaign_id))

    @app.post("/api/campaigns/{campaign_id}/{action}", dependencies=api)
    async def steer_campaign(campaign_id: str, action: str, from_patch: bool = Query(False)) -> dict[str, Any]:
        return await run_in_threadpool(_steer, campaign_id, action, from_patch)

    def _steer(campaign_id: str, action: str, from_patch: bool) -> dict[str, Any]:
        if action not in CAMPAIGN_STEERING:
            raise HTTPException(404, f"campaigns take {', '.join(CAMPAIGN_STEERING)}, not {action!r}")
        try:
            service.campaigns.steer(campaign_id, action, from_patch=from_patch)
        except LookupError as missing:
            raise HTTPException(404, str(missing)) from None
        except ConfigError as error:
            raise HTTPException(409, str(error)) from None
        service.campaign_changed()
        return _campaign_view(campaign_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "queued": await run_in_threadpool(service.store.unfinished_deliveries)}

    if settings.metrics:
        @app.get("/metrics")
        async def metrics() -> PlainTextResponse:
            counts = await run_in_threadpool(service.store.campaigns.counts)
            endings = await run_in_threadpool(service.store.ending_counts)
            escalations = await run_in_threadpool(service.store.escalation_counts)
            return PlainTextResponse(service.metrics.render(counts, endings, escalations), media_type=CONTENT_TYPE)

    @app.post(RUN_EVENTS_PATH)
    async def run_event(request: Request) -> JSONResponse:
        """A runner's session event, authenticated by its workflow run's OIDC token (`run_events`)."""
        if service.verifier is None:
            return JSONResponse({"error": "runner events are off: set FIXLOOP_PUBLIC_URL, the audience runners' "
                                          "tokens name"}, status_code=404)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            service.metrics.runner_event("refused")
            return JSONResponse({"error": "an OIDC token of the session's workflow run is required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            # The token first: a request without a valid one costs no more than its headers.
            identity = await run_in_threadpool(run_events.identify, service.verifier, token.strip())
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_EVENT:
                    raise run_events.Refused(413, f"an event is at most {MAX_EVENT:,} bytes")
            try:
                event = RunEvent.model_validate_json(bytes(body))
            except ValidationError as error:
                raise run_events.Refused(400, f"not a session event: {error.errors()[0]['msg']}") from None
            session = await run_in_threadpool(run_events.accept, service.store, identity, event)
        except run_events.Refused as refused:
            service.metrics.runner_event("refused")
            return JSONResponse({"error": str(refused)}, status_code=refused.status)
        service.metrics.runner_event("recorded")
        return JSONResponse({"recorded": event.seq, "session": session.id}, status_code=202)

    if settings.ui:
        app.include_router(ui_router(service))
        app.add_exception_handler(StarletteHTTPException, error_page)  # type: ignore[arg-type]
        app.add_middleware(ServerTiming)
        app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    return app
