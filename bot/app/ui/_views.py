"""What the pages show, computed from the store's records (pure functions; the templates only lay out).

A session's events come from its runner: they are read back with the App's models of them
(`bot.app.run_events.READERS`, which checked them when they arrived).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from markupsafe import Markup
from pydantic import ValidationError

from bot.app.run_events import (
    READERS,
    Changes,
    IterationBegun,
    IterationDone,
    LimitHit,
    ModelTurn,
    Started,
    ToolUse,
    Validated,
)
from bot.app.store import ListedSession, SessionEvent, SessionRecord
from bot.search import TOOL_NAME as SEARCH_TOOL
from bot.validation import ValidationResult

ACTIVE = ("dispatching", "dispatched", "in_progress")


@dataclass
class Iteration:
    n: int
    diff_stat: str = ""
    diff: str = ""
    validation: ValidationResult | None = None
    tokens: int = 0
    turns: int = 0


@dataclass
class Step:
    """One line of the timeline."""

    iteration: int
    kind: str  # model, tool, search, validation, limit
    title: str
    body: str = ""
    result: str = ""
    failed: bool = False


@dataclass
class SessionPage:
    record: SessionRecord
    iterations: list[Iteration] = field(default_factory=list)
    timeline: list[Step] = field(default_factory=list)
    model: str = ""

    @property
    def live(self) -> bool:
        return self.record.status in ACTIVE

    @property
    def outcome(self) -> str:
        return outcome(self.record)


def outcome(record: SessionRecord | ListedSession) -> str:
    """fixloop's ending when the runner told it, else what the workflow run concluded, else where it is."""
    return record.ending or (f"run {record.conclusion}" if record.conclusion else record.status)


def session_page(record: SessionRecord, events: list[SessionEvent]) -> SessionPage:
    page = SessionPage(record)
    iterations: dict[int, Iteration] = {}

    def iteration(n: int) -> Iteration:
        return iterations.setdefault(n, Iteration(n))

    for event in events:
        reader = READERS.get(event.type)
        try:
            read = reader.model_validate(event.data) if reader else None
        except ValidationError:  # checked on arrival: only an event of an older App's schema
            continue
        if isinstance(read, Started):
            page.model = read.model
        elif isinstance(read, IterationBegun):
            iteration(read.n)
        elif isinstance(read, ModelTurn) and read.text.strip():
            page.timeline.append(Step(read.iteration, "model", f"model, turn {read.turn}", read.text.strip()))
        elif isinstance(read, ToolUse):
            if read.name == SEARCH_TOOL:
                page.timeline.append(Step(read.iteration, "search", "search program",
                                          str(read.input.get("program", "")), read.result, read.is_error))
            else:
                page.timeline.append(Step(read.iteration, "tool", read.name, _inputs(read.input), read.result,
                                          read.is_error))
        elif isinstance(read, Changes):
            iteration(read.iteration).diff_stat, iteration(read.iteration).diff = read.diff_stat, read.diff
        elif isinstance(read, Validated) and read.iteration > 0:  # 0: the baseline, before the agent
            iteration(read.iteration).validation = read.result
            page.timeline.append(Step(read.iteration, "validation", "validation",
                                      "passed" if read.result.passed else
                                      f"failed: {len(read.result.failed_tests)} test(s)",
                                      failed=not read.result.passed))
        elif isinstance(read, IterationDone):
            iteration(read.n).tokens, iteration(read.n).turns = sum(read.usage.values()), read.turns
        elif isinstance(read, LimitHit):
            page.timeline.append(Step(max(iterations, default=0), "limit", f"limit reached: {read.limit}",
                                      read.detail, failed=True))
    page.iterations = [iterations[n] for n in sorted(iterations)]
    return page


def _inputs(values: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in values.items())


# -- numbers in words ------------------------------------------------------------------------------

def when(seconds: float | None) -> str:
    return "" if seconds is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def rows(records: list[ListedSession]) -> list[Markup]:
    """The lines of the sessions list, as HTML: built here rather than in the template because a list may hold
    10,000 of them (the template engine's escaping of each of their cells costs ten times more). Every text is
    escaped; ids and numbers are the App's own."""
    return [Markup(
        f'<tr><td><a href="/ui/sessions/{escape(r.id)}">{escape(r.id)}</a></td><td>{escape(r.repository)}</td>'
        f'<td>{escape(r.kind)}</td><td>{escape(r.title or r.target)}</td>'
        f'<td class="state state-{escape(said.replace(" ", "-"))}">{escape(said)}</td>'
        f'<td>{escape(r.requester or "")}</td><td class="number">{dollars(r.cost_usd)}</td>'
        f'<td class="number">{duration(r)}</td><td>{when(r.created)}</td></tr>')
        for r in records for said in (outcome(r),)]


def duration(record: SessionRecord | ListedSession) -> str:
    end = record.ended or (record.updated if record.status not in ACTIVE else None)
    if end is None:
        return ""
    seconds = max(0, int(end - record.created))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def dollars(value: float | None) -> str:
    return "" if value is None else f"${value:,.2f}" if value >= 0.995 else f"${value:.4f}"


# -- the cost chart --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # for screen readers and the tooltip: repository, week, cost


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    weeks: list[tuple[float, str]]  # x of the label, the week
    ticks: list[tuple[float, str]]  # y of the line, the amount
    legend: list[tuple[str, str]]  # colour, repository
    rows: list[tuple[str, str, str]]  # the same as a table: week, repository, cost


PALETTE = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666")


def cost_chart(costs: list[tuple[str, int, float]], width: int = 720, height: int = 280) -> Chart:
    """Stacked bars: one per week, a segment per repository (the 7 costliest each get a colour, the rest
    share one), as SVG geometry."""
    weeks = sorted({week for _, week, _ in costs})
    totals: dict[str, float] = {}
    for repository, _, cost in costs:
        totals[repository] = totals.get(repository, 0.0) + cost
    named = sorted(totals, key=lambda r: -totals[r])[: len(PALETTE) - 1]
    colour = {repository: PALETTE[i] for i, repository in enumerate(named)}
    stacks: dict[int, dict[str, float]] = {week: {} for week in weeks}
    for repository, week, cost in costs:
        key = repository if repository in colour else "others"
        stacks[week][key] = stacks[week].get(key, 0.0) + cost
    top = max((sum(stack.values()) for stack in stacks.values()), default=0.0)
    scale_top = _nice(top)
    left, bottom, plot_height = 64.0, 24.0, height - 40.0
    slot = (width - left - 8) / max(1, len(weeks))
    bars, labels = [], []
    for index, week in enumerate(weeks):
        x = left + index * slot + slot * 0.15
        y = height - bottom
        label_week = datetime.fromtimestamp(week, UTC).strftime("%Y-%m-%d")
        for key, cost in sorted(stacks[week].items(), key=lambda item: item[0] == "others"):
            bar_height = plot_height * cost / scale_top if scale_top else 0.0
            y -= bar_height
            bars.append(Bar(x, y, slot * 0.7, bar_height, colour.get(key, PALETTE[-1]),
                            f"{key}, week of {label_week}: {dollars(cost)}"))
        labels.append((x + slot * 0.35, label_week))
    ticks = [(height - bottom - plot_height * step / 4, f"${scale_top * step / 4:,.2f}") for step in range(5)]
    legend = [(colour[r], r) for r in named] + ([(PALETTE[-1], "others")] if len(totals) > len(named) else [])
    rows = [(datetime.fromtimestamp(week, UTC).strftime("%Y-%m-%d"), repository, dollars(cost))
            for repository, week, cost in costs]
    return Chart(width, height, bars, labels, ticks, legend, rows)


def _nice(value: float) -> float:
    """A round number at or above `value`, for the top of the scale."""
    if value <= 0:
        return 0.0
    magnitude = 10 ** math.floor(math.log10(value))
    return float(next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value))
