"""What every test framework adapter offers, and what they share.

An adapter knows one framework's command lines and reports: whether a command or a repository
uses it, how to ask a command for structured results (a report file, an output format), how to
read those results back as failed tests with file:line and message, how its test ids appear in
CI logs, and how to run chosen tests again.
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from junitparser import Attr, Error, Failure, JUnitXml, TestCase, TestSuite
from pydantic import BaseModel

from bot._process import cap_text, regular_file

DETAILS_LIMIT = 1_500
MESSAGE_LIMIT = 500
_CLOCK_SLACK = 1.0  # seconds a file's time may lag the clock (coarse file system timestamps)

# How a framework orders the tests of one run: as they are listed ("given"); in its own order, which a
# subset of the tests keeps ("source": a test's file and line); or in no order fixloop can rely on.
Ordering = Literal["given", "source", "none"]


class FailedTest(BaseModel):
    id: str
    file: str | None = None
    line: int | None = None
    message: str = ""
    details: str = ""


@dataclass(frozen=True)
class Run:
    """One run of a validation command."""

    report: Path  # a fresh path, in a folder the command may write to, for a report (or files beside it)
    root: Path  # the repository
    started: float  # time.time() when the command started


@dataclass(frozen=True)
class Results:
    """A command's structured test results: `tests_run` is None when only failures are known; `ran`,
    the ids of the tests that ran in the order they ran, where the results tell."""

    tests_run: int | None
    failed: list[FailedTest] = field(default_factory=list)
    ran: tuple[str, ...] = ()


class Framework(ABC):
    """One test framework. The defaults suit a framework whose command needs no change, whose ids
    read the same in CI logs, and whose tests fixloop cannot run one by one."""

    name: str = ""

    def __init__(self, run: str | None = None) -> None:
        """`run`: the repository's command for chosen tests (config `tests.run`), `{tests}` standing
        for the test ids."""
        self.run = run

    @abstractmethod
    def recognises(self, root: Path) -> bool:
        """Whether the repository at `root` uses this framework (by its files)."""

    @abstractmethod
    def recognises_command(self, command: str) -> bool:
        """Whether the shell command `command` runs this framework's tests itself."""

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        """`command` and `env` changed so that `run` leaves structured results (at `run.report` or in
        its output)."""
        return command, dict(env)

    @abstractmethod
    def results(self, run: Run, output: str) -> Results | None:
        """The tests of the run that `prepare` set up; None when it left no results to read."""

    def transcript(self, output: str) -> str:
        """The command's output as a person reads it (the model gets an excerpt of it)."""
        return output

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """How the failure of the test `test_id` names it in the framework's own output."""
        return test_id

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        """A command running only the tests `ids` (in random order if `shuffle`), in the order `orders`
        says; None when it cannot be built. The default: the repository's `tests.run` template, never
        shuffled."""
        if self.run is None or shuffle or not ids:
            return None
        return self.run.replace("{tests}", " ".join(shlex.quote(i) for i in ids))

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        """A command that runs the tests `ids` as `command` runs them (their earlier failures first);
        None when fixloop knows of none. The default: the repository's `tests.run` only."""
        return Framework.run_tests(self, ids) if self.run is not None else None

    # Triage and deflake validation: rerunning tests one by one, in orders, under coverage.

    orders: Ordering = "none"
    lists_ran: bool = False  # its results name every test that ran (`Results.ran`), not only the failures
    nothing_ran_exit_codes: tuple[int, ...] = ()  # exit codes that mean the command ran no test at all
    shuffles: bool = False  # `run_tests(..., shuffle=True)` works: the framework has random orders of its own
    concurrent: bool = True  # runs in one checkout can overlap (no shared build folder)
    coverage_suffixes: tuple[str, ...] = ()  # the source files its coverage tool measures (none: no tool)

    def matches(self, requested: str, case: str) -> bool:
        """Whether the reported test `case` is (part of) the `requested` test, named as in CI logs or as
        fixloop names it."""
        return case == requested

    def group(self, test_id: str) -> str:
        """What a test shares with the tests that run beside it (its file, module or package)."""
        return test_id.split("::")[0]

    def suite(self) -> str | None:
        """A command running the whole suite, None when fixloop cannot tell it."""
        return None

    def list_tests(self) -> str | None:
        """A command printing the suite's test ids in the order they run (read by `listed`)."""
        return None

    def listed(self, output: str) -> list[str]:
        """The test ids in the output of `list_tests`."""
        return []

    def coverage_probe(self) -> str | None:
        """A command that fails when the coverage tool is missing (None: it comes with the framework)."""
        return None

    def under_coverage(self, ids: Sequence[str], data: Path, files: Sequence[Path]) -> str | None:
        """A command running the tests `ids` with line coverage of `files` written to `data`."""
        return None

    def covered_lines(self, data: Path, root: Path) -> dict[Path, set[int]] | None:
        """The lines executed per file (absolute, resolved) in the coverage data at `data`; None when there
        is none to read."""
        return None


def reports_since(run: Run, patterns: Sequence[str]) -> list[Path]:
    """The report files in the repository matching `patterns` written during `run`: reports that
    a build tool keeps in the repository outlive their run."""
    found = {path for pattern in patterns for path in run.root.glob(pattern)}
    return sorted(p for p in found if regular_file(p) and p.stat().st_mtime >= run.started - _CLOCK_SLACK)


def read_head(path: Path, limit: int = 1_000_000) -> str | None:
    """The start of a repository file (the agent could have made it huge), None if not a regular file."""
    if not regular_file(path):
        return None
    with path.open("rb") as handle:
        return handle.read(limit).decode("utf-8", "replace")


def shell_words(command: str) -> list[str]:
    """The words of a shell command, quotes undone (a command shlex cannot split: split on blanks)."""
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def runs(command: str, pattern: str) -> bool:
    """Whether `pattern` (a regex over the words of one simple command) appears in `command`."""
    return re.search(rf"(?:^|[\s;&|(`]){pattern}(?:$|[\s;&|)`])", command) is not None


def capped(text: str, limit: int = DETAILS_LIMIT) -> str:
    return cap_text(text.strip(), limit)


def relative_to(path: str, root: Path) -> str:
    """`path` relative to the repository when it lies inside it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path
    return path


class _Case(TestCase):
    """A JUnit test case; some frameworks (pytest, nextest) add the test's file."""

    file = Attr()


@dataclass(frozen=True)
class JUnitCase:
    classname: str
    name: str
    file: str | None
    failed: bool  # a failure or an error
    message: str = ""
    text: str = ""


def junit_cases(path: Path) -> list[JUnitCase]:
    """The test cases of a JUnit XML report. Raises ParseError for a report that is not XML (a
    run killed while writing it)."""
    report = JUnitXml.fromfile(str(path))
    suites: list[TestSuite] = [report] if isinstance(report, TestSuite) else list(report)
    cases = []
    for suite in suites:
        for element in suite:
            case = _Case.fromelem(element)  # type: ignore[no-untyped-call]  # junitparser is untyped here
            problems = [r for r in case.result if isinstance(r, (Failure, Error))]
            if not problems:
                cases.append(JUnitCase(case.classname or "", case.name or "", case.file, failed=False))
                continue
            text = problems[0].text or ""
            message = (problems[0].message or "").strip() or next(iter(text.strip().splitlines()), "")
            cases.append(JUnitCase(case.classname or "", case.name or "", case.file, True, message, text))
    return cases
