"""The agent's git worktree, and the only code that creates commits and branches.

The agent edits files in a detached worktree; its own `git` calls there do not count. To
capture the work, the orchestrator stages everything into a private index (never the worktree's
own), so the resulting tree is the working files exactly as the agent left them, ignoring any
commits or staging the agent made. Commits are built with `commit-tree` on top of the base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.errors import WorkspaceError

FIXLOOP_AUTHOR = ("fixloop", "fixloop@users.noreply.github.com")


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, input_text: str | None = None) -> str:
    """Run git and return its stdout; a failure becomes a WorkspaceError carrying git's message."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, input=input_text, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def repository_root(path: Path) -> Path:
    if not path.is_dir():
        raise WorkspaceError(f"{path} is not a directory.")
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=path).strip())
    except WorkspaceError:
        raise WorkspaceError(f"{path} is not inside a git repository (run `git init` and commit first).") from None


def resolve_commit(repo: Path, rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo).strip()
    except WorkspaceError:
        raise WorkspaceError(f"{rev!r} is not a commit in {repo} (does the repository have any commits?).") from None


def read_file_at(repo: Path, commit: str, path: str) -> str | None:
    """The text of `path` at `commit`, or None if it does not exist there."""
    try:
        return git("show", f"{commit}:{path}", cwd=repo)
    except WorkspaceError:
        return None


@dataclass(frozen=True)
class Snapshot:
    """The worktree's files captured as a git tree, compared with the base commit."""

    tree: str
    changed_paths: list[str]
    patch: str
    diff_stat: str

    @property
    def empty(self) -> bool:
        return not self.changed_paths


class Worktree:
    def __init__(self, repo: Path, root: Path, base: str) -> None:
        self.repo, self.root, self.base = repo, root, base

    @classmethod
    def create(cls, repo: Path, base: str) -> Worktree:
        root = Path(tempfile.mkdtemp(prefix="fixloop-worktree-"))
        git("worktree", "add", "--detach", "--quiet", str(root), base, cwd=repo)
        return cls(repo, root, base)

    def snapshot(self) -> Snapshot:
        with tempfile.TemporaryDirectory(prefix="fixloop-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            git("read-tree", self.base, cwd=self.root, env=env)
            git("add", "--all", "--", ".", cwd=self.root, env=env)
            tree = git("write-tree", cwd=self.root, env=env).strip()
        changed = git("diff", "--name-only", "-z", self.base, tree, cwd=self.root).split("\0")
        return Snapshot(
            tree=tree,
            changed_paths=[p for p in changed if p],
            patch=git("diff", "--binary", self.base, tree, cwd=self.root),
            diff_stat=git("diff", "--stat", self.base, tree, cwd=self.root).strip(),
        )

    def commit(self, snapshot: Snapshot, message: str) -> str:
        name, email = FIXLOOP_AUTHOR
        identity = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        return git("commit-tree", snapshot.tree, "-p", self.base, "-F", "-", cwd=self.root, env=identity, input_text=message).strip()

    def remove(self) -> None:
        try:
            git("worktree", "remove", "--force", str(self.root), cwd=self.repo)
        except WorkspaceError:
            shutil.rmtree(self.root, ignore_errors=True)
            git("worktree", "prune", cwd=self.repo)


def create_branch(repo: Path, name: str, commit: str, *, replace: bool = False) -> None:
    """Create `name` at `commit`; refuses to move an existing branch unless `replace`."""
    git("check-ref-format", "--branch", name, cwd=repo)
    git("update-ref", f"refs/heads/{name}", commit, *(() if replace else ("",)), cwd=repo)


def has_commit(repo: Path, sha: str) -> bool:
    try:
        git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo)
    except WorkspaceError:
        return False
    return True


def fetch(repo: Path, ref: str, *, env: dict[str, str]) -> None:
    """Fetch `ref` from origin (credentials come in through `env`, never the config on disk)."""
    git("fetch", "--quiet", "--no-tags", "origin", ref, cwd=repo, env=env)


def push(repo: Path, commit: str, branch: str, *, expected: str | None, env: dict[str, str]) -> None:
    """Point origin's `branch` at `commit`, if the branch is still at `expected` (None: absent)."""
    lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
    git("push", "--quiet", "--no-verify", lease, "origin", f"{commit}:refs/heads/{branch}", cwd=repo, env=env)
