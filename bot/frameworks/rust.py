"""Rust: `cargo test`'s output is read (`test name ... FAILED`, and where each failed test panicked);
cargo-nextest's JUnit report when the repository configures one (`.config/nextest.toml`), else its
`FAIL [ 0.004s] crate name` lines."""

from __future__ import annotations

import re
import shlex
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

_RESULT = re.compile(r"^test (?P<name>\S+)(?: - should panic)? \.\.\. (?P<status>ok|FAILED|ignored)", re.MULTILINE)
_NEXTEST = re.compile(r"^\s*(?:FAIL|SIGSEGV|SIGABRT|TIMEOUT) \[\s*[\d.]+s\] (?P<binary>\S+) (?P<name>\S+)\s*$",
                      re.MULTILINE)
_SUMMARY = re.compile(r"^test result: \w+\. (?P<passed>\d+) passed; (?P<failed>\d+) failed", re.MULTILINE)
_SECTION = re.compile(r"^---- (?P<name>\S+) (?:stdout|stderr) ----$", re.MULTILINE)
_SECTION_END = re.compile(r"^(?:---- \S+ (?:stdout|stderr) ----|failures:)$", re.MULTILINE)
# "panicked at src/lib.rs:12:9:\nmessage" (Rust 1.73 on), "panicked at 'message', src/lib.rs:12:9" before.
_PANIC_NEW = re.compile(r"panicked at (?P<file>[^\s:]+\.rs):(?P<line>\d+):\d+:\n(?P<message>.*)")
_PANIC_OLD = re.compile(r"panicked at '(?P<message>.*)', (?P<file>[^\s:]+\.rs):(?P<line>\d+):\d+")


def _panic(text: str) -> tuple[str | None, int | None, str]:
    found = _PANIC_NEW.search(text) or _PANIC_OLD.search(text)
    if found is None:
        return None, None, next(iter(text.strip().splitlines()), "")
    return found["file"], int(found["line"]), found["message"]


class Cargo(Framework):
    name = "cargo"

    def recognises(self, root: Path) -> bool:
        return (root / "Cargo.toml").is_file()

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"cargo\s+(?:\+\S+\s+)?(?:test|nextest)")

    def results(self, run: Run, output: str) -> Results | None:
        reports = reports_since(run, ("target/nextest/*/junit.xml",)) if (run.root / ".config/nextest.toml").is_file() \
            else []
        if reports:
            return self._from_junit(reports)
        sections = {m["name"]: m.end() for m in _SECTION.finditer(output)}
        names = [m["name"] for m in _RESULT.finditer(output) if m["status"] == "FAILED"]
        names += [m["name"] for m in _NEXTEST.finditer(output) if m["name"] not in names]
        if not names and _SUMMARY.search(output) is None:
            return None
        failed = []
        for name in names:
            start = sections.get(name)
            text = ""
            if start is not None:
                end = _SECTION_END.search(output, start)
                text = output[start : end.start() if end else None].strip()
            file, line, message = _panic(text)
            failed.append(FailedTest(id=name, file=file, line=line, message=capped(message, MESSAGE_LIMIT),
                                     details=capped(text)))
        summaries = list(_SUMMARY.finditer(output))
        total = sum(int(m["passed"]) + int(m["failed"]) for m in summaries) if summaries else None
        return Results(total, failed)

    @staticmethod
    def _from_junit(reports: Sequence[Path]) -> Results:
        total, failed = 0, []
        for report in reports:
            for case in junit_cases(report):
                total += 1
                if case.failed:
                    file, line, message = _panic(case.text)
                    failed.append(FailedTest(id=case.name, file=file, line=line,
                                             message=capped(case.message or message, MESSAGE_LIMIT),
                                             details=capped(case.text)))
        return Results(total, failed)

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        return self.run_tests(ids)

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        if self.run is not None or shuffle or not ids:
            return super().run_tests(ids, shuffle=shuffle)
        return "cargo test -- --exact " + " ".join(map(shlex.quote, ids))

    def suite(self) -> str:
        return "cargo test"
