"""JavaScript and TypeScript: Jest (`--json --outputFile`), Vitest (its JSON reporter, which has
Jest's format) and node's own runner (`node --test`, JUnit reporter beside the usual one). A test
is named by its file and its titles, `sum.test.js > sum > adds`; its file:line is the first frame
of its stack in the repository. `npm test` (yarn, pnpm) whose script runs Jest or Vitest last gets
the reporter's flags through the package manager. A file runs its tests in source order; each file
is isolated from the others."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pydantic import BaseModel

from bot._process import regular_file
from bot.frameworks.base import MESSAGE_LIMIT, FailedTest, Framework, Results, Run, capped, read_head, relative_to, runs

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FRAME = re.compile(r"(?P<file>(?:/|\.{0,2}/|[\w@-])[^\s():]*\.[cm]?[jt]sx?):(?P<line>\d+):\d+")
_REPORT_LIMIT = 50_000_000  # bytes of a report read at most (a bigger one reads as no report)
_SCRIPT_FILE = re.compile(r"\.[cm]?[jt]sx?$")
_TEST_FILE = re.compile(r"(?:^|/)(?:test|tests|__tests__)/|[._-](?:test|spec)\.[cm]?[jt]sx?$")
# `npm test`, `npm run test`, `yarn test`, `pnpm test` and the like, alone or as a command's last words.
_PACKAGE_MANAGER_TEST = re.compile(r"(?:^|[\s;&|(])(?P<tool>npm|yarn|pnpm)\s+(?:run\s+)?(?:test|t)\s*$")


def _package_json(root: Path) -> dict[str, Any]:
    text = read_head(root / "package.json")
    try:
        found = json.loads(text) if text is not None else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _test_script(root: Path) -> str:
    scripts = _package_json(root).get("scripts")
    return str(scripts.get("test", "")) if isinstance(scripts, dict) else ""


def _uses(root: Path, package: str) -> bool:
    manifest = _package_json(root)
    declared = {name for key in ("dependencies", "devDependencies") if isinstance(manifest.get(key), dict)
                for name in manifest[key]}
    return package in declared or re.search(rf"\b{package}\b", _test_script(root)) is not None


def _where(text: str, root: Path, *, test_files: bool = False) -> tuple[str | None, int | None]:
    """The first stack frame in the repository's own files (with `test_files`, in a test file)."""
    for frame in _FRAME.finditer(text):
        file = relative_to(frame["file"], root)
        if Path(file).is_absolute() or "node_modules" in file or file.startswith("node:"):
            continue
        if not test_files or _TEST_FILE.search(file):
            return file, int(frame["line"])
    return None, None


class _JestLocation(BaseModel):
    line: int | None = None


class _JestCase(BaseModel):
    status: str = ""
    title: str = ""
    ancestorTitles: list[str] = []  # Jest's own names
    failureMessages: list[str] = []
    location: _JestLocation | None = None


class _JestSuite(BaseModel):
    name: str = ""
    status: str = ""
    message: str = ""
    assertionResults: list[_JestCase] = []


class _JestReport(BaseModel):
    numTotalTests: int | None = None
    testResults: list[_JestSuite] = []


def _failure(test_id: str, text: str, file: str, run: Run, line: int | None) -> FailedTest:
    text = _ANSI.sub("", text)
    where, frame_line = _where(text, run.root)
    return FailedTest(id=test_id, file=where or file, line=frame_line or line,
                      message=capped(next(iter(text.strip().splitlines()), ""), MESSAGE_LIMIT), details=capped(text))


def _last_command(script: str) -> str:
    """The last simple command of a package.json script: the one that gets the arguments npm passes on."""
    return re.split(r"&&|\|\||;|\|", script)[-1].strip()


def _split_id(test_id: str) -> tuple[str | None, list[str]]:
    """(file or None, titles) of `file > suite > test`, of `suite › test` (Jest's log) or of a bare title."""
    parts = [p for p in re.split(r" > | › ", test_id) if p]
    if parts and _SCRIPT_FILE.search(parts[0]):
        return parts[0], parts[1:]
    return None, parts


def _same_test(requested: str, case: str) -> bool:
    """Whether `case` is the test `requested` names: `file > suite > test` (or a file or suite of it), or
    its titles without the file (`suite › test` as Jest logs them)."""
    file, titles = _split_id(requested)
    case_file, case_titles = _split_id(case)
    if file is not None and case_file is not None:
        return file.removeprefix("./") == case_file.removeprefix("./") and case_titles[: len(titles)] == titles
    if file is not None:  # node's report names a passing test without its file
        return bool(titles) and case_titles[: len(titles)] == titles
    # Titles without a file: the test's last titles (`suite › test`), or a suite's first ones.
    return bool(titles) and titles in (case_titles[-len(titles):], case_titles[: len(titles)])


def _files_and_titles(ids: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The test files the ids name, and the titles of each id that has some."""
    split = [_split_id(i) for i in ids]
    return sorted({file for file, _ in split if file}), [titles for _, titles in split if titles]


def _title_pattern(titles: Sequence[Sequence[str]], separator: str) -> str:
    """A JavaScript regular expression matching exactly the tests' names."""
    escape = re.compile(r"[.*+?^${}()|[\]\\/]")
    return "^(?:" + "|".join(escape.sub(r"\\\g<0>", separator.join(t)) for t in titles) + ")$"


def _insert_after(command: str, tool: str, flags: str) -> str:
    """`flags` added after the first word `tool` (a regex) in `command`."""
    return re.sub(rf"(^|[\s;&|(`/])({tool})(?=$|[\s;&|)`])", lambda m: f"{m[1]}{m[2]} {flags}", command, count=1)


class _ByFileAndTitles(Framework):
    """A JavaScript runner: a test is its file and titles; a file runs its tests in source order, and the
    report lists every test that ran."""

    orders = "source"
    lists_ran = True

    def matches(self, requested: str, case: str) -> bool:
        return _same_test(requested, case)

    def group(self, test_id: str) -> str:
        return _split_id(test_id)[0] or ""


class Jest(_ByFileAndTitles):
    name = "jest"
    tool = r"jest"

    def recognises(self, root: Path) -> bool:
        return _uses(root, self.name)

    def recognises_command(self, command: str) -> bool:
        return runs(command, rf"(?:\S*/)?{self.tool}")

    def flags(self, report: Path) -> str:
        return f"--json --outputFile={shlex.quote(str(report))}"

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        flags = self.flags(run.report.with_suffix(".json"))
        if self.recognises_command(command):
            return _insert_after(command, self.tool, flags), dict(env)
        manager = _PACKAGE_MANAGER_TEST.search(command)
        if manager is not None and re.match(rf"(?:\S*/)?{self.tool}(?:\s|$)", _last_command(_test_script(run.root))):
            # npm passes what follows `--` on to the script; yarn and pnpm pass it on as it is.
            return command.rstrip() + (" -- " if manager["tool"] == "npm" else " ") + flags, dict(env)
        return command, dict(env)


    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        if self.run is not None or shuffle or not ids:
            return super().run_tests(ids, shuffle=shuffle)
        files, titles = _files_and_titles(ids)
        return self.chosen(files, _title_pattern(titles, " ") if titles else None)

    def chosen(self, files: Sequence[str], pattern: str | None) -> str:
        """Jest running the test files `files` (all when none), only the tests whose full names match `pattern`."""
        name = f" -t {shlex.quote(pattern)}" if pattern else ""
        return "npx jest --runInBand" + name + "".join(f" {shlex.quote(f)}" for f in files)

    def suite(self) -> str:
        return "npx jest --runInBand"

    def results(self, run: Run, output: str) -> Results | None:
        report = run.report.with_suffix(".json")
        if not regular_file(report) or report.stat().st_size > _REPORT_LIMIT:
            return None
        # The report of code the agent wrote: one of another shape is a ValidationError (a ValueError).
        data = _JestReport.model_validate_json(report.read_bytes())
        failed, ran = [], []
        for suite in data.testResults:
            file = relative_to(suite.name, run.root)
            for case in suite.assertionResults:
                if case.status in ("passed", "failed"):
                    ran.append(" > ".join([file, *case.ancestorTitles, case.title]))
                if case.status == "failed":
                    failed.append(_failure(ran[-1], "\n".join(case.failureMessages), file, run,
                                           case.location.line if case.location else None))
            if suite.status == "failed" and not any(c.status == "failed" for c in suite.assertionResults):
                failed.append(_failure(file, suite.message, file, run, None))  # the file failed to run: no test did
        return Results(data.numTotalTests, failed, tuple(ran))

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """Jest heads a failure with its titles, `● sum › adds`."""
        return " › ".join(test_id.split(" > ")[1:]) or test_id


class Vitest(Jest):
    name = "vitest"
    tool = r"vitest(?:\s+run)?"

    def flags(self, report: Path) -> str:
        return f"--reporter=default --reporter=json --outputFile.json={shlex.quote(str(report))}"

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """Vitest names a failure as fixloop does, `FAIL  sum.test.js > sum > adds`."""
        return test_id

    def chosen(self, files: Sequence[str], pattern: str | None) -> str:
        name = f" -t {shlex.quote(pattern)}" if pattern else ""
        return "npx vitest run --no-file-parallelism" + name + "".join(f" {shlex.quote(f)}" for f in files)

    def suite(self) -> str:
        return "npx vitest run --no-file-parallelism"


class NodeTest(_ByFileAndTitles):
    name = "node"

    def recognises(self, root: Path) -> bool:
        return self.recognises_command(_test_script(root))

    def recognises_command(self, command: str) -> bool:
        return re.search(r"(?:^|[\s;&|(`])node\s+(?:--?[\w-]+(?:=\S+)?\s+)*--test(?=$|[\s=])", command) is not None

    def prepare(self, command: str, env: Mapping[str, str], run: Run) -> tuple[str, dict[str, str]]:
        flags = ("--test-reporter=spec --test-reporter-destination=stdout --test-reporter=junit "
                 f"--test-reporter-destination={shlex.quote(str(run.report))}")
        return _insert_after(command, "node", flags), dict(env)

    def results(self, run: Run, output: str) -> Results | None:
        if not regular_file(run.report) or run.report.stat().st_size > _REPORT_LIMIT:
            return None
        ran: list[str] = []
        failed: list[FailedTest] = []

        def walk(element: ElementTree.Element, titles: list[str]) -> None:
            for child in element:
                if child.tag == "testsuite":
                    walk(child, [*titles, child.get("name", "")])
                elif child.tag == "testcase" and not any(p.tag == "skipped" for p in child):
                    name = " > ".join([*titles, child.get("name", "")])
                    problem = next((p for p in child if p.tag in ("failure", "error")), None)
                    if problem is None:
                        ran.append(name)  # no file known: only a failure's stack names it
                        continue
                    text = problem.text or ""
                    file, line = _where(text, run.root)
                    test_file, _ = _where(text, run.root, test_files=True)  # not a module the test called
                    ran.append(f"{test_file} > {name}" if test_file else name)
                    failed.append(FailedTest(id=ran[-1], file=file, line=line,
                                             message=capped(problem.get("message", ""), MESSAGE_LIMIT),
                                             details=capped(text)))

        walk(ElementTree.parse(run.report).getroot(), [])
        return Results(len(ran), failed, tuple(ran))

    def test_id_as_in_ci_logs(self, test_id: str) -> str:
        """node's spec reporter shows the test's own title, `✖ adds`."""
        return test_id.split(" > ")[-1]


    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        """node --test on the tests' files, only the tests with those titles (a pattern matches one title)."""
        if self.run is not None or shuffle or not ids:
            return super().run_tests(ids, shuffle=shuffle)
        files, titles = _files_and_titles(ids)
        names = [[t[-1]] for t in titles]
        pattern = f" --test-name-pattern={shlex.quote(_title_pattern(names, ''))}" if names else ""
        return "node --test" + pattern + "".join(f" {shlex.quote(f)}" for f in files)

    def suite(self) -> str:
        return "node --test"
