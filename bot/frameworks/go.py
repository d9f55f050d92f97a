"""Go: `go test` is asked for its event stream (`-json`); the output of a command that runs it
indirectly (make, a script) is read as go test prints it. A failed test is named
`package/path.TestName` (subtests `TestX/case`), with the file:line of its first `file_test.go:12:`
line (a file of the repository: the package's folder comes from go.mod's module path). A package
runs its tests in source order, which a subset of them keeps; `-shuffle` gives random orders and
`-coverprofile` line coverage."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.frameworks.base import (
    MESSAGE_LIMIT,
    FailedTest,
    Framework,
    Results,
    Run,
    capped,
    read_head,
    relative_to,
    runs,
    shell_words,
)

_GO_TEST = re.compile(r"(?P<before>^|[\s;&|(`])go\s+test(?=$|[\s;&|)`])")
_MARK = re.compile(r"^\s*--- (?P<status>FAIL|PASS|SKIP): (?P<test>\S+) \(")
_STARTS = re.compile(r"^=== (?:RUN|CONT|PAUSE|NAME)\s+(?P<test>\S+)")
_SUMMARY = re.compile(r"^(?:FAIL|ok)\s+(?P<package>\S+)(?:\s|$)")
_LOCATION = re.compile(r"^\s*(?P<file>[^\s:]+\.go):(?P<line>\d+): ?(?P<message>.*)$")
_END = re.compile(r"^(?:FAIL|PASS|exit status \d+)$")
# A frame of a panic's stack: "\t/abs/path/calc.go:12 +0x1d".
_FRAME = re.compile(r"^\t(?P<file>/\S+\.go):(?P<line>\d+)(?: \+0x[0-9a-f]+)?$")
_TOP_LEVEL = re.compile(r"\.((?:Test|Example|Fuzz|Benchmark)[^./]*(?:/.*)?)$")
_STATUSES = {"FAIL": "fail", "PASS": "pass", "SKIP": "skip"}
# go test ran no test at all: a package it cannot find or build.
_NO_TEST = re.compile(r"no required module provides package|cannot find package|is not in (?:GOROOT|std)|"
                      r"matched no packages|no Go files in|\[(?:setup|build) failed\]")
# A block of a coverage profile: "example.com/calc/calc.go:11.38,13.48 2 1" (file:from.col,to.col statements count).
_BLOCK = re.compile(r"^(?P<file>\S+\.go):(?P<start>\d+)\.\d+,(?P<end>\d+)\.\d+ \d+ (?P<count>\d+)$", re.MULTILINE)


@dataclass
class _Test:
    package: str
    name: str
    status: str = ""
    output: list[str] = field(default_factory=list)


def _events(output: str) -> Iterator[dict[str, object]]:
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "Action" in event:
                yield event


def _from_events(output: str) -> dict[tuple[str, str], _Test]:
    """The tests of a `go test -json` stream, in the order they ended."""
    tests: dict[tuple[str, str], _Test] = {}
    for event in _events(output):
        package, name, action = str(event.get("Package", "")), event.get("Test"), event["Action"]
        if not isinstance(name, str):
            continue
        test = tests.setdefault((package, name), _Test(package, name))
        if action == "output":
            test.output.append(str(event.get("Output", "")).rstrip("\n"))
        elif action in ("pass", "fail", "skip"):
            test.status = str(action)
            tests[(package, name)] = tests.pop((package, name))  # in the order they ended
    return tests


def _from_text(output: str) -> dict[tuple[str, str], _Test]:
    """The tests of `go test`'s plain output (with or without -v); a package's tests are named
    before its `FAIL\tpackage` or `ok\tpackage` line."""
    tests: dict[str, _Test] = {}
    done: dict[tuple[str, str], _Test] = {}
    current: _Test | None = None
    for line in output.splitlines():
        if (start := _STARTS.match(line)) is not None:
            current = tests.setdefault(start["test"], _Test("", start["test"]))
        elif (mark := _MARK.match(line)) is not None:
            current = tests.setdefault(mark["test"], _Test("", mark["test"]))
            current.status = _STATUSES[mark["status"]]
        elif line.startswith((" ", "\t")) and current is not None:
            current.output.append(line)
        elif (summary := _SUMMARY.match(line)) is not None:
            for test in tests.values():
                test.package = summary["package"]
                done[(test.package, test.name)] = test
            tests, current = {}, None
        elif _END.match(line):
            current = None
        elif current is not None:  # a panic's lines are not indented
            current.output.append(line)
    return done | {("", test.name): test for test in tests.values()}


def _module(root: Path) -> str | None:
    text = read_head(root / "go.mod")
    found = re.search(r"^module\s+(\S+)", text, re.MULTILINE) if text is not None else None
    return found[1].strip('"') if found else None


def _folder(package: str, module: str | None) -> str:
    """The repository folder of `package` ('' for the module's root, or when it is not known)."""
    if module and package.startswith(module + "/"):
        return package[len(module) + 1 :]
    return ""


def _failed(test: _Test, module: str | None, root: Path) -> FailedTest:
    lines = [line for line in test.output if not _STARTS.match(line) and not _MARK.match(line) and line.strip()]
    located = next((m for m in map(_LOCATION.match, lines) if m is not None), None)
    file: str | None = None
    line: int | None = None
    if located is not None:
        folder = _folder(test.package, module)
        file, line = (f"{folder}/{located['file']}" if folder else located["file"]), int(located["line"])
    else:  # a panic: the innermost frame in the repository
        frames = [(relative_to(m["file"], root), int(m["line"])) for m in map(_FRAME.match, lines) if m is not None]
        file, line = next(((f, n) for f, n in frames if not f.startswith("/")), (None, None))
    message = located["message"] if located is not None else (lines[0].strip() if lines else "")
    indent = min((len(x) - len(x.lstrip()) for x in lines), default=0)
    return FailedTest(id=f"{test.package}.{test.name}" if test.package else test.name, file=file, line=line,
                      message=capped(message, MESSAGE_LIMIT), details=capped("\n".join(x[indent:] for x in lines)))


def _split(test_id: str) -> tuple[str, str]:
    """(package, test name with its subtests) of an id; the package is '' for a bare name."""
    found = _TOP_LEVEL.search(test_id)
    return (test_id[: found.start()], found[1]) if found else ("", test_id)


class Go(Framework):
    name = "go"
    lists_ran = True
    orders = "source"
    shuffles = True
    coverage_suffixes = (".go",)

    def recognises(self, root: Path) -> bool:
        return (root / "go.mod").is_file() or (root / "go.work").is_file()

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"go\s+test")

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        if "-json" not in shell_words(command):
            command = _GO_TEST.sub(lambda m: f"{m['before']}go test -json", command)
        return command, dict(env)

    def results(self, run: Run, output: str) -> Results | None:
        events = any(True for _ in _events(output))
        tests = _from_events(output) if events else _from_text(output)
        if not tests and _NO_TEST.search(output):
            return Results(0)
        if not tests and not events:
            return None
        failing = [t for t in tests.values() if t.status == "fail"]
        # A test fails when one of its subtests does: the subtest says what failed.
        leaves = [t for t in failing if not any(o.package == t.package and o.name.startswith(t.name + "/")
                                                 for o in failing)]
        module = _module(run.root)
        ran = [f"{t.package}.{t.name}" if t.package else t.name for t in tests.values()
               if t.status in ("pass", "fail") and "/" not in t.name]
        count = sum(1 for t in tests.values() if t.status) if events else None
        return Results(count, [_failed(t, module, run.root) for t in leaves], tuple(ran))

    def transcript(self, output: str) -> str:
        """The event stream as go test prints it without -json (lines that are not events as they are)."""
        if not any(True for _ in _events(output)):
            return output
        lines = []
        for line in output.splitlines():
            event = next(_events(line), None)
            if event is None:
                lines.append(line)
            elif event["Action"] == "output":
                lines.append(str(event.get("Output", "")).rstrip("\n"))
        return "\n".join(lines)

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        return _split(test_id)[1]

    def group(self, test_id: str) -> str:
        return _split(test_id)[0]

    def matches(self, requested: str, case: str) -> bool:
        """`TestX` (any package), `path/to/package.TestX` or the full import path; a subtest of it too."""
        package, name = _split(requested)
        case_package, case_name = _split(case)
        # A subtest's run reports its parent's outcome too: a passing subtest is seen in the parent's pass.
        related = case_name == name or case_name.startswith(name + "/") or name.startswith(case_name + "/")
        return related and (
            not package or case_package == package or case_package.endswith("/" + package))

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        """`go test -run` in the repository's root: from another folder (`cd sub && go test`) it finds no
        tests, and the command then runs whole."""
        return self.run_tests(ids)

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        if self.run is not None:
            return super().run_tests(ids, shuffle=shuffle)
        commands = self._commands(ids, "-count=1" + (" -shuffle=on" if shuffle else ""))
        if not commands:
            return None
        if len(commands) == 1:
            return commands[0]
        # Every one runs; the status is the last failure's.
        return "s=0; " + " ".join(f"{c} || s=$?;" for c in commands) + " (exit $s)"

    def _commands(self, ids: Sequence[str], flags: str) -> list[str]:
        """One `go test` per package (one per subtest: a -run pattern matches one subtest per level)."""
        tops: dict[str, list[str]] = {}  # package → its top-level tests
        subtests: dict[str, list[str]] = {}
        for test_id in dict.fromkeys(ids):
            package, name = _split(test_id)
            # A part of a package's path (`pkg/path.TestX`, as a log may name it) is no path go can find:
            # every package runs the test, and the results tell the packages apart (`matches`).
            qualified = "." in package.split("/")[0]
            (subtests if "/" in name else tops).setdefault(package if qualified else "./...", []).append(name)
        selections = [(package, "^(" + "|".join(map(re.escape, names)) + ")$") for package, names in tops.items()]
        selections += [(package, "/".join(f"^{re.escape(level)}$" for level in name.split("/")))
                       for package, names in subtests.items() for name in names]
        return [f"go test {flags} -run {shlex.quote(pattern)} {shlex.quote(package)}"
                for package, pattern in selections]

    def suite(self) -> str:
        return "go test -count=1 ./..."

    def list_tests(self) -> str:
        return "go test -list . ./..."

    def listed(self, output: str) -> list[str]:
        """Each package's tests, listed before its `ok  package` line."""
        ids: list[str] = []
        names: list[str] = []
        for line in output.splitlines():
            if (summary := _SUMMARY.match(line)) is not None:
                ids += [f"{summary['package']}.{name}" for name in names]
                names = []
            elif re.fullmatch(r"Test\w*", line.strip()):
                names.append(line.strip())
        return ids

    def under_coverage(self, ids: Sequence[str], data: Path, files: Sequence[Path]) -> str | None:
        """The tests with every package of the module measured (the change may lie in another package)."""
        commands = self._commands(ids, f"-count=1 -coverpkg=./... -coverprofile={shlex.quote(str(data))}")
        return commands[0] if len(commands) == 1 else None

    def covered_lines(self, data: Path, root: Path) -> dict[Path, set[int]] | None:
        text = read_head(data, 50_000_000)
        if text is None:
            return None
        module = _module(root)
        covered: dict[Path, set[int]] = {}
        for block in _BLOCK.finditer(text):
            if block["count"] == "0":
                continue
            file = block["file"]
            if module and file.startswith(module + "/"):
                file = file[len(module) + 1 :]
            path = (root / file) if not Path(file).is_absolute() else Path(file)
            covered.setdefault(path.resolve(), set()).update(range(int(block["start"]), int(block["end"]) + 1))
        return covered
