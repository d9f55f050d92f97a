"""`fixloop logs extract`: the failure evidence of a CI log, from the command line.

    fixloop logs extract FAIL_LOG [--passing FILE] [--budget TOKENS] [--json]

`bot.cli` registers the command with `add_parser(commands)`; the handler returns the exit code
(0) and raises `ConfigError` (exit 2) for a log it cannot read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.logs import DEFAULT_BUDGET, extract_evidence


def _budget(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive whole number of tokens")
    return value


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `logs extract` on the `fixloop` command's subparsers."""
    logs = commands.add_parser("logs", help="read CI logs", description="Work with CI job logs.")
    actions = logs.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    extract = actions.add_parser(
        "extract",
        help="the lines of a failed CI log that explain the failure",
        description=(
            "Print the lines of a failed CI log that explain the failure, numbered, with "
            "`[... N lines omitted ...]` for the rest, within a token budget (1 token = 4 bytes of "
            "UTF-8, rounded up). Understands GitHub Actions logs and the output of common test "
            "runners, build tools and compilers. Works on logs of any size in bounded memory."
        ),
    )
    extract.add_argument("fail_log", metavar="FAIL_LOG", help="the failed job's log (a file, or - for stdin)")
    extract.add_argument(
        "--passing", "--pass-log", dest="passing", metavar="FILE",
        help="a passing log of the same job: lines only the failed log has are preferred, lines both have "
             "(up to timestamps, ids, durations) count as noise",
    )  # fmt: skip
    extract.add_argument(
        "--budget", type=_budget, default=DEFAULT_BUDGET, metavar="TOKENS",
        help=f"most tokens the excerpt may take (default: {DEFAULT_BUDGET})",
    )  # fmt: skip
    extract.add_argument("--json", action="store_true",
                         help='print {"lines": [[first, last], ...], "tokens": N, "text": "..."}')
    extract.set_defaults(handler=_extract)


def _readable(name: str, what: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise ConfigError(
            f"{what} {name} does not exist. Give the path of a saved job log, e.g. "
            f"`gh run view <run-id> --log-failed > job.log`, or - to read it from stdin."
        )
    if path.is_dir():
        raise ConfigError(f"{what} {name} is a folder; give the path of a log file.")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(f"cannot read {what} {name}: {error.strerror or error}") from None
    return path


@contextmanager
def _stdin_file() -> Iterator[Path]:
    """Standard input copied to a temporary file, so even a huge log is streamed, never held."""
    with tempfile.TemporaryDirectory(prefix="fixloop-log-") as folder:
        path = Path(folder) / "stdin.log"
        with path.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        yield path


def _extract(args: argparse.Namespace) -> int:
    pass_log = _readable(args.passing, "the passing log") if args.passing else None
    if args.fail_log == "-":
        with _stdin_file() as fail_log:
            evidence = extract_evidence(fail_log, pass_log, budget=args.budget)
    else:
        evidence = extract_evidence(_readable(args.fail_log, "the failed log"), pass_log, budget=args.budget)
    if args.json:
        print(json.dumps({"lines": [list(span) for span in evidence.lines], "tokens": evidence.tokens,
                          "text": evidence.text}))
    else:
        print(evidence.text)
    return 0
