"""Campaigns in the App: started from a campaign file, fanned out as one workflow run per target
(kind `campaign`, in the target repository's own fixloop workflow: GitHub Actions is the engine,
nothing runs on the App), followed as their runs end, shown in a tracking issue, and steered.

Every replica runs the same loop (`step`): claim a target the campaign may start now (see
`campaign_store`) and dispatch it, or bring a tracking issue up to date. A target whose replica
stopped midway is claimed again with the same correlation id, and its run is looked for before it
is dispatched again: no target runs twice, none is forgotten.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.app.campaign_store import (
    ENDED,
    ENDINGS,
    STATES,
    CampaignRecord,
    CampaignTarget,
    Claim,
    Limits,
    TargetState,
)
from bot.app.logs import logger
from bot.app.processor import Processor
from bot.app.run_events import RunReport, read_report
from bot.app.store import Store
from bot.campaign import Campaign, Target, parse_campaign
from bot.errors import ConfigError, GitHubError
from bot.github.app_auth import InstallationTokens
from bot.github.commands import CAMPAIGN_STEERING
from bot.github.rules import CampaignAsk
from bot.task import CampaignWork, Origin, Task, to_inputs

MARKER = "<!-- fixloop campaign={id} -->"
FIND_RUN_ATTEMPTS = 5
TRACKING_EVERY = 5.0  # seconds: a busy campaign's tracking issue is rewritten at most this often
ISSUE_BODY_LIMIT = 65_000  # GitHub takes 65,536 characters in an issue body


class Campaigns:
    def __init__(self, store: Store, processor: Processor, tokens: InstallationTokens, *, pace: float,
                 tracking_every: float = TRACKING_EVERY, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`pace`: seconds between two dispatches in one installation (GitHub's limits on writes);
        `tracking_every`: the fewest seconds between two writes of a tracking issue."""
        self.store, self.processor, self.tokens = store, processor, tokens
        self.pace, self.tracking_every, self.clock, self.sleep = pace, tracking_every, clock, sleep
        # The campaign's pace per installation (in the database, across replicas) spaces its writes,
        # not PyGithub's per-client spacing, which would hold every dispatch for a second.
        self._policy = replace(processor.policy, throttle=False)

    # -- starting --------------------------------------------------------------------------------
    def start(self, text: str, requester: str | None, *, origin: str | None = None,
              may_write: Callable[[str, int], bool] | None = None) -> CampaignRecord:
        """Check the campaign file, find its targets (and the App's installation on each), and record it;
        ConfigError for a file or a target the App cannot serve. `may_write(repository, installation)`:
        whether the person who asked may change that repository (a comment command: every target needs
        it); `origin`: the issue it was asked on."""
        campaign = parse_campaign(text, source="the campaign file")
        targets = self._targets(campaign)
        if may_write is not None:
            refused = sorted({t.repository for t, installation in targets if not may_write(t.repository, installation)})
            if refused:
                listed = ", ".join(refused[:10]) + (f" and {len(refused) - 10} more" if len(refused) > 10 else "")
                raise ConfigError(f"@{requester} has no write access to {listed}; a campaign starts only where the "
                                  "person who asks may change every target")
        if not targets:
            raise ConfigError("the campaign's query matches no repository the App is installed on")
        if campaign.pilot > len(targets):
            raise ConfigError(f"`pilot` is {campaign.pilot}, but the query found {len(targets)} targets")
        for target, _ in targets:  # a query's targets are known only now
            branch, title = campaign.branch_for(target), campaign.render(campaign.pull_request.title, target)
            if not branch or len(branch) > 200:
                raise ConfigError(f"`branch` gives {target.name} the branch {branch!r}: 1 to 200 characters, please")
            if len(title) > 256:
                raise ConfigError(f"the pull request title of {target.name} is {len(title)} characters long; GitHub "
                                  "takes 256")
        self._installation(campaign.tracking)  # the tracking issue needs the App there too
        record = self.store.campaigns.create(
            name=campaign.name, spec=campaign.model_dump(mode="json", by_alias=True), requester=requester,
            tracking_repository=campaign.tracking, origin=origin,
            targets=[(target.repository, target.path, installation) for target, installation in targets])
        logger.info("campaign %s started: %d targets", record.id, len(targets),
                    extra={"campaign": record.id, "requester": requester})
        return record

    def _targets(self, campaign: Campaign) -> list[tuple[Target, int]]:
        listed = campaign.targets.listed()
        if listed is not None:  # one look per owner, not one per repository
            owners = {target.repository.split("/")[0].lower() for target in listed}
            visible = {owner: self._visible(owner) for owner in owners}
            found = []
            for target in listed:
                owner = target.repository.split("/")[0].lower()
                installation, names = visible[owner]
                if installation is None or target.repository.lower() not in names:
                    raise ConfigError(f"the App is not installed on {target.repository}: install it there, or leave "
                                      f"{target.repository} out of the campaign")
                found.append((target, installation))
            return found
        query = campaign.targets.query
        assert query is not None
        try:
            installation = self.tokens.installation_of(query.org)
            repositories = self.tokens.repositories(installation)
        except GitHubError as error:
            raise ConfigError(f"targets.query: {error}") from None
        matching = sorted(str(repo["full_name"]) for repo in repositories
                          if str(repo.get("owner", {}).get("login", "")).lower() == query.org.lower()
                          and query.matches(str(repo["name"]), list(repo.get("topics") or []), repo.get("language"),
                                            bool(repo.get("archived"))))
        return [(Target(name, ""), installation) for name in matching]

    def _visible(self, owner: str) -> tuple[int | None, set[str]]:
        """The App's installation on `owner` and the repositories it can see there (none: not installed)."""
        try:
            installation = self.tokens.installation_of(owner)
        except GitHubError:
            return None, set()
        try:
            return installation, {str(repo["full_name"]).lower() for repo in self.tokens.repositories(installation)}
        except GitHubError as error:
            raise ConfigError(f"the repositories of the App's installation on {owner} could not be listed: "
                              f"{error}") from None

    def _installation(self, repository: str) -> int:
        try:
            return self.tokens.installation_for(repository)
        except GitHubError as error:
            raise ConfigError(f"{error}: install the App there, or leave {repository} out of the campaign") from None

    def steer(self, campaign_id: str, action: str, *, from_patch: bool = False) -> CampaignRecord:
        """pause, resume (after a pilot too), cancel or retry-failed (`from_patch`: from the kept work of
        the targets that did not validate); ConfigError when it cannot be done."""
        record = self.store.campaigns.campaign(campaign_id)
        if record is None:
            raise LookupError(f"no campaign {campaign_id}")
        if record.status == "cancelled" and action != "retry-failed":
            raise ConfigError(f"campaign {campaign_id} was cancelled")
        if action == "pause":
            self.store.campaigns.set_status(campaign_id, "paused")
        elif action == "resume":
            self.store.campaigns.set_status(campaign_id, "running", pilot=_spec(record).pilot)
        elif action == "cancel":
            self.store.campaigns.set_status(campaign_id, "cancelled")
        elif action == "retry-failed":
            self.store.campaigns.retry_failed(campaign_id, from_patch=from_patch)
        else:
            raise ConfigError(f"campaigns take {', '.join(CAMPAIGN_STEERING)}, not {action!r}")
        updated = self.store.campaigns.campaign(campaign_id)
        assert updated is not None
        return updated

    def command(self, ask: CampaignAsk, repository: str, may_write: Callable[[str, int], bool]) -> str:
        """The reply to `/fixloop campaign <action>` on issue `ask.number` of `repository`."""
        origin = f"{repository}#{ask.number}"
        if ask.action == "start":
            try:
                started = self.start(campaign_yaml(ask.text), ask.requester, origin=origin, may_write=may_write)
            except ConfigError as error:
                return f"The campaign was not started.\n\n```\n{error}\n```"
            return (f"Started campaign `{started.id}` ({summary(started, self.store.campaigns.targets(started.id))}),"
                    f" as @{ask.requester} asked. Its tracking issue opens in {started.tracking_repository}; steer it "
                    "here with `/fixloop campaign status|pause|resume|retry-failed|cancel`.")
        record = self.store.campaigns.started_from(origin)
        if record is None:
            return "No campaign was started from this issue: `/fixloop campaign start` starts the one in its body."
        if ask.action != "status":
            try:
                record = self.steer(record.id, ask.action, from_patch="--from-patch" in ask.options)
            except ConfigError as error:
                return f"Not done: {error}."
        shown = summary(record, self.store.campaigns.targets(record.id))
        return f"Campaign `{record.id}`: {shown}" + (f". Tracking issue: {record.tracking_url}"
                                                     if record.tracking_url else ".")

    # -- the loop every replica runs -----------------------------------------------------------------
    def step(self, replica: str) -> bool:
        """One unit of campaign work for `replica`; False when there was none to do now."""
        claim = self.store.campaigns.claim(replica, pace=self.pace, limits=_limits)
        if claim is not None:
            self._dispatch(claim)
            return True
        tracking = self.store.campaigns.claim_tracking(replica, self.tracking_every)
        if tracking is not None:
            self._track(tracking)
            return True
        return False

    def _dispatch(self, claim: Claim) -> None:
        target = claim.target
        try:
            self._dispatch_claimed(claim)
        except Exception as error:  # noqa: BLE001 - whatever happened, the target must not hold its slot forever
            logger.warning("campaign %s: %s could not be dispatched: %s", target.campaign_id, target.name, error,
                           extra={"campaign": target.campaign_id})
            reason = str(error) if isinstance(error, GitHubError) else f"{type(error).__name__}: {error}"
            self.store.campaigns.dispatch_failed(target.campaign_id, target.position, f"dispatch failed: {reason}")

    def _dispatch_claimed(self, claim: Claim) -> None:
        campaign, target = _spec(claim.campaign), claim.target
        correlation = target.correlation_id or ""
        work = Target(target.repository, target.path)
        scope = (f"\n\nThis session covers the package in `{target.path}/` of the repository; leave the other "
                 "packages alone." if target.path else "")
        started_by = f" started by {claim.campaign.requester}" if claim.campaign.requester else ""
        task = Task(kind="campaign", title=campaign.render(campaign.pull_request.title, work),
                    instructions=campaign.instructions + scope, source=f"the campaign {campaign.name}{started_by}")
        origin = Origin(repository=target.repository, requester=claim.campaign.requester, correlation_id=correlation,
                        target=CampaignWork(id=claim.campaign.id, campaign=campaign.name, path=target.path,
                                            branch=campaign.branch_for(work), title=task.title,
                                            body=campaign.render(campaign.pull_request.body, work),
                                            labels=campaign.pull_request.labels,
                                            reviewers=campaign.pull_request.reviewers, codemod=campaign.codemod,
                                            setup=campaign.setup, validation=campaign.validation,
                                            resume_run=target.resume_run))
        inputs = to_inputs(task, origin)
        workflow = self.processor.settings.workflow_file
        github = self.processor.client(target.installation_id, target.repository, policy=self._policy)
        if claim.resume and (found := github.find_run(workflow, correlation)):  # dispatched before a stop
            self.store.campaigns.dispatched(target.campaign_id, target.position, *found)
            return
        run_id, run_url = github.dispatch(workflow, github.default_branch(), inputs)
        for attempt in range(FIND_RUN_ATTEMPTS if run_id is None else 0):  # no run details (GHES)
            if found := github.find_run(workflow, correlation):
                run_id, run_url = found
                break
            self.sleep(0.5 * 2**attempt)
        self.store.campaigns.dispatched(target.campaign_id, target.position, run_id, run_url)

    def _track(self, campaign: CampaignRecord) -> None:
        """Write the tracking issue (open it the first time) from the targets as they are now. A write that
        fails is tried again after `tracking_every` seconds; the claim is released whatever happens."""
        version, number, url = campaign.tracking_version, campaign.tracking_issue, campaign.tracking_url
        written = False
        try:
            body = render_tracking(campaign, self.store.campaigns.targets(campaign.id))
            github = self.processor.client(self.tokens.installation_for(campaign.tracking_repository),
                                           campaign.tracking_repository)
            if number is None:
                number, url = github.open_issue(f"Campaign: {campaign.name}", body)
            else:
                github.edit_issue(number, body)
            written = True
        except GitHubError as error:
            logger.warning("campaign %s: the tracking issue could not be written: %s", campaign.id, error,
                           extra={"campaign": campaign.id})
        finally:
            self.store.campaigns.tracked(campaign, version=version, issue=number if written else None,
                                         url=url if written else None)

    # -- following runs ----------------------------------------------------------------------------
    def run_completed(self, repository: str, run_id: int, title: str, conclusion: str | None,
                      url: str) -> str | None:
        """A fixloop workflow run of `repository` ended; the outcome if it was a campaign target's current
        run, else None. The session's own report (in the run's artifact) says how it ended, why, and what
        it cost; without one, nothing says it validated."""
        target = self.store.campaigns.target_for(run_id=run_id, title=title)
        if target is None or target.repository.lower() != repository.lower():
            return None
        if target.run_id is not None and target.run_id != run_id:
            return None  # an earlier attempt's run
        if target.state in ENDED:  # told twice: its cost counts once
            return f"campaign {target.campaign_id}: {target.name} already ended ({target.state})"
        report = self._report(target, run_id)
        state: TargetState
        reason: str | None
        if report is not None and report.status == "validated" and conclusion != "success":
            state, reason, cost = "failed", f"validated, but publishing failed (the run concluded {conclusion})", \
                report.cost_usd
        elif report is not None:
            state = _REPORTED[report.status]
            reason = None if state == "validated" else report.reason[:500] or None
            cost = report.cost_usd
        else:
            state = ENDINGS.get(conclusion or "", "failed")
            if state == "validated":  # a run that started no session (refused, skipped) also succeeds
                state = "failed"
            reason = f"the workflow run concluded {conclusion or 'without a conclusion'} and left no session report"
            cost = None
        self.store.campaigns.ended(target.model_copy(update={"run_id": run_id}), state, reason, run_url=url,
                                   cost_usd=cost)
        return f"campaign {target.campaign_id}: {target.name} {state}" + (f", ${cost:.4f}" if cost is not None else "")

    def _report(self, target: CampaignTarget, run_id: int) -> RunReport | None:
        try:
            github = self.processor.client(target.installation_id, target.repository)
        except GitHubError as error:
            logger.warning("campaign %s: the report of run %d could not be read: %s", target.campaign_id, run_id,
                           error, extra={"campaign": target.campaign_id})
            return None
        return read_report(github, run_id)

    def pull_opened(self, correlation: str, repository: str, head: str, url: str) -> str | None:
        """A pull request carrying a target's correlation id; taken only from the target's repository and its
        campaign branch (anyone can write a marker into a pull request)."""
        target = self.store.campaigns.target_for(correlation=correlation)
        campaign = self.store.campaigns.campaign(target.campaign_id) if target is not None else None
        if target is None or campaign is None or target.repository.lower() != repository.lower():
            return None
        if head != _spec(campaign).branch_for(Target(target.repository, target.path)):
            return None
        self.store.campaigns.pull_request(target, url)
        return f"campaign {target.campaign_id}: {target.name} has pull request {url}"


_REPORTED: dict[str, TargetState] = {"validated": "validated", "not_validated": "not_validated", "error": "failed",
                                     "cancelled": "cancelled"}


def _limits(campaign: CampaignRecord) -> Limits:
    spec = _spec(campaign)
    return Limits(concurrency=spec.concurrency, pilot=spec.pilot, budget=spec.max_cost_usd)


def _spec(campaign: CampaignRecord) -> Campaign:
    return Campaign.model_validate(campaign.spec)


def view(campaign: CampaignRecord, targets: list[CampaignTarget]) -> dict[str, Any]:
    """The campaign as the API shows it: its status, counts per state, and every target."""
    counts = {state: sum(1 for t in targets if t.state == state) for state in STATES}
    spec = _spec(campaign)
    spent = sum(t.cost_usd or 0 for t in targets)
    status: str = campaign.status
    if status == "running" and all(t.state in ENDED for t in targets):
        status = "finished"
    elif status == "running" and spec.pilot and not campaign.pilot_released and (
            len(targets) - counts["queued"] >= spec.pilot and counts["queued"]):
        status = "waiting after the pilot (resume to continue)"
    elif status == "running" and spec.max_cost_usd is not None and spent >= spec.max_cost_usd and counts["queued"]:
        status = f"stopped: the budget of ${spec.max_cost_usd:,.2f} is spent"
    return {"id": campaign.id, "name": campaign.name, "status": status, "requester": campaign.requester,
            "concurrency": spec.concurrency, "pilot": spec.pilot, "max_cost_usd": spec.max_cost_usd,
            "cost_usd": round(spent, 4), "counts": counts, "tracking_issue": campaign.tracking_url,
            "targets": [{"target": t.name, "state": t.state, "run": t.run_url, "pull_request": t.pull_request_url,
                         "cost_usd": t.cost_usd, "reason": t.reason, "attempt": t.attempt} for t in targets]}


def summary(campaign: CampaignRecord, targets: list[CampaignTarget]) -> str:
    """The campaign's status and its targets by state, in words."""
    shown = view(campaign, targets)
    return f"{shown['status']}, {_counts(shown) or 'no targets'}"


def _counts(shown: dict[str, Any]) -> str:
    """A view's targets by state, in words: "3 validated, 1 not validated"."""
    return ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in shown["counts"].items() if n)


def campaign_yaml(body: str) -> str:
    """The campaign file in an issue's body: its first ```yaml block, else the whole body."""
    found = re.search(r"^```ya?ml[ \t]*\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    return found[1] if found else body


def render_tracking(campaign: CampaignRecord, targets: list[CampaignTarget]) -> str:
    """The tracking issue's body: the whole table, rendered from the database (so writing it again is
    harmless), within GitHub's limit on an issue body (the rows that do not fit are counted)."""
    shown = view(campaign, targets)
    heading = f"**Campaign {_cell(campaign.name)}**: {shown['status']}. {_counts(shown)}."
    lines = [MARKER.format(id=campaign.id), heading, "", "| target | state | pull request | run | cost | reason |",
             "|---|---|---|---|---|---|"]
    size = sum(len(line) + 1 for line in lines)
    for index, target in enumerate(targets):
        cost = f"${target.cost_usd:,.2f}" if target.cost_usd is not None else ""
        pull = f"[draft]({target.pull_request_url})" if target.pull_request_url else ""
        run = f"[run]({target.run_url})" if target.run_url else ""
        row = (f"| <code>{_cell(target.name)}</code> | {target.state.replace('_', ' ')} | {pull} | {run} | {cost} "
               f"| {_cell(target.reason or '', 200)} |")
        if size + len(row) + 200 > ISSUE_BODY_LIMIT:
            lines.append(f"\n{len(targets) - index} more targets: `fixloop campaign status {campaign.id}`.")
            break
        lines.append(row)
        size += len(row) + 1
    return "\n".join(lines)


def _cell(text: str, limit: int = 300) -> str:
    """Untrusted text (a session's reason, a repository's name) as plain text in a table cell: no markup,
    no mention, no link, no comment that would hide the rows after it."""
    plain = html.escape(text.replace("\n", " ")[:limit], quote=True)
    return plain.replace("|", "&#124;").replace("@", "&#64;").replace("[", "&#91;").replace("`", "&#96;")
