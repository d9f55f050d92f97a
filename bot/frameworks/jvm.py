"""The JVM: Maven (Surefire, Failsafe) and Gradle leave JUnit XML reports in the repository
(`target/surefire-reports`, `build/test-results/test`); those written during the run are read. A
test is named `package.Class.method`; its file:line is the first frame of its stack trace in the
test class."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bot.frameworks.base import (
    MESSAGE_LIMIT,
    FailedTest,
    Framework,
    Results,
    Run,
    capped,
    junit_cases,
    reports_since,
    runs,
)

_FRAME = re.compile(r"at (?P<method>[\w$.<>]+)\((?P<file>[\w$]+\.(?:java|kt|scala|groovy)):(?P<line>\d+)\)")
_SOURCES = ("src/test/java", "src/test/kotlin", "src/test/scala", "src/test/groovy")


def _location(text: str, classname: str, root: Path) -> tuple[str | None, int | None]:
    """The frame of the test class in the stack trace, as a file of the repository when found."""
    outer = classname.split("$")[0]
    for frame in _FRAME.finditer(text):
        if frame["method"].split("$")[0].startswith(outer + "."):
            package = outer.rpartition(".")[0].replace(".", "/")
            relative = f"{package}/{frame['file']}" if package else frame["file"]
            found = sorted(str(p.relative_to(root)) for p in root.glob(f"**/{relative}") if "build" not in p.parts
                           and "target" not in p.parts)
            candidates = [f for f in found if any(f.startswith(s) or f"/{s}/" in f for s in _SOURCES)] or found
            return (candidates[0] if candidates else relative), int(frame["line"])
    return None, None


class _JUnitReports(Framework):
    patterns: Sequence[str] = ()

    def results(self, run: Run, output: str) -> Results | None:
        reports = reports_since(run, self.patterns)
        if not reports:
            return None
        total, failed = 0, []
        for report in reports:
            for case in junit_cases(report):
                total += 1
                if not case.failed:
                    continue
                file, line = _location(case.text, case.classname, run.root)
                failed.append(FailedTest(id=f"{case.classname}.{case.name}", file=file, line=line,
                                         message=capped(case.message, MESSAGE_LIMIT), details=capped(case.text)))
        return Results(total, failed)

    def matches(self, requested: str, case: str) -> bool:
        """`package.Class.method`, or `Class.method` as Surefire logs it (`Class > method` in Gradle's log)."""
        requested = requested.replace(" > ", ".").removesuffix("()")
        return case == requested or case.endswith("." + requested)


class Maven(_JUnitReports):
    name = "maven"
    patterns = ("**/target/surefire-reports/TEST-*.xml", "**/target/failsafe-reports/TEST-*.xml")

    def recognises(self, root: Path) -> bool:
        return (root / "pom.xml").is_file()

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"(?:\S*/)?mvnw?")

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """Surefire: `CalcTest.parse:12 expected...` (the class without its package)."""
        classname, _, method = test_id.rpartition(".")
        return f"{classname.rpartition('.')[2]}.{method}"


class Gradle(_JUnitReports):
    name = "gradle"
    patterns = ("**/build/test-results/*/TEST-*.xml",)

    def recognises(self, root: Path) -> bool:
        return any((root / name).is_file() for name in ("build.gradle", "build.gradle.kts", "settings.gradle",
                                                         "settings.gradle.kts"))

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"(?:\S*/)?gradlew?")

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """Gradle: `CalcTest > parse() FAILED`."""
        classname, _, method = test_id.rpartition(".")
        return f"{classname.rpartition('.')[2]} > {method}"
