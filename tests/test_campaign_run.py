"""Running campaigns. In the runner: one target of a campaign, as the App dispatches it (kind
`campaign`), goes codemod → agent → the campaign's validation → a draft pull request on the
campaign's branch. In the App: a campaign started through the API fans its targets out as workflow
runs, never more than `concurrency` at once, follows them as their runs end, keeps a tracking
issue, and is steered (pause, resume after a pilot, cancel, retry)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from bot.app.campaign_store import CampaignRecord, CampaignTarget
from bot.app.campaigns import render_tracking
from bot.app.server import Service, create_app
from bot.app.settings import AppSettings
from bot.app.store import Store
from bot.cli import main
from bot.github.events import signature_for
from bot.task import CampaignWork, Origin, Task, to_inputs
from tests.conftest import run_git
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import LOOPBACK_POLICY, TEST_APP_ID, AppKey
from tests.fakes.live_server import LiveServer
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, text
from tests.fixtures import load_payload
from tests.test_action_e2e import REPO, Runner, checks
from tests.test_app_restart import Server, replicas  # noqa: F401  (a fixture)
from tests.test_app_server import API_TOKEN, SECRET

MONOREPO = {
    ".github/fixloop.yml": "validate: [python -m pytest -q]\n",
    "packages/api/lib.py": "def old_api(x):\n    return x * 2\n",
    "packages/api/app.py": "from lib import old_api\n\n\ndef double(x):\n    return old_api(x)\n",
    "packages/api/test_app.py": "from app import double\n\n\ndef test_double():\n    assert double(2) == 4\n",
    "packages/web/lib.py": "def old_api(x):\n    return x\n",
}


def campaign_dispatch(work: CampaignWork, instructions: str) -> dict:
    """The workflow_dispatch event of one campaign target, with the inputs the App sends."""
    task = Task(kind="campaign", title=work.title, instructions=instructions, source="the campaign rename-api")
    payload = load_payload("workflow_dispatch")
    payload["inputs"] = to_inputs(task, Origin(repository=REPO, target=work, requester="maintainer",
                                               correlation_id="cmp_1-t1-a1"))
    payload["sender"]["login"] = "maintainer"
    return payload


def test_a_campaign_target_runs_its_codemod_then_the_agent_and_opens_the_campaigns_draft(tmp_path, fake_github,
                                                                                          monkeypatch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="rename-api", path="packages/api",
                            branch="fixloop/campaign/rename-api/packages-api", title="rename-api: packages/api",
                            body="Part of the campaign `rename-api`.", labels=["campaign"],
                            codemod=["sed -i 's/old_api/new_api/g' app.py"], validation=["python -m pytest -q"])
        # The codemod renamed the call; the library still has the old name: the agent fixes what it broke.
        api.push(Reply([edit("str_replace", "packages/api/lib.py", old_str="def old_api(x):",
                             new_str="def new_api(x):")]), Reply([text("lib.py now offers new_api.")]))
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Rename old_api to new_api.")) == 0
        assert api.violations == []
    prompt = api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "Rename old_api to new_api." in prompt
    assert "ImportError" in prompt or "cannot import name 'new_api'" in prompt, "the codemod's breakage reached it"
    assert "cd packages/api || exit 2; python -m pytest -q" in prompt, "the campaign's validation, in the package"
    (pull,) = fake_github.pulls(REPO)
    assert pull.pull.head_ref == work.branch and pull.pull.draft and pull.title == work.title
    assert pull.body.startswith("Part of the campaign `rename-api`.") and "correlation=cmp_1-t1-a1" in pull.body
    assert "campaign" in pull.labels
    assert "new_api(x)" in runner.origin.show(work.branch, "packages/api/app.py"), "the codemod's change is kept"
    assert "def new_api" in runner.origin.show(work.branch, "packages/api/lib.py")
    assert runner.origin.show(work.branch, "packages/web/lib.py") == MONOREPO["packages/web/lib.py"]


def test_a_codemod_that_fails_ends_the_target_as_an_error_before_any_model_call(tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="rename-api", path="packages/api", branch="fixloop/campaign/x",
                            title="rename-api: packages/api", codemod=["exit 3"])
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Rename.")) == 3
        assert api.requests == [] and fake_github.pulls(REPO) == []
    assert runner.outputs_map()["status"] == "error"
    summary = checks(fake_github)["fixloop"].output_summary or ""
    assert "codemod command `cd packages/api || exit 2; exit 3` exited with 3" in summary


@pytest.mark.parametrize("branch", ["main", "../evil"])
def test_a_campaign_branch_that_is_the_default_or_unsafe_is_refused(tmp_path, fake_github, monkeypatch, branch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="c", branch="x", title="c: octo/calc")
        payload = campaign_dispatch(work, "Change.")
        unsafe = json.dumps({"branch": branch})[1:-1]
        payload["inputs"]["head"] = payload["inputs"]["head"].replace('"branch":"x"', unsafe)
        assert runner.run("workflow_dispatch", payload) == 0
        assert api.requests == [] and fake_github.pulls(REPO) == []


# ---------------------------------------------------------------------------------------------- the App
CAMPAIGN_REPOS = [f"platform/svc-{n:02d}" for n in range(1, 31)]


class FakeActions:
    """GitHub Actions as the campaign sees it: every dispatch starts a run, which ends (`finish`) with the
    conclusion `outcome` gives its repository, announced by a signed `workflow_run` delivery to one of
    the App's replicas. Counts the runs in flight at every dispatch."""

    def __init__(self, github: FakeGitHub, outcome: Callable[[str], str] = lambda repository: "success",
                 report: Callable[[str], dict] | None = None) -> None:
        """`report`: the session's report.json for a repository's run, uploaded as the workflow does (by
        default: validated for a successful run, not validated for a neutral one)."""
        self.github, self.outcome = github, outcome
        self.report = report or (lambda repository: {
            "status": {"success": "validated", "neutral": "not_validated"}.get(self.outcome(repository), "error"),
            "reason": "iteration limit reached: 3 of 3", "cost_usd": None})
        self.lock = threading.Lock()
        self.waiting: list[tuple[str, int, str, dict]] = []  # (repository, run id, title, inputs)
        self.in_flight = self.most_in_flight = 0
        self.dispatched: list[dict] = []
        self.ended: list[tuple[str, int, str]] = []  # (repository, run id, title) of the runs ended so far
        self.last_dispatch = time.monotonic()
        github.on_dispatch(self._dispatched)

    def _dispatched(self, dispatch: Any, run: Any) -> None:
        with self.lock:
            self.dispatched.append(dict(dispatch.inputs))
            self.last_dispatch = time.monotonic()
            if dispatch.inputs.get("kind") == "campaign":
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                self.waiting.append((dispatch.repo, run.id, run.display_title, dict(dispatch.inputs)))

    def finish(self, urls: Callable[[], list[str]], *, until: Callable[[], bool], timeout: float = 120,
               batch: int = 1) -> None:
        """End the waiting runs one by one, oldest first, until `until()` holds; each once `batch` runs are
        waiting, or no run was dispatched for a moment (so that the App can fill its slots)."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "the campaign did not finish"
            with self.lock:
                ready = len(self.waiting) >= batch or time.monotonic() - self.last_dispatch > 0.5
                item = self.waiting.pop(0) if self.waiting and ready else None
            if item is None:
                time.sleep(0.02)
                continue
            repository, run_id, title, _ = item
            conclusion = self.outcome(repository)
            self.github.add_artifact(run_id, f"fixloop-session-{run_id}",
                                     {"report.json": json.dumps(self.report(repository)), "trajectory.jsonl": ""})
            self.github.update_workflow_run(run_id, conclusion=conclusion)
            with self.lock:
                self.in_flight -= 1
                self.ended.append((repository, run_id, title))
            self.announce(urls(), repository, run_id, title, conclusion)

    def announce(self, urls: list[str], repository: str, run_id: int, title: str, conclusion: str) -> None:
        """The `workflow_run` delivery of a run that ended, as GitHub sends it."""
        payload = load_payload("workflow_run.completed")
        payload["workflow_run"].update(id=run_id, conclusion=conclusion, status="completed", name="fixloop",
                                       path=".github/workflows/fixloop.yml", display_title=title,
                                       html_url=f"https://github.test/{repository}/actions/runs/{run_id}",
                                       event="workflow_dispatch", head_branch="main")
        owner, name = repository.split("/")
        payload["repository"].update(full_name=repository, name=name)
        payload["repository"]["owner"]["login"] = owner
        payload["installation"] = {"id": self.github.installation_id(owner)}
        deliver(urls, "workflow_run", payload)


def deliver(urls: list[str], event: str, payload: dict) -> None:
    """A signed delivery to the first replica that answers (GitHub retries nothing; a load balancer would
    route around a dead replica)."""
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json",
               "X-Hub-Signature-256": signature_for(SECRET, body)}
    for url in urls:
        try:
            if requests.post(f"{url}/webhook", data=body, headers=headers, timeout=10).status_code == 202:
                return
        except requests.RequestException:
            continue
    raise AssertionError(f"no replica took the {event} delivery")


def campaign_github(make_fake_github: Callable[..., FakeGitHub], repositories: list[str]) -> FakeGitHub:
    github = make_fake_github(supports_run_details=True)
    for repository in repositories:
        github.add_repo(repository, files={".github/fixloop.yml": "validate: [python -m pytest -q]\n"},
                        topics=["python"] if repository.endswith(("1", "3", "5")) else [], language="Python")
        github.add_workflow(repository, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
    github.add_repo("platform/tracking")
    return github


def campaign_file(targets: str, *, concurrency: int = 4, extra: str = "") -> str:
    return (f"name: requests-3\ninstructions: Move from requests 2 to requests 3.\ntracking: platform/tracking\n"
            f"concurrency: {concurrency}\n{targets}{extra}")


def api(url: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30,
                            **kwargs)


@pytest.fixture
def app_on(github_app_key: AppKey, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """An in-process App (`fixloop serve`'s ASGI app on loopback) on `database`."""
    started: list[Any] = []

    def start(github: FakeGitHub, database: str | Path | None = None) -> Any:
        settings = AppSettings(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, webhook_secret=SECRET,
                               api_url=github.url, database=database or tmp_path / "fixloop.sqlite3",
                               api_token=API_TOKEN, app_slug="fixloop", campaign_pace=0.0)
        service = Service(settings, store=Store(settings.database), policy=LOOPBACK_POLICY)
        service.campaigns.tracking_every = 0.0
        live = LiveServer(create_app(settings, service)).__enter__()
        started.append((live, service))
        return live, service

    yield start
    for live, service in started:
        live.__exit__(None, None, None)
        service.store.close()


def test_a_campaign_fans_out_within_its_concurrency_and_its_tracking_issue_lists_every_outcome(
        make_fake_github, app_on) -> None:
    repositories = CAMPAIGN_REPOS[:8]
    github = campaign_github(make_fake_github, repositories)
    actions = FakeActions(github, outcome=lambda repository: "neutral" if repository.endswith("04") else "success")
    live, service = app_on(github)
    targets = "targets:\n  repositories: [" + ", ".join(repositories) + "]\n"
    started = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(targets, concurrency=3),
                                                            "requester": "platform-lead"})
    assert started.status_code == 201, started.text
    campaign = started.json()["id"]

    def finished() -> bool:
        return api(live.url, "GET", f"/api/campaigns/{campaign}").json()["status"] == "finished"

    actions.finish(lambda: [live.url], until=finished, batch=3)
    service.drain()
    shown = api(live.url, "GET", f"/api/campaigns/{campaign}").json()
    assert actions.most_in_flight == 3, "concurrency reached and never exceeded"
    assert shown["counts"]["validated"] == 7 and shown["counts"]["not_validated"] == 1
    inputs = [d for d in actions.dispatched if d["kind"] == "campaign"]
    assert sorted(json.loads(d["head"])["title"] for d in inputs) == sorted(f"requests-3: {r}" for r in repositories)
    assert len({d["correlation_id"] for d in inputs}) == 8
    # The tracking issue, written once the last target ended, lists every target with its outcome.
    wait_for(lambda: "finished" in tracking_issue(github).body)
    body = tracking_issue(github).body
    for repository in repositories:
        state = "not validated" if repository.endswith("04") else "validated"
        assert f"| <code>{repository}</code> | {state} |" in body
    assert len(github.issues("platform/tracking")) == 1, "one tracking issue, edited in place"
    metrics = requests.get(f"{live.url}/metrics", timeout=10).text
    assert 'fixloop_campaign_targets{campaign="requests-3",state="validated"} 7' in metrics
    # A failed target is retried alone, as a new attempt; its earlier run, ending again, changes nothing.
    retried = api(live.url, "POST", f"/api/campaigns/{campaign}/retry-failed?from_patch=true").json()
    assert retried["counts"]["queued"] + retried["counts"]["dispatching"] + retried["counts"]["running"] == 1
    (old,) = [(run_id, title) for repository, run_id, title in actions.ended if repository.endswith("04")]
    actions.announce([live.url], "platform/svc-04", *old, "neutral")
    service.drain()
    again_shown = api(live.url, "GET", f"/api/campaigns/{campaign}").json()
    assert again_shown["counts"]["not_validated"] == 0, "the earlier attempt's run does not end the retry"
    actions.outcome = lambda repository: "success"
    actions.finish(lambda: [live.url], until=finished)
    again = [d for d in actions.dispatched if d["kind"] == "campaign"][8:]
    assert [json.loads(d["head"])["title"] for d in again] == ["requests-3: platform/svc-04"]
    assert again[0]["correlation_id"].endswith("-a2")
    assert json.loads(again[0]["head"])["resume_run"] == old[0], "it goes on from the kept work of the first run"


def test_a_pilot_waits_for_a_person_and_pause_and_cancel_stop_dispatching(make_fake_github, app_on) -> None:
    repositories = CAMPAIGN_REPOS[:6]
    github = campaign_github(make_fake_github, repositories)
    actions = FakeActions(github)
    live, _ = app_on(github)
    targets = "targets:\n  query: {org: platform, topic: python}\n"
    started = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(targets, extra="pilot: 1\n")})
    assert started.status_code == 201, started.text
    assert [t["target"] for t in started.json()["targets"]] == ["platform/svc-01", "platform/svc-03",
                                                                "platform/svc-05"], "the query, through the API"
    campaign = started.json()["id"]

    def shown() -> dict:
        return api(live.url, "GET", f"/api/campaigns/{campaign}").json()

    actions.finish(lambda: [live.url], until=lambda: shown()["counts"]["validated"] == 1)
    time.sleep(1.5)  # three looks of the dispatcher: nothing more may start
    assert shown()["status"].startswith("waiting after the pilot") and len(actions.dispatched) == 1
    api(live.url, "POST", f"/api/campaigns/{campaign}/pause")
    api(live.url, "POST", f"/api/campaigns/{campaign}/resume")  # a person continues after the pilot
    wait_for(lambda: len(actions.dispatched) == 3)
    assert api(live.url, "POST", f"/api/campaigns/{campaign}/cancel").json()["status"] == "cancelled"
    assert api(live.url, "POST", f"/api/campaigns/{campaign}/resume").status_code == 409
    assert api(live.url, "POST", f"/api/campaigns/{campaign}/explode").status_code == 404


def test_a_campaign_stops_dispatching_once_its_budget_is_spent_by_the_sessions_reports(make_fake_github,
                                                                                       app_on) -> None:
    """What each target cost comes from its session's own report (the run's artifact), with its ending and
    reason; once the spending reaches `max_cost_usd`, no more targets start."""
    repositories = CAMPAIGN_REPOS[:6]
    github = campaign_github(make_fake_github, repositories)
    actions = FakeActions(github, outcome=lambda repository: "success", report=lambda repository: (
        {"status": "not_validated", "reason": "iteration limit reached: 2 of 2", "cost_usd": 0.4}
        if repository.endswith("02") else {"status": "validated", "reason": "validation passed", "cost_usd": 0.4}))
    live, _ = app_on(github)
    targets = "targets:\n  repositories: [" + ", ".join(repositories) + "]\n"
    started = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(
        targets, concurrency=1, extra="max_cost_usd: 1.0\n")})
    campaign = started.json()["id"]

    def shown() -> dict:
        return api(live.url, "GET", f"/api/campaigns/{campaign}").json()

    actions.finish(lambda: [live.url], until=lambda: shown()["status"].startswith("stopped"))
    time.sleep(1.5)  # three looks of the dispatcher: nothing more may start
    final = shown()
    assert final["status"] == "stopped: the budget of $1.00 is spent" and final["cost_usd"] == pytest.approx(1.2)
    assert final["counts"] == {"queued": 3, "dispatching": 0, "running": 0, "validated": 2, "not_validated": 1,
                               "failed": 0, "cancelled": 0}
    assert len(actions.dispatched) == 3
    failed = next(t for t in final["targets"] if t["target"] == "platform/svc-02")
    assert failed["reason"] == "iteration limit reached: 2 of 2", "the session's own reason, not the run's conclusion"
    wait_for(lambda: "$0.40" in tracking_issue(github).body and "stopped" in tracking_issue(github).body)


def test_a_monorepo_campaign_runs_one_session_per_package_on_a_branch_each(make_fake_github, app_on) -> None:
    github = campaign_github(make_fake_github, ["platform/mono"])
    actions = FakeActions(github)
    live, _ = app_on(github)
    packages = [f"packages/p{n}" for n in range(1, 6)]
    targets = "targets:\n  repository: platform/mono\n  paths: [" + ", ".join(packages) + "]\n"
    extra = "branch: fixloop/requests-3/{path}\ncodemod: [\"sed -i s/requests==2/requests==3/ requirements.txt\"]\n"
    started = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(targets, concurrency=5, extra=extra)})
    assert started.status_code == 201, started.text
    campaign = started.json()["id"]
    actions.finish(lambda: [live.url], until=lambda: api(live.url, "GET", f"/api/campaigns/{campaign}").json()[
        "status"] == "finished")
    works = [json.loads(d["head"]) for d in actions.dispatched]
    assert sorted(w["path"] for w in works) == packages
    assert sorted(w["branch"] for w in works) == [f"fixloop/requests-3/{p}" for p in packages]
    assert all(w["codemod"] == ["sed -i s/requests==2/requests==3/ requirements.txt"] for w in works)


def test_a_campaign_the_app_cannot_serve_is_refused_with_the_reason(make_fake_github, app_on) -> None:
    github = campaign_github(make_fake_github, CAMPAIGN_REPOS[:1])
    live, _ = app_on(github)
    missing = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(
        "targets:\n  repositories: [platform/svc-01, elsewhere/repo]\n")})
    assert missing.status_code == 422 and "elsewhere/repo" in missing.json()["detail"]
    invalid = api(live.url, "POST", "/api/campaigns", json={"file": "name: x\n"})
    assert invalid.status_code == 422 and "instructions" in invalid.json()["detail"]
    assert api(live.url, "GET", "/api/campaigns").json() == []


def tracking_issue(github: FakeGitHub) -> Any:
    """The campaign's tracking issue (one with an empty body until it is opened)."""
    issues = github.issues("platform/tracking")
    assert len(issues) <= 1, "one tracking issue, edited in place"
    return issues[0] if issues else SimpleNamespace(body="")


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.05)


def test_thirty_repositories_through_two_replicas_on_postgres_one_killed_and_restarted_midway(
        make_fake_github, replicas: Callable[..., list[Server]], postgres_url: str) -> None:  # noqa: F811
    """The campaign is durable in the database: a replica killed while it dispatches is restarted later, the
    other carries on meanwhile; every target is dispatched exactly once, `concurrency` is never exceeded,
    and the tracking issue ends listing all 30 targets with their outcome."""
    repositories = CAMPAIGN_REPOS
    github = campaign_github(make_fake_github, repositories)
    actions = FakeActions(github)
    doomed, survivor = replicas(github, postgres_url)
    for replica in (doomed, survivor):
        replica.env.update(FIXLOOP_CAMPAIGN_PACE="0", WEBHOOK_SECRET=SECRET, FIXLOOP_API_TOKEN=API_TOKEN)
        replica.start()
    targets = "targets:\n  query: {org: platform, name: svc-*}\n"
    started = api(doomed.url, "POST", "/api/campaigns", json={"file": campaign_file(targets, concurrency=4)})
    assert started.status_code == 201, started.text
    campaign = started.json()["id"]
    assert len(started.json()["targets"]) == 30

    def alive() -> list[str]:
        return [r.url for r in (doomed, survivor) if r.process is not None and r.process.poll() is None]

    def done(count: int) -> Callable[[], bool]:
        return lambda: api(alive()[0], "GET", f"/api/campaigns/{campaign}").json()["counts"]["validated"] >= count

    actions.finish(alive, until=done(10), batch=4)
    doomed.kill()
    actions.finish(alive, until=done(20), batch=4)
    doomed.start()  # the same database: it takes its share again
    actions.finish(alive, until=done(30), batch=4)

    campaign_runs = [d for d in actions.dispatched if d["kind"] == "campaign"]
    titles = [json.loads(d["head"])["title"] for d in campaign_runs]
    assert sorted(titles) == sorted(f"requests-3: {r}" for r in repositories), "each target exactly once"
    assert 1 <= actions.most_in_flight <= 4, f"{actions.most_in_flight} runs at once"
    wait_for(lambda: "finished" in tracking_issue(github).body)
    body = tracking_issue(github).body
    assert all(f"| <code>{repository}</code> | validated |" in body for repository in repositories)
    replica_ids = survivor.db("SELECT COUNT(DISTINCT id) FROM replicas")[0][0]
    print(f"30 targets, at most {actions.most_in_flight} runs at once, {replica_ids} replicas alive at the end")


def test_the_campaign_command_starts_shows_and_steers_through_the_apps_api(make_fake_github, app_on, tmp_path,
                                                                           monkeypatch, capsys) -> None:
    github = campaign_github(make_fake_github, CAMPAIGN_REPOS[:2])
    FakeActions(github)
    live, _ = app_on(github)
    path = tmp_path / "campaign.yml"
    path.write_text(campaign_file("targets:\n  repositories: [platform/svc-01, platform/svc-02]\n", concurrency=1))
    monkeypatch.setenv("FIXLOOP_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("FIXLOOP_APP_URL", live.url)
    assert main(["campaign", "start", str(path), "--json"]) == 0
    campaign = json.loads(capsys.readouterr().out)["id"]
    wait_for(lambda: api(live.url, "GET", f"/api/campaigns/{campaign}").json()["counts"]["running"] == 1)
    assert main(["campaign", "pause", campaign]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{campaign}  requests-3: paused, 1 queued, 1 running")
    assert "running        platform/svc-01" in shown and "queued         platform/svc-02" in shown
    assert main(["campaign", "status"]) == 0 and f"{campaign}  requests-3: paused" in capsys.readouterr().out
    assert main(["campaign", "cancel", "cmp_nonexistent"]) == 2
    assert capsys.readouterr().err.strip() == "fixloop: the App refused: no campaign cmp_nonexistent"
    monkeypatch.setenv("FIXLOOP_API_TOKEN", "wrong")
    assert main(["campaign", "status"]) == 2
    assert capsys.readouterr().err.strip() == "fixloop: the App refused: a valid bearer token is required"
    monkeypatch.delenv("FIXLOOP_APP_URL")
    assert main(["campaign", "status"]) == 2 and "--app URL or FIXLOOP_APP_URL" in capsys.readouterr().err


def test_the_tracking_table_shows_untrusted_text_as_plain_text() -> None:
    """A session's reason comes from the repository (a setup command's output): no mention, link, image,
    comment or code span of it renders in the tracking issue."""
    campaign = CampaignRecord(id="cmp_1", name="c", spec={}, status="running", tracking_repository="o/t",
                              tracking_version=1, tracking_synced=0, pilot_released=False, created=0, updated=0)
    hostile = "<!-- hide --> @octocat [click](https://evil.test) ![x](y) `code` | cell"
    target = CampaignTarget(campaign_id="cmp_1", position=1, repository="o/r", path="a`b", installation_id=1,
                            state="failed", attempt=1, reason=hostile, updated=0)
    spec = {"name": "c", "instructions": "x", "tracking": "o/t", "targets": {"repositories": ["o/r"]}}
    body = render_tracking(campaign.model_copy(update={"spec": spec}), [target])
    row = body.splitlines()[-1]
    for markup in ("<!--", "@octocat", "[click]", "![x]", "`code`", "a`b", "| cell"):
        assert markup not in row, markup
    assert "&lt;!-- hide --&gt; &#64;octocat &#91;click](https://evil.test)" in row


def test_a_target_that_cannot_be_handed_over_fails_alone_instead_of_holding_its_slot(make_fake_github, app_on) -> None:
    github = campaign_github(make_fake_github, CAMPAIGN_REPOS[:2])
    actions = FakeActions(github)
    live, _ = app_on(github)
    huge = "x" * 70_000  # more than GitHub takes as workflow_dispatch inputs
    targets = "targets:\n  repositories: [platform/svc-01, platform/svc-02]\n"
    started = api(live.url, "POST", "/api/campaigns", json={"file": campaign_file(
        targets, concurrency=1, extra=f"pull_request: {{body: '{huge}'}}\n")})
    campaign = started.json()["id"]
    wait_for(lambda: api(live.url, "GET", f"/api/campaigns/{campaign}").json()["status"] == "finished")
    shown = api(live.url, "GET", f"/api/campaigns/{campaign}").json()
    assert shown["counts"]["failed"] == 2 and actions.dispatched == []
    assert all(t["reason"].startswith("dispatch failed: MalformedEvent") for t in shown["targets"])


def test_a_campaign_never_replaces_a_branch_that_is_not_its_own_draft(tmp_path, fake_github, monkeypatch) -> None:
    with MessagesAPIServer() as api_server:
        runner = Runner(tmp_path, fake_github, api_server, monkeypatch, files=MONOREPO)
        workspace = runner.origin.workspace
        run_git(workspace, "push", "-q", "origin", "HEAD:refs/heads/fixloop/campaign/x")  # someone's work
        before = run_git(runner.origin.bare, "rev-parse", "fixloop/campaign/x")
        work = CampaignWork(id="cmp_1", campaign="c", branch="fixloop/campaign/x", title="c: octo/calc")
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Change.")) == 0
        assert api_server.requests == [] and fake_github.pulls(REPO) == []
    assert run_git(runner.origin.bare, "rev-parse", "fixloop/campaign/x") == before


def test_a_campaign_started_and_steered_by_comments_on_its_issue(make_fake_github, app_on) -> None:
    """`/fixloop campaign` on an issue whose body holds the campaign file starts it, when the person who asks
    may write to every target; `status`, `pause` and the others then steer it from the same issue."""
    github = campaign_github(make_fake_github, CAMPAIGN_REPOS[:3])
    actions = FakeActions(github)
    live, service = app_on(github)
    file = campaign_file("targets:\n  repositories: [platform/svc-01, platform/svc-02, platform/svc-03]\n",
                         concurrency=1)
    issue = github.add_issue("platform/tracking", "Move to requests 3", f"The plan:\n\n```yaml\n{file}```\n",
                             user="lead")
    for repository in CAMPAIGN_REPOS[:2]:
        github.set_permission(repository, "lead", "write")
    github.set_permission("platform/tracking", "lead", "write")

    def comment(body: str) -> str:
        payload = load_payload("issue_comment.created", comment__body=body)
        payload["issue"].update(number=issue, body=github.issues("platform/tracking")[0].body, title="Move")
        payload["issue"].pop("pull_request", None)
        payload["repository"].update(full_name="platform/tracking", name="tracking", default_branch="main")
        payload["repository"]["owner"].update(login="platform", type="Organization")
        payload["sender"]["login"] = "lead"
        payload["comment"]["id"] = github.add_issue_comment("platform/tracking", issue, body, user="lead")
        payload["installation"] = {"id": github.installation_id("platform")}
        deliver([live.url], "issue_comment", payload)
        service.drain()
        return [c.body for c in github.comments("platform/tracking", issue) if "fixloop" not in c.body[:9]][-1]

    refused = comment("/fixloop campaign")
    assert "The campaign was not started" in refused and "@lead has no write access to platform/svc-03" in refused
    assert actions.dispatched == []
    github.set_permission("platform/svc-03", "lead", "write")
    started = comment("/fixloop campaign start")
    assert started.startswith("Started campaign `cmp_") and "as @lead asked" in started
    wait_for(lambda: len(actions.dispatched) == 1)
    assert "paused" in comment("/fixloop campaign pause")
    actions.finish(lambda: [live.url], until=lambda: "1 validated" in comment("/fixloop campaign status"))
    assert len(actions.dispatched) == 1, "paused: nothing more started"
    assert "running, " in comment("/fixloop campaign resume")
    wait_for(lambda: len(actions.dispatched) == 2)


def test_the_action_alone_says_campaigns_need_the_app(tmp_path, fake_github, monkeypatch) -> None:
    with MessagesAPIServer() as api_server:
        runner = Runner(tmp_path, fake_github, api_server, monkeypatch)
        assert runner.run("issue_comment", runner.comment("/fixloop campaign", runner.issue)) == 0
        assert api_server.requests == []
    replies = [c.body for c in fake_github.comments(REPO, runner.issue)]
    assert any(body.startswith("Campaigns run on the fixloop App") for body in replies)


def test_a_retry_from_the_kept_patch_goes_on_from_the_earlier_attempts_work(tmp_path, fake_github,
                                                                          monkeypatch) -> None:
    """The earlier run kept its partial work (changes.patch in its artifact); the retry applies it instead
    of running the codemod again, and the agent finishes from there."""
    with MessagesAPIServer() as api_server:
        runner = Runner(tmp_path, fake_github, api_server, monkeypatch, files=MONOREPO)
        workspace = runner.origin.workspace
        app = workspace / "packages/api/app.py"
        app.write_text(app.read_text().replace("old_api", "new_api"))
        patch = run_git(workspace, "diff", "--binary")
        run_git(workspace, "checkout", "--", ".")
        earlier = fake_github.add_workflow_run(REPO, "fixloop.yml", conclusion="neutral", event="workflow_dispatch")
        fake_github.add_artifact(earlier, f"fixloop-session-{earlier}", {"changes.patch": patch, "report.json": "{}"})
        work = CampaignWork(id="cmp_1", campaign="rename-api", path="packages/api", branch="fixloop/campaign/r",
                            title="rename-api: packages/api", codemod=["exit 7"], validation=["python -m pytest -q"],
                            resume_run=earlier)
        api_server.push(Reply([edit("str_replace", "packages/api/lib.py", old_str="def old_api(x):",
                                    new_str="def new_api(x):")]), Reply([text("lib.py now offers new_api.")]))
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Rename old_api to new_api.")) == 0
        prompt = api_server.requests[0].body["messages"][0]["content"][0]["text"]
        assert "cannot import name 'new_api'" in prompt, "the kept work was there before the agent's first turn"
    assert "new_api(x)" in runner.origin.show(work.branch, "packages/api/app.py")
    assert "def new_api" in runner.origin.show(work.branch, "packages/api/lib.py")
    gone = work.model_copy(update={"resume_run": earlier + 1000})
    with MessagesAPIServer() as api_server:
        runner.api = api_server
        assert runner.run("workflow_dispatch", campaign_dispatch(gone, "Rename.")) == 2
        assert api_server.requests == []
    assert "kept no work to go on from" in (checks(fake_github)["fixloop"].output_summary or "")
