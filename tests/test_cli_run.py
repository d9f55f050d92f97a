"""`fixloop run` end to end: the real anthropic SDK over HTTP to a loopback Messages API, real git,
real pytest. These are the issue's acceptance scenarios."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import main
from bot.sandbox import bubblewrap
from tests.conftest import agent_file_appeared, run_git
from tests.fakes.messages_api import (
    CutStream,
    Fail,
    MessagesAPIServer,
    Reply,
    StreamError,
    bash,
    edit,
    text,
)

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q"
BUGGY = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef double(a):\n    return add(a, a)\n",
    "test_calc.py": "from calc import add, double\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                    "def test_double():\n    assert double(0) == 0\n",
}
FIX = {"old_str": "a - b", "new_str": "a + b"}
WRONG = {"old_str": "a - b", "new_str": "a * b"}
DONE = Reply([text("add() subtracted; it now adds.")])


@pytest.fixture
def api(monkeypatch) -> MessagesAPIServer:
    with MessagesAPIServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        yield server
        assert server.violations == []


def fixloop(repo: Path, *extra: str, capsys) -> tuple[int, dict | None, str]:
    code = main(["run", "--repo", str(repo), "--task", "Fix add()\nadd(2, 3) must be 5", "--validate", PYTEST,
                 "--json", *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def last_user_text(request) -> str:
    content = request.body["messages"][-1]["content"]
    return "\n".join(block.get("text", "") for block in content if block["type"] == "text")


def tool_results(request) -> list[dict]:
    return [b for b in request.body["messages"][-1]["content"] if b["type"] == "tool_result"]


def test_fix_in_one_iteration(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0 and report["status"] == "validated"
    assert len(report["iterations"]) == 1 and report["iterations"][0]["validation"]["passed"]
    assert run_git(repo, "show", f"{report['branch']}:calc.py").count("a + b") == 1
    first = api.requests[0].body
    tools = [t.get("type", t["name"]) for t in first["tools"]]
    assert tools == ["text_editor_20250728", "bash_20250124", "search_code"]
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "Fix add()" in first["messages"][0]["content"][0]["text"]
    assert api.requests[0].stream, "the client streams responses"
    assert tool_results(api.requests[1])[0]["content"].startswith("Edited calc.py")
    assert report["usage"]["input_tokens"] > 0 and report["usage"]["output_tokens"] > 0


def test_fix_in_two_iterations_feedback_names_the_failing_test(api, make_repo, capsys):
    """The issue's acceptance scenario."""
    repo = make_repo(BUGGY)
    api.push(Reply([edit("str_replace", "calc.py", **WRONG)]), DONE,
             Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0 and report["status"] == "validated"
    first, second = report["iterations"]
    assert first["validation"]["failed_tests"] == ["test_calc.py::test_add"]
    assert "FAILED test_calc.py::test_add (test_calc.py:5)" in first["feedback"]
    assert second["validation"] == {**second["validation"], "passed": True, "failed_tests": []}
    assert "FAILED test_calc.py::test_add" in last_user_text(api.requests[2]), "the feedback became the next user turn"
    assert run_git(repo, "rev-parse", report["branch"]).strip() == report["commit"]
    assert report["diff_stat"].startswith("calc.py | 2")
    for n in (0, 1):
        assert report["iterations"][n]["usage"]["output_tokens"] > 0


def test_limits_reached_is_honest_keeps_the_patch_and_commits_nothing(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Reply([edit("str_replace", "calc.py", **WRONG)]), DONE)
    code, report, _ = fixloop(repo, "--max-iterations", "1", capsys=capsys)
    assert code == 1 and report["status"] == "not_validated"
    assert "iteration limit reached: 1" in report["reason"]
    assert report["branch"] is None and report["commit"] is None
    assert "+    return a * b" in Path(report["patch"]).read_text()
    assert run_git(repo, "branch", "--list", "fixloop/*") == ""


def test_token_limit_from_the_command_line(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Reply([bash("true")], usage={"input_tokens": 6000, "output_tokens": 100}))
    code, report, _ = fixloop(repo, "--max-tokens", "5000", capsys=capsys)
    assert code == 1 and report["reason"].startswith("token limit reached")
    assert len(api.requests) == 1


def test_tool_errors_go_back_to_the_model(api, make_repo, capsys):
    repo = make_repo({**BUGGY, ".github/fixloop.yml": "limits: {tool_timeout: 1}\n",
                      ".github/workflows/ci.yml": "on: push\n"})
    api.push(
        Reply([
            edit("view", "../outside.txt"),
            edit("view", "/etc/passwd"),
            edit("create", ".github/workflows/evil.yml", file_text="on: push"),
            edit("str_replace", "missing.py", old_str="x", new_str="y"),
            bash("sleep 30"),
            bash("seq 1 2000000"),
        ]),
        Reply([edit("str_replace", "calc.py", **FIX)]),
        DONE,
    )
    started = time.monotonic()
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0, report["reason"]
    assert time.monotonic() - started < 25, "the sleeping command must have been killed"
    results = tool_results(api.requests[1])
    assert [r["is_error"] for r in results] == [True, True, True, True, True, False]
    assert "'..' is not allowed" in results[0]["content"]
    assert "Absolute paths are not allowed" in results[1]["content"]
    assert "deny list" in results[2]["content"]
    assert "is not a file" in results[3]["content"]
    assert "killed after 1 s" in results[4]["content"]
    assert "elided" in results[5]["content"] and len(results[5]["content"]) < 25_000
    assert not (repo / ".github/workflows/evil.yml").exists()


def test_secrets_are_absent_from_the_bash_environment_and_from_every_record(api, make_repo, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_RunnerTokenValue00000000000000")
    monkeypatch.setenv("DEPLOY_PASSWORD", "pa55w0rd-for-prod")
    repo = make_repo(BUGGY)
    api.push(Reply([bash("env; cat ~/.git-credentials 2>/dev/null; git config --list")]),
             Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, err = fixloop(repo, capsys=capsys)
    assert code == 0
    seen_by_model = tool_results(api.requests[1])[0]["content"]
    assert "PATH=" in seen_by_model
    for secret in ("ghs_RunnerTokenValue", "pa55w0rd-for-prod", "test-key"):
        assert secret not in seen_by_model
        folder = Path(report["trajectory"]).parent
        for name in ("trajectory.jsonl", "report.json"):
            assert secret not in (folder / name).read_text()
        assert secret not in err


@pytest.mark.parametrize(
    "failures",
    [
        [Fail(429), Fail(529), Fail(500)],
        [CutStream(Reply([text("partial")]), after_events=3)],
        [StreamError("overloaded_error")],
    ],
    ids=["429-529-500", "broken-stream", "overloaded-mid-stream"],
)
def test_model_api_errors_are_retried(api, make_repo, capsys, failures):
    repo = make_repo(BUGGY)
    api.push(*failures, Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0 and report["status"] == "validated"
    assert len(api.requests) == len(failures) + 2


def test_model_api_failing_for_good_ends_in_error_and_keeps_work(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Reply([edit("create", "notes.txt", file_text="started\n")]), *[Fail(500) for _ in range(5)])
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 3 and report["status"] == "error"
    assert "HTTP 500" in report["reason"]
    assert "+started" in Path(report["patch"]).read_text()


def test_rejected_request_is_an_error_not_a_retry_loop(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Fail(400, message="messages: bad"))
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 3 and "HTTP 400" in report["reason"] and len(api.requests) == 1


def test_missing_api_key_is_a_usage_error_that_says_how_to_fix_it(make_repo, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code = main(["run", "--repo", str(make_repo(BUGGY)), "--task", "x", "--validate", "true"])
    assert code == 2
    err = capsys.readouterr().err
    assert "ANTHROPIC_API_KEY is not set" in err and "fixloop demo" in err


def test_usage_errors_exit_2(make_repo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    repo = make_repo(BUGGY)
    assert main(["run", "--repo", str(repo), "--task", "x"]) == 2
    assert "No validation commands" in capsys.readouterr().err
    assert main(["run", "--repo", str(tmp_path), "--task", "x", "--validate", "true"]) == 2
    assert "not inside a git repository" in capsys.readouterr().err
    (repo / ".github").mkdir()
    (repo / ".github/fixloop.yml").write_text("limits: {iterations: many}\n")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "config")
    assert main(["run", "--repo", str(repo), "--task", "x"]) == 2
    assert "limits.iterations" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--repo", str(repo), "--task", "x", "--max-iterations", "0"])
    assert exit_info.value.code == 2


def test_sigint_cancels_cleanly_keeps_partial_work_and_exits_130(make_repo, tmp_path):
    repo = make_repo(BUGGY)
    script = [
        Reply([edit("create", "notes.txt", file_text="partial\n")]),
        Reply([bash("touch sigint-marker; sleep 60")]),
        DONE,
    ]
    with MessagesAPIServer(script) as api:
        env = {**os.environ, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "test-key"}
        out = tmp_path / "session"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--repo", str(repo), "--task", "fix", "--validate", PYTEST,
             "--out", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started = agent_file_appeared("sigint-marker")
        assert started, proc.stderr.read() if proc.poll() is not None else "bash never started"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "cancelled" and "SIGINT" in report["reason"]
    assert "+partial" in (out / "changes.patch").read_text()
    assert run_git(repo, "branch", "--list", "fixloop/*") == ""
    assert run_git(repo, "worktree", "list").count("\n") == 1, "the worktree was cleaned up"
    assert "cancelled" in stderr


@pytest.mark.parametrize("argv", [["--help"], ["logs", "extract", "{log}"], ["triage", "--help"]])
def test_light_commands_do_not_load_the_model_sdk_github_or_the_web_server(tmp_path, argv):
    """`fixloop --help` and `fixloop logs extract` start in a fraction of a second because each
    subcommand imports what it uses; the model SDK alone takes seconds to import."""
    log = tmp_path / "two.log"
    log.write_text("collecting\nerror: it broke\n")
    probe = ("import sys\nfrom bot.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "heavy = ('anthropic', 'fastapi', 'github', 'uvicorn', 'starlette', 'pydantic', 'rich')\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *(a.format(log=log) for a in argv)], capture_output=True,
                            text=True, check=False)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


def test_uncommitted_config_is_named_and_config_uses_a_file_as_it_is(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    (repo / ".github").mkdir()
    (repo / ".github" / "fixloop.yml").write_text(f"validate: [{json.dumps(PYTEST)}]\nlimits: {{iterations: 1}}\n")
    (repo / "notes.txt").write_text("scratch\n")
    code = main(["run", "--repo", str(repo), "--task", "Fix add()"])
    err = capsys.readouterr().err
    assert code == 2 and "No validation commands" in err, "the committed file (none) is what counts"
    assert ".github/fixloop.yml has changes that are not committed" in err and "--config .github/fixloop.yml" in err
    assert "uncommitted change(s) (e.g. notes.txt)" in err
    api.push(Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code = main(["run", "--repo", str(repo), "--task", "Fix add()", "--config", str(repo / ".github/fixloop.yml"),
                 "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    started = json.loads(Path(report["trajectory"]).read_text().splitlines()[0])
    assert code == 0 and started["limits"]["iterations"] == 1, "the file's limits, as it is on disk"
    assert "has changes that are not committed" not in err


def test_max_cost_is_a_limit(api, make_repo, capsys):
    repo = make_repo(BUGGY)
    api.push(Reply([bash("ls")]), Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, _ = fixloop(repo, "--max-cost", "0.000001", capsys=capsys)
    assert code == 1 and report["status"] == "not_validated" and report["reason"].startswith("cost limit reached")


@pytest.mark.parametrize("where", ["validate", "setup"])
def test_a_command_that_cannot_run_stops_before_any_model_call_with_exit_2(api, make_repo, capsys, tmp_path, where):
    repo = make_repo(BUGGY)
    config = tmp_path / "fixloop.yml"
    if where == "validate":
        config.write_text("validate: [no-such-test-runner -q]\n")
    else:
        config.write_text(f"validate: [{json.dumps(PYTEST)}]\nsetup: [./not-a-script.sh]\n")
    code = main(["run", "--repo", str(repo), "--task", "Fix add()", "--config", str(config), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and report["status"] == "error" and report["user_error"] is True
    assert "cannot run (not found)" in report["reason"] and f"Fix `{where}`" in report["reason"]
    assert api.requests == [], "no tokens spent on a typo"


def test_provider_and_base_url_from_the_command_line_win_over_the_config(api, make_repo, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_BASE_URL")  # the endpoint comes from --base-url alone
    repo = make_repo({**BUGGY, ".github/fixloop.yml": "provider: openai\nbase_url: http://127.0.0.1:9/v1\n"})
    api.push(Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, _ = fixloop(repo, "--provider", "anthropic", "--base-url", api.url, capsys=capsys)
    assert code == 0 and report["status"] == "validated" and report["provider"] == "anthropic"
    assert len(api.requests) == 2


def test_the_provider_flag_chooses_whose_credentials_are_needed(make_repo, capsys, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    code = main(["run", "--repo", str(make_repo(BUGGY)), "--task", "x", "--validate", "true", "--provider", "openai"])
    assert code == 2 and "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_a_provider_or_base_url_fixloop_cannot_use_is_a_usage_error(make_repo, capsys, monkeypatch):
    repo = make_repo(BUGGY)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--repo", str(repo), "--task", "x", "--validate", "true", "--provider", "bedrok"])
    assert exit_info.value.code == 2
    assert ("--provider: must be one of anthropic, bedrock, vertex, foundry, openai, not 'bedrok'; did you mean "
            "'bedrock'?") in capsys.readouterr().err
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    assert main(["run", "--repo", str(repo), "--task", "x", "--validate", "true", "--base-url", "localhost"]) == 2
    assert "base_url" in capsys.readouterr().err


GO_CALC = Path(__file__).parent / "fixtures" / "projects" / "go-calc"


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (.ci/run installs Debian's golang-go)")
def test_a_go_bug_fixed_in_two_iterations_feedback_names_the_failing_go_test(api, make_repo, capsys):
    """Validated by the real `go test ./...` (confined, when bubblewrap is here: the go build cache
    goes to the session's private home); the first feedback names TestParse with its file:line."""
    repo = make_repo({p.name: p.read_text() for p in GO_CALC.iterdir()})
    api.push(Reply([edit("str_replace", "calc.go", old_str="total -= value", new_str="total *= value")]), DONE,
             Reply([edit("str_replace", "calc.go", old_str="total *= value", new_str="total += value")]), DONE)
    code = main(["run", "--repo", str(repo), "--task", "Fix Parse\nParse(\"1+2+3\") must be 6",
                 "--validate", "go test ./...", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["status"] == "validated"
    assert report["confined"] == (bubblewrap() is not None)
    first, second = report["iterations"]
    assert first["validation"]["failed_tests"] == ["example.com/calc.TestParse"]
    assert 'FAILED example.com/calc.TestParse (calc_test.go:11)\n  Parse("1+2+3") = 0, want 6' in first["feedback"]
    # The baseline saw it fail: the first iteration ran it alone first (go test -run), and it still failed.
    assert ("(only the tests that failed last time were run; they still fail)\n1 test(s) of 1 failed"
            in first["feedback"])
    assert "FAILED example.com/calc.TestParse" in last_user_text(api.requests[2])
    assert second["validation"] == {**second["validation"], "passed": True, "failed_tests": []}
    assert "total += value" in run_git(repo, "show", f"{report['branch']}:calc.go")
