"""The App with its web UI on, against the fake GitHub (its OAuth web flow included), for the UI's tests:
people with different rights, sessions with the events a runner reports, and signing in as GitHub's
OAuth pages let a person do it."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import requests

from bot.agent.events import (
    ChangesMade,
    IterationEnded,
    IterationStarted,
    ModelCalled,
    SessionEnded,
    SessionStarted,
    ToolCalled,
    ValidationRan,
)
from bot.agent.usage import Usage
from bot.app.store import Store
from bot.frameworks.base import FailedTest
from bot.search import TOOL_NAME as SEARCH_TOOL
from bot.validation import CommandOutcome, ValidationResult
from tests.fakes.github import FakeGitHub

REPO = "octo/calc"
SECRET_REPO = "octo/vault"  # installed, but only carol has a role on it
UNINSTALLED = "octo/elsewhere"  # alice is admin there, but the App is not installed on it
CONFIG = "validate: [python -m pytest -q]\nlimits: {iterations: 5}\n"
WEBHOOK_SECRET = "ui-webhook-secret"
HOSTILE = "<script>alert('model')</script><img src=x onerror=alert(1)>"


def seed_github(github: FakeGitHub) -> FakeGitHub:
    """alice may write to octo/calc; bob may only read it; carol alone sees octo/vault."""
    github.add_repo(REPO, files={".github/fixloop.yml": CONFIG, "calc.py": "def add(a, b):\n    return a - b\n"})
    github.add_repo(SECRET_REPO, files={"README.md": "vault\n"})
    github.add_repo(UNINSTALLED, files={"README.md": "elsewhere\n"})
    github.add_branch(REPO, "release")
    github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
    github.add_installation("octo", repositories=["calc", "vault"])
    github.set_permission(REPO, "alice", "write")
    github.set_permission(REPO, "bob", "read")
    github.set_permission(SECRET_REPO, "carol", "admin")
    github.set_permission(UNINSTALLED, "alice", "admin")
    return github


def sign_in(url: str, github: FakeGitHub, login: str) -> requests.Session:
    """A browser-like client signed in to the UI at `url` as `login`, through GitHub's OAuth pages."""
    client = requests.Session()
    authorize = client.get(f"{url}/ui/login", timeout=10)  # → GitHub's page, which asks who you are
    assert authorize.status_code == 200 and "Authorize" in authorize.text, authorize.text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', authorize.text))
    landed = client.post(f"{github.url}/login/oauth/authorize", data={**fields, "login": login}, timeout=10)
    assert landed.status_code == 200 and landed.url.rstrip("/").endswith("/ui"), (landed.url, landed.text[:500])
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def runner_events(task: str = "Make add() add") -> list[Any]:
    """What a runner reports of a session with two iterations: the first fails validation, the second passes."""
    failing = ValidationResult(passed=False, commands=[CommandOutcome(
        command="python -m pytest -q", passed=False, exit_code=1, timed_out=False, duration_s=0.4, tests_run=2,
        failed_tests=[FailedTest(id="test_calc.py::test_add", file="test_calc.py", line=4,
                                 message="assert -1 == 5")])])
    passing = ValidationResult(passed=True, commands=[CommandOutcome(
        command="python -m pytest -q", passed=True, exit_code=0, timed_out=False, duration_s=0.3, tests_run=2)])
    usage = Usage(input_tokens=1_200, output_tokens=80)
    return [
        SessionStarted(session_id="20261203-1", task=task, task_kind="task", model="claude-sonnet-5-5",
                       provider="anthropic", repo="/workspace", base_commit="0" * 40, limits={}, confinement="bwrap",
                       confined=True),
        ValidationRan(iteration=0, result=failing),
        IterationStarted(n=1),
        ModelCalled(iteration=1, turn=1, stop_reason="tool_use", usage=usage, duration_s=1.0,
                    text=f"Looking at calc.py. {HOSTILE}", tool_calls=1, session_cost_usd=0.011),
        ToolCalled(iteration=1, turn=1, call_id="c1", name=SEARCH_TOOL,
                   input={"program": "for hit in grep('def add'):\n    emit(hit)"}, result="calc.py:1 def add(a, b):",
                   is_error=False, duration_s=0.1),
        ToolCalled(iteration=1, turn=1, call_id="c2", name="str_replace", input={"path": "calc.py"},
                   result="edited calc.py", is_error=False, duration_s=0.01),
        ChangesMade(iteration=1, diff_stat=" calc.py | 2 +-", changed_files=["calc.py"],
                    diff="--- a/calc.py\n+++ b/calc.py\n-    return a - b\n+    return a * b\n"),
        ValidationRan(iteration=1, result=failing),
        IterationEnded(n=1, turns=1, usage=usage, passed=False, feedback="test_add fails"),
        IterationStarted(n=2),
        ChangesMade(iteration=2, diff_stat=" calc.py | 2 +-", changed_files=["calc.py"],
                    diff="--- a/calc.py\n+++ b/calc.py\n-    return a - b\n+    return a + b\n"),
        ValidationRan(iteration=2, result=passing),
        IterationEnded(n=2, turns=1, usage=usage, passed=True, feedback=None),
        SessionEnded(status="validated", reason="validation passed", usage=usage + usage, cost_usd=0.022),
    ]


def record_session(store: Store, repository: str, *, title: str = "Make add() add", requester: str = "alice",
                   events: list[Any] | None = None, status: str = "in_progress", run_id: int | None = None,
                   cost: float | None = None, created: float | None = None) -> str:
    """A session in the store as the App keeps one, with the events its runner reported; returns its id."""
    correlation = f"ui-{secrets.token_hex(6)}"
    session, _ = store.start_session(repository=repository, kind="task", target=f"task:main:{correlation}",
                                     requester=requester, correlation_id=correlation, active_since=0, title=title)
    fields: dict[str, Any] = {"status": status, "run_id": run_id, "cost_usd": cost}
    store.update_session(session.id, **{k: v for k, v in fields.items() if v is not None})
    if created is not None:  # the store has no setter for `created`: written directly
        with store._db.transaction() as tx:
            tx.execute("UPDATE sessions SET created = ? WHERE id = ?", (created, session.id))
    for seq, event in enumerate(events or []):
        store.record_event(session.id, seq, event.type, event.record())
    return session.id


def screenshot_dir() -> Path:
    """Where the browser tests leave screenshots of the main pages (CI keeps the folder as an artifact)."""
    folder = Path(__file__).resolve().parents[1] / ".artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
