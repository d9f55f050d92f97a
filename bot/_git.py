"""The git executable fixloop trusts, chosen once before any code the agent touched can run.

A planted `git` earlier on PATH (say `~/.local/bin/git`, which comes before `/usr/bin` on GitHub's
runner images) would run with fixloop's credentials when it pushes. So fixloop resolves git once,
at start-up, refuses every candidate that lives where the runner user can write, and from then on
calls git only by the absolute path it chose.

"Where the runner user can write" is judged without asking the kernel (root can write anywhere):
the executable and every folder above it must belong to root and be writable by nobody else, and
none may lie in a place that belongs to the job (the home, the temporary folders, the runner's
temp folder, the workspace).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError

# Where a system git lives when a user-writable one comes first on PATH (Homebrew on macOS runners).
_SYSTEM_GITS = ("/usr/bin/git", "/bin/git", "/usr/local/bin/git")
_JOB_PLACES = ("HOME", "TMPDIR", "RUNNER_TEMP", "RUNNER_TOOL_CACHE", "GITHUB_WORKSPACE")


@dataclass(frozen=True)
class TrustedGit:
    path: str
    refused: tuple[tuple[str, str], ...] = ()  # (candidate, why not) for the candidates passed over


def unsafe_reason(executable: Path, environ: Mapping[str, str]) -> str | None:
    """Why code running as the runner user could have written `executable` (resolved), or None."""
    places = [Path(environ[name]).resolve() for name in _JOB_PLACES if environ.get(name)]
    places += [Path("/tmp").resolve(), Path("/var/tmp").resolve()]
    for place in places:
        if executable == place or place in executable.parents:
            return f"it lies inside {place}, which the job can write"
    return ownership_problem(executable)


def ownership_problem(executable: Path) -> str | None:
    """Why `executable` or a folder above it is not root's alone, or None."""
    for item in (executable, *executable.parents):
        try:
            info = item.stat()
        except OSError as error:
            return f"{item} cannot be inspected ({error.strerror})"
        if info.st_uid != 0:
            return f"{item} belongs to uid {info.st_uid}, not root"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{item} is writable by others ({stat.filemode(info.st_mode)})"
    return None


def find_trusted_git(environ: Mapping[str, str]) -> TrustedGit:
    """The first git on PATH (then in the system's folders) that the runner user cannot have written."""
    candidates = [Path(folder) / "git" for folder in environ.get("PATH", os.defpath).split(os.pathsep) if folder]
    candidates += [Path(path) for path in _SYSTEM_GITS]
    refused: list[tuple[str, str]] = []
    for candidate in dict.fromkeys(candidates):
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        resolved = candidate.resolve()
        reason = unsafe_reason(resolved, environ)
        if reason is None:
            return TrustedGit(str(resolved), tuple(refused))
        refused.append((str(candidate), reason))
    if not refused:
        raise ConfigError("git is not installed (no `git` on PATH): install it (Debian/Ubuntu: apt-get install git).")
    why = "; ".join(f"{path}: {reason}" for path, reason in refused)
    raise ConfigError(f"no git that the job cannot have replaced was found ({why}). Install git system-wide "
                      "(Debian/Ubuntu: apt-get install git), owned by root, so fixloop can run it with its "
                      "credentials.")


@functools.cache
def trusted_git() -> TrustedGit:
    """The git of this process, resolved on the first call (fixloop calls it at start-up)."""
    return find_trusted_git(os.environ)


def git_executable() -> str:
    return trusted_git().path


__all__ = ["TrustedGit", "find_trusted_git", "git_executable", "ownership_problem", "trusted_git", "unsafe_reason"]
