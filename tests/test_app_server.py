"""`fixloop serve` end to end: uvicorn on loopback, real HTTP, payloads signed like GitHub signs
them, and the OpenAPI-checked fake GitHub (which verifies the App's JWT against its public key)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests

from bot.app.server import Service, create_app
from bot.app.settings import AppSettings
from bot.app.store import Store
from bot.github.events import signature_for
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import LOOPBACK_POLICY, TEST_APP_ID
from tests.fakes.live_server import LiveServer
from tests.fixtures import load_payload

REPO = "octo/calc"
SECRET = "It's a Secret to Everybody"
API_TOKEN = "api-token-for-tests"
CONFIG = "validate: [python -m pytest -q]\nci: {auto: true, max_sessions_per_branch: 2}\n"


class App:
    """A running `fixloop serve` against a seeded fake GitHub."""

    def __init__(self, github: FakeGitHub, settings: AppSettings) -> None:
        self.github, self.settings = github, settings

    def start(self) -> App:
        self.service = Service(self.settings, store=Store(self.settings.database), policy=LOOPBACK_POLICY)
        self.live = LiveServer(create_app(self.settings, self.service)).__enter__()
        self.url = self.live.url
        return self

    def stop(self) -> None:
        self.live.__exit__(None, None, None)
        self.service.store.close()

    def deliver(self, event: str, payload: dict, *, delivery: str | None = None, secret: str = SECRET,
                signature: str | None = None) -> requests.Response:
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                   "X-Hub-Signature-256": signature or signature_for(secret, body), "Content-Type": "application/json"}
        return requests.post(f"{self.url}/webhook", data=body, headers=headers, timeout=10)

    def settle(self) -> None:
        self.service.drain()

    def api(self, method: str, path: str, token: str | None = API_TOKEN, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture
def seeded(make_fake_github):
    def seed(**options) -> FakeGitHub:
        github = make_fake_github(**options)
        github.add_repo(REPO, files={".github/fixloop.yml": CONFIG, "calc.py": "x = 1\n"})
        github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
        github.add_installation("octo", repositories=[REPO])
        github.set_permission(REPO, "maintainer", "write")
        github.add_issue(REPO, "add() subtracts", "add(2, 3) returns -1.", user="reporter")
        return github

    return seed


@pytest.fixture
def make_app(seeded, github_app_key, tmp_path):
    apps: list[App] = []

    def make(github: FakeGitHub | None = None, database: Path | None = None, app_slug: str | None = "fixloop",
             **options) -> App:
        github = github or seeded(**options)
        settings = AppSettings(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, webhook_secret=SECRET,
                               api_url=github.url, database=database or tmp_path / f"fixloop-{len(apps)}.sqlite3",
                               api_token=API_TOKEN, app_slug=app_slug)
        app = App(github, settings).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        if app.live.thread.is_alive():
            app.stop()


def labeled(sender: str = "maintainer", number: int = 1) -> dict:
    payload = load_payload("issues.labeled", label__name="fixloop")
    payload["repository"].update(full_name=REPO, name="calc", default_branch="main")
    payload["repository"]["owner"].update(login="octo", type="Organization")
    payload["issue"]["number"] = number
    payload["sender"].update(login=sender)
    payload["installation"] = {"id": 1}
    return payload


def with_installation(payload: dict, github: FakeGitHub) -> dict:
    payload["installation"] = {"id": github.installation_id("octo")}
    return payload


def test_githubs_documented_test_vector():
    assert (signature_for(SECRET, b"Hello, World!")
            == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def test_bad_requests_are_rejected_before_anything_is_parsed(make_app):
    app = make_app()
    payload = with_installation(labeled(), app.github)
    body = json.dumps(payload).encode()
    assert app.deliver("issues", payload, signature="sha256=" + "0" * 64).status_code == 401
    assert app.deliver("issues", payload, secret="another secret").status_code == 401
    no_signature = requests.post(f"{app.url}/webhook", data=body, timeout=5,
                                 headers={"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"})
    assert no_signature.status_code == 401
    missing_headers = requests.post(f"{app.url}/webhook", data=body, timeout=5,
                                    headers={"X-Hub-Signature-256": signature_for(SECRET, body)})
    assert missing_headers.status_code == 400
    not_json = b"{not json"
    assert requests.post(f"{app.url}/webhook", data=not_json, timeout=5, headers={
        "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": signature_for(SECRET, not_json)}
    ).status_code == 400
    huge = requests.post(f"{app.url}/webhook", data=b"x" * (25 * 1024 * 1024 + 1), timeout=30, headers={
        "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-3", "X-Hub-Signature-256": "sha256=00"})
    assert huge.status_code == 413
    star = app.deliver("star", {"action": "created", "repository": payload["repository"], "sender": payload["sender"]})
    assert star.status_code == 202 and "does not act on star" in star.json()["ignored"]
    assert app.deliver("ping", {"zen": "Design for failure."}).json() == {"pong": True}
    app.settle()
    assert app.github.dispatches(REPO) == []
    metrics = requests.get(f"{app.url}/metrics", timeout=5).text
    assert 'fixloop_webhook_deliveries_total{event="issues",outcome="bad_signature"} 3' in metrics
    assert 'fixloop_webhook_deliveries_total{event="issues",outcome="too_large"} 1' in metrics


def test_a_trigger_dispatches_exactly_one_run_with_a_scoped_installation_token(make_app):
    app = make_app(supports_run_details=True)
    delivery = "delivery-label-1"
    response = app.deliver("issues", with_installation(labeled(), app.github), delivery=delivery)
    assert response.status_code == 202
    app.settle()
    (dispatch,) = app.github.dispatches(REPO)
    assert dispatch.ref == "main"
    assert {name: value for name, value in dispatch.inputs.items() if name not in ("title", "source", "context")} == {
        "kind": "issue", "target": "1", "requester": "maintainer", "correlation_id": delivery, "head": "", "test": "",
        "instructions": "Resolve issue #1 (labelled 'fixloop' by @maintainer)."}
    assert dispatch.inputs["title"] == labeled()["issue"]["title"] and "accidently" in dispatch.inputs["context"]
    (token,) = list(app.github.issued_tokens())
    assert token.repositories == ["calc"] and token.permissions["actions"] == "write"
    assert dispatch.token == token.token, "the dispatch used the installation token"
    comments = app.github.comments(REPO, 1)
    assert len(comments) == 1 and comments[0].body.startswith("fixloop is on it: ")
    (session,) = app.api("GET", f"/api/sessions?repo={REPO}").json()
    assert session["status"] == "dispatched" and session["run_id"] == dispatch.run_id
    assert session["correlation_id"] == delivery and session["target"] == "issue:1"


def test_the_apps_jwt_follows_githubs_rules(github_app_key):
    from bot.github.app_auth import app_jwt

    now = time.time()
    claims = jwt.decode(app_jwt("4242", github_app_key.private_pem, now), github_app_key.public_pem,
                        algorithms=["RS256"], options={"verify_iat": False})
    assert claims["iss"] == "4242"
    assert claims["iat"] == int(now) - 60 and 0 < claims["exp"] - int(now) <= 600


def test_installation_tokens_are_cached_until_shortly_before_they_expire(seeded, github_app_key):
    from bot.github.app_auth import InstallationTokens

    github = seeded()
    clock = [time.time()]
    tokens = InstallationTokens(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, api_url=github.url,
                                clock=lambda: clock[0], policy=LOOPBACK_POLICY)
    installation = github.installation_id("octo")
    first = tokens.token(installation, REPO, {"issues": "write"})
    assert tokens.token(installation, REPO, {"issues": "write"}) == first and tokens.minted == 1
    clock[0] += 3600 - 200  # within five minutes of expiry
    assert tokens.token(installation, REPO, {"issues": "write"}) != first and tokens.minted == 2


def test_redeliveries_do_nothing_also_after_a_restart(make_app):
    app = make_app()
    payload = with_installation(labeled(), app.github)
    assert app.deliver("issues", payload, delivery="same-id").status_code == 202
    assert app.deliver("issues", payload, delivery="same-id").json() == {"duplicate": "same-id"}
    app.settle()
    app.stop()
    restarted = make_app(app.github, database=app.settings.database)
    assert restarted.deliver("issues", payload, delivery="same-id").status_code == 200
    restarted.settle()
    assert len(app.github.dispatches(REPO)) == 1


def test_a_delivery_cut_short_by_a_restart_is_finished_at_start_up(seeded, make_app, tmp_path):
    github = seeded()
    database = tmp_path / "crashed.sqlite3"
    Store(database).claim_delivery("interrupted", "issues", with_installation(labeled(), github))
    app = make_app(github, database=database)
    app.settle()
    assert [d.inputs["correlation_id"] for d in github.dispatches(REPO)] == ["interrupted"]


def test_unauthorised_people_and_bots_never_dispatch(make_app):
    app = make_app()
    app.deliver("issues", with_installation(labeled(sender="visitor"), app.github))
    comment = load_payload("issue_comment.created", comment__body="/fixloop fix")
    comment["repository"] = labeled()["repository"]
    comment["sender"].update(login="renovate[bot]", type="Bot")
    app.deliver("issue_comment", with_installation(comment, app.github))
    app.settle()
    assert app.github.dispatches(REPO) == []
    (refusal,) = app.github.comments(REPO, 1)
    assert "@visitor" in refusal.body and "write access" in refusal.body


def test_one_active_session_per_target(make_app):
    app = make_app()
    app.deliver("issues", with_installation(labeled(), app.github))
    app.settle()
    app.deliver("issues", with_installation(labeled(), app.github))
    app.settle()
    assert len(app.github.dispatches(REPO)) == 1
    assert "already working on #1" in app.github.comments(REPO, 1)[-1].body


def failed_ci(github: FakeGitHub, run_id: int) -> dict:
    payload = load_payload("workflow_run.completed")
    payload["repository"] = labeled()["repository"]
    payload["workflow_run"].update(id=run_id, conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch="main", head_sha="a" * 40, head_repository={"full_name": REPO})
    payload["sender"].update(login="maintainer", type="User")
    return with_installation(payload, github)


def test_automatic_ci_sessions_are_capped_per_branch_and_a_green_run_resets_the_cap(make_app):
    app = make_app()
    for run_id in (101, 102, 103):
        app.deliver("workflow_run", failed_ci(app.github, run_id))
        app.settle()
    dispatched = app.github.dispatches(REPO)
    assert [d.inputs["target"] for d in dispatched] == ["101", "102"]
    assert dispatched[0].inputs["head"] == f"main@{'a' * 40}" and dispatched[0].inputs["kind"] == "ci_failure"
    green = failed_ci(app.github, 104)
    green["workflow_run"]["conclusion"] = "success"
    app.deliver("workflow_run", green)
    app.deliver("workflow_run", failed_ci(app.github, 105))
    app.settle()
    assert [d.inputs["target"] for d in app.github.dispatches(REPO)] == ["101", "102", "105"]


def test_dispatch_is_retried_and_a_final_failure_is_said_in_a_comment(make_app):
    app = make_app()
    app.github.inject("POST", r".*/dispatches$", 502, times=1)
    app.deliver("issues", with_installation(labeled(), app.github))
    app.settle()
    assert len(app.github.dispatches(REPO)) == 1, "one 502, then the retry went through"

    second = make_app()
    second.github.inject("POST", r".*/dispatches$", 503, times=20)
    second.deliver("issues", with_installation(labeled(), second.github))
    second.settle()
    assert second.github.dispatches(REPO) == []
    assert "could not start its workflow" in second.github.comments(REPO, 1)[-1].body
    (session,) = second.api("GET", "/api/sessions").json()
    assert session["status"] == "failed"


def test_without_run_details_the_run_is_found_by_its_correlation_id(make_app):
    app = make_app(supports_run_details=False)  # like GitHub Enterprise Server
    app.deliver("issues", with_installation(labeled(), app.github), delivery="ghes-delivery")
    app.settle()
    (dispatch,) = app.github.dispatches(REPO)
    (session,) = app.api("GET", "/api/sessions").json()
    assert session["run_id"] == dispatch.run_id and "fixloop is on it" in app.github.comments(REPO, 1)[-1].body


def test_sessions_follow_their_workflow_runs(make_app):
    app = make_app(supports_run_details=True)
    app.deliver("issues", with_installation(labeled(), app.github), delivery="tracked")
    app.settle()
    (dispatch,) = app.github.dispatches(REPO)
    done = load_payload("workflow_run.completed")
    done["repository"] = labeled()["repository"]
    done["workflow_run"].update(id=dispatch.run_id, conclusion="success", path=".github/workflows/fixloop.yml",
                                display_title="fixloop issue #1 (tracked)")
    app.deliver("workflow_run", with_installation(done, app.github))
    pull = load_payload("pull_request_review_comment.created")["pull_request"]
    pull.update(body="<!-- fixloop correlation=tracked -->\nfixloop proposes", html_url="https://github.test/octo/calc/pull/7")
    app.deliver("pull_request", with_installation({"action": "opened", "pull_request": pull,
                                                   "repository": labeled()["repository"],
                                                   "sender": {"login": "fixloop[bot]", "type": "Bot"}}, app.github))
    app.settle()
    (session,) = app.api("GET", "/api/sessions").json()
    assert (session["status"], session["conclusion"]) == ("completed", "success")
    assert session["pull_request_url"] == "https://github.test/octo/calc/pull/7"


def test_the_sessions_api(make_app):
    app = make_app(supports_run_details=True)
    assert app.api("POST", "/api/sessions", token=None, json={}).status_code == 401
    assert app.api("POST", "/api/sessions", token="wrong", json={}).status_code == 401
    bad = app.api("POST", "/api/sessions", json={"repository": REPO, "kind": "rm -rf", "target": 1})
    assert bad.status_code == 422
    created = app.api("POST", "/api/sessions", json={"repository": REPO, "kind": "issue", "target": 1,
                                                     "instructions": "Keep the API stable.", "requester": "ci-bot"})
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["status"] == "dispatched" and session["run_url"]
    (dispatch,) = app.github.dispatches(REPO)
    assert dispatch.inputs["instructions"] == "Keep the API stable." and dispatch.inputs["requester"] == "ci-bot"
    assert app.api("GET", f"/api/sessions/{session['id']}").json()["id"] == session["id"]
    assert app.api("GET", "/api/sessions/ses_nope").status_code == 404
    assert [s["id"] for s in app.api("GET", f"/api/sessions?repo={REPO}").json()] == [session["id"]]
    assert app.api("GET", "/api/sessions?repo=other/repo").json() == []
    busy = app.api("POST", "/api/sessions", json={"repository": REPO, "kind": "issue", "target": 1})
    assert busy.status_code == 409 and "still active" in busy.json()["detail"]


def test_retry_button_on_a_fixloop_check_run_dispatches_again(make_app):
    app = make_app()
    payload = load_payload("check_run.requested_action")
    payload["repository"] = labeled()["repository"]
    payload["check_run"].update(name="fixloop", external_id="issue:1", app={"slug": "fixloop", "id": TEST_APP_ID})
    payload["requested_action"] = {"identifier": "retry"}
    payload["sender"].update(login="maintainer", type="User")
    app.deliver("check_run", with_installation(payload, app.github))
    app.settle()
    (dispatch,) = app.github.dispatches(REPO)
    assert dispatch.inputs["kind"] == "issue" and dispatch.inputs["target"] == "1"


def test_installations_are_recorded_with_a_setup_hint(seeded, make_app, caplog):
    github = seeded()
    github.add_repo("octo/bare")  # installed, but nobody copied the workflow there
    app = make_app(github)
    payload = load_payload("installation.created")
    payload["installation"]["id"] = github.installation_id("octo")
    payload["repositories"] = [{"full_name": name, "name": name.split("/")[1], "id": 1, "node_id": "x",
                                "private": False} for name in (REPO, "octo/bare")]
    with caplog.at_level("WARNING", logger="fixloop"):
        app.deliver("installation", payload)
        app.settle()
    assert app.service.store.installation_repositories(payload["installation"]["id"]) == ["octo/bare", REPO]
    hints = [r.getMessage() for r in caplog.records if "setup hint" in r.getMessage()]
    assert len(hints) == 1 and "octo/bare has no .github/workflows/fixloop.yml" in hints[0]


def test_the_apps_slug_is_looked_up_when_not_configured(make_app):
    app = make_app(app_slug=None)
    assert app.service.processor.app_slug == "fixloop"
    assert any(r.path == "/app" for r in app.github.requests)


def _burst(make_app) -> list[float]:
    """60 deliveries at once; how long each waited for its answer."""
    app = make_app()
    payload = with_installation(labeled(sender="visitor"), app.github)  # refused: cheap to process
    timings: list[float] = []

    def send() -> None:
        started = time.perf_counter()
        assert app.deliver("issues", payload).status_code == 202
        timings.append(time.perf_counter() - started)

    threads = [threading.Thread(target=send) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.settle()
    return timings


def test_a_burst_of_deliveries_is_answered(make_app):
    assert len(_burst(make_app)) == 60


@pytest.mark.timing
def test_a_burst_of_deliveries_is_answered_fast(make_app):
    timings = _burst(make_app)
    assert max(timings) < 1.0, f"slowest answer took {max(timings):.2f} s"


def test_settings_errors_say_what_to_set(tmp_path, github_app_key):
    from bot.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        AppSettings.from_environ({"APP_ID": "12", "PRIVATE_KEY": "not a key", "GITHUB_API_URL": "api.github.com"})
    message = str(error.value)
    assert "not a readable PEM private key" in message and "WEBHOOK_SECRET must be set" in message
    assert "GITHUB_API_URL must be a URL" in message
    key_file = tmp_path / "app.pem"
    key_file.write_text(github_app_key.private_pem)
    settings = AppSettings.from_environ({"APP_ID": "12", "PRIVATE_KEY_PATH": str(key_file), "WEBHOOK_SECRET": "s",
                                         "FIXLOOP_DB": str(tmp_path / "db.sqlite3")})
    assert settings.private_key.startswith("-----BEGIN") and settings.database == Path(tmp_path / "db.sqlite3")
