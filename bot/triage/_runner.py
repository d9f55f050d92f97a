"""Running one test, or tests in a given order, in a fresh process, and reading what happened.

pytest runs get their own JUnit report and no cache (`-p no:cacheprovider`); ids are passed in
the wanted order, which pytest keeps. Other runners use a command template with `{test}`; their
exit code is the outcome. Runs go through a pool of `jobs` worker threads, each waiting on one
process, so independent reruns overlap.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree

from bot._process import CommandResult, cap_text, regular_file, run_shell
from bot.errors import ConfigError
from bot.sandbox import Confinement
from bot.validation import junit_test_id, parse_junit, relevant_excerpt

T = TypeVar("T")

# Characters refused in test ids substituted into a shell command template.
_SHELL_META = re.compile(r"[`$;&|<>\\\n\"']")
_EXCERPT_LIMIT = 3_000
# pytest exit codes that mean "nothing to run": 4 usage error (e.g. id not found), 5 no tests collected.
_NOT_COLLECTED = (4, 5)


def normalise_id(test: str) -> str:
    """A test id as pytest reports it: no leading ./ and no surrounding blanks."""
    test = test.strip()
    while test.startswith("./"):
        test = test[2:]
    return test


def matches(test: str, case_id: str) -> bool:
    """Whether the reported case `case_id` is (part of) the requested `test` (a node id, class or file)."""
    return case_id == test or case_id.startswith((test + "::", test + "["))


def _read_report(path: Path) -> tuple[list[str], dict[str, str]] | None:
    """(ids in the order they ran, {failed id: message and traceback}), or None without a readable report."""
    if not regular_file(path):  # the tests could have put a FIFO or a link there
        return None
    try:
        root = ElementTree.parse(path).getroot()
        _, failed = parse_junit(path)
    except ElementTree.ParseError:
        return None
    ran = [junit_test_id(c.get("file"), c.get("classname") or "", c.get("name") or "") for c in root.iter("testcase")]
    details = {f.id: "\n".join(part for part in (f.message, f.details) if part) for f in failed}
    return ran, details


@dataclass(frozen=True)
class Run:
    """One process: the ids it was asked to run (in order) and what came of it."""

    order: tuple[str, ...]
    result: CommandResult
    by_exit_code: bool  # a command-template run: the exit code is the whole story
    ran: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)

    def failed_test(self, test: str) -> bool:
        """Whether `test` failed in this run; not running at all (crash, timeout) counts as failing."""
        if self.result.timed_out:
            return True
        if self.by_exit_code:
            return self.result.exit_code != 0
        if any(matches(test, case) for case in self.failed):
            return True
        return not any(matches(test, case) for case in self.ran)

    def output_excerpt(self) -> str:
        return relevant_excerpt(self.result.output, _EXCERPT_LIMIT)

    def excerpt(self, test: str) -> str:
        """What explains `test`'s failure: its message and traceback, else the output's relevant part."""
        if self.result.timed_out:
            return f"killed after {self.result.duration_s:.0f} s (timeout)\n" + relevant_excerpt(
                self.result.output, _EXCERPT_LIMIT)
        for case, text in self.failed.items():
            if matches(test, case) and text:
                return cap_text(f"{case}\n{text}", _EXCERPT_LIMIT)
        return relevant_excerpt(self.result.output, _EXCERPT_LIMIT)


def pytest_flags(repo: Path, junit: Path) -> list[str]:
    """The options every pytest run gets: own report, no cache, no reordering plugin, fixed rootdir.

    `--maxfail=0` undoes an `-x` in the project's addopts: an earlier failure must not stop the run
    before the test under triage.
    """
    return ["-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--tb=short", "--maxfail=0",
            "--continue-on-collection-errors",
            f"--rootdir={repo}", f"--junitxml={junit}", "-o", "junit_family=xunit1"]


class Runner:
    """Runs tests for one triage or repeat session and counts every process it starts."""

    def __init__(self, repo: Path, env: dict[str, str], *, timeout: float, jobs: int, command: str | None,
                 scratch: Path, confinement: Confinement | None = None) -> None:
        """`confinement`: where the tests are code the agent touched (then `scratch` must be one of its folders)."""
        self.repo, self.env, self.timeout, self.command, self.scratch = repo, env, timeout, command, scratch
        self._run = confinement.run if confinement is not None else run_shell
        self.jobs = jobs
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fixloop-triage")
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(jobs)  # at most `jobs` test processes at once, whoever asks
        self.runs_total = 0
        self._python: str | None = None
        self._python_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def by_exit_code(self) -> bool:
        return self.command is not None

    @property
    def python(self) -> str:
        """The Python that runs the project's tests: `python` on the tests' PATH when it has pytest, else ours."""
        with self._python_lock:
            if self._python is None:
                self._python = self._pick_python()
            return self._python

    def _pick_python(self) -> str:
        for name in ("python", "python3"):
            found = shutil.which(name, path=self.env.get("PATH", os.defpath))
            if found and self.can_import(found, "pytest"):
                return found
        return sys.executable

    def can_import(self, python: str, module: str) -> bool:
        return self._run([python, "-c", f"import {module}"], cwd=self.repo, env=self.env, timeout=120).exit_code == 0

    def _count(self) -> None:
        with self._lock:
            self.runs_total += 1

    def junit_path(self) -> Path:
        return self.scratch / f"junit-{next(self._serial)}.xml"

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Start `call` on the pool (it should start at most one process)."""
        return self._pool.submit(call)

    def batch(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run `calls` concurrently (each starts one process; at most `jobs` at a time); results in order."""
        futures = [self._pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    def pytest(self, ids: Sequence[str], *, prefix: Sequence[str] = (), count: bool = True) -> Run:
        """One pytest process running `ids` in that order; `prefix` wraps it (e.g. `coverage run`)."""
        if count:
            self._count()
        junit = self.junit_path()
        argv = [*prefix] if prefix else [self.python]
        argv += ["-m", "pytest", *pytest_flags(self.repo, junit), *ids]
        with self._slots:
            result = self._run(argv, cwd=self.repo, env=self.env, timeout=self.timeout)
        report = _read_report(junit)
        junit.unlink(missing_ok=True)
        if report is None:
            if result.exit_code in _NOT_COLLECTED:
                raise ConfigError(f"pytest could not run {' '.join(ids) or 'the suite'} in {self.repo}:\n"
                                  + relevant_excerpt(result.output, 1_500))
            return Run(tuple(ids), result, False)
        ran, failed = report
        if ids and not ran and result.exit_code in _NOT_COLLECTED:
            raise ConfigError(f"pytest collected nothing for {' '.join(ids)} in {self.repo}:\n"
                              + relevant_excerpt(result.output, 1_500))
        return Run(tuple(ids), result, False, tuple(ran), failed)

    def shell(self, test: str) -> Run:
        """The command template run for one test; its exit code says pass or fail."""
        assert self.command is not None
        self._count()
        with self._slots:
            result = self._run(self.command.replace("{test}", test), cwd=self.repo, env=self.env, timeout=self.timeout)
        return Run((test,), result, True)

    def alone(self, test: str) -> Run:
        """`test` by itself in a fresh process."""
        return self.shell(test) if self.command is not None else self.pytest([test])

    def collect(self) -> list[str]:
        """The suite's test ids in collection order (pytest only; not counted as a run)."""
        argv = [self.python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                f"--rootdir={self.repo}", "--continue-on-collection-errors"]
        with self._slots:
            result = self._run(argv, cwd=self.repo, env=self.env, timeout=self.timeout, output_limit=5_000_000)
        ids: list[str] = []
        for line in result.output.splitlines():
            if not line.strip():
                if ids:
                    break
                continue
            if "::" in line and not line.startswith((" ", "\t")):
                ids.append(normalise_id(line))
        return ids


def check_command_ids(command: str, tests: Sequence[str]) -> None:
    """Refuse test ids that would change the meaning of the shell command they are put into."""
    if "{test}" not in command:
        raise ConfigError(f"--command must contain {{test}} where the test id goes, "
                          f"e.g. \"go test -run '^{{test}}$' ./...\"; got {command!r}")
    for test in tests:
        if _SHELL_META.search(test):
            raise ConfigError(f"test id {test!r} contains shell metacharacters; it cannot be put into --command safely")


__all__ = ["Run", "Runner", "check_command_ids", "matches", "normalise_id", "pytest_flags"]
