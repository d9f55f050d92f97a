"""Validating a deflake fix: the usual commands, no papering over, then repeated runs.

A fix for a flaky test must remove the cause. Unless the config allows quarantine, a change that
adds retries, sleeps or skip markers (per language: `t.Skip` and `time.Sleep` in Go, `jest.retryTimes`
and `it.skip` in JavaScript, `@Disabled` and `@Flaky` on the JVM, `#[ignore]` in Rust, rerun settings
in any build file) is refused with a message the model can act on. A change
that passes the validation commands is then run repeatedly, in random orders with its neighbours
and always in the polluter → victim order for an order-dependent test, until the number of
consecutive passes gives the configured confidence (29 passes: 95% confidence that the failure
rate is below 10%).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.config import Deflake
from bot.sandbox import Confinement
from bot.triage import confirm_fixed
from bot.validation import CommandOutcome, ValidationResult, Validator
from bot.workspace import Worktree

# Added lines that hide a flaky test instead of fixing it, per language (by the file's suffix): skips,
# retries and sleeps. Build and test-runner settings that rerun failures count in any file.
_PYTHON = (r"pytest\.mark\.(?:flaky|skip|skipif|xfail)|pytest\.(?:skip|xfail)\(|@flaky\b|unittest\.skip|"
           r"\.skipTest\(|@retry\b|\btenacity\b|\bbackoff\.on_exception|time\.sleep\(|asyncio\.sleep\(")
_GO = r"\.Skip(?:f|Now)?\(|\btime\.Sleep\(|<-\s*time\.After\(|\bretry\.\w+\("
_JAVASCRIPT = (r"jest\.retryTimes|this\.retries\(|\bretry\s*:|\b(?:it|test|describe)\.(?:skip|skipIf|todo|fixme)\b|"
               r"\bx(?:it|test|describe)\(|setTimeout\(\s*\w+\s*,|\bsleep\(|\bwaitForTimeout\(")
_JVM = (r"@(?:Disabled|Ignore|Flaky|RetryingTest|RepeatedIfExceptionsTest|Retry)\b|Thread\.sleep\(|"
        r"TimeUnit\.\w+\.sleep\(|assumeTrue\(false")
_RUST = r"#\[ignore\b|thread::sleep\(|time::sleep\("
_RUBY = r"\bsleep\b|\bskip\b|\bpending\b|\bretry\b|\bxit\b"
_SETTINGS = (r"--reruns\b|\breruns\s*=|rerunFailingTestsCount|\bmaxRetries\b|\bretryTimes\b|--retries\b|"
             r"\bflaky\s*=|\bretries\s*[:=]\s*[1-9]")
PAPERING: dict[tuple[str, ...], re.Pattern[str]] = {
    (".py",): re.compile(f"{_PYTHON}|{_SETTINGS}"),
    (".go",): re.compile(f"{_GO}|{_SETTINGS}"),
    (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"): re.compile(f"{_JAVASCRIPT}|{_SETTINGS}"),
    (".java", ".kt", ".kts", ".scala", ".groovy", ".gradle"): re.compile(f"{_JVM}|{_SETTINGS}"),
    (".rs",): re.compile(f"{_RUST}|{_SETTINGS}"),
    (".rb",): re.compile(f"{_RUBY}|{_SETTINGS}"),
}
_ANY_FILE = re.compile(_SETTINGS)


def _papering(path: str) -> re.Pattern[str]:
    return next((pattern for suffixes, pattern in PAPERING.items() if path.endswith(suffixes)), _ANY_FILE)


def papering_over(patch: str) -> list[str]:
    """`file:line: text` for each added line of a unified diff that retries, sleeps or skips."""
    found, path, line = [], "", 0
    pattern = _ANY_FILE
    for text in patch.splitlines():
        if text.startswith("+++ "):
            path = text[6:] if text.startswith("+++ b/") else text[4:]
            pattern = _papering(path)
        elif text.startswith("@@"):
            match = re.search(r"\+(\d+)", text)
            line = int(match.group(1)) - 1 if match else 0
        elif text.startswith("+"):
            line += 1
            if pattern.search(text):
                found.append(f"{path}:{line}: {text[1:].strip()}")
        elif not text.startswith("-"):
            line += 1
    return found


@dataclass(frozen=True)
class DeflakeTarget:
    test: str
    polluter: str | None = None
    neighbours: Sequence[str] = ()


class DeflakeValidation:
    """Validation as the loop sees it for a deflake session."""

    def __init__(self, inner: Validator, worktree: Worktree, target: DeflakeTarget, settings: Deflake,
                 env: Mapping[str, str], timeout: float, confinement: Confinement | None = None) -> None:
        self.inner, self.worktree, self.target, self.settings = inner, worktree, target, settings
        self.env, self.timeout, self.confinement = dict(env), timeout, confinement

    def run(self) -> ValidationResult:
        result = self.inner.run()
        if not result.passed:
            return result
        if not self.settings.quarantine and (hidden := papering_over(self.worktree.snapshot().patch)):
            check = CommandOutcome(
                command="fixloop deflake policy: no retries, sleeps or skip markers", passed=False, exit_code=1,
                timed_out=False, duration_s=0.0,
                excerpt="A flaky test must be fixed at its cause. These added lines hide it instead "
                        "(quarantine is not allowed by .github/fixloop.yml):\n" + "\n".join(hidden[:20]))
            return ValidationResult(passed=False, commands=[*result.commands, check])
        started = time.monotonic()
        repeat = confirm_fixed(self.worktree.root, self.target.test, confidence=self.settings.confidence,
                               max_failure_rate=self.settings.max_failure_rate, polluter=self.target.polluter,
                               neighbours=self.target.neighbours, env=self.env, timeout=self.timeout,
                               confinement=self.confinement, framework=self.inner.framework)
        excerpt = repeat.statement if repeat.passed else f"{repeat.statement}\n{repeat.first_failure or ''}".strip()
        check = CommandOutcome(command=f"fixloop repeat {self.target.test} ({repeat.runs} runs in random orders)",
                               passed=repeat.passed, exit_code=0 if repeat.passed else 1, timed_out=False,
                               duration_s=round(time.monotonic() - started, 3), excerpt=excerpt)
        return ValidationResult(passed=repeat.passed, commands=[*result.commands, check])


__all__ = ["DeflakeTarget", "DeflakeValidation", "papering_over"]
