"""`fixloop serve` killed in the middle of a burst of deliveries, then restarted on the same database.

The server is a real subprocess (the `fixloop serve` command) against the loopback fake GitHub;
clients send signed `issues.labeled` deliveries (one issue each, so every one must end in exactly
one workflow dispatch) from several threads. The server is stopped while requests are in flight,
restarted on the same database and port, and the clients then do what GitHub's redelivery does:
send again, with the same `X-GitHub-Delivery`, every delivery that got no 2xx answer, plus a
sample of answered ones (duplicates). Nothing may be lost and nothing dispatched twice.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from bot.app.server import Service
from bot.app.settings import AppSettings
from bot.app.store import Store
from bot.github.events import signature_for
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import LOOPBACK_POLICY, TEST_APP_ID, AppKey
from tests.fakes.live_server import free_port, wait_healthy
from tests.fixtures import labeled_issue

ROOT = Path(__file__).resolve().parents[1]
REPO = "octo/calc"
SECRET = "restart-webhook-secret"
DELIVERIES = 120
CLIENTS = 8
KILL_AFTER = 45  # answered deliveries before the signal: well inside the burst
DUPLICATE_EVERY = 5  # every fifth answered delivery is sent again after the restart
# The kill can cut off a request of the server's to the fake GitHub between its headers and its body;
# the fake (unlike GitHub, which drops such a request) still answers it, and records a violation.
TRUNCATED_BY_KILL = re.compile(r"^POST \S+: request: (MissingRequiredRequestBody|body is not JSON)")
# `fixloop serve` itself, with PyGithub's pacing (1 s between writes, meant for api.github.com) and
# retry backoff off, as every test against the loopback fake does; otherwise 200 dispatches take minutes.
SERVE = ("import sys; from bot.cli import main; from bot.github.client import RequestPolicy; "
         "sys.exit(main(sys.argv[1:], policy=RequestPolicy(throttle=False, backoff=0)))")


@dataclass(frozen=True)
class Delivery:
    id: str
    number: int  # the issue it labels
    body: bytes

    def headers(self) -> dict[str, str]:
        return {"X-GitHub-Event": "issues", "X-GitHub-Delivery": self.id, "Content-Type": "application/json",
                "X-Hub-Signature-256": signature_for(SECRET, self.body)}


@dataclass
class Burst:
    """What the clients saw: answers by delivery id, deliveries that got none, requests in flight."""

    answered: dict[str, int] = field(default_factory=dict)
    unanswered: list[Delivery] = field(default_factory=list)
    in_flight: int = 0
    in_flight_at_signal: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server:
    """`fixloop serve` as a subprocess; start() again after it stopped restarts it on the same DB and port."""

    def __init__(self, github: FakeGitHub, key: AppKey, scratch: Path, database: str | None = None) -> None:
        """`database`: a PostgreSQL URL (default: an SQLite file in `scratch`)."""
        scratch.mkdir(parents=True, exist_ok=True)
        self.database = database or scratch / "fixloop.sqlite3"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = scratch / "serve.log"
        self.env = {**os.environ, "APP_ID": str(TEST_APP_ID), "PRIVATE_KEY": key.private_pem,
                    "WEBHOOK_SECRET": SECRET, "GITHUB_API_URL": github.url, "FIXLOOP_DB": str(self.database),
                    "FIXLOOP_API_TOKEN": "restart-api-token", "APP_SLUG": "fixloop"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--port", str(self.port)],
                                            env=self.env, cwd=ROOT, stdout=log, stderr=log)
        wait_healthy(self.url, self.process)

    def exited(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def db(self, query: str) -> list[tuple[object, ...]]:
        if isinstance(self.database, str):
            with psycopg.connect(self.database) as connection:
                return list(connection.execute(query).fetchall())
        with sqlite3.connect(self.database) as db:  # WAL: readable while the server writes
            return db.execute(query).fetchall()


@pytest.fixture
def github(make_fake_github: Callable[..., FakeGitHub]) -> FakeGitHub:
    github = make_fake_github(supports_run_details=True)
    github.add_repo(REPO, files={".github/fixloop.yml": "validate: [python -m pytest -q]\n"})
    github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
    github.add_installation("octo", repositories=[REPO])
    github.set_permission(REPO, "maintainer", "write")
    for number in range(1, DELIVERIES + 1):
        github.add_issue(REPO, f"issue {number}", "body")
    return github


@pytest.fixture
def server(github: FakeGitHub, github_app_key: AppKey, tmp_path: Path) -> Iterator[Server]:
    server = Server(github, github_app_key, tmp_path)
    yield server
    server.kill()


@pytest.fixture
def replicas(github_app_key: AppKey, tmp_path: Path) -> Iterator[Callable[..., list[Server]]]:
    """`replicas(github, database, n)`: n `fixloop serve` processes on one database, killed after the test."""
    made: list[Server] = []

    def make(github: FakeGitHub, database: str, count: int = 2) -> list[Server]:
        made.extend(Server(github, github_app_key, tmp_path / f"replica-{len(made) + n}", database=database)
                    for n in range(count))
        return made[-count:]

    yield make
    for replica in made:
        replica.kill()


def deliveries(installation: int) -> list[Delivery]:
    return [Delivery(f"burst-{number:04d}", number, labeled_issue(number, installation=installation, repo=REPO))
            for number in range(1, DELIVERIES + 1)]


def send(url: str | list[str], batch: list[Delivery], burst: Burst) -> None:
    """Send every delivery once from CLIENTS threads, keeping connections alive as GitHub does (to the
    replicas `url` in turn, as a load balancer would)."""
    local = threading.local()
    urls = [url] if isinstance(url, str) else url

    def one(delivery: Delivery) -> None:
        url = urls[delivery.number % len(urls)]
        if not hasattr(local, "session"):
            local.session = requests.Session()
        with burst.lock:
            burst.in_flight += 1
        try:
            status = local.session.post(f"{url}/webhook", data=delivery.body, headers=delivery.headers(),
                                        timeout=10).status_code
        except requests.RequestException:  # cut off by the signal, or refused while the server is down
            local.session = requests.Session()
            status = 0
        with burst.lock:
            burst.in_flight -= 1
            if 200 <= status < 300:
                burst.answered[delivery.id] = status
            else:
                burst.unanswered.append(delivery)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, batch))


def stop_mid_burst(server: Server, burst: Burst, how: signal.Signals) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 30
        while len(burst.answered) < KILL_AFTER:
            if time.monotonic() > deadline:  # the burst never got that far: the test fails on in_flight_at_signal
                return
            time.sleep(0.001)
        with burst.lock:  # no client can start or finish a request while the signal is sent
            burst.in_flight_at_signal = burst.in_flight
            assert server.process is not None
            server.process.send_signal(how)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def wait_until_nothing_pending(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while server.db("SELECT id FROM deliveries WHERE status IN ('pending', 'processing')"):
        assert time.monotonic() < deadline, "deliveries still pending"
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_restart_mid_burst_loses_no_delivery_and_dispatches_none_twice(github: FakeGitHub, server: Server,
                                                                          how: signal.Signals) -> None:
    batch = deliveries(github.installation_id("octo"))
    server.start()
    assert f"fixloop serve: listening on {server.url}" in server.log.read_text(), "serve says where it listens"
    burst = Burst()
    watcher = stop_mid_burst(server, burst, how)
    send(server.url, batch, burst)
    watcher.join(timeout=10)
    exit_code = server.exited()
    assert burst.in_flight_at_signal > 0, "the signal came while requests were in flight"
    assert KILL_AFTER <= len(burst.answered) < DELIVERIES and burst.unanswered
    assert all(status == 202 for status in burst.answered.values())

    pending = server.db("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'processing')")[0][0]
    held = server.db("SELECT COUNT(*) FROM deliveries WHERE status = 'processing'")[0][0]
    dispatched_before = len(github.dispatches(REPO))
    assert exit_code == -how  # uvicorn, after a graceful shutdown, ends by the signal it caught
    if how == signal.SIGKILL:
        assert pending > 0, "the kill left acknowledged deliveries for the restart to finish"
    else:
        assert held == 0, "a graceful stop hands back what it did not finish"

    server.start()  # same database, same port
    resent: dict[str, int] = {}
    duplicates = [d for d in batch if d.id in burst.answered][::DUPLICATE_EVERY]
    with requests.Session() as session:
        for delivery in [*burst.unanswered, *duplicates]:
            response = session.post(f"{server.url}/webhook", data=delivery.body, headers=delivery.headers(), timeout=10)
            resent[delivery.id] = response.status_code
            if delivery in duplicates:
                assert response.json() == {"duplicate": delivery.id}
    assert all(status in (200, 202) for status in resent.values()), collections.Counter(resent.values())
    wait_until_nothing_pending(server)

    dispatches = github.dispatches(REPO)
    by_correlation = collections.Counter(d.inputs["correlation_id"] for d in dispatches)
    by_issue = collections.Counter(d.inputs["target"] for d in dispatches)
    assert [c for c, n in by_correlation.items() if n > 1] == [] and [i for i, n in by_issue.items() if n > 1] == []
    assert set(by_correlation) == {d.id for d in batch}, "every delivery dispatched exactly once"
    assert len(dispatches) == DELIVERIES
    sessions = server.db("SELECT correlation_id, status, run_id FROM sessions")
    assert len(sessions) == DELIVERIES and {s[0] for s in sessions} == {d.id for d in batch}
    assert {s[1] for s in sessions} == {"dispatched"} and all(s[2] for s in sessions), "no session left dispatching"
    assert server.db("SELECT COUNT(*), MIN(status), MAX(status) FROM deliveries") == [(DELIVERIES, "done", "done")]
    health = requests.get(f"{server.url}/healthz", timeout=5).json()
    assert health["queued"] == 0
    listed = requests.get(f"{server.url}/api/sessions", headers={"Authorization": "Bearer restart-api-token"},
                          timeout=5).json()
    assert listed and {s["status"] for s in listed} == {"dispatched"}
    acknowledgements = collections.Counter(c.issue_number for n in range(1, DELIVERIES + 1)
                                           for c in github.comments(REPO, n) if "fixloop is on it" in c.body)
    assert max(acknowledgements.values()) == 1, "no issue was told twice"
    unexplained = ([v for v in github.take_violations() if not TRUNCATED_BY_KILL.search(v)]
                   if how == signal.SIGKILL else [])
    assert unexplained == [], "the only requests the fake may find malformed are those the kill cut off"
    redone = server.db("SELECT COUNT(*) FROM deliveries WHERE outcome LIKE '%already has a session%'")[0][0]
    resumed = server.db("SELECT COUNT(*) FROM deliveries WHERE outcome LIKE '%found after a restart%'")[0][0]
    redispatched = server.db("SELECT COUNT(*) FROM deliveries WHERE outcome LIKE '% (after a restart)'")[0][0]
    print(f"{how.name}: {len(burst.answered)} answered and {burst.in_flight_at_signal} in flight at the signal, "
          f"{len(burst.unanswered)} unanswered, {pending} pending after the stop, {dispatched_before} dispatched "
          f"before the restart; re-sent {len(resent)} ({collections.Counter(resent.values())}); "
          f"{len(dispatches)} dispatches, {sum(acknowledgements.values())} acknowledgements; after the restart "
          f"{redone} already dispatched, {resumed} runs found for sessions left dispatching, {redispatched} "
          f"dispatched that never reached GitHub")


@pytest.mark.parametrize("reached_github", [False, True], ids=["dispatch-lost", "dispatch-arrived"])
def test_a_session_stopped_while_dispatching_gets_exactly_one_run(github: FakeGitHub, github_app_key: AppKey,
                                                                 tmp_path: Path, reached_github: bool) -> None:
    """The narrow window the burst only hits sometimes, made certain: the session is recorded, then the
    server dies before it hears back from its dispatch, which GitHub may or may not have received."""
    (delivery,) = deliveries(github.installation_id("octo"))[6:7]
    store = Store(tmp_path / "crashed.sqlite3")
    store.claim_delivery(delivery.id, "issues", json.loads(delivery.body))
    store.start_session(repository=REPO, kind="issue", target=f"issue:{delivery.number}", requester="maintainer",
                        correlation_id=delivery.id, active_since=0)
    if reached_github:
        run_id = github.add_workflow_run(REPO, "fixloop.yml", status="queued", conclusion=None,
                                         event="workflow_dispatch", display_title=f"fixloop issue #7 ({delivery.id})")
    settings = AppSettings(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, webhook_secret=SECRET,
                           api_url=github.url, database=tmp_path / "crashed.sqlite3", app_slug="fixloop")
    service = Service(settings, store=store, policy=LOOPBACK_POLICY, resume_pause=0)
    service.start()  # what `fixloop serve` does at start-up with the deliveries left pending
    service.drain()
    service.stop()

    (session,) = store.sessions()
    dispatches = github.dispatches(REPO)
    if reached_github:
        assert dispatches == [] and session.run_id == run_id, "the run GitHub already had is adopted, not doubled"
    else:
        assert ([d.inputs["correlation_id"] for d in dispatches] == [delivery.id]
                and session.run_id == dispatches[0].run_id)
    assert session.status == "dispatched" and store.unfinished_deliveries() == 0
    (acknowledgement,) = github.comments(REPO, delivery.number)
    assert acknowledgement.body.startswith(f"fixloop is on it: {session.run_url}")


def test_a_port_in_use_is_one_line_and_exit_2(github: FakeGitHub, github_app_key: AppKey, tmp_path: Path) -> None:
    server = Server(github, github_app_key, tmp_path)
    with socket.create_server(("127.0.0.1", server.port)):
        result = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", str(server.port)], env=server.env,
                                cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"fixloop: cannot listen on 127.0.0.1:{server.port}: Address already in use "
                                     "(another server on that port, or an address this machine does not have? "
                                     "Choose --host and --port)")


def test_two_replicas_on_postgres_dispatch_every_delivery_once_when_one_is_killed(
        github: FakeGitHub, replicas: Callable[..., list[Server]], postgres_url: str) -> None:
    """Two `fixloop serve` processes on one PostgreSQL, deliveries spread over both; one is killed once it has
    processed a few. GitHub redelivers what got no answer to the survivor, which also takes over what the
    killed one held: every delivery is processed, and every issue gets exactly one run."""
    batch = deliveries(github.installation_id("octo"))
    doomed, survivor = replicas(github, postgres_url)
    for replica in (doomed, survivor):
        replica.start()
    assert doomed.process is not None
    mine = f"claimed_by LIKE '%:{doomed.process.pid}:%'"

    def kill_once_it_has_worked() -> None:
        deadline = time.monotonic() + 60
        while doomed.db(f"SELECT COUNT(*) FROM deliveries WHERE status = 'done' AND {mine}")[0][0] < 5:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        doomed.kill()

    killer = threading.Thread(target=kill_once_it_has_worked, daemon=True)
    killer.start()
    burst = Burst()
    send([doomed.url, survivor.url], batch, burst)
    killer.join(timeout=70)
    assert doomed.exited() == -signal.SIGKILL
    done_by_doomed = survivor.db(f"SELECT COUNT(*) FROM deliveries WHERE status = 'done' AND {mine}")[0][0]
    held = survivor.db(f"SELECT COUNT(*) FROM deliveries WHERE status = 'processing' AND {mine}")[0][0]
    with requests.Session() as session:
        for delivery in burst.unanswered:
            response = session.post(f"{survivor.url}/webhook", data=delivery.body, headers=delivery.headers(),
                                    timeout=10)
            assert response.status_code in (200, 202)
    wait_until_nothing_pending(survivor)

    dispatches = github.dispatches(REPO)
    by_correlation = collections.Counter(d.inputs["correlation_id"] for d in dispatches)
    assert [c for c, n in by_correlation.items() if n > 1] == [], "nothing dispatched twice"
    assert set(by_correlation) == {d.id for d in batch} and len(dispatches) == DELIVERIES, "none forgotten"
    sessions = survivor.db("SELECT status, run_id FROM sessions")
    assert len(sessions) == DELIVERIES and {s[0] for s in sessions} == {"dispatched"} and all(s[1] for s in sessions)
    assert survivor.db("SELECT COUNT(*), MIN(status), MAX(status) FROM deliveries") == [(DELIVERIES, "done", "done")]
    assert done_by_doomed >= 5 and survivor.db(f"SELECT COUNT(*) FROM deliveries WHERE NOT ({mine})")[0][0] > 0
    print(f"{done_by_doomed} processed by the killed replica, {held} held by it at the kill and taken over, "
          f"{len(burst.unanswered)} redelivered to the survivor")
