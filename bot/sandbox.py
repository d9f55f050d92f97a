"""The one confinement for everything the agent could have touched (Linux, with bubblewrap).

The agent's shell, the validation commands, the test reruns of triage and deflake validation and
the search programs all run code the agent may have written, and so all run alike:

- the whole file system is read-only, except the worktree and the session's private scratch
  folder (a home and a tmp of its own, created per session and removed after it);
- the runner's home directory, `/root`, `/home`, `/tmp`, `$RUNNER_TEMP` and the runner's file
  command folder (`_runner_file_commands`, where `$GITHUB_ENV` and friends live) are empty
  (tmpfs); the worktree, the git directory and the interpreter are mounted back on top, as are
  (read-only) the toolchains on `PATH` that live there (`~/.pyenv`, `~/.cargo` with `~/.rustup`,
  a node version of `~/.nvm`, `~/go`, `~/.local`, a venv and the Python it was made from), minus
  the credential files known to live inside them and any hidden place inside them;
- so are, read-only, the dependency caches that builds before it filled (Maven's local repository
  `~/.m2/repository`, without `~/.m2/settings.xml` and its passwords; Go's module cache): a test
  rerun resolves what the build downloaded, offline;
- `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_OUTPUT`, `GITHUB_STATE` and `GITHUB_STEP_SUMMARY` are not
  in the environment: nothing confined can change a later step of the job;
- the Docker, containerd, podman and system-bus sockets are masked, and `/run/user` (session
  buses, agents) is empty: a socket reached from inside would run commands outside;
- it has its own process tree, so `/proc/<pid>/environ` of fixloop itself is out of reach, and
  nothing it starts outlives it;
- it has no capabilities, even as root (so it cannot unmount `/proc` or what hides the files),
  and `no_new_privs` (bubblewrap always sets it: no setuid program gives them back); search
  programs also have no network.

Only the repository's `setup` commands run outside it: they run before the agent starts, from
the base commit, and are as trusted as the workflow that installs the project.

Without bubblewrap (macOS, or Linux without user namespaces), commands run with the scrubbed
environment, the private home and tmp only, and every session says so; `sandbox: required` in the
config refuses to start then.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from bot._git import unsafe_reason
from bot._process import CommandResult, run_shell
from bot.errors import ConfigError
from bot.secrets import RUNNER_FILE_COMMANDS

# /run/user holds per-user sockets (session bus, gpg-agent, podman) that run commands outside.
_ALWAYS_HIDDEN = ("/root", "/home", "/tmp", "/var/tmp", "/run/user")
_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
            "/run/dbus/system_bus_socket", "/run/podman/podman.sock")
# Credential files that cloud login steps leave wherever they like (google-github-actions/auth writes
# into the workspace a file from which the job's OIDC tokens can be minted): masked wherever they are.
CREDENTIAL_FILE_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_GHA_CREDS_PATH",
                             "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                             "AWS_SHARED_CREDENTIALS_FILE", "AZURE_FEDERATED_TOKEN_FILE",
                             "AZURE_CLIENT_CERTIFICATE_PATH")
# Folders a toolchain on PATH needs beside its own, and credential files kept inside toolchains.
_COMPANIONS = {".cargo": (".rustup",)}
_TOOLCHAIN_SECRETS = (".cargo/credentials", ".cargo/credentials.toml")
# Settings that point into the runner's (hidden) home; confined commands use their own home's defaults.
_HOME_SETTINGS = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
                  "RUNNER_TEMP")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: sudo apt-get install -y bubblewrap)"


_SYSTEM_BWRAPS = ("/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap")


@functools.cache
def bubblewrap() -> str | None:
    """The bwrap executable, if it is installed and can create namespaces on this machine: the first on
    PATH (then in the system's folders) that the job cannot have written, like fixloop's git (a `bwrap`
    planted in ~/.local/bin would confine nothing). Resolved once per process; fixloop asks before any
    code of the repository runs."""
    folders = [folder for folder in os.environ.get("PATH", os.defpath).split(os.pathsep) if folder]
    candidates = [Path(folder) / "bwrap" for folder in folders] + [Path(path) for path in _SYSTEM_BWRAPS]
    path = next((str(c.resolve()) for c in dict.fromkeys(candidates) if c.is_file() and os.access(c, os.X_OK)
                 and unsafe_reason(c.resolve(), os.environ) is None), None)
    if path is None:
        return None
    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
             *_no_capabilities(), "true"]
    try:
        works = subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    return path if works else None


def _no_capabilities() -> list[str]:
    # As root, bwrap keeps the capabilities it runs with unless told otherwise; as an ordinary
    # user it has none to drop, and older versions refuse the flag.
    return ["--cap-drop", "ALL"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class Sandbox:
    """What a confined command may see: everything read-only, `writable` and `readable` mounted
    back over the hidden places, network only if `network`."""

    executable: str
    hidden: tuple[Path, ...]
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = True

    masked: tuple[str, ...] = _SOCKETS  # files seen as empty (sockets that run commands outside, credentials)

    def wrap(self, argv: list[str], *, cwd: Path) -> list[str]:
        # /proc/sys read-only too: bubblewrap does not always cover it, and a root process without
        # capabilities may still write files there that root owns (kernel.core_pattern runs a program as root).
        command = [self.executable, "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
                   "--proc", "/proc", "--ro-bind-try", "/proc/sys", "/proc/sys", "--ro-bind-try", "/proc/sysrq-trigger",
                   "/proc/sysrq-trigger", "--unshare-pid", "--unshare-ipc", "--unshare-uts", *_no_capabilities()]
        if not self.network:
            command.append("--unshare-net")
        for path in self.hidden:
            command += ["--tmpfs", str(path)]
        masked = [*self.masked, *(str(top.parent / secret) for top in self.readable for secret in _TOOLCHAIN_SECRETS
                                if secret.startswith(top.name + "/"))]
        # Later mounts go on top of earlier ones: read-only first, so a writable path inside a
        # readable one (the worktree's git dir inside the repository's) stays writable.
        for path in self.readable:
            command += ["--ro-bind", str(path), str(path)]
        # A hidden place inside something mounted back stays hidden ($RUNNER_TEMP inside the workspace).
        for path in self.hidden:
            if any(path != back and back in path.parents for back in self.readable):
                command += ["--tmpfs", str(path)]
        for path in self.writable:
            command += ["--bind", str(path), str(path)]
        for secret in masked:
            if os.path.exists(secret):
                command += ["--ro-bind", "/dev/null", secret]
        return [*command, "--chdir", str(cwd), "--", *argv]


def sandbox(mode: str, *, environ: Mapping[str, str], readable: Iterable[Path] = (),
            writable: Iterable[Path] = (), network: bool = True) -> Sandbox | None:
    """The sandbox for `mode` (the config's `sandbox`: auto, required or off), or None to run
    unconfined. `required` without a working bubblewrap is a configuration error."""
    if mode == "off":
        return None
    executable = bubblewrap()
    if executable is None:
        if mode == "required":
            raise ConfigError(f"`sandbox: required` is set, but bubblewrap is not available here: {INSTALL_HINT}, "
                              "or set `sandbox: auto` to run the agent's commands and validation without it.")
        return None
    hidden = {Path(p) for p in _ALWAYS_HIDDEN}
    hidden |= {Path(environ[name]) for name in ("HOME", "RUNNER_TEMP") if environ.get(name)}
    # The folder of the file commands (`_runner_file_commands`), wherever a self-hosted runner keeps it.
    hidden |= {Path(environ[name]).parent for name in RUNNER_FILE_COMMANDS if environ.get(name)}
    # A self-hosted runner's own folder (its `.credentials`), when $RUNNER_TEMP lies in its `_work`.
    if environ.get("RUNNER_TEMP"):
        hidden |= {folder for folder in Path(environ["RUNNER_TEMP"]).parents if (folder / ".runner").is_file()}
    existing = sorted((p for p in hidden if p.is_dir()), key=lambda p: len(p.parts))
    toolchains = [*_toolchains(environ.get("PATH", ""), existing), *dependency_caches(environ)]
    docker = environ.get("DOCKER_HOST", "")
    sockets = (*_SOCKETS, docker.removeprefix("unix://")) if docker.startswith("unix://") else _SOCKETS
    credentials = tuple(environ[name] for name in CREDENTIAL_FILE_VARIABLES if environ.get(name, "").startswith("/"))
    return Sandbox(executable, tuple(existing), _existing([*toolchains, *readable]), _existing(writable), network,
                   (*sockets, *credentials))


def _toolchains(path_variable: str, hidden: list[Path]) -> list[Path]:
    """The toolchains, inside hidden places, of the PATH entries that live there (without them the
    agent could not run the project's Python, Rust, Node or Go): the folder holding the entry
    (`~/.cargo` for `~/.cargo/bin`, a venv for its `bin`), or the entry alone when that folder
    is the hidden place itself; for a venv, also the Python it was made from."""
    found: list[Path] = []
    for entry in filter(None, path_variable.split(os.pathsep)):
        directory = Path(entry)
        # The innermost hidden place: with a home inside /tmp, the toolchain is a folder of the home.
        places = [place for place in hidden if place in directory.parents]
        if places:
            place = max(places, key=lambda p: len(p.parts))
            toolchain = directory.parent if directory.parent != place else directory
            found += [toolchain, *(place / companion for companion in _COMPANIONS.get(toolchain.name, ())),
                      *_venv_base(toolchain)]
    return found


def dependency_caches(environ: Mapping[str, str]) -> list[Path]:
    """The package caches of the runner's build tools that exist: Maven's local repository (in the
    home Java sees, the account's, and in $HOME) and Go's module cache."""
    homes = [*_account_home(), *([Path(environ["HOME"])] if environ.get("HOME") else [])]
    caches = [home / ".m2" / "repository" for home in dict.fromkeys(homes)]
    go = go_module_cache(environ)
    return [cache for cache in (*caches, *([go] if go else [])) if cache.is_dir()]


def go_module_cache(environ: Mapping[str, str]) -> Path | None:
    """Where `go` keeps downloaded modules for the runner: $GOMODCACHE, else the first $GOPATH's
    `pkg/mod`, else `~/go/pkg/mod`."""
    if environ.get("GOMODCACHE"):
        return Path(environ["GOMODCACHE"])
    gopath = next(iter(filter(None, environ.get("GOPATH", "").split(os.pathsep))), None)
    if gopath:
        return Path(gopath) / "pkg" / "mod"
    return Path(environ["HOME"]) / "go" / "pkg" / "mod" if environ.get("HOME") else None


def _account_home() -> list[Path]:
    """The home of the account fixloop runs as (Java's `user.home`, whatever $HOME says)."""
    try:
        return [Path(pwd.getpwuid(os.getuid()).pw_dir)]
    except KeyError:
        return []


def _venv_base(folder: Path) -> list[Path]:
    """The installation a venv's interpreter links to (pyvenv.cfg's `home` is its bin folder)."""
    try:
        lines = (folder / "pyvenv.cfg").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    homes = [line.partition("=")[2].strip() for line in lines if line.partition("=")[0].strip() == "home"]
    return [Path(homes[0]).parent] if homes and homes[0] else []


def _existing(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(p.resolve() for p in paths if p.exists()))


class Confinement:
    """How one session runs code the agent could have touched: its private scratch folder (a home
    and a tmp), the environment those commands get, and the sandbox around them (None without
    bubblewrap or with `sandbox: off`). Use it as a context manager: the scratch folder is
    removed at the end."""

    def __init__(self, mode: str, *, environ: Mapping[str, str], writable: Iterable[Path] = (),
                 readable: Iterable[Path] = ()) -> None:
        self.mode, self.environ = mode, dict(environ)
        self.readable = tuple(readable)
        self.scratch = Path(tempfile.mkdtemp(prefix="fixloop-scratch-"))
        self.home, self.tmp = self.scratch / "home", self.scratch / "tmp"
        for folder in (self.home, self.tmp):
            folder.mkdir()
        try:
            self.sandbox = sandbox(mode, environ=environ, readable=self.readable,
                                   writable=[*writable, self.scratch])
        except ConfigError:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def confined(self) -> bool:
        return self.sandbox is not None

    @property
    def description(self) -> str:
        """In words, for the report, the check run and the terminal."""
        if self.sandbox is not None:
            return "bubblewrap"
        if self.mode == "off":
            return "none (`sandbox: off`): the agent's shell and the validation commands run unconfined"
        return (f"none: bubblewrap is not available ({INSTALL_HINT}); the agent's shell and the validation commands "
                "run unconfined")

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` as a confined command gets it: no runner file commands, the private home and tmp,
        and no system or global git config (no credential helpers)."""
        kept = {name: value for name, value in env.items() if name not in (*RUNNER_FILE_COMMANDS, *_HOME_SETTINGS)}
        tmp = str(self.tmp)
        kept |= {"HOME": str(self.home), "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp,
                 "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        # Packages installed with `pip install --user` stay importable (under bubblewrap where ~/.local
        # came back, read-only, as a toolchain on PATH).
        user_base = Path(self.environ.get("HOME", "/nonexistent")).resolve() / ".local"
        if user_base in (self.sandbox.readable if self.sandbox is not None else ()) or (
                self.sandbox is None and user_base.is_dir()):
            kept["PYTHONUSERBASE"] = str(user_base)
        # Go's downloaded modules, which the private home lacks (Java finds Maven's from the account's home).
        modules = go_module_cache(self.environ)
        if modules is not None and modules.is_dir():
            kept["GOMODCACHE"] = str(modules)
        return kept

    def tempdir(self, prefix: str) -> Path:
        """A fresh folder that confined commands can write into (reports, coverage data)."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch))

    def run(self, command: str | list[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
            output_limit: int = 30_000) -> CommandResult:
        """`command` (a bash script, or an argv list) run confined, with `environment(env)`."""
        argv = ["bash", "-c", command] if isinstance(command, str) else command
        if self.sandbox is not None:
            argv = self.sandbox.wrap(argv, cwd=cwd)
        return run_shell(argv, cwd=cwd, env=self.environment(env), timeout=timeout, output_limit=output_limit,
                         confined=self.sandbox is not None)

    def offline(self, readable: Iterable[Path]) -> Sandbox | None:
        """The sandbox of a search program: the same hidden places, read-only, without network."""
        return sandbox(self.mode, environ=self.environ, readable=readable, network=False)


__all__ = ["INSTALL_HINT", "Confinement", "Sandbox", "bubblewrap", "sandbox"]
