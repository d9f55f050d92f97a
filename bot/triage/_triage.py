"""Triage of failing tests: the sequential rerun procedure (rules and math: see `bot.triage`)."""

from __future__ import annotations

import math
import os
import random
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.errors import ConfigError
from bot.frameworks import Framework, choose
from bot.sandbox import Confinement
from bot.secrets import scrubbed_environment
from bot.triage._coverage import measure, resolve_changes
from bot.triage._runner import Run, Runner, check_command_ids, check_ids
from bot.triage._stats import (
    clopper_pearson,
    failures_for_regression,
    order_independence_likelihood,
    percent,
    rate_bound_after_passes,
    runs_for_confidence,
)

Verdict = Literal["regression", "flaky", "order_dependent", "passes"]

# The highest failure rate of a flaky test that k consecutive failures must rule out before
# "regression": by default, and when the failing run does / does not execute a changed line.
FLAKY_RATE = 0.5
FLAKY_RATE_TOUCHED = 0.25
FLAKY_RATE_UNTOUCHED = 0.75
# The failure rate that consecutive passes must rule out before "passes" (could not reproduce).
PASS_RATE = 0.10
PASS_RATE_UNTOUCHED = 0.20
SEED = 0  # random orders are seeded with this and the test id, so a triage is repeatable


@dataclass(frozen=True)
class TestTriage:
    """The verdict on one test, with the runs behind it."""

    __test__ = False  # not a pytest test class

    test: str
    verdict: Verdict
    runs: int  # reruns of this test made by triage (alone, in orders, under coverage, bisecting)
    failures: int  # how many of them failed
    failure_rate: float  # failures / runs
    interval: tuple[float, float]  # Clopper-Pearson interval of the failure rate at the triage's confidence
    polluter: str | None  # for order_dependent: the test that makes it fail when run before it
    evidence: str  # one line, for people


@dataclass(frozen=True)
class TriageReport:
    tests: list[TestTriage]
    runs_total: int  # every test process started, including the suite run that found the failures

    def to_json(self) -> dict[str, Any]:
        return {
            "tests": [
                {"test": t.test, "verdict": t.verdict, "runs": t.runs, "failures": t.failures,
                 "failure_rate": round(t.failure_rate, 4), "polluter": t.polluter}
                for t in self.tests
            ],
            "runs_total": self.runs_total,
        }


@dataclass
class _Tally:
    runs: int = 0
    failures: int = 0
    alone_runs: int = 0
    alone_failures: int = 0

    @property
    def alone_passes(self) -> int:
        return self.alone_runs - self.alone_failures

    def add(self, run: Run, test: str, *, alone: bool) -> bool:
        failed = run.failed_test(test)
        self.runs += 1
        self.failures += failed
        if alone:
            self.alone_runs += 1
            self.alone_failures += failed
        return failed


@dataclass
class _Session:
    runner: Runner
    confidence: float
    max_runs: int
    changes: dict[Path, tuple[str, set[int]]] | None
    suite_order: list[str] | None  # the ids as the failing suite run ran them
    _collected: list[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def order(self) -> tuple[list[str], str]:
        """The suite's ids in the order they (would) run, and where that order comes from."""
        if self.suite_order is not None:
            return self.suite_order, "in the failing run"
        with self._lock:
            if self._collected is None:
                self._collected = self.runner.collect()
        return self._collected, "in collection order"


def _verdict(test: str, verdict: Verdict, tally: _Tally, confidence: float, finding: str, notes: list[str],
             polluter: str | None = None) -> TestTriage:
    rate = tally.failures / tally.runs if tally.runs else 0.0
    return TestTriage(test=test, verdict=verdict, runs=tally.runs, failures=tally.failures, failure_rate=rate,
                      interval=clopper_pearson(tally.failures, tally.runs, confidence) if tally.runs else (0.0, 1.0),
                      polluter=polluter, evidence="; ".join(part for part in (finding, *notes) if part))


def _triage_one(session: _Session, test: str) -> TestTriage:
    runner, confidence = session.runner, session.confidence
    tally, notes = _Tally(), []
    flaky_rate, pass_rate = FLAKY_RATE, PASS_RATE
    if session.changes is not None:
        # The coverage run is the first run alone; the other job slots run the test plainly meanwhile.
        measured = runner.submit(lambda: measure(runner, test, session.changes or {}))
        others = runner.batch([lambda: runner.alone(test)] * (runner.jobs - 1)) if runner.jobs > 1 else []
        touch = measured.result()
        for run in ([touch.run] if touch.run else []) + others:
            tally.add(run, test, alone=True)
        notes.append(touch.note)
        if touch.executes_change is True:
            flaky_rate = FLAKY_RATE_TOUCHED
        elif touch.executes_change is False:
            flaky_rate, pass_rate = FLAKY_RATE_UNTOUCHED, PASS_RATE_UNTOUCHED
    need_failures = failures_for_regression(confidence, flaky_rate)
    need_passes = runs_for_confidence(confidence, pass_rate)
    # A command template runs one test, and some frameworks run tests in no order fixloop can choose.
    order_checked = runner.by_exit_code or runner.framework.orders == "none"
    while True:
        alone = f"{tally.alone_failures} of {tally.alone_runs} runs alone"
        if tally.alone_failures and tally.alone_passes:
            low, high = clopper_pearson(tally.alone_failures, tally.alone_runs, confidence)
            return _verdict(test, "flaky", tally, confidence,
                (f"failed {alone} and passed the others: a failure and a pass at the same commit prove it flaky; "
                 f"failure rate {percent(tally.alone_failures / tally.alone_runs)} "
                 f"({percent(confidence)} interval {percent(low)}-{percent(high)})"),
                notes)
        if tally.alone_failures >= need_failures:
            return _verdict(test, "regression", tally, confidence,
                (f"failed all {tally.alone_runs} runs alone: a flaky test failing at most {percent(flaky_rate)} of the "
                 f"time would do that with probability {percent(flaky_rate ** tally.alone_failures)} at most"),
                notes)
        if tally.alone_passes and not order_checked:
            order_checked = True
            found = _order_phase(session, test, tally, notes)
            if found is not None:
                return found
            continue
        # A pass after other tests counts as much as one alone: other tests can only add ways to fail.
        passes = tally.runs if not tally.failures else tally.alone_passes
        if passes >= need_passes:
            where = "alone" if passes == tally.alone_runs else \
                f"({tally.alone_runs} alone, the others after other tests)"
            return _verdict(test, "passes", tally, confidence,
                (f"passed all {passes} runs {where}: failure rate below {percent(pass_rate)} at "
                 f"{percent(confidence)} confidence; the failure did not reproduce (environment or infrastructure?)"),
                notes)
        if tally.alone_runs >= session.max_runs:
            return _undecided(session, test, tally, notes, need_failures, need_passes)
        need = need_failures - tally.alone_failures if tally.alone_failures else need_passes - passes
        size = max(1, min(runner.jobs, need, session.max_runs - tally.alone_runs))
        for run in runner.batch([lambda: runner.alone(test)] * size):
            tally.add(run, test, alone=True)


def _undecided(session: _Session, test: str, tally: _Tally, notes: list[str], need_failures: int,
               need_passes: int) -> TestTriage:
    """The rerun budget ran out before a stopping rule was met: the likelier verdict, marked as such."""
    budget = f"not decisive: the budget of {session.max_runs} runs alone ran out"
    if tally.alone_failures:
        return _verdict(test, "regression", tally, session.confidence,
            f"failed all {tally.alone_runs} runs alone ({budget}; {need_failures} consecutive failures decide)",
            notes)
    bound = rate_bound_after_passes(tally.alone_passes, session.confidence)
    return _verdict(test, "passes", tally, session.confidence,
        (f"passed all {tally.alone_runs} runs alone: failure rate below {percent(bound)} at "
         f"{percent(session.confidence)} confidence ({budget}; {need_passes} passes decide)"),
        notes)


def _order_phase(session: _Session, test: str, tally: _Tally, notes: list[str]) -> TestTriage | None:
    """It passes alone: does it fail after other tests? Find the polluter by bisection and confirm it.

    Returns a verdict, or None to go on with runs alone (nothing reproduced, or it failed alone too).
    """
    runner, confidence, matches = session.runner, session.confidence, session.runner.framework.matches
    everything, source = session.order()
    position = next((i for i, case in enumerate(everything) if matches(test, case)), len(everything))
    before = [case for case in everything[:position] if not matches(test, case)]
    # Named as the suite names it (`TestX` is `example.com/pkg.TestX`), so that it runs with the others.
    test_as_listed = everything[position] if position < len(everything) else test
    tries = []
    if before:
        tries.append((before, f"the {len(before)} tests that ran before it {source}"))
    if runner.framework.orders == "given":  # else it runs them in its own order: no random order to choose
        shuffled = [case for case in everything if not matches(test, case)]
        random.Random(f"{SEED}:{test}").shuffle(shuffled)
        if shuffled:
            tries.append((shuffled, f"all {len(shuffled)} other tests in a random order"))
    if not tries:
        notes.append("no other test to run it after" if everything else
                     f"{runner.framework.name} cannot list the suite's tests, so no order was tried")
        return None
    reproduced: tuple[list[str], str] | None = None
    for order, label in tries:
        if tally.add(runner.tests([*order, test_as_listed]), test, alone=False):
            reproduced = (order, label)
            break
    if reproduced is None:
        notes.append("also passed after " + " and after ".join(label for _, label in tries))
        return None
    order, label = reproduced
    candidates, steps = list(order), 0
    while len(candidates) > 1:  # delta debugging: keep the half that still makes it fail
        half = candidates[: len(candidates) // 2]
        steps += 1
        candidates = half if tally.add(runner.tests([*half, test_as_listed]), test, alone=False) \
            else candidates[len(half):]
    polluter = candidates[0]
    threshold = 1.0 - confidence
    # Only runs made after the polluter was named count: the failure that started the search does not.
    after, alone = 0, tally.alone_passes
    while order_independence_likelihood(after, alone) > threshold:
        pair, lone = runner.batch([lambda: runner.tests([polluter, test_as_listed]), lambda: runner.alone(test)])
        pair_failed = tally.add(pair, test, alone=False)
        if tally.add(lone, test, alone=True):
            notes.append(f"failed after {label} too")
            return None
        alone += 1
        if not pair_failed:
            notes.append(f"bisection pointed at {polluter}, but it passed right after it")
            return _confirm_whole_order(session, test, tally, notes, [*order, test_as_listed], label)
        after += 1
    return _verdict(test, "order_dependent", tally, confidence,
        (f"passes alone ({alone}/{alone} runs) but fails when {polluter} runs before it ({after}/{after} runs); "
         f"found by bisecting {label} in {steps} runs"),
        notes, polluter=polluter)


def _confirm_whole_order(session: _Session, test: str, tally: _Tally, notes: list[str], order: list[str],
                         label: str) -> TestTriage | None:
    """No single polluter: does the whole `order` (ending with the test) make it fail reliably (several tests
    together)?"""
    runner, confidence = session.runner, session.confidence
    after, alone = 0, tally.alone_passes
    while order_independence_likelihood(after, alone) > 1.0 - confidence:
        whole, lone = runner.batch([lambda: runner.tests(order), lambda: runner.alone(test)])
        whole_failed = tally.add(whole, test, alone=False)
        if tally.add(lone, test, alone=True):
            return None
        alone += 1
        if not whole_failed:
            return _verdict(test, "flaky", tally, confidence,
                (f"failed and passed after {label}, the same order: nondeterministic; "
                 f"passes alone ({alone}/{alone} runs)"),
                notes)
        after += 1
    return _verdict(test, "order_dependent", tally, confidence,
        (f"passes alone ({alone}/{alone} runs) but fails after {label} ({after}/{after} runs); no single test "
         "makes it fail: several tests together leave the state it trips on"),
        notes)


def _rerunnable(case: str, repo: Path) -> str:
    """A failing case as an id pytest can run: a collection error's dotted module becomes its file."""
    if "::" in case or case.endswith(".py"):
        return case
    path = case.replace(".", "/") + ".py"
    return path if (repo / path).is_file() else case


def _check(repo: Path, confidence: float, max_runs: int, jobs: int, timeout: float) -> None:
    if not repo.is_dir():
        raise ConfigError(f"--repo {repo} is not a directory")
    if not 0.0 < confidence < 1.0 or math.isnan(confidence):
        raise ConfigError(f"--confidence must be between 0 and 1, e.g. 0.95; got {confidence}")
    if max_runs < 1:
        raise ConfigError(f"--max-runs must be at least 1; got {max_runs}")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1; got {jobs}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive; got {timeout}")


def triage(repo: Path, tests: Sequence[str] | None = None, *, command: str | None = None, max_runs: int = 30,
           confidence: float = 0.95, changed_lines: Mapping[str, set[int]] | None = None,
           env: Mapping[str, str] | None = None, jobs: int = 2, timeout: float = 300,
           confinement: Confinement | None = None, framework: Framework | None = None) -> TriageReport:
    """Rerun failing tests until each is shown a regression, flaky, order-dependent, or not reproducible.

    `framework`: the tests' adapter (default: the one the repository's files show, else pytest).
    With `tests=None` the suite runs once to find the failing tests (and the order they ran in).
    `command` is a shell template with `{test}` for runners fixloop cannot rerun itself (exit code =
    outcome). `changed_lines` (file -> line numbers of the change) adds the DeFlaker coverage check.
    `max_runs` bounds the runs of each test alone; `timeout` is per process. `confinement`: the tests
    run in it (code the agent could have touched).
    """
    repo = Path(repo)
    _check(repo, confidence, max_runs, jobs, timeout)
    repo = repo.resolve()
    environment = scrubbed_environment(os.environ if env is None else env)
    wanted = None if tests is None else list(dict.fromkeys(t.strip() for t in tests if t.strip()))
    if wanted is not None and not wanted:
        raise ConfigError("no test ids given to triage")
    check_ids(wanted or [])
    if command is not None:
        if wanted is None:
            raise ConfigError("--command needs the failing test ids (--test ID): fixloop finds them by running the "
                              "suite with the framework's own command only")
        check_command_ids(command, wanted)
    scratch_parent = confinement.scratch if confinement else None
    with tempfile.TemporaryDirectory(prefix="fixloop-triage-", dir=scratch_parent) as scratch:
        runner = Runner(repo, environment, framework=framework or choose("", repo), timeout=timeout, jobs=jobs,
                        command=command, scratch=Path(scratch), confinement=confinement)
        try:
            suite_order = None
            if wanted is None:
                wanted, suite_order = _failing_tests(runner, repo)
            changes = None if changed_lines is None else resolve_changes(repo, changed_lines)
            session = _Session(runner, confidence, max_runs, changes, suite_order)
            with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fixloop-triage-test") as pool:
                results = list(pool.map(lambda test: _triage_one(session, test), wanted))
        finally:
            runner.close()
    return TriageReport(results, runner.runs_total)


def _failing_tests(runner: Runner, repo: Path) -> tuple[list[str], list[str]]:
    """Run the whole suite once: the failing ids, and every id in the order it ran."""
    suite = runner.suite()
    failing = list(suite.failed)
    if not failing and suite.result.exit_code == 0 and not suite.result.timed_out:
        raise ConfigError(f"no failing tests found: the test suite in {repo} passed; name the tests to triage "
                          "with --test ID")
    if not failing:
        raise ConfigError(f"the test suite in {repo} failed (exit code {suite.result.exit_code}) without naming a "
                          "failing test:\n" + suite.output_excerpt())
    return [_rerunnable(case, repo) for case in failing], list(dict.fromkeys(suite.ran))


__all__ = ["TestTriage", "TriageReport", "Verdict", "triage"]
