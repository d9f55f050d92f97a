"""GitHub misbehaving during a session: 5xx, rate limits with retry-after, connection resets,
timeouts, writes carried out although their answer was an error or never came, and replicas that
do not know an object yet right after it was created. Expected: retries with backoff, no duplicate
check runs, comments, pull requests or workflow runs, and an honest ending either way."""

from __future__ import annotations

import re

import pytest

from bot.errors import GitHubError
from bot.github.app_auth import InstallationTokens
from bot.github.client import GitHubClient, RequestPolicy
from tests.conftest import run_git
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import TEST_APP_ID, TEST_TOKEN, AppKey
from tests.fakes.messages_api import MessagesAPIServer
from tests.test_action_e2e import (
    DONE,
    FILES,
    PYTEST,
    REPO,
    RIGHT_AT_ONCE,
    Runner,
    checks,
)

# Labels and a reviewer: requests on the pull request right after it was opened.
REVIEWED = {**FILES, ".github/fixloop.yml": f"validate: [{PYTEST}]\n"
                                            "pull_request: {labels: [fixloop], reviewers: [maintainer]}\n"}
# No pacing, and a short backoff: the retries are what these tests are about, and there are many.
QUICK_RETRIES = RequestPolicy(throttle=False, backoff=0.05)
SLOW = 2.5  # seconds the fake waits before answering a request that "times out" (the runner's timeout is 1)


@pytest.fixture
def runner(request, tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        yield Runner(tmp_path, fake_github, api, monkeypatch, files=getattr(request, "param", FILES),
                     policy=RequestPolicy(throttle=False, backoff=0.05, timeout=1))


def assert_one_of_each(runner: Runner) -> None:
    names = [run.name for run in runner.github.check_runs(REPO)]
    assert sorted(names) == ["fixloop", "fixloop / iteration 1"], names
    assert len(runner.github.pulls(REPO)) == 1
    assert len(runner.github.comments(REPO, runner.issue)) == 1


@pytest.mark.parametrize("method, path, status, headers", [
    ("POST", r"/check-runs$", 502, None),
    ("PATCH", r"/check-runs/\d+$", 500, None),
    ("POST", r"/pulls$", 503, None),
    ("POST", r"/issues/\d+/comments$", 403, {"retry-after": "1", "x-ratelimit-remaining": "0"}),
    ("POST", r"/issues/\d+/comments$", 429, {"retry-after": "1"}),
    ("GET", r"/contents/", 502, None),
])
def test_transient_github_failures_are_retried_without_duplicates(runner, method, path, status, headers):
    runner.github.inject(method, path, status, times=2, headers=headers)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    assert_one_of_each(runner)
    assert checks(runner.github)["fixloop"].conclusion == "success"


@pytest.mark.parametrize("method, path", [("GET", r"/pulls$"), ("POST", r"/check-runs$")])
def test_connection_resets_are_retried(runner, method, path):
    runner.github.inject_reset(method, path, times=1)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    assert_one_of_each(runner)


def test_github_down_for_good_ends_honestly_and_keeps_the_work(runner, capsys):
    runner.github.inject("POST", r"/pulls$", 503, times=50)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 3
    session = checks(runner.github)["fixloop"]
    assert session.conclusion == "failure" and "could not be published" in session.output_title
    assert runner.github.pulls(REPO) == []
    (comment,) = runner.github.comments(REPO, runner.issue)
    assert "could not publish" in comment.body
    (pushed,) = [ref for ref in run_git(runner.origin.bare, "branch").split() if ref.startswith("fixloop/")]
    assert "a + b" in runner.origin.show(pushed, "calc.py"), "the validated work was pushed before the PR failed"


def assert_succeeded_once(runner: Runner) -> None:
    """One of each, and every check run finished green (none left in progress)."""
    assert_one_of_each(runner)
    assert {run.name: (run.status, run.conclusion) for run in runner.github.check_runs(REPO)} == {
        "fixloop": ("completed", "success"), "fixloop / iteration 1": ("completed", "success")}


def answered(runner: Runner, method: str, path: str) -> list[int | None]:
    """The statuses of the requests the fake got for `method` `path` (None: connection reset)."""
    return [r.status for r in runner.github.requests if r.method == method and re.search(path, r.path)]


CREATES = [("POST", r"/issues/\d+/comments$"), ("POST", r"/check-runs$"), ("POST", r"/pulls$")]


@pytest.mark.parametrize("method, path", CREATES)
def test_a_create_carried_out_before_a_500_is_found_not_repeated(runner, method, path):
    runner.github.inject(method, path, 500, apply=True)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    assert answered(runner, method, path)[0] == 500, "the fault was hit"
    assert_succeeded_once(runner)


def test_creates_carried_out_before_the_connection_dropped_are_found_not_repeated(runner):
    for method, path in CREATES:
        runner.github.inject_reset(method, path, apply=True)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    for method, path in CREATES:
        assert answered(runner, method, path)[0] is None, f"{method} {path} was reset"
    assert_succeeded_once(runner)


@pytest.mark.parametrize("method, path, apply, then", [
    ("GET", r"/contents/", False, "GET /contents/"),
    ("POST", r"/check-runs$", True, "GET /commits/[0-9a-f]+/check-runs$"),  # made: a look, not a second POST
    ("PATCH", r"/check-runs/\d+$", False, "PATCH /check-runs/\\d+$"),  # not made: the update must be sent again
])
def test_requests_that_time_out_are_retried_without_duplicates(runner, method, path, apply, then):
    # Twice, so that the check run reporter's second chance at the end of the session is not enough.
    runner.github.inject_timeout(method, path, SLOW, times=2, apply=apply)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    requests = [f"{r.method} {r.path}" for r in runner.github.requests]
    slow = next(i for i, r in enumerate(requests) if re.search(f"^{method} .*{path}", r))
    assert any(re.search(then.replace(" ", " .*"), r) for r in requests[slow + 1:]), "it gave up waiting and went on"
    assert_succeeded_once(runner)


@pytest.mark.parametrize("runner, created", [(FILES, r"/check-runs$"), (REVIEWED, r"/pulls$")], indirect=["runner"])
def test_objects_not_yet_known_right_after_their_creation_are_waited_for(runner, created):
    runner.github.inject_replica_lag(created, times=2)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    assert 404 in [r.status for r in runner.github.requests], "the lag was hit"
    assert_succeeded_once(runner)
    if created == r"/pulls$":
        (pull,) = runner.github.pulls(REPO)
        assert pull.labels == ["fixloop"] and [u.login for u in pull.pull.requested_reviewers] == ["maintainer"]


def test_github_timing_out_for_good_ends_honestly_and_keeps_the_work(runner):
    runner.github.inject_timeout("POST", r"/pulls$", SLOW, times=50)
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 3
    assert len(answered(runner, "POST", r"/pulls$")) == 1 + runner.policy.retries, "tried, then gave up"
    session = checks(runner.github)["fixloop"]
    assert session.conclusion == "failure" and "could not be published" in session.output_title
    assert runner.github.pulls(REPO) == []
    (comment,) = runner.github.comments(REPO, runner.issue)
    assert "could not publish" in comment.body and "ReadTimeout" in comment.body
    (pushed,) = [ref for ref in run_git(runner.origin.bare, "branch").split() if ref.startswith("fixloop/")]
    assert "a + b" in runner.origin.show(pushed, "calc.py"), "the validated work was pushed before the PR failed"


@pytest.fixture
def github(make_fake_github) -> FakeGitHub:
    """A repository with the App's workflow, whose runs are titled with the correlation id."""
    fake = make_fake_github(supports_run_details=True)
    fake.add_repo(REPO)
    fake.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} ({correlation_id})")
    return fake


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_a_dispatch_carried_out_before_its_answer_was_lost_starts_one_run(github, fault):
    if fault == "reset":
        github.inject_reset("POST", r"/dispatches$", apply=True)
    else:
        github.inject("POST", r"/dispatches$", 500, apply=True)
    client = GitHubClient(token=TEST_TOKEN, api_url=github.url, repository=REPO, policy=QUICK_RETRIES)
    run_id, run_url = client.dispatch("fixloop.yml", "main", {"kind": "issue", "correlation_id": "delivery-7"})
    (dispatch,) = github.dispatches(REPO)
    assert run_id == dispatch.run_id and run_url and len(github.workflow_runs(REPO)) == 1


def test_a_404_on_what_fixloop_did_not_just_create_is_final_at_once(github):
    client = GitHubClient(token=TEST_TOKEN, api_url=github.url, repository=REPO, policy=QUICK_RETRIES)
    with pytest.raises(GitHubError, match="HTTP 404"):
        client.update_check_run(424242, output={"title": "t", "summary": "s"})
    with pytest.raises(GitHubError, match="HTTP 404"):
        client.add_labels(99, ["fixloop"])
    assert [r.status for r in github.requests] == [404, 404], "one request each, no retries"


def test_the_apps_own_requests_go_through_the_same_retries(github: FakeGitHub, github_app_key: AppKey):
    """GET /app and GET /repos/…/installation are retried like every GET; minting an installation
    token (a POST) is resent after a rate limit only, and a server error there ends it plainly."""
    github.add_installation("octo", repositories=[REPO])
    tokens = InstallationTokens(app_id=str(TEST_APP_ID), private_key=github_app_key.private_pem, api_url=github.url,
                                policy=QUICK_RETRIES)
    github.inject("GET", r"^/app$", 502, times=2)
    github.inject("GET", r"/installation$", 503, times=2)
    github.inject("POST", r"/access_tokens$", 429, headers={"retry-after": "1"})
    assert tokens.app_slug() == "fixloop"
    installation = tokens.installation_for(REPO)
    assert installation == github.installation_id("octo")
    assert tokens.token(installation, REPO, {"issues": "write"}) and tokens.minted == 1
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in github.requests] == [
        ("GET", "app", 502), ("GET", "app", 502), ("GET", "app", 200),
        ("GET", "installation", 503), ("GET", "installation", 503), ("GET", "installation", 200),
        ("POST", "access_tokens", 429), ("POST", "access_tokens", 201)]

    github.inject("POST", r"/access_tokens$", 502)
    with pytest.raises(GitHubError, match=f"could not get an installation token for {REPO} .*HTTP 502"):
        tokens.token(installation, REPO, {"contents": "read"})
    assert [r.status for r in github.requests[8:]] == [502], "a POST that may have been carried out is not resent"
    github.inject("GET", r"^/app$", 502, times=1 + QUICK_RETRIES.retries)
    with pytest.raises(GitHubError, match="could not read the App's own description: RetryError"):
        tokens.app_slug()
    assert [r.status for r in github.requests[9:]] == [502] * (1 + QUICK_RETRIES.retries), "tried, then gave up"
