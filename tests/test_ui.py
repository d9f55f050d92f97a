"""The web UI over real HTTP (uvicorn on loopback, the fake GitHub for OAuth and the API): who sees what,
who may do what, and what the pages hold. The same in a real browser: tests/test_ui_browser.py."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import pytest
import requests

from bot.app.server import Service, create_app
from bot.app.settings import AppSettings
from bot.app.store import Store
from bot.errors import ConfigError
from tests.fakes.github.fixture import LOOPBACK_POLICY, TEST_APP_ID
from tests.fakes.live_server import LiveServer, free_port
from tests.web import (
    HOSTILE,
    REPO,
    SECRET_REPO,
    UNINSTALLED,
    WEBHOOK_SECRET,
    csrf_of,
    record_session,
    runner_events,
    seed_github,
    sign_in,
)

CLIENT_SECRET = "fake-client-secret"


class UiApp:
    def __init__(self, github, settings: AppSettings) -> None:
        self.github, self.settings = github, settings
        self.service = Service(settings, store=Store(settings.database), policy=LOOPBACK_POLICY)
        port = urlsplit(settings.public_url or "").port or free_port()
        self.live = LiveServer(create_app(settings, self.service), port=port).__enter__()
        self.url = self.live.url
        self.store = self.service.store

    def stop(self) -> None:
        self.live.__exit__(None, None, None)
        self.store.close()

    def as_(self, login: str) -> requests.Session:
        return sign_in(self.url, self.github, login)


@pytest.fixture
def make_ui(make_fake_github, github_app_key, tmp_path):
    apps: list[UiApp] = []

    def make(**settings) -> UiApp:
        github = seed_github(make_fake_github(supports_run_details=True))
        port = free_port()
        values = {"app_id": str(TEST_APP_ID), "private_key": github_app_key.private_pem,
                  "webhook_secret": WEBHOOK_SECRET, "api_url": github.url,
                  "database": tmp_path / f"ui-{len(apps)}.sqlite3", "app_slug": "fixloop",
                  "public_url": f"http://127.0.0.1:{port}", "client_id": github.app.client_id,
                  "client_secret": CLIENT_SECRET, "ui": True, **settings}
        app = UiApp(github, AppSettings(**values))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()


@pytest.fixture
def ui(make_ui) -> UiApp:
    return make_ui()


def test_signing_in_shows_only_the_sessions_of_repositories_both_the_app_and_the_person_reach(ui):
    mine = record_session(ui.store, REPO, title="calc work")
    hidden = record_session(ui.store, SECRET_REPO, title="vault work", requester="carol")
    alice = ui.as_("alice")
    listing = alice.get(f"{ui.url}/ui/", timeout=10)
    assert listing.status_code == 200 and "Signed in as <strong>alice</strong>" in listing.text
    assert mine in listing.text and "calc work" in listing.text
    assert hidden not in listing.text and "vault work" not in listing.text
    assert UNINSTALLED not in listing.text  # hers on GitHub, but not the App's
    assert alice.get(f"{ui.url}/ui/sessions/{hidden}", timeout=10).status_code == 404  # not even its existence
    carol = ui.as_("carol")
    assert hidden in carol.get(f"{ui.url}/ui/", timeout=10).text
    assert mine not in carol.get(f"{ui.url}/ui/", timeout=10).text


def test_without_a_valid_cookie_every_page_sends_you_to_sign_in(ui):
    for path in ("/ui/", "/ui/new", "/ui/campaigns", "/ui/cost", "/ui/sessions/ses_0"):
        answer = requests.get(f"{ui.url}{path}", allow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/signin"), path
    forged = requests.get(f"{ui.url}/ui/", cookies={"fixloop_session": "made-up.value"}, allow_redirects=False,
                          timeout=10)
    assert forged.status_code == 303
    posted = requests.post(f"{ui.url}/ui/new", data={"repository": REPO, "task": "x"}, allow_redirects=False,
                           timeout=10)
    assert posted.status_code == 303 and not ui.github.dispatches(REPO)


def test_a_sign_in_that_did_not_start_here_or_after_another_site_is_refused(ui):
    forged = requests.get(f"{ui.url}/ui/callback?code=abc&state=made-up", timeout=10)
    assert forged.status_code == 400 and "did not start here" in forged.text
    away = requests.get(f"{ui.url}/ui/login?next=https://evil.example/steal", allow_redirects=False, timeout=10)
    assert "evil.example" not in away.headers.get("set-cookie", "")  # the page to go back to stays on this site


def test_the_session_page_shows_iterations_validation_and_the_timeline_escaped(ui):
    session_id = record_session(ui.store, REPO, events=runner_events(), status="completed", cost=0.022)
    page = ui.as_("alice").get(f"{ui.url}/ui/sessions/{session_id}", timeout=10).text
    assert "Iteration 1" in page and "Iteration 2" in page
    assert "validation failed" in page and "validation passed" in page
    assert "test_calc.py::test_add" in page and "test_calc.py:4" in page and "assert -1 == 5" in page
    assert "+    return a + b" in page and "calc.py | 2 +-" in page
    assert "search program" in page and "grep(&#39;def add&#39;)" in page and "calc.py:1 def add(a, b):" in page
    assert "claude-sonnet-5-5" in page and "$0.0220" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(&#39;model&#39;)&lt;/script&gt;" in page
    for secret in (CLIENT_SECRET, WEBHOOK_SECRET, "BEGIN RSA PRIVATE KEY", "BEGIN PRIVATE KEY"):
        assert secret not in page


def test_pages_carry_a_strict_content_security_policy_and_cookies_are_http_only(ui):
    alice = ui.as_("alice")
    answer = alice.get(f"{ui.url}/ui/", timeout=10)
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp and "unsafe-eval" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text), "no inline script"
    assert " style=" not in answer.text, "no inline style"
    (cookie,) = [c for c in alice.cookies if c.name == "fixloop_session"]
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite").lower() == "lax"


def test_cookies_are_secure_behind_https(make_ui, monkeypatch):
    """Behind an https address (a proxy in front of the App), the sign-in cookies are Secure."""
    ui = make_ui(public_url="https://fixloop.example.test")
    answer = requests.get(f"{ui.url}/ui/login", allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    set_cookie = answer.headers["set-cookie"]
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    assert "redirect_uri=https%3A%2F%2Ffixloop.example.test%2Fui%2Fcallback" in answer.headers["location"]


def test_forms_without_their_token_or_from_another_site_are_refused(ui):
    alice = ui.as_("alice")
    csrf = csrf_of(alice.get(f"{ui.url}/ui/new", timeout=10).text)
    missing = alice.post(f"{ui.url}/ui/new", data={"repository": REPO, "task": "Fix it"}, timeout=10)
    assert missing.status_code == 403 and "token" in missing.text
    elsewhere = alice.post(f"{ui.url}/ui/new", data={"repository": REPO, "task": "Fix it", "csrf": csrf},
                           headers={"Origin": "https://evil.example"}, timeout=10)
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    assert not ui.github.dispatches(REPO)


def test_starting_a_task_in_words_dispatches_the_workflow_with_the_branch_and_limit(ui):
    alice = ui.as_("alice")
    form = alice.get(f"{ui.url}/ui/new", timeout=10).text
    started = alice.post(f"{ui.url}/ui/new", data={
        "csrf": csrf_of(form), "repository": REPO, "ref": "release", "iterations": "2",
        "task": "Make add() add\n\nIt subtracts today; keep the signature."}, timeout=10)
    assert started.status_code == 200 and "/ui/sessions/ses_" in started.url, started.text[:300]
    (dispatch,) = ui.github.dispatches(REPO)
    inputs = dispatch.inputs
    assert inputs["kind"] == "task" and inputs["title"] == "Make add() add"
    assert json.loads(inputs["head"]) == {"ref": "release", "iterations": 2}
    assert "keep the signature" in inputs["instructions"] and inputs["requester"] == "alice"
    (session,) = ui.store.sessions(REPO)
    assert session.kind == "task" and session.requester == "alice" and session.status == "dispatched"


@pytest.mark.parametrize("fields, says", [
    ({"ref": "../etc"}, "not a branch or a commit"),
    ({"iterations": "500"}, "from 1 to 50"),
    ({"task": ""}, "Say what the session should do"),
    ({"repository": SECRET_REPO}, "repositories you can see"),
    ({"ref": "no-such-branch"}, "neither a branch"),
])
def test_a_start_form_with_a_mistake_says_what_and_keeps_what_was_typed(ui, fields, says):
    alice = ui.as_("alice")
    csrf = csrf_of(alice.get(f"{ui.url}/ui/new", timeout=10).text)
    sent = {"csrf": csrf, "repository": REPO, "ref": "", "task": "Keep this text", "iterations": "", **fields}
    answer = alice.post(f"{ui.url}/ui/new", data=sent, timeout=10)
    assert answer.status_code in (403, 422) and says in answer.text, answer.text[:500]
    if fields.get("task", "x"):
        assert "Keep this text" in answer.text
    assert not ui.github.dispatches(REPO)


def test_a_person_who_may_only_read_cannot_start_stop_or_retry(ui):
    session_id = record_session(ui.store, REPO, events=runner_events(), run_id=None)
    bob = ui.as_("bob")
    page = bob.get(f"{ui.url}/ui/sessions/{session_id}", timeout=10).text
    assert "Stop</button>" not in page and "Retry</button>" not in page  # no buttons for what he may not do
    csrf = csrf_of(page)
    for action in ("stop", "retry"):
        answer = bob.post(f"{ui.url}/ui/sessions/{session_id}/{action}", data={"csrf": csrf}, timeout=10)
        assert answer.status_code == 403 and "write access" in answer.text
    started = bob.post(f"{ui.url}/ui/new", data={"csrf": csrf, "repository": REPO, "task": "Do it"}, timeout=10)
    assert started.status_code == 403 and "write access" in started.text
    assert not ui.github.dispatches(REPO) and ui.store.session(session_id).status == "in_progress"


def test_stop_cancels_the_run_on_github_and_retry_dispatches_the_task_again(ui):
    alice = ui.as_("alice")
    csrf = csrf_of(alice.get(f"{ui.url}/ui/new", timeout=10).text)
    started = alice.post(f"{ui.url}/ui/new", data={"csrf": csrf, "repository": REPO, "task": "Make add() add"},
                         timeout=10)
    session_id = started.url.rsplit("/", 1)[1]
    run_id = ui.store.session(session_id).run_id
    assert run_id and ui.github.workflow_runs(REPO)[0].status != "completed"
    stopped = alice.post(f"{ui.url}/ui/sessions/{session_id}/stop", data={"csrf": csrf}, timeout=10)
    assert stopped.status_code == 200
    assert any(r.method == "POST" and r.path.endswith(f"/actions/runs/{run_id}/cancel") for r in ui.github.requests)
    record = ui.store.session(session_id)
    assert (record.status, record.conclusion, record.reason) == ("completed", "cancelled", "stopped by @alice")
    retried = alice.post(f"{ui.url}/ui/sessions/{session_id}/retry", data={"csrf": csrf}, timeout=10)
    new_id = retried.url.rsplit("/", 1)[1]
    assert retried.status_code == 200 and new_id != session_id
    first, second = ui.github.dispatches(REPO)
    assert first.inputs["instructions"] == second.inputs["instructions"] == "Make add() add"
    assert first.inputs["correlation_id"] != second.inputs["correlation_id"]
    assert "retrying " + session_id in second.inputs["source"]


def test_the_session_page_of_a_running_session_refreshes_from_its_live_fragment(ui):
    session_id = record_session(ui.store, REPO, events=runner_events()[:3])
    alice = ui.as_("alice")
    page = alice.get(f"{ui.url}/ui/sessions/{session_id}", timeout=10).text
    assert f'data-live="/ui/sessions/{session_id}/live"' in page and '<script src="/ui/static/live.js"' in page
    assert "Iteration 2" not in page
    for seq, event in enumerate(runner_events()[3:], start=3):
        ui.store.record_event(session_id, seq, event.type, event.record())
    fragment = alice.get(f"{ui.url}/ui/sessions/{session_id}/live", timeout=10)
    assert fragment.status_code == 200 and "Iteration 2" in fragment.text and "<html" not in fragment.text
    script = requests.get(f"{ui.url}/ui/static/live.js", timeout=10)
    assert script.status_code == 200 and "data-live" in script.text


def test_the_sessions_list_filters_and_pages(ui):
    for n in range(105):
        record_session(ui.store, REPO, title=f"task {n}", requester="alice" if n % 2 else "dave",
                       created=1_700_000_000 + n)
    alice = ui.as_("alice")
    first = alice.get(f"{ui.url}/ui/", timeout=10).text
    assert first.count("/ui/sessions/ses_") == 100 and "task 104" in first and "Older sessions" in first
    older = re.search(r'href="(/ui/\?[^"]*before=[^"]+)"', first).group(1).replace("&amp;", "&")
    rest = alice.get(f"{ui.url}{older}", timeout=10).text
    assert rest.count("/ui/sessions/ses_") == 5 and "task 0<" in rest
    by_dave = alice.get(f"{ui.url}/ui/", params={"requester": "dave"}, timeout=10).text
    assert by_dave.count("/ui/sessions/ses_") == 53


def test_the_cost_page_charts_cost_per_repository_and_week(ui):
    week = 7 * 86400
    record_session(ui.store, REPO, cost=1.5, created=1_764_547_200)  # a Monday
    record_session(ui.store, REPO, cost=0.5, created=1_764_547_200 + 3600)
    record_session(ui.store, REPO, cost=2.25, created=1_764_547_200 + week)
    record_session(ui.store, SECRET_REPO, cost=99.0, created=1_764_547_200)  # not alice's to see
    page = ui.as_("alice").get(f"{ui.url}/ui/cost", timeout=10).text
    assert page.count("<rect x=") == 2 and "<svg" in page and 'role="img"' in page
    assert "$2.00" in page and "$2.25" in page and "$99" not in page
    assert "2025-12-01" in page and "2025-12-08" in page


def test_the_campaign_page_shows_progress_and_steers(ui):
    spec = (f"name: rename\ninstructions: Rename it.\ntargets: {{repositories: [{REPO}, {SECRET_REPO}]}}\n"
            f"tracking: {REPO}\n")
    record = ui.service.campaigns.start(spec, "alice")
    alice = ui.as_("alice")
    listing = alice.get(f"{ui.url}/ui/campaigns", timeout=10).text
    assert "rename" in listing and f"/ui/campaigns/{record.id}" in listing
    page = alice.get(f"{ui.url}/ui/campaigns/{record.id}", timeout=10).text
    assert "<progress" in page and f"<td>{REPO}</td>" in page and "Pause</button>" in page
    assert SECRET_REPO not in page and "1 more in others" in page and "0 of 2 targets ended" in page
    paused = alice.post(f"{ui.url}/ui/campaigns/{record.id}/pause", data={"csrf": csrf_of(page)}, timeout=10)
    assert paused.status_code == 200 and ui.store.campaigns.campaign(record.id).status == "paused"
    bob = ui.as_("bob")
    refused = bob.post(f"{ui.url}/ui/campaigns/{record.id}/resume",
                       data={"csrf": csrf_of(bob.get(f"{ui.url}/ui/", timeout=10).text)}, timeout=10)
    assert refused.status_code == 403 and ui.store.campaigns.campaign(record.id).status == "paused"


def test_ui_and_metrics_are_turned_off_separately(make_ui):
    without_ui = make_ui(ui=False)
    assert requests.get(f"{without_ui.url}/ui/", timeout=10).status_code == 404
    assert requests.get(f"{without_ui.url}/metrics", timeout=10).status_code == 200
    without_metrics = make_ui(metrics=False)
    assert requests.get(f"{without_metrics.url}/metrics", timeout=10).status_code == 404
    assert requests.get(f"{without_metrics.url}/ui/signin", timeout=10).status_code == 200


@pytest.mark.parametrize("environ, says", [
    ({"FIXLOOP_UI": "on"}, "needs GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, FIXLOOP_PUBLIC_URL"),
    ({"FIXLOOP_UI": "yes"}, "FIXLOOP_UI must be on or off"),
    ({"GITHUB_CLIENT_ID": "Iv1.x", "GITHUB_CLIENT_SECRET": "s", "FIXLOOP_PUBLIC_URL": "http://fixloop.example.com"},
     "must be https://"),
    ({"FIXLOOP_PUBLIC_URL": "fixloop.example.com"}, "FIXLOOP_PUBLIC_URL must be the App's address"),
])
def test_ui_setup_mistakes_are_explained(github_app_key, environ, says):
    base = {"APP_ID": "1", "PRIVATE_KEY": github_app_key.private_pem, "WEBHOOK_SECRET": "s"}
    with pytest.raises(ConfigError) as error:
        AppSettings.from_environ({**base, **environ})
    assert says in str(error.value)


def test_ui_settings_from_the_environment(github_app_key):
    settings = AppSettings.from_environ({"APP_ID": "1", "PRIVATE_KEY": github_app_key.private_pem,
                                         "WEBHOOK_SECRET": "s", "GITHUB_CLIENT_ID": "Iv1.abc",
                                         "GITHUB_CLIENT_SECRET": "shh", "FIXLOOP_PUBLIC_URL": "https://fl.example/",
                                         "FIXLOOP_METRICS": "off"})
    assert settings.ui and not settings.metrics and settings.public_url == "https://fl.example"
    assert "shh" in settings.secrets
    assert settings.oidc_issuer == "https://token.actions.githubusercontent.com"


def test_signing_out_ends_the_session_on_the_server(ui):
    alice = ui.as_("alice")
    page = alice.get(f"{ui.url}/ui/", timeout=10).text
    cookie = alice.cookies.get("fixloop_session")
    out = alice.post(f"{ui.url}/ui/signout", data={"csrf": csrf_of(page)}, timeout=10)
    assert out.status_code == 200 and "Sign in with GitHub" in out.text
    replayed = requests.get(f"{ui.url}/ui/", cookies={"fixloop_session": cookie}, allow_redirects=False, timeout=10)
    assert replayed.status_code == 303  # the old cookie opens nothing


def test_a_sign_in_lasts_its_lifetime(ui, monkeypatch):
    alice = ui.as_("alice")
    assert alice.get(f"{ui.url}/ui/", timeout=10).status_code == 200
    real = ui.store.clock
    monkeypatch.setattr(ui.store, "clock", lambda: real() + 9 * 3600)
    assert alice.get(f"{ui.url}/ui/", allow_redirects=False, timeout=10).status_code == 303
    assert time.time() < real() + 60


def test_stop_waits_until_the_run_is_known(ui):
    session_id = record_session(ui.store, REPO, status="dispatching")
    alice = ui.as_("alice")
    csrf = csrf_of(alice.get(f"{ui.url}/ui/sessions/{session_id}", timeout=10).text)
    answer = alice.post(f"{ui.url}/ui/sessions/{session_id}/stop", data={"csrf": csrf}, timeout=10)
    assert answer.status_code == 409 and "not known yet" in answer.text
    assert ui.store.session(session_id).status == "dispatching"


def test_the_api_starts_a_task_on_the_default_branch_and_refuses_a_ref_that_is_none(make_ui):
    ui = make_ui(api_token="ui-api-token")
    headers = {"Authorization": "Bearer ui-api-token"}
    started = requests.post(f"{ui.url}/api/sessions", headers=headers, timeout=10, json={
        "repository": REPO, "kind": "task", "instructions": "Make add() add"})
    assert started.status_code == 201, started.text
    assert json.loads(ui.github.dispatches(REPO)[0].inputs["head"]) == {"ref": "main"}
    for ref in ("-x", "a..b", "release; rm -rf /"):
        refused = requests.post(f"{ui.url}/api/sessions", headers=headers, timeout=10, json={
            "repository": REPO, "kind": "task", "instructions": "x", "ref": ref})
        assert refused.status_code == 422, (ref, refused.text)
    assert len(ui.github.dispatches(REPO)) == 1
