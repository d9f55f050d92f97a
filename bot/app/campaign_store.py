"""Campaigns in the App's database: the campaign (its file, its status, its tracking issue) and one
row per target, which is also the campaign's dispatch queue.

A target goes `queued` → `dispatching` (a replica claimed it) → `running` (its workflow run
exists) → an ending: `validated`, `not_validated`, `failed` or `cancelled`. A replica claims a
target in one transaction that holds the campaign's lock, so `concurrency` (targets dispatching or
running) holds across replicas, as do the pilot's gate, the cost budget and the pace of writes per
installation. A target claimed by a replica that stopped keeps `dispatching` and is claimed again
first: its correlation id is the same, so the run is looked for before it is dispatched again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from bot.app._database import Database, Transaction

TargetState = Literal["queued", "dispatching", "running", "validated", "not_validated", "failed", "cancelled"]
STATES: tuple[TargetState, ...] = ("queued", "dispatching", "running", "validated", "not_validated", "failed",
                                   "cancelled")
ACTIVE: tuple[TargetState, ...] = ("dispatching", "running")
ENDED: tuple[TargetState, ...] = ("validated", "not_validated", "failed", "cancelled")
CampaignStatus = Literal["running", "paused", "cancelled"]
# A workflow run's conclusion, as a target's ending (the run's own report says more, when the App has it).
ENDINGS: dict[str, TargetState] = {"success": "validated", "neutral": "not_validated", "cancelled": "cancelled"}


class CampaignTarget(BaseModel):
    campaign_id: str
    position: int
    repository: str
    path: str
    installation_id: int
    state: TargetState
    attempt: int
    claimed_by: str | None = None
    correlation_id: str | None = None
    run_id: int | None = None
    run_url: str | None = None
    pull_request_url: str | None = None
    cost_usd: float | None = None
    reason: str | None = None
    resume_run: int | None = None  # a retry goes on from this earlier run's kept work
    updated: float

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.path}" if self.path else self.repository


class CampaignRecord(BaseModel):
    id: str
    name: str
    spec: dict[str, Any]  # the campaign file, as data
    status: CampaignStatus
    requester: str | None = None
    origin: str | None = None  # the issue it was started from (owner/name#number), for its commands
    tracking_repository: str
    tracking_issue: int | None = None
    tracking_url: str | None = None
    tracking_version: int
    tracking_synced: int
    tracking_claim: str | None = None
    tracking_at: float | None = None
    pilot_released: bool
    created: float
    updated: float


class Limits(NamedTuple):
    """What the campaign's file allows: targets at once, the pilot's size (0: none), the budget in USD."""

    concurrency: int
    pilot: int
    budget: float | None


class Claim(BaseModel):
    """A target a replica is to dispatch (`resume`: a stopped replica may have dispatched it already)."""

    campaign: CampaignRecord
    target: CampaignTarget
    resume: bool


def correlation_id(campaign_id: str, position: int, attempt: int) -> str:
    return f"{campaign_id}-t{position}-a{attempt}"


class CampaignStore:
    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self._db, self.clock = database, clock

    def create(self, *, name: str, spec: dict[str, Any], requester: str | None, tracking_repository: str,
               targets: list[tuple[str, str, int]], origin: str | None = None) -> CampaignRecord:
        """A running campaign with `targets` (repository, path, installation id), all queued."""
        now = self.clock()
        campaign_id = f"cmp_{secrets.token_hex(6)}"
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO campaigns (id, name, spec, status, requester, origin, tracking_repository, "
                       "tracking_version, tracking_synced, pilot_released, created, updated) "
                       "VALUES (?, ?, ?, 'running', ?, ?, ?, 1, 0, 0, ?, ?)",
                       (campaign_id, name, json.dumps(spec), requester, origin, tracking_repository, now, now))
            for position, (repository, path, installation) in enumerate(targets, start=1):
                tx.execute("INSERT INTO campaign_targets (campaign_id, position, repository, path, installation_id, "
                           "state, attempt, updated) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?)",
                           (campaign_id, position, repository, path, installation, now))
        found = self.campaign(campaign_id)
        assert found is not None
        return found

    def campaign(self, campaign_id: str) -> CampaignRecord | None:
        rows = self._db.read("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        return _campaign(rows[0]) if rows else None

    def started_from(self, origin: str) -> CampaignRecord | None:
        """The latest campaign started from the issue `origin` (owner/name#number)."""
        rows = self._db.read("SELECT * FROM campaigns WHERE origin = ? ORDER BY created DESC LIMIT 1", (origin,))
        return _campaign(rows[0]) if rows else None

    def campaigns(self, limit: int = 100) -> list[CampaignRecord]:
        return [_campaign(row) for row in self._db.read("SELECT * FROM campaigns ORDER BY created DESC LIMIT ?",
                                                        (limit,))]

    def targets(self, campaign_id: str) -> list[CampaignTarget]:
        rows = self._db.read("SELECT * FROM campaign_targets WHERE campaign_id = ? ORDER BY position", (campaign_id,))
        return [CampaignTarget(**row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Targets per (campaign name, state), for the metrics."""
        rows = self._db.read("SELECT c.name AS name, t.state AS state, COUNT(*) AS n FROM campaign_targets t "
                             "JOIN campaigns c ON c.id = t.campaign_id GROUP BY c.name, t.state")
        return {(row["name"], row["state"]): int(row["n"]) for row in rows}

    # -- dispatching -----------------------------------------------------------------------------
    def claim(self, replica: str, *, pace: float, limits: Callable[[CampaignRecord], Limits]) -> Claim | None:
        """The next target `replica` should dispatch, claimed; None when no campaign may dispatch now.
        A target left `dispatching` by a stopped replica comes first; otherwise the first queued target
        of a running campaign below its concurrency, its pilot and its budget, whose installation's
        pace allows a write now (different installations go in parallel)."""
        now = self.clock()
        with self._db.transaction() as tx:
            for row in tx.execute("SELECT * FROM campaigns WHERE status = 'running' ORDER BY created").rows:
                campaign = _campaign(row)
                tx.lock(f"campaign:{campaign.id}")
                claimed = self._claim_in(tx, campaign, replica, now, pace, limits(campaign))
                if claimed is not None:
                    return claimed
        return None

    def _claim_in(self, tx: Transaction, campaign: CampaignRecord, replica: str, now: float, pace: float,
                  limits: Limits) -> Claim | None:
        concurrency, pilot, budget = limits
        orphan = tx.execute("SELECT * FROM campaign_targets WHERE campaign_id = ? AND state = 'dispatching' AND "
                            f"claimed_by IS NULL ORDER BY position LIMIT 1{self._db.skip_locked}",
                            (campaign.id,)).one()
        if orphan is not None:
            tx.execute("UPDATE campaign_targets SET claimed_by = ?, updated = ? WHERE campaign_id = ? AND position = ?",
                       (replica, now, campaign.id, orphan["position"]))
            return Claim(campaign=campaign, target=CampaignTarget(**{**orphan, "claimed_by": replica}), resume=True)
        tally = tx.execute("SELECT COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS spent, "
                           f"SUM(CASE WHEN state IN {ACTIVE} THEN 1 ELSE 0 END) AS active, "
                           "SUM(CASE WHEN state <> 'queued' THEN 1 ELSE 0 END) AS started "
                           "FROM campaign_targets WHERE campaign_id = ?", (campaign.id,)).one() or {}
        if int(tally.get("active") or 0) >= concurrency:
            return None
        if pilot and not campaign.pilot_released and int(tally.get("started") or 0) >= pilot:
            return None
        if budget is not None and float(tally.get("spent") or 0) >= budget:
            return None
        row = tx.execute("SELECT * FROM campaign_targets WHERE campaign_id = ? AND state = 'queued' AND "
                         "installation_id NOT IN (SELECT installation_id FROM installation_pace WHERE next_at > ?) "
                         "ORDER BY position "
                         f"LIMIT 1{self._db.skip_locked}", (campaign.id, now)).one()
        if row is None:
            return None
        attempt = int(row["attempt"]) + 1
        correlation = correlation_id(campaign.id, int(row["position"]), attempt)
        tx.execute("UPDATE campaign_targets SET state = 'dispatching', claimed_by = ?, attempt = ?, "
                   "correlation_id = ?, reason = NULL, updated = ? WHERE campaign_id = ? AND position = ?",
                   (replica, attempt, correlation, now, campaign.id, row["position"]))
        tx.execute("INSERT INTO installation_pace (installation_id, next_at) VALUES (?, ?) ON CONFLICT "
                   "(installation_id) DO UPDATE SET next_at = excluded.next_at", (row["installation_id"], now + pace))
        target = CampaignTarget(**{**row, "state": "dispatching", "claimed_by": replica, "attempt": attempt,
                                   "correlation_id": correlation, "reason": None})
        return Claim(campaign=campaign, target=target, resume=False)

    def release_orphans(self) -> int:
        """Targets claimed by replicas no longer alive (not in `replicas`) are claimable again; those still
        `dispatching` keep their correlation id."""
        with self._db.transaction() as tx:
            return tx.execute("UPDATE campaign_targets SET claimed_by = NULL WHERE state = 'dispatching' AND "
                              "claimed_by IS NOT NULL AND claimed_by NOT IN (SELECT id FROM replicas)").rowcount

    def dispatched(self, campaign_id: str, position: int, run_id: int | None, run_url: str | None) -> None:
        """The target's run exists (unless it already ended: its run can end before the dispatch's answer)."""
        self._set(campaign_id, position, "running", run_id=run_id, run_url=run_url, claimed_by=None,
                  only_if="dispatching")

    def dispatch_failed(self, campaign_id: str, position: int, reason: str) -> None:
        self._set(campaign_id, position, "failed", reason=reason[:500], claimed_by=None)

    def ended(self, target: CampaignTarget, state: TargetState, reason: str | None = None,
              run_url: str | None = None, cost_usd: float | None = None) -> None:
        """The target's run ended; its cost adds to the campaign's spending (a retry's to the earlier ones')."""
        cost = None if cost_usd is None and target.cost_usd is None else (target.cost_usd or 0) + (cost_usd or 0)
        self._set(target.campaign_id, target.position, state, reason=reason, run_url=run_url or target.run_url,
                  cost_usd=cost, run_id=target.run_id, claimed_by=None)

    def pull_request(self, target: CampaignTarget, url: str) -> None:
        """The target's draft (its state is left as it is: its run may have ended meanwhile)."""
        self._set(target.campaign_id, target.position, None, pull_request_url=url)

    def _set(self, campaign_id: str, position: int, state: TargetState | None, only_if: TargetState | None = None,
             **fields: Any) -> None:
        assignments = "".join(f", {name} = ?" for name in fields)  # names fixed above
        condition = "" if only_if is None else " AND state = ?"
        with self._db.transaction() as tx:
            tx.execute(f"UPDATE campaign_targets SET state = COALESCE(?, state), updated = ?{assignments} WHERE "
                       f"campaign_id = ? AND position = ?{condition}",
                       (state, self.clock(), *fields.values(), campaign_id, position,
                        *(() if only_if is None else (only_if,))))
            tx.execute("UPDATE campaigns SET tracking_version = tracking_version + 1, updated = ? WHERE id = ?",
                       (self.clock(), campaign_id))

    def target_for(self, *, run_id: int | None = None, correlation: str | None = None,
                   title: str = "") -> CampaignTarget | None:
        """The target of a workflow run: by run id, by correlation id, or by the correlation id in a run's title."""
        if run_id is not None:
            rows = self._db.read("SELECT * FROM campaign_targets WHERE run_id = ?", (run_id,))
            if rows:
                return CampaignTarget(**rows[0])
        if correlation:
            rows = self._db.read("SELECT * FROM campaign_targets WHERE correlation_id = ?", (correlation,))
            if rows:
                return CampaignTarget(**rows[0])
        if title:
            for row in self._db.read("SELECT * FROM campaign_targets WHERE state IN ('dispatching', 'running') AND "
                                     "run_id IS NULL AND correlation_id IS NOT NULL"):
                if row["correlation_id"] in title:
                    return CampaignTarget(**row)
        return None

    # -- steering ----------------------------------------------------------------------------------
    def set_status(self, campaign_id: str, status: CampaignStatus, *, pilot: int = 0) -> None:
        """`status`; with `pilot`, resuming also ends the wait after a pilot of that many targets, once they
        have all started (resuming during the pilot does not skip it)."""
        with self._db.transaction() as tx:
            tx.lock(f"campaign:{campaign_id}")
            started = (tx.execute("SELECT COUNT(*) AS n FROM campaign_targets WHERE campaign_id = ? AND state <> "
                                  "'queued'", (campaign_id,)).one() or {}).get("n", 0)
            release = status == "running" and pilot > 0 and int(started or 0) >= pilot
            tx.execute("UPDATE campaigns SET status = ?, pilot_released = CASE WHEN ? THEN 1 ELSE pilot_released END, "
                       "tracking_version = tracking_version + 1, updated = ? WHERE id = ?",
                       (status, release, self.clock(), campaign_id))
            if status == "cancelled":
                tx.execute("UPDATE campaign_targets SET state = 'cancelled', reason = 'the campaign was cancelled', "
                           "updated = ? WHERE campaign_id = ? AND state = 'queued'", (self.clock(), campaign_id))

    def retry_failed(self, campaign_id: str, *, from_patch: bool = False) -> int:
        """Queue again the targets that failed or did not validate; returns how many. `from_patch`: a target
        that did not validate goes on from its run's kept work."""
        with self._db.transaction() as tx:
            tx.lock(f"campaign:{campaign_id}")
            # The earlier run is forgotten (only the new attempt's run, with its own correlation id, can end
            # it), except as the source of the kept work (SET reads the row as it was).
            count = tx.execute("UPDATE campaign_targets SET state = 'queued', claimed_by = NULL, reason = NULL, "
                               "resume_run = CASE WHEN ? AND state = 'not_validated' THEN run_id END, "
                               "run_id = NULL, run_url = NULL, updated = ? WHERE campaign_id = ? AND state IN "
                               "('failed', 'not_validated')", (from_patch, self.clock(), campaign_id)).rowcount
            # A paused campaign stays paused; a cancelled one runs again, for these targets.
            tx.execute("UPDATE campaigns SET status = CASE WHEN status = 'cancelled' THEN 'running' ELSE status END, "
                       "tracking_version = tracking_version + 1, updated = ? WHERE id = ?", (self.clock(), campaign_id))
        return count

    # -- the tracking issue ------------------------------------------------------------------------
    def claim_tracking(self, replica: str, every: float) -> CampaignRecord | None:
        """A campaign whose tracking issue is behind its targets and was not written in the last `every`
        seconds, claimed for `replica` to render (one replica at a time, so an older table never
        overwrites a newer one)."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT * FROM campaigns WHERE tracking_version > tracking_synced AND tracking_claim IS "
                             "NULL AND (tracking_at IS NULL OR tracking_at <= ?) ORDER BY updated LIMIT 1"
                             f"{self._db.skip_locked}", (self.clock() - every,)).one()
            if row is None:
                return None
            tx.execute("UPDATE campaigns SET tracking_claim = ? WHERE id = ?", (replica, row["id"]))
        return _campaign({**row, "tracking_claim": replica})

    def tracked(self, campaign: CampaignRecord, *, version: int, issue: int | None, url: str | None) -> None:
        """The tracking issue now shows `version` (or could not be written: `issue` None, tried again later)."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE campaigns SET tracking_claim = NULL, tracking_at = ?, tracking_synced = CASE WHEN ? "
                       "THEN ? ELSE tracking_synced END, tracking_issue = COALESCE(?, tracking_issue), tracking_url = "
                       "COALESCE(?, tracking_url) WHERE id = ?",
                       (self.clock(), issue is not None, version, issue, url, campaign.id))

    def release_tracking(self) -> None:
        """Tracking issues claimed by replicas no longer alive can be written again."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE campaigns SET tracking_claim = NULL WHERE tracking_claim IS NOT NULL AND "
                       "tracking_claim NOT IN (SELECT id FROM replicas)")


def _campaign(row: dict[str, Any]) -> CampaignRecord:
    return CampaignRecord(**{**row, "spec": json.loads(row["spec"]), "pilot_released": bool(row["pilot_released"])})
