"""What the App does with one verified delivery, after it has been acknowledged.

The same trigger rules as `fixloop action` decide; the App adds what only a long-lived service
can do: a cap on automatic CI sessions per branch, one active session per target, the dispatch of
the repository's fixloop workflow, acknowledgements, and tracking sessions through `workflow_run`
and `pull_request` events. It never runs the agent itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bot.app.logs import logger
from bot.app.metrics import Metrics
from bot.app.settings import AppSettings
from bot.app.store import SessionRecord, Store
from bot.config import Config, parse_config
from bot.errors import ConfigError, GitHubError, MalformedEvent
from bot.github.app_auth import InstallationTokens
from bot.github.client import GitHubClient
from bot.github.events import (
    Event,
    InstallationChanged,
    PullRequestChanged,
    WorkflowRunCompleted,
    parse_event,
)
from bot.github.rules import (
    Ignore,
    Reply,
    Stop,
    addressed_number,
    decide,
    owner_aware,
    target_key,
)
from bot.task import Task

# What the App itself needs in a repository (the workflow it dispatches mints its own token).
TOKEN_PERMISSIONS = {"actions": "write", "contents": "read", "issues": "write", "pull_requests": "write",
                     "checks": "read", "metadata": "read"}
ACTIVE_WINDOW = 3 * 3600  # a session older than this no longer blocks its target: its run has ended
PERMISSION_TTL = 60.0
FIND_RUN_ATTEMPTS = 5
RESUME_LOOKUPS = 2
RESUME_LOOKUP_PAUSE = 1.0
MARKER_PREFIX = "<!-- fixloop"


class Processor:
    """The App's handler: turns one verified webhook delivery into a decision (`process`) and, for a
    Run, records the session and dispatches the repository's fixloop workflow; the session itself
    runs in Actions. Replies, stops and invalid configs are answered here."""

    def __init__(self, settings: AppSettings, store: Store, tokens: InstallationTokens, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.store, self.tokens, self.metrics = settings, store, tokens, metrics
        self.clock, self.sleep = clock, sleep
        self.app_slug = settings.app_slug  # looked up at start-up when not configured
        self._permissions: dict[tuple[str, str], tuple[float, str]] = {}
        self._permissions_lock = threading.Lock()

    def client(self, installation_id: int, repository: str) -> GitHubClient:
        token = self.tokens.token(installation_id, repository, TOKEN_PERMISSIONS)
        return GitHubClient(token=token, api_url=self.settings.api_url, repository=repository)

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

    def _decide(self, delivery: str, event: Event, github: GitHubClient) -> str:
        default_branch = event.repository.default_branch
        permission_of = owner_aware(event, self._permission_of(github))
        rules = {"permission_of": permission_of, "workflow_file": self.settings.workflow_file,
                 "app_slug": self.app_slug}
        try:
            config = parse_config(github.file_text(".github/fixloop.yml", default_branch) or "")
        except ConfigError as error:
            addressed = decide(event, Config(), **rules)  # type: ignore[arg-type]
            if isinstance(addressed, Ignore):
                return f"ignored: {addressed.reason} (and .github/fixloop.yml is invalid)"
            if number := addressed_number(addressed):
                github.comment(number, f"fixloop cannot start: .github/fixloop.yml on {default_branch} is invalid.\n\n```\n{error}\n```")
            return "refused: invalid .github/fixloop.yml"
        decision = decide(event, config, **rules)  # type: ignore[arg-type]
        if isinstance(decision, Ignore):
            return f"ignored: {decision.reason}"
        if isinstance(decision, Reply):
            github.comment(decision.number, decision.body)
            return "replied"
        if isinstance(decision, Stop):
            return self._stop(github, decision)
        return self._run(delivery, github, decision.task, config, default_branch)

    def start(self, correlation_id: str, github: GitHubClient, task: Task, default_branch: str) -> str:
        """Start a session asked for through the API (the caller holds the API token)."""
        config = parse_config(github.file_text(".github/fixloop.yml", default_branch) or "")
        return self._run(correlation_id, github, task, config, default_branch)

    def _stop(self, github: GitHubClient, stop: Stop) -> str:
        cancelled = github.cancel_active_runs(self.settings.workflow_file, stop.number, except_run=None)
        for session in self.store.sessions(github.repository):
            if session.status in ("dispatching", "dispatched", "in_progress") and session.target.endswith(f":{stop.number}"):
                self.store.update_session(session.id, status="completed", conclusion="cancelled",
                                          reason=f"stopped by @{stop.requester}")
        what = f"Stopped {len(cancelled)} fixloop run(s)" if cancelled else "No fixloop run was active"
        github.comment(stop.number, f"{what} for #{stop.number}, as @{stop.requester} asked.")
        return f"stopped {len(cancelled)} run(s)"

    def _run(self, delivery: str, github: GitHubClient, task: Task, config: Config, default_branch: str) -> str:
        target = task.target
        assert target is not None
        key = target_key(task)
        if (previous := self.store.session_for_correlation(delivery)) is not None:  # processed before a restart
            if previous.status == "dispatching":
                return self._resume(previous, github, task, default_branch)
            return f"ignored: delivery {delivery} already has a session"
        if task.kind == "ci_failure" and target.ci_branch and not self.store.ci_attempt(
                github.repository, target.ci_branch, config.ci.max_sessions_per_branch):
            return (f"ignored: {config.ci.max_sessions_per_branch} automatic CI sessions already ran on "
                    f"{target.ci_branch} (ci.max_sessions_per_branch); a green run resets the count")
        session, started = self.store.start_session(
            repository=github.repository, kind=task.kind, target=key, requester=target.requester,
            correlation_id=delivery, active_since=self.clock() - ACTIVE_WINDOW)
        if not started:
            if target.number:
                where = f": {session.run_url}" if session.run_url else ""
                github.comment(target.number, f"fixloop is already working on #{target.number}{where}. This request "
                                              f"was not started twice; use `/fixloop stop` first to start over.")
            return f"refused: session {session.id} is still active for {key}"
        if target.comment_id is not None and target.comment_kind is not None:
            github.react(target.comment_id, target.comment_kind, "eyes")
        return self._dispatch(session, github, task, default_branch)

    def _resume(self, session: SessionRecord, github: GitHubClient, task: Task, default_branch: str) -> str:
        """A session the App stopped during (a restart, a crash) between recording it and hearing back
        from its dispatch: GitHub may or may not have started the run. The run's title carries the
        correlation id, so look for it first; dispatch only if it is not there, so that the target
        gets exactly one run whether the dispatch reached GitHub or not."""
        correlation = session.correlation_id or ""
        for attempt in range(RESUME_LOOKUPS):
            if attempt:
                self.sleep(RESUME_LOOKUP_PAUSE)  # a run started just before the stop can take a moment to be listed
            try:
                found = github.find_run(self.settings.workflow_file, correlation)
            except GitHubError as error:  # unknown either way: fail the session rather than block its target
                self.store.update_session(session.id, status="failed", reason=(
                    f"a restart interrupted the dispatch and its run could not be looked up: {error}")[:500])
                return f"dispatch failed: {error}"
            if found:
                return self._dispatched(session, github, task, *found) + " (its run was found after a restart)"
        return self._dispatch(session, github, task, default_branch) + " (after a restart)"

    def _dispatch(self, session: SessionRecord, github: GitHubClient, task: Task, default_branch: str) -> str:
        target = task.target
        assert target is not None and session.correlation_id is not None
        delivery = session.correlation_id
        inputs = dispatch_inputs(task, delivery)
        started = self.clock()
        try:
            run_id, run_url = github.dispatch(self.settings.workflow_file, default_branch, inputs)
        except GitHubError as error:
            self.metrics.dispatch(self.clock() - started, ok=False)
            self.store.update_session(session.id, status="failed", reason=str(error)[:500])
            if target.number:
                github.comment(target.number, (
                    f"fixloop could not start its workflow: {error}\n\nCheck that `.github/workflows/"
                    f"{self.settings.workflow_file}` exists on {default_branch} (copy `workflows/fixloop.yml` from "
                    "fixloop) and that the App may run workflows (Actions: write)."))
            return f"dispatch failed: {error}"
        self.metrics.dispatch(self.clock() - started, ok=True)
        if run_id is None:  # no run details (GitHub Enterprise Server): find the run by its title
            for attempt in range(FIND_RUN_ATTEMPTS):
                if found := github.find_run(self.settings.workflow_file, delivery):
                    run_id, run_url = found
                    break
                self.sleep(0.5 * 2**attempt)
        return self._dispatched(session, github, task, run_id, run_url)

    def _dispatched(self, session: SessionRecord, github: GitHubClient, task: Task, run_id: int | None,
                    run_url: str | None) -> str:
        self.store.update_session(session.id, status="dispatched", run_id=run_id, run_url=run_url)
        if task.target is not None and task.target.number and run_url:
            github.comment(task.target.number, f"fixloop is on it: {run_url}")
        return f"dispatched session {session.id}" + (f" as run {run_id}" if run_id else "")

    # -- keeping track -------------------------------------------------------------------------
    def _track_run(self, event: WorkflowRunCompleted) -> str | None:
        run = event.workflow_run
        if run.conclusion == "success" and run.head_branch:
            self.store.ci_passed(event.repository.full_name, run.head_branch)
        if run.path.rsplit("/", 1)[-1] != self.settings.workflow_file:
            return None
        session = self.store.session_for_run(run.id, run.display_title)
        if session is None:
            return "ignored: a fixloop run the App did not dispatch"
        self.store.update_session(session.id, status="completed", conclusion=run.conclusion, run_id=run.id,
                                  run_url=run.html_url)
        return f"session {session.id} completed: {run.conclusion}"

    def _track_pull(self, event: PullRequestChanged) -> str:
        body = event.pull_request.body or ""
        marker = body[body.find(MARKER_PREFIX):].split("-->", 1)[0] if MARKER_PREFIX in body else ""
        correlation = marker.partition("correlation=")[2].strip()
        if not correlation:
            return "ignored: not a fixloop pull request"
        session = self.store.session_for_correlation(correlation)
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
                           self.settings.workflow_file, extra={"repository": repository, "installation": event.installation.id})
        return f"installation {event.installation.id} {event.action}: {len(repositories)} repositories" + (
            f", {len(missing)} without the workflow" if missing else "")


def dispatch_inputs(task: Task, correlation_id: str) -> dict[str, str]:
    """The workflow_dispatch inputs that hand a task to the repository's fixloop workflow."""
    target = task.target
    assert target is not None
    inputs = {"kind": task.kind, "instructions": task.instructions[:2_000], "requester": target.requester or "",
              "correlation_id": correlation_id}
    if task.kind == "ci_failure":
        inputs["target"] = str(target.ci_run_id or 0)
        inputs["head"] = f"{target.ci_branch}@{target.ci_head_sha}"
    else:
        inputs["target"] = str(target.number)
        if task.kind == "deflake" and target.test_id:
            inputs["instructions"] = target.test_id
    return inputs
