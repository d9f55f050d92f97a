"""Running the repository's validation commands and summarising failures for the model.

Any command that ends up running pytest (directly, through `python -m`, make or tox) is asked
through `PYTEST_ADDOPTS` for a JUnit XML report, so failures come back as test ids with
file:line and message instead of a wall of output. When a command failed tests last time, its
previously failing tests run first (`--last-failed`); only if they pass does the full command run.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Mapping
from itertools import count
from pathlib import Path
from xml.etree.ElementTree import ParseError

from junitparser import Attr, Error, Failure, JUnitXml, TestCase, TestSuite
from pydantic import BaseModel

from bot._process import cap_text, regular_file, run_shell
from bot.sandbox import Confinement

FEEDBACK_LIMIT = 12_000  # characters of validation feedback sent to the model per iteration
_DETAILS_LIMIT = 1_500
_EXCERPT_LIMIT = 4_000
_DETAILED_TESTS = 8
_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*?\.py):(?P<line>\d+): ", re.MULTILINE)
_ERRORISH = re.compile(r"error|fail|exception|traceback|fatal|panic|assert", re.IGNORECASE)


class FailedTest(BaseModel):
    id: str
    file: str | None = None
    line: int | None = None
    message: str = ""
    details: str = ""


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


def junit_test_id(case_file: str | None, classname: str, name: str) -> str:
    """The pytest node id of a JUnit test case (`file::Class::name`), from its file and class name."""
    if case_file:
        module = case_file.removesuffix(".py").replace("/", ".")
        inner = classname[len(module) :].lstrip(".") if classname.startswith(module) else ""
        return "::".join(part for part in (case_file, *inner.split("."), name) if part)
    return f"{classname}::{name}" if classname else name


def _location(text: str) -> tuple[str | None, int | None]:
    """The last frame of a pytest traceback that lies inside the repository."""
    found = [m for m in _LOCATION.finditer(text) if not m["file"].startswith("/")]
    if not found:
        return None, None
    return found[-1]["file"], int(found[-1]["line"])


class _PytestCase(TestCase):
    """pytest's xunit1 report adds the test's file to each test case."""

    file = Attr()


def parse_junit(path: Path) -> tuple[int, list[FailedTest]]:
    """Tests run and tests failed (failures and errors) in a JUnit XML report."""
    report = JUnitXml.fromfile(str(path))
    suites: list[TestSuite] = [report] if isinstance(report, TestSuite) else list(report)
    total, failed = 0, []
    for suite in suites:
        for element in suite:
            case = _PytestCase.fromelem(element)  # type: ignore[no-untyped-call]  # junitparser is untyped here
            total += 1
            problems = [r for r in case.result if isinstance(r, (Failure, Error))]
            if not problems:
                continue
            problem = problems[0]
            text = problem.text or ""
            file, line = _location(text)
            case_file = case.file
            failed.append(
                FailedTest(
                    id=junit_test_id(case_file, case.classname or "", case.name or ""),
                    file=file or case_file,
                    line=line,
                    message=cap_text((problem.message or "").strip(), 500),
                    details=cap_text(text.strip(), _DETAILS_LIMIT),
                )
            )
    return total, failed


class Validator:
    """Runs the validation commands in the worktree and remembers what failed for next time."""

    def __init__(
        self, commands: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float, scratch: Path,
        confinement: Confinement | None = None,
    ) -> None:
        """`confinement`: the session's (the commands run code the agent wrote); `scratch` must then be
        one of its folders, since the commands write their JUnit reports there."""
        self.commands = commands
        self.confinement = confinement
        self.cwd = cwd
        self.env = dict(env)
        self.timeout = timeout
        self.scratch = scratch
        self._serial = count(1)
        self._had_test_failures: set[str] = set()

    def run(self) -> ValidationResult:
        outcomes = []
        for command in self.commands:
            outcome = None
            if command in self._had_test_failures:
                focused = self._run(command, focus=True)
                if focused.tests_run and not focused.passed:
                    outcome = focused
            outcome = outcome or self._run(command, focus=False)
            if outcome.failed_tests:
                self._had_test_failures.add(command)
            else:
                self._had_test_failures.discard(command)
            outcomes.append(outcome)
        return ValidationResult(passed=all(o.passed for o in outcomes), commands=outcomes)

    def _run(self, command: str, *, focus: bool) -> CommandOutcome:
        self.scratch.mkdir(parents=True, exist_ok=True)
        junit = self.scratch / f"junit-{next(self._serial)}.xml"
        # junit_logging=no: a repository's config may ask for the captured output in the report
        # (system-out), and a test printing hundreds of MB would then make a report of that size,
        # read whole into memory here; the report is only read for test ids and failure texts.
        addopts = [self.env.get("PYTEST_ADDOPTS", ""), f"--junitxml={shlex.quote(str(junit))}",
                   "-o junit_family=xunit1", "-o junit_logging=no"]
        if focus:
            addopts.append("--last-failed --last-failed-no-failures none")
        env = self.env | {"PYTEST_ADDOPTS": " ".join(a for a in addopts if a)}
        run = self.confinement.run if self.confinement is not None else run_shell
        result = run(command, cwd=self.cwd, env=env, timeout=self.timeout, output_limit=200_000)
        tests_run: int | None = None
        failed: list[FailedTest] = []
        if regular_file(junit):  # the commands could have put a FIFO or a link there
            # A truncated report (killed run) reads as no report.
            with contextlib.suppress(ParseError):
                tests_run, failed = parse_junit(junit)
        passed = result.exit_code == 0 and not result.timed_out
        return CommandOutcome(
            command=command,
            passed=passed,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            duration_s=round(result.duration_s, 3),
            tests_run=tests_run,
            failed_tests=[] if passed else failed,
            excerpt="" if passed or failed else relevant_excerpt(result.output),
            focused=focus,
        )
