"""Confining the agent's commands with bubblewrap (Linux), when it is installed.

Scrubbing the environment removes the secrets fixloop knows about; it cannot remove a credential
file of a format nobody told it about (`~/.netrc`, a tool's token cache). So the agent's shell
and its search programs run in a mount namespace where:

- the whole file system is read-only, except the paths the command needs to write;
- the runner's home directory, `/root`, `/home`, `$RUNNER_TEMP` and `/tmp` are empty (tmpfs), and
  the worktree, the git directory and the interpreter are mounted back on top, as are (read-only)
  the toolchains on `PATH` that live there (`~/.pyenv`, `~/.cargo` with `~/.rustup`, a node
  version of `~/.nvm`, `~/go`, `~/.local`, a venv: the folder holding the `bin` on PATH), minus
  the credential files known to live inside them and any hidden place inside them;
- the Docker, containerd, podman and system-bus sockets are masked, and `/run/user` (session
  buses, agents) is empty: a socket reached from inside would run commands outside;
- it has its own process tree, so `/proc/<pid>/environ` of fixloop itself is out of reach;
- it has no capabilities (so it cannot unmount what hides the files), and, on request, no network.

Without bubblewrap (macOS, or Linux without user namespaces), commands run with the scrubbed
environment and a private home only; `sandbox: required` in the config refuses to run then.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError

# /run/user holds per-user sockets (session bus, gpg-agent, podman) that run commands outside.
_ALWAYS_HIDDEN = ("/root", "/home", "/tmp", "/var/tmp", "/run/user")
_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/run/dbus/system_bus_socket",
            "/run/podman/podman.sock")
# Folders a toolchain on PATH needs beside its own, and credential files kept inside toolchains.
_COMPANIONS = {".cargo": (".rustup",)}
_TOOLCHAIN_SECRETS = (".cargo/credentials", ".cargo/credentials.toml")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: sudo apt-get install -y bubblewrap)"


@functools.cache
def bubblewrap() -> str | None:
    """The bwrap executable, if it is installed and can create namespaces on this machine."""
    path = shutil.which("bwrap")
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

    def wrap(self, argv: list[str], *, cwd: Path) -> list[str]:
        command = [self.executable, "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
                   "--proc", "/proc", "--unshare-pid", "--unshare-ipc", "--unshare-uts", *_no_capabilities()]
        if not self.network:
            command.append("--unshare-net")
        for path in self.hidden:
            command += ["--tmpfs", str(path)]
        masked = [*_SOCKETS, *(str(top.parent / secret) for top in self.readable for secret in _TOOLCHAIN_SECRETS
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


def own_process_tree(mode: str) -> list[str]:
    """A command prefix for the validation commands: a process namespace of their own, where
    bubblewrap works and `mode` is not off. They cannot see or signal fixloop or read its
    environment, and nothing they start outlives them. Nothing else changes: they are the
    repository's own commands and keep the whole machine (caches in the home, installed tools)."""
    executable = bubblewrap() if mode != "off" else None
    if executable is None:
        return []
    return [executable, "--dev-bind", "/", "/", "--proc", "/proc", "--unshare-pid", "--die-with-parent", "--"]


def confinement(mode: str) -> str:
    """How the agent's commands run under `mode`, in words for the report and the check run."""
    if mode == "off":
        return "none (`sandbox: off`)"
    if bubblewrap() is None:
        return f"none: bubblewrap is not available ({INSTALL_HINT})"
    return "bubblewrap"


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
                              "or set `sandbox: auto` to run the agent's commands without it.")
        return None
    hidden = {Path(p) for p in _ALWAYS_HIDDEN}
    hidden |= {Path(environ[name]) for name in ("HOME", "RUNNER_TEMP") if environ.get(name)}
    existing = sorted((p for p in hidden if p.is_dir()), key=lambda p: len(p.parts))
    toolchains = _toolchains(environ.get("PATH", ""), existing)
    return Sandbox(executable, tuple(existing), _existing([*toolchains, *readable]), _existing(writable), network)


def _toolchains(path_variable: str, hidden: list[Path]) -> list[Path]:
    """The toolchains, inside hidden places, of the PATH entries that live there (without them the
    agent could not run the project's Python, Rust, Node or Go): the folder holding the entry
    (`~/.cargo` for `~/.cargo/bin`, a venv for its `bin`), or the entry alone when that folder
    is the hidden place itself."""
    found: list[Path] = []
    for entry in filter(None, path_variable.split(os.pathsep)):
        directory = Path(entry)
        # The innermost hidden place: with a home inside /tmp, the toolchain is a folder of the home.
        places = [place for place in hidden if place in directory.parents]
        if places:
            place = max(places, key=lambda p: len(p.parts))
            toolchain = directory.parent if directory.parent != place else directory
            found += [toolchain, *(place / companion for companion in _COMPANIONS.get(toolchain.name, ()))]
    return found


def _existing(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(p.resolve() for p in paths if p.exists()))


__all__ = ["INSTALL_HINT", "Sandbox", "bubblewrap", "confinement", "own_process_tree", "sandbox"]
