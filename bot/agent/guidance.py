"""The repository's instruction files for coding agents (AGENTS.md, CLAUDE.md, ...), as guidance for the model.

They are read from the base commit's git objects, never from the worktree: an uncommitted edit, a setup
command or the agent cannot change what the model is told, and a symbolic link is never followed. An
`AGENTS.md` entry of the config's `instructions.files` stands for the AGENTS.md nearest to the files the
task names (the test to make reliable, the tests failing before any change), then the root's; other
entries are paths from the root. A file that is a link, a folder or submodule, larger than FILE_LIMIT or
not UTF-8 is skipped, and the reason recorded.

The model gets them sanitised like all repository text, GUIDANCE_TOKENS at most in all, fenced as data
in the task message (bot.agent.prompts) and ranked below fixloop's rules. Nothing in them is parsed: they
cannot change the session's tools, limits, deny list or environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from bot.config import Instructions
from bot.sanitize import sanitize
from bot.secrets import scrubbed_environment
from bot.task import Task
from bot.tokens import BYTES_PER_TOKEN, estimate_tokens
from bot.validation import FailedTest
from bot.workspace import git

NEAREST = "AGENTS.md"  # the `instructions.files` entry that means: nearest to the task's files, then the root's
GUIDANCE_TOKENS = 8_000  # tokens of guidance the model gets, all files together
FILE_LIMIT = 256 * 1024  # bytes: a larger instruction file is skipped, not read
# Characters of a file that are sanitised: four times what the model can get, so that hidden text does not
# leave it short; the rest is counted, never shown (sanitising untrusted text costs time).
SANITIZED_LIMIT = 4 * GUIDANCE_TOKENS * BYTES_PER_TOKEN
# Bounds on where the nearest AGENTS.md is looked for, whatever the failing tests' paths (a test report
# can name thousands of files, or one thousands of folders deep).
NAMED_LIMIT = 50  # files
DEPTH_LIMIT = 20  # folders below the root
PATH_LIMIT = 4096  # bytes of one path (Linux's PATH_MAX); a longer one is left out
ARGUMENTS_LIMIT = 64 * 1024  # bytes of paths on one git command line (Linux allows 2 MB in all)
_SYMLINK = "120000"


class GuidanceFile(BaseModel):
    """An instruction file found at the base commit: given to the model, or skipped and why."""

    path: str
    sha: str  # its git object id at the base commit
    tokens: int = 0  # what the model got of it (estimated, after sanitising and the cap)
    cut: bool = False  # the cap left out the rest of the file
    skipped: str | None = None  # why the model got nothing of it


@dataclass(frozen=True)
class GuidanceText:
    """What the model reads of one file."""

    path: str
    text: str  # sanitised, within the cap
    cut_note: str = ""  # fixloop's note on what the cap left out


@dataclass(frozen=True)
class Guidance:
    files: list[GuidanceFile]  # in the order the model reads them, skipped ones in their place
    texts: list[GuidanceText]


@dataclass(frozen=True)
class _Entry:
    """A path's entry in the base commit's tree (`git ls-tree -l`)."""

    mode: str
    kind: str  # blob, tree (a folder) or commit (a submodule)
    sha: str
    size: int | None  # bytes, for a blob


def task_files(task: Task, failing: Iterable[FailedTest]) -> list[str]:
    """The repository files a task is about: the test to make reliable, then the tests failing before any change
    (their ids' files and the files their failures point at)."""
    named = [task.test] if task.test else []
    for test in failing:
        named += [test.id, *([test.file] if test.file else [])]
    return list(dict.fromkeys(raw.split("::", 1)[0] for raw in named))


def read_guidance(repo: Path, commit: str, settings: Instructions, named: Sequence[str]) -> Guidance:
    """The instruction files `settings` names, at `commit` of `repo`, for a task about the files `named` (those
    that are not paths in the repository, such as an absolute path in a test report, are left out)."""
    if not settings.enabled:
        return Guidance([], [])
    entries = [path for raw in settings.files if (path := _repository_path(raw))]
    named = [path for raw in named if (path := _repository_path(raw))][:NAMED_LIMIT]
    nearest = NEAREST in entries
    candidates = {(folder / NEAREST).as_posix() for path in named for folder in PurePosixPath(path).parents
                  if len(folder.parts) <= DEPTH_LIMIT}
    found = _tree(repo, commit, [*entries, *(sorted(candidates) if nearest else [])])
    order: list[str] = []
    for entry in entries:
        if entry == NEAREST:
            order += [hit for path in named if (hit := _nearest(path, found))]
        order.append(entry)
    files: list[GuidanceFile] = []
    texts: list[GuidanceText] = []
    left = GUIDANCE_TOKENS
    for path in (path for path in dict.fromkeys(order) if path in found):
        record, text = _read(repo, path, found[path], left)
        files.append(record)
        if text is not None:
            texts.append(text)
        left = 0 if record.cut else left - record.tokens  # after a cut file, the next would be a fragment
    return Guidance(files, texts)


def _repository_path(raw: str) -> str | None:
    """`raw` as a path from the repository's root, or None if it is not one (absolute, `..`, empty)."""
    path = PurePosixPath(raw.strip())
    if path.is_absolute() or ".." in path.parts or path == PurePosixPath(".") or len(raw.encode()) > PATH_LIMIT:
        return None
    return path.as_posix()


def _nearest(path: str, found: Container[str]) -> str | None:
    """The AGENTS.md of the deepest folder above `path` that has one (the root's included)."""
    return next((hit for folder in PurePosixPath(path).parents if (hit := (folder / NEAREST).as_posix()) in found),
                None)


def _tree(repo: Path, commit: str, paths: Sequence[str]) -> dict[str, _Entry]:
    """The entries of `paths` that exist in `commit`'s tree (git reads its objects, not the worktree), asked for
    in batches that fit on a command line."""
    entries: dict[str, _Entry] = {}
    for batch in _batches(dict.fromkeys(paths)):
        listing = git("ls-tree", "-l", "-z", "--full-tree", commit, "--", *batch, cwd=repo,
                      env={"GIT_LITERAL_PATHSPECS": "1"}, base_env=scrubbed_environment(os.environ))
        for record in filter(None, listing.split("\0")):
            meta, path = record.split("\t", 1)
            mode, kind, sha, size = meta.split()
            entries[path] = _Entry(mode, kind, sha, int(size) if size.isdigit() else None)
    return entries


def _batches(paths: Iterable[str]) -> Iterator[list[str]]:
    """`paths` in lists of at most ARGUMENTS_LIMIT bytes, none empty (ls-tree without paths would list the root)."""
    batch: list[str] = []
    size = 0
    for path in paths:
        if batch and size + len(path.encode()) > ARGUMENTS_LIMIT:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += len(path.encode()) + 1
    if batch:
        yield batch


def _unusable(entry: _Entry) -> str | None:
    if entry.mode == _SYMLINK:
        return "a symbolic link, not followed"
    if entry.kind != "blob":
        return "a submodule, not a file" if entry.kind == "commit" else "a folder, not a file"
    if entry.size is not None and entry.size > FILE_LIMIT:
        return f"too large: {entry.size:,} bytes, the limit is {FILE_LIMIT:,}"
    return None


def _read(repo: Path, path: str, entry: _Entry, budget: int) -> tuple[GuidanceFile, GuidanceText | None]:
    """The file's record and what the model reads of it, within `budget` tokens."""
    if reason := _unusable(entry):
        return GuidanceFile(path=path, sha=entry.sha, skipped=reason), None
    try:
        raw = git("cat-file", "blob", entry.sha, cwd=repo, base_env=scrubbed_environment(os.environ))
    except UnicodeDecodeError:  # git's output is decoded strictly, as UTF-8 (fixloop's locale)
        return GuidanceFile(path=path, sha=entry.sha, skipped="not UTF-8 text"), None
    # What a reader would not see is removed before counting; the cap, not sanitize's, limits the length.
    rest = raw[SANITIZED_LIMIT:]
    text = sanitize(raw[:SANITIZED_LIMIT], sys.maxsize).strip()
    if not text:
        why = f"nothing visible in its first {SANITIZED_LIMIT:,} characters" if rest else "empty"
        return GuidanceFile(path=path, sha=entry.sha, skipped=why), None
    total = estimate_tokens(text) + estimate_tokens(rest)
    cut = total > budget or bool(rest)
    shown = _cut(text, budget) if cut else text
    if not shown.strip():
        used = f"the {GUIDANCE_TOKENS:,} tokens for guidance were used by the files before it"
        return GuidanceFile(path=path, sha=entry.sha, skipped=used), None
    tokens = estimate_tokens(shown)
    # The note names no path: it stands outside the fence, where no repository text goes.
    note = (f"[fixloop cut the file above: {tokens:,} of its {total:,} tokens are shown; repository guidance is "
            f"limited to {GUIDANCE_TOKENS:,} tokens in all.]") if cut else ""
    return GuidanceFile(path=path, sha=entry.sha, tokens=tokens, cut=cut), GuidanceText(path, shown, note)


def _cut(text: str, tokens: int) -> str:
    """The start of `text` within `tokens`, ending at a line break when one is in its second half."""
    head = text.encode()[: tokens * BYTES_PER_TOKEN].decode("utf-8", "ignore")
    line_end = head.rfind("\n")
    return head[:line_end] if line_end > len(head) // 2 else head
