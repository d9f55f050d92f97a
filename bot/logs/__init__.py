"""Failure evidence from CI logs: the lines that explain a red build, within a token budget.

    evidence = extract_evidence(Path("job.log"), pass_log=Path("last-green.log"), budget=4000)
    evidence.text     # numbered lines and `[... N lines omitted ...]` markers, <= budget tokens
    evidence.lines    # [(first, last), ...] 1-based inclusive ranges of the failed log
    failing_tests(log_text)  # ["tests/test_x.py::test_y", "TestFoo/bar", ...]

The log is streamed in blocks, so its size does not matter (memory stays bounded); token counts
are `bot.tokens.estimate_tokens`, the one estimate fixloop uses everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.logs._failing import failing_tests
from bot.logs._scan import mark_noise, scan_log
from bot.logs._select import choose
from bot.tokens import estimate_tokens

__all__ = ["DEFAULT_BUDGET", "Evidence", "extract_evidence", "failing_tests"]

DEFAULT_BUDGET = 4000


@dataclass(frozen=True)
class Evidence:
    """An excerpt of a failed log, exactly as the model sees it."""

    lines: list[tuple[int, int]]  # 1-based inclusive ranges of the failed log, in order, merged when adjacent
    tokens: int  # estimate_tokens(text)
    text: str  # `N: line` for kept lines, `[... K lines omitted ...]` for each gap
    total_lines: int


def extract_evidence(
    fail_log: Path | str | bytes,
    pass_log: Path | str | bytes | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
) -> Evidence:
    """The lines of `fail_log` that explain the failure, in at most `budget` tokens.

    A `Path` is a file, a `str` the log's content, `bytes` its raw bytes (decoded as UTF-8 with
    replacement). A log that fits the budget is returned whole; otherwise the evidence comes
    first and what it leaves of the budget is filled with the best remaining context. With
    `pass_log` (a passing run of the same job, diffed CiDiff-style), lines that also occur there,
    up to timestamps, durations, ids, temporary paths, sizes and counts, count as noise, and the
    lines only the failed log has are preferred. The final error summary (a test runner's result
    line, the last `##[error]`, the exit code) is always kept, cut short if it alone exceeds the
    budget (under about 20 tokens there may be room for nothing but an omission marker, or
    nothing at all).
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1 token, not {budget}")
    scan = scan_log(fail_log, keep_bytes=budget * 8)  # twice the excerpt: enough end to fill it with
    if pass_log is not None:
        mark_noise(scan, pass_log)
    layout = choose(scan, budget)
    text = layout.render()
    return Evidence(lines=layout.ranges(), tokens=estimate_tokens(text), text=text, total_lines=scan.total_lines)
