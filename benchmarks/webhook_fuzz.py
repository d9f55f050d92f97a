"""Fuzz a running `fixloop serve` with random webhook requests, on loopback.

Starts the fake GitHub (tests/fakes/github, OpenAPI-checked) seeded with one repository,
installation, workflow and `.github/fixloop.yml`, and `fixloop serve` as a separate process, then
sends seeded random requests from concurrent clients:

- valid signatures over random or mutated JSON built from the real payloads in
  tests/fixtures/webhooks (keys deleted, types changed, huge strings, unicode, nulls, nested junk,
  truncated JSON, the wrong event header for the payload, unknown events and actions, comment
  bodies with odd `/fixloop` commands),
- wrong or missing signatures, missing or odd headers,
- a few oversized bodies (a declared Content-Length over 25 MB, and chunked bodies over 25 MB),
- duplicate delivery ids.

Counts the answers by status. At the end checks that the server still answers /healthz, that its
worker queue drains (and no delivery is left pending in its database after a graceful stop), and
that its stderr holds no traceback of an unhandled crash. Processing errors that the workers
handle and log (`"delivery failed"` with `"exc"`) are counted and reported, not failures.

Exits 1 on any 5xx, crash, lost health or undrained queue.

    python benchmarks/webhook_fuzz.py [--requests 10000] [--concurrency 8] [--seed 1] [--max-seconds 240] [--json]
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.github.events import signature_for
from tests.fixtures import WEBHOOKS, load_payload

REPO = "octo/calc"
SECRET = "fuzz-webhook-secret"
APP_ID = 4242
CONFIG = "validate: [python -m pytest -q]\nci: {auto: true, max_sessions_per_branch: 2}\n"
MAX_BODY = 25 * 1024 * 1024
KNOWN_EVENTS = ("issues", "issue_comment", "pull_request_review_comment", "pull_request", "workflow_run",
                "check_suite", "check_run", "installation", "installation_repositories", "workflow_dispatch", "ping")
ODD_EVENTS = ("star", "push", "", "ISSUES", "unknown", "x" * 300, "issues\tx", "pull_request_review",
              "ünïcödé", "../../etc/passwd", "issue_comment,issues")
ACTIONS = ("labeled", "created", "completed", "opened", "edited", "requested_action", "deleted", "unlabeled",
           "rerequested", "", "LABELED", None, 7, [], {"a": 1}, "x" * 1000, "créé")
VERBS = ("", "fix", "retry", "stop", "help", "deflake", "FIX", "Stop", "retyr", "hlep", "deflak", "frobnicate",
         "ｆｉｘ")


# -- payload generation ---------------------------------------------------------------------------
def fixture_payloads(installation: int) -> list[tuple[str, dict[str, Any]]]:
    """(event, payload) for every vendored payload, pointed at the seeded repository most of the time."""
    out = []
    for path in sorted(WEBHOOKS.glob("*.json")):
        name = path.stem
        payload = load_payload(name)
        event = name.split(".", 1)[0]
        if isinstance(payload.get("repository"), dict):
            payload["repository"].update(full_name=REPO, name="calc", default_branch="main")
            if isinstance(payload["repository"].get("owner"), dict):
                payload["repository"]["owner"].update(login="octo", type="Organization")
        if isinstance(payload.get("sender"), dict):
            payload["sender"].update(login="maintainer", type="User")
        if event == "issues":
            payload["label"] = {"name": "fixloop"}
        payload["installation"] = {"id": installation,
                                   **({"account": {"login": "octo"}} if "installation" in event else {})}
        out.append((event, payload))
    return out


def random_text(rng: random.Random, size: int | None = None) -> str:
    size = size if size is not None else rng.choice((0, 1, 5, 40, 300))
    kind = rng.randrange(6)
    if kind == 0:
        return "".join(rng.choice("abc XYZ/\\\"'\n\r\t\x00`$") for _ in range(size))
    if kind == 1:  # any code point, lone surrogates included (json.dumps escapes them)
        return "".join(chr(rng.randrange(0x110000)) for _ in range(size))
    if kind == 2:
        return "".join(rng.choice("é漢字🙂\u200b\u202e\ufeff\u0301ﬁ") for _ in range(size))
    if kind == 3:
        return "".join(chr(rng.randrange(32)) for _ in range(size))
    if kind == 4:
        return rng.choice(("fixloop", "octo/calc", "main", "maintainer", "fixloop[bot]", "Bot", "null", "1",
                           "-1", "0x10", "true", "<!-- fixloop correlation=x -->", "sha256=", "../..", ""))
    return "A" * size


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63, -(2**64), 10**30))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, 1e-308, 3.0))
    if kind in (4, 5, 6, 7):
        return random_text(rng)
    if kind in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng, rng.randrange(8)): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def nested_junk(rng: random.Random) -> Any:
    node: Any = random_value(rng)
    for _ in range(rng.choice((10, 100, 400))):
        node = [node] if rng.random() < 0.5 else {"k": node}
    return node


def containers(node: Any) -> Iterator[tuple[Any, ...]]:
    """The path of every dict and list in `node`, itself first, depth first (with a stack: junk nested
    hundreds deep would make a recursive generator's chain quadratic)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), node)]
    while stack:
        path, current = stack.pop()
        yield path
        items = current.items() if isinstance(current, dict) else enumerate(current) if isinstance(current, list) \
            else ()
        stack.extend(reversed([((*path, key), value) for key, value in items if isinstance(value, (dict, list))]))


def mutate(rng: random.Random, payload: dict[str, Any]) -> None:
    """One random change somewhere in `payload` (in place)."""
    paths = list(containers(payload))
    path = rng.choice(paths[:1] * 3 + paths)  # the top level more often
    node: Any = payload
    for step in path:
        node = node[step]
    keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
    op = rng.randrange(8)
    if not keys or op == 0:  # add a key / element
        if isinstance(node, dict):
            node[random_text(rng, rng.randrange(1, 10))] = random_value(rng)
        else:
            node.append(random_value(rng))
        return
    key = rng.choice(keys)
    if op == 1 and isinstance(node, dict):
        del node[key]
    elif op == 2:
        node[key] = None
    elif op == 3:
        node[key] = random_value(rng)
    elif op == 4:
        node[key] = "Z" * rng.choice((10_000, 100_000, 1_000_000))
    elif op == 5:
        node[key] = random_text(rng, rng.randrange(1, 200))
    elif op == 6:
        node[key] = nested_junk(rng)
    else:  # change the type but keep the value's spirit
        value = node[key]
        node[key] = (str(value) if not isinstance(value, str) else
                     (int(value) if value.isdigit() else [value]))


def command_body(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.choice((1, 1, 1, 3, 50))):
        word = rng.choice(("/fixloop", "/FIXLOOP", "/fixloop", "／fixloop", "/fix loop", " /fixloop", "\t/fixloop",
                           "/fixloop\u200b", "fixloop", "/fixloopfix"))
        verb = rng.choice(VERBS)
        rest = random_text(rng) if rng.random() < 0.6 else ""
        lines.append(f"{word} {verb} {rest}")
    body = rng.choice(("\n", "\r\n", "\r", "\n\n", " ")).join(lines)
    if rng.random() < 0.05:
        body = body + "x" * rng.choice((10_000, 1_000_000))
    if rng.random() < 0.05:
        body = "\x00" * 10 + body
    return body


@dataclass
class Request:
    kind: str
    body: bytes | Callable[[], Iterator[bytes]]
    headers: dict[str, str]
    raw_content_length: int | None = None  # send through a raw socket, declaring this length


@dataclass
class Generator:
    rng: random.Random
    bases: list[tuple[str, dict[str, Any]]]
    seen_deliveries: list[str] = field(default_factory=list)
    secret: str = SECRET

    def signed(self, event: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
        delivery = delivery or str(uuid.UUID(int=self.rng.getrandbits(128)))
        if len(self.seen_deliveries) < 2000:
            self.seen_deliveries.append(delivery)
        return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature_for(self.secret, body), "Content-Type": "application/json"}

    def payload_body(self) -> tuple[str, bytes]:
        rng = self.rng
        event, base = rng.choice(self.bases)
        payload = copy.deepcopy(base)
        if (event in ("issue_comment", "pull_request_review_comment") and rng.random() < 0.7
                and isinstance(payload.get("comment"), dict)):
            payload["comment"]["body"] = command_body(rng)
        if rng.random() < 0.15:
            payload["action"] = rng.choice(ACTIONS)
        for _ in range(rng.choice((0, 1, 1, 2, 3, 8))):
            mutate(rng, payload)
        if rng.random() < 0.1:
            event = rng.choice(KNOWN_EVENTS)  # the wrong event for this payload
        elif rng.random() < 0.05:
            event = rng.choice(ODD_EVENTS)
        body = json.dumps(payload, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        roll = rng.random()
        if roll < 0.05:
            body = body[: rng.randrange(len(body))]  # truncated JSON
        elif roll < 0.08:
            body = rng.choice((b"[]", b"null", b"1", b'"str"', b"true", b"", b"{}", b"\xff\xfe{", b"{\"a\": NaN}",
                               b"\xef\xbb\xbf{}", json.dumps(payload).encode("utf-16"), b"[" * 100_000 + b"]" * 100_000,
                               b'{"n": ' + b"9" * 5000 + b"}", b'{"a": 1, "a": 2}', b"{\"\\ud800\": \"\\udfff\"}"))
        elif roll < 0.10:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        return event, body

    def next(self) -> Request:
        rng = self.rng
        roll = rng.random()
        if roll < 0.72:
            event, body = self.payload_body()
            return Request("signed", body, self.signed(event, body))
        if roll < 0.80:  # wrong or missing signatures
            event, body = self.payload_body()
            headers = self.signed(event, body)
            choice = rng.randrange(7)
            if choice == 0:
                del headers["X-Hub-Signature-256"]
            elif choice == 1:
                headers["X-Hub-Signature-256"] = signature_for("another secret", body)
            elif choice == 2:
                headers["X-Hub-Signature-256"] = signature_for(self.secret, body + b" ")
            elif choice == 3:
                headers["X-Hub-Signature-256"] = rng.choice(("", "sha256=", "sha1=" + "0" * 40, "sha256=" + "g" * 64,
                                                              "x" * 5000, "sha256=" + "0" * 64))
            elif choice == 4:
                headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].upper()
            elif choice == 5:
                sig = headers["X-Hub-Signature-256"]
                headers["X-Hub-Signature-256"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
            else:
                headers["X-Hub-Signature-256"] = "sha256=ü".encode().decode("latin-1")
            return Request("bad_signature", body, headers)
        if roll < 0.88:  # missing or odd headers, with a valid signature
            event, body = self.payload_body()
            headers = self.signed(event, body)
            choice = rng.randrange(7)
            if choice == 0:
                del headers["X-GitHub-Event"]
            elif choice == 1:
                del headers["X-GitHub-Delivery"]
            elif choice == 2:
                headers["X-GitHub-Delivery"] = rng.choice(("", "x" * 8000, "é".encode().decode("latin-1"),
                                                            "../../../x", "'; DROP TABLE deliveries; --", "a\tb"))
            elif choice == 3:
                headers["X-GitHub-Event"] = rng.choice(("", "star", "push", "x" * 300, "a b"))
            elif choice == 4:
                headers["Content-Type"] = rng.choice(("text/plain", "application/x-www-form-urlencoded",
                                                      "multipart/form-data; boundary=x", "",
                                                      "application/json; charset=latin-1"))
            elif choice == 5:
                headers["X-GitHub-Event"] = "ping"
            else:
                headers = {k: v for k, v in headers.items() if k == "X-Hub-Signature-256"}
            return Request("odd_headers", body, headers)
        event, body = self.payload_body()  # a duplicate delivery id
        delivery = rng.choice(self.seen_deliveries) if self.seen_deliveries else "dup-0"
        return Request("duplicate", body, self.signed(event, body, delivery))

    def oversized(self, index: int) -> Request:
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": f"oversized-{index}",
                   "X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"}
        if index % 2 == 0:
            return Request("oversized_declared", b"{}", headers, raw_content_length=MAX_BODY + 1 + index * 1_000_000)

        def chunks() -> Iterator[bytes]:
            block = b"x" * (1024 * 1024)
            for _ in range(27):
                yield block

        return Request("oversized_chunked", chunks, headers)


# -- sending ---------------------------------------------------------------------------------------
def send_raw(url: str, request: Request) -> int | str:
    """A request that declares a Content-Length it never sends in full: the server must not wait for it."""
    parts = urlsplit(url)
    head = ["POST /webhook HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
            f"Content-Length: {request.raw_content_length}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in request.headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + request.body)  # type: ignore[operator]
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                return "closed_without_answer"
            answer += data
    return int(answer.split(b" ", 2)[1])


def fuzz(url: str, requests_to_send: list[Request], concurrency: int, deadline: float) -> dict[str, Any]:
    by_status: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    server_errors: list[dict[str, Any]] = []
    detail: dict[int, str] = {}
    lock = threading.Lock()
    local = threading.local()
    skipped = [0]

    def one(request: Request) -> None:
        if time.monotonic() > deadline:
            with lock:
                skipped[0] += 1
            return
        session = getattr(local, "session", None)
        if session is None or request.kind.startswith("oversized"):
            session = local.session = requests.Session()
        try:
            if request.raw_content_length is not None:
                status: int | str = send_raw(url, request)
            else:
                body = request.body() if callable(request.body) else request.body
                status = session.post(f"{url}/webhook", data=body, headers=request.headers, timeout=60).status_code
                if request.kind.startswith("oversized") or status >= 500:
                    # uvicorn closes the connection after an unhandled exception: start afresh, so a
                    # 5xx is not also counted as a connection error of the next request
                    session.close()
                    local.session = None
        except requests.ConnectionError as error:
            detail[id(request)] = repr(error)[:300]
            # the server may answer 413 and close while a chunked body is still being sent
            status = "connection_closed" if request.kind == "oversized_chunked" else f"error:{type(error).__name__}"
            local.session = None
        except (requests.RequestException, OSError) as error:
            detail[id(request)] = repr(error)[:300]
            status = f"error:{type(error).__name__}"
            local.session = None
        with lock:
            by_status[str(status)] += 1
            by_kind[request.kind][str(status)] += 1
            bad = ((isinstance(status, int) and status >= 500)
                   or (isinstance(status, str) and status.startswith("error")))
            if bad and len(server_errors) < 20:
                body = request.body if isinstance(request.body, bytes) else b"<stream>"
                server_errors.append({"status": status, "kind": request.kind, "headers": request.headers,
                                      "error": detail.get(id(request), ""),
                                      "body_prefix": body[:300].decode("utf-8", "replace"), "body_len": len(body)})

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, requests_to_send))
    return {"duration_s": round(time.perf_counter() - started, 2), "by_status": dict(sorted(by_status.items())),
            "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
            "server_errors": server_errors, "skipped_after_deadline": skipped[0]}


def build_requests(seed: int, count: int, installation: int, oversized: int = 4, secret: str = SECRET) -> list[Request]:
    generator = Generator(random.Random(seed), fixture_payloads(installation), secret=secret)
    batch = [generator.next() for _ in range(max(0, count - oversized))]
    rng = random.Random(seed + 1)
    for index in range(min(oversized, count)):
        batch.insert(rng.randrange(len(batch) + 1), generator.oversized(index))
    return batch


def scan_stderr(text: str) -> dict[str, Any]:
    """Handled processing errors (logged by the workers) versus tracebacks of unhandled crashes."""
    handled: collections.Counter[str] = collections.Counter()
    crashes: collections.Counter[str] = collections.Counter()
    in_traceback, where = False, ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            in_traceback = False
            if "exc" in record:
                last = record["exc"].strip().splitlines()[-1][:160]
                if record.get("message") == "delivery failed":
                    handled[last] += 1
                else:
                    crashes[f"logged {record.get('message')!r}: {last}"] += 1
            continue
        if line.startswith(("ERROR:    Exception in ASGI application", "Exception in thread")):
            where = "ASGI" if "ASGI" in line else line.removeprefix("Exception in thread ").rstrip(":")
        elif line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t", "During handling", "The above exception")):
            crashes[f"{where or '?'}: {line[:160]}"] += 1
            in_traceback, where = False, ""
    return {"handled_processing_errors": sum(handled.values()), "handled_by_type": dict(handled.most_common()),
            "unhandled_crashes": sum(crashes.values()), "crashes_by_type": dict(crashes.most_common())}


def wait_drained(url: str, timeout: float) -> tuple[bool, int]:
    deadline = time.monotonic() + timeout
    zeros, queued = 0, -1
    while time.monotonic() < deadline:
        queued = requests.get(f"{url}/healthz", timeout=5).json()["queued"]
        zeros = zeros + 1 if queued == 0 else 0
        if zeros >= 5:
            return True, 0
        time.sleep(0.2)
    return False, queued


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=240, help="stop sending after this long")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--server-log", type=Path, help="keep the server's stderr in this file")
    args = parser.parse_args()

    from tests.fakes.github import FakeGitHub
    from tests.fakes.github.fixture import generate_app_key
    from tests.fakes.live_server import free_port, wait_healthy

    app_key = generate_app_key()
    private_pem, public_pem = app_key.private_pem, app_key.public_pem
    with FakeGitHub(app_id=APP_ID, app_public_key=public_pem, supports_run_details=True) as github, \
            tempfile.TemporaryDirectory() as scratch:
        github.add_repo(REPO, files={".github/fixloop.yml": CONFIG, "calc.py": "x = 1\n"})
        github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
        installation = github.add_installation("octo", repositories=[REPO])
        github.set_permission(REPO, "maintainer", "write")
        github.add_issue(REPO, "add() subtracts", "add(2, 3) returns -1.", user="reporter")
        batch = build_requests(args.seed, args.requests, installation)

        port = free_port()
        database = Path(scratch) / "fixloop.sqlite3"
        stderr_path = args.server_log or Path(scratch) / "serve.stderr"
        env = {**os.environ, "APP_ID": str(APP_ID), "PRIVATE_KEY": private_pem, "WEBHOOK_SECRET": SECRET,
               "GITHUB_API_URL": github.url, "FIXLOOP_DB": str(database), "FIXLOOP_API_TOKEN": "fuzz",
               "APP_SLUG": "fixloop"}
        url = f"http://127.0.0.1:{port}"
        with stderr_path.open("wb") as stderr:
            server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                wait_healthy(url, server)
                result = fuzz(url, batch, args.concurrency, time.monotonic() + args.max_seconds)
                drain_started = time.perf_counter()
                try:
                    healthy = requests.get(f"{url}/healthz", timeout=10).status_code == 200
                    drained, queued = wait_drained(url, timeout=180)
                except requests.RequestException:
                    healthy, drained, queued = False, False, -1
                result["drain_s"] = round(time.perf_counter() - drain_started, 2)
                try:
                    metrics = requests.get(f"{url}/metrics", timeout=10).text
                except requests.RequestException:
                    metrics = ""
            finally:
                server.terminate()
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        with sqlite3.connect(database) as db:
            pending = db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]
            outcomes = collections.Counter(
                (row[0] or "").split(":", 1)[0].split(" ", 1)[0]
                for row in db.execute("SELECT outcome FROM deliveries WHERE status = 'done'"))
        violations = list(github.violations)
        dispatches = len(github.dispatches(REPO))
        stderr_text = stderr_path.read_text("utf-8", "replace")


    stderr_scan = scan_stderr(stderr_text)
    five_xx = sum(n for status, n in result["by_status"].items() if status.isdigit() and int(status) >= 500)
    client_errors = sum(n for status, n in result["by_status"].items() if status.startswith("error"))
    result.update({
        "requests": args.requests, "sent": args.requests - result["skipped_after_deadline"],
        "concurrency": args.concurrency, "seed": args.seed,
        "five_xx": five_xx, "client_errors": client_errors, "healthy_after": healthy, "queue_drained": drained,
        "queued_at_end": queued, "pending_in_database_after_stop": pending, "server_exit_code": server.returncode,
        "outcomes": dict(outcomes.most_common()), "dispatches": dispatches,
        "openapi_violations": len(violations), "openapi_violation_samples": violations[:5],
        "errors_total_metric": [line for line in metrics.splitlines() if line.startswith("fixloop_errors_total")],
        **stderr_scan,
    })
    failed = bool(five_xx or client_errors or not healthy or not drained or pending or stderr_scan["unhandled_crashes"])
    result["ok"] = not failed
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"webhook fuzz: {result['sent']} of {args.requests} requests (seed {args.seed}), "
              f"{args.concurrency} concurrent clients, loopback, {result['duration_s']} s")
        print("  by status  : " + ", ".join(f"{s}: {n}" for s, n in result["by_status"].items()))
        for kind, counts in result["by_kind"].items():
            print(f"    {kind:<19}: " + ", ".join(f"{s}: {n}" for s, n in counts.items()))
        print(f"  5xx        : {five_xx}   client-side errors: {client_errors}")
        print(f"  afterwards : healthy={healthy} queue drained={drained} (in {result['drain_s']} s), "
              f"pending after stop={pending}, exit code {server.returncode}")
        print("  outcomes   : " + ", ".join(f"{o}: {n}" for o, n in result["outcomes"].items()))
        print(f"  dispatches : {dispatches}   OpenAPI violations at the fake GitHub: {len(violations)}")
        print(f"  stderr     : {stderr_scan['handled_processing_errors']} handled processing errors (logged), "
              f"{stderr_scan['unhandled_crashes']} unhandled crash tracebacks")
        for sample in result["server_errors"][:5]:
            print(f"  e.g. {sample['status']} for {sample['kind']}: {sample['headers'].get('X-GitHub-Event')!r} "
                  f"{sample['body_prefix'][:120]!r} ({sample['body_len']} bytes) {sample['error']}")
        for crash, count in stderr_scan["crashes_by_type"].items():
            print(f"  crash {count:>5} x {crash}")
        for error, count in stderr_scan["handled_by_type"].items():
            print(f"  handled {count:>3} x {error}")
        print("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
