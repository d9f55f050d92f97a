"""What the App learns from the runs it dispatched: the events a runner posts as its session goes
(authenticated by the run's OIDC token, see `oidc`), or, when none came, the session's report in the
run's artifact once the run has ended. Either way the session's record gets fixloop's own ending,
its reason, its cost and its tokens, not only the workflow's conclusion.

Runner text (model output, tool results, test output) is untrusted: it is stored as data and only
ever rendered escaped. An event is recorded once per (session, number); a token is taken once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.app.logs import logger
from bot.app.oidc import ActionsTokenVerifier, RunIdentity, TokenRefused, check_run
from bot.app.store import SessionRecord, Store
from bot.config import EscalateOn
from bot.errors import GitHubError
from bot.github.client import GitHubClient
from bot.validation import ValidationResult

ARTIFACT_PREFIX = "fixloop-session-"  # workflows/fixloop.yml uploads the session folder as fixloop-session-<run id>
MAX_EVENT = 1024 * 1024  # bytes of one posted event (the runner cuts texts to 20,000 characters, diffs to 200,000)
Ending = Literal["validated", "not_validated", "error", "cancelled"]
Count = Annotated[int, Field(ge=0, le=10**12)]
Dollars = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Iteration = Annotated[int, Field(ge=0, le=10_000)]


class RunEvent(BaseModel):
    correlation_id: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=0, le=1_000_000)
    type: str = Field(pattern=r"^[a-z_]{1,40}$")
    data: dict[str, Any]


# -- what the App reads of each kind of event (the runner's `bot.agent.events`, checked as input) --------

class _Reported(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Started(_Reported):
    model: str = Field("", max_length=200)


class IterationBegun(_Reported):
    n: Iteration


class ModelTurn(_Reported):
    iteration: Iteration
    turn: Iteration
    text: str = ""
    session_cost_usd: Dollars | None = None


class ToolUse(_Reported):
    iteration: Iteration
    name: str = Field(max_length=100)
    input: dict[str, Any] = {}
    result: str = ""
    is_error: bool = False


class Changes(_Reported):
    iteration: Iteration
    diff_stat: str = ""
    diff: str = ""


class Validated(_Reported):
    iteration: Iteration
    result: ValidationResult


class IterationDone(_Reported):
    n: Iteration
    turns: Iteration
    usage: dict[str, Count] = {}


class LimitHit(_Reported):
    limit: str = Field(max_length=100)
    detail: str = ""


class LoopEnded(_Reported):
    """The loop's `session_ended`: its ending before the pull request (`finished` says the last word)."""

    status: Ending
    reason: str = ""
    usage: dict[str, Count] = {}
    cost_usd: Dollars | None = None


class Finished(_Reported):
    """The runner's `finished` event: how the session ended, after its pull request."""

    status: Ending
    reason: str = Field("", max_length=100_000)
    pull_request_url: str | None = Field(None, max_length=2_000)
    cost_usd: Dollars | None = None
    tokens: Count | None = None
    iterations: Iteration | None = None
    escalation: EscalateOn | None = None  # why the runner called a person, if it did


READERS: dict[str, type[_Reported]] = {
    "session_started": Started, "iteration_started": IterationBegun, "model_called": ModelTurn,
    "tool_called": ToolUse, "changes_made": Changes, "validation_ran": Validated, "iteration_ended": IterationDone,
    "limit_reached": LimitHit, "session_ended": LoopEnded, "finished": Finished,
}


class RunReport(BaseModel):
    """What the App reads of a session's report.json (written in the runner, so checked like input)."""

    status: Ending
    reason: str = Field("", max_length=100_000)
    cost_usd: Dollars | None = None
    iterations: list[Any] = []
    usage: dict[str, Count] = {}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NOT_THIS_RUN = "the token does not prove that this session's own workflow run reports it"


def identify(verifier: ActionsTokenVerifier, token: str) -> RunIdentity:
    """Who reports, from the token alone (before the request's body is read). Raises Refused (401)."""
    try:
        return verifier.verify(token)
    except TokenRefused as error:
        raise Refused(401, str(error)) from None


def accept(store: Store, identity: RunIdentity, event: RunEvent) -> SessionRecord:
    """Record `event` for the session it names, if `identity` (its verified token) is that session's run.
    Raises Refused: 403 (not this session's run, or no such session: the same answer, so that a token of any
    repository learns nothing of others), 409 (a token or an event seen before: a replay, or a retry of an
    event that had arrived; or the session ended), 413 (too many events), 422 (an event that is not what
    its type says)."""
    if not store.use_token(identity.token_id, identity.expires):
        raise Refused(409, "this token was used before: each request needs a fresh one")
    session = store.session_for_correlation(event.correlation_id)
    try:
        if session is None:
            raise TokenRefused("no session has this correlation id")
        check_run(identity, session.repository, session.run_id)
    except TokenRefused as error:
        logger.info("a runner's event was refused: %s", error, extra={"repository": identity.repository,
                                                                       "run_id": identity.run_id})
        raise Refused(403, NOT_THIS_RUN) from None
    assert session is not None
    if session.ended is not None:
        raise Refused(409, f"session {session.id} has ended")
    reader = READERS.get(event.type)
    try:
        read = reader.model_validate(event.data) if reader else None
    except ValidationError as error:
        raise Refused(422, f"not a {event.type} event: {error.errors()[0]['msg']}") from None
    recorded = store.record_event(session.id, event.seq, event.type, event.data, attempt=identity.run_attempt)
    if recorded is None:
        raise Refused(413, f"session {session.id} has reported as many events as the App keeps")
    if not recorded:
        raise Refused(409, f"event {event.seq} of this session was recorded before")
    if read is not None:
        _apply(store, session, read)
    return session


def _apply(store: Store, session: SessionRecord, event: _Reported) -> None:
    """What an event changes in the session's record."""
    fields: dict[str, Any] = {}
    if session.status == "dispatched":
        fields["status"] = "in_progress"
    if isinstance(event, IterationBegun):
        fields["iterations"] = max(session.iterations or 0, event.n)
    elif isinstance(event, ModelTurn) and event.session_cost_usd is not None:
        fields["cost_usd"] = event.session_cost_usd
    elif isinstance(event, LoopEnded) and session.ending is None:
        fields |= {"ending": event.status, "ending_reason": event.reason[:2_000], "cost_usd": event.cost_usd,
                   "tokens": sum(event.usage.values())}
    elif isinstance(event, Finished):
        fields |= {"ending": event.status, "ending_reason": event.reason[:2_000], "ended": store.clock(),
                   "cost_usd": event.cost_usd, "tokens": event.tokens, "iterations": event.iterations,
                   "escalation": event.escalation}
        if event.pull_request_url and _pull_of(event.pull_request_url, session.repository):
            fields["pull_request_url"] = event.pull_request_url
    if fields:
        store.update_session(session.id, **fields)


def _pull_of(url: str, repository: str) -> bool:
    """A pull request of `repository` (on any GitHub host): never another page shown as the session's."""
    parts = url.split("/")
    return (url.startswith(("https://", "http://")) and len(parts) == 7 and parts[5] == "pull" and parts[6].isdigit()
            and f"{parts[3]}/{parts[4]}".lower() == repository.lower())


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
