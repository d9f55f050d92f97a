"""Running a `search_code` program: a separate, limited process; only what it emits comes back.

Layers, each enough to stop a runaway or curious program on its own terms:
- the child (bot.search._child) gets no environment beyond PATH and a UTF-8 locale, so no secrets;
- the child never loads `subprocess` (the file listing, the SDK's one `git` call, is made here);
- an audit hook in the child refuses writes, reads outside the repository, sockets, processes and
  the modules that start them (a guard rail: a determined program could get around a hook, so
  without bubblewrap a program can do what the agent's shell can, and no more);
- resource limits (set by the child on itself before it reads the program): CPU seconds, address
  space, and the size of what it can write to its output;
- a wall-clock timeout that kills the whole process group;
- where bubblewrap works (bot.sandbox), a read-only mount namespace without network.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bot
from bot._process import CommandResult, run_shell
from bot.sandbox import Sandbox
from bot.search._sdk import REFERENCE, repository_files

TOOL_NAME = "search_code"


@dataclass(frozen=True)
class SearchLimits:
    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    output_chars: int = 10_000  # of the emitted value, as the model reads it
    print_chars: int = 2_000  # of print() output, shown after the value

    @property
    def answer_bytes(self) -> int:
        """The most the child may write: the capped value and prints, JSON-escaped, with room to spare."""
        return 8 * (self.output_chars + self.print_chars) + 65_536


@dataclass(frozen=True)
class ProgramResult:
    text: str  # the tool result the model reads
    is_error: bool
    duration_s: float


INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"program": {"type": "string", "description": "Python source that calls emit(value) once."}},
    "required": ["program"],
}


def tool_description(limits: SearchLimits = SearchLimits()) -> str:
    """What the model is told about the tool (the agent's `search_spec` sends it with INPUT_SCHEMA)."""
    return (
        "Search the repository by writing a short Python program against a read-only search SDK, instead of "
        "many grep/view calls. The program runs in a separate sandboxed process at the repository root; only "
        "the value passed to emit() comes back to you, so filter, rank and trim inside the program.\n\n"
        f"{REFERENCE.strip()}\n\n"
        f"Limits: {limits.cpu_seconds} s CPU, {limits.wall_seconds:g} s wall time, {limits.memory_mb} MB memory; "
        f"the emitted value is cut at {limits.output_chars:,} characters and print() output at "
        f"{limits.print_chars:,}. No writes, no network, no subprocesses. Errors come back as a traceback of "
        "your program's lines."
    )


def _interpreter_paths() -> list[Path]:
    """What the child needs to start: the interpreter, its libraries and fixloop's own code."""
    return [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent,
            Path(bot.__file__).resolve().parent]


def search_sandbox_paths(root: Path, git_dirs: list[Path]) -> list[Path]:
    """The read-only mounts a confined search needs (for `bot.sandbox.sandbox(readable=...)`)."""
    return [root, *git_dirs, *_interpreter_paths()]


def run_program(program: str, *, root: Path, evidence: list[dict[str, Any]] | None = None,
                limits: SearchLimits = SearchLimits(), sandbox: Sandbox | None = None) -> ProgramResult:
    """Run `program` against the SDK over `root` and say what the model should read back."""
    if not isinstance(program, str) or not program.strip():
        return ProgramResult("search_code needs `program`: Python source that calls emit(value).", True, 0.0)
    request = json.dumps({"program": program, "evidence": evidence or [], "listing": repository_files(root),
                          "limits": {"output_chars": limits.output_chars, "print_chars": limits.print_chars,
                                     "cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb,
                                     "answer_bytes": limits.answer_bytes}})
    argv = [sys.executable, "-I", "-X", "utf8", "-m", "bot.search._child"]
    if sandbox is not None:
        argv = sandbox.wrap(argv, cwd=root)
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C.UTF-8"}
    with tempfile.TemporaryDirectory(prefix="fixloop-search-") as scratch:
        request_file = Path(scratch) / "request.json"
        request_file.write_text(request, encoding="utf-8")
        # The child's own output limit (RLIMIT_FSIZE) keeps what it writes within answer_bytes.
        ran = run_shell(argv, cwd=root, env=env, timeout=limits.wall_seconds, output_limit=limits.answer_bytes,
                        stdin=request_file, confined=sandbox is not None)
    return _result(ran, limits)


@dataclass(frozen=True)
class SearchCode:
    """The `search_code` tool of one session: its repository, evidence, sandbox and limits."""

    root: Path
    evidence: list[dict[str, Any]]
    sandbox: Sandbox | None = None
    limits: SearchLimits = SearchLimits()

    def run(self, tool_input: Mapping[str, Any]) -> ProgramResult:
        return run_program(tool_input.get("program"), root=self.root, evidence=self.evidence,  # type: ignore[arg-type]
                           limits=self.limits, sandbox=self.sandbox)


def _result(ran: CommandResult, limits: SearchLimits) -> ProgramResult:
    """What the model reads, from the child's output: its JSON answer, or why there is none (the
    child's own messages, on the same output, say why it crashed)."""
    def failed(message: str) -> ProgramResult:
        return ProgramResult(message, True, ran.duration_s)

    code, crash = ran.exit_code, ran.output[-2_000:]
    if code is None:
        return failed(f"The program was stopped after {limits.wall_seconds:g} s (wall-clock limit). "
                      "Search more narrowly: a tighter glob, fewer files read, no unbounded loops.")
    # Killed by a signal: negative when the child was ours directly, 128 + the signal through bwrap.
    killed_by = -code if code < 0 else code - 128 if code > 128 else None
    if killed_by in (signal.SIGXCPU, signal.SIGKILL):
        return failed(f"The program used more than {limits.cpu_seconds} s of CPU time and was stopped. "
                      "Search more narrowly: a tighter glob, fewer files read, no unbounded loops.")
    too_much = failed(f"The program wrote more than {limits.answer_bytes:,} bytes of output and was stopped. "
                      "Return what you need through emit(), not print().")
    if killed_by == signal.SIGXFSZ or ran.output_bytes >= limits.answer_bytes:
        return too_much
    try:
        answer: Mapping[str, Any] = json.loads(ran.output)
    except json.JSONDecodeError:  # no answer: what the child said instead (only then, not an emitted value)
        if "File too large" in crash:
            return too_much
        detail = crash.strip() or f"exit code {code}"
        if "MemoryError" in crash:
            detail = f"it ran out of memory (limit {limits.memory_mb} MB)"
        return failed(f"The program crashed before it could answer: {detail}")
    return _for_model(answer, limits, ran.duration_s)


def _for_model(answer: Mapping[str, Any], limits: SearchLimits, duration: float) -> ProgramResult:
    parts: list[str] = []
    if "emitted" in answer:
        parts.append(answer["emitted"])
        if answer["emitted_chars"] > limits.output_chars:
            parts.append(f"[emit() got {answer['emitted_chars']:,} characters; only the first {limits.output_chars:,} "
                         "are shown. Emit less: slice, unique() or rank() first.]")
    if answer.get("printed"):
        dropped = f"; {answer['printed_dropped']:,} more characters dropped" if answer.get("printed_dropped") else ""
        parts.append(f"[the program printed{dropped}:]\n{answer['printed']}")
    if "error" in answer:
        return ProgramResult("\n".join([answer["error"], *parts]), True, duration)
    if "emitted" not in answer:
        parts.insert(0, "The program finished without calling emit(value), so nothing came back. "
                        "Call emit() once with what you want to read.")
        return ProgramResult("\n".join(parts), True, duration)
    return ProgramResult("\n".join(parts), False, duration)


__all__ = ["INPUT_SCHEMA", "TOOL_NAME", "ProgramResult", "SearchCode", "SearchLimits", "run_program",
           "search_sandbox_paths", "tool_description"]
