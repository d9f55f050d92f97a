"""The JVM: Maven (Surefire, Failsafe) and Gradle leave JUnit XML reports in the repository
(`target/surefire-reports`, `build/test-results/test`); those written during the run are read. A
test is named `package.Class.method`; its file:line is the first frame of its stack trace in the
test class.

fixloop reruns Maven tests itself (`-Dtest=Class#method`), offline: a rerun uses what the build
before it downloaded. Its runs order classes and JUnit 5 methods by name, an order a subset of the
tests keeps, or at random for shuffled runs. Runs of one checkout share `target/`, so they go one at a
time, and each names its reports (`surefire.reportNameSuffix`) so that no run reads another's."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
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
# A module without the chosen tests is no failure (a multi-module build runs them in the one that has them).
_MAVEN = "mvn --batch-mode --offline test -Dsurefire.failIfNoSpecifiedTests=false -DfailIfNoTests=false"
_BY_NAME = ("-Dsurefire.runOrder=alphabetical "
            "-Djunit.jupiter.testmethod.order.default='org.junit.jupiter.api.MethodOrderer$MethodName'")
_AT_RANDOM = ("-Dsurefire.runOrder=random "
              "-Djunit.jupiter.testmethod.order.default='org.junit.jupiter.api.MethodOrderer$Random'")
# Maven ran and left no report: no test ran (the chosen tests match nothing, the code does not
# compile, dependencies are missing from the local repository).
_MAVEN_RAN = re.compile(r"No tests (?:matching pattern .*)?were executed|BUILD (?:FAILURE|SUCCESS)")


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


def _read(reports: Sequence[Path], root: Path, suffix: str = "") -> Results:
    """The tests of JUnit reports, in the order the reports were written (a report per class, written
    as the class ends). Surefire adds a report name's `suffix` to its class names: `pkg.Class(suffix)`."""
    ran, failed = [], []
    for report in sorted(reports, key=lambda path: (path.stat().st_mtime_ns, path.name)):
        for case in junit_cases(report):
            classname = case.classname.removesuffix(f"({suffix})") if suffix else case.classname
            test_id = f"{classname}.{case.name}"
            ran.append(test_id)
            if case.failed:
                file, line = _location(case.text, classname, root)
                failed.append(FailedTest(id=test_id, file=file, line=line,
                                         message=capped(case.message, MESSAGE_LIMIT), details=capped(case.text)))
    return Results(len(ran), failed, tuple(ran))


def _class_and_method(test_id: str) -> tuple[str, str]:
    """`package.Class` (or `Class`, as Surefire logs it) and the method without its parameters (which
    may hold dots: `test[1: fib(1.5)=2.0]`)."""
    named = re.split(r"[(\[]", test_id.replace(" > ", "."), maxsplit=1)[0]
    classname, _, method = named.rpartition(".")
    return classname, method


class _JUnitReports(Framework):
    patterns: Sequence[str] = ()
    concurrent = False  # its runs share the build folder

    def results(self, run: Run, output: str) -> Results | None:
        reports = reports_since(run, self.patterns)
        return _read(reports, run.root) if reports else None

    def matches(self, requested: str, case: str) -> bool:
        """`package.Class.method`, or `Class.method` as Surefire logs it (`Class > method` in Gradle's log)."""
        requested = requested.replace(" > ", ".").removesuffix("()")
        return case == requested or case.endswith("." + requested)


class Maven(_JUnitReports):
    name = "maven"
    patterns = ("**/target/surefire-reports/TEST-*.xml", "**/target/failsafe-reports/TEST-*.xml")
    orders = "source"
    lists_ran = True
    shuffles = True

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        """Reports named for this run, however the command starts Maven (Maven reads MAVEN_OPTS)."""
        env = dict(env)
        env["MAVEN_OPTS"] = f"{env.get('MAVEN_OPTS', '')} -Dsurefire.reportNameSuffix={_suffix(run)}".strip()
        return command, env

    def results(self, run: Run, output: str) -> Results | None:
        """This run's reports (removed once read: every rerun writes a set); a Maven older than
        Surefire's suffix leaves the reports written during the run. A build that failed without
        reports ran no test."""
        named = reports_since(run, [pattern.replace("*.xml", f"*-{_suffix(run)}.xml") for pattern in self.patterns])
        if named:
            own = _read(named, run.root, _suffix(run))
            for report in named:
                report.unlink(missing_ok=True)
                text = report.name.removeprefix("TEST-").removesuffix(".xml")
                for written in (f"{text}.txt", f"{text}-output.txt"):
                    report.with_name(written).unlink(missing_ok=True)
            return own
        found = super().results(run, output)
        return Results(0) if found is None and _MAVEN_RAN.search(output) else found

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        """`-Dtest=pkg.A#one+two,pkg.B#three`: the classes in name order (the given order at random when
        `shuffle`)."""
        if self.run is not None:
            return super().run_tests(ids, shuffle=shuffle)
        if not ids:
            return None
        methods: dict[str, list[str]] = {}
        for test_id in dict.fromkeys(ids):
            classname, method = _class_and_method(test_id)
            methods.setdefault(classname, []).append(method)
        selection = ",".join(f"{classname}#{'+'.join(dict.fromkeys(names))}" for classname, names in methods.items())
        return f"{_MAVEN} {_AT_RANDOM if shuffle else _BY_NAME} -Dtest={shlex.quote(selection)}"

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        return self.run_tests(ids)

    def suite(self) -> str:
        return f"{_MAVEN} {_BY_NAME}"

    def group(self, test_id: str) -> str:
        return _class_and_method(test_id)[0]

    def recognises(self, root: Path) -> bool:
        return (root / "pom.xml").is_file()

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"(?:\S*/)?mvnw?")

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """Surefire: `CalcTest.parse:12 expected...` (the class without its package)."""
        classname, _, method = test_id.rpartition(".")
        return f"{classname.rpartition('.')[2]}.{method}"


def _suffix(run: Run) -> str:
    return f"fixloop-{run.report.stem}"


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
