"""Sessions end to end in-process: worktree → loop → outcome → report, with a scripted model."""

import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

import jsonschema
import pytest

from bot.agent.model import Block, ScriptedModel, Text, tool_use
from bot.agent.tools import BASH, EDITOR
from bot.config import Config
from bot.schemas import GENERATORS, render
from bot.schemas import HERE as SCHEMAS
from bot.session import SessionSpec, run_session
from bot.task import Task
from tests.conftest import agent_file_appeared, run_git

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q"
BUGGY = {"calc.py": "def add(a, b):\n    return a - b\n",
         "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"}
FIX = {"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a + b"}
DONE: list[Block] = [Text("Changed subtraction to addition in add().")]


def session(repo: Path, turns, *, config: Config | None = None, task: Task | None = None, **spec) -> tuple:
    config = config or Config(validate=[PYTEST])
    task = task or Task(kind="local", title="Fix add()", instructions="add(2, 3) should be 5",
                        source="the command line")
    report = run_session(SessionSpec(repo=repo, task=task, config=config, model=ScriptedModel(turns), **spec))
    folder = Path(report.trajectory).parent
    return report, folder


def test_validated_session_commits_on_a_new_branch_and_leaves_the_checkout_alone(make_repo):
    repo = make_repo(BUGGY)
    head = run_git(repo, "rev-parse", "HEAD").strip()
    report, folder = session(repo, [[tool_use(EDITOR, FIX, id="toolu_1")], DONE])
    assert report.status == "validated"
    assert report.branch.startswith("fixloop/fix-add-") and len(report.branch.rsplit("-", 1)[1]) == 8
    assert run_git(repo, "rev-parse", report.branch).strip() == report.commit
    assert run_git(repo, "show", f"{report.commit}:calc.py") == "def add(a, b):\n    return a + b\n"
    message = run_git(repo, "log", "-1", "--format=%B", report.commit)
    assert message.startswith("fixloop: Fix add()") and "Changed subtraction to addition" in message
    assert run_git(repo, "rev-parse", "HEAD").strip() == head
    assert run_git(repo, "status", "--porcelain") == "", "the user's checkout must not change"
    assert (repo / "calc.py").read_text().endswith("a - b\n")
    assert run_git(repo, "worktree", "list").count("\n") == 1
    assert folder == repo / ".fixloop" / "sessions" / report.session_id
    assert report.patch is None and report.changed_files == ["calc.py"]
    assert report.baseline.failed_tests == ["test_calc.py::test_add"]


def test_report_matches_the_shipped_schema_and_the_schema_is_current(make_repo, tmp_path):
    repo = make_repo(BUGGY)
    _, folder = session(repo, [[tool_use(EDITOR, FIX, id="toolu_1")], DONE], out_dir=tmp_path / "out")
    assert folder == tmp_path / "out"
    data = json.loads((folder / "report.json").read_text())
    jsonschema.validate(data, json.loads((SCHEMAS / "report.schema.json").read_text()))
    for key in ("status", "iterations", "usage", "branch", "commit", "diff_stat"):
        assert key in data
    assert set(data["iterations"][0]["usage"]) >= {"input_tokens", "output_tokens", "cache_read_input_tokens"}
    for name in GENERATORS:
        assert (SCHEMAS / name).read_text() == render(name), f"{name} is stale: run python -m bot.schemas"


def test_trajectory_is_one_event_per_line_in_order(make_repo):
    repo = make_repo(BUGGY)
    _, folder = session(repo, [[tool_use(EDITOR, {"command": "view", "path": "calc.py"}, id="t1")],
                               [tool_use(EDITOR, FIX, id="t2")], DONE])
    kinds = [json.loads(line)["type"] for line in (folder / "trajectory.jsonl").read_text().splitlines()]
    assert kinds == [
        "session_started", "validation_ran", "iteration_started",
        "model_called", "tool_called", "model_called", "tool_called", "model_called",
        "changes_made", "validation_ran", "iteration_ended", "session_ended",
    ]


def test_not_validated_keeps_the_patch_and_commits_nothing(make_repo):
    repo = make_repo(BUGGY)
    wrong = {"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a * b"}
    config = Config(validate=[PYTEST], limits={"iterations": 1})
    report, folder = session(repo, [[tool_use(EDITOR, wrong, id="toolu_1")], DONE], config=config)
    assert report.status == "not_validated" and "iteration limit" in report.reason
    assert report.branch is None and report.commit is None
    patch = Path(report.patch)
    assert patch.parent == folder and "+    return a * b" in patch.read_text()
    assert run_git(repo, "branch", "--list", "fixloop/*") == ""
    assert run_git(repo, "apply", "--check", str(patch)) == ""


def test_protected_paths_changed_through_bash_are_rejected_by_the_orchestrator(make_repo):
    repo = make_repo({**BUGGY, ".github/workflows/ci.yml": "on: push\n"})
    sneak = tool_use(BASH, {"command": "echo 'run: curl evil' >> .github/workflows/ci.yml"}, id="t2")
    report, _ = session(repo, [[tool_use(EDITOR, FIX, id="t1"), sneak], DONE])
    assert report.status == "not_validated"
    assert "protected paths (.github/workflows/ci.yml)" in report.reason
    assert report.branch is None and Path(report.patch).exists()


def test_validation_passing_without_any_change_is_not_a_result(make_repo):
    repo = make_repo({**BUGGY, "calc.py": "def add(a, b):\n    return a + b\n"})
    report, _ = session(repo, [DONE])
    assert report.status == "not_validated" and "no file was changed" in report.reason


def test_failed_setup_ends_in_error(make_repo):
    repo = make_repo(BUGGY)
    config = Config(validate=[PYTEST], setup=["echo preparing; echo 'no such tool' >&2; exit 7"])
    report, _ = session(repo, [DONE], config=config)
    assert report.status == "error" and "exited with 7" in report.reason and "no such tool" in report.reason


def test_secrets_never_reach_the_trajectory_or_report(make_repo, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_SessionSecretValue0000000000")
    repo = make_repo(BUGGY)
    task = Task(kind="local", title="Fix add()",
                instructions="token ghs_SessionSecretValue0000000000 and sk-ant-api03-leakleakleak",
                source="the command line")
    leak = tool_use(BASH, {"command": "echo $GITHUB_TOKEN; echo ghs_SessionSecretValue0000000000"}, id="t0")
    report, folder = session(repo, [[leak], [tool_use(EDITOR, FIX, id="t1")], DONE], task=task,
                             environ=dict(os.environ))
    assert report.status == "validated"
    for name in ("trajectory.jsonl", "report.json"):
        text = (folder / name).read_text()
        assert "ghs_SessionSecretValue" not in text and "sk-ant-api03-leak" not in text
        assert "[REDACTED]" in text
    assert "ghs_SessionSecretValue" not in run_git(repo, "log", "-1", "--format=%B", report.branch)


@pytest.mark.signals_itself
def test_sigterm_mid_iteration_cancels_and_keeps_partial_work(make_repo):
    repo = make_repo(BUGGY)
    handler = signal.getsignal(signal.SIGTERM)
    partial = tool_use(EDITOR, {"command": "create", "path": "notes.txt", "file_text": "half done\n"}, id="t1")
    # SIGTERM comes from outside (the runner): the agent's own shell cannot signal fixloop when confined.
    busy = tool_use(BASH, {"command": "touch sigterm-marker; sleep 20"}, id="t2")

    def terminate_once_busy() -> None:
        if agent_file_appeared("sigterm-marker"):
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_busy, daemon=True).start()
    report, folder = session(repo, [[partial], [busy], DONE])
    assert report.status == "cancelled" and "SIGTERM" in report.reason
    assert "+half done" in Path(report.patch).read_text()
    assert json.loads((folder / "trajectory.jsonl").read_text().splitlines()[-1])["status"] == "cancelled"
    assert signal.getsignal(signal.SIGTERM) == handler, "the session restores signal handlers"


def test_model_failure_ends_in_error_with_the_reason(make_repo):
    from bot.errors import ModelError

    def broken(_messages):
        raise ModelError("The model API failed with HTTP 500: boom")

    repo = make_repo(BUGGY)
    report, _ = session(repo, broken)
    assert report.status == "error" and "HTTP 500" in report.reason
    assert report.iterations[0].validation is None


def test_session_on_a_folder_that_is_not_a_repository_fails_clearly(tmp_path):
    from bot.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        session(tmp_path, [DONE])


def test_a_change_carrying_a_secret_is_never_committed(make_repo, monkeypatch):
    monkeypatch.setenv("DEPLOY_PASSWORD", "correct-horse-battery-staple")
    repo = make_repo(BUGGY)
    leak = {"command": "create", "path": "settings.py", "file_text": "PASSWORD = 'correct-horse-battery-staple'\n"}
    report, _ = session(repo, [[tool_use(EDITOR, FIX, id="t1"), tool_use(EDITOR, leak, id="t2")], DONE],
                        environ=dict(os.environ))
    assert report.status == "not_validated" and "contains a secret" in report.reason
    assert report.branch is None
    patch = Path(report.patch).read_text()
    assert "correct-horse-battery-staple" not in patch and "[REDACTED]" in patch


def test_the_agent_shell_has_its_own_home_and_no_git_credential_helpers(make_repo, tmp_path, monkeypatch):
    home = tmp_path / "real-home"
    home.mkdir()
    (home / ".git-credentials").write_text("https://x-access-token:ghp_0123456789abcdefghijABCDEFGHIJ@github.com\n")
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("HOME", str(home))
    repo = make_repo(BUGGY)
    probe = tool_use(BASH, {"command": "echo home=$HOME; cat ~/.git-credentials; git config --get credential.helper; "
                                       "echo end"},
                     id="t1")
    seen: list[str] = []

    def script(messages):
        if len(messages) == 1:
            return [probe]
        if len(seen) == 0:
            seen.append(messages[-1].content[0].content)
            return [tool_use(EDITOR, FIX, id="t2")]
        return DONE

    report, folder = session(repo, script, environ=dict(os.environ))
    assert report.status == "validated"
    output = seen[0]
    home_line = output.split("\n", 1)[0]
    assert home_line.startswith("home=") and "fixloop-scratch-" in home_line and str(folder) not in home_line
    assert "x-access-token" not in output and "ghp_" not in output
    assert "store" not in output.split("home=")[1]
