"""pytest: any command that ends up running it (directly, through `python -m`, make or tox) is asked
through `PYTEST_ADDOPTS` for a JUnit XML report, read back as node ids with file:line and message.
Tests rerun in the order given, without the cache or reordering plugins; coverage is coverage.py's."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from junitparser import Attr, Error, Failure, JUnitXml, TestCase, TestSuite

from bot._process import cap_text, regular_file
from bot.frameworks.base import DETAILS_LIMIT, MESSAGE_LIMIT, FailedTest, Framework, Results, Run, runs

_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*?\.py):(?P<line>\d+): ", re.MULTILINE)
_CONFIG_FILES = ("pytest.ini", "pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "conftest.py")


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


def parse_junit(path: Path) -> tuple[list[str], list[FailedTest]]:
    """The ids of the tests run, in order, and the tests failed (failures and errors) in a JUnit XML report."""
    report = JUnitXml.fromfile(str(path))
    suites: list[TestSuite] = [report] if isinstance(report, TestSuite) else list(report)
    ran: list[str] = []
    failed: list[FailedTest] = []
    for suite in suites:
        for element in suite:
            case = _PytestCase.fromelem(element)  # type: ignore[no-untyped-call]  # junitparser is untyped here
            ran.append(junit_test_id(case.file, case.classname or "", case.name or ""))
            problems = [r for r in case.result if isinstance(r, (Failure, Error))]
            if not problems:
                continue
            problem = problems[0]
            text = problem.text or ""
            file, line = _location(text)
            failed.append(
                FailedTest(
                    id=ran[-1],
                    file=file or case.file,
                    line=line,
                    message=cap_text((problem.message or "").strip(), MESSAGE_LIMIT),
                    details=cap_text(text.strip(), DETAILS_LIMIT),
                )
            )
    return ran, failed


def normalise_id(test: str) -> str:
    """A test id as pytest reports it: no leading ./ and no surrounding blanks."""
    test = test.strip()
    while test.startswith("./"):
        test = test[2:]
    return test


class Pytest(Framework):
    name = "pytest"
    lists_ran = True
    nothing_ran_exit_codes = (4, 5)  # usage error (an id not found), no tests collected
    orders = "given"
    coverage_suffixes = (".py",)

    def __init__(self, run: str | None = None, python: str = "python") -> None:
        """`python`: the interpreter that runs the repository's tests when fixloop reruns them."""
        super().__init__(run)
        self.python = python

    def recognises(self, root: Path) -> bool:
        return any((root / name).is_file() for name in _CONFIG_FILES)

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"(?:\S*/)?(?:pytest|py\.test|tox)") or runs(command, r"-m\s+pytest")

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        # junit_logging=no: a repository's config may ask for the captured output in the report
        # (system-out), and a test printing hundreds of MB would then make a report of that size,
        # read whole into memory here; the report is only read for test ids and failure texts.
        addopts = [env.get("PYTEST_ADDOPTS", ""), f"--junitxml={shlex.quote(str(run.report))}",
                   "-o junit_family=xunit1", "-o junit_logging=no"]
        return command, dict(env) | {"PYTEST_ADDOPTS": " ".join(a for a in addopts if a)}

    @staticmethod
    def last_failed(env: Mapping[str, str]) -> dict[str, str]:
        """`env` (as `prepare` left it) asking pytest for the tests that failed last time only."""
        addopts = [env.get("PYTEST_ADDOPTS", ""), "--last-failed --last-failed-no-failures none"]
        return dict(env) | {"PYTEST_ADDOPTS": " ".join(a for a in addopts if a)}

    def results(self, run: Run, output: str) -> Results | None:
        if not regular_file(run.report):  # the commands could have put a FIFO or a link there
            return None
        ran, failed = parse_junit(run.report)
        return Results(len(ran), failed, tuple(ran))

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        """`command` itself: `last_failed(env)` asks it for the tests that failed last time."""
        return command

    def matches(self, requested: str, case: str) -> bool:
        """A node id, or a class or file that holds the case."""
        requested = normalise_id(requested)
        return case == requested or case.startswith((requested + "::", requested + "["))

    def _pytest(self) -> str:
        # --maxfail=0 undoes an -x in the project's addopts: an earlier failure must not stop the run
        # before the test under triage.
        return (f"{shlex.quote(self.python)} -m pytest -p no:cacheprovider -p no:randomly -q --tb=short --maxfail=0 "
                "--continue-on-collection-errors --rootdir=.")

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        if self.run is not None or shuffle:
            return super().run_tests(ids, shuffle=shuffle)
        if not ids:
            return None
        return f"{self._pytest()} {' '.join(shlex.quote(normalise_id(i)) for i in ids)}"

    def suite(self) -> str:
        return self._pytest()

    def list_tests(self) -> str:
        return (f"{shlex.quote(self.python)} -m pytest --collect-only -q -p no:cacheprovider -p no:randomly "
                "--continue-on-collection-errors --rootdir=.")

    def listed(self, output: str) -> list[str]:
        ids: list[str] = []
        for line in output.splitlines():
            if not line.strip():
                if ids:
                    break
                continue
            if "::" in line and not line.startswith((" ", "\t")):
                ids.append(normalise_id(line))
        return ids

    def coverage_probe(self) -> str:
        return f"{shlex.quote(self.python)} -c 'import coverage'"

    def under_coverage(self, ids: Sequence[str], data: Path, files: Sequence[Path]) -> str:
        # The project's own coverage settings (source, omit, parallel) must not apply: an empty rcfile,
        # created new and never through a link (the tests, which can write this folder, could put one there).
        rcfile = data.with_suffix(".rc")
        os.close(os.open(rcfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        include = ",".join(str(path) for path in files)
        pytest = self._pytest().split(" -m pytest ", 1)[1]
        return (f"{shlex.quote(self.python)} -m coverage run --data-file={shlex.quote(str(data))} "
                f"--rcfile={shlex.quote(str(rcfile))} --include={shlex.quote(include)} -m pytest {pytest} "
                + " ".join(shlex.quote(normalise_id(i)) for i in ids))

    def covered_lines(self, data: Path, root: Path) -> dict[Path, set[int]] | None:
        if not regular_file(data):
            return None
        from coverage import CoverageData  # imported here, so that importing fixloop does not load coverage.py

        found = CoverageData(basename=str(data))
        found.read()
        return {Path(measured).resolve(): set(found.lines(measured) or ()) for measured in found.measured_files()}
