"""Running the repository's validation commands and summarising failures for the model.

Each command goes through the adapter of its test framework (bot/frameworks: the one the command
runs, else the one the config names, else the one the repository's files show, else pytest), which
asks it for structured results, so failures come back as test ids with file:line and message
instead of a wall of output. Any command that may run pytest (directly, through `python -m`, make
or tox) is asked through `PYTEST_ADDOPTS` for a JUnit XML report. When a command failed tests last
time, its previously failing tests run first (pytest's `--last-failed`, or the framework's command
for chosen tests: `go test -run`, `cargo test -- --exact`, `python -m unittest`, or the config's
`tests.run`); only if they pass does the full command run.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from itertools import count
from pathlib import Path
from xml.etree.ElementTree import ParseError

from pydantic import BaseModel

from bot._process import cap_text, run_shell
from bot.config import Tests
from bot.frameworks import FailedTest, Framework, Results, Run, choose, detect
from bot.frameworks.pytest import Pytest, parse_junit
from bot.sandbox import Confinement

FEEDBACK_LIMIT = 12_000  # characters of validation feedback sent to the model per iteration
_EXCERPT_LIMIT = 4_000
_DETAILED_TESTS = 8
_ERRORISH = re.compile(r"error|fail|exception|traceback|fatal|panic|assert", re.IGNORECASE)


class CommandOutcome(BaseModel):
    command: str
    passed: bool
    exit_code: int | None
    timed_out: bool
    duration_s: float
    tests_run: int | None = None  # known when the command produced a JUnit report
    failed_tests: list[FailedTest] = []
    excerpt: str = ""  # the relevant part of the output, for commands without a test report
    focused: bool = False  # only the previously failing tests were run


class ValidationResult(BaseModel):
    passed: bool
    commands: list[CommandOutcome]

    @property
    def failed_tests(self) -> list[FailedTest]:
        return [test for outcome in self.commands for test in outcome.failed_tests]

    def feedback(self) -> str:
        """A concise account of what failed, meant as the model's next instruction."""
        failing = [o for o in self.commands if not o.passed]
        if not failing:
            return "Validation passed."
        parts = [f"Validation failed: {len(failing)} of {len(self.commands)} command(s) did not pass."]
        for outcome in failing:
            parts.append(_describe(outcome))
        return cap_text("\n\n".join(parts), FEEDBACK_LIMIT)


def _describe(outcome: CommandOutcome) -> str:
    if outcome.timed_out:
        status = f"killed after {outcome.duration_s:.0f} s (timeout)"
    else:
        status = f"exit code {outcome.exit_code} after {outcome.duration_s:.1f} s"
    lines = [f"$ {outcome.command}\n{status}"]
    if outcome.focused:
        lines.append("(only the tests that failed last time were run; they still fail)")
    if outcome.failed_tests:
        total = f" of {outcome.tests_run}" if outcome.tests_run else ""
        lines.append(f"{len(outcome.failed_tests)} test(s){total} failed:")
        for test in outcome.failed_tests[:_DETAILED_TESTS]:
            where = f" ({test.file}:{test.line})" if test.file and test.line else ""
            lines.append(f"FAILED {test.id}{where}")
            if test.message:
                lines.append(f"  {test.message}")
            if test.details:
                lines.append(_indent(test.details))
        rest = outcome.failed_tests[_DETAILED_TESTS:]
        if rest:
            lines.append("Also failed: " + ", ".join(t.id for t in rest))
    elif outcome.excerpt:
        lines.append(outcome.excerpt)
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def relevant_excerpt(output: str, limit: int = _EXCERPT_LIMIT) -> str:
    """The part of a command's output that explains a failure: error lines and the tail."""
    if len(output) <= limit:
        return output.strip()
    lines = output.splitlines()
    tail: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) > limit // 2:
            break
        tail.insert(0, line)
        size += len(line) + 1
    head_lines = lines[: len(lines) - len(tail)]
    picked: list[str] = []
    size = 0
    for number, line in enumerate(head_lines):
        if _ERRORISH.search(line) and size + len(line) < limit // 2:
            picked.append(f"{number + 1}: {line}")
            size += len(line) + 8
    head = "Error-looking lines earlier in the output:\n" + "\n".join(picked) + "\n" if picked else ""
    return f"{head}[... last {len(tail)} lines of {len(lines)} ...]\n" + "\n".join(tail)


class Validator:
    """Runs the validation commands in the worktree and remembers what failed for next time."""

    def __init__(
        self, commands: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float, scratch: Path,
        confinement: Confinement | None = None, tests: Tests | None = None,
    ) -> None:
        """`confinement`: the session's (the commands run code the agent wrote); `scratch` must then be
        one of its folders, since the commands write their test reports there. `tests`: the config's
        say on the test framework."""
        self.commands = commands
        tests = tests or Tests()
        self.frameworks = {command: choose(command, cwd, tests.framework, tests.run) for command in commands}
        # The framework of the tests as a whole (deflake validation reruns one of them through it).
        self.framework = detect(commands, cwd, tests.framework, tests.run) or choose("", cwd)
        self.confinement = confinement
        self.cwd = cwd
        self.env = dict(env)
        self.timeout = timeout
        self.scratch = scratch
        self._serial = count(1)
        self._failed_last_time: dict[str, list[str]] = {}  # command → the ids of its tests that failed

    def run(self) -> ValidationResult:
        outcomes = []
        for command in self.commands:
            outcome = None
            if (focus := self._focus(command)) is not None:
                focused = self._run(command, focus=focus)
                # Kept when the failing tests ran and still fail (a focused command of another framework
                # than pytest also has to name them: it may not run as the command does, from another folder).
                if focused.tests_run and not focused.passed and (
                        focused.failed_tests or isinstance(self.frameworks[command], Pytest)):
                    outcome = focused
            outcome = outcome or self._run(command)
            if outcome.failed_tests:
                self._failed_last_time[command] = [test.id for test in outcome.failed_tests]
            else:
                self._failed_last_time.pop(command, None)
            outcomes.append(outcome)
        return ValidationResult(passed=all(o.passed for o in outcomes), commands=outcomes)

    def _focus(self, command: str) -> str | None:
        """The command running only the tests `command` failed last time (pytest: itself, with
        `--last-failed`), if it failed tests then and its framework can run chosen tests."""
        if command not in self._failed_last_time:
            return None
        return self.frameworks[command].focus(command, self._failed_last_time[command])

    def _run(self, command: str, *, focus: str | None = None) -> CommandOutcome:
        """`command`, or with `focus` that command running the tests it failed last time."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        framework = self.frameworks[command]
        run = Run(report=self.scratch / f"junit-{next(self._serial)}.xml", root=self.cwd, started=time.time())
        prepared, env = framework.prepare(focus or command, self.env, run)
        if focus is not None and isinstance(framework, Pytest):
            env = Pytest.last_failed(env)
        shell = self.confinement.run if self.confinement is not None else run_shell
        result = shell(prepared, cwd=self.cwd, env=env, timeout=self.timeout, output_limit=200_000)
        passed = result.exit_code == 0 and not result.timed_out
        found = _results(framework, run, result.output)
        failed = found.failed if found is not None else []
        return CommandOutcome(
            command=command,
            passed=passed,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            duration_s=round(result.duration_s, 3),
            tests_run=found.tests_run if found is not None else None,
            failed_tests=[] if passed else failed,
            excerpt="" if passed or failed else relevant_excerpt(framework.transcript(result.output)),
            focused=focus is not None,
        )


def _results(framework: Framework, run: Run, output: str) -> Results | None:
    """What the run's report says; a report the run left unreadable (killed while writing it, or
    written by the agent's code) reads as no report."""
    with contextlib.suppress(ParseError, ValueError):
        return framework.results(run, output)
    return None


__all__ = ["FEEDBACK_LIMIT", "CommandOutcome", "FailedTest", "ValidationResult", "Validator", "parse_junit",
           "relevant_excerpt"]
