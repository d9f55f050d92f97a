"""`fixloop action --event FILE --dry-run`: the Action's decision, plan and writes for a saved event,
rehearsed against a local checkout, without GitHub and without a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import run_git
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, text
from tests.fixtures import load_payload
from tests.test_cli_run import BUGGY, PYTEST

CONFIG = "validate: [python -m pytest -q]\n"


@pytest.fixture
def checkout(make_repo) -> Path:
    return make_repo({".github/fixloop.yml": CONFIG, "calc.py": "x = 1\n"})


def rehearse(tmp_path: Path, checkout: Path, payload: dict, *extra: str, dry_run: bool = True) -> int:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    return main(["action", "--event", str(event), *(["--dry-run"] if dry_run else []), "--repo", str(checkout), *extra])


def test_a_labelled_issue_is_decided_and_planned_and_nothing_is_sent(tmp_path, checkout, capsys):
    payload = load_payload("issues.labeled", label__name="fixloop")
    payload["repository"]["default_branch"] = "main"
    assert rehearse(tmp_path, checkout, payload) == 0
    out = capsys.readouterr().out
    head = run_git(checkout, "rev-parse", "HEAD").strip()
    assert "Decision: run a issue session for issue:1: Spelling error in the README file" in out
    assert f"Plan: start from {head[:10]} (main); push fixloop/spelling-error-in-the-readme-file-" in out
    assert "open a draft pull request against main that fixes #1" in out and "Nothing was sent." in out


def test_a_reply_is_printed_exactly_as_it_would_be_posted(tmp_path, checkout, capsys):
    payload = load_payload("issue_comment.created", comment__body="/fixloop deploy")
    assert rehearse(tmp_path, checkout, payload) == 0
    out = capsys.readouterr().out
    assert out.startswith("would comment on #1:\n    `deploy` is not a fixloop command.")
    assert out.rstrip().endswith("Decision: replied")


def test_an_invalid_config_shows_the_check_run_and_the_comment_and_exits_2(tmp_path, make_repo, capsys):
    checkout = make_repo({".github/fixloop.yml": "validate: [make]\nlimits: {iterations: 0}\n"})
    payload = load_payload("issues.labeled", label__name="fixloop")
    assert rehearse(tmp_path, checkout, payload) == 2
    out = capsys.readouterr().out
    assert "would create check run 'fixloop' on " in out and "(failure): Invalid .github/fixloop.yml" in out
    assert "would comment on #1:\n    fixloop cannot start: .github/fixloop.yml on " in out
    assert "Decision: refused: invalid .github/fixloop.yml" in out


def test_a_dry_run_needs_an_event(capsys):
    assert main(["action", "--dry-run"]) == 2
    assert "pass --event FILE" in capsys.readouterr().err


def test_without_dry_run_the_session_runs_locally_and_what_it_would_publish_is_printed(tmp_path, make_repo, capsys,
                                                                                        monkeypatch):
    checkout = make_repo({".github/fixloop.yml": f"validate: [{json.dumps(PYTEST)}]\n", **BUGGY})
    payload = load_payload("issues.labeled", label__name="fixloop")
    with MessagesAPIServer() as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]),
                 Reply([text("add() subtracted; it now adds.")]))
        assert rehearse(tmp_path, checkout, payload, dry_run=False) == 0
        assert api.violations == []
    out = capsys.readouterr().out
    assert "would push " in out and "and open a draft pull request against master: fixloop: Spelling error" in out
    assert "    fixloop proposes this change for issue #1 by @Codertocat." in out and "Fixes #1" in out
    assert "would comment on #1:" in out and out.rstrip().endswith("Nothing was sent.")
    assert "Session: validated: validation passed" in out
    branch = out.split("(here: local branch ", 1)[1].split(")", 1)[0]
    assert "a + b" in run_git(checkout, "show", f"{branch}:calc.py"), "the work is kept on a local branch"


def test_a_payload_of_no_known_shape_asks_for_its_name(tmp_path, checkout, capsys):
    assert rehearse(tmp_path, checkout, {"zen": "Keep it logically awesome."}) == 2
    assert "pass --event-name" in capsys.readouterr().err
    assert rehearse(tmp_path, checkout, {"zen": "x", "action": "created"}, "--event-name", "star") == 0
    assert "Decision: fixloop does not act on star.created events." in capsys.readouterr().out
