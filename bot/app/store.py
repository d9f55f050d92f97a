"""The App's state: deliveries and their queue, sessions dispatched, installations, CI attempts;
in SQLite (a file, the default) or PostgreSQL (`FIXLOOP_DB=postgresql://…`), see `_database`.

A delivery is recorded (with its payload) before it is acknowledged, so a redelivery is
recognised even across restarts. The recorded deliveries are the work queue: a worker of any
replica claims the oldest pending one (`next_delivery`), passing over those another replica is
claiming, so each is processed once. A delivery held by a replica that stopped (its heartbeat
stale, or its process gone from this host) goes back to the queue (`reclaim`).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from bot.app._database import connect
from bot.app.campaign_store import CampaignStore

LEASE = 600.0  # seconds a replica may hold a delivery: processing one takes seconds
MAX_EVENTS = 5_000  # events a session's runner may report (a session has hundreds)
ACTIVE = ("dispatching", "dispatched", "in_progress")


class SessionRecord(BaseModel):
    id: str
    repository: str
    kind: str
    target: str
    requester: str | None = None
    correlation_id: str | None = None
    status: str
    conclusion: str | None = None
    reason: str | None = None
    run_id: int | None = None
    run_url: str | None = None
    pull_request_url: str | None = None
    created: float
    updated: float
    title: str | None = None  # the task in a line
    inputs: str | None = None  # what was dispatched (JSON of the workflow's inputs): a retry dispatches it again
    # What the runner reported: fixloop's own ending (validated, not_validated, cancelled, error) and why,
    # which the workflow's conclusion only approximates; what it spent; when it ended.
    ending: str | None = None
    ending_reason: str | None = None
    cost_usd: float | None = None
    tokens: int | None = None
    iterations: int | None = None
    ended: float | None = None
    escalation: str | None = None  # why the runner called a person (not_validated, limit, error); None: it did not


class ListedSession(NamedTuple):
    """A session as a list shows it (a list may hold 10,000: a tuple, not a validated model)."""

    id: str
    repository: str
    kind: str
    target: str
    requester: str | None
    status: str
    conclusion: str | None
    title: str | None
    ending: str | None
    cost_usd: float | None
    created: float
    updated: float
    ended: float | None


class SessionEvent(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]
    received: float


class SessionFilter(BaseModel):
    """Which sessions a list shows: of these repositories (None: any), and matching each field given."""

    repositories: list[str] | None = None
    repository: str | None = None
    kind: str | None = None
    status: str | None = None
    requester: str | None = None


class PendingDelivery(BaseModel):
    id: str
    event: str
    payload: Any


class Store:
    def __init__(self, location: str | Path, clock: Any = time.time) -> None:
        """`location`: a PostgreSQL URL, else the path of an SQLite file."""
        self.clock = clock
        self._db = connect(location)
        self.campaigns = CampaignStore(self._db, lambda: self.clock())

    def close(self) -> None:
        self._db.close()

    def optimize(self) -> None:
        """Refresh the database's statistics for its query planner (the App calls this now and then)."""
        self._db.optimize()

    # -- deliveries and their queue ------------------------------------------------------------
    def claim_delivery(self, delivery_id: str, event: str, payload: Any) -> bool:
        """Record a delivery, pending; False if this id was seen before (a redelivery)."""
        with self._db.transaction() as tx:
            return tx.execute("INSERT INTO deliveries (id, event, received, status, payload) "
                              "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (id) DO NOTHING",
                              (delivery_id, event, self.clock(), json.dumps(payload))).rowcount == 1

    def next_delivery(self, replica: str) -> PendingDelivery | None:
        """Claim the oldest pending delivery for `replica`; None when there is none to claim."""
        with self._db.transaction() as tx:
            row = tx.execute(
                f"UPDATE deliveries SET status = 'processing', claimed_by = ?, claimed_at = {self._db.now} WHERE id = ("
                "SELECT id FROM deliveries WHERE status = 'pending' ORDER BY received LIMIT 1"
                f"{self._db.skip_locked}) RETURNING id, event, payload", (replica,)).one()
        return PendingDelivery(id=row["id"], event=row["event"], payload=json.loads(row["payload"])) if row else None

    def finish_delivery(self, delivery_id: str, outcome: str, replica: str | None = None) -> bool:
        """Record the outcome of a delivery; with `replica`, only while that replica still holds it (another
        may have taken it over, and its outcome is the one that counts). Whether it was recorded."""
        with self._db.transaction() as tx:
            held = "" if replica is None else " AND claimed_by = ?"
            return tx.execute(f"UPDATE deliveries SET status = 'done', outcome = ?, payload = NULL WHERE id = ?{held}",
                              (outcome[:500], delivery_id, *(() if replica is None else (replica,)))).rowcount == 1

    def unfinished_deliveries(self) -> int:
        """Deliveries pending or being processed, by any replica."""
        rows = self._db.read("SELECT COUNT(*) AS n FROM deliveries WHERE status IN ('pending', 'processing')")
        return int(rows[0]["n"])

    def delivery_outcome(self, delivery_id: str) -> tuple[str, str | None] | None:
        rows = self._db.read("SELECT status, outcome FROM deliveries WHERE id = ?", (delivery_id,))
        return (rows[0]["status"], rows[0]["outcome"]) if rows else None

    # -- replicas ------------------------------------------------------------------------------
    def heartbeat(self, replica: str) -> bool:
        """`replica` (this process) is alive, by the database's clock (replicas' clocks differ). False when
        its record was gone: the others took it for stopped, and took over what it held."""
        with self._db.transaction() as tx:
            known = tx.execute(f"UPDATE replicas SET seen = {self._db.now} WHERE id = ?", (replica,)).rowcount
            if not known:
                tx.execute(f"INSERT INTO replicas (id, host, pid, seen) VALUES (?, ?, ?, {self._db.now})",
                           (replica, machine(), os.getpid()))
        return bool(known)

    def leave(self, replica: str) -> None:
        """`replica` stops, holding nothing: the others need not wait for it."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM replicas WHERE id = ?", (replica,))

    def reclaim(self, stale_after: float, lease: float = LEASE) -> int:
        """Put back in the queue what replicas that stopped held: replicas silent for `stale_after` seconds
        (by the database's clock), or whose process no longer runs on this machine; and a delivery held
        longer than `lease`, whoever holds it (its outcome could not be recorded). Returns how many."""
        with self._db.transaction() as tx:
            tx.lock("fixloop-reclaim")
            for row in tx.execute("SELECT id, pid FROM replicas WHERE host = ?", (machine(),)).rows:
                if not _alive(int(row["pid"])):
                    tx.execute("DELETE FROM replicas WHERE id = ?", (row["id"],))
            tx.execute(f"DELETE FROM replicas WHERE seen < {self._db.now} - ?", (stale_after,))
            count = tx.execute("UPDATE deliveries SET status = 'pending', claimed_by = NULL WHERE status = "
                               "'processing' AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT id FROM replicas) "
                               f"OR claimed_at < {self._db.now} - ?)", (lease,)).rowcount
        count += self.campaigns.release_orphans()
        self.campaigns.release_tracking()
        return count

    # -- sessions ------------------------------------------------------------------------------
    def start_session(self, *, repository: str, kind: str, target: str, requester: str | None,
                      correlation_id: str, active_since: float, title: str | None = None,
                      inputs: str | None = None) -> tuple[SessionRecord, bool]:
        """Record a new session for `target`, unless one created after `active_since` is still active: in
        one transaction, so that two workers handling two requests for one target start one session.
        Returns (the new session, True), or (the session that is still active, False)."""
        now = self.clock()
        record = SessionRecord(id=f"ses_{secrets.token_hex(8)}", repository=repository, kind=kind, target=target,
                               requester=requester, correlation_id=correlation_id, status="dispatching",
                               created=now, updated=now, title=title, inputs=inputs)
        with self._db.transaction() as tx:
            tx.lock(f"session:{repository}:{target}")
            busy = tx.execute(f"SELECT * FROM sessions WHERE repository = ? AND target = ? AND status IN {ACTIVE} "
                              "AND created > ? ORDER BY created DESC LIMIT 1",
                              (repository, target, active_since)).one()
            if busy is not None:
                return SessionRecord(**busy), False
            tx.execute(
                "INSERT INTO sessions "
                "(id, repository, kind, target, requester, correlation_id, status, created, updated, title, inputs) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, repository, kind, target, requester, correlation_id, record.status, now, now, title,
                 inputs))
        return record, True

    def update_session(self, session_id: str, **fields: Any) -> None:
        allowed = {"status", "conclusion", "reason", "run_id", "run_url", "pull_request_url", "ending", "ending_reason",
                   "cost_usd", "tokens", "iterations", "ended", "escalation"}
        assert set(fields) <= allowed, set(fields) - allowed
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._db.transaction() as tx:
            tx.execute(f"UPDATE sessions SET {assignments}, updated = ? WHERE id = ?",  # names are fixed
                       (*fields.values(), self.clock(), session_id))

    def _sessions(self, where: str, args: tuple[Any, ...], limit: int = 100) -> list[SessionRecord]:
        rows = self._db.read(f"SELECT * FROM sessions WHERE {where} ORDER BY created DESC LIMIT ?", (*args, limit))
        return [SessionRecord(**row) for row in rows]

    def session(self, session_id: str) -> SessionRecord | None:
        found = self._sessions("id = ?", (session_id,), 1)
        return found[0] if found else None

    def session_for_correlation(self, correlation_id: str) -> SessionRecord | None:
        """The session started for this delivery (or API request), found however many sessions there are."""
        found = self._sessions("correlation_id = ?", (correlation_id,), 1)
        return found[0] if found else None

    def sessions(self, repository: str | None = None, limit: int = 100) -> list[SessionRecord]:
        if repository:
            return self._sessions("repository = ?", (repository,), limit)
        return self._sessions("1 = 1", (), limit)

    def find_sessions(self, where: SessionFilter, *, limit: int = 100, before: float | None = None
                      ) -> list[ListedSession]:
        """Sessions matching `where`, newest first; `before`: created before then (the next page)."""
        clauses, args = self._filter(where)
        if before is not None:
            clauses.append("created < ?")
            args.append(before)
        rows = self._db.read(f"SELECT {', '.join(ListedSession._fields)} FROM sessions WHERE "
                             f"{' AND '.join(clauses) or '1 = 1'} ORDER BY created DESC LIMIT ?", (*args, limit))
        return [ListedSession(**row) for row in rows]

    def cost_by_week(self, where: SessionFilter) -> list[tuple[str, int, float]]:
        """(repository, week's start as seconds since the epoch, USD) of the sessions matching `where`."""
        clauses, args = self._filter(where)
        clauses.append("cost_usd IS NOT NULL")
        rows = self._db.read(f"SELECT repository, created, cost_usd FROM sessions WHERE {' AND '.join(clauses)}",
                             tuple(args))
        week = 7 * 86400
        totals: dict[tuple[str, int], float] = {}
        for row in rows:  # weeks start on Monday (the epoch was a Thursday)
            start = int((row["created"] + 3 * 86400) // week * week - 3 * 86400)
            totals[row["repository"], start] = totals.get((row["repository"], start), 0.0) + row["cost_usd"]
        return sorted(((repository, start, cost) for (repository, start), cost in totals.items()),
                      key=lambda item: (item[1], item[0]))

    @staticmethod
    def _filter(where: SessionFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.repositories is not None:
            if not where.repositories:
                return ["1 = 0"], []
            clauses.append(f"repository IN ({', '.join('?' for _ in where.repositories)})")
            args += where.repositories
        for name in ("repository", "kind", "status", "requester"):
            if value := getattr(where, name):
                clauses.append(f"{name} = ?")  # names are fixed
                args.append(value)
        return clauses, args

    def ending_counts(self) -> dict[str, int]:
        """Sessions per fixloop ending (validated, not_validated, cancelled, error), for the metrics."""
        rows = self._db.read("SELECT ending, COUNT(*) AS n FROM sessions WHERE ending IS NOT NULL GROUP BY ending")
        return {row["ending"]: int(row["n"]) for row in rows}

    def escalation_counts(self) -> dict[str, int]:
        """Sessions that called a person, per reason (not_validated, limit, error), for the metrics."""
        rows = self._db.read("SELECT escalation, COUNT(*) AS n FROM sessions WHERE escalation IS NOT NULL "
                             "GROUP BY escalation")
        return {row["escalation"]: int(row["n"]) for row in rows}

    # -- what the runner reports -----------------------------------------------------------------
    def record_event(self, session_id: str, seq: int, kind: str, data: dict[str, Any], attempt: int = 1,
                     limit: int = MAX_EVENTS) -> bool | None:
        """Record event `seq` of a run attempt of a session; False when it was recorded before (a retry, or a
        replay), None when the session has `limit` events already."""
        with self._db.transaction() as tx:
            tx.lock(f"events:{session_id}")
            held = tx.execute("SELECT COUNT(*) AS n FROM session_events WHERE session_id = ?", (session_id,)).one()
            if held is not None and held["n"] >= limit:
                return None
            return tx.execute("INSERT INTO session_events (session_id, attempt, seq, type, data, received) VALUES "
                              "(?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, attempt, seq) DO NOTHING",
                              (session_id, attempt, seq, kind, json.dumps(data), self.clock())).rowcount == 1

    def events(self, session_id: str) -> list[SessionEvent]:
        """The events of the session's latest run attempt (a re-run of its workflow starts over)."""
        rows = self._db.read("SELECT seq, type, data, received FROM session_events WHERE session_id = ? AND attempt = "
                             "(SELECT MAX(attempt) FROM session_events WHERE session_id = ?) ORDER BY seq",
                             (session_id, session_id))
        return [SessionEvent(seq=row["seq"], type=row["type"], data=json.loads(row["data"]),
                             received=row["received"]) for row in rows]

    def use_token(self, token_id: str, expires: float) -> bool:
        """Record that an OIDC token (its `jti`) was used; False when it had been (a replayed request).
        Tokens past their expiry are forgotten: they are refused for being expired."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM oidc_tokens WHERE expires < ?", (self.clock() - 300,))
            return tx.execute("INSERT INTO oidc_tokens (jti, expires) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
                              (token_id, expires)).rowcount == 1

    # -- people signed in to the web UI --------------------------------------------------------
    def open_ui_session(self, login: str, repositories: list[str], lifetime: float) -> tuple[str, str]:
        """A signed-in person's session: (its id, its CSRF token)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM ui_sessions WHERE expires < ?", (self.clock(),))
            tx.execute("INSERT INTO ui_sessions (id, login, repositories, csrf, expires) VALUES (?, ?, ?, ?, ?)",
                       (session_id, login, json.dumps(sorted(repositories)), csrf, self.clock() + lifetime))
        return session_id, csrf

    def ui_session(self, session_id: str) -> tuple[str, list[str], str] | None:
        """(login, repositories they may see, CSRF token) of a session still open."""
        rows = self._db.read("SELECT login, repositories, csrf FROM ui_sessions WHERE id = ? AND expires > ?",
                             (session_id, self.clock()))
        return (rows[0]["login"], json.loads(rows[0]["repositories"]), rows[0]["csrf"]) if rows else None

    def close_ui_session(self, session_id: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM ui_sessions WHERE id = ?", (session_id,))

    def session_for_run(self, repository: str, run_id: int, title: str) -> SessionRecord | None:
        """The session of `repository` a workflow run belongs to: by run id, else by the correlation id its title
        ends with, in parentheses (the workflow's `run-name`): anyone can name a run of their own repository
        after another repository's session, so the repository must match too."""
        found = self._sessions("run_id = ? AND repository = ?", (run_id, repository), 1)
        if found:
            return found[0]
        rows = self._db.read("SELECT correlation_id FROM sessions WHERE run_id IS NULL AND repository = ? AND status "
                             "IN ('dispatching', 'dispatched')", (repository,))
        for row in rows:
            if row["correlation_id"] and title.endswith(f"({row['correlation_id']})"):
                return self.session_for_correlation(row["correlation_id"])
        return None

    # -- installations -------------------------------------------------------------------------
    def record_installation(self, installation_id: int, account: str | None, *, added: list[str],
                            removed: list[str], active: bool) -> list[str]:
        with self._db.transaction() as tx:
            tx.lock(f"installation:{installation_id}")
            row = tx.execute("SELECT repositories FROM installations WHERE id = ?", (installation_id,)).one()
            repositories = set(json.loads(row["repositories"])) if row else set()
            repositories = (repositories | set(added)) - set(removed)
            tx.execute("INSERT INTO installations (id, account, repositories, active, updated) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET account = excluded.account, repositories = "
                       "excluded.repositories, active = excluded.active, updated = excluded.updated",
                       (installation_id, account, json.dumps(sorted(repositories)), int(active), self.clock()))
        return sorted(repositories)

    def installation_repositories(self, installation_id: int) -> list[str] | None:
        rows = self._db.read("SELECT repositories, active FROM installations WHERE id = ?", (installation_id,))
        return json.loads(rows[0]["repositories"]) if rows and rows[0]["active"] else None

    # -- automatic CI sessions -----------------------------------------------------------------
    def ci_attempt(self, repository: str, branch: str, cap: int) -> bool:
        """Count one automatic CI session on `branch`; False (and no count) once `cap` is reached."""
        with self._db.transaction() as tx:
            counted = tx.execute("INSERT INTO ci_attempts (repository, branch, count) VALUES (?, ?, 1) "
                                 "ON CONFLICT (repository, branch) DO UPDATE SET count = ci_attempts.count + 1 "
                                 "WHERE ci_attempts.count < ? RETURNING count", (repository, branch, cap)).one()
            if counted is not None and counted["count"] > cap:  # a cap of 0: the first insert counted one
                tx.execute("DELETE FROM ci_attempts WHERE repository = ? AND branch = ?", (repository, branch))
                return False
            return counted is not None

    def ci_passed(self, repository: str, branch: str) -> None:
        """A green run on the branch starts the count afresh."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM ci_attempts WHERE repository = ? AND branch = ?", (repository, branch))


def machine() -> str:
    """This machine as replicas tell it apart: its host name, boot and process namespace (containers that
    share a host name, or a host's network, still differ), so that a process id means one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
