"""What the App does with one verified delivery, after it has been acknowledged.

The same trigger rules as `fixloop action` decide; the App adds what only a long-lived service
can do: a cap on automatic CI sessions per branch, one active session per target, the dispatch of
the repository's fixloop workflow, acknowledgements, and tracking sessions through `workflow_run`
and `pull_request` events. It never runs the agent itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.app.logs import logger
from bot.app.metrics import Metrics
from bot.app.run_events import read_report, record_report
from bot.app.settings import AppSettings
from bot.app.store import ACTIVE, SessionRecord, Store
from bot.config import Config
from bot.errors import GitHubError, MalformedEvent
from bot.github.app_auth import InstallationTokens
from bot.github.client import GitHubClient, RequestPolicy
from bot.github.events import (
    Event,
    InstallationChanged,
    PullRequestChanged,
    WorkflowRunCompleted,
    parse_event,
)
from bot.github.rules import WRITE_ROLES, CampaignAsk, Run, Stop
from bot.handler import Answered, Handler, acknowledge
from bot.secrets import Redactor
from bot.task import FailedRun, to_inputs
from bot.telemetry.app_spans import AppTracing

if TYPE_CHECKING:
    from bot.app.campaigns import Campaigns

# What the App itself needs in a repository (the workflow it dispatches mints its own token).
TOKEN_PERMISSIONS = {"actions": "write", "contents": "read", "issues": "write", "pull_requests": "write",
                     "checks": "read", "metadata": "read"}
ACTIVE_WINDOW = 3 * 3600  # a session older than this no longer blocks its target: its run has ended
PERMISSION_TTL = 60.0
FIND_RUN_ATTEMPTS = 5
RESUME_LOOKUPS = 2
MARKER_PREFIX = "<!-- fixloop"


class Processor:
    """The App's handler: turns one verified webhook delivery into a decision (`process`) and, for a
    Run, records the session and dispatches the repository's fixloop workflow; the session itself
    runs in Actions. Replies, stops and invalid configs are answered here."""

    def __init__(self, settings: AppSettings, store: Store, tokens: InstallationTokens, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 policy: RequestPolicy = RequestPolicy(), resume_pause: float = 1.0, tracing: AppTracing) -> None:
        """`policy`: how the repository clients pace and retry; `resume_pause`: seconds between the
        lookups for the run of a dispatch a restart interrupted (see `_resume`); `tracing`: where the
        dispatches' spans go."""
        self.settings, self.store, self.tokens, self.metrics = settings, store, tokens, metrics
        self.tracing = tracing
        self.clock, self.sleep, self.policy, self.resume_pause = clock, sleep, policy, resume_pause
        self.app_slug = settings.app_slug  # looked up at start-up when not configured
        self._permissions: dict[tuple[str, str], tuple[float, str]] = {}
        self._permissions_lock = threading.Lock()
        # What the App writes passes a redactor like the Action's: its own secrets, and anything shaped
        # like a token (its installation tokens included) or a key.
        self.redactor = Redactor(settings.secrets)
        self.campaigns: Campaigns | None = None  # set by the service: runs of campaign targets are theirs

    def client(self, installation_id: int, repository: str, *, policy: RequestPolicy | None = None) -> GitHubClient:
        """A client for `repository` with a token scoped to it; `policy`: other than the App's (campaigns
        pace their dispatches per installation themselves)."""
        token = self.tokens.token(installation_id, repository, TOKEN_PERMISSIONS)
        return GitHubClient(token=token, api_url=self.settings.api_url, repository=repository,
                            policy=policy or self.policy)

    def process(self, delivery: str, name: str, payload: Any) -> str:
        """Handle one delivery; returns its outcome in words (recorded and logged)."""
        try:
            event = parse_event(name, payload)
        except MalformedEvent as error:
            return f"rejected: {error}"
        if event is None:
            return f"ignored: fixloop does not act on {name}.{payload.get('action') or ''}"
        if isinstance(event, InstallationChanged):
            return self._installation(event)
        if event.installation is None:
            return "ignored: the delivery names no installation"
        github = self.client(event.installation.id, event.repository.full_name)
        if isinstance(event, PullRequestChanged):
            return self._track_pull(event)
        if isinstance(event, WorkflowRunCompleted) and (tracked := self._track_run(event)):
            return tracked
        return self._decide(delivery, event, github)

    # -- deciding and acting -------------------------------------------------------------------
    def _permission_of(self, github: GitHubClient) -> Callable[[str], str]:
        def lookup(login: str) -> str:
            key = (github.repository, login)
            with self._permissions_lock:
                cached = self._permissions.get(key)
            if cached and self.clock() - cached[0] < PERMISSION_TTL:
                return cached[1]
            role = github.permission(login)
            with self._permissions_lock:
                self._permissions[key] = (self.clock(), role)
            return role

        return lookup

    def _handler(self, github: GitHubClient) -> Handler:
        def stopped(stop: Stop) -> None:
            for session in self.store.sessions(github.repository):
                if session.status in ACTIVE and session.target.endswith(f":{stop.number}"):
                    self.store.update_session(session.id, status="completed", conclusion="cancelled",
                                              reason=f"stopped by @{stop.requester}")

        def campaign(ask: CampaignAsk) -> str:
            if self.campaigns is None:
                return "Campaigns are off on this App."

            def may_write(repository: str, installation: int) -> bool:
                return self.client(installation, repository).permission(ask.requester) in WRITE_ROLES

            return self.campaigns.command(ask, github.repository, may_write)

        return Handler(github, redactor=self.redactor, workflow_file=self.settings.workflow_file,
                       app_slug=self.app_slug, config_required=False, on_stop=stopped, on_campaign=campaign)

    def _decide(self, delivery: str, event: Event, github: GitHubClient) -> str:
        handled = self._handler(github).handle(event, self._permission_of(github))
        if isinstance(handled, Answered):
            return handled.outcome
        return self._run(delivery, github, handled.run, handled.config, handled.default_branch)

    def start(self, correlation_id: str, github: GitHubClient, run: Run, default_branch: str) -> str:
        """Start a session asked for through the API (the caller holds the API token)."""
        config = self._handler(github).config(default_branch)
        return self._run(correlation_id, github, run, config, default_branch)

    def _run(self, delivery: str, github: GitHubClient, run: Run, config: Config, default_branch: str) -> str:
        origin = run.origin.model_copy(update={"correlation_id": delivery})
        key = origin.key()
        try:  # a task that cannot be handed over is refused before it is recorded
            inputs = to_inputs(run.task, origin)
        except MalformedEvent as error:
            if origin.number:
                github.comment(origin.number, self.redactor.text(f"fixloop did not start: {error}"))
            return f"refused: {error}"
        if (previous := self.store.session_for_correlation(delivery)) is not None:  # processed before a restart
            if previous.status == "dispatching":
                return self._resume(previous, github, run, default_branch, inputs)
            return f"ignored: delivery {delivery} already has a session"
        target = origin.target
        if isinstance(target, FailedRun) and target.branch and not self.store.ci_attempt(
                github.repository, target.branch, config.ci.max_sessions_per_branch):
            return (f"ignored: {config.ci.max_sessions_per_branch} automatic CI sessions already ran on "
                    f"{target.branch} (ci.max_sessions_per_branch); a green run resets the count")
        session, started = self.store.start_session(
            repository=github.repository, kind=run.task.kind, target=key, requester=origin.requester,
            correlation_id=delivery, active_since=self.clock() - ACTIVE_WINDOW, title=run.task.title,
            inputs=json.dumps(inputs))
        if not started:
            if origin.number:
                where = f": {session.run_url}" if session.run_url else ""
                github.comment(origin.number, f"fixloop is already working on #{origin.number}{where}. This request "
                                              f"was not started twice; use `/fixloop stop` first to start over.")
            return f"refused: session {session.id} is still active for {key}"
        acknowledge(github, run)
        return self._dispatch(session, github, run, default_branch, inputs)

    def _resume(self, session: SessionRecord, github: GitHubClient, run: Run, default_branch: str,
                inputs: dict[str, str]) -> str:
        """A session the App stopped during (a restart, a crash) between recording it and hearing back
        from its dispatch: GitHub may or may not have started the run. The run's title carries the
        correlation id, so look for it first; dispatch only if it is not there, so that the target
        gets exactly one run whether the dispatch reached GitHub or not."""
        correlation = session.correlation_id or ""
        for attempt in range(RESUME_LOOKUPS):
            if attempt:
                self.sleep(self.resume_pause)  # a run started just before the stop can take a moment to be listed
            try:
                found = github.find_run(self.settings.workflow_file, correlation)
            except GitHubError as error:  # unknown either way: fail the session rather than block its target
                self.store.update_session(session.id, status="failed", reason=(
                    f"a restart interrupted the dispatch and its run could not be looked up: {error}")[:500])
                return f"dispatch failed: {error}"
            if found:
                return self._dispatched(session, github, run, *found) + " (its run was found after a restart)"
        return self._dispatch(session, github, run, default_branch, inputs) + " (after a restart)"

    def _dispatch(self, session: SessionRecord, github: GitHubClient, run: Run, default_branch: str,
                  inputs: dict[str, str]) -> str:
        """Dispatch the workflow with `inputs` (the task's, carrying the session's correlation id)."""
        delivery = session.correlation_id or ""
        number = run.origin.number
        started = self.clock()
        try:
            with self.tracing.dispatch(github.repository, run.task.kind, session.id) as dispatched:
                run_id, run_url = github.dispatch(self.settings.workflow_file, default_branch, inputs)
                dispatched(run_id, run_url)
        except GitHubError as error:
            self.metrics.dispatch(self.clock() - started, ok=False)
            self.store.update_session(session.id, status="failed", reason=str(error)[:500])
            if number:
                github.comment(number, (
                    f"fixloop could not start its workflow: {error}\n\nCheck that `.github/workflows/"
                    f"{self.settings.workflow_file}` on {default_branch} is a copy of fixloop's current "
                    "`workflows/fixloop.yml` (its inputs change between releases, and GitHub refuses inputs a "
                    "workflow does not declare) and that the App may run workflows (Actions: write)."))
            return f"dispatch failed: {error}"
        self.metrics.dispatch(self.clock() - started, ok=True)
        if run_id is None:  # no run details (GitHub Enterprise Server): find the run by its title
            for attempt in range(FIND_RUN_ATTEMPTS):
                if found := github.find_run(self.settings.workflow_file, delivery):
                    run_id, run_url = found
                    break
                self.sleep(0.5 * 2**attempt)
        return self._dispatched(session, github, run, run_id, run_url)

    def _dispatched(self, session: SessionRecord, github: GitHubClient, run: Run, run_id: int | None,
                    run_url: str | None) -> str:
        self.store.update_session(session.id, status="dispatched", run_id=run_id, run_url=run_url)
        if run.origin.number and run_url:
            github.comment(run.origin.number, f"fixloop is on it: {run_url}")
        return f"dispatched session {session.id}" + (f" as run {run_id}" if run_id else "")

    # -- keeping track -------------------------------------------------------------------------
    def _track_run(self, event: WorkflowRunCompleted) -> str | None:
        run = event.workflow_run
        if run.conclusion == "success" and run.head_branch:
            self.store.ci_passed(event.repository.full_name, run.head_branch)
        if run.path.rsplit("/", 1)[-1] != self.settings.workflow_file:
            return None
        session = self.store.session_for_run(event.repository.full_name, run.id, run.display_title)
        if session is None and self.campaigns is not None:
            outcome = self.campaigns.run_completed(event.repository.full_name, run.id, run.display_title,
                                                   run.conclusion, run.html_url)
            if outcome is not None:
                return outcome
        if session is None:
            return "ignored: a fixloop run the App did not dispatch"
        self.store.update_session(session.id, status="completed", conclusion=run.conclusion, run_id=run.id,
                                  run_url=run.html_url)
        if session.ending is None and event.installation is not None:  # the runner did not report it: read its report
            github = self.client(event.installation.id, event.repository.full_name)
            if (report := read_report(github, run.id)) is not None:
                record_report(self.store, session, report)
                return f"session {session.id} completed: {run.conclusion} ({report.status}, from its report)"
        return f"session {session.id} completed: {run.conclusion}"

    def _track_pull(self, event: PullRequestChanged) -> str:
        body = event.pull_request.body or ""
        marker = body[body.find(MARKER_PREFIX):].split("-->", 1)[0] if MARKER_PREFIX in body else ""
        correlation = marker.partition("correlation=")[2].strip()
        if not correlation:
            return "ignored: not a fixloop pull request"
        session = self.store.session_for_correlation(correlation)
        if session is None and self.campaigns is not None:
            opened = self.campaigns.pull_opened(correlation, event.repository.full_name,
                                                event.pull_request.head.ref, event.pull_request.html_url)
            if opened is not None:
                return opened
        if session is None or session.repository != event.repository.full_name:
            return "ignored: a fixloop pull request from a session the App did not dispatch"
        self.store.update_session(session.id, pull_request_url=event.pull_request.html_url)
        return f"session {session.id} has pull request {event.pull_request.html_url}"

    def _installation(self, event: InstallationChanged) -> str:
        added = [r.full_name for r in (*event.repositories, *event.repositories_added)]
        removed = [r.full_name for r in event.repositories_removed]
        active = event.action not in ("deleted", "suspend")
        account = event.installation.account.login if event.installation.account else None
        repositories = self.store.record_installation(event.installation.id, account, added=added, removed=removed,
                                                      active=active)
        missing = []
        for repository in added if active else []:
            try:
                if not self.client(event.installation.id, repository).has_workflow(self.settings.workflow_file):
                    missing.append(repository)
            except GitHubError:
                missing.append(repository)
        for repository in missing:
            logger.warning("setup hint: %s has no .github/workflows/%s; copy workflows/fixloop.yml from fixloop and "
                           "add the ANTHROPIC_API_KEY secret, or fixloop cannot run there", repository,
                           self.settings.workflow_file,
                           extra={"repository": repository, "installation": event.installation.id})
        return f"installation {event.installation.id} {event.action}: {len(repositories)} repositories" + (
            f", {len(missing)} without the workflow" if missing else "")

