"""What the App learns from the runs it dispatched: the events a runner posts as its session goes
(authenticated by the run's OIDC token, see `oidc`), or, when none came, the session's report in the
run's artifact once the run has ended. Either way the session's record gets fixloop's own ending,
its reason, its cost and its tokens, not only the workflow's conclusion.

Runner text (model output, tool results, test output) is untrusted: it is stored as data and only
ever rendered escaped. An event is recorded once per (session, number); a token is taken once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from bot.agent.events import SessionEnded
from bot.app.logs import logger
from bot.app.oidc import ActionsTokenVerifier, TokenRefused, check_run
from bot.app.store import SessionRecord, Store
from bot.errors import GitHubError
from bot.github.client import GitHubClient

ARTIFACT_PREFIX = "fixloop-session-"  # workflows/fixloop.yml uploads the session folder as fixloop-session-<run id>
MAX_EVENT = 2 * 1024 * 1024  # bytes of one posted event (the runner cuts long texts well below this)
Ending = Literal["validated", "not_validated", "error", "cancelled"]


class RunEvent(BaseModel):
    correlation_id: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=0, le=1_000_000)
    type: str = Field(pattern=r"^[a-z_]{1,40}$")
    data: dict[str, Any]


class Finished(BaseModel):
    """The runner's `finished` event: how the session ended, after its pull request."""

    status: Ending
    reason: str = Field("", max_length=100_000)
    pull_request_url: str | None = Field(None, pattern=r"^https?://", max_length=2_000)
    cost_usd: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    tokens: int | None = Field(None, ge=0)
    iterations: int | None = Field(None, ge=0)


class RunReport(BaseModel):
    """What the App reads of a session's report.json (written in the runner, so checked like input)."""

    status: Ending
    reason: str = Field("", max_length=100_000)
    cost_usd: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    iterations: list[Any] = []
    usage: dict[str, int] = {}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def accept(store: Store, verifier: ActionsTokenVerifier, token: str, event: RunEvent) -> SessionRecord:
    """Record `event` for the session it names, if `token` proves it comes from that session's run.
    Raises Refused: 401 (no valid token), 403 (another run's token), 404 (no such session), 409 (a token
    or an event seen before: a replay, or a retry of an event that had arrived)."""
    try:
        identity = verifier.verify(token)
    except TokenRefused as error:
        raise Refused(401, str(error)) from None
    session = store.session_for_correlation(event.correlation_id)
    if session is None:
        raise Refused(404, "no session the App dispatched has this correlation id")
    try:
        check_run(identity, session.repository, session.run_id)
    except TokenRefused as error:
        raise Refused(403, str(error)) from None
    if not store.use_token(identity.token_id, identity.expires):
        raise Refused(409, "this token was used before: each request needs a fresh one")
    if not store.record_event(session.id, event.seq, event.type, event.data):
        raise Refused(409, f"event {event.seq} of this session was recorded before")
    _apply(store, session, event)
    return session


def _apply(store: Store, session: SessionRecord, event: RunEvent) -> None:
    """What an event changes in the session's record."""
    fields: dict[str, Any] = {}
    if session.status == "dispatched":
        fields["status"] = "in_progress"
    if event.type == "iteration_started" and isinstance(event.data.get("n"), int):
        fields["iterations"] = max(session.iterations or 0, event.data["n"])
    elif event.type == "model_called" and isinstance(cost := event.data.get("session_cost_usd"), (int, float)):
        fields["cost_usd"] = float(cost)
    elif event.type == "session_ended" and session.ending is None:  # the loop's ending, until `finished` says more
        try:
            ended = SessionEnded.model_validate(event.data)
        except ValidationError:
            return
        fields |= {"ending": ended.status, "ending_reason": ended.reason[:2_000], "cost_usd": ended.cost_usd,
                   "tokens": ended.usage.total}
    elif event.type == "finished":
        try:
            finished = Finished.model_validate(event.data)
        except ValidationError:
            return
        fields |= {"ending": finished.status, "ending_reason": finished.reason[:2_000], "ended": store.clock(),
                   "cost_usd": finished.cost_usd, "tokens": finished.tokens, "iterations": finished.iterations}
        if finished.pull_request_url:
            fields["pull_request_url"] = finished.pull_request_url
    if fields:
        store.update_session(session.id, **fields)


def read_report(github: GitHubClient, run_id: int) -> RunReport | None:
    """The session's report.json from the run's artifact; None when there is none (or it is unreadable)."""
    try:
        data = github.artifact_file(run_id, f"{ARTIFACT_PREFIX}{run_id}", "report.json")
    except GitHubError as error:
        logger.warning("the report of run %d in %s could not be read: %s", run_id, github.repository, error)
        return None
    if data is None:
        return None
    try:
        return RunReport.model_validate_json(data)
    except ValidationError:
        return None


def record_report(store: Store, session: SessionRecord, report: RunReport) -> None:
    """The ending of a session whose runner did not report one, from its report.json."""
    store.update_session(session.id, ending=report.status, ending_reason=report.reason[:2_000], ended=store.clock(),
                         cost_usd=report.cost_usd, tokens=sum(report.usage.values()) or None,
                         iterations=len(report.iterations))
