"""A real bare git repository as `origin`, mirrored into the fake GitHub on every push.

`make_origin` builds the bare repository from files, clones it as the Actions workspace would
(`actions/checkout` with `fetch-depth: 0`, no stored credentials), seeds the fake GitHub with the
same commit, and installs a post-receive hook that reports pushes to the fake.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run_git
from tests.fakes.github import FakeGitHub

HOOK = """#!{python}
import json, sys, urllib.request
updates = [dict(zip(("old", "new", "ref"), line.split())) for line in sys.stdin if line.strip()]
request = urllib.request.Request({url!r}, data=json.dumps({{"repo": {repo!r}, "updates": updates}}).encode(),
                                 headers={{"Content-Type": "application/json"}}, method="POST")
urllib.request.urlopen(request, timeout=10).read()
"""


@dataclass
class Origin:
    bare: Path
    workspace: Path
    repository: str
    head: str  # sha of the default branch

    def branch_sha(self, branch: str) -> str | None:
        out = run_git(self.bare, "for-each-ref", "--format=%(objectname)", f"refs/heads/{branch}").strip()
        return out or None

    def show(self, ref: str, path: str) -> str:
        return run_git(self.bare, "show", f"{ref}:{path}")


def make_origin(tmp_path: Path, github: FakeGitHub, repository: str, files: dict[str, str],
                default_branch: str = "main") -> Origin:
    seed = tmp_path / "seed"
    seed.mkdir()
    for path, text in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(text)
    run_git(seed, "init", "--quiet", f"--initial-branch={default_branch}")
    run_git(seed, "add", "--all")
    run_git(seed, "commit", "--quiet", "-m", "initial")
    head = run_git(seed, "rev-parse", "HEAD").strip()
    bare = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "--quiet", "--bare", str(seed), str(bare))
    workspace = tmp_path / "workspace"
    run_git(tmp_path, "clone", "--quiet", str(bare), str(workspace))
    github.add_repo(repository, default_branch=default_branch, files=files)
    github.add_commit(repository, default_branch, files, message="initial", sha=head)
    hook = bare / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, url=f"{github.root_url}/_fake/git-receive", repo=repository))
    hook.chmod(0o755)
    return Origin(bare, workspace, repository, head)


def write_event(tmp_path: Path, payload: dict) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return path


__all__ = ["Origin", "make_origin", "write_event"]
