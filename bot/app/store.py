"""The App's state in SQLite: deliveries seen, sessions dispatched, installations, CI attempts.

A delivery is recorded (with its payload) before it is acknowledged, so a redelivery is
recognised even across restarts, and a delivery whose processing was cut short by a restart is
picked up again at start-up. One connection, serialised by a lock; WAL keeps readers cheap.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, event TEXT NOT NULL, received REAL NOT NULL,
    status TEXT NOT NULL, outcome TEXT, payload TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, repository TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
    requester TEXT, correlation_id TEXT UNIQUE, status TEXT NOT NULL, conclusion TEXT, reason TEXT,
    run_id INTEGER, run_url TEXT, pull_request_url TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_target ON sessions (repository, target);
CREATE INDEX IF NOT EXISTS sessions_by_run ON sessions (run_id);
CREATE TABLE IF NOT EXISTS installations (
    id INTEGER PRIMARY KEY, account TEXT, repositories TEXT NOT NULL, active INTEGER NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ci_attempts (
    repository TEXT NOT NULL, branch TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (repository, branch)
);
"""
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


class PendingDelivery(BaseModel):
    id: str
    event: str
    payload: Any


class Store:
    def __init__(self, path: Path, clock: Any = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- deliveries ----------------------------------------------------------------------------
    def claim_delivery(self, delivery_id: str, event: str, payload: Any) -> bool:
        """Record a delivery; False if this id was seen before (a redelivery)."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (id, event, received, status, payload) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (delivery_id, event, self.clock(), json.dumps(payload)))
            return cursor.rowcount == 1

    def finish_delivery(self, delivery_id: str, outcome: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET status = 'done', outcome = ?, payload = NULL WHERE id = ?",
                       (outcome[:500], delivery_id))

    def pending_deliveries(self) -> list[PendingDelivery]:
        with self._lock:
            rows = self._db.execute("SELECT id, event, payload FROM deliveries WHERE status = 'pending' "
                                    "ORDER BY received").fetchall()
        return [PendingDelivery(id=r["id"], event=r["event"], payload=json.loads(r["payload"])) for r in rows]

    def delivery_outcome(self, delivery_id: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._db.execute("SELECT status, outcome FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return (row["status"], row["outcome"]) if row else None

    # -- sessions ------------------------------------------------------------------------------
    def start_session(self, *, repository: str, kind: str, target: str, requester: str | None,
                      correlation_id: str, active_since: float) -> tuple[SessionRecord, bool]:
        """Record a new session for `target`, unless one created after `active_since` is still active: in
        one transaction, so that two workers handling two requests for one target start one session.
        Returns (the new session, True), or (the session that is still active, False)."""
        now = self.clock()
        record = SessionRecord(id=f"ses_{secrets.token_hex(8)}", repository=repository, kind=kind, target=target,
                               requester=requester, correlation_id=correlation_id, status="dispatching",
                               created=now, updated=now)
        with self._tx() as db:
            busy = db.execute(f"SELECT * FROM sessions WHERE repository = ? AND target = ? AND status IN {ACTIVE} "
                              "AND created > ? ORDER BY created DESC LIMIT 1",
                              (repository, target, active_since)).fetchone()
            if busy is not None:
                return SessionRecord(**dict(busy)), False
            db.execute(
                "INSERT INTO sessions "
                "(id, repository, kind, target, requester, correlation_id, status, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, repository, kind, target, requester, correlation_id, record.status, now, now))
        return record, True

    def update_session(self, session_id: str, **fields: Any) -> None:
        allowed = {"status", "conclusion", "reason", "run_id", "run_url", "pull_request_url"}
        assert set(fields) <= allowed, set(fields) - allowed
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._tx() as db:
            db.execute(f"UPDATE sessions SET {assignments}, updated = ? WHERE id = ?",  # names are fixed
                       (*fields.values(), self.clock(), session_id))

    def _sessions(self, where: str, args: tuple[Any, ...], limit: int = 100) -> list[SessionRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM sessions WHERE {where} ORDER BY created DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [SessionRecord(**dict(row)) for row in rows]

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

    def session_for_run(self, run_id: int, title: str) -> SessionRecord | None:
        """The session a workflow run belongs to: by run id, else by the correlation id in its title."""
        found = self._sessions("run_id = ?", (run_id,), 1)
        if found:
            return found[0]
        with self._lock:
            rows = self._db.execute("SELECT correlation_id FROM sessions WHERE run_id IS NULL AND status IN "
                                    "('dispatching', 'dispatched')").fetchall()
        for row in rows:
            if row["correlation_id"] and row["correlation_id"] in title:
                return self.session_for_correlation(row["correlation_id"])
        return None

    # -- installations -------------------------------------------------------------------------
    def record_installation(self, installation_id: int, account: str | None, *, added: list[str],
                            removed: list[str], active: bool) -> list[str]:
        with self._tx() as db:
            row = db.execute("SELECT repositories FROM installations WHERE id = ?", (installation_id,)).fetchone()
            repositories = set(json.loads(row["repositories"])) if row else set()
            repositories = (repositories | set(added)) - set(removed)
            db.execute("INSERT OR REPLACE INTO installations (id, account, repositories, active, updated) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (installation_id, account, json.dumps(sorted(repositories)), int(active), self.clock()))
        return sorted(repositories)

    def installation_repositories(self, installation_id: int) -> list[str] | None:
        with self._lock:
            row = self._db.execute("SELECT repositories, active FROM installations WHERE id = ?",
                                   (installation_id,)).fetchone()
        return json.loads(row["repositories"]) if row and row["active"] else None

    # -- automatic CI sessions -----------------------------------------------------------------
    def ci_attempt(self, repository: str, branch: str, cap: int) -> bool:
        """Count one automatic CI session on `branch`; False (and no count) once `cap` is reached."""
        with self._tx() as db:
            row = db.execute("SELECT count FROM ci_attempts WHERE repository = ? AND branch = ?",
                             (repository, branch)).fetchone()
            count = row["count"] if row else 0
            if count >= cap:
                return False
            db.execute("INSERT OR REPLACE INTO ci_attempts (repository, branch, count) VALUES (?, ?, ?)",
                       (repository, branch, count + 1))
            return True

    def ci_passed(self, repository: str, branch: str) -> None:
        """A green run on the branch starts the count afresh."""
        with self._tx() as db:
            db.execute("DELETE FROM ci_attempts WHERE repository = ? AND branch = ?", (repository, branch))
