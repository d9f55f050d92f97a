"""The agent's git worktree, and the only code that creates commits and branches.

The agent edits files in a detached worktree; its own `git` calls there do not count. To
capture the work, the orchestrator stages everything into a private index (never the worktree's
own), so the resulting tree is the working files exactly as the agent left them, ignoring any
commits or staging the agent made. Commits are built with `commit-tree` on top of the base.

The agent's shell runs as the same user, so it can rewrite what git reads: the repository's config
(`core.fsmonitor`, filter drivers, `remote.origin.url`, `url.*.insteadOf`, `http.proxy`), its hooks,
the worktree's `.git` pointer. fixloop's own git runs after the agent, some of it with credentials,
so the files that decide what git runs or where it connects are fingerprinted before the agent
starts (`ControlFiles`), and fixloop's git calls after that refuse to run if one of them changed.
Those calls also never run hooks or a file-system monitor, name the git directory explicitly, and
get no secrets they were not handed; they run the git chosen at start-up (bot._git), by its path.
`fetch` and `push`, the only calls with credentials, get a minimal environment: a fixed PATH, a
private home and the credentials, never fixloop's own environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot._git import git_executable
from bot._process import unconfined_runs
from bot.errors import WorkspaceError
from bot.secrets import scrubbed_environment

FIXLOOP_AUTHOR = ("fixloop", "fixloop@users.noreply.github.com")

# On every git call of fixloop's: hooks and a file-system monitor are commands the repository's config
# chooses, and replace refs could make the patch fixloop checks differ from the commit it makes.
_NO_COMMANDS = ("--no-replace-objects", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, input_text: str | None = None,
        base_env: Mapping[str, str] | None = None, git_dir: Path | None = None, work_tree: Path | None = None) -> str:
    """Run git and return its stdout; a failure becomes a WorkspaceError carrying git's message.

    `env` is added to `base_env` (default: this process's environment). `git_dir` and `work_tree`
    are passed explicitly, so no `.git` file or `GIT_DIR` decides which repository git reads."""
    # No system config: /etc/gitconfig is not fingerprinted, and a root or sudo-capable agent could write it.
    full_env = {**(os.environ if base_env is None else base_env), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
                "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
    where = [*([f"--git-dir={git_dir}"] if git_dir else []), *([f"--work-tree={work_tree}"] if work_tree else [])]
    proc = subprocess.run(
        [git_executable(), *_NO_COMMANDS, *where, *args], cwd=cwd, env=full_env, input=input_text, capture_output=True,
        text=True, check=False,
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


def git_directories(root: Path) -> list[Path]:
    """The repository's common git directory and the worktree's own one (inside it), for a worktree at `root`."""
    git_dir, common_dir = git("rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir",
                              cwd=root).splitlines()
    return [Path(common_dir), Path(git_dir)]


def read_file_at(repo: Path, commit: str, path: str) -> str | None:
    """The text of `path` at `commit`, or None if it does not exist there."""
    try:
        return git("show", f"{commit}:{path}", cwd=repo)
    except WorkspaceError:
        return None


_ABSENT = "absent"
_DIRECTORY = "directory"


def _digest(path: Path) -> str:
    """What git would find at `path`: a regular file's mode and sha256, a symlink's target, or what else is there.

    Symlinks are not followed (pointing `config` at another file is a change), and only regular files are
    read (a FIFO put in place of `config` must not hang the check)."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return f"symlink to {os.readlink(path)}"
        if stat.S_ISDIR(info.st_mode):
            return _DIRECTORY
        if not stat.S_ISREG(info.st_mode):
            return f"special file {stat.filemode(info.st_mode)}"
        # The mode counts: making an inert file in hooks/ executable turns it into a hook.
        return f"{stat.filemode(info.st_mode)} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    except (FileNotFoundError, NotADirectoryError):
        return _ABSENT
    except OSError as error:
        return f"unreadable ({error.strerror})"


def _digest_tree(path: Path) -> dict[Path, str]:
    """`path` and, if it is a real directory, everything under it."""
    digests = {path: _digest(path)}
    if digests[path] == _DIRECTORY:
        try:
            children = sorted(path.iterdir())
        except OSError as error:
            return {path: f"unreadable ({error.strerror})"}
        for child in children:
            digests |= _digest_tree(child)
    return digests


class ControlFiles:
    """The files that decide which commands git runs and where it connects, as they were when recorded.

    Bytes and modes are compared, not parsed settings: any change, harmless or not, is refused, so
    nothing depends on knowing every dangerous git setting."""

    def __init__(self, files: Sequence[Path], trees: Sequence[Path] = ()) -> None:
        self.files, self.trees = tuple(files), tuple(trees)
        self.recorded = self._scan()

    def _scan(self) -> dict[Path, str]:
        digests = {path: _digest(path) for path in self.files}
        for tree in self.trees:
            digests |= _digest_tree(tree)
        return digests

    def changed(self) -> list[Path]:
        now = self._scan()
        return sorted(path for path in {*self.recorded, *now}
                      if self.recorded.get(path, _ABSENT) != now.get(path, _ABSENT))

    def verify(self, repo: Path) -> None:
        """Raise a WorkspaceError naming the changed files, if any changed since they were recorded."""
        if changed := self.changed():
            raise WorkspaceError(
                f"the agent changed the repository's git configuration ({_names(changed)} changed during the session), "
                "so fixloop will not run git with it: a changed config, hook or .git file can run commands with "
                f"fixloop's credentials or send them elsewhere. Check those files before you run git in {repo}.")


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def fixloop_files(environ: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    """(trees, folders left out of them): what fixloop itself imports or runs later. Its Python
    environment (a venv with its site-packages and their .pth files), the standard library of the
    interpreter under it, its own package, the action's checkout, and the git it calls."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    trees = [Path(sys.prefix), stdlib, *map(Path, site.getsitepackages()), Path(__file__).resolve().parent,
             Path(git_executable())]
    if environ.get("GITHUB_ACTION_PATH"):
        trees.append(Path(environ["GITHUB_ACTION_PATH"]))
    # The base interpreter's own site-packages (a venv does not import from it) and test suite.
    skip = [folder.resolve() for folder in
            (stdlib / "test", *([stdlib / "site-packages"] if sys.prefix != sys.base_prefix else []))]
    resolved = list(dict.fromkeys(tree.resolve() for tree in trees))
    # A tree inside another is scanned with it (a venv's site-packages), unless that one leaves it out.
    outermost = [tree for tree in resolved if not any(
        tree != other and tree.is_relative_to(other) and not any(tree.is_relative_to(s) for s in skip)
        for other in resolved)]
    return outermost, skip


class OwnFiles:
    """fixloop's own files (`fixloop_files`) by their metadata, as they were when recorded: there are
    thousands, so a change of content is seen as a change of size, modification time or inode."""

    def __init__(self, trees: Sequence[Path], skip: Sequence[Path]) -> None:
        self.trees, self.skip = tuple(trees), frozenset(str(path) for path in skip)
        self.unconfined_at = unconfined_runs()
        self.recorded = self._scan()

    def _scan(self) -> dict[str, tuple[int, int, int, int] | str]:
        found: dict[str, tuple[int, int, int, int] | str] = {}
        pending = [str(tree) for tree in self.trees]
        while pending:
            folder = pending.pop()
            try:
                entries = os.scandir(folder)
            except NotADirectoryError:  # a file given as a tree (the git executable)
                info = os.lstat(folder)
                found[folder] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino)
                continue
            except OSError as error:
                found[folder] = f"unreadable ({error.strerror})"
                continue
            with entries:
                for entry in entries:
                    if entry.name == "__pycache__" or entry.path in self.skip:
                        continue  # Python itself rewrites bytecode caches as fixloop imports modules
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        # A folder by its mode alone: its entries speak for it, and its times change
                        # when Python adds a __pycache__ to it.
                        found[entry.path] = _DIRECTORY + stat.filemode(info.st_mode)
                        pending.append(entry.path)
                    else:
                        found[entry.path] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino)
        return found

    def changed(self) -> list[Path]:
        now = self._scan()
        return sorted(Path(path) for path in {*self.recorded, *now} if self.recorded.get(path) != now.get(path))


# fixloop's own files as they were before any code of the repository ran (recorded once per process),
# checked before fixloop concludes a session and before every git call that carries credentials.
# Confined code cannot write them; the setup commands (which run unconfined, and may run an earlier
# agent's code when the base is fixloop's own branch) and, without bubblewrap, everything else could.
_own_files: OwnFiles | None = None


def watch_own_files(environ: Mapping[str, str]) -> None:
    """Record fixloop's own files as they are now, unless they were recorded already; then, if commands ran
    outside the sandbox since they were last seen unchanged, check them now, so that a session that runs
    none itself need not check them again. That starting afresh matters only where one process runs
    several sessions (the test suite): the action and `fixloop run` run one, and the App none."""
    global _own_files
    if _own_files is None:
        _own_files = OwnFiles(*fixloop_files(environ))
    elif (now := unconfined_runs()) != _own_files.unconfined_at and not _own_files.changed():
        _own_files.unconfined_at = now


def verify_own_files() -> None:
    # Only a command run outside the sandbox can have changed them. Once one did, every check scans again:
    # it may have left a process behind (in a session of its own) that writes later.
    if _own_files is None or unconfined_runs() == _own_files.unconfined_at:
        return
    if changed := _own_files.changed():
        raise WorkspaceError(
            f"fixloop's own files changed during the session ({_names(changed)}), by a setup command or by code that "
            "ran without a sandbox: fixloop will not conclude or push, because the code it would run next may not be "
            "its own. Reinstall fixloop, and check the setup commands (and install bubblewrap).")


def _global_config(environ: Mapping[str, str]) -> list[Path]:
    """The user's git config files, which the agent can also write (by absolute path) and a push reads."""
    if "GIT_CONFIG_GLOBAL" in environ:
        return [Path(environ["GIT_CONFIG_GLOBAL"])]
    home = Path(environ.get("HOME") or Path.home())
    return [home / ".gitconfig", Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "git" / "config"]


# What each repository's shared git files (common dir and global config) looked like when a worktree of it
# last handed over to an agent: `push` and `fetch`, which run with credentials after the session has
# removed its worktree, check against it (the session and the publishing code share only the repository).
_shared_state: dict[Path, ControlFiles] = {}


def _key(repo: Path) -> Path:
    return Path(os.path.realpath(repo))


def _verify_shared(repo: Path) -> None:
    verify_own_files()
    if (shared := _shared_state.get(_key(repo))) is not None:
        shared.verify(repo)


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
    def __init__(self, repo: Path, root: Path, base: str, git_dir: Path, common_dir: Path) -> None:
        self.repo, self.root, self.base = repo, root, base
        self.git_dir, self.common_dir = git_dir, common_dir  # the worktree's own git directory, and the shared one
        self.shared, self.own = self._record()

    @classmethod
    def create(cls, repo: Path, base: str) -> Worktree:
        root = Path(tempfile.mkdtemp(prefix="fixloop-worktree-"))
        git("worktree", "add", "--detach", "--quiet", str(root), base, cwd=repo)
        common_dir, git_dir = git_directories(root)
        return cls(repo, root, base, git_dir, common_dir)

    def _record(self) -> tuple[ControlFiles, ControlFiles]:
        shared = ControlFiles([self.common_dir / "config", self.common_dir / "info" / "attributes",
                               *_global_config(os.environ)], trees=[self.common_dir / "hooks"])
        # Not the worktree's `index` or `HEAD`: the agent's own `git status` or `git commit` rewrite those,
        # and fixloop's git never uses them.
        own = ControlFiles([self.git_dir / "config.worktree", self.git_dir / "commondir", self.git_dir / "gitdir",
                            self.root / ".git"])
        _shared_state[_key(self.repo)] = shared
        return shared, own

    def record_git_state(self) -> None:
        """Take the git files as they are now as the trusted state. The session calls this after its setup
        commands (trusted config, which may install hooks: husky, pre-commit) and before the agent starts."""
        self.shared, self.own = self._record()

    def _changed(self) -> bool:
        return bool(self.shared.changed() or self.own.changed())

    def _git(self, *args: str, env: dict[str, str] | None = None, input_text: str | None = None) -> str:
        """git on this worktree, after checking that the agent left git's files alone; with no secrets in its
        environment (staging and committing need none)."""
        self.own.verify(self.repo)
        self.shared.verify(self.repo)
        return git(*args, cwd=self.root, env=env, input_text=input_text, base_env=scrubbed_environment(os.environ),
                   git_dir=self.git_dir, work_tree=self.root)

    def snapshot(self) -> Snapshot:
        with tempfile.TemporaryDirectory(prefix="fixloop-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self._git("read-tree", self.base, env=env)
            self._git("add", "--all", "--", ".", env=env)
            tree = self._git("write-tree", env=env).strip()
        changed = self._git("diff", "--name-only", "-z", self.base, tree).split("\0")
        return Snapshot(
            tree=tree,
            changed_paths=[p for p in changed if p],
            patch=self._git("diff", "--binary", self.base, tree),
            diff_stat=self._git("diff", "--stat", self.base, tree).strip(),
        )

    def apply(self, patch: str) -> None:
        """Apply `patch` (a `git diff --binary` from the base, as a session keeps its partial work) to the
        worktree's files; WorkspaceError when it does not apply."""
        self._git("apply", "--whitespace=nowarn", "-", input_text=patch)

    def commit(self, snapshot: Snapshot, message: str) -> str:
        name, email = FIXLOOP_AUTHOR
        identity = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        return self._git("commit-tree", snapshot.tree, "-p", self.base, "-F", "-", env=identity,
                         input_text=message).strip()

    def remove(self) -> None:
        if self._changed():
            # Never raises: it runs in the session's cleanup, after the change was already refused and reported.
            # The directories go without git (rmtree does not follow symlinks the agent may have planted).
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.git_dir, ignore_errors=True)
            return
        env = scrubbed_environment(os.environ)
        try:
            git("worktree", "remove", "--force", str(self.root), cwd=self.repo, base_env=env)
        except WorkspaceError:
            shutil.rmtree(self.root, ignore_errors=True)
            git("worktree", "prune", cwd=self.repo, base_env=env)


def create_branch(repo: Path, name: str, commit: str, *, replace: bool = False) -> None:
    """Create `name` at `commit`; refuses to move an existing branch unless `replace`."""
    _verify_shared(repo)
    env = scrubbed_environment(os.environ)
    git("check-ref-format", "--branch", name, cwd=repo, base_env=env)
    git("update-ref", f"refs/heads/{name}", commit, *(() if replace else ("",)), cwd=repo, base_env=env)


def commit_text(repo: Path, commit: str) -> str:
    """A commit's message."""
    return git("log", "-1", "--format=%B", commit, "--", cwd=repo)


def changes_since_fork(repo: Path, base: str, tip: str) -> str:
    """What `tip` changed since it left `base`'s history (from their merge base), as a `git diff --binary`;
    WorkspaceError when they share no history."""
    fork = git("merge-base", base, tip, cwd=repo).strip()
    return git("diff", "--binary", "--no-ext-diff", "--no-textconv", fork, tip, "--", cwd=repo)


def has_commit(repo: Path, sha: str) -> bool:
    try:
        git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo)
    except WorkspaceError:
        return False
    return True


@contextmanager
def _credentialed_environment() -> Iterator[dict[str, str]]:
    """All that `fetch` and `push` get besides their credentials: a fixed PATH (the trusted git's
    folder and the system's), a home of their own, no system or global git config."""
    folder = str(Path(git_executable()).parent)
    with tempfile.TemporaryDirectory(prefix="fixloop-git-home-") as home:
        yield {"PATH": os.pathsep.join(dict.fromkeys([folder, "/usr/bin", "/bin"])), "HOME": home, "LC_ALL": "C",
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def fetch(repo: Path, ref: str, *, env: dict[str, str]) -> None:
    """Fetch `ref` from origin (credentials come in through `env`, never the config on disk)."""
    _verify_shared(repo)
    with _credentialed_environment() as minimal:
        git("fetch", "--quiet", "--no-tags", "origin", ref, cwd=repo, env=env, base_env=minimal)


def push(repo: Path, commit: str, branch: str, *, expected: str | None, env: dict[str, str]) -> None:
    """Point origin's `branch` at `commit`, if the branch is still at `expected` (None: absent)."""
    _verify_shared(repo)
    lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
    with _credentialed_environment() as minimal:
        git("push", "--quiet", "--no-verify", lease, "origin", f"{commit}:refs/heads/{branch}", cwd=repo, env=env,
            base_env=minimal)
