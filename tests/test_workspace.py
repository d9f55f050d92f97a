from pathlib import Path

import pytest

from bot.errors import WorkspaceError
from bot.workspace import (
    Worktree,
    create_branch,
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
