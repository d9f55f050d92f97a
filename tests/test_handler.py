"""The one handler both ways in share (bot/handler.py): config from the default branch, the
decision, and the answers that need no session, every text through the redactor."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bot.config import CONFIG_PATH
from bot.errors import ConfigError
from bot.github.events import parse_event
from bot.handler import Answered, Handler, Start
from bot.secrets import Redactor
from tests.fixtures import load_payload
from tests.test_app_server import (  # noqa: F401 - pytest fixtures used by name
    REPO,
    labeled,
    make_app,
    seeded,
    with_installation,
)

TOKEN = "ghp_" + "S3cr3tT0kenValue" * 3
CONFIG = "validate: [python -m pytest -q]\n"


@dataclass
class RecordingGitHub:
    """The part of GitHubClient the handler uses, recording what was written."""

    config: str | None = CONFIG
    comments: list[tuple[int, str]] = field(default_factory=list)
    check_runs: list[dict] = field(default_factory=list)
    cancelled: list[tuple[str, int, int | None]] = field(default_factory=list)
    repository: str = REPO

    def file_text(self, path: str, ref: str) -> str | None:
        assert (path, ref) == (CONFIG_PATH, "main"), "the config is read from the default branch"
        return self.config

    def comment(self, number: int, body: str) -> str:
        self.comments.append((number, body))
        return "https://github.test/comment"

    def create_check_run(self, **fields) -> int:
        self.check_runs.append(fields)
        return 1

    def cancel_active_runs(self, workflow_file: str, number: int, *, except_run: int | None) -> list[int]:
        self.cancelled.append((workflow_file, number, except_run))
        return [7]


def comment_event(body: str, login: str = "writer"):
    payload = load_payload("issue_comment.created", comment__body=body)
    payload["repository"].update(full_name=REPO, default_branch="main")
    payload["sender"]["login"] = login
    return parse_event("issue_comment", payload)


def handle(github: RecordingGitHub, body: str, **options) -> Answered | Start:
    handler = Handler(github, redactor=Redactor([TOKEN]), workflow_file="fixloop.yml", **options)  # type: ignore[arg-type]
    return handler.handle(comment_event(body), lambda login: "write" if login == "writer" else "read")


def test_replies_pass_the_redactor():
    github = RecordingGitHub()
    answered = handle(github, f"/fixloop {TOKEN}")
    assert answered == Answered("replied")
    ((number, body),) = github.comments
    assert number == 1 and "is not a fixloop command" in body and TOKEN not in body and "[REDACTED]" in body


def test_a_stop_cancels_all_but_the_own_run_and_tells_the_caller():
    github, stopped = RecordingGitHub(), []
    answered = handle(github, "/fixloop stop", own_run=42, on_stop=stopped.append)
    assert answered == Answered("stopped 1 run(s)")
    assert github.cancelled == [("fixloop.yml", 1, 42)]
    assert [(s.number, s.requester) for s in stopped] == [(1, "writer")]
    assert github.comments == [(1, "Stopped 1 fixloop run(s) for #1, as @writer asked.")]


def test_a_run_comes_back_with_the_config_and_nothing_is_written():
    github = RecordingGitHub()
    started = handle(github, "/fixloop fix it")
    assert isinstance(started, Start) and started.default_branch == "main"
    assert started.config.validation == ["python -m pytest -q"] and started.run.origin.comment is not None
    assert github.comments == [] and github.check_runs == []


@pytest.mark.parametrize(("config", "problem"), [
    ("validate: [make]\nlimits: {iterations: -1}\n", "limits.iterations"),
    ("limits: {iterations: 2}\n", "no validation commands"),
    (None, "no validation commands"),
])
def test_an_invalid_config_is_reported_where_the_asker_looks(config, problem):
    github = RecordingGitHub(config=config)
    answered = handle(github, "/fixloop fix it", check_sha="a" * 40)
    assert isinstance(answered, Answered) and answered.invalid_config is not None
    assert answered.outcome == f"refused: invalid {CONFIG_PATH}"
    ((number, body),) = github.comments
    assert number == 1 and problem in body
    assert body.startswith(f"fixloop cannot start: {CONFIG_PATH} on main is invalid")
    (check,) = github.check_runs
    assert check["conclusion"] == "failure" and check["head_sha"] == "a" * 40


def test_an_invalid_config_is_not_mentioned_to_events_that_do_not_concern_fixloop():
    github = RecordingGitHub(config="validate: 3\n")
    answered = handle(github, "thanks, looks good")
    assert isinstance(answered, Answered)
    assert answered.outcome.startswith("ignored: the comment is not a fixloop command")
    assert answered.invalid_config is None and github.comments == [] and github.check_runs == []


def test_the_app_redacts_its_replies_too(make_app):  # noqa: F811 - the fixture
    """The App and the Action answer through the same handler: a secret echoed back in a reply is
    redacted on the App's side as well."""
    app = make_app()
    payload = load_payload("issue_comment.created", comment__body=f"/fixloop {TOKEN}")
    payload["repository"] = labeled()["repository"]
    payload["sender"]["login"] = "maintainer"
    app.deliver("issue_comment", with_installation(payload, app.github))
    app.settle()
    (reply,) = app.github.comments(REPO, 1)
    assert "is not a fixloop command" in reply.body and TOKEN not in reply.body


def test_a_stop_works_while_the_config_is_broken():
    github = RecordingGitHub(config="validate: 3\n")
    assert handle(github, "/fixloop stop", own_run=42) == Answered("stopped 1 run(s)")
    assert github.cancelled == [("fixloop.yml", 1, 42)] and github.check_runs == []


def test_a_bad_override_is_the_callers_mistake_not_the_files():
    github = RecordingGitHub()
    handler = Handler(github, redactor=Redactor(), workflow_file="fixloop.yml", check_sha="a" * 40)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"limits\.iterations"):
        handler.handle(comment_event("/fixloop fix it"), lambda login: "write", overrides={"limits.iterations": 0})
    assert github.comments == [] and github.check_runs == []


def test_the_app_leaves_a_missing_config_to_the_workflow_which_may_read_another_file():
    """The Action's `config` input can name another file, which the App cannot see: a missing
    .github/fixloop.yml is only a mistake for the Action."""
    assert isinstance(handle(RecordingGitHub(config=None), "/fixloop fix it", config_required=False), Start)
    refused = handle(RecordingGitHub(config="limits: {iterations: 2}\n"), "/fixloop fix it", config_required=False)
    assert isinstance(refused, Answered) and refused.invalid_config is not None, "a file without validation still is"
