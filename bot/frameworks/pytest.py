"""pytest: any command that ends up running it (directly, through `python -m`, make or tox) is asked
through `PYTEST_ADDOPTS` for a JUnit XML report, read back as node ids with file:line and message."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from junitparser import Attr, Error, Failure, JUnitXml, TestCase, TestSuite

from bot._process import cap_text, regular_file
from bot.frameworks.base import DETAILS_LIMIT, MESSAGE_LIMIT, FailedTest, Framework, Results, Run, repeated, runs

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
                    message=cap_text((problem.message or "").strip(), MESSAGE_LIMIT),
                    details=cap_text(text.strip(), DETAILS_LIMIT),
                )
            )
    return total, failed


class Pytest(Framework):
    name = "pytest"

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
        tests_run, failed = parse_junit(run.report)
        return Results(tests_run, failed)

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        """`command` itself: `last_failed(env)` asks it for the tests that failed last time."""
        return command

    def run_tests(self, ids: Sequence[str], *, repeat: int = 1, shuffle: bool = False) -> str | None:
        if self.run is not None or shuffle:
            return super().run_tests(ids, repeat=repeat, shuffle=shuffle)
        if not ids:
            return None
        return repeated("python -m pytest -p no:randomly -p no:cacheprovider " + " ".join(map(shlex.quote, ids)),
                        repeat)
