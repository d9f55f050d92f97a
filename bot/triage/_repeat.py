"""Validating a deflake fix: consecutive passes, in random orders, until the confidence is reached."""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError
from bot.frameworks import Framework, choose
from bot.sandbox import Confinement
from bot.secrets import scrubbed_environment
from bot.triage._runner import Run, Runner, check_command_ids, check_ids
from bot.triage._stats import percent, runs_for_confidence


@dataclass(frozen=True)
class RepeatResult:
    passed: bool  # every one of the required runs passed
    runs: int  # runs made (fewer than required when one failed)
    failures: int
    orders: list[list[str]]  # the ids each run ran, in order (the test alone: [test])
    statement: str  # what the runs show, in one sentence
    first_failure: str | None  # output excerpt of the first failing run


def repeat_orders(test: str, count: int, *, polluter: str | None, neighbours: Sequence[str],
                  seed: int) -> list[list[str]]:
    """`count` orders: the test among its neighbours shuffled; with a polluter, always after it
    (first run: just the pair)."""
    rng = random.Random(seed)
    others = [n for n in dict.fromkeys(n.strip() for n in neighbours) if n not in (test, polluter)]
    orders: list[list[str]] = []
    for index in range(count):
        if polluter and index == 0:
            orders.append([polluter, test])
            continue
        order = [*others, test, *([polluter] if polluter else [])]
        rng.shuffle(order)
        if polluter:
            first, second = order.index(polluter), order.index(test)
            if first > second:
                order[first], order[second] = test, polluter
        orders.append(order)
    return orders


def confirm_fixed(repo: Path, test: str, *, confidence: float = 0.95, max_failure_rate: float = 0.10,
                  command: str | None = None, polluter: str | None = None, neighbours: Sequence[str] = (),
                  env: Mapping[str, str] | None = None, jobs: int = 2, timeout: float = 300,
                  seed: int = 0, confinement: Confinement | None = None,
                  framework: Framework | None = None) -> RepeatResult:
    """Run `test` until `runs_for_confidence(confidence, max_failure_rate)` consecutive passes, or its first
    failure; in `confinement` when the test is code the agent touched (a deflake fix). The orders are
    fixloop's where the framework runs tests in the order given; where it keeps its own order (Go, a
    JavaScript file), it shuffles them itself, except after a polluter, which its order keeps first."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ConfigError(f"{repo} is not a directory")
    for name, value in (("confidence", confidence), ("max_failure_rate", max_failure_rate)):
        if not 0.0 < value < 1.0 or math.isnan(value):
            raise ConfigError(f"{name} must be between 0 and 1; got {value}")
    if jobs < 1 or not timeout > 0:
        raise ConfigError(f"jobs must be at least 1 and timeout positive; got {jobs} and {timeout}")
    test = test.strip()
    if not test:
        raise ConfigError("no test id given")
    polluter = polluter.strip() if polluter else None
    check_ids([test, *([polluter] if polluter else []), *neighbours])
    framework = framework or choose("", repo)
    if command is not None:
        if polluter or neighbours:
            raise ConfigError("a command template runs one test at a time: polluter and neighbours need the "
                              "framework's own command")
        check_command_ids(command, [test])
    elif framework.orders == "none":
        polluter, neighbours = None, ()  # it runs tests in no order fixloop can choose: the test alone, repeatedly
    needed = runs_for_confidence(confidence, max_failure_rate)
    own_order = framework.orders == "source"
    # After a polluter, the framework's own order keeps it first; a `tests.run` template cannot shuffle.
    shuffled = own_order and framework.shuffles and framework.run is None and not polluter
    environment = scrubbed_environment(os.environ if env is None else env)
    done: list[list[str]] = []
    failures, first_failure, failed_at = 0, None, 0
    scratch_parent = confinement.scratch if confinement else None
    with tempfile.TemporaryDirectory(prefix="fixloop-repeat-", dir=scratch_parent) as scratch:
        runner = Runner(repo.resolve(), environment, framework=framework, timeout=timeout, jobs=jobs, command=command,
                        scratch=Path(scratch), confinement=confinement)
        try:
            if own_order and (polluter or neighbours):
                test, *listed = runner.as_listed([test, *([polluter] if polluter else []), *neighbours])
                polluter, neighbours = (listed[0], listed[1:]) if polluter else (None, listed)
            orders = repeat_orders(test, needed, polluter=polluter, neighbours=neighbours, seed=seed)
            for start in range(0, needed, jobs):
                chunk = orders[start:start + jobs]
                runs = runner.batch([_caller(runner, order, shuffle=shuffled) for order in chunk])
                for offset, (order, run) in enumerate(zip(chunk, runs, strict=True)):
                    done.append(order)
                    if run.failed_test(test):
                        failures += 1
                        if first_failure is None:
                            first_failure, failed_at = run.excerpt(test), start + offset + 1
                if failures:
                    break
        finally:
            runner.close()
    how = "in random orders" if len(orders[-1]) > 1 or polluter else "in isolation"
    if own_order and len(orders[-1]) > 1:
        how = f"in random orders ({framework.name} shuffling them)" if shuffled else \
            f"in {framework.name}'s own order" + (f", always after {polluter}" if polluter else "")
    elif polluter:
        how += f", always after {polluter}"
    if failures == 0:
        statement = (f"{needed} consecutive passes {how}: {percent(confidence)} confidence that the failure rate "
                     f"is below {percent(max_failure_rate)}")
    else:
        that_run = "" if own_order else f"; order of that run: {' -> '.join(orders[failed_at - 1][-6:])}"
        statement = f"failed on run {failed_at} of the {needed} consecutive passes needed ({how}): not fixed{that_run}"
    return RepeatResult(passed=failures == 0, runs=len(done), failures=failures, orders=done, statement=statement,
                        first_failure=first_failure)


def _caller(runner: Runner, order: list[str], *, shuffle: bool) -> Callable[[], Run]:
    return lambda: runner.alone(order[0]) if len(order) == 1 else runner.tests(order, shuffle=shuffle)


__all__ = ["RepeatResult", "confirm_fixed", "repeat_orders"]
