"""The App's store, the same tests on SQLite (the embedded default) and on a real PostgreSQL (a
throwaway cluster the tests start): deliveries and their queue, replicas, sessions, caps,
installations and the schema's migrations. Several `Store`s on one database stand for replicas."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.app._database import MIGRATIONS
from bot.app.settings import AppSettings
from bot.app.store import Store, machine
from bot.errors import ConfigError

REPO = "octo/widgets"
OpenStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one fresh database (each a connection of its own, as replicas have)."""
    location: str | Path = (tmp_path / "fixloop.sqlite3" if request.param == "sqlite"
                            else request.getfixturevalue("postgres_url"))
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(Store(location))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def test_a_delivery_is_recorded_once_and_claimed_by_one_replica(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    assert first.claim_delivery("d-1", "issues", {"action": "labeled"})
    assert not second.claim_delivery("d-1", "issues", {"action": "labeled"}), "a redelivery"
    assert first.unfinished_deliveries() == 1
    claimed = second.next_delivery("replica-b")
    assert claimed is not None and (claimed.id, claimed.event, claimed.payload) == ("d-1", "issues",
                                                                                   {"action": "labeled"})
    assert first.next_delivery("replica-a") is None, "held by the other replica"
    second.finish_delivery("d-1", "dispatched session ses_1")
    assert first.delivery_outcome("d-1") == ("done", "dispatched session ses_1")
    assert first.unfinished_deliveries() == 0


def test_replicas_racing_for_the_queue_process_every_delivery_exactly_once(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(4)]
    for number in range(60):
        stores[0].claim_delivery(f"d-{number:02d}", "issues", {"n": number})
    taken: list[list[str]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def replica(index: int) -> None:
        start.wait()
        while (pending := stores[index].next_delivery(f"replica-{index}")) is not None:
            taken[index].append(pending.id)
            stores[index].finish_delivery(pending.id, "done")

    threads = [threading.Thread(target=replica, args=(index,)) for index in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [delivery for ids in taken for delivery in ids]
    assert sorted(everything) == [f"d-{number:02d}" for number in range(60)], "each once, none forgotten"
    assert stores[1].unfinished_deliveries() == 0


def test_what_a_stopped_replica_held_goes_back_to_the_queue(open_store: OpenStore) -> None:
    store = open_store()
    for name in ("gone", "silent", "alive", "leaving", "stuck"):
        store.claim_delivery(f"held-by-{name}", "issues", {})
    # A replica of this machine whose process has ended; one elsewhere that stopped beating; one alive.
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    for name in ("alive", "silent", "leaving", "stuck"):
        assert not store.heartbeat(name), "a replica's first beat records it"
    with store._db.transaction() as tx:
        tx.execute(f"INSERT INTO replicas (id, host, pid, seen) VALUES ('gone', ?, ?, {store._db.now})",
                   (machine(), int(ended.stdout)))
        tx.execute("UPDATE replicas SET host = 'elsewhere' WHERE id = 'silent'")
    for name in ("gone", "silent", "alive", "leaving", "stuck"):
        assert store.next_delivery(name) is not None
    assert store.reclaim(stale_after=30) == 1, "only the replica whose process ended, so far"
    with store._db.transaction() as tx:  # the database's clock decides, not the replicas' own
        tx.execute("UPDATE replicas SET seen = seen - 60 WHERE id = 'silent'")
        tx.execute("UPDATE deliveries SET claimed_at = claimed_at - 3600 WHERE id = 'held-by-stuck'")
    assert store.heartbeat("alive") and store.heartbeat("stuck")
    assert store.reclaim(stale_after=30) == 2, "then the one silent for longer, and one held past its lease"
    store.leave("leaving")  # a replica leaves once it holds nothing; were it to hold something, it is freed
    assert store.reclaim(stale_after=30) == 1
    back = {store.next_delivery("alive").id for _ in range(4)}  # type: ignore[union-attr]
    assert back == {"held-by-gone", "held-by-silent", "held-by-leaving", "held-by-stuck"}
    assert store.next_delivery("alive") is None, "the live replica keeps what it holds"
    assert not store.heartbeat("silent"), "a replica taken for stopped learns it at its next beat"


def test_an_outcome_counts_only_from_the_replica_that_holds_the_delivery(open_store: OpenStore) -> None:
    store = open_store()
    store.claim_delivery("d-1", "issues", {})
    assert store.next_delivery("slow") is not None
    with store._db.transaction() as tx:
        tx.execute("UPDATE deliveries SET status = 'pending', claimed_by = NULL")  # taken for stopped
    assert store.next_delivery("fast") is not None
    assert store.finish_delivery("d-1", "dispatched session ses_1", "fast")
    assert not store.finish_delivery("d-1", "dispatched session ses_2", "slow"), "the late one records nothing"
    assert store.delivery_outcome("d-1") == ("done", "dispatched session ses_1")


def test_replicas_racing_on_one_target_start_exactly_one_session(open_store: OpenStore) -> None:
    """Checking for an active session and recording the new one are one transaction, even across
    connections (each worker here has its own, as replicas on one database would)."""
    stores = [open_store() for _ in range(8)]
    start = threading.Barrier(len(stores))
    outcomes: list[bool] = []

    def worker(index: int) -> None:
        start.wait()
        _, started = stores[index].start_session(repository=REPO, kind="issue", target="issue:7",
                                                 requester="maintainer", correlation_id=f"delivery-{index}",
                                                 active_since=0)
        outcomes.append(started)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]
    assert len(stores[0].sessions()) == 1


def test_sessions_are_found_by_id_correlation_run_and_title(open_store: OpenStore) -> None:
    store = open_store()
    session, started = store.start_session(repository=REPO, kind="issue", target="issue:7", requester="octocat",
                                           correlation_id="delivery-7", active_since=0)
    assert started and store.session(session.id) == session
    run_id = 2**40  # GitHub's run ids outgrew 32 bits long ago
    assert store.session_for_run(REPO, run_id, "fixloop issue #7 (delivery-7)") == session, "by the title"
    # Anyone can name a run of their own repository after this session: it is not taken for the session's.
    assert store.session_for_run("mallory/own", run_id, "fixloop issue #7 (delivery-7)") is None
    assert store.session_for_run(REPO, run_id, "fixloop issue #7 (delivery-7x)") is None
    store.update_session(session.id, status="dispatched", run_id=run_id, run_url="https://example/run")
    assert store.session_for_run("mallory/own", run_id, "") is None
    found = store.session_for_run(REPO, run_id, "")
    assert found is not None and found.run_id == run_id and found.status == "dispatched"
    assert store.session_for_correlation("delivery-7") == found
    assert [s.id for s in store.sessions(REPO)] == [session.id] and store.sessions("octo/other") == []


def test_automatic_ci_sessions_are_capped_per_branch_by_replicas_racing(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(6)]
    start = threading.Barrier(len(stores))
    counted: list[bool] = []

    def worker(store: Store) -> None:
        start.wait()
        counted.append(store.ci_attempt(REPO, "main", cap=2))

    threads = [threading.Thread(target=worker, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counted) == [False] * 4 + [True] * 2
    assert not stores[0].ci_attempt(REPO, "main", cap=0) and stores[0].ci_attempt(REPO, "feature", cap=1)
    stores[0].ci_passed(REPO, "main")
    assert stores[1].ci_attempt(REPO, "main", cap=2), "a green run starts the count afresh"


def test_installations_keep_their_repositories(open_store: OpenStore) -> None:
    store = open_store()
    assert store.record_installation(9, "octo", added=["octo/a", "octo/b"], removed=[], active=True) == [
        "octo/a", "octo/b"]
    assert store.record_installation(9, "octo", added=["octo/c"], removed=["octo/a"], active=True) == [
        "octo/b", "octo/c"]
    assert store.installation_repositories(9) == ["octo/b", "octo/c"]
    store.record_installation(9, "octo", added=[], removed=[], active=False)
    assert store.installation_repositories(9) is None and store.installation_repositories(10) is None


def test_migrations_run_once_whoever_opens_the_database_first(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(3)]
    rows = stores[0]._db.read("SELECT version FROM schema_version ORDER BY version")
    assert [row["version"] for row in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_a_database_of_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """Today's users keep their SQLite file: its deliveries, sessions and caps survive the upgrade."""
    path = tmp_path / "fixloop.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(MIGRATIONS[0])
        old.execute("INSERT INTO deliveries (id, event, received, status, payload) VALUES "
                    "('cut-short', 'issues', 1.0, 'pending', '{}')")
        old.execute("INSERT INTO sessions (id, repository, kind, target, status, created, updated) VALUES "
                    "('ses_old', 'octo/widgets', 'issue', 'issue:1', 'dispatched', 1.0, 1.0)")
    store = Store(path)
    try:
        assert store.session("ses_old") is not None
        pending = store.next_delivery("replica")
        assert pending is not None and pending.id == "cut-short", "a delivery left pending is still processed"
    finally:
        store.close()


def test_fixloop_db_takes_a_postgres_url_and_a_bad_one_is_a_clear_error(github_app_key, tmp_path: Path) -> None:
    environ = {"APP_ID": "12", "PRIVATE_KEY": github_app_key.private_pem, "WEBHOOK_SECRET": "s"}
    url = "postgresql://fixloop:hunter2@127.0.0.1:1/fixloop"
    assert AppSettings.from_environ({**environ, "FIXLOOP_DB": url}).database == url
    assert AppSettings.from_environ(environ).database == Path("fixloop.sqlite3"), "unset: the embedded SQLite"
    with pytest.raises(ConfigError) as refused:
        Store(url)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/fixloop" in str(refused.value)
    for leaky in ("postgresql://127.0.0.1:1/x?user=postgres&password=hunter2", "postgresql://u:hunter2@[bad/db",
                  "postgresql://u:hunt@er2@127.0.0.1:1/db"):
        with pytest.raises(ConfigError) as refused:
            Store(leaky)
        assert "hunter2" not in str(refused.value) and "er2@" not in str(refused.value), str(refused.value)


def test_a_replica_reconnects_after_postgres_dropped_its_connection(postgres_url: str) -> None:
    """A failover or an idle timeout ends the server side of the connection: the call that finds out fails,
    the next one gets a new connection (the replica does not stay broken)."""
    import psycopg

    store = Store(postgres_url)
    try:
        store.claim_delivery("before", "issues", {})
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
        with pytest.raises(psycopg.OperationalError):
            store.unfinished_deliveries()
        assert store.claim_delivery("after", "issues", {})
        assert store.unfinished_deliveries() == 2
    finally:
        store.close()
