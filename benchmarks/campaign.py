"""Campaign fan-out of `fixloop serve`: dispatches per second, and the time from `start` to the last
dispatch, for one campaign over many repositories in several installations.

Starts the fake GitHub (tests/fakes/github, OpenAPI-checked) with an enforced write rate per
installation (a faster write gets GitHub's 403 for its secondary rate limit), then the App as
separate `fixloop serve` processes, and starts one campaign through the API (`concurrency` above
the number of targets, so the fan-out itself is measured). Runs:

- `sqlite, 1 replica`: the embedded default, the baseline;
- `postgres, 1 replica` and `postgres, 2 replicas`: one PostgreSQL (started here, as the tests do).

Each run reports dispatches per second (first to last dispatch), seconds from the start request to
the last dispatch, writes refused by the rate limit, and whether every target was dispatched
exactly once.

    python benchmarks/campaign.py [--targets 500] [--installations 10] [--interval 0.1] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import postgres
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import generate_app_key
from tests.fakes.live_server import free_port, wait_healthy

SECRET = "benchmark-webhook-secret"
TOKEN = "bench"
APP_ID = 4242
# The App's pace is set a little above the enforced interval: a claim and its write are milliseconds apart.
PACE_MARGIN = 1.2


def run(mode: str, replicas: int, database: str, *, targets: int, installations: int, interval: float,
        private_pem: str, public_pem: str) -> dict[str, Any]:
    with FakeGitHub(app_id=APP_ID, app_public_key=public_pem, supports_run_details=True,
                    installation_write_interval=interval) as github:
        repositories = [f"org-{n % installations}/svc-{n:04d}" for n in range(targets)]
        for repository in repositories:
            github.add_repo(repository, files={".github/fixloop.yml": "validate: [make test]\n"})
            github.add_workflow(repository, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
        github.add_repo("platform/tracking")
        times: list[float] = []
        lock = threading.Lock()

        def dispatched(dispatch: Any, run: Any) -> None:
            with lock:
                times.append(time.perf_counter())

        github.on_dispatch(dispatched)
        servers, urls = [], []
        try:
            for _ in range(replicas):
                port = free_port()
                env = {**os.environ, "APP_ID": str(APP_ID), "PRIVATE_KEY": private_pem, "WEBHOOK_SECRET": SECRET,
                       "GITHUB_API_URL": github.url, "FIXLOOP_DB": database, "FIXLOOP_API_TOKEN": TOKEN,
                       "APP_SLUG": "fixloop", "FIXLOOP_CAMPAIGN_PACE": str(interval * PACE_MARGIN)}
                servers.append(subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env,
                                                cwd=ROOT, stderr=subprocess.DEVNULL))
                urls.append(f"http://127.0.0.1:{port}")
                wait_healthy(urls[-1], servers[-1])
            listed = ", ".join(repositories)
            campaign = (f"name: bench\ninstructions: Upgrade.\ntracking: platform/tracking\nconcurrency: 1000\n"
                        f"targets:\n  repositories: [{listed}]\n")
            started = time.perf_counter()
            answer = requests.post(f"{urls[0]}/api/campaigns", json={"file": campaign}, timeout=300,
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            answered = time.perf_counter()
            if answer.status_code != 201:
                raise SystemExit(f"{mode}: the campaign was refused: {answer.text}")
            while len(times) < targets:
                if time.perf_counter() - answered > 600:
                    raise SystemExit(f"{mode}: only {len(times)} of {targets} dispatched after 600 s")
                time.sleep(0.02)
            last = max(times)
            per_target = collections.Counter(repo for repo in repositories for _ in github.dispatches(repo))
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)
        return {"mode": mode, "replicas": replicas, "targets": targets,
                "dispatches_per_second": round(targets / (last - min(times)), 1) if last > min(times) else None,
                "start_request_s": round(answered - started, 2), "start_to_last_dispatch_s": round(last - started, 2),
                "rate_limited_writes": github.rate_limited,
                "each_target_once": sorted(per_target.values()) == [1] * targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--installations", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds the fake GitHub enforces between two writes of one installation "
                             f"(the App's FIXLOOP_CAMPAIGN_PACE is set to {PACE_MARGIN} times it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    key = generate_app_key()
    options = {"targets": args.targets, "installations": args.installations, "interval": args.interval,
               "private_pem": key.private_pem, "public_pem": key.public_pem}
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        results.append(run("sqlite", 1, str(Path(scratch) / "fixloop.sqlite3"), **options))
    try:
        cluster = postgres.start()
    except FileNotFoundError as missing:
        print(f"PostgreSQL runs skipped: {missing}", file=sys.stderr)
    else:
        try:
            results.append(run("postgres", 1, cluster.database(), **options))
            results.append(run("postgres", 2, cluster.database(), **options))
        finally:
            cluster.stop()
    if args.json:
        print(json.dumps({"installations": args.installations, "interval_s": args.interval, "runs": results},
                         indent=2))
        return
    floor = args.targets / args.installations * args.interval * PACE_MARGIN
    print(f"campaign fan-out: {args.targets} targets in {args.installations} installations, the fake GitHub "
          f"refusing writes of one installation closer than {args.interval} s (so at least {floor:.1f} s)")
    for result in results:
        print(f"  {result['mode']:>8}, {result['replicas']} replica(s): {result['dispatches_per_second']} "
              "dispatches/s, "
              f"last dispatch {result['start_to_last_dispatch_s']} s after start (the start request took "
              f"{result['start_request_s']} s), {result['rate_limited_writes']} writes refused, each target once: "
              f"{result['each_target_once']}")


if __name__ == "__main__":
    main()
