"""Running tests in fresh processes, through their framework's adapter, and reading what happened.

A run is the adapter's command for the chosen tests (in the order given, where the framework keeps
it; see `Framework.orders`), asked for structured results as a validation command is, so each
test's outcome comes back by id. A command template with `{test}` (`--command`) stands in for a
framework fixloop cannot rerun by itself; its exit code is the outcome. Runs go through a pool of
`jobs` worker threads, each waiting on one process, so independent reruns overlap.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from xml.etree.ElementTree import ParseError

from bot._process import CommandResult, cap_text, run_shell
from bot.errors import ConfigError
from bot.frameworks import Framework, Results
from bot.frameworks import Run as FrameworkRun
from bot.frameworks.pytest import Pytest
from bot.sandbox import Confinement
from bot.validation import relevant_excerpt

T = TypeVar("T")

# Characters refused in test ids substituted into a shell command template.
_SHELL_META = re.compile(r"[`$;&|<>\\\n\"']")
_EXCERPT_LIMIT = 3_000


@dataclass(frozen=True)
class Run:
    """One process: the ids it was asked to run (in order) and what came of it."""

    order: tuple[str, ...]
    result: CommandResult
    framework: Framework | None  # None: a command-template run, whose exit code is the whole story
    ran: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)  # failed id → its message and traceback
    reported: bool = False  # the run left results to read

    def failed_test(self, test: str) -> bool:
        """Whether `test` failed in this run; not running at all (crash, timeout) counts as failing."""
        if self.result.timed_out:
            return True
        if self.framework is None:
            return self.result.exit_code != 0
        if any(self.framework.matches(test, case) for case in self.failed):
            return True
        if self.reported and self.framework.lists_ran:
            return not any(self.framework.matches(test, case) for case in self.ran)
        if self.reported and self.failed:
            return False  # the failures are named, and it is not among them
        return self.result.exit_code != 0  # results that count tests without naming them: the exit code tells

    def output_excerpt(self) -> str:
        return relevant_excerpt(self.result.output, _EXCERPT_LIMIT)

    def excerpt(self, test: str) -> str:
        """What explains `test`'s failure: its message and traceback, else the output's relevant part."""
        if self.result.timed_out:
            return f"killed after {self.result.duration_s:.0f} s (timeout)\n" + relevant_excerpt(
                self.result.output, _EXCERPT_LIMIT)
        for case, text in self.failed.items():
            if self.framework is not None and self.framework.matches(test, case) and text:
                return cap_text(f"{case}\n{text}", _EXCERPT_LIMIT)
        return relevant_excerpt(self.result.output, _EXCERPT_LIMIT)


class Runner:
    """Runs tests for one triage or repeat session and counts every process it starts."""

    def __init__(self, repo: Path, env: dict[str, str], *, framework: Framework, timeout: float, jobs: int,
                 command: str | None, scratch: Path, confinement: Confinement | None = None) -> None:
        """`command`: a template with `{test}` run instead of the framework's own command for one test.
        `confinement`: where the tests are code the agent touched (then `scratch` must be one of its folders)."""
        self.repo, self.env, self.timeout, self.command, self.scratch = repo, env, timeout, command, scratch
        self._run = confinement.run if confinement is not None else run_shell
        self.jobs = jobs
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fixloop-triage")
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        # At most `jobs` test processes at once, whoever asks; one where runs share a build folder.
        self._slots = threading.BoundedSemaphore(jobs if framework.concurrent else 1)
        self.runs_total = 0
        self._given = framework
        self._framework: Framework | None = None
        self._framework_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def by_exit_code(self) -> bool:
        return self.command is not None

    @property
    def framework(self) -> Framework:
        """The adapter; for pytest, with the Python that has pytest (the tests' `python`, else fixloop's)."""
        with self._framework_lock:
            if self._framework is None:
                self._framework = self._given
                if isinstance(self._given, Pytest) and self._given.run is None:
                    self._framework = Pytest(python=self._pick_python())
            return self._framework

    def _pick_python(self) -> str:
        for name in ("python", "python3"):
            found = shutil.which(name, path=self.env.get("PATH", os.defpath))
            if found and self.succeeds(f"{shlex.quote(found)} -c 'import pytest'"):
                return found
        return sys.executable

    def succeeds(self, command: str) -> bool:
        """Whether a helper command (a probe, not a test run) exits 0."""
        return self._run(command, cwd=self.repo, env=self.env, timeout=120).exit_code == 0

    def scratch_file(self, suffix: str) -> Path:
        """A fresh path in the scratch folder."""
        return self.scratch / f"run-{next(self._serial)}{suffix}"

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Start `call` on the pool (it should start at most one process)."""
        return self._pool.submit(call)

    def batch(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run `calls` concurrently (each starts one process; at most `jobs` at a time); results in order."""
        futures = [self._pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    def tests(self, ids: Sequence[str], *, shuffle: bool = False) -> Run:
        """One process running `ids`: in that order where the framework keeps it, in random order if `shuffle`."""
        framework = self.framework
        command = framework.run_tests(ids, shuffle=shuffle)
        if command is None:
            raise ConfigError(f"fixloop cannot run chosen {framework.name} tests by itself; set `tests.run` in "
                              ".github/fixloop.yml (a command with {tests} for the test ids), or use --command")
        return self.execute(command, ids)

    def alone(self, test: str) -> Run:
        """`test` by itself in a fresh process."""
        if self.command is None:
            return self.tests([test])
        self._count()
        with self._slots:
            result = self._run(self.command.replace("{test}", test), cwd=self.repo, env=self.env, timeout=self.timeout)
        return Run((test,), result, None)

    def suite(self) -> Run:
        """The whole suite, once."""
        command = self.framework.suite()
        if command is None:
            raise ConfigError(f"fixloop cannot run a {self.framework.name} suite by itself: name the failing tests "
                              "with --test ID")
        return self.execute(command, ())

    def execute(self, command: str, ids: Sequence[str]) -> Run:
        """`command` (running the tests `ids`, all when none), asked for structured results and counted as a run."""
        framework = self.framework
        self._count()
        run = FrameworkRun(report=self.scratch_file(".xml"), root=self.repo, started=time.time())
        prepared, env = framework.prepare(command, self.env, run)
        with self._slots:
            result = self._run(prepared, cwd=self.repo, env=env, timeout=self.timeout, output_limit=5_000_000)
        found: Results | None = None
        with suppress(ParseError, ValueError):  # a report left unreadable (killed while writing it) reads as none
            found = framework.results(run, result.output)
        for leftover in self.scratch.glob(f"{run.report.stem}.*"):
            leftover.unlink(missing_ok=True)
        requested_ran = _ran_any(framework, ids, found)
        if framework.nothing_ran_exit_codes:  # its exit code says so, unless the results show them
            nothing_ran = result.exit_code in framework.nothing_ran_exit_codes and requested_ran is not True
        else:  # a run that matches no test passes (`go test -run`): only the results can say
            nothing_ran = result.exit_code == 0 and requested_ran is False
        # No test at all, and a failure: the ids name no package or file the framework could load (a
        # build that fails shows here too: the tests cannot be rerun).
        no_test = framework.lists_ran and found is not None and not found.ran and not found.failed
        if ids and not result.timed_out and (no_test or nothing_ran):
            raise ConfigError(f"{framework.name} ran no test named {' '.join(ids)} in {self.repo}:\n"
                              + relevant_excerpt(framework.transcript(result.output), 1_500))
        if found is None:
            return Run(tuple(ids), result, framework)
        failed = {f.id: "\n".join(part for part in (f.message, f.details) if part) for f in found.failed}
        return Run(tuple(ids), result, framework, found.ran, failed, reported=True)

    def collect(self) -> list[str]:
        """The suite's test ids in the order they run: listed by the framework where it can (not a test
        run), else as a run of the whole suite ran them; none when neither can tell."""
        command = self.framework.list_tests()
        if command is None:
            if self.framework.orders == "none" or self.framework.suite() is None:
                return []
            return list(self.suite().ran)
        with self._slots:
            result = self._run(command, cwd=self.repo, env=self.env, timeout=self.timeout, output_limit=5_000_000)
        return self.framework.listed(result.output)

    def as_listed(self, ids: Sequence[str]) -> list[str]:
        """`ids` named as the suite lists them, where exactly one listed test matches (`TestX` is
        `example.com/pkg.TestX`): tests run together only when named alike (go runs a bare name apart)."""
        listed = self.collect()
        named = []
        for test in ids:
            found = [case for case in listed if self.framework.matches(test, case)]
            named.append(found[0] if len(found) == 1 else test)
        return named

    def _count(self) -> None:
        with self._lock:
            self.runs_total += 1


def _ran_any(framework: Framework, ids: Sequence[str], found: Results | None) -> bool | None:
    """Whether any of the tests `ids` ran, by the results; None when they cannot tell (results that
    count tests without naming them)."""
    if found is None or (not framework.lists_ran and not found.failed and found.tests_run):
        return None
    return any(framework.matches(i, case) for i in ids for case in (*found.ran, *(f.id for f in found.failed)))


def check_ids(tests: Sequence[str]) -> None:
    """Refuse test ids that a test command would read as options (they come from logs and comments)."""
    for test in tests:
        if test.startswith("-"):
            raise ConfigError(f"test id {test!r} starts with '-': a test command would read it as an option")


def check_command_ids(command: str, tests: Sequence[str]) -> None:
    """Refuse test ids that would change the meaning of the shell command they are put into."""
    if "{test}" not in command:
        raise ConfigError(f"--command must contain {{test}} where the test id goes, "
                          f"e.g. \"go test -run '^{{test}}$' ./...\"; got {command!r}")
    for test in tests:
        if _SHELL_META.search(test):
            raise ConfigError(f"test id {test!r} contains shell metacharacters; it cannot be put into --command safely")


__all__ = ["Run", "Runner", "check_command_ids", "check_ids"]
