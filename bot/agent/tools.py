"""The agent's tools: Anthropic's text editor and bash client tools, confined to the worktree, and
fixloop's own `search_code` (a read-only search program, see bot.search).

Failures are tool results with `is_error`, phrased so the model can act on them; they never
raise. Paths are relative to the repository root: absolute paths, `..` and symlinks leading out
are refused, and so are paths on the deny list.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bot._process import cap_text, run_shell
from bot.agent.model import ToolSpec
from bot.paths import matches_any
from bot.sandbox import Confinement
from bot.sanitize import conceal
from bot.search import INPUT_SCHEMA, SearchCode, SearchLimits, tool_description
from bot.search import TOOL_NAME as SEARCH

EDITOR = "str_replace_based_edit_tool"
BASH = "bash"
VIEW_LIMIT = 20_000  # characters of one file view sent back to the model
TOOL_SPECS = [ToolSpec(EDITOR, kind="text_editor", max_characters=VIEW_LIMIT), ToolSpec(BASH, kind="bash")]


def search_spec(limits: SearchLimits | None = None) -> ToolSpec:
    """fixloop's own `search_code` tool, as the model is told about it (with the session's limits)."""
    return ToolSpec(SEARCH, description=tool_description(limits or SearchLimits()), input_schema=INPUT_SCHEMA)


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool = False


class PathRefused(Exception):
    """A path the editor may not use; the message is meant for the model."""


class Toolbox:
    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str],
        deny: list[str],
        command_timeout: float,
        output_limit: int = 20_000,
        confinement: Confinement | None = None,
        search: SearchCode | None = None,
    ) -> None:
        """`confinement`: the session's, for the bash tool (None runs commands as they are, with `env`)."""
        self.root = root.resolve()
        self.confinement = confinement
        self.search = search
        self.env = dict(env)
        self.deny = deny
        self.command_timeout = command_timeout
        self.output_limit = output_limit
        self.specs = [*TOOL_SPECS, search_spec(search.limits)] if search else TOOL_SPECS

    def run(self, name: str, tool_input: Mapping[str, Any]) -> ToolResult:
        if name == EDITOR:
            return self._edit(tool_input)
        if name == BASH:
            return self._bash(tool_input)
        if name == SEARCH and self.search is not None:
            found = self.search.run(tool_input)
            return ToolResult(found.text, found.is_error)
        names = ", ".join(spec.name for spec in self.specs)
        return ToolResult(f"Unknown tool {name!r}; the tools are {names}.", is_error=True)

    # -- paths ---------------------------------------------------------------------------------
    def resolve(self, raw: object) -> tuple[Path, str]:
        if not isinstance(raw, str) or not raw.strip():
            raise PathRefused("The `path` parameter is required: a path relative to the repository root.")
        posix = PurePosixPath(raw.strip())
        if posix.is_absolute():
            raise PathRefused(
                f"Absolute paths are not allowed ({raw}). "
                "Use a path relative to the repository root, e.g. 'src/app.py'."
            )
        if ".." in posix.parts:
            raise PathRefused(f"'..' is not allowed in paths ({raw}); stay inside the repository.")
        relative = posix.as_posix().removeprefix("./") or "."
        target = self.root / relative
        resolved = target.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise PathRefused(f"{raw} leads outside the repository (through a symbolic link); it cannot be used.")
        if relative != "." and (rule := matches_any(relative, self.deny)):
            raise PathRefused(f"{raw} is protected by the deny list ({rule}); fixloop does not let the agent touch it.")
        _refuse_special(target, raw)
        return target, relative

    # -- text editor ---------------------------------------------------------------------------
    def _edit(self, args: Mapping[str, Any]) -> ToolResult:
        command = args.get("command")
        handler = {
            "view": self._view,
            "create": self._create,
            "str_replace": self._str_replace,
            "insert": self._insert,
        }.get(str(command))
        if handler is None:
            return ToolResult(
                f"Unknown command {command!r}; use one of view, create, str_replace, insert.", is_error=True
            )
        # The model reads invisible characters as <U+XXXX> markers (see bot.sanitize); what it
        # writes back has them restored, so files stay byte-exact.
        args = {key: conceal(value) if isinstance(value, str) and key != "path" else value
                for key, value in args.items()}
        try:
            path, relative = self.resolve(args.get("path"))
            return handler(path, relative, args)
        except PathRefused as refusal:
            return ToolResult(str(refusal), is_error=True)
        except UnicodeDecodeError:
            return ToolResult(
                f"{args.get('path')} is not a UTF-8 text file; the editor only handles text.", is_error=True
            )
        except UnicodeEncodeError:
            return ToolResult(f"The text for {args.get('path')} is not valid Unicode (half of a character, a lone "
                              "surrogate); nothing was written. Send the whole character.", is_error=True)
        except OSError as error:
            return ToolResult(f"{args.get('path')}: {error.strerror or error}", is_error=True)

    def _view(self, path: Path, relative: str, args: Mapping[str, Any]) -> ToolResult:
        if path.is_dir():
            return ToolResult(self._listing(path, relative))
        if not path.exists():
            return ToolResult(f"{relative} does not exist. View '.' to list the repository.", is_error=True)
        lines = path.read_text(encoding="utf-8").splitlines()
        start, end = 1, len(lines)
        view_range = args.get("view_range")
        if view_range is not None:
            if (
                not isinstance(view_range, list)
                or len(view_range) != 2
                or not all(isinstance(n, int) for n in view_range)
            ):
                return ToolResult(
                    "view_range must be two integers [start, end]; end -1 means to the end.", is_error=True
                )
            start, end = view_range
            end = len(lines) if end == -1 else end
            if not 1 <= start <= max(len(lines), 1) or end < start:
                return ToolResult(f"view_range {view_range} is outside the file's {len(lines)} lines.", is_error=True)
        numbered = "\n".join(f"{n:6}\t{line}" for n, line in enumerate(lines[start - 1 : end], start))
        return ToolResult(cap_text(numbered, VIEW_LIMIT) if numbered else f"{relative} is empty.")

    def _listing(self, path: Path, relative: str) -> str:
        entries: list[str] = []
        for dirpath, dirnames, filenames in os.walk(path):
            depth = len(Path(dirpath).relative_to(path).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            if depth >= 2:
                dirnames[:] = []
            base = Path(dirpath).relative_to(self.root)
            entries += [f"{(base / d).as_posix()}/" for d in dirnames]
            entries += [(base / f).as_posix() for f in sorted(filenames) if not f.startswith(".")]
        listing = "\n".join(sorted(entries)) or "(no files)"
        return cap_text(f"Files in {relative} (two levels, hidden entries omitted):\n{listing}", VIEW_LIMIT)

    def _create(self, path: Path, relative: str, args: Mapping[str, Any]) -> ToolResult:
        text = args.get("file_text")
        if not isinstance(text, str):
            return ToolResult("create needs `file_text`, the whole content of the new file.", is_error=True)
        if path.is_dir():
            return ToolResult(f"{relative} is a directory.", is_error=True)
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, text)
        return ToolResult(f"{'Overwrote' if existed else 'Created'} {relative}.")

    def _str_replace(self, path: Path, relative: str, args: Mapping[str, Any]) -> ToolResult:
        old, new = args.get("old_str"), args.get("new_str", "")
        if not isinstance(old, str) or not old:
            return ToolResult("str_replace needs a non-empty `old_str` copied exactly from the file.", is_error=True)
        if not isinstance(new, str):
            return ToolResult("`new_str` must be a string.", is_error=True)
        if not path.is_file():
            return ToolResult(f"{relative} is not a file.", is_error=True)
        text = path.read_text(encoding="utf-8")
        count = text.count(old)
        if count == 0:
            return ToolResult(
                f"No replacement was performed: old_str did not appear verbatim in {relative}. "
                "View the file and copy the text exactly, including whitespace.",
                is_error=True,
            )
        if count > 1:
            lines = [text[: m].count("\n") + 1 for m in _find_all(text, old)]
            return ToolResult(
                f"No replacement was performed: old_str occurs {count} times in {relative} (lines {lines}). "
                "Include more surrounding lines to make it unique.",
                is_error=True,
            )
        at = text.index(old)
        _write(path, text.replace(old, new, 1))
        first = text[:at].count("\n") + 1
        return ToolResult(f"Edited {relative}: replaced {old.count(chr(10)) + 1} line(s) at line {first}.")

    def _insert(self, path: Path, relative: str, args: Mapping[str, Any]) -> ToolResult:
        line = args.get("insert_line")
        text = args.get("insert_text", args.get("new_str"))
        if not isinstance(line, int) or not isinstance(text, str):
            return ToolResult(
                "insert needs `insert_line` (a line number, 0 for the top) and `insert_text`.", is_error=True
            )
        if not path.is_file():
            return ToolResult(f"{relative} is not a file.", is_error=True)
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if not 0 <= line <= len(lines):
            return ToolResult(f"insert_line {line} is outside 0..{len(lines)} for {relative}.", is_error=True)
        if lines and not lines[-1].endswith("\n") and line == len(lines):
            lines[-1] += "\n"
        lines.insert(line, text if text.endswith("\n") else text + "\n")
        _write(path, "".join(lines))
        return ToolResult(f"Inserted {text.count(chr(10)) + 1} line(s) after line {line} of {relative}.")

    # -- bash ----------------------------------------------------------------------------------
    def _bash(self, args: Mapping[str, Any]) -> ToolResult:
        if args.get("restart"):
            return ToolResult("The shell was restarted. Every command starts at the repository root.")
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResult("bash needs `command`, the shell command to run.", is_error=True)
        run = self.confinement.run if self.confinement is not None else run_shell
        result = run(command, cwd=self.root, env=self.env, timeout=self.command_timeout, output_limit=self.output_limit)
        output = result.output.rstrip() or "(no output)"
        if result.timed_out:
            return ToolResult(
                f"{output}\n[The command was killed after {self.command_timeout:g} s. "
                "Run something quicker, or narrow it (e.g. one test file).]",
                is_error=True,
            )
        if result.exit_code:
            # A failing command is information for the model, not a tool failure.
            return ToolResult(f"{output}\n[exit code {result.exit_code}]")
        return ToolResult(output)


_SPECIAL = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket"}


def _refuse_special(target: Path, raw: str) -> None:
    """Only regular files (and folders, to list): opening a FIFO or a device would block or never end."""
    try:
        kind = stat.S_IFMT(target.stat().st_mode)
    except OSError:  # absent (create makes it) or unreadable (the operation says why)
        return
    if kind in _SPECIAL:
        raise PathRefused(f"{raw} is {_SPECIAL[kind]}, not a regular file: the editor only reads and writes regular "
                          "files. Inspect it with bash (`ls -l`, `file`), or remove it and create a regular file.")


def _find_all(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def _write(path: Path, text: str) -> None:
    """Encoded before the file is opened: text that cannot be encoded leaves the file as it was
    (`write_text` truncates it first, then fails)."""
    path.write_bytes(text.encode("utf-8"))
