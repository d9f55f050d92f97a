"""How well `fixloop triage` tells regressions from flaky tests, and how many reruns it spends.

Each trial generates a small pytest project with known truth, in a temporary folder:

- regressions: tests that fail every time;
- flaky tests at several failure rates (default 5%, 20%, 50%): each draws its outcome from
  os.urandom, so runs are independent across processes; each also fails its first (CI) run;
- order-dependent pairs: a polluter mutates shared module state that its victim asserts is clean
  (one pair inside a module, one across modules), with passing tests in between;
- infrastructure failures: tests that fail only during the first (CI) run, while a marker file
  (an "outage") exists, and pass afterwards: the right verdict is `passes`;
- passing filler tests.

Every method starts from a fresh copy and finds the failing tests with one suite run. Methods:

- fixed-N: the usual baseline: rerun each failing test N times alone (default 20); regression if
  all fail, flaky if some, passes if none. It cannot see order dependence.
- triage: `bot.triage.triage` (sequential stopping, order checks, bisection).
- triage+coverage: the same with `changed_lines` set to the lines the regressions' bug is in
  (DeFlaker's differential coverage).

pytest plugin autoload is off (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1) for all methods: the projects
need none, and it keeps each run ~0.15 s.

    python benchmarks/triage.py [--trials 3] [--runs 20] [--jobs 2] [--rates 0.05,0.2,0.5]
                                [--flaky-per-rate 2] [--no-coverage] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.frameworks.pytest import Pytest
from bot.secrets import scrubbed_environment
from bot.triage import triage
from bot.triage._runner import Runner

ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
       "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

CALC = ("def total(prices):\n    return sum(prices) + 1  # the regression: an off-by-one\n\n\n"
        "def mean(xs):\n    return sum(xs) / len(xs)\n")
CHANGED = {"calc.py": {2}}

HELPERS = '''import os


def first_ci_run(name):
    """True once: during the CI run, while its marker exists (then the marker is gone)."""
    marker = os.path.join(os.path.dirname(__file__), "ci", name)
    if os.path.exists(marker):
        os.remove(marker)
        return True
    return False


def chance(rate):
    """True with probability `rate`, from the OS's randomness: independent across processes."""
    return int.from_bytes(os.urandom(8), "big") / 2**64 < rate
'''


@dataclass(frozen=True)
class Truth:
    verdict: str
    polluter: str | None
    group: str  # the row of the table


def make_project(root: Path, rates: list[float], copies: int = 2) -> dict[str, Truth]:
    """Write the project; return test id -> the truth."""
    truth: dict[str, Truth] = {}
    files: dict[str, str] = {"calc.py": CALC, "helpers.py": HELPERS, "app_state.py": "CACHE = {}\nSEEN = []\n"}
    markers: list[str] = []
    files["test_billing.py"] = (
        "from calc import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n\n\n"
        "def test_total_empty():\n    assert total([]) == 0\n\n\ndef test_unrelated():\n    assert 2 * 2 == 4\n")
    for name in ("test_total", "test_total_empty"):
        truth[f"test_billing.py::{name}"] = Truth("regression", None, "regression")
    flaky = ["from helpers import chance, first_ci_run\n"]
    for i, rate in enumerate(rate for rate in rates for _ in range(copies)):
        name = f"test_flaky_{round(rate * 100)}pct_{i}"
        flaky.append(f"\ndef {name}():\n"
                     f"    assert not first_ci_run({name!r}) and not chance({rate}), 'lost the race'\n")
        markers.append(name)
        truth[f"test_flaky.py::{name}"] = Truth("flaky", None, f"flaky {round(rate * 100)}%")
    files["test_flaky.py"] = "\n".join(flaky)
    # Pair 1, inside one module, four tests apart; pair 2 across modules (test_cache.py runs before test_report.py).
    files["test_jobs.py"] = (
        "import app_state\n\n\ndef test_schedule():\n    pass\n\n\ndef test_register_job():\n"
        "    app_state.SEEN.append('job')\n\n\n"
        + "".join(f"def test_job_step_{k}():\n    pass\n\n\n" for k in range(4))
        + "def test_no_jobs_seen():\n    assert app_state.SEEN == [], 'state leaked from another test'\n")
    truth["test_jobs.py::test_no_jobs_seen"] = Truth("order_dependent", "test_jobs.py::test_register_job",
                                                     "order_dependent")
    files["test_cache.py"] = (
        "import app_state\n\n\ndef test_cache_miss():\n    assert 'user' not in {}\n\n\n"
        "def test_cache_warm():\n    app_state.CACHE['user'] = 'stale'\n\n\n"
        "def test_cache_size():\n    assert len([1]) == 1\n")
    files["test_report.py"] = (
        "import app_state\n\n\ndef test_report_header():\n    pass\n\n\n"
        "def test_report_fresh():\n    assert 'user' not in app_state.CACHE, 'stale cache entry'\n")
    truth["test_report.py::test_report_fresh"] = Truth("order_dependent", "test_cache.py::test_cache_warm",
                                                       "order_dependent")
    infra = ["from helpers import first_ci_run\n"]
    for name in ("test_download_fixtures", "test_registry_login"):
        infra.append(f"\ndef {name}():\n    if first_ci_run({name!r}):\n"
                     "        raise ConnectionError('mirror unreachable')\n")
        markers.append(name)
        truth[f"test_infra.py::{name}"] = Truth("passes", None, "passes (infrastructure)")
    files["test_infra.py"] = "\n".join(infra)
    for k in range(4):
        files[f"test_fill_{k}.py"] = "".join(f"def test_fill_{k}_{j}():\n    assert {j} == {j}\n\n\n" for j in range(5))
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "ci").mkdir()
    for name in markers:
        (root / "ci" / name).write_text("")
    return truth


@dataclass(frozen=True)
class Outcome:
    verdicts: dict[str, tuple[str, str | None]]  # test -> (verdict, polluter)
    runs_per_test: dict[str, int]
    runs_total: int
    seconds: float


def fixed_n(repo: Path, runs: int, jobs: int) -> Outcome:
    """The baseline: one suite run, then each failing test `runs` times alone."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        runner = Runner(repo, scrubbed_environment(ENV), framework=Pytest(), timeout=300, jobs=jobs, command=None,
                        scratch=Path(scratch))
        try:
            suite = runner.suite()
            failing = [case for case in dict.fromkeys(suite.ran) if case in suite.failed]
            verdicts: dict[str, tuple[str, str | None]] = {}
            per_test: dict[str, int] = {}
            for test in failing:
                results = runner.batch([partial(runner.alone, test)] * runs)
                failures = sum(run.failed_test(test) for run in results)
                verdicts[test] = ("regression" if failures == runs else "flaky" if failures else "passes", None)
                per_test[test] = runs
        finally:
            runner.close()
    return Outcome(verdicts, per_test, runner.runs_total, time.monotonic() - started)


def with_triage(repo: Path, jobs: int, coverage: bool) -> Outcome:
    started = time.monotonic()
    report = triage(repo, env=ENV, jobs=jobs, changed_lines=CHANGED if coverage else None)
    return Outcome({t.test: (t.verdict, t.polluter) for t in report.tests}, {t.test: t.runs for t in report.tests},
                   report.runs_total, time.monotonic() - started)


def run(trials: int, runs: int, jobs: int, rates: list[float], copies: int, coverage: bool) -> dict[str, Any]:
    methods: dict[str, Callable[[Path], Outcome]] = {
        f"fixed-N={runs}": lambda repo: fixed_n(repo, runs, jobs),
        "triage": lambda repo: with_triage(repo, jobs, coverage=False),
    }
    if coverage:
        methods["triage+coverage"] = lambda repo: with_triage(repo, jobs, coverage=True)
    # per method, per group: [tests, correct verdicts, reruns, polluters named right]
    table: dict[str, dict[str, list[int]]] = {m: defaultdict(lambda: [0, 0, 0, 0]) for m in methods}
    wrong: dict[str, dict[str, int]] = {m: defaultdict(int) for m in methods}  # "group -> verdict given": count
    totals = {m: {"runs_total": 0, "seconds": 0.0} for m in methods}
    groups: list[str] = []
    for trial in range(trials):
        for method, call in methods.items():
            with tempfile.TemporaryDirectory(prefix="fixloop-bench-triage-") as folder:
                repo = Path(folder) / "project"
                truth = make_project(repo, rates, copies)
                outcome = call(repo)
            totals[method]["runs_total"] += outcome.runs_total
            totals[method]["seconds"] += outcome.seconds
            for test, expected in truth.items():
                if expected.group not in groups:
                    groups.append(expected.group)
                verdict, polluter = outcome.verdicts.get(test, ("missed", None))
                cell = table[method][expected.group]
                cell[0] += 1
                cell[1] += verdict == expected.verdict
                cell[2] += outcome.runs_per_test.get(test, 0)
                cell[3] += verdict == expected.verdict and polluter == expected.polluter and polluter is not None
                if verdict != expected.verdict:
                    wrong[method][f"{expected.group} -> {verdict}"] += 1
            print(f"trial {trial + 1}/{trials} {method}: {outcome.runs_total} runs, {outcome.seconds:.1f} s",
                  file=sys.stderr)
    result: dict[str, Any] = {"trials": trials, "jobs": jobs, "rates": rates, "flaky_per_rate": copies,
                                 "methods": {}}
    for method in methods:
        rows: dict[str, dict[str, Any]] = {}
        for group in groups:
            tests, correct, reruns, named = table[method][group]
            rows[group] = {"tests": tests, "correct": correct, "accuracy": round(correct / tests, 3),
                           "reruns_per_test": round(reruns / tests, 1)}
            if group == "order_dependent":
                rows[group]["polluter_named"] = named
        tests = sum(table[method][g][0] for g in groups)
        correct = sum(table[method][g][1] for g in groups)
        result["methods"][method] = {
            "groups": rows, "accuracy": round(correct / tests, 3), "correct": correct, "tests": tests,
            "runs_total": totals[method]["runs_total"], "seconds": round(totals[method]["seconds"], 1),
            "wrong": dict(sorted(wrong[method].items()))}
    return result


def render(result: dict[str, Any]) -> str:
    methods: dict[str, dict[str, Any]] = result["methods"]
    names = list(methods)
    groups = list(methods[names[0]]["groups"])
    header = ["verdicts right (reruns/test)", *names]
    rows = []
    for group in groups:
        cells = []
        for name in names:
            row = methods[name]["groups"][group]
            text = f"{row['correct']}/{row['tests']} ({row['reruns_per_test']})"
            if "polluter_named" in row and not name.startswith("fixed"):
                text += f", polluter {row['polluter_named']}/{row['tests']}"
            cells.append(text)
        rows.append([group, *cells])
    rows.append(["all"] + [f"{methods[n]['correct']}/{methods[n]['tests']} = {methods[n]['accuracy']:.0%}"
                           for n in names])
    rows.append(["test runs in all"] + [str(methods[n]["runs_total"]) for n in names])
    rows.append(["wall time (s)"] + [str(methods[n]["seconds"]) for n in names])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for name in names:
        mistakes = methods[name]["wrong"]
        if mistakes:
            lines.append(f"{name} wrong: " + ", ".join(f"{k} x{v}" for k, v in mistakes.items()))
    return "\n".join(lines) + (f"\n({result['trials']} trials, {result['jobs']} jobs, "
                               f"{result['flaky_per_rate']} flaky tests per rate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="N of the fixed-N baseline")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rates", default="0.05,0.2,0.5", help="failure rates of the flaky tests")
    parser.add_argument("--flaky-per-rate", type=int, default=2, help="flaky tests per failure rate")
    parser.add_argument("--no-coverage", action="store_true", help="skip the triage+coverage method")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    result = run(args.trials, args.runs, args.jobs, rates, args.flaky_per_rate, coverage=not args.no_coverage)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
