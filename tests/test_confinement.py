"""One confinement for all code the agent could have touched, hole by hole: validation commands cannot
write the runner's file commands, fixloop's venv or anything outside the worktree and scratch; as root
they cannot remount /proc to read fixloop's environment; deflake reruns run confined too; fixloop's
git is the one chosen at start-up and its credentialed calls get a minimal environment; the editor
refuses FIFOs; the session's wall time holds while a call hangs; and without bubblewrap fixloop notices
when its own files changed."""

from __future__ import annotations

import os
import shlex
import site
import subprocess
import threading
import time
from pathlib import Path

import pytest

import bot.workspace
from bot._git import find_trusted_git, ownership_problem, unsafe_reason
from bot._process import run_shell, unconfined_runs
from bot.agent.model import ScriptedModel, tool_use
from bot.agent.tools import BASH, EDITOR, Toolbox
from bot.config import Config
from bot.errors import ConfigError, WorkspaceError
from bot.sandbox import INSTALL_HINT, Confinement, bubblewrap
from bot.secrets import scrubbed_environment
from bot.session import SessionSpec, run_session
from bot.task import Task
from bot.triage import confirm_fixed
from bot.validation import Validator
from bot.workspace import Worktree, push
from tests.conftest import run_git
from tests.test_session import BUGGY, DONE, FIX, PYTEST

needs_bwrap = pytest.mark.skipif(bubblewrap() is None, reason=f"bubblewrap is not available here: {INSTALL_HINT}")


@pytest.fixture
def worktree(make_repo):
    tree = Worktree.create(make_repo(BUGGY), "HEAD")
    yield tree
    tree.remove()


def confined(worktree: Worktree, environ: dict[str, str]) -> Confinement:
    return Confinement("required", environ=environ, writable=[worktree.root],
                       readable=[worktree.common_dir, worktree.git_dir])


def validate(worktree: Worktree, confinement: Confinement, command: str, env: dict[str, str]) -> str:
    validator = Validator([command], cwd=worktree.root, env=env, timeout=60, scratch=confinement.tempdir("v-"),
                          confinement=confinement)
    outcome = validator.run().commands[0]
    return outcome.excerpt


@needs_bwrap
def test_validation_cannot_write_the_runner_file_commands(worktree, tmp_path):
    commands = tmp_path / "_temp" / "_runner_file_commands"
    commands.mkdir(parents=True)
    github_env, github_path = commands / "set_env_1", commands / "add_path_1"
    github_env.write_text("")
    github_path.write_text("")
    (commands / "save_state_1").write_text("")
    environ = {**os.environ, "GITHUB_ENV": str(github_env), "GITHUB_PATH": str(github_path)}
    script = (f'echo "env=${{GITHUB_ENV:-unset}}"; ls {shlex.quote(str(commands))}; '
              f'echo LD_PRELOAD=/evil.so >> {shlex.quote(str(github_env))}; '
              f'echo /evil/bin >> {shlex.quote(str(github_path))}; '
              'exit 1')
    with confined(worktree, environ) as confinement:
        out = validate(worktree, confinement, script, scrubbed_environment(environ))
    assert "env=unset" in out and "save_state_1" not in out  # neither the variable nor the folder's files are there
    assert github_env.read_text() == "" and github_path.read_text() == ""  # what was written went to a throwaway tmpfs


@needs_bwrap
def test_validation_cannot_write_into_fixloop_own_environment(worktree):
    planted = Path(site.getsitepackages()[0]) / f"fixloop-confinement-{os.getpid()}.pth"
    bot_file = Path(bot.workspace.__file__).with_name(f"planted_{os.getpid()}.py")
    try:
        with confined(worktree, dict(os.environ)) as confinement:
            out = validate(worktree, confinement,
                           f"touch {shlex.quote(str(planted))} {shlex.quote(str(bot_file))}; exit 1",
                           scrubbed_environment(os.environ))
        assert not planted.exists() and not bot_file.exists()
        assert "Read-only file system" in out or "No such file" in out
    finally:
        planted.unlink(missing_ok=True)
        bot_file.unlink(missing_ok=True)


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="the /proc remount needs root (CI runs as root)")
def test_validation_as_root_cannot_remount_proc_to_read_fixloop_environment(worktree):
    # A process holding a secret, as fixloop does: as root with capabilities, `umount -l /proc` uncovers
    # the machine's /proc, where its environment can be read despite PR_SET_DUMPABLE.
    holder = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], "HELD_KEY": "held-secret-value"})
    try:
        with confined(worktree, dict(os.environ)) as confinement:
            out = validate(worktree, confinement,
                           "umount -l /proc; echo umount=$?; cat /proc/[0-9]*/environ 2>/dev/null "
                           "| tr '\\0' '\\n' | grep -c held-secret-value; exit 1", scrubbed_environment(os.environ))
    finally:
        holder.kill()
        holder.wait()
    assert "umount=0" not in out and out.strip().endswith("0")


@needs_bwrap
def test_deflake_reruns_run_confined(tmp_path, make_repo):
    outside = tmp_path / "outside-marker"
    repo = make_repo({"test_it.py": f"from pathlib import Path\n\n\ndef test_it():\n"
                                    f"    Path({str(outside)!r}).write_text('escaped')\n"})
    tree = Worktree.create(repo, "HEAD")
    try:
        with confined(tree, dict(os.environ)) as confinement:
            result = confirm_fixed(tree.root, "test_it.py::test_it", confidence=0.75, max_failure_rate=0.5,
                                   confinement=confinement, jobs=1)
    finally:
        tree.remove()
    # every rerun wrote into the sandbox's throwaway /tmp only
    assert result.passed and result.runs == 2 and not outside.exists()


# -- fixloop's own git -------------------------------------------------------------------------------

def _fake_git(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    git = folder / "git"
    git.write_text("#!/bin/sh\necho planted\n")
    git.chmod(0o755)
    return git


def test_a_git_in_a_folder_the_job_can_write_is_passed_over_for_the_system_one(tmp_path):
    home = tmp_path / "home"
    planted = _fake_git(home / ".local" / "bin")
    chosen = find_trusted_git({"PATH": f"{planted.parent}:/usr/bin:/bin", "HOME": str(home)})
    assert chosen.path == str(Path("/usr/bin/git").resolve())
    assert [path for path, _ in chosen.refused] == [str(planted)]
    assert "inside" in chosen.refused[0][1]


def test_only_untrustworthy_gits_is_a_clear_configuration_error(tmp_path, monkeypatch):
    import bot._git

    monkeypatch.setattr(bot._git, "_SYSTEM_GITS", ())
    planted = _fake_git(tmp_path / "bin")
    with pytest.raises(ConfigError, match="no git that the job cannot have replaced"):
        find_trusted_git({"PATH": str(planted.parent), "HOME": str(tmp_path)})


def test_a_git_in_a_folder_others_can_write_is_unsafe_wherever_it_lies(tmp_path):
    folder = tmp_path / "tools"
    git = _fake_git(folder)
    folder.chmod(0o777)
    reason = ownership_problem(git.resolve()) or ""
    assert f"{folder.resolve()} is writable by others" in reason or "not root" in reason  # the latter as non-root
    assert unsafe_reason(git.resolve(), {}) is not None
    assert unsafe_reason(Path("/usr/bin/git").resolve(), {"HOME": str(tmp_path)}) is None


def test_push_runs_with_a_minimal_environment_and_never_fixloop_own(make_repo, tmp_path, monkeypatch):
    repo = make_repo(BUGGY)
    bare = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    run_git(repo, "remote", "add", "origin", str(bare))
    seen = tmp_path / "hook-env"
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nenv > {shlex.quote(str(seen))}\n")
    hook.chmod(0o755)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-must-not-reach-git")
    monkeypatch.setenv("FIXLOOP_CANARY", "fixloop-environment-canary")
    head = run_git(repo, "rev-parse", "HEAD").strip()
    push(repo, head, "fixloop/x", expected=None, env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                                                      "GIT_CONFIG_VALUE_0": "Authorization: basic dGVzdA=="})
    hook_env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert "ANTHROPIC_API_KEY" not in hook_env and "FIXLOOP_CANARY" not in hook_env
    assert (hook_env["HOME"].startswith(str(Path(os.environ.get("TMPDIR", "/tmp"))))
            and "fixloop-git-home-" in hook_env["HOME"])
    assert hook_env["PATH"].split(":")[-2:] == ["/usr/bin", "/bin"] and str(Path.home()) not in hook_env["PATH"]
    assert hook_env["GIT_CONFIG_VALUE_0"] == "Authorization: basic dGVzdA=="


# -- the editor and the wall clock ---------------------------------------------------------------------

def test_the_editor_refuses_a_fifo_instead_of_hanging(tmp_path):
    root = tmp_path / "work"
    root.mkdir()
    fifo = root / "pipe"
    os.mkfifo(fifo)
    (root / "link").symlink_to("pipe")
    box = Toolbox(root, env=scrubbed_environment(os.environ), deny=[], command_timeout=5)
    results: list = []
    calls = [{"command": "view", "path": "pipe"}, {"command": "create", "path": "pipe", "file_text": "x"},
             {"command": "str_replace", "path": "link", "old_str": "a", "new_str": "b"},
             {"command": "insert", "path": "pipe", "insert_line": 0, "insert_text": "x"}]
    worker = threading.Thread(target=lambda: results.extend(box.run(EDITOR, call) for call in calls), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader, so that the failure does not hang the suite
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the editor blocked on a FIFO")
    assert len(results) == 4 and all(r.is_error and "named pipe (FIFO), not a regular file" in r.content
                                     for r in results)


@pytest.mark.parametrize("where", ["validation", "tool"])
def test_wall_time_holds_while_a_call_hangs(make_repo, where):
    """A tool call or a validation command that hangs is stopped at the session's wall time, and the
    session ends honestly with its partial work kept. (Validation hangs only once the agent made a marker,
    so that the baseline does not.)"""
    repo = make_repo(BUGGY)
    hang = {"validation": {"command": "create", "path": "hang", "file_text": ""}, "tool": {"command": "sleep 600"}}
    turns = [[tool_use(EDITOR, FIX, id="t1"),
              tool_use(EDITOR if where == "validation" else BASH, hang[where], id="t2")],
             DONE]
    config = Config(validate=[f"test -e hang && sleep 600; {PYTEST}"],
                    limits={"wall_time": 9, "command_timeout": 900, "tool_timeout": 900})
    task = Task(kind="local", title="Fix add()", instructions="add(2, 3) should be 5", source="the command line")
    started = time.monotonic()
    report = run_session(SessionSpec(repo=repo, task=task, config=config, model=ScriptedModel(turns)))
    assert time.monotonic() - started < 300  # not the 600 s of the hanging call
    assert report.status == "not_validated" and report.reason.startswith("time limit reached")
    assert report.patch is not None and "a + b" in Path(report.patch).read_text()  # the partial work is kept


# -- fixloop's own files, without a sandbox ------------------------------------------------------------

def test_unconfined_a_change_to_fixloop_own_files_ends_the_session_before_anything_is_committed(make_repo, tmp_path,
                                                                                                monkeypatch):
    own = tmp_path / "fixloop-install"
    own.mkdir()
    (own / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(bot.workspace, "fixloop_files", lambda environ: ([own], []))
    monkeypatch.setattr(bot.workspace, "_own_files", None)  # restored (unwatched) after the test
    repo = make_repo(BUGGY)
    turns = [[tool_use(EDITOR, FIX, id="t1"), tool_use(BASH, {"command": f"echo 'x = 2' > {own}/module.py"}, id="t2")],
             DONE]
    task = Task(kind="local", title="Fix add()", instructions="add(2, 3) should be 5", source="the command line")
    report = run_session(SessionSpec(repo=repo, task=task, config=Config(validate=[PYTEST], sandbox="off"),
                                     model=ScriptedModel(turns)))
    assert report.status == "error" and "fixloop's own files changed" in report.reason and report.commit is None
    assert run_git(repo, "branch", "--list", "fixloop/*").strip() == ""


def test_confinement_sets_a_private_home_and_keeps_user_installed_packages_importable(tmp_path):
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    environ = {"HOME": str(home), "PATH": f"{home / '.local' / 'bin'}:{os.environ['PATH']}"}
    with Confinement("required" if bubblewrap() else "off", environ=environ) as confinement:
        env = confinement.environment({**environ, "GITHUB_OUTPUT": "/x", "XDG_CONFIG_HOME": str(home / ".config")})
    assert env["HOME"] != str(home) and "GITHUB_OUTPUT" not in env and "XDG_CONFIG_HOME" not in env
    assert env["PYTHONUSERBASE"] == str((home / ".local").resolve())


def test_own_files_are_checked_again_only_after_a_command_ran_outside_the_sandbox(tmp_path, monkeypatch):
    """Confined code sees fixloop's files read-only, so until a command runs unconfined there is nothing to
    check (a change made here, by the test itself, shows it is not looked for); after one, every check
    scans, since it may have left a process behind; a new session's watch scans once and starts afresh."""
    own = tmp_path / "fixloop-install"
    own.mkdir()
    module = own / "module.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(bot.workspace, "fixloop_files", lambda environ: ([own], []))
    monkeypatch.setattr(bot.workspace, "_own_files", None)  # restored (unwatched) after the test
    bot.workspace.watch_own_files({})
    recorded = module.stat()
    module.write_text("x = 2\n")
    bot.workspace.verify_own_files()  # nothing ran unconfined: not scanned
    confined = Confinement("off", environ=os.environ)
    with confined:
        confined.run("true", cwd=tmp_path, env={}, timeout=30)  # mode off: unconfined
    with pytest.raises(WorkspaceError, match="fixloop's own files changed"):
        bot.workspace.verify_own_files()
    module.write_text("x = 1\n")  # as recorded again (the check compares size, time and inode)
    os.utime(module, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    bot.workspace.watch_own_files({})  # a new session: scanned, unchanged, afresh
    module.write_text("x = 3\n")
    bot.workspace.verify_own_files()
    run_shell("true", cwd=tmp_path, env={}, timeout=30)
    with pytest.raises(WorkspaceError, match=r"module\.py"):
        bot.workspace.verify_own_files()


@needs_bwrap
def test_a_sandboxed_command_cannot_write_fixloops_files_and_leaves_their_check_alone(tmp_path):
    """What skipping the check rests on: confined code sees fixloop's own files read-only."""
    own = Path(bot.workspace.__file__)
    before, stamp = unconfined_runs(), own.stat()
    with Confinement("required", environ=os.environ, writable=[tmp_path]) as confinement:
        tried = confinement.run(f"echo '# planted' >> {shlex.quote(str(own))}", cwd=tmp_path, env={}, timeout=30)
    # Read-only, or hidden where the checkout lies in a place the sandbox hides (a clone in /tmp).
    assert tried.exit_code != 0 and ("Read-only file system" in tried.output or "No such file" in tried.output)
    assert own.stat().st_mtime_ns == stamp.st_mtime_ns and unconfined_runs() == before


def test_a_bwrap_the_job_could_have_written_is_never_the_sandbox(tmp_path, monkeypatch):
    """A `bwrap` planted early on PATH (~/.local/bin) would confine nothing: like git, it must be root's, outside
    the job's folders."""
    from bot.sandbox import bubblewrap

    planted = tmp_path / "bin" / "bwrap"
    planted.parent.mkdir()
    planted.write_text("#!/bin/sh\nexit 0\n")
    planted.chmod(0o755)
    monkeypatch.setenv("PATH", f"{planted.parent}{os.pathsep}{os.environ['PATH']}")
    chosen = bubblewrap.__wrapped__()
    assert chosen != str(planted) and (chosen is None or Path(chosen).parent != planted.parent)


def test_a_setup_command_that_changes_fixloop_own_files_is_caught_even_with_the_sandbox(make_repo, tmp_path,
                                                                                        monkeypatch):
    """Setup commands run unconfined (from the base commit, which may be an earlier agent's): fixloop's own
    files are recorded before them and checked before anything is committed or pushed."""
    own = tmp_path / "fixloop-install"
    own.mkdir()
    (own / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(bot.workspace, "fixloop_files", lambda environ: ([own], []))
    monkeypatch.setattr(bot.workspace, "_own_files", None)  # restored (unwatched) after the test
    monkeypatch.setenv("GITHUB_ENV", str(tmp_path / "set_env"))
    repo = make_repo(BUGGY)
    setup = f"echo \"github_env=${{GITHUB_ENV:-unset}}\" > {tmp_path}/setup-saw; echo 'x = 2' > {own}/module.py"
    task = Task(kind="local", title="Fix add()", instructions="add(2, 3) should be 5", source="the command line")
    report = run_session(SessionSpec(repo=repo, task=task, config=Config(validate=[PYTEST], setup=[setup]),
                                     model=ScriptedModel([[tool_use(EDITOR, FIX, id="t1")], DONE])))
    assert report.status == "error" and "fixloop's own files changed" in report.reason and report.commit is None
    assert (tmp_path / "setup-saw").read_text() == "github_env=unset\n"  # no runner file command, even for setup


def test_the_coverage_settings_file_is_never_written_through_a_link(tmp_path):
    from bot.frameworks.pytest import Pytest
    from bot.triage._coverage import measure
    from bot.triage._runner import Runner

    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    runner = Runner(tmp_path, scrubbed_environment(os.environ), framework=Pytest(), timeout=60, jobs=1, command=None,
                    scratch=scratch)
    try:
        for n in range(1, 4):  # the names fixloop will use next, planted as links by the tests
            (scratch / f"run-{n}.rc").symlink_to(victim)
        touch = measure(runner, "test_x.py::test_x", {tmp_path / "x.py": ("x.py", {1})})
        assert touch.touched is None and touch.note == "the changed lines could not be checked (File exists)"
    finally:
        runner.close()
    assert victim.read_text() == "keep me\n"


@needs_bwrap
def test_docker_host_socket_and_a_self_hosted_runner_folder_are_out_of_reach(tmp_path, worktree):
    runner_root = tmp_path / "actions-runner"
    runner_temp = runner_root / "_work" / "_temp"
    runner_temp.mkdir(parents=True)
    (runner_root / ".runner").write_text("{}")
    socket_file = worktree.root / "docker.sock"  # somewhere the sandbox would otherwise show
    socket_file.write_text("a socket stand-in")
    environ = {**os.environ, "RUNNER_TEMP": str(runner_temp), "DOCKER_HOST": f"unix://{socket_file}"}
    with confined(worktree, environ) as confinement:
        assert confinement.sandbox is not None and runner_root.resolve() in confinement.sandbox.hidden
        out = confinement.run(f"cat {socket_file}; echo end", cwd=worktree.root, env={"PATH": os.environ["PATH"]},
                              timeout=30).output
    assert "stand-in" not in out and out.strip().endswith("end")
