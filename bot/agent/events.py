"""What happens in a session, as typed events, and how a session ends.

The loop emits events; sinks consume them: the trajectory (JSONL on disk), the report builder,
the terminal, and the check-run reporter. Everything a sink needs is in the event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from bot.agent.guidance import GuidanceFile
from bot.agent.usage import Usage
from bot.validation import ValidationResult

Status = Literal["validated", "not_validated", "cancelled", "error"]


@dataclass(frozen=True)
class Ending:
    """The typed end of a session; `reason` says why (which limit, what failed). `user_error`: an
    error that is the user's to fix, not fixloop's (a command of the config that cannot run)."""

    status: Status
    reason: str
    user_error: bool = False

    @classmethod
    def validated(cls) -> Ending:
        return cls("validated", "validation passed")

    @classmethod
    def not_validated(cls, reason: str) -> Ending:
        return cls("not_validated", reason)

    @classmethod
    def cancelled(cls, reason: str = "cancelled by a signal") -> Ending:
        return cls("cancelled", reason)

    @classmethod
    def error(cls, reason: str) -> Ending:
        return cls("error", reason)

    @classmethod
    def cannot_run(cls, reason: str) -> Ending:
        """A setup or validation command that cannot even start: the config's mistake."""
        return cls("error", reason, user_error=True)


class Event(BaseModel):
    type: ClassVar[str]

    def record(self) -> dict[str, Any]:
        return {"type": self.type, **self.model_dump(mode="json")}


class SessionStarted(Event):
    type: ClassVar[str] = "session_started"
    session_id: str
    task: str
    task_kind: str  # bot.task.TaskKind: local, issue, command, ci_failure, deflake
    model: str
    provider: str
    repo: str
    base_commit: str
    limits: dict[str, Any]
    confinement: str  # how code the agent touched runs (bot.sandbox.Confinement.description)
    confined: bool  # whether it runs in the sandbox (the agent's shell, validation, reruns, search programs)
    replay: dict[str, Any] = {}  # what `fixloop replay` needs besides the events: task, config, worktree (bot.replay)


class IterationStarted(Event):
    type: ClassVar[str] = "iteration_started"
    n: int


class ModelCalled(Event):
    type: ClassVar[str] = "model_called"
    iteration: int
    turn: int
    stop_reason: str
    usage: Usage
    duration_s: float
    text: str  # what the model said besides tool calls
    tool_calls: int
    session_cost_usd: float | None  # the session's estimated cost so far (from list prices); None: unknown


class ToolCalled(Event):
    type: ClassVar[str] = "tool_called"
    iteration: int
    turn: int
    call_id: str  # the model's id for the call, pairing it with its result
    name: str
    input: dict[str, Any]
    result: str
    is_error: bool
    duration_s: float


class ChangesMade(Event):
    """The worktree compared with the base, just before an iteration's validation."""

    type: ClassVar[str] = "changes_made"
    iteration: int
    diff_stat: str
    changed_files: list[str]
    diff: str = ""  # the change itself, as a patch (cut where it is very long)


class ValidationRan(Event):
    type: ClassVar[str] = "validation_ran"
    iteration: int  # 0 for the baseline run before the agent starts
    result: ValidationResult


class GuidanceRead(Event):
    """The repository's instruction files found for the task (bot.agent.guidance), given to the model or
    skipped. After the baseline, whose failing tests say which AGENTS.md is nearest; only when any was found."""

    type: ClassVar[str] = "guidance_read"
    files: list[GuidanceFile]


class IterationEnded(Event):
    type: ClassVar[str] = "iteration_ended"
    n: int
    turns: int
    usage: Usage
    passed: bool
    feedback: str | None  # the failure account sent to the model as its next turn


class LimitReached(Event):
    type: ClassVar[str] = "limit_reached"
    limit: str
    detail: str


class SessionEnded(Event):
    type: ClassVar[str] = "session_ended"
    status: Status
    reason: str
    user_error: bool = False  # see Ending
    usage: Usage
    cost_usd: float | None  # None: the model's price is unknown


Sink = Callable[[Event], None]


def fan_out(sinks: Iterable[Sink]) -> Sink:
    targets = list(sinks)

    def emit(event: Event) -> None:
        for sink in targets:
            sink(event)

    return emit
