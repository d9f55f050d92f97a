"""Code the agent touched, under bubblewrap: what it can and cannot reach (bot/sandbox.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import bot.sandbox
from bot._process import run_shell
from bot.agent.tools import BASH, Toolbox
from bot.errors import ConfigError
from bot.sandbox import INSTALL_HINT, Confinement, bubblewrap, sandbox
from bot.workspace import Worktree
from tests.conftest import run_git
from tests.processes import adopting_orphans

needs_bwrap = pytest.mark.skipif(bubblewrap() is None, reason=f"bubblewrap is not available here: {INSTALL_HINT}")


@pytest.fixture
def setting(tmp_path):
    """A runner's home with a credential file, a repository with a worktree, and the session's confinement."""
    home = tmp_path / "runner-home"
    home.mkdir()
    (home / ".netrc").write_text("machine example.com login me password hunter2-netrc\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hi')\n")
    run_git(repo, "add", ".")
    run_git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    worktree = Worktree.create(repo, "HEAD")
    mode = "required" if bubblewrap() else "off"
    with Confinement(mode, environ={"HOME": str(home), "PATH": os.environ["PATH"]}, writable=[worktree.root],
                     readable=[worktree.common_dir, worktree.git_dir]) as confinement:
        yield home, worktree, confinement
    worktree.remove()


def _shell(setting, command: str, *, timeout: float = 30) -> str:
    _, worktree, confinement = setting
    env = {"PATH": os.environ["PATH"], "HOME": "/root", "LC_ALL": "C"}
    tools = Toolbox(worktree.root, env=env, deny=[], command_timeout=timeout, confinement=confinement)
    return tools.run(BASH, {"command": command}).content


@needs_bwrap
def test_the_runner_home_and_tmp_are_empty_but_the_worktree_is_there(setting):
    home = setting[0]
    out = _shell(setting, f"cat {home}/.netrc 2>&1; ls -A {home} | wc -l; cat app.py")
    assert "hunter2" not in out and "No such file" in out
    assert out.splitlines()[-2:] == ["0", "print('hi')"]


@needs_bwrap
def test_writes_land_in_the_worktree_and_the_private_home_and_tmp_only(setting):
    _, worktree, confinement = setting
    out = _shell(setting, "echo new > made.txt && echo cached > ~/cache && echo t > \"$TMPDIR/t\" && touch /usr/evil; "
                          "touch \"$(git rev-parse --git-common-dir)/config\"; echo done")
    assert ((worktree.root / "made.txt").read_text() == "new\n"
            and (confinement.home / "cache").read_text() == "cached\n")
    assert (confinement.tmp / "t").read_text() == "t\n"
    assert out.count("Read-only file system") == 2 and not Path("/usr/evil").exists()


def test_the_scratch_folder_is_private_to_the_session_and_removed_after_it(tmp_path):
    with Confinement("off", environ={"HOME": str(tmp_path)}) as confinement:
        (confinement.home / "cache").write_text("x")
        env = confinement.environment({"HOME": str(tmp_path), "PATH": "/usr/bin", "GITHUB_ENV": "/x/set_env",
                                       "XDG_CACHE_HOME": str(tmp_path / ".cache")})
        assert confinement.scratch.stat().st_mode & 0o077 == 0  # mkdtemp: the runner user's alone
    assert not confinement.scratch.exists()
    assert env["HOME"] == str(confinement.home) and env["TMPDIR"] == str(confinement.tmp)
    assert "GITHUB_ENV" not in env and "XDG_CACHE_HOME" not in env and env["GIT_CONFIG_GLOBAL"] == os.devnull


@needs_bwrap
def test_git_reads_work_but_the_git_directory_is_read_only(setting):
    out = _shell(setting, "git log --oneline | wc -l; git status --short; git -c user.name=x -c user.email=x@x "
                          "commit --allow-empty -qm evil; echo exit=$?")
    assert out.splitlines()[0] == "1" and "Read-only file system" in out
    assert "exit=0" not in out


@needs_bwrap
def test_fixloop_own_process_and_its_environment_are_out_of_reach(setting):
    out = _shell(setting, "cat /proc/$PPID/environ | tr '\\0' '\\n' | grep -c . ; ls /proc | grep -c '^[0-9]'; "
                          f"kill -0 {os.getpid()}; echo kill=$?")
    assert "PYTEST_CURRENT_TEST" not in out and "kill=1" in out
    assert int(out.splitlines()[1]) <= 4  # bwrap's init, bash and its pipeline: nothing of the host


@needs_bwrap
def test_search_programs_sandbox_has_no_network_not_even_loopback(setting):
    _, worktree, confinement = setting
    offline = confinement.offline([worktree.root])
    assert offline is not None
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = (f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); "
                   "print('connected')\"")
        assert "connected" in _shell(setting, connect)  # the agent's shell and validation keep the network
        out = run_shell(offline.wrap(["bash", "-c", connect], cwd=worktree.root), cwd=worktree.root,
                        env={"PATH": os.environ["PATH"]}, timeout=30).output
    assert "connected" not in out and ("refused" in out or "unreachable" in out), out


@needs_bwrap
def test_a_timeout_kills_everything_inside(setting):
    with adopting_orphans() as started_here:
        started = time.monotonic()
        out = _shell(setting, "(sleep 300 &) ; sleep 300", timeout=1)
        assert "killed after 1 s" in out and time.monotonic() - started < 10
        time.sleep(0.2)
        assert started_here() == {}


def test_required_without_bubblewrap_is_a_clear_configuration_error(monkeypatch):
    monkeypatch.setattr(bot.sandbox, "bubblewrap", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install -y bubblewrap"):
        sandbox("required", environ={})
    assert sandbox("auto", environ={}) is None  # auto falls back to running unconfined


def test_off_never_confines():
    assert sandbox("off", environ={"HOME": "/root"}) is None


@needs_bwrap
def test_wrapped_commands_keep_their_exit_code_and_output(tmp_path):
    confinement = sandbox("required", environ={}, writable=[tmp_path])
    assert confinement is not None
    result = run_shell(confinement.wrap(["bash", "-c", "echo out; exit 7"], cwd=tmp_path),
                       cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=30)
    assert (result.exit_code, result.output.strip()) == (7, "out")


@needs_bwrap
def test_hidden_places_are_hidden_even_when_the_worktree_lives_inside_one(tmp_path):
    home = tmp_path / "home"
    checkout = home / "work" / "repo"
    checkout.mkdir(parents=True)
    (home / ".git-credentials").write_text("https://x:tok@example.com\n")
    (checkout / "file.txt").write_text("visible\n")
    confinement = sandbox("required", environ={"HOME": str(home)}, writable=[checkout])
    assert confinement is not None
    script = f"cat file.txt; cat {home}/.git-credentials; echo written > out.txt"
    result = run_shell(confinement.wrap(["bash", "-c", script], cwd=checkout), cwd=checkout,
                       env={"PATH": os.environ["PATH"]}, timeout=30)
    assert "visible" in result.output and "tok@" not in result.output
    assert (checkout / "out.txt").read_text() == "written\n"


def test_the_probe_runs_once(monkeypatch):
    first = bubblewrap()
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("probed again"))
    assert bubblewrap() == first


@needs_bwrap
def test_toolchains_on_path_inside_the_home_stay_usable_but_their_credentials_do_not(tmp_path):
    home = tmp_path / "home"
    for tool in (".pyenv/shims", ".cargo/bin"):
        (home / tool).mkdir(parents=True)
    (home / ".pyenv" / "shims" / "mytool").write_text("#!/bin/sh\necho tool-ran\n")
    (home / ".pyenv" / "shims" / "mytool").chmod(0o755)
    (home / ".rustup").mkdir()
    (home / ".rustup" / "settings.toml").write_text("default_toolchain = 'stable'\n")
    (home / ".cargo" / "credentials.toml").write_text("[registry]\ntoken = 'cargo-secret-token'\n")
    (home / ".netrc").write_text("machine x login y password netrc-secret\n")
    work = tmp_path / "work"
    work.mkdir()
    path = f"{home}/.pyenv/shims:{home}/.cargo/bin:{os.environ['PATH']}"
    confinement = sandbox("required", environ={"HOME": str(home), "PATH": path}, writable=[work])
    assert confinement is not None
    script = (f"mytool; cat {home}/.rustup/settings.toml; cat {home}/.cargo/credentials.toml; echo creds=$?; "
              f"cat {home}/.netrc 2>&1; touch {home}/.pyenv/evil 2>&1")
    out = run_shell(confinement.wrap(["bash", "-c", script], cwd=work), cwd=work, env={"PATH": path}, timeout=30).output
    assert "tool-ran" in out and "default_toolchain" in out
    assert "cargo-secret-token" not in out and "creds=1" in out
    assert "netrc-secret" not in out and "No such file" in out and "Read-only file system" in out


@needs_bwrap
def test_dependency_caches_stay_readable_for_offline_reruns_but_maven_passwords_do_not(tmp_path):
    """Maven's local repository and Go's module cache, filled by the build before, come back read-only:
    a rerun of the tests resolves offline. `~/.m2/settings.xml` (server passwords) stays hidden."""
    home = tmp_path / "home"
    jar = home / ".m2" / "repository" / "org" / "junit" / "junit-5.jar"
    module = home / "go" / "pkg" / "mod" / "example.com" / "lib@v1.0.0" / "lib.go"
    for path in (jar, module):
        path.parent.mkdir(parents=True)
        path.write_text("package contents\n")
    (home / ".m2" / "settings.xml").write_text("<password>maven-secret</password>\n")
    work = tmp_path / "work"
    work.mkdir()
    environ = {"HOME": str(home), "PATH": os.environ["PATH"]}
    with Confinement("required", environ=environ, writable=[work]) as confinement:
        env = confinement.environment(environ)
        assert env["GOMODCACHE"] == str(home / "go" / "pkg" / "mod")
        script = (f"cat {jar} {module}; cat {home}/.m2/settings.xml 2>&1; touch {jar.parent}/planted 2>&1; "
                  f"ls {home}")
        out = confinement.run(script, cwd=work, env=environ, timeout=30).output
    assert out.count("package contents") == 2
    assert "maven-secret" not in out and "No such file" in out and "Read-only file system" in out
    assert not (jar.parent / "planted").exists()


@needs_bwrap
def test_a_toolchain_in_the_workspace_does_not_bring_back_the_runner_temp_folder(tmp_path):
    # A GitHub runner: the workspace and $RUNNER_TEMP (step scripts, file commands) both under the home.
    home = tmp_path / "home"
    venv_bin = home / "work" / "proj" / "proj" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "tool").write_text("#!/bin/sh\necho venv-tool\n")
    (venv_bin / "tool").chmod(0o755)
    runner_temp = home / "work" / "_temp"
    runner_temp.mkdir()
    (runner_temp / "step.sh").write_text("TOKEN=runner-temp-secret\n")
    (home / "work" / "proj" / "other.txt").write_text("outside the venv\n")
    work = tmp_path / "work"
    work.mkdir()
    path = f"{venv_bin}:{os.environ['PATH']}"
    confinement = sandbox("required", environ={"HOME": str(home), "RUNNER_TEMP": str(runner_temp), "PATH": path},
                          writable=[work])
    assert confinement is not None
    script = f"tool; cat {runner_temp}/step.sh 2>&1; cat {home}/work/proj/other.txt 2>&1"
    out = run_shell(confinement.wrap(["bash", "-c", script], cwd=work), cwd=work, env={"PATH": path}, timeout=30).output
    assert "venv-tool" in out
    assert "runner-temp-secret" not in out and "outside the venv" not in out


@needs_bwrap
def test_confined_commands_see_no_other_process_and_nothing_they_start_outlives_them(setting):
    # Another process of the same user holding a secret in its environment, as fixloop does.
    holder = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], "HELD_SECRET": "held-secret-value"})
    _, worktree, confinement = setting
    try:
        scan = ("for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null | grep -c held-secret-value; "
                f"kill -0 {holder.pid} 2>/dev/null; echo signal=$?; (setsid sleep 301 &); "
                # Until the sleep has left the group (a loaded machine may take a while to run setsid): else the
                # command's own end takes it along, and the unconfined baseline proves nothing.
                "for _ in $(seq 100); do pgrep -x -f 'sleep 301' > /dev/null && break; sleep 0.05; done; echo done")
        env = {"PATH": os.environ["PATH"]}
        with adopting_orphans() as started_here:
            bare = run_shell(["bash", "-c", scan], cwd=worktree.root, env=env, timeout=30).output
            time.sleep(0.2)
            # The scan works: unconfined, the secret is there to read, and the setsid sleep outlives it.
            assert bare.splitlines()[0] != "0" and "sleep 301" in started_here().values()
        with adopting_orphans() as started_here:
            confined = confinement.run(scan, cwd=worktree.root, env=env, timeout=30).output
            time.sleep(0.2)
            assert started_here() == {}
    finally:
        holder.kill()
        holder.wait()
    assert confined.splitlines()[:2] == ["0", "signal=1"] and confined.strip().endswith("done")


@needs_bwrap
def test_confined_commands_have_no_capabilities_and_no_new_privileges_even_as_root(setting):
    # Writes back the value it read, so that a failing run changes nothing on the machine.
    out = _shell(setting, "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; umount -l /proc; echo umount=$?; "
                          "v=$(cat /proc/sys/kernel/core_pattern); echo \"$v\" > /proc/sys/kernel/core_pattern; "
                          "echo sysctl=$?")
    assert "CapEff:\t0000000000000000" in out and "CapPrm:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
    assert "umount=0" not in out and "sysctl=0" not in out


def test_fixloop_makes_its_own_process_unreadable_to_its_children():
    probe = ("import ctypes; from bot.secrets import protect_this_process; libc = ctypes.CDLL(None); "
             "before = libc.prctl(3, 0, 0, 0, 0); protect_this_process(); print(before, libc.prctl(3, 0, 0, 0, 0))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "0"]  # PR_GET_DUMPABLE: dumpable before, not after


@needs_bwrap
def test_cloud_credential_files_are_empty_inside_wherever_they_are():
    """google-github-actions/auth writes its file into the workspace, which a self-hosted runner may
    keep outside every hidden place: the file a credential variable names is masked anyway."""
    outside = Path(tempfile.mkdtemp(dir=Path(__file__).parent, prefix=".creds-"))  # not under /tmp or a home
    try:
        creds = outside / "gha-creds-0123.json"
        creds.write_text('{"headers": {"Authorization": "Bearer oidc-request-token"}}')

        def read_inside(environ: dict[str, str]) -> str:
            # The folder is mounted back like the repository is, wherever the checkout lies (/tmp in CI).
            confined = sandbox("required", environ={"PATH": os.environ["PATH"], **environ}, readable=[outside])
            assert confined is not None
            return run_shell(confined.wrap(["cat", str(creds)], cwd=outside), cwd=outside,
                             env={"PATH": os.environ["PATH"]}, timeout=30).output

        assert "oidc-request-token" in read_inside({}), "the place itself is not hidden"
        masked = read_inside({"GOOGLE_APPLICATION_CREDENTIALS": str(creds)})
        assert "oidc-request-token" not in masked and "Permission denied" in masked
    finally:
        shutil.rmtree(outside)
