"""The read-only search SDK: listing, grepping and reading the files of one repository.

The agent writes short programs against these functions; they run in a child process whose working
directory is the repository, and only what a program passes to `emit` reaches the model. So every
result is small plain data (lists of dicts of str, int and lists) that serialises to JSON as is,
paths are POSIX and relative to the root, and line numbers are 1-based everywhere.

Nothing here writes a file or runs a command: the only subprocess is the fixed `git ls-files`
argv that lists the files the way `.gitignore` wants, and the sandbox runner runs it in its own
process (`repository_files`), so that a search program's process never loads `subprocess`. One program
is one process, so the state (root, evidence, caches) is module-level and `configure` resets it.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bot.paths import matches_any

try:  # CPython's own regex parser, for `_required_literal`; private, and renamed once (3.11)
    _parser: Any = importlib.import_module("re._parser")
except ImportError:
    _parser = None

Item = dict[str, Any]
Globs = str | list[str] | tuple[str, ...] | None  # an `exclude` argument

MAX_FILE_BYTES = 2 * 1024 * 1024  # larger files are generated or data; searching them is noise
BINARY_PROBE = 8192  # a NUL byte in the first 8 KiB marks a binary file, as git decides
READ_LINES = 400  # most lines one read() returns
LINE_CHARS = 2000  # a longer line (minified code) is cut, so one hit cannot flood the output
CACHE_CHARS = 64 * 1024 * 1024  # file texts kept in memory across calls of one program
TREE_CACHE = 256  # Python syntax trees kept across calls (they are ~10x their source)
# core.fsmonitor could run a command configured in the repository.
GIT_LS_FILES = ["-c", "core.fsmonitor=false", "ls-files", "--cached", "--others", "--exclude-standard", "-z"]
# Per-line constructs that see the start or end of the line differently once the file is searched
# as a whole; with them, grep cannot skip a file just because the whole text does not match.
_LINE_EDGE = re.compile(r"\\[AZ]|\(\?<?[=!]")


@dataclass
class _State:
    root: Path
    evidence: list[Item] = field(default_factory=list)
    listing: list[str] | None = None
    texts: dict[str, str | None] = field(default_factory=dict)  # None: binary, too large, unreadable
    cached_chars: int = 0
    trees: dict[str, Any] = field(default_factory=dict)  # bot.search._symbols' parsed Python files
    scopes: dict[str, list[str | None] | None] = field(default_factory=dict)  # per file: each line's scope


_state: _State | None = None


def _current() -> _State:
    """The configured state; a program that never calls configure searches its working directory."""
    global _state
    if _state is None:
        _state = _State(Path.cwd().resolve())
    return _state


def configure(root: str | Path, *, evidence: list[Item] | None = None, listing: list[str] | None = None) -> None:
    """Set the repository root and the session's failure evidence, forgetting every cache.

    `listing`: the root's `repository_files`, when the caller listed them already (the sandbox
    runner does, in its own process); None lists them on first use."""
    global _state
    resolved = Path(root).resolve()
    if not resolved.is_dir():
        raise NotADirectoryError(f"the repository root is not a directory: {root}")
    _state = _State(resolved, copy.deepcopy(evidence or []), listing=listing)


def evidence() -> list[Item]:
    """The failure evidence given to configure (copies, so a program cannot alter the session's)."""
    return copy.deepcopy(_current().evidence)


# --- listing --------------------------------------------------------------------------------------

def files(pattern: str = "**/*", *, exclude: Globs = None, limit: int = 1000) -> list[str]:
    """Sorted repository paths matching `pattern` and not `exclude`, at most `limit`.

    `*` stays inside one folder and `**` crosses folders, as in the deny list: "*.py" is top-level
    only, "**/*.py" any depth, "src/**" everything under src/. (Unlike .gitignore, a pattern
    without a slash is not matched against the basename at every depth: that surprises less.)
    `exclude` is one glob or a list of them; see `_exclusions` for how an entry matches.
    """
    return list(itertools.islice(_matching(pattern, exclude), max(limit, 0)))


def _matching(pattern: str, exclude: Globs = None) -> Iterator[str]:
    glob = pattern.removeprefix("./")
    skip = _exclusions(exclude)
    return (path for path in _listing() if matches_any(path, [glob]) and not (skip and matches_any(path, skip)))


def _exclusions(exclude: Globs) -> list[str]:
    """The globs that leave a path out, one per `exclude` entry.

    An entry containing "/" is a glob matched against the whole path, exactly like `pattern`
    ("src/gen/**", "**/test/*.py"); a leading "./" and a trailing "/" are dropped first. An entry
    without "/" matches a file or folder name at any depth, as in .gitignore: "test" leaves out
    test/..., a/test/... and a file named test; "*_pb2.py" every such file; "test*" tests/ too.
    (That is a superset of the entry read as a top-level glob, so nothing it would match is kept.)
    """
    if exclude is None:
        return []
    entries = [exclude] if isinstance(exclude, str) else exclude
    if not isinstance(entries, (list, tuple)) or not all(isinstance(entry, str) for entry in entries):
        raise TypeError(f"exclude is a glob or a list of globs, not {exclude!r}")
    globs = []
    for entry in entries:
        if not entry.removeprefix("./").strip("/"):
            raise ValueError(f"exclude entries are non-empty globs such as 'test' or 'src/gen/**', not {entry!r}")
        entry = entry.removeprefix("./").rstrip("/")
        globs.append(entry if "/" in entry else f"**/{entry}/**")
    return globs


def _listing() -> list[str]:
    state = _current()
    if state.listing is None:
        state.listing = repository_files(state.root)
    return state.listing


def repository_files(root: Path) -> list[str]:
    """The searchable files under `root`, sorted: what git lists (tracked, and untracked but not
    ignored) when `root` is the top of a work tree, else every file found by walking it."""
    listed = _git_listing(root)
    names = _walk(root) if listed is None else [name for name in listed if _listable(root, name)]
    return sorted(set(names))


def _git_listing(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files, or None when `root` is not a git work tree.

    Git may not look above the root: a folder that merely sits inside some other repository
    (a Python installed under a git-managed ~/.pyenv, whose .gitignore hides it) is walked instead.
    """
    import subprocess  # here, not at the top: see the module's docstring

    from bot._git import git_executable

    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_CEILING_DIRECTORIES": str(root.parent)}
    try:
        proc = subprocess.run([git_executable(), *GIT_LS_FILES], cwd=root, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [os.fsdecode(name) for name in proc.stdout.split(b"\0") if name]


def _walk(root: Path) -> list[str]:
    """Every file under `root` outside hidden folders and __pycache__, symlinked folders not entered.

    The folder entries say what is a file without a stat per file, which matters in big trees.
    """
    names: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(os.path.join(root, prefix)) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith(".") and entry.name != "__pycache__":
                            pending.append(f"{prefix}{entry.name}/")
                    elif entry.name != ".git" and (entry.is_file(follow_symlinks=False) or (
                            entry.is_symlink() and _links_inside(root, prefix + entry.name))):
                        names.append(prefix + entry.name)
        except OSError:  # unreadable folder: nothing to search there
            continue
    return names


def _listable(root: Path, name: str) -> bool:
    """A regular file, or a symlink to one inside the root; never anything in .git.

    Git lists tracked files that were deleted since, and symlinks wherever they point.
    """
    if ".git" in name.split("/"):
        return False
    try:
        mode = os.lstat(os.path.join(root, name)).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or (stat.S_ISLNK(mode) and _links_inside(root, name))


def _links_inside(root: Path, name: str) -> bool:
    """Whether the symlink `name` leads to a file inside the root and outside .git."""
    try:
        target = (root / name).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return target.is_relative_to(root) and ".git" not in target.relative_to(root).parts and target.is_file()


# --- file texts -----------------------------------------------------------------------------------

def _texts(glob: str, exclude: Globs = None) -> Iterator[tuple[str, str]]:
    """(path, text) of each searchable file matching `glob` and not `exclude`: binary and oversized
    files skipped."""
    for path in _matching(glob, exclude):
        text = _text(path)
        if text is not None:
            yield path, text


def _text(path: str) -> str | None:
    state = _current()
    if path in state.texts:
        return state.texts[path]
    text = _load(state.root / path)
    if state.cached_chars < CACHE_CHARS:
        state.texts[path] = text
        state.cached_chars += len(text or "")
    return text


def _load(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                return None
            head = handle.read(BINARY_PROBE)
            if b"\0" in head:
                return None
            data = head + handle.read()
    except OSError:
        return None
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def _lines(text: str) -> list[str]:
    """Lines as editors and `ast` number them (the text's CRLFs are already plain newlines)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _cap(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " …[cut]"


# --- grep and read ----------------------------------------------------------------------------------

def grep(pattern: str, *, glob: str = "**/*", exclude: Globs = None, context: int = 0,
         ignore_case: bool = False, limit: int = 200) -> list[Item]:
    """Lines matching the Python regular expression `pattern`, in path then line order.

    Each hit is {path, line, scope, text}: flat, so a list of hits reads as a table. `scope` is
    where the line sits (see `bot.search._symbols.scopes`): "Class.method", "<module>", or None.
    With `context` > 0 the hit also has `before` and `after`, up to `context` lines each (fewer
    at the edges of the file). Binary files and files over 2 MB are skipped.
    """
    from bot.search._symbols import scopes  # it imports this module

    flags = re.IGNORECASE if ignore_case else 0
    regex = _compile(pattern, flags)
    whole = None if _LINE_EDGE.search(pattern) else _compile(pattern, flags | re.MULTILINE)
    context = max(context, 0)
    hits: list[Item] = []
    if limit <= 0:
        return hits
    literal = "" if ignore_case else _required_literal(pattern)
    for path, text in _texts(glob, exclude):
        if literal not in text or (whole is not None and not whole.search(text)):
            continue
        lines = _lines(text)
        where: list[str | None] | None = None
        for index in _matching_lines(text, lines, regex, whole):
            if where is None:  # only files with hits are parsed
                where = scopes(path, text, lines) or []
            hit: Item = {"path": path, "line": index + 1, "scope": where[index] if index < len(where) else None,
                         "text": _cap(lines[index])}
            if context:
                hit["before"] = [_cap(line) for line in lines[max(index - context, 0):index]]
                hit["after"] = [_cap(line) for line in lines[index + 1:index + 1 + context]]
            hits.append(hit)
            if len(hits) >= limit:
                return hits
    return hits


def _matching_lines(text: str, lines: list[str], regex: re.Pattern[str],
                    whole: re.Pattern[str] | None) -> Iterator[int]:
    """Indexes of the lines `regex` matches, found quickly by searching the whole text.

    Searching the text in C and checking only the lines where a match starts is many times faster
    than a Python loop over every line, and finds the same lines: a line that matches on its own
    also matches in place in the whole text (with MULTILINE, and without the line-edge constructs
    of `_LINE_EDGE`), so the search, resumed at each next line, cannot jump past it. A match in
    the whole text may span lines or otherwise fail alone, hence the check. `whole` None: the
    pattern needs the slow loop.
    """
    if whole is None:
        yield from (index for index, line in enumerate(lines) if regex.search(line))
        return
    position = index = 0  # `position` starts line `index`
    while match := whole.search(text, position):
        index += text.count("\n", position, match.start())
        if index >= len(lines):  # an empty match after the final newline
            return
        if regex.search(lines[index]):
            yield index
        position = text.find("\n", match.start()) + 1
        index += 1
        if position == 0:
            return


def _required_literal(pattern: str) -> str:
    """The longest run of plain characters every match contains ("" when there is none).

    A substring test is many times faster than the regex engine when a pattern does not start
    with a literal (`\\bname\\b`), so files without it are skipped first. The pattern's
    top-level items are all required in sequence (an alternation or a repeat is one item), so
    consecutive top-level literals are. Case-insensitive patterns have none.
    """
    if _parser is None:
        return ""
    parsed = _parser.parse(pattern, 0)  # cannot fail: re.compile has accepted the pattern
    if parsed.state.flags & re.IGNORECASE:
        return ""
    best = run = ""
    for op, argument in parsed:
        run = run + chr(argument) if op == _parser.LITERAL else ""
        best = max(best, run, key=len)
    return best


def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as error:
        raise ValueError(f"bad regular expression {pattern!r}: {error}") from None


def read(path: str, start: int = 1, end: int | None = None) -> Item:
    """Lines `start`..`end` (inclusive, 1-based) of one file: {path, start, end, total_lines, text}.

    At most 400 lines come back; when the range was longer, `end` is the last line returned and
    "truncated" is True. Any file under the root can be read, ignored ones included, but not one
    in .git or one a symlink leads to outside the root. The file is streamed, so large logs work.
    """
    relative, target = _resolve(path)
    if not target.exists():
        raise FileNotFoundError(f"no such file in the repository: {relative}")
    if target.is_dir():
        raise IsADirectoryError(f"{relative} is a folder; list it with files({relative + '/*'!r})")
    if not target.is_file():  # a FIFO would block the program until its time runs out
        raise ValueError(f"{relative} is not a regular file")
    if start < 1 or (end is not None and end < start):
        raise ValueError(f"bad line range {start}..{end}: lines are numbered from 1 and end >= start")
    last = start + READ_LINES - 1 if end is None else min(end, start + READ_LINES - 1)
    chosen: list[str] = []
    total = 0
    with target.open("rb") as handle:
        if b"\0" in handle.read(BINARY_PROBE):
            raise ValueError(f"{relative} is a binary file")
        handle.seek(0)
        for total, raw in enumerate(handle, 1):
            if start <= total <= last:
                chosen.append(_cap(raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")))
    if start > max(total, 1):
        raise ValueError(f"start {start} is past the end of {relative}, which has {total} lines")
    result: Item = {"path": relative, "start": start, "end": start + len(chosen) - 1,
                    "total_lines": total, "text": "\n".join(chosen)}
    if result["end"] < min(total, end if end is not None else total):
        result["truncated"] = True
    return result


def _resolve(path: str) -> tuple[str, Path]:
    """The normalised relative path and the real file, refusing anything that leaves the root."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("give a file path relative to the repository root")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ValueError(f"absolute paths are refused ({path}); give a path relative to the repository root")
    if ".." in pure.parts:
        raise ValueError(f"paths containing '..' are refused ({path})")
    if ".git" in pure.parts:
        raise ValueError(f"the .git folder is not readable ({path})")
    root = _current().root
    try:
        target = (root / pure).resolve()
    except (OSError, RuntimeError) as error:
        raise ValueError(f"cannot resolve {path}: {error}") from None
    if not target.is_relative_to(root):
        raise ValueError(f"{path} leads outside the repository (through a symbolic link)")
    if ".git" in target.relative_to(root).parts:
        raise ValueError(f"{path} leads into the .git folder (through a symbolic link)")
    return str(pure), target


# --- post-processing --------------------------------------------------------------------------------

def unique(items: list[Any], key: str | Callable[[Any], Any] | None = None) -> list[Any]:
    """`items` without repeats, first occurrence kept, order unchanged.

    `key` is a dict key name, a function of the item, or None: then dicts carrying "path" and
    "line" compare by that pair (grep and references hits for one line) and anything else whole.
    """
    seen: set[Any] = set()
    kept = []
    for item in items:
        if callable(key):
            identity = key(item)
        elif key is not None:
            identity = item.get(key) if isinstance(item, dict) else item
        elif isinstance(item, dict) and "path" in item and "line" in item:
            identity = (item["path"], item["line"])
        else:
            identity = item
        marker = _hashable(identity)
        if marker not in seen:
            seen.add(marker)
            kept.append(item)
    return kept


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)
    return value


def rank(items: list[Item], *, query: str | None = None, prefer: str | None = None) -> list[Item]:
    """`items` reordered: paths matching the glob `prefer` first, then by how often the words of
    `query` occur (case-insensitively, as substrings) in the item's "text", "signature"
    (definitions) or "message" (failing tests), then by path and line. Ties keep their order (the
    sort is stable); the items themselves are not changed.
    """
    words = re.findall(r"\w+", (query or "").lower())

    def order(item: Item) -> tuple[int, int, str, int]:
        path = str(item.get("path", ""))
        preferred = 0 if prefer and matches_any(path, [prefer.removeprefix("./")]) else 1
        text = str(item.get("text") or item.get("signature") or item.get("message") or "").lower()
        line = item.get("line")
        return preferred, -sum(text.count(word) for word in words), path, line if isinstance(line, int) else 0

    return sorted(items, key=order)


REFERENCE = """\
Call emit(value) once: only that value comes back (print output is discarded). Emit strings or
lists of flat dicts (same keys: shown as a compact table), not nested data.
Paths are relative to the repository root; lines are 1-based. Searches skip git-ignored, binary
and >2 MB files. Globs: * stays in one folder, ** crosses ("**/*.py", "src/**"). exclude: a glob
or list; an entry without / matches that file or folder name at any depth ("test": every test/).
scope: the innermost def/class ("Cls.method") or "<module>"; non-Python: nearest definition above or None.

files(pattern="**/*", *, exclude=None, limit=1000) -> [path]
grep(regex, *, glob="**/*", exclude=None, context=0, ignore_case=False, limit=200)
  -> [{path, line, scope, text}], plus before/after line lists if context
read(path, start=1, end=None) -> {path, start, end, total_lines, text}, at most 400 lines
definitions(name, *, glob, exclude, limit=50) -> [{path, line, end_line, kind, name, qualname,
  signature}]; name may be "Cls.method"
references(name, *, glob, exclude, limit=200) -> [{path, line, kind, scope, text}]: uses
evidence() -> failing tests [{test, path, line, message}] or logs [{source, text}]
unique(items, key=None) -> items without repeats (key: dict key or function)
rank(items, *, query=None, prefer=None) -> paths matching glob prefer first, then most query words

Example:
    hits = grep(r"\\.connect\\(", glob="**/*.py", exclude=["test", "site-packages"])
    emit([h for h in hits if h["scope"] != "<module>"])
"""
