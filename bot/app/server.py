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
from pydantic import BaseModel, Field, model_validator

from bot.app.campaigns import Campaigns, view
from bot.app.logs import logger
from bot.app.metrics import CONTENT_TYPE, Metrics
from bot.app.processor import Processor
from bot.app.settings import AppSettings
from bot.app.store import SessionRecord, Store
from bot.campaign import LOGIN
from bot.errors import ConfigError, GitHubError
from bot.github.app_auth import InstallationTokens
from bot.github.client import RequestPolicy
from bot.github.commands import CAMPAIGN_STEERING
from bot.github.events import EVENT_NAMES, verify_signature
from bot.github.rules import Run
from bot.secrets import Redactor
from bot.task import FailedRun, Origin, SessionKind, Task, Thread
from bot.telemetry.app_spans import AppTracing

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
POLL = 0.5  # seconds between looks for deliveries that other replicas received
HEARTBEAT = 2.0  # seconds between "alive" records, and looks for deliveries a stopped replica held
STALE = 15.0  # seconds of silence after which a replica counts as stopped
STOP_GRACE = 7.0  # seconds the deliveries in hand get to finish on stop (SIGTERM exits within 10 s)


class SessionRequest(BaseModel):
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    kind: SessionKind
    target: int = Field(ge=1, description="Issue or pull request number; for ci_failure, the failed workflow run id.")
    instructions: str = Field("", max_length=10_000)
    test: str | None = Field(None, max_length=1_000, pattern=r"^[^-]", description="For deflake: the test id.")
    requester: str = "api"

    @model_validator(mode="after")
    def _deflake_names_a_test(self) -> SessionRequest:
        if self.kind == "deflake" and not self.test:
            raise ValueError("kind deflake needs `test`, the id of the flaky test")
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
        while not self._stopping.wait(HEARTBEAT):
            try:
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
        try:
            installation = service.tokens.installation_for(request.repository)
            github = service.processor.client(installation, request.repository)
            default_branch = github.default_branch()
        except GitHubError as error:
            raise HTTPException(404, f"the App cannot reach {request.repository}: {error}") from None
        correlation = f"api-{time.time_ns()}"
        task = Task(kind=request.kind, title=f"#{request.target}", instructions=request.instructions, test=request.test,
                    source=f"{request.requester} through the fixloop API")
        target = FailedRun(run_id=request.target) if request.kind == "ci_failure" else Thread(number=request.target)
        origin = Origin(repository=request.repository, requester=request.requester, target=target)
        try:
            outcome = service.processor.start(correlation, github, Run(task, origin), default_branch)
        except ConfigError as error:
            raise HTTPException(422, str(error)) from None
        session = service.store.session_for_correlation(correlation)
        if session is None:
            raise HTTPException(409, outcome)
        if session.status == "failed":
            raise HTTPException(502, session.reason or outcome)
        return session

    @app.get("/api/sessions/{session_id}", dependencies=api)
    async def get_session(session_id: str) -> SessionRecord:
        found = await run_in_threadpool(service.store.session, session_id)
        if found is None:
            raise HTTPException(404, f"no session {session_id}")
        return found

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

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        counts = await run_in_threadpool(service.store.campaigns.counts)
        return PlainTextResponse(service.metrics.render(counts), media_type=CONTENT_TYPE)

    return app
