"""Webhook throughput and latency of a running `fixloop serve`, on loopback.

Starts the fake GitHub (tests/fakes/github, OpenAPI-checked) and `fixloop serve` as a separate
process, then sends signed `issues.labeled` deliveries (each a real trigger that ends in a
workflow dispatch) from concurrent clients. Reports verified deliveries per second, p50/p99 of
the webhook's answer, and how long the background dispatches took to drain.

Baseline, in the same run: "bare", a minimal ASGI endpoint on the same uvicorn that only checks
the HMAC signature and answers 202: the floor for any verifying webhook receiver.

    python benchmarks/webhook_load.py [--deliveries 400] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.github.events import signature_for, verify_signature
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import generate_app_key
from tests.fakes.live_server import LiveServer, free_port, wait_healthy
from tests.fixtures import labeled_issue

REPO = "octo/calc"
SECRET = "benchmark-webhook-secret"
APP_ID = 4242


def bare_app():  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = dict(scope["headers"])
        ok = verify_signature(SECRET, body, headers.get(b"x-hub-signature-256", b"").decode())
        await send({"type": "http.response.start", "status": 202 if ok else 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def labeled_bodies(count: int, installation: int) -> list[bytes]:
    """Signed-to-be bodies of real `issues.labeled` payloads, one issue each (no target is busy)."""
    return [labeled_issue(number, installation=installation, repo=REPO) for number in range(1, count + 1)]


def fire(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    session_local = threading.local()

    def send(body: bytes) -> float:
        session = getattr(session_local, "session", None) or requests.Session()
        session_local.session = session
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-Hub-Signature-256": signature_for(SECRET, body), "Content-Type": "application/json"}
        started = time.perf_counter()
        response = session.post(f"{url}/webhook", data=body, headers=headers, timeout=30)
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.text
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(send, bodies))
    return time.perf_counter() - started, latencies


def summary(total: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"deliveries_per_second": round(len(latencies) / total, 1),
            "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    app_key = generate_app_key()
    private_pem, public_pem = app_key.private_pem, app_key.public_pem
    with FakeGitHub(app_id=APP_ID, app_public_key=public_pem, supports_run_details=True) as github, \
            tempfile.TemporaryDirectory() as scratch:
        github.add_repo(REPO, files={".github/fixloop.yml": "validate: [python -m pytest -q]\n"})
        github.add_workflow(REPO, "fixloop.yml")
        installation = github.add_installation("octo", repositories=[REPO])
        github.set_permission(REPO, "maintainer", "write")
        for number in range(1, args.deliveries + 1):
            github.add_issue(REPO, f"issue {number}", "body")
        bodies = labeled_bodies(args.deliveries, installation)

        port = free_port()
        env = {**os.environ, "APP_ID": str(APP_ID), "PRIVATE_KEY": private_pem, "WEBHOOK_SECRET": SECRET,
               "GITHUB_API_URL": github.url, "FIXLOOP_DB": str(Path(scratch) / "fixloop.sqlite3"),
               "FIXLOOP_API_TOKEN": "bench"}
        server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env, cwd=ROOT,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, server)
            total, latencies = fire(url, bodies, args.concurrency)
            drain_started = time.perf_counter()
            while len(github.dispatches(REPO)) < args.deliveries:
                if time.perf_counter() - drain_started > 300:
                    raise SystemExit(f"only {len(github.dispatches(REPO))} dispatches after 300 s")
                time.sleep(0.05)
            drained = time.perf_counter() - drain_started
        finally:
            server.terminate()
            server.wait(timeout=30)
        dispatched = len(github.dispatches(REPO))

    with LiveServer(bare_app()) as bare:
        bare_total, bare_latencies = fire(bare.url, bodies, args.concurrency)

    result = {
        "deliveries": args.deliveries, "concurrency": args.concurrency,
        "fixloop": {**summary(total, latencies), "dispatched": dispatched,
                    "dispatches_drained_after_last_answer_s": round(drained, 2),
                    "dispatches_per_second": round(dispatched / (total + drained), 1)},
        "bare": summary(bare_total, bare_latencies),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    f, b = result["fixloop"], result["bare"]
    print(f"webhook load: {args.deliveries} signed issues.labeled deliveries, "
          f"{args.concurrency} concurrent clients, loopback")
    print(f"  fixloop serve : {f['deliveries_per_second']:>7} deliveries/s   "
          f"p50 {f['p50_ms']} ms   p99 {f['p99_ms']} ms")
    print(f"  bare baseline : {b['deliveries_per_second']:>7} deliveries/s   "
          f"p50 {b['p50_ms']} ms   p99 {b['p99_ms']} ms")
    print(f"  dispatches    : {f['dispatched']} workflow runs dispatched, {f['dispatches_per_second']}/s end to end "
          f"(drained {f['dispatches_drained_after_last_answer_s']} s after the last answer)")


if __name__ == "__main__":
    main()
