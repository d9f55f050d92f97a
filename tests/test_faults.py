"""GitHub misbehaving during a session: 5xx, rate limits with retry-after, connection resets.
Expected: retries with backoff, no duplicate check runs, comments or pull requests, and an honest
ending either way."""

from __future__ import annotations

import pytest

import bot.github.client
from tests.conftest import run_git
from tests.fakes.messages_api import MessagesAPIServer
from tests.test_action_e2e import DONE, REPO, RIGHT_AT_ONCE, Runner, checks


@pytest.fixture
def runner(tmp_path, fake_github, monkeypatch):
    monkeypatch.setattr(bot.github.client, "RETRY_BACKOFF", 0.05)
    monkeypatch.setattr(bot.github.client, "THROTTLE", False)
    with MessagesAPIServer() as api:
        yield Runner(tmp_path, fake_github, api, monkeypatch)


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
