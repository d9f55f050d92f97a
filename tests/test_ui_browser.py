"""The web UI in a real browser: headless Chromium (the distribution's, driven by Playwright for Python,
no browser download) against a real `fixloop serve` process, with the fake GitHub playing OAuth and the
API, and a fake runner reporting through the OIDC-verified channel with a loopback issuer.

Screenshots of the main pages land in .artifacts/ui/ (CI keeps them; docs/images/ has two of them).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.action.app_report import AppReporter
from bot.app.store import Store
from bot.secrets import Redactor
from tests.fakes.actions_oidc import FakeActionsOIDC
from tests.test_app_restart import Server
from tests.web import REPO, SECRET_REPO, record_session, runner_events, screenshot_dir, seed_github

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed: "
                                     "pip install -e '.[test]'")
CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: .ci/run installs Debian's "
                                                         "chromium package (apt-get install chromium)")
API_TOKEN = "browser-api-token"


class UiServer(Server):
    """`fixloop serve` with the web UI on and runner reports verified against `oidc`."""

    def __init__(self, github, key, scratch: Path, oidc: FakeActionsOIDC) -> None:
        super().__init__(github, key, scratch)
        self.env.update({"FIXLOOP_PUBLIC_URL": self.url, "GITHUB_CLIENT_ID": github.app.client_id,
                         "GITHUB_CLIENT_SECRET": github.app_client_secret, "FIXLOOP_OIDC_ISSUER": oidc.url,
                         "FIXLOOP_API_TOKEN": API_TOKEN})


@pytest.fixture
def stack(make_fake_github, github_app_key, tmp_path) -> Iterator[tuple[UiServer, object, FakeActionsOIDC]]:
    github = seed_github(make_fake_github(supports_run_details=True))
    with FakeActionsOIDC() as oidc:
        server = UiServer(github, github_app_key, tmp_path / "serve", oidc)
        server.start()
        try:
            yield server, github, oidc
        finally:
            server.kill()


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in_page(browser, url: str, login: str, **context):
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{url}/ui/")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Username or email address").fill(login)  # GitHub's page (the fake's)
    page.get_by_role("button", name="Authorize fixloop").click()
    page.wait_for_url(f"{url}/ui/")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def test_sign_in_watch_a_session_update_live_stop_it_and_start_one_from_a_form(stack, browser):
    server, github, oidc = stack
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{server.url}/ui/")
    assert page.url.startswith(f"{server.url}/ui/signin")
    shot(page, "sign-in")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Username or email address").fill("alice")
    page.get_by_role("button", name="Authorize fixloop").click()
    page.wait_for_url(f"{server.url}/ui/")
    assert "Signed in as alice" in page.inner_text("header")

    # Start a session from a task written in the form: the App dispatches the repository's workflow.
    page.get_by_role("link", name="Start a session").click()
    page.get_by_label("Repository").select_option(REPO)
    page.get_by_label("Branch or commit").fill("main")
    page.get_by_label("Task", exact=True).fill("Make add() add\n\nadd(2, 3) returns -1 today.")
    page.get_by_label("Iterations at most").fill("3")
    shot(page, "start-a-session")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(f"{server.url}/ui/sessions/ses_*")
    (dispatch,) = github.dispatches(REPO)
    assert dispatch.inputs["kind"] == "task" and json.loads(dispatch.inputs["head"]) == {"ref": "main",
                                                                                         "iterations": 3}
    assert page.get_by_role("heading", name="Make add() add").is_visible()

    # A runner reports as it goes, authenticated by its run's OIDC token: the open page follows without a reload.
    reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": server.url,
                                         **oidc.job_environment(REPO, dispatch.run_id)},
                                        dispatch.inputs["correlation_id"], redactor=Redactor(), warn=pytest.fail)
    assert reporter is not None
    events = runner_events()
    for event in events[:6]:
        reporter(event)
    reporter.close()
    page.get_by_role("heading", name="Iteration 1").wait_for()
    assert page.get_by_text("search program").is_visible()
    for event in events[6:8]:  # iteration 1's change and its failing validation
        reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": server.url,
                                             **oidc.job_environment(REPO, dispatch.run_id)},
                                            dispatch.inputs["correlation_id"], redactor=Redactor(), warn=pytest.fail)
        reporter._seq = events.index(event)
        reporter(event)
        reporter.close()
    page.get_by_role("cell", name="test_calc.py::test_add").first.wait_for()
    shot(page, "session-live")

    # Stop reaches GitHub: the workflow run is cancelled.
    page.get_by_role("button", name="Stop").click()
    page.wait_for_load_state()
    assert any(r.method == "POST" and r.path.endswith(f"/actions/runs/{dispatch.run_id}/cancel")
               for r in github.requests)
    assert "cancelled" in page.inner_text("#session")

    # Retry dispatches the same task again.
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(f"{server.url}/ui/sessions/ses_*")
    assert len(github.dispatches(REPO)) == 2
    page.get_by_role("link", name="Sessions").click()
    assert page.locator("table.list tbody tr").count() == 2
    shot(page, "sessions")


def test_a_reader_sees_but_cannot_start_stop_or_retry(stack, browser):
    server, github, _ = stack
    page = signed_in_page(browser, server.url, "bob")
    page.goto(f"{server.url}/ui/new")
    page.get_by_label("Task", exact=True).fill("Anything")
    page.get_by_role("button", name="Start").click()
    assert "write access" in page.inner_text("main")
    assert github.dispatches(REPO) == []
    answer = requests.get(f"{server.url}/api/sessions", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    assert answer.json() == []


def test_pages_read_without_javascript_by_keyboard_and_the_campaign_and_cost_pages(stack, browser):
    server, _, _ = stack
    store = Store(server.database)  # the server's own database (SQLite), written as runners' reports would be
    session_id = record_session(store, REPO, events=runner_events(), status="completed", cost=0.022)
    record_session(store, REPO, title="Earlier work", status="completed", cost=1.25, created=time.time() - 8 * 86400)
    record_session(store, SECRET_REPO, title="Vault work", requester="carol", status="completed", cost=5.0)
    store.close()
    campaign = requests.post(f"{server.url}/api/campaigns", headers={"Authorization": f"Bearer {API_TOKEN}"},
                             json={"file": f"name: rename-api\ninstructions: Rename it.\ntargets: {{repositories: "
                                           f"[{REPO}]}}\ntracking: {REPO}\n", "requester": "alice"}, timeout=10)
    assert campaign.status_code == 201, campaign.text

    page = signed_in_page(browser, server.url, "alice", java_script_enabled=False)
    listed = page.locator("table.list tbody").inner_text()  # only the repositories both the App and alice reach
    assert "Earlier work" in listed and "Vault work" not in listed and SECRET_REPO not in listed
    assert [o.inner_text() for o in page.locator("select[name=repository] option").all()] == ["any", REPO]
    page.goto(f"{server.url}/ui/sessions/{session_id}")
    assert page.get_by_role("heading", name="Iteration 2: validation passed").is_visible()
    assert page.get_by_role("table", name="Validation of iteration 1").is_visible()
    assert "<script>alert('model')</script>" in page.inner_text("#session")  # shown as text, never run
    shot(page, "session")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.goto(f"{server.url}/ui/campaigns")
    page.get_by_role("link", name="rename-api").click()
    assert page.locator("progress").count() == 1 and page.get_by_role("button", name="Pause").is_visible()
    shot(page, "campaign")
    page.get_by_role("button", name="Pause").click()
    assert "paused" in page.inner_text("main")

    page.goto(f"{server.url}/ui/cost")
    assert page.get_by_role("img", name="Estimated cost per week").is_visible()
    assert page.locator("svg.chart rect").count() == 2
    shot(page, "cost")
