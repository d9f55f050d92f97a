"""An attempt in a few lines, from its trajectory: what was tried and what validation said. The same
account goes into the WIP commit's message (where `/fixloop retry --continue` reads it back for the
next session's first prompt) and into fixloop's escalation comment or tracking issue."""

from __future__ import annotations

from collections.abc import Sequence

from bot._process import cap_text
from bot.trajectory import IterationReport, Report, ValidationSummary

_TESTS_SHOWN = 5
_SUMMARY_LIMIT = 1_500
_FEEDBACK_LIMIT = 2_000


def summarize(iterations: Sequence[IterationReport], *, reason: str, summary: str, changed_files: Sequence[str]) -> str:
    """What the attempt tried, iteration by iteration, why it stopped and what validation said last."""
    lines = [f"Stopped: {reason.strip() or 'no reason given'}", "",
             f"What was tried ({len(iterations)} iteration(s)):"]
    for iteration in iterations:
        verdict = "no validation ran"
        if iteration.validation is not None:
            failed = iteration.validation.failed_tests
            verdict = ("validation passed" if iteration.validation.passed else
                       f"validation failed: {', '.join(failed[:_TESTS_SHOWN])}"
                       + (f" and {len(failed) - _TESTS_SHOWN} more" if len(failed) > _TESTS_SHOWN else "")
                       if failed else "validation failed (no test named)")
        lines.append(f"- iteration {iteration.n}: {iteration.turns} model turn(s), {iteration.tool_calls} tool "
                     f"call(s); {verdict}")
    if changed_files:
        lines += ["", f"Files changed: {', '.join(changed_files[:20])}"
                  + (f" and {len(changed_files) - 20} more" if len(changed_files) > 20 else "")]
    if summary.strip():
        lines += ["", "The agent's last account:", cap_text(summary.strip(), _SUMMARY_LIMIT)]
    feedback = next((i.feedback for i in reversed(iterations) if i.feedback), None)
    if feedback:
        lines += ["", "What validation said last:", cap_text(feedback.strip(), _FEEDBACK_LIMIT)]
    return "\n".join(lines)


def last_validation(report: Report) -> ValidationSummary | None:
    """What validation said last: the last iteration's, else the baseline's."""
    validated = [i.validation for i in report.iterations if i.validation is not None]
    return validated[-1] if validated else report.baseline
