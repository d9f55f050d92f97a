"""Differential coverage (DeFlaker): does the failing test execute any line of the change under test?

A test that fails without executing a changed line cannot have been broken by that change (as
far as statement coverage can tell): its failure is most likely flaky or environmental. One run
under coverage.py, measuring only the changed files, answers the question.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot._process import regular_file
from bot.triage._runner import Run, Runner


@dataclass(frozen=True)
class Touch:
    run: Run | None  # the run under coverage (an isolated run of the test), None if it could not be made
    touched: dict[str, list[int]] | None  # changed lines executed, per file; None when not measurable
    note: str  # one phrase for the evidence

    @property
    def executes_change(self) -> bool | None:
        return None if self.touched is None else bool(self.touched)


def resolve_changes(repo: Path, changed_lines: Mapping[str, set[int]]) -> dict[Path, tuple[str, set[int]]]:
    """Changed Python files as absolute paths -> (the name given, changed lines)."""
    resolved: dict[Path, tuple[str, set[int]]] = {}
    for name, lines in changed_lines.items():
        if not lines or not name.endswith(".py"):
            continue
        path = Path(name) if Path(name).is_absolute() else repo / name
        resolved[path.resolve()] = (name, set(lines))
    return resolved


def measure(runner: Runner, test: str, changes: dict[Path, tuple[str, set[int]]]) -> Touch:
    """Run `test` once under coverage.py and intersect the executed lines with `changes`."""
    if not changes:
        return Touch(None, None, "no changed Python line to check coverage against")
    python = runner.python
    if not runner.can_import(python, "coverage"):
        return Touch(None, None,
                     f"coverage.py is not installed for {python}, so the changed lines could not be checked")
    data_file = runner.junit_path().with_suffix(".coverage")
    rcfile = data_file.with_suffix(".rc")
    # The project's own coverage settings (source, omit, parallel) must not apply. Created new and never
    # through a link: the tests, which can write this folder, could have put one there.
    os.close(os.open(rcfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    include = ",".join(str(path) for path in changes)
    prefix = [python, "-m", "coverage", "run", f"--data-file={data_file}", f"--rcfile={rcfile}", f"--include={include}"]
    run = runner.pytest([test], prefix=prefix)
    if not regular_file(data_file):
        return Touch(run, None, "coverage.py produced no data, so the changed lines could not be checked")
    # Imported here, so that importing fixloop does not load coverage.py.
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    touched: dict[str, list[int]] = {}
    for measured in data.measured_files():
        found = changes.get(Path(measured).resolve())
        executed = set(data.lines(measured) or ())
        if found and executed & found[1]:
            touched[found[0]] = sorted(executed & found[1])
    data_file.unlink(missing_ok=True)
    rcfile.unlink(missing_ok=True)
    if touched:
        where = ", ".join(f"{name}:{','.join(map(str, lines[:5]))}" for name, lines in sorted(touched.items()))
        note = f"executes changed lines ({where}), which supports a regression"
    else:
        note = "executes none of the changed lines, so the change under test cannot explain the failure (DeFlaker)"
    return Touch(run, touched, note)


__all__ = ["Touch", "measure", "resolve_changes"]
