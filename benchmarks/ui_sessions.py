"""Server time of the web UI's session list, with 10,000 sessions in the App's database.

Fills an SQLite store (the App's default) with `--sessions` sessions across 20 repositories, starts
the App (uvicorn on loopback, web UI on, the fake GitHub for signing in), signs in as a person who
can see every repository, and times each page `--repeats` times from the request to the last byte:

- `api first 100` (baseline): `GET /api/sessions`, the JSON API's newest 100 sessions;
- `ui first 100`: the list page as people see it (the newest 100, with filters and paging);
- `ui filtered`: the same for one repository and one requester;
- `ui all 10,000`: every session on one page (`?limit=10000`).

Reports, in milliseconds, the median and 95th percentile of the server's time (its `Server-Timing`
header: from the request to the answer's headers, the page rendered; the JSON API has none) and of the
client's wait (which adds loopback HTTP and reading the body). The bar: the list renders 10,000 sessions
in under 300 ms of server time.

    python benchmarks/ui_sessions.py [--sessions 10000] [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app.server import Service, create_app
from bot.app.settings import AppSettings
from bot.app.store import Store
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import LOOPBACK_POLICY, generate_app_key
from tests.fakes.live_server import LiveServer, free_port
from tests.web import sign_in

APP_ID = 4242
API_TOKEN = "bench-api-token"


def fill(store: Store, count: int, repositories: list[str]) -> None:
    now = time.time()
    with store._db.transaction() as tx:  # one transaction: filling is not what is measured
        for n in range(count):
            repository = repositories[n % len(repositories)]
            created = now - (count - n) * 60
            tx.execute("INSERT INTO sessions (id, repository, kind, target, requester, correlation_id, status, "
                       "conclusion, created, updated, title, ending, ending_reason, cost_usd, tokens, iterations, "
                       "ended) VALUES (?, ?, 'issue', ?, ?, ?, 'completed', 'success', ?, ?, ?, 'validated', "
                       "'validation passed', ?, ?, 2, ?)",
                       (f"ses_{n:016x}", repository, f"issue:{n}", f"person{n % 7}", f"bench-{n}", created,
                        created + 300, f"Fix the bug of issue {n} <with> 'markup' & more", 0.01 * (n % 50),
                        10_000 + n, created + 300))


def timed(client: requests.Session, url: str, repeats: int, **headers: str) -> dict[str, Any]:
    """Server time (the App's own Server-Timing, where it gives one) and the time the client waited."""
    client.get(url, headers=headers, timeout=60).raise_for_status()  # warm: templates compiled, caches filled
    waited, server = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = client.get(url, headers=headers, timeout=60)
        answer.raise_for_status()
        waited.append((time.perf_counter() - started) * 1000)
        timing = answer.headers.get("server-timing", "")
        if "dur=" in timing:
            server.append(float(timing.split("dur=")[1]))

    def summary(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        values.sort()
        return {"median_ms": round(statistics.median(values), 1),
                "p95_ms": round(values[int(0.95 * (len(values) - 1))], 1)}

    return {"server": summary(server), "client": summary(waited), "bytes": len(answer.content)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    key = generate_app_key()
    repositories = [f"octo/svc-{n:02d}" for n in range(20)]
    with FakeGitHub(app_id=APP_ID, app_public_key=key.public_pem) as github, \
            tempfile.TemporaryDirectory(prefix="fixloop-ui-bench-") as scratch:
        for repository in repositories:
            github.add_repo(repository)
            github.set_permission(repository, "alice", "write")
        github.add_installation("octo")
        port = free_port()
        settings = AppSettings(app_id=str(APP_ID), private_key=key.private_pem, webhook_secret="bench",
                               api_url=github.url, database=Path(scratch) / "fixloop.sqlite3", api_token=API_TOKEN,
                               app_slug="fixloop", public_url=f"http://127.0.0.1:{port}",
                               client_id=github.app.client_id, client_secret=github.app_client_secret, ui=True)
        filling = Store(settings.database)
        fill(filling, args.sessions, repositories)
        filling.close()
        store = Store(settings.database)  # the App started on a database that holds them (its statistics read)
        service = Service(settings, store=store, policy=LOOPBACK_POLICY)
        with LiveServer(create_app(settings, service), port=port) as live:
            alice = sign_in(live.url, github, "alice")
            results: dict[str, Any] = {
                "api first 100": timed(requests.Session(), f"{live.url}/api/sessions", args.repeats,
                                       Authorization=f"Bearer {API_TOKEN}"),
                "ui first 100": timed(alice, f"{live.url}/ui/", args.repeats),
                "ui filtered": timed(alice, f"{live.url}/ui/?repository=octo/svc-03&requester=person3", args.repeats),
                f"ui all {args.sessions:,}": timed(alice, f"{live.url}/ui/?limit={args.sessions}",
                                                   max(3, args.repeats // 4)),
            }
        store.close()
    if args.json:
        print(json.dumps({"sessions": args.sessions, "results": results}, indent=2))
    else:
        print(f"{args.sessions:,} sessions in the store (SQLite)")
        print(f"  {'page':<18} {'server median':>14} {'p95':>8}   {'client median':>14} {'p95':>8}   {'bytes':>10}")
        for name, result in results.items():
            server = result["server"] or {"median_ms": float("nan"), "p95_ms": float("nan")}
            client = result["client"]
            print(f"  {name:<18} {server['median_ms']:>11.1f} ms {server['p95_ms']:>5.1f} ms   "
                  f"{client['median_ms']:>11.1f} ms {client['p95_ms']:>5.1f} ms   {result['bytes']:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
