"""The agent loop: propose (model ⇄ tools) → validate (orchestrator) → iterate.

One iteration is the model working with tools until it ends its turn (or uses up its turns);
then the orchestrator, not the model, runs validation. A failure's account becomes the next
user turn. The loop ends validated, or not validated with the limit or reason that stopped it;
cancellation (SessionCancelled) and model failures (ModelError) propagate to the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from bot.agent.budget import Budget
from bot.agent.events import (
    Ending,
    IterationEnded,
    IterationStarted,
    LimitReached,
    ModelCalled,
    Sink,
    ToolCalled,
    ValidationRan,
)
from bot.agent.model import CallResult, Message, Model, Text, ToolCall, ToolSpec
from bot.agent.prompts import fence
from bot.agent.tools import ToolResult
from bot.config import Limits
from bot.sanitize import reveal
from bot.validation import ValidationResult


class Tools(Protocol):
    specs: list[ToolSpec]

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolResult: ...


class Validation(Protocol):
    def run(self) -> ValidationResult: ...


class AgentLoop:
    def __init__(self, *, model: Model, tools: Tools, validation: Validation, limits: Limits,
                 budget: Budget, emit: Sink, system: str, shield: Callable[[str], str] = str) -> None:
        """`shield` is applied to everything the environment says to the model (tool results, test
        output): the session passes its redactor, so a secret the agent reads never reaches the model."""
        self.model, self.tools, self.validation = model, tools, validation
        self.limits, self.budget, self.emit, self.system = limits, budget, emit, system
        self.shield = shield
        self.messages: list[Message] = []

    def run(self, task_prompt: str) -> Ending:
        self.messages = [Message("user", [Text(task_prompt)])]
        for n in range(1, self.limits.iterations + 1):
            self.emit(IterationStarted(n=n))
            spent_before = self.budget.usage
            turns, stopped = self._work(n)
            usage = self.budget.usage - spent_before
            if stopped:
                self.emit(IterationEnded(n=n, turns=turns, usage=usage, passed=False, feedback=None))
                return Ending.not_validated(stopped)
            result = self.validation.run()
            self.emit(ValidationRan(iteration=n, result=result))
            if result.passed:
                self.emit(IterationEnded(n=n, turns=turns, usage=usage, passed=True, feedback=None))
                return Ending.validated()
            feedback = self.shield(result.feedback())
            self.emit(IterationEnded(n=n, turns=turns, usage=usage, passed=False, feedback=feedback))
            if turns == self.limits.turns:
                self._say(f"(You used all {turns} turns of this iteration.)")
            self._say(f"{fence(feedback, source='validation output')}\n\n"
                      "Fix the code so that validation passes, then end your turn.")
        detail = f"iteration limit reached: {self.limits.iterations} iteration(s) without passing validation"
        self.emit(LimitReached(limit="iterations", detail=detail))
        return Ending.not_validated(detail)

    def _work(self, n: int) -> tuple[int, str | None]:
        """Model turns until the model ends its turn; returns (turns, reason if a limit stopped it)."""
        for turn in range(1, self.limits.turns + 1):
            if limit := self.budget.exhausted():
                self.emit(LimitReached(limit=limit[0], detail=limit[1]))
                return turn - 1, limit[1]
            started = time.monotonic()
            reply = self.model.complete(system=self.system, tools=self.tools.specs, messages=self.messages)
            self.budget.charge(reply.usage)
            self.messages.append(Message("assistant", reply.content))
            calls = [block for block in reply.content if isinstance(block, ToolCall)]
            said = "\n".join(block.text for block in reply.content if isinstance(block, Text))
            self.emit(ModelCalled(iteration=n, turn=turn, stop_reason=reply.stop_reason, usage=reply.usage,
                                  duration_s=round(time.monotonic() - started, 3), text=said, tool_calls=len(calls),
                                  session_cost_usd=self.budget.cost_usd))
            if reply.stop_reason == "refusal":
                return turn, "the model declined the task"
            if not calls:
                if reply.stop_reason != "max_tokens":
                    return turn, None
                self._say("Your reply was cut off at the output limit. Continue where you stopped.")
                continue
            self.messages.append(Message("user", [self._call(n, turn, call) for call in calls]))
        return self.limits.turns, None

    def _call(self, n: int, turn: int, call: ToolCall) -> CallResult:
        started = time.monotonic()
        result = self.tools.run(call.name, call.input)
        result = ToolResult(self.shield(reveal(result.content)), result.is_error)
        self.emit(ToolCalled(iteration=n, turn=turn, call_id=call.id, name=call.name, input=call.input,
                             result=result.content, is_error=result.is_error,
                             duration_s=round(time.monotonic() - started, 3)))
        return CallResult(call.id, result.content, result.is_error)

    def _say(self, text: str) -> None:
        """Add text to the conversation as the user, joining a pending user turn (tool results)."""
        last = self.messages[-1]
        if last.role == "user":
            self.messages[-1] = Message("user", [*last.content, Text(text)])
        else:
            self.messages.append(Message("user", [Text(text)]))
