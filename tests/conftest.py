"""Shared fixtures: real git repositories in temporary folders."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.postgres import Cluster

# The pytest runs the tests start in their sample repositories (validation, triage, reruns) load no
# plugins from this environment: hypothesis's alone costs ~1 s a run, and the samples use none.
# (This suite's own pytest read its settings before this line ran.)
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def agent_file_appeared(name: str, timeout: float = 30) -> bool:
    """Whether the agent's shell created `name` at its worktree's root (looked for from outside its
    sandbox, where the worktree is a temporary folder), waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(Path(tempfile.gettempdir()).glob(f"fixloop-worktree-*/{name}")):
            return True
        time.sleep(0.02)
    return False


def run_git(repo: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(repo), **GIT_IDENTITY}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


MakeRepo = Callable[..., Path]


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """make_repo({"path": "text", ...}, name="repo") -> a committed git repository."""

    def make(files: dict[str, str], name: str = "repo") -> Path:
        repo = tmp_path / name
        repo.mkdir()
        for path, text in files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
        run_git(repo, "init", "--quiet", "--initial-branch=main")
        run_git(repo, "add", "--all")
        run_git(repo, "commit", "--quiet", "-m", "initial")
        return repo

    return make


# The OpenAPI-checked fake GitHub's fixtures, for every test module; and the hooks with which Ctrl-C
# and SIGTERM stop the whole suite, leaving no process behind (tests/processes.py).
from tests.fakes.github.fixture import fake_github, github_app_key, make_fake_github  # noqa: F401
from tests.processes import pytest_configure, pytest_runtest_protocol  # noqa: F401


@pytest.fixture(scope="session")
def go_build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("go-build")


@pytest.fixture
def one_go_build_cache(go_build_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`go` builds into one cache for all the tests of a worker (a cold one costs seconds a test)."""
    monkeypatch.setenv("GOCACHE", str(go_build_cache))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server for the tests of one worker (started on first use, removed at the end)."""
    try:
        cluster = postgres.start()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of a new, empty database on the tests' PostgreSQL server."""
    return postgres_cluster.database()
