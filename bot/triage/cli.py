"""`fixloop triage`: the command-line face of `bot.triage.triage`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.triage._triage import TriageReport


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `triage` on the `fixloop` subcommands."""
    parser = commands.add_parser("triage", help="decide whether failing tests are regressions or flaky", description=(
        "Rerun failing tests until the evidence decides: regression (fails every time), flaky (fails sometimes), "
        "order_dependent (fails only after another test, which is named) or passes (could not reproduce). "
        "The tests run through their framework (pytest, unittest, go, jest, vitest, node --test, maven, cargo; "
        "found from the repository's files, or --framework). Without --test, the suite runs once to find the "
        "failing tests."))
    parser.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help="the project to test (default: .)")
    parser.add_argument("--test", action="append", dest="tests", metavar="ID",
                        help="a failing test, as fixloop or the CI log names it (pytest `path::test`, Go `TestName` "
                             "or `package/path.TestName`, Jest `suite › test`); repeat for several (default: run "
                             "the suite to find them)")
    parser.add_argument("--framework", metavar="NAME",
                        help="the test framework: pytest, unittest, go, jest, vitest, node, maven, gradle or cargo "
                             "(default: from the repository's files)")
    parser.add_argument("--command", metavar="CMD",
                        help="for runners fixloop cannot rerun itself: a shell command with {test} for the test id, "
                             "e.g. \"bundle exec rspec {test}\"; its exit code is the outcome")
    parser.add_argument("--max-runs", type=int, default=30, metavar="N",
                        help="most runs of each test alone (default 30)")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="C", help="confidence level (default 0.95)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="test processes at once (default 2)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from bot.frameworks import NAMES, framework
    from bot.triage._triage import triage

    if args.framework is not None and args.framework not in NAMES:
        raise ConfigError(f"--framework must be one of {', '.join(NAMES)}; got {args.framework!r}")
    report = triage(args.repo, args.tests, command=args.command, max_runs=args.max_runs, confidence=args.confidence,
                    jobs=args.jobs, framework=framework(args.framework) if args.framework else None)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render_table(report, args.confidence))
    return 0


def render_table(report: TriageReport, confidence: float) -> str:
    """The verdicts as a plain-text table, each test followed by its evidence."""
    from bot.triage._stats import percent

    header = ("TEST", "VERDICT", "RUNS", "FAILED", f"FAILURE RATE ({percent(confidence)} interval)", "POLLUTER")
    rows = [(t.test, t.verdict, str(t.runs), str(t.failures),
             f"{percent(t.failure_rate)} ({percent(t.interval[0])}-{percent(t.interval[1])})", t.polluter or "-")
            for t in report.tests]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    for row, test in zip(rows, report.tests, strict=True):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        lines.append(f"    {test.evidence}")
    lines.append(f"{report.runs_total} test runs in all")
    return "\n".join(lines)


__all__ = ["add_parser", "render_table"]
