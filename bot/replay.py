"""`fixloop replay SESSION_DIR`: run a recorded session again, with the model's recorded answers in place of
the model, and the tools, validation and git for real.

The trajectory (`trajectory.jsonl`) holds what replay needs: the base commit, the task, the config and
the worktree's path (in `session_started`), each model answer (`model_called`: its words, why it
stopped, its usage) with its tool calls (`tool_called`, in order), and each validation. The replay runs
in a throwaway clone of the repository (nothing is added to it), at the same base, with the same task
and config; its model plays the recorded answers back, and checks, turn by turn, that the tools
answered as they did then (after naming the two worktrees alike and blanking durations, which differ
from run to run).

It ends `reproduced` when the change is the recorded one byte for byte (`changes.patch`, both sides
written through the session's redactor), else `diverged`, naming the first step where the environment answered
differently, or where the replay ran past what was recorded.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.agent.events import Event, SessionStarted, ToolCalled, ValidationRan
from bot.agent.model import Block, CallResult, Message, ModelReply, Text, ToolCall, ToolSpec
from bot.agent.usage import Usage
from bot.config import Config
from bot.deflake import DeflakeTarget
from bot.errors import ConfigError
from bot.session import SessionSpec, run_session
from bot.task import Task
from bot.workspace import git, has_commit, repository_root

_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b")


class Diverged(BaseException):  # not an Exception: the session's own error handling must not swallow it
    """The replay cannot follow the recording any further."""


@dataclass(frozen=True)
class Step:
    iteration: int
    turn: int
    what: str  # e.g. "the result of str_replace", "validation"
    recorded: str
    replayed: str

    def describe(self) -> str:
        return (f"iteration {self.iteration}, turn {self.turn}: {self.what} differed\n"
                f"  recorded: {_short(self.recorded)}\n  replayed: {_short(self.replayed)}")


@dataclass
class Outcome:
    reproduced: bool
    recorded_status: str
    replayed_status: str
    first_difference: Step | None
    recorded_patch: str
    replayed_patch: str
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.reproduced else 1


@dataclass
class _Turn:
    iteration: int
    turn: int
    text: str
    stop_reason: str
    usage: Usage
    calls: list[ToolCalled] = field(default_factory=list)


@dataclass
class Recording:
    model: str  # its name prices the replay as the session was (limits.cost_usd holds alike)
    base_commit: str
    task: Task
    config: Config
    worktree: str
    codemod: list[str]
    start_patch: str | None
    deflake: DeflakeTarget | None
    status: str
    reason: str
    turns: list[_Turn]
    validations: dict[int, ValidationRan]
    patch: str


def read_recording(session_dir: Path) -> Recording:
    """A session folder's recording; ConfigError when it is not one replay can use."""
    trajectory = session_dir / "trajectory.jsonl"
    try:
        records = [json.loads(line) for line in trajectory.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as error:
        raise ConfigError(f"{session_dir} is not a session folder: {trajectory} cannot be read ({error.strerror}). "
                          "Sessions are in <repo>/.fixloop/sessions/, or in the fixloop-session-<run> artifact of "
                          "a workflow run.") from None
    except ValueError:
        raise ConfigError(f"{trajectory} is not a trajectory (a JSON object a line)") from None
    started = next((r for r in records if r.get("type") == "session_started"), None)
    if started is None or not started.get("replay"):
        raise ConfigError(f"{trajectory} was written by a fixloop that did not record what replay needs (the task "
                          "and config in session_started); only sessions of this version or later can be replayed")
    needs = started["replay"]
    try:
        task, config = Task.model_validate(needs["task"]), Config.model_validate(needs["config"])
    except (KeyError, ValidationError) as error:
        raise ConfigError(f"{trajectory}: the recorded task or config cannot be read: {error}") from None
    turns: list[_Turn] = []
    validations: dict[int, ValidationRan] = {}
    status, reason = "unknown", ""
    for record in records:
        kind = record.get("type")
        if kind == "model_called":
            turns.append(_Turn(record["iteration"], record["turn"], record.get("text", ""), record["stop_reason"],
                               Usage.model_validate(record["usage"])))
        elif kind == "tool_called" and turns:
            turns[-1].calls.append(ToolCalled.model_validate(record))
        elif kind == "validation_ran":
            validations[record["iteration"]] = ValidationRan.model_validate(record)
        elif kind == "session_ended":
            status, reason = record["status"], str(record.get("reason", ""))
    patch_file = session_dir / "changes.patch"
    deflake = needs.get("deflake")
    return Recording(
        model=str(started.get("model", "")), base_commit=started["base_commit"], task=task, config=config,
        worktree=needs.get("worktree", ""),
        codemod=list(needs.get("codemod") or []), start_patch=needs.get("start_patch"),
        deflake=DeflakeTarget(**deflake) if deflake else None, status=status, reason=reason, turns=turns,
        validations=validations, patch=patch_file.read_text(encoding="utf-8") if patch_file.exists() else "")


class ReplayModel:
    """Plays the recorded answers back; before each, checks what the tools answered to the previous one."""

    def __init__(self, recording: Recording, same: _Same, name: str) -> None:
        self.name = name
        self._turns: Iterator[_Turn] = iter(recording.turns)
        self._previous: _Turn | None = None
        self.same = same
        self.first_difference: Step | None = None

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        if self._previous is not None and self._previous.calls and messages and messages[-1].role == "user":
            results = [block for block in messages[-1].content if isinstance(block, CallResult)]
            for call, result in zip(self._previous.calls, results, strict=False):
                if not self.same(call.result, result.content):
                    self.difference(Step(call.iteration, call.turn, f"the result of {call.name}", call.result,
                                         result.content))
        turn = next(self._turns, None)
        if turn is None:
            self.difference(Step(self._previous.iteration if self._previous else 0, 0, "the session",
                                 "ended here", "asked the model once more"))
            raise Diverged
        self._previous = turn
        content: list[Block] = [Text(turn.text)] if turn.text else []
        content += [ToolCall(call.call_id, call.name, call.input) for call in turn.calls]
        return ModelReply(content, turn.stop_reason, turn.usage)  # type: ignore[arg-type]

    def difference(self, step: Step) -> None:
        if self.first_difference is None:
            self.first_difference = step


class _Same:
    """Tool output compared as the environment's answer: the two worktrees named alike, durations blanked."""

    def __init__(self, recorded_root: str, replayed_root: str) -> None:
        self.recorded_root, self.replayed_root = recorded_root, replayed_root

    def __call__(self, recorded: str, replayed: str) -> bool:
        return self.normal(recorded, self.recorded_root) == self.normal(replayed, self.replayed_root)

    @staticmethod
    def normal(text: str, root: str) -> str:
        return _DURATION.sub("<time>", text.replace(root, "<worktree>") if root else text)


def replay(session_dir: Path, repo: Path | None = None, *, environ: Mapping[str, str]) -> Outcome:
    """Replay the session recorded in `session_dir` on `repo` (default: the repository the folder is in, for
    `fixloop run` and `demo` sessions). Raises ConfigError when it cannot start."""
    recording = read_recording(session_dir)
    if repo is None:
        folder = session_dir.resolve()
        if len(folder.parents) < 3 or folder.parents[1].name != ".fixloop":
            raise ConfigError(f"{session_dir} is not in a repository's .fixloop/sessions/: give --repo, a clone that "
                              "has the session's base commit")
        repo = folder.parents[2]
    source = repository_root(repo)
    if not has_commit(source, recording.base_commit):
        raise ConfigError(f"{source} does not have the session's base commit {recording.base_commit[:12]}: fetch it "
                          "(or pass --repo with a clone that has it)")
    config = recording.config.model_copy(update={"telemetry": recording.config.telemetry.model_copy(
        update={"enabled": False})})  # a replay is not a session to trace
    with tempfile.TemporaryDirectory(prefix="fixloop-replay-") as scratch:
        clone = Path(scratch) / "repo"
        git("clone", "--quiet", "--shared", "--no-checkout", str(source), str(clone), cwd=Path(scratch))
        same = _Same(recording.worktree, "")  # the replay's worktree is named by its first event
        model = ReplayModel(recording, same, name=recording.model)
        watcher = _ValidationWatch(recording, model, same)
        spec = SessionSpec(repo=clone, task=recording.task, config=config, model=model, base=recording.base_commit,
                           out_dir=Path(scratch) / "session", branch="fixloop/replay", deflake=recording.deflake,
                           codemod=recording.codemod, start_patch=recording.start_patch, sinks=[watcher],
                           environ=dict(environ))
        replayed_status: str
        ran_out = False
        try:
            replayed_status = run_session(spec).status
        except Diverged:
            replayed_status, ran_out = "stopped (the recording ran out)", True
        # Written through the session's redactor, as the recorded one was (same environment, same config).
        patch_file = Path(scratch) / "session" / "changes.patch"
        replayed = patch_file.read_text(encoding="utf-8") if patch_file.exists() else ""
    notes = []
    if recording.status in ("error", "cancelled") and ran_out:
        # The recording stops where the session did; the replay ran as far as it went.
        model.first_difference, replayed_status = None, recording.status
        notes.append(f"the session ended in {recording.status} ({recording.reason}); replayed up to there")
    reproduced = replayed == recording.patch and replayed_status == recording.status
    return Outcome(reproduced=reproduced, recorded_status=recording.status, replayed_status=replayed_status,
                   first_difference=model.first_difference, recorded_patch=recording.patch, replayed_patch=replayed,
                   notes=notes)


class _ValidationWatch:
    """A sink of the replayed session: learns its worktree, and compares each validation with the recorded one
    (whether it passed, and which tests failed)."""

    def __init__(self, recording: Recording, model: ReplayModel, same: _Same) -> None:
        self.recording, self.model, self.same = recording, model, same

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self.same.replayed_root = str(event.replay.get("worktree", ""))
        if isinstance(event, ValidationRan):
            recorded = self.recording.validations.get(event.iteration)
            if recorded is not None and _verdict(recorded) != _verdict(event):
                self.model.difference(Step(event.iteration, 0, "validation", _verdict(recorded), _verdict(event)))


def _verdict(event: ValidationRan) -> str:
    failed = sorted(test.id for test in event.result.failed_tests)
    return "passed" if event.result.passed else f"failed: {', '.join(failed) or 'no test named'}"


def _short(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " …"


def print_outcome(outcome: Outcome, out: Any) -> None:
    if outcome.reproduced:
        print(f"reproduced: the same change, byte for byte ({len(outcome.replayed_patch):,} bytes), and the same "
              f"ending ({outcome.replayed_status})", file=out)
    else:
        print(f"diverged: recorded {outcome.recorded_status} with a {len(outcome.recorded_patch):,}-byte change; "
              f"replayed {outcome.replayed_status} with a {len(outcome.replayed_patch):,}-byte change", file=out)
    if outcome.first_difference is not None:
        print(f"first difference: {outcome.first_difference.describe()}", file=out)
    for note in outcome.notes:
        print(f"note: {note}", file=out)

