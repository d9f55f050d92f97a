"""Live progress for people: iteration, model turns, tool calls, test results, tokens and cost.

On a terminal, rich styles the lines and keeps a status line with the running totals; elsewhere
the same lines come out plain. Progress goes to stderr so `--json` output stays clean.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from bot.agent.events import (
    Event,
    IterationEnded,
    IterationStarted,
    LimitReached,
    ModelCalled,
    SessionEnded,
    SessionStarted,
    ToolCalled,
    ValidationRan,
)
from bot.agent.pricing import cost_text
from bot.agent.usage import Usage
from bot.search import TOOL_NAME as SEARCH_TOOL
from bot.secrets import Redactor
from bot.validation import ValidationResult

_ENDING_STYLE = {"validated": "bold green", "not_validated": "bold yellow", "cancelled": "bold magenta",
                 "error": "bold red"}


def describe_tool_call(name: str, tool_input: dict[str, object]) -> str:
    if name == "bash":
        command = str(tool_input.get("command") or "").strip()
        return f"$ {command.splitlines()[0][:120]}" if command else "$ (restart)"
    if name == SEARCH_TOOL:
        lines = str(tool_input.get("program") or "").strip().splitlines()
        return f"search program ({len(lines)} line(s)): {lines[0][:100] if lines else ''}"
    return f"{tool_input.get('command', '?')} {tool_input.get('path', '')}"


def describe_validation(result: ValidationResult) -> str:
    if result.passed:
        ran = sum(o.tests_run or 0 for o in result.commands)
        return f"passed ({ran} tests)" if ran else "passed"
    failed = result.failed_tests
    if failed:
        names = ", ".join(t.id for t in failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        return f"failed: {len(failed)} test(s): {names}"
    broken = [o.command for o in result.commands if not o.passed]
    return "failed: " + ", ".join(f"`{c}`" for c in broken)


class TerminalReporter:
    """`groups=True` folds each iteration into a log group (GitHub Actions `::group::`)."""

    def __init__(self, redactor: Redactor, console: Console | None = None, *, groups: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.redactor = redactor
        self.groups = groups
        self.in_group = False
        self.usage = Usage()
        self.cost_usd: float | None = 0.0
        self.iteration = 0
        self.status: Status | None = None

    def _line(self, text: str, style: str = "") -> None:
        clean = escape(self.redactor.text(text))
        self.console.print(f"[{style}]{clean}[/]" if style else clean)

    def _group(self, title: str | None) -> None:
        """Close the open log group and, with a title, open the next one."""
        if not self.groups:
            return
        if self.in_group:
            self.console.print("::endgroup::", markup=False, highlight=False)
        if title is not None:
            self.console.print(f"::group::{self.redactor.text(title)}", markup=False, highlight=False)
        self.in_group = title is not None

    def _totals(self) -> str:
        return f"iteration {self.iteration} · {self.usage.total:,} tokens · {cost_text(self.cost_usd, digits=3)}"

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self._line(f"fixloop session {event.session_id} · model {event.model} · {event.repo} @ "
                       f"{event.base_commit[:10]}", "bold")
            self._line("  code the agent touches (its shell, validation, reruns, search) confined by: "
                       f"{event.confinement}", "" if event.confined else "yellow")
            if self.console.is_terminal:
                self.status = self.console.status(self._totals())
                self.status.start()
        elif isinstance(event, ValidationRan):
            label = "baseline" if event.iteration == 0 else "validation"
            self._line(f"  {label}: {describe_validation(event.result)}", "green" if event.result.passed else "red")
        elif isinstance(event, IterationStarted):
            self.iteration = event.n
            self._group(f"fixloop iteration {event.n}")
            self._line(f"iteration {event.n}", "bold cyan")
        elif isinstance(event, ModelCalled):
            self.usage, self.cost_usd = self.usage + event.usage, event.session_cost_usd
            self._line(f"  turn {event.turn}: {event.tool_calls} tool call(s), {event.usage.total:,} tokens, "
                       f"{event.duration_s:.1f} s", "dim")
        elif isinstance(event, ToolCalled):
            mark = "✗" if event.is_error else "·"
            self._line(f"    {mark} {describe_tool_call(event.name, event.input)}", "yellow" if event.is_error else "")
        elif isinstance(event, IterationEnded):
            self._line(f"  iteration {event.n} done: {event.turns} turn(s), {event.usage.total:,} tokens", "dim")
        elif isinstance(event, LimitReached):
            self._line(f"  limit: {event.detail}", "yellow")
        elif isinstance(event, SessionEnded):
            self._group(None)
            if self.status is not None:
                self.status.stop()
            self._line(f"{event.status}: {event.reason} · {event.usage.total:,} tokens · "
                       f"{cost_text(event.cost_usd, digits=3)}",
                       _ENDING_STYLE[event.status])
        if self.status is not None and not isinstance(event, SessionEnded):
            self.status.update(self._totals())

