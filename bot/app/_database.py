"""The two databases the App's store runs on, behind one small interface: SQLite (embedded, the
default: a file) and PostgreSQL (`FIXLOOP_DB=postgresql://…`, psycopg 3, for replicas on any hosts).

The store writes one SQL for both: `?` placeholders, `ON CONFLICT`, `RETURNING`, types both know.
What differs is here: how a transaction starts, how it takes a named lock (Postgres: an advisory
lock for the transaction; SQLite: its one writer already excludes the others), and whether a
claimed row can be skipped while another transaction holds it (`FOR UPDATE SKIP LOCKED`).

Migrations are numbered and applied in order, once, under a lock, at start-up: every replica may
start at the same moment.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.errors import ConfigError

# Each entry is one version of the schema; a database records the last one it has. Never edit one
# that has shipped: add the next.
MIGRATIONS: tuple[str, ...] = (
    # 1: the App's state as fixloop 0.x kept it (statements that a database of that time already satisfies)
    """
    CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, event TEXT NOT NULL, received DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL, outcome TEXT, payload TEXT
    );
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY, repository TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
        requester TEXT, correlation_id TEXT UNIQUE, status TEXT NOT NULL, conclusion TEXT, reason TEXT,
        run_id BIGINT, run_url TEXT, pull_request_url TEXT, created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sessions_by_target ON sessions (repository, target);
    CREATE INDEX IF NOT EXISTS sessions_by_run ON sessions (run_id);
    CREATE TABLE IF NOT EXISTS installations (
        id BIGINT PRIMARY KEY, account TEXT, repositories TEXT NOT NULL, active INTEGER NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ci_attempts (
        repository TEXT NOT NULL, branch TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (repository, branch)
    );
    """,
    # 2: the delivery queue lives in the database (which replica holds a delivery), and the replicas say
    # they are alive
    """
    ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
    ALTER TABLE deliveries ADD COLUMN claimed_at DOUBLE PRECISION;
    CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, received);
    CREATE TABLE IF NOT EXISTS replicas (
        id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, seen DOUBLE PRECISION NOT NULL
    );
    """,
    # 3: campaigns, their targets (the dispatch queue of campaigns), and the pace of writes per installation
    """
    CREATE TABLE IF NOT EXISTS campaigns (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL, requester TEXT,
        origin TEXT,
        tracking_repository TEXT NOT NULL, tracking_issue BIGINT, tracking_url TEXT,
        tracking_version INTEGER NOT NULL, tracking_synced INTEGER NOT NULL, tracking_claim TEXT,
        tracking_at DOUBLE PRECISION,
        pilot_released INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS campaign_targets (
        campaign_id TEXT NOT NULL, position INTEGER NOT NULL, repository TEXT NOT NULL, path TEXT NOT NULL,
        installation_id BIGINT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, claimed_by TEXT,
        correlation_id TEXT, run_id BIGINT, run_url TEXT, pull_request_url TEXT, cost_usd DOUBLE PRECISION,
        reason TEXT, resume_run BIGINT, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (campaign_id, position)
    );
    CREATE INDEX IF NOT EXISTS campaign_targets_by_state ON campaign_targets (campaign_id, state, position);
    CREATE INDEX IF NOT EXISTS campaign_targets_by_correlation ON campaign_targets (correlation_id);
    CREATE INDEX IF NOT EXISTS campaign_targets_by_run ON campaign_targets (run_id);
    CREATE TABLE IF NOT EXISTS installation_pace (
        installation_id BIGINT PRIMARY KEY, next_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: what the runner reports (its events, and fixloop's own ending, cost and tokens), the OIDC tokens it
    # reported with (each once), and the web UI's signed-in people
    """
    ALTER TABLE sessions ADD COLUMN title TEXT;
    ALTER TABLE sessions ADD COLUMN inputs TEXT;
    ALTER TABLE sessions ADD COLUMN ending TEXT;
    ALTER TABLE sessions ADD COLUMN ending_reason TEXT;
    ALTER TABLE sessions ADD COLUMN cost_usd DOUBLE PRECISION;
    ALTER TABLE sessions ADD COLUMN tokens BIGINT;
    ALTER TABLE sessions ADD COLUMN iterations INTEGER;
    ALTER TABLE sessions ADD COLUMN ended DOUBLE PRECISION;
    CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (created);
    CREATE TABLE IF NOT EXISTS session_events (
        session_id TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
        data TEXT NOT NULL, received DOUBLE PRECISION NOT NULL, PRIMARY KEY (session_id, attempt, seq)
    );
    CREATE TABLE IF NOT EXISTS oidc_tokens (jti TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL);
    CREATE TABLE IF NOT EXISTS ui_sessions (
        id TEXT PRIMARY KEY, login TEXT NOT NULL, repositories TEXT NOT NULL, csrf TEXT NOT NULL,
        expires DOUBLE PRECISION NOT NULL
    );
    """,
    # 5: whom a failed session called, by the reason it failed (not_validated, limit, error), as the runner reports
    """
    ALTER TABLE sessions ADD COLUMN escalation TEXT;
    """,
)


@dataclass
class Result:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = 0

    def one(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None


class Transaction(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result: ...

    def lock(self, name: str) -> None:
        """Hold the lock `name` until the transaction ends (two writers deciding on one thing)."""


class Database(Protocol):
    skip_locked: str  # appended to a SELECT that claims rows: other transactions' claims are passed over
    now: str  # the database's clock in seconds since the epoch, as SQL: one clock for replicas on many hosts

    @contextmanager
    def transaction(self) -> Iterator[Transaction]: ...

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def optimize(self) -> None:
        """Refresh what the query planner knows of the tables (they grow from empty while the App runs)."""

    def close(self) -> None: ...


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def connect(location: str | Path) -> Database:
    """The database at `location` (a PostgreSQL URL, else an SQLite file), migrated to the latest schema."""
    database: Database = _Postgres(str(location)) if is_postgres_url(location) else _SQLite(Path(location))
    try:
        migrate(database)
    except BaseException:
        database.close()
        raise
    return database


def migrate(database: Database) -> int:
    """Apply the migrations the database lacks; returns its version."""
    with database.transaction() as tx:
        tx.lock("fixloop-migrations")
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = tx.execute("SELECT MAX(version) AS version FROM schema_version").one()
        current = int(row["version"]) if row and row["version"] is not None else 0
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in filter(str.strip, script.split(";")):
                tx.execute(statement)
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    return len(MIGRATIONS)


class _SQLiteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        cursor = self.connection.execute(sql, tuple(args))
        rows = [dict(row) for row in cursor.fetchall()] if cursor.description else []
        return Result(rows, cursor.rowcount)

    def lock(self, name: str) -> None:
        """Nothing to do: `BEGIN IMMEDIATE` made this the only writer."""


class _SQLite:
    """One connection, serialised by a lock; WAL keeps readers cheap. Processes on one host share the file."""

    skip_locked = ""
    now = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Statistics for the planner, from a sample of each index (quick at any size): without them, the sessions
        # of a person's repositories (`repository IN (...)`, newest first) are all read and sorted.
        self._db.execute("PRAGMA analysis_limit=1000")
        self._db.execute("ANALYZE")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, tuple(args)).fetchall()]

    def optimize(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA optimize")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PostgresTransaction:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        cursor = self.connection.execute(sql.replace("?", "%s"), tuple(args))
        rows = list(cursor.fetchall()) if cursor.description else []
        return Result(rows, cursor.rowcount)

    def lock(self, name: str) -> None:
        # A lock of the transaction, keyed by a number: the name's CRC-32 (collisions only serialise more).
        self.execute("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(name.encode()),))


# Settings of every connection: a server that stops answering (a partition, a failover) is noticed in
# seconds, and no statement holds the replica's connection for long.
_CONNECTION: dict[str, Any] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3, "tcp_user_timeout": 30_000, "options": "-c statement_timeout=30000"}


class _Postgres:
    """One connection per replica, serialised by a lock (transactions are short and never wait on GitHub);
    a connection the server or the network dropped is replaced before the next use."""

    skip_locked = " FOR UPDATE SKIP LOCKED"
    now = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    def __init__(self, url: str) -> None:
        if importlib.util.find_spec("psycopg") is None:  # only the App on PostgreSQL needs it
            raise ConfigError("FIXLOOP_DB is a PostgreSQL URL, but psycopg is not installed: "
                              "pip install 'fixloop[postgres]'")
        self._url = url
        self._lock = threading.Lock()
        self._db = self._connect()

    def _connect(self) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.rows import dict_row

        try:
            settings = conninfo_to_dict(self._url)
            if "@" in str(settings.get("host") or ""):  # an "@" of the password, not percent-encoded
                raise psycopg.ProgrammingError("an @ in the host")
        except psycopg.Error:
            raise ConfigError("FIXLOOP_DB is not a PostgreSQL URL psycopg can read: write it as "
                              "postgresql://user:password@host:5432/database (percent-encode reserved characters "
                              "in the password)") from None
        try:
            return psycopg.connect(self._url, autocommit=True, row_factory=dict_row, **_CONNECTION)
        except psycopg.Error as error:
            where = f"{settings.get('host', 'localhost')}:{settings.get('port', 5432)}/{settings.get('dbname', '')}"
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            password = str(settings.get("password") or "")
            if password:
                detail = detail.replace(password, "[REDACTED]")
            raise ConfigError(f"FIXLOOP_DB: cannot connect to PostgreSQL at {where}: {detail}") from None

    def _connection(self) -> Any:
        if self._db.closed or self._db.broken:
            self._db = self._connect()
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            connection = self._connection()
            with connection.transaction():
                yield _PostgresTransaction(connection)

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._connection().execute(sql.replace("?", "%s"), tuple(args)).fetchall())

    def optimize(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum keeps the statistics."""

    def close(self) -> None:
        with self._lock:
            self._db.close()
