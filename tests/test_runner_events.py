"""The runner reports its session to the App, authenticated by the workflow run's OIDC token: the App
verifies the token (signature by the issuer's published key, issuer, audience, expiry) and that it comes
from the run of the session it dispatched; each token and each event is taken once. Without reports, the
App reads the session's report.json from the run's artifact. Real `fixloop serve` on loopback, the fake
GitHub, and a loopback OIDC issuer that mints tokens as GitHub's does."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
import responses

from bot.action.app_report import AppReporter
from bot.app.server import Service, create_app
from bot.app.settings import AppSettings
from bot.app.store import Store
from bot.secrets import Redactor
from bot.task import RUN_EVENTS_PATH, Origin, Ref, Task, from_inputs, to_inputs
from tests.fakes.actions_oidc import FakeActionsOIDC
from tests.fakes.github.fixture import LOOPBACK_POLICY, TEST_APP_ID
from tests.fakes.live_server import LiveServer, free_port
from tests.fakes.messages_api import MessagesAPIServer
from tests.fixtures import load_payload
from tests.test_action_e2e import DONE, RIGHT_AT_ONCE, Runner
from tests.test_app_server import API_TOKEN, REPO, SECRET, App, labeled, with_installation

OTHER = "octo/other"


@pytest.fixture
def oidc():
    with FakeActionsOIDC() as issuer:
        yield issuer


class ReportingApp(App):
    def __init__(self, github, settings, oidc: FakeActionsOIDC) -> None:
        super().__init__(github, settings)
        self.oidc = oidc

    def dispatched_session(self) -> tuple[str, int, str]:
        """An issue session the App dispatched: (session id, its run id, its correlation id)."""
        assert self.deliver("issues", with_installation(labeled(), self.github)).status_code == 202
        self.settle()
        (session,) = self.api("GET", "/api/sessions").json()
        assert session["run_id"], session
        return session["id"], session["run_id"], session["correlation_id"]

    def post(self, token: str | None, body: dict) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.url}{RUN_EVENTS_PATH}", json=body, headers=headers, timeout=10)

    def token(self, run_id: int, repository: str = REPO, **options) -> str:
        return self.oidc.mint(repository, run_id, audience=self.settings.public_url, **options)

    def session(self, session_id: str) -> dict:
        return self.api("GET", f"/api/sessions/{session_id}").json()


@pytest.fixture
def app_on(github_app_key, tmp_path, oidc):
    """A function that starts the App, with runner reports on, against a fake GitHub."""
    apps: list[ReportingApp] = []

    def start(github) -> ReportingApp:
        port = free_port()
        settings = AppSettings(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, webhook_secret=SECRET,
                               api_url=github.url, database=tmp_path / "fixloop.sqlite3", api_token=API_TOKEN,
                               app_slug="fixloop", public_url=f"http://127.0.0.1:{port}", oidc_issuer=oidc.url)
        app = ReportingApp(github, settings, oidc)
        app.service = Service(settings, store=Store(settings.database), policy=LOOPBACK_POLICY)
        app.live = LiveServer(create_app(settings, app.service), port=port).__enter__()
        app.url = app.live.url
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()


@pytest.fixture
def reporting_app(make_fake_github, app_on):
    github = make_fake_github()
    github.add_repo(REPO, files={".github/fixloop.yml": "validate: [python -m pytest -q]\n", "calc.py": "x = 1\n"})
    github.add_repo(OTHER, files={"README.md": "other\n"})
    github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
    github.add_installation("octo", repositories=[REPO, OTHER])
    github.set_permission(REPO, "maintainer", "write")
    github.add_issue(REPO, "add() subtracts", "add(2, 3) returns -1.", user="reporter")
    return app_on(github)


def event(correlation: str, seq: int, kind: str, **data) -> dict:
    return {"correlation_id": correlation, "seq": seq, "type": kind, "data": data}


def test_a_runner_reports_as_it_goes_and_the_app_records_fixloops_own_ending(reporting_app, oidc):
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    warnings: list[str] = []
    reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": app.url, **oidc.job_environment(REPO, run_id)},
                                        correlation, redactor=Redactor(["sk-secret-value-123"]), warn=warnings.append)
    assert reporter is not None
    reporter.post("iteration_started", {"n": 1})
    reporter.post("model_called", {"iteration": 1, "turn": 1, "session_cost_usd": 0.0123,
                                   "text": "key sk-secret-value-123"})
    reporter.post("changes_made", {"iteration": 1, "diff_stat": " calc.py | 2 +-", "diff": "-a - b\n+a + b\n"})
    reporter.close()
    assert warnings == []
    live = app.session(session_id)
    assert (live["status"], live["iterations"], live["cost_usd"], live["ending"]) == ("in_progress", 1, 0.0123, None)

    reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": app.url, **oidc.job_environment(REPO, run_id)},
                                        correlation, redactor=Redactor(), warn=warnings.append)
    reporter._seq = 3  # the same session's runner goes on numbering
    reporter.post("finished", {"status": "not_validated", "reason": "limit reached: 3 iterations", "cost_usd": 0.05,
                               "tokens": 12_345, "iterations": 3, "pull_request_url": None, "escalation": "limit"})
    reporter.close()
    ended = app.session(session_id)
    assert (ended["ending"], ended["ending_reason"], ended["cost_usd"], ended["tokens"], ended["iterations"],
            ended["escalation"]) == ("not_validated", "limit reached: 3 iterations", 0.05, 12_345, 3, "limit")
    metrics = requests.get(f"{app.url}/metrics", timeout=5).text
    assert 'fixloop_session_endings{ending="not_validated"} 1' in metrics
    assert 'fixloop_session_escalations{reason="limit"} 1' in metrics
    events = app.service.store.events(session_id)
    assert [e.type for e in events] == ["iteration_started", "model_called", "changes_made", "finished"]
    assert "sk-secret-value-123" not in json.dumps([e.data for e in events])  # redacted before it left the runner
    assert len(oidc.minted) == 4 and len({claims["jti"] for claims in oidc.minted}) == 4  # a fresh token each
    assert all(claims["aud"] == app.url for claims in oidc.minted)


@pytest.mark.parametrize("forgery, status, says", [
    ("no token", 401, "OIDC token"),
    ("signed by another key", 401, "not valid for this App"),
    ("another issuer", 401, "not valid for this App"),
    ("another audience", 401, "not valid for this App"),
    ("expired", 401, "not valid for this App"),
    ("another repository", 403, "does not prove"),
    ("another run", 403, "does not prove"),
    ("unknown session", 403, "does not prove"),  # the same answer: a token of any repository learns nothing
])
def test_tokens_that_do_not_prove_the_sessions_own_run_are_refused(reporting_app, forgery, status, says):
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    token = {
        "no token": None,
        "signed by another key": app.token(run_id, key=app.oidc.forged_key),
        "another issuer": app.token(run_id, issuer="https://token.actions.githubusercontent.com"),
        "another audience": app.oidc.mint(REPO, run_id, audience="https://elsewhere.example"),
        "expired": app.token(run_id, lifetime=-120),
        "another repository": app.token(run_id, repository=OTHER),
        "another run": app.token(run_id + 1),
        "unknown session": app.token(run_id),
    }[forgery]
    answer = app.post(token, event("nobody" if forgery == "unknown session" else correlation, 0, "finished",
                                   status="validated", reason="forged"))
    assert answer.status_code == status and says in answer.json()["error"], answer.text
    assert REPO not in answer.text and OTHER not in answer.text
    assert app.service.store.events(session_id) == []
    assert app.session(session_id)["ending"] is None
    assert "fixloop_runner_events_total{result=\"refused\"} 1.0" in requests.get(f"{app.url}/metrics", timeout=5).text


def test_a_replayed_token_or_event_is_refused_and_changes_nothing(reporting_app):
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    token = app.token(run_id)
    assert app.post(token, event(correlation, 0, "iteration_started", n=1)).status_code == 202
    replayed = app.post(token, event(correlation, 1, "finished", status="validated", reason="replayed"))
    assert replayed.status_code == 409 and "used before" in replayed.json()["error"]
    again = app.post(app.token(run_id), event(correlation, 0, "iteration_started", n=7))
    assert again.status_code == 409 and "recorded before" in again.json()["error"]
    assert [(e.seq, e.data) for e in app.service.store.events(session_id)] == [(0, {"n": 1})]
    assert app.session(session_id)["iterations"] == 1 and app.session(session_id)["ending"] is None


def test_a_runner_that_cannot_reach_the_app_carries_on_and_says_so_once(oidc):
    warnings: list[str] = []
    reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": f"http://127.0.0.1:{free_port()}",
                                         **oidc.job_environment(REPO, 1)}, "corr-1", redactor=Redactor(),
                                        warn=warnings.append)
    assert reporter is not None
    started = time.monotonic()
    for n in range(3):
        reporter.post("iteration_started", {"n": n})
    assert time.monotonic() - started < 1  # queued: the session never waits on the App
    reporter.close()
    assert len(warnings) == 2, warnings
    assert "could not be told about this session" in warnings[0] and "the session goes on" in warnings[0]
    assert "3 of 3 session event(s) did not reach the App" in warnings[1]


def test_an_event_the_app_could_not_take_for_a_passing_reason_is_sent_again_with_a_new_token(oidc):
    app_url = "http://fixloop-app.test"
    warnings: list[str] = []
    with responses.RequestsMock() as mock:
        mock.add_passthru(oidc.url)  # the loopback OIDC issuer mints real tokens
        for status in (503, 202, 403):
            mock.add(responses.POST, app_url + RUN_EVENTS_PATH, status=status)
        reporter = AppReporter.from_environ({"FIXLOOP_APP_URL": app_url, **oidc.job_environment(REPO, 1)}, "corr-1",
                                            redactor=Redactor(), warn=warnings.append)
        assert reporter is not None
        reporter.post("iteration_started", {"n": 1})
        reporter.post("iteration_started", {"n": 2})
        reporter.close()
        posts = [call.request for call in mock.calls if call.request.url.endswith(RUN_EVENTS_PATH)]
    # The 503 is sent again (with a fresh token: each is taken once); the 403 is not.
    assert [json.loads(request.body)["seq"] for request in posts] == [0, 0, 1]
    assert len({request.headers["Authorization"] for request in posts}) == 3
    assert reporter.failed == 1 and len(warnings) == 2 and "HTTP 403" in warnings[0]


def test_without_id_token_write_the_runner_says_what_to_add(oidc):
    warnings: list[str] = []
    assert AppReporter.from_environ({"FIXLOOP_APP_URL": "https://fixloop.example"}, "corr-1", redactor=Redactor(),
                                    warn=warnings.append) is None
    assert len(warnings) == 1 and "permissions: id-token: write" in warnings[0]
    assert AppReporter.from_environ({}, "corr-1", redactor=Redactor(), warn=warnings.append) is None
    assert AppReporter.from_environ({"FIXLOOP_APP_URL": "https://fixloop.example", **oidc.job_environment(REPO, 1)},
                                    None, redactor=Redactor(), warn=warnings.append) is None  # not the App's run
    assert len(warnings) == 1


def test_without_reports_the_app_reads_the_ending_from_the_runs_artifact(reporting_app):
    app = reporting_app
    session_id, run_id, _ = app.dispatched_session()
    report = {"status": "not_validated", "reason": "validation failed: 1 test", "cost_usd": 0.21,
              "iterations": [{}, {}], "usage": {"input_tokens": 900, "output_tokens": 100}}
    app.github.add_artifact(run_id, f"fixloop-session-{run_id}", {"report.json": json.dumps(report)})
    app.github.update_workflow_run(run_id, status="completed", conclusion="neutral")
    payload = load_payload("workflow_run.completed")
    payload["workflow_run"].update(id=run_id, path=".github/workflows/fixloop.yml", conclusion="neutral",
                                   display_title="fixloop issue #1")
    payload["repository"].update(full_name=REPO, name="calc")
    payload["repository"]["owner"]["login"] = "octo"
    assert app.deliver("workflow_run", with_installation(payload, app.github)).status_code == 202
    app.settle()
    ended = app.session(session_id)
    assert (ended["status"], ended["conclusion"], ended["ending"], ended["ending_reason"], ended["cost_usd"],
            ended["tokens"], ended["iterations"]) == ("completed", "neutral", "not_validated",
                                                     "validation failed: 1 test", 0.21, 1000, 2)


def test_fixloop_action_reports_a_task_in_words_to_the_app_as_it_runs(app_on, fake_github, oidc, tmp_path,
                                                                     monkeypatch):
    """`fixloop action` on a dispatched task in words (kind task, on a branch): its events reach the App
    through the OIDC-verified channel, ending with the draft pull request and fixloop's own ending."""
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch)
        app = app_on(fake_github)
        correlation = f"ui-{uuid.uuid4().hex[:8]}"
        session, _ = app.service.store.start_session(repository=REPO, kind="task", target=f"task:main:{correlation}",
                                                     requester="maintainer", correlation_id=correlation,
                                                     active_since=0, title="Make add() add")
        app.service.store.update_session(session.id, status="dispatched", run_id=701)  # the runner's GITHUB_RUN_ID
        payload = load_payload("workflow_dispatch")
        payload["inputs"] = to_inputs(Task(kind="task", title="Make add() add", instructions="add() must add.",
                                           source="@maintainer in fixloop's web UI"),
                                      Origin(repository=REPO, target=Ref(ref="main"), requester="maintainer",
                                             correlation_id=correlation))
        payload["sender"]["login"] = "maintainer"
        api.push(RIGHT_AT_ONCE, DONE)
        code = runner.run("workflow_dispatch", payload, FIXLOOP_APP_URL=app.url, **oidc.job_environment(REPO, 701))
    assert code == 0
    (pull,) = app.github.pulls(REPO)
    assert pull.pull.draft and pull.pull.base_ref == "main" and pull.pull.head_ref.startswith("fixloop/make-add-add-")
    recorded = app.session(session.id)
    assert (recorded["ending"], recorded["iterations"]) == ("validated", 1)
    assert recorded["pull_request_url"].endswith(f"/pull/{pull.number}") and recorded["tokens"] > 0
    kinds = [e.type for e in app.service.store.events(session.id)]
    assert kinds[0] == "session_started" and kinds[-2:] == ["session_ended", "finished"]
    assert {"iteration_started", "model_called", "tool_called", "changes_made", "validation_ran"} <= set(kinds)
    diff = next(e.data for e in app.service.store.events(session.id) if e.type == "changes_made")["diff"]
    assert "+    return a + b" in diff or "+a + b" in diff.replace(" ", "")


def test_events_that_are_not_what_their_kind_holds_are_refused(reporting_app):
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    for seq, (kind, data) in enumerate([
        ("model_called", {"iteration": 1, "turn": 1, "session_cost_usd": -5}),
        ("finished", {"status": "validated", "cost_usd": 1e308}),
        ("iteration_started", {"n": 10**15}),
        ("validation_ran", {"iteration": 1, "result": "all good"}),
    ]):
        answer = app.post(app.token(run_id), event(correlation, seq, kind, **data))
        assert answer.status_code == 422 and f"not a {kind} event" in answer.json()["error"], answer.text
    assert app.service.store.events(session_id) == [] and app.session(session_id)["cost_usd"] is None
    body = json.dumps(event(correlation, 9, "finished", status="validated")).replace('"validated"', "NaN")
    answer = requests.post(f"{app.url}{RUN_EVENTS_PATH}", data=body, timeout=10,
                           headers={"Authorization": f"Bearer {app.token(run_id)}", "Content-Type": "application/json"})
    assert answer.status_code in (400, 422)


def test_a_pull_request_of_another_repository_is_not_taken_and_nothing_comes_after_the_ending(reporting_app):
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    answer = app.post(app.token(run_id), event(correlation, 0, "finished", status="validated", reason="done",
                                               pull_request_url="https://github.com/mallory/phish/pull/1"))
    assert answer.status_code == 202
    assert app.session(session_id)["pull_request_url"] is None and app.session(session_id)["ending"] == "validated"
    late = app.post(app.token(run_id), event(correlation, 1, "iteration_started", n=2))
    assert late.status_code == 409 and "has ended" in late.json()["error"]


def test_a_rerun_of_the_workflow_reports_afresh(reporting_app):
    """A re-run keeps the run id; its events (numbered from 0 again) are its own, and the page shows them."""
    app = reporting_app
    session_id, run_id, correlation = app.dispatched_session()
    assert app.post(app.token(run_id), event(correlation, 0, "iteration_started", n=1)).status_code == 202
    again = app.post(app.token(run_id, run_attempt="2"), event(correlation, 0, "iteration_started", n=1))
    assert again.status_code == 202, again.text
    assert app.post(app.token(run_id, run_attempt="2"), event(correlation, 1, "iteration_started", n=2)
                    ).status_code == 202
    assert [e.data["n"] for e in app.service.store.events(session_id)] == [1, 2]


def test_a_session_takes_a_bounded_number_of_events(reporting_app):
    store = reporting_app.service.store
    session_id, _, _ = reporting_app.dispatched_session()
    assert [store.record_event(session_id, n, "iteration_started", {"n": n}, limit=3) for n in range(4)] == [
        True, True, True, None]


def test_retry_with_continue_through_the_api_dispatches_the_task_going_on_from_its_kept_work(reporting_app):
    app = reporting_app
    session_id, _, _ = app.dispatched_session()
    assert app.api("POST", f"/api/sessions/{session_id}/stop?requester=maintainer").status_code == 200
    answer = app.api("POST", f"/api/sessions/{session_id}/retry?requester=maintainer&continue=true")
    assert answer.status_code == 200, answer.text
    first, again = app.github.dispatches(REPO)
    assert first.inputs["head"] == "" and json.loads(again.inputs["head"]) == {"resume": True}
    assert again.inputs["target"] == first.inputs["target"] and again.inputs["kind"] == "issue"
    task, _ = from_inputs(again.inputs, repository=REPO, sender="fixloop[bot]")
    assert task.resume and "retrying" in task.source
