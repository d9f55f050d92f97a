"""The audit trail: `trajectory.jsonl` written as things happen, and `report.json` at the end.

Both pass through the session's redactor, so no secret reaches the disk. `report.json` follows
`bot/schemas/report.schema.json`, generated from `Report` (`fixloop schema report` prints it).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot._process import cap_text
from bot.agent.events import (
    Event,
    GuidanceRead,
    IterationEnded,
    IterationStarted,
    LimitReached,
    ModelCalled,
    SessionEnded,
    SessionStarted,
    Status,
    ToolCalled,
    ValidationRan,
)
from bot.agent.guidance import GuidanceFile
from bot.agent.usage import Usage
from bot.errors import EXIT_CODES, EXIT_USAGE
from bot.secrets import Redactor
from bot.validation import CommandOutcome, ValidationResult

RESULT_LIMIT = 4_000  # characters of a tool result kept in the trajectory
# 2: started_at and finished_at are ISO 8601 (UTC) strings; 3: provider, cost_usd null when unknown, guidance
REPORT_SCHEMA_VERSION = 3


class TrajectoryWriter:
    """Appends one JSON object per event to trajectory.jsonl, flushed at once."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self.redactor = redactor
        path.parent.mkdir(parents=True, exist_ok=True)
        # A lone surrogate from a model (half a character) must not end the session: it is written escaped.
        self._handle = path.open("a", encoding="utf-8", errors="backslashreplace")
        self.bytes_written = 0

    def __call__(self, event: Event) -> None:
        record = event.record()
        if isinstance(event, ToolCalled):
            record["result"] = cap_text(record["result"], RESULT_LIMIT)
        line = json.dumps({"ts": round(time.time(), 3), **self.redactor.data(record)}, ensure_ascii=False) + "\n"
        self._handle.write(line)
        self._handle.flush()
        self.bytes_written += len(line.encode(errors="backslashreplace"))

    def close(self) -> None:
        self._handle.close()


class ValidationSummary(BaseModel):
    passed: bool
    failed_tests: list[str]
    failed_files: list[str] = []  # the files holding the failing tests, where the results name them
    commands: list[CommandOutcome]

    @classmethod
    def of(cls, result: ValidationResult) -> ValidationSummary:
        files = dict.fromkeys(t.file for t in result.failed_tests if t.file)
        return cls(passed=result.passed, failed_tests=[t.id for t in result.failed_tests], failed_files=list(files),
                   commands=result.commands)


class IterationReport(BaseModel):
    n: int
    turns: int = 0
    tool_calls: int = 0
    validation: ValidationSummary | None = None
    usage: Usage = Usage()
    feedback: str | None = None


class Report(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    session_id: str
    status: Status
    reason: str
    task: str
    model: str
    provider: str = "anthropic"
    repo: str
    base_commit: str
    started_at: datetime  # ISO 8601 in report.json, UTC
    finished_at: datetime
    baseline: ValidationSummary | None = None
    iterations: list[IterationReport]
    usage: Usage
    cost_usd: float | None  # estimated from list prices (or the config's `pricing`); null: the price is unknown
    branch: str | None = None
    commit: str | None = None
    diff_stat: str = ""
    changed_files: list[str] = []
    summary: str = ""  # the model's last account of what it changed and why
    confinement: str = ""  # how code the agent touched ran (bot.sandbox.Confinement.description)
    confined: bool = False  # the agent's shell, validation, reruns and search programs ran in the sandbox
    guidance: list[GuidanceFile] = []  # the repository's instruction files: given to the model, or skipped and why
    patch: str | None = None  # path of the saved patch when the work was not committed
    wip_commit: str | None = None  # the partial work of a session that did not validate, as a commit (no branch)
    limit: str | None = None  # the limit that stopped the session (iterations, turns, tokens, cost_usd, wall_time)
    user_error: bool = False  # an error that is the user's to fix (a command that cannot run): exit 2
    trajectory: str

    @property
    def exit_code(self) -> int:
        """The exit code of `fixloop run`, `demo` and `action` for this session."""
        return EXIT_USAGE if self.user_error else EXIT_CODES[self.status]


class ReportBuilder:
    """Builds the report's body from the event stream."""

    def __init__(self) -> None:
        self.started: SessionStarted | None = None
        self.started_at = datetime.now(UTC)
        self.baseline: ValidationSummary | None = None
        self.iterations: list[IterationReport] = []
        self.ended: SessionEnded | None = None
        self.summary = ""
        self.guidance: list[GuidanceFile] = []
        self.limit: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self.started = event
        elif isinstance(event, IterationStarted):
            self.iterations.append(IterationReport(n=event.n))
        elif isinstance(event, ModelCalled):
            if event.text.strip():
                self.summary = event.text.strip()
        elif isinstance(event, ToolCalled):
            self.iterations[-1].tool_calls += 1
        elif isinstance(event, ValidationRan):
            summary = ValidationSummary.of(event.result)
            if event.iteration == 0:
                self.baseline = summary
            else:
                self.iterations[-1].validation = summary
        elif isinstance(event, IterationEnded):
            current = self.iterations[-1]
            current.turns, current.usage, current.feedback = event.turns, event.usage, event.feedback
        elif isinstance(event, GuidanceRead):
            self.guidance = event.files
        elif isinstance(event, LimitReached):
            self.limit = event.limit
        elif isinstance(event, SessionEnded):
            self.ended = event

    def build(self, **outcome: Any) -> Report:
        assert self.started is not None and self.ended is not None, "a report needs a started and ended session"
        return Report(
            session_id=self.started.session_id,
            status=self.ended.status,
            reason=self.ended.reason,
            task=self.started.task,
            model=self.started.model,
            provider=self.started.provider,
            repo=self.started.repo,
            base_commit=self.started.base_commit,
            confinement=self.started.confinement,
            confined=self.started.confined,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            baseline=self.baseline,
            iterations=self.iterations,
            usage=self.ended.usage,
            cost_usd=self.ended.cost_usd,
            user_error=self.ended.user_error,
            guidance=self.guidance,
            limit=self.limit,
            **outcome,
        )


def write_report(report: Report, path: Path, redactor: Redactor) -> None:
    data = redactor.data(report.model_dump(mode="json"))
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8", errors="backslashreplace")


def report_schema() -> dict[str, Any]:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fixloop session report (report.json)"
    return schema
