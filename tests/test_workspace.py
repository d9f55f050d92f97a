import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.errors import WorkspaceError
from bot.workspace import (
    Worktree,
    create_branch,
    push,
    read_file_at,
    repository_root,
    resolve_commit,
)
from tests.conftest import run_git


def test_worktree_snapshot_sees_files_not_agent_commits(make_repo):
    repo = make_repo({"a.txt": "one\n", "b.txt": "keep\n"})
    base = resolve_commit(repo, "HEAD")
    tree = Worktree.create(repo, base)
    try:
        (tree.root / "a.txt").write_text("two\n")
        (tree.root / "new.txt").write_text("new\n")
        (tree.root / "b.txt").unlink()
        # The agent committing or staging on its own changes nothing about what counts.
        run_git(tree.root, "add", "a.txt")
        run_git(tree.root, "commit", "-qm", "agent commit")
        snapshot = tree.snapshot()
        assert sorted(snapshot.changed_paths) == ["a.txt", "b.txt", "new.txt"]
        assert "+two" in snapshot.patch and "3 files changed" in snapshot.diff_stat
        commit = tree.commit(snapshot, "fixloop: change\n\nwhy\n")
        assert run_git(repo, "rev-parse", f"{commit}^").strip() == base
        assert run_git(repo, "log", "-1", "--format=%an <%ae>%n%B", commit).startswith("fixloop <")
        create_branch(repo, "fixloop/x-1", commit)
        assert run_git(repo, "rev-parse", "fixloop/x-1").strip() == commit
        with pytest.raises(WorkspaceError):
            create_branch(repo, "fixloop/x-1", base)
        with pytest.raises(WorkspaceError):
            create_branch(repo, "bad..name", commit)
    finally:
        tree.remove()
    assert not tree.root.exists()
    assert (repo / "a.txt").read_text() == "one\n" and (repo / "b.txt").exists()
    assert run_git(repo, "status", "--porcelain") == ""
    assert run_git(repo, "rev-parse", "HEAD").strip() == base


def test_snapshot_respects_gitignore_and_handles_binary(make_repo):
    repo = make_repo({".gitignore": "build/\n", "x.py": "x = 1\n"})
    tree = Worktree.create(repo, "HEAD")
    try:
        (tree.root / "build").mkdir()
        (tree.root / "build" / "out.o").write_bytes(b"\0\1")
        (tree.root / "data.bin").write_bytes(bytes(range(256)))
        snapshot = tree.snapshot()
        assert snapshot.changed_paths == ["data.bin"]
        assert "GIT binary patch" in snapshot.patch
    finally:
        tree.remove()


def test_repository_errors_are_clear(tmp_path: Path, make_repo):
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        repository_root(tmp_path)
    with pytest.raises(WorkspaceError, match="not a directory"):
        repository_root(tmp_path / "missing")
    repo = make_repo({"a": "1"})
    with pytest.raises(WorkspaceError, match="is not a commit"):
        resolve_commit(repo, "nope")
    assert read_file_at(repo, "HEAD", "a") == "1"
    assert read_file_at(repo, "HEAD", "missing") is None


# ------------------------------------------------------------------------------ the agent poisoning git
POISON_MESSAGE = "the agent changed the repository's git configuration"


def _hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _fsmonitor(tree: Worktree, marker: Path) -> Path:
    run_git(tree.root, "config", "core.fsmonitor", f"touch {marker}; false")
    return tree.common_dir / "config"


def _filter(tree: Worktree, marker: Path) -> Path:
    (tree.root / ".gitattributes").write_text("* filter=x\n")
    run_git(tree.root, "config", "filter.x.clean", f"touch {marker}; cat")
    return tree.common_dir / "config"


def _remote_url(tree: Worktree, marker: Path) -> Path:
    run_git(tree.root, "remote", "set-url", "origin", "http://127.0.0.1:9/evil.git")
    return tree.common_dir / "config"


def _insteadof(tree: Worktree, marker: Path) -> Path:
    origin = run_git(tree.root, "remote", "get-url", "origin").strip()
    run_git(tree.root, "config", "url.http://127.0.0.1:9/x/.insteadOf", origin)
    return tree.common_dir / "config"


def _include(tree: Worktree, marker: Path) -> Path:
    evil = marker.parent / "evil.gitconfig"
    evil.write_text(f"[core]\n\tfsmonitor = touch {marker}; false\n")
    run_git(tree.root, "config", "include.path", str(evil))
    return tree.common_dir / "config"


def _hooks(tree: Worktree, marker: Path) -> Path:
    _hook(tree.common_dir / "hooks" / "reference-transaction", f"touch {marker}")
    return tree.common_dir / "hooks" / "reference-transaction"


def _hooks_path(tree: Worktree, marker: Path) -> Path:
    _hook(tree.root / "evil-hooks" / "reference-transaction", f"touch {marker}")
    run_git(tree.root, "config", "core.hooksPath", str(tree.root / "evil-hooks"))
    return tree.common_dir / "config"


def _info_attributes(tree: Worktree, marker: Path) -> Path:
    (tree.common_dir / "info").mkdir(exist_ok=True)
    (tree.common_dir / "info" / "attributes").write_text("* filter=lfs\n")
    return tree.common_dir / "info" / "attributes"


def _git_file(tree: Worktree, marker: Path) -> Path:
    # A repository of the agent's making, with its own config; the worktree's `.git` pointer now leads there.
    fake = marker.parent / "fake.git"
    run_git(marker.parent, "init", "-q", "--bare", str(fake))
    run_git(fake, "config", "core.fsmonitor", f"touch {marker}; false")
    (tree.root / ".git").write_text(f"gitdir: {fake}\n")
    return tree.root / ".git"


def _commondir(tree: Worktree, marker: Path) -> Path:
    fake = marker.parent / "fake.git"
    run_git(marker.parent, "init", "-q", "--bare", str(fake))
    (tree.git_dir / "commondir").write_text(f"{fake}\n")
    return tree.git_dir / "commondir"


def _config_worktree(tree: Worktree, marker: Path) -> Path:
    (tree.git_dir / "config.worktree").write_text(f"[core]\n\tfsmonitor = touch {marker}; false\n")
    return tree.git_dir / "config.worktree"


def _global_config(tree: Worktree, marker: Path) -> Path:
    # The runner's own ~/.gitconfig, by absolute path: a push reads it too.
    path = Path(os.environ["HOME"]) / ".gitconfig"
    path.write_text("[url \"http://127.0.0.1:9/\"]\n\tinsteadOf = /\n")
    return path


POISONINGS: dict[str, Callable[[Worktree, Path], Path]] = {
    "fsmonitor": _fsmonitor, "filter": _filter, "remote_url": _remote_url, "insteadof": _insteadof,
    "include": _include, "hooks": _hooks, "hooks_path": _hooks_path, "info_attributes": _info_attributes,
    "git_file": _git_file, "commondir": _commondir, "config_worktree": _config_worktree,
    "global_config": _global_config,
}


@pytest.fixture
def with_origin(make_repo, tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A repository with a bare `origin`, and a HOME of the test's own (fixloop's git reads ~/.gitconfig)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    (tmp_path / "home").mkdir()
    repo = make_repo({"calc.py": "def add(a, b):\n    return a - b\n"})
    origin = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo), str(origin))
    run_git(repo, "remote", "add", "origin", str(origin))
    return repo, origin


@pytest.mark.parametrize("poison", list(POISONINGS))
def test_git_files_changed_by_the_agent_are_refused_by_name_and_nothing_runs(poison: str, with_origin, tmp_path: Path):
    repo, origin = with_origin
    marker = tmp_path / "ran"
    tree = Worktree.create(repo, "HEAD")
    tree.record_git_state()
    try:
        (tree.root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        snapshot = tree.snapshot()
        good = tree.commit(snapshot, "fixloop: fix\n")
        changed = POISONINGS[poison](tree, marker)
        steps = [tree.snapshot, lambda: tree.commit(snapshot, "fixloop: fix\n")]
        if changed not in tree.own.recorded:  # the worktree's own files do not matter to git in the repository
            steps += [lambda: create_branch(repo, "fixloop/x", good),
                      lambda: push(repo, good, "fixloop/x", expected=None, env={})]
        for step in steps:
            with pytest.raises(WorkspaceError, match=POISON_MESSAGE) as refused:
                step()
            assert str(changed) in str(refused.value)
    finally:
        tree.remove()
    assert not marker.exists(), "fixloop's git ran a command the agent configured"
    assert not tree.root.exists() and not tree.git_dir.exists()
    assert run_git(origin, "branch", "--list", "fixloop/*") == ""


def test_an_untouched_worktree_and_the_agents_own_git_reads_pass(with_origin):
    repo, origin = with_origin
    tree = Worktree.create(repo, "HEAD")
    tree.record_git_state()
    try:
        (tree.root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        # What a well-behaved agent runs: these rewrite the worktree's index, which is not fingerprinted.
        for command in (["status"], ["diff"], ["diff", "--stat"], ["log", "--oneline"], ["add", "-N", "."],
                        ["stash", "list"]):
            run_git(tree.root, *command)
        assert tree.shared.changed() == [] and tree.own.changed() == []
        commit = tree.commit(tree.snapshot(), "fixloop: fix\n")
        create_branch(repo, "fixloop/x", commit)
        push(repo, commit, "fixloop/x", expected=None, env={})
    finally:
        tree.remove()
    assert run_git(origin, "rev-parse", "fixloop/x").strip() == commit
    assert run_git(repo, "worktree", "list").count("\n") == 1


def test_hooks_installed_before_the_agent_starts_are_trusted_but_never_run(with_origin, tmp_path: Path):
    repo, _ = with_origin
    marker = tmp_path / "ran"
    tree = Worktree.create(repo, "HEAD")
    try:
        # A setup command (pre-commit install, husky) may install hooks; they are part of the trusted state,
        # and fixloop's own git runs none of them either way.
        for name in ("reference-transaction", "post-checkout", "pre-push", "post-index-change"):
            _hook(tree.common_dir / "hooks" / name, f"touch {marker}")
        tree.record_git_state()
        (tree.root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        commit = tree.commit(tree.snapshot(), "fixloop: fix\n")
        create_branch(repo, "fixloop/x", commit)
        push(repo, commit, "fixloop/x", expected=None, env={})
    finally:
        tree.remove()
    assert not marker.exists()
