"""Differential coverage (DeFlaker): does the failing test execute any line of the change under test?

A test that fails without executing a changed line cannot have been broken by that change (as
far as statement coverage can tell): its failure is most likely flaky or environmental. One run
under the framework's coverage tool (coverage.py for pytest, `go test -coverprofile` for Go),
measuring the changed files, answers the question. Where fixloop knows no coverage tool for the
framework, the evidence says so and triage goes on without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    """Changed files as absolute paths -> (the name given, changed lines)."""
    resolved: dict[Path, tuple[str, set[int]]] = {}
    for name, lines in changed_lines.items():
        if lines:
            path = Path(name) if Path(name).is_absolute() else repo / name
            resolved[path.resolve()] = (name, set(lines))
    return resolved


def measure(runner: Runner, test: str, changes: dict[Path, tuple[str, set[int]]]) -> Touch:
    """Run `test` once under coverage and intersect the executed lines with `changes`."""
    framework = runner.framework
    if runner.by_exit_code or not framework.coverage_suffixes:
        tool = "a --command template" if runner.by_exit_code else framework.name
        return Touch(None, None, f"differential coverage not used: fixloop knows no coverage tool for {tool}")
    measured = {path: change for path, change in changes.items() if path.suffix in framework.coverage_suffixes}
    if not measured:
        kinds = "/".join(framework.coverage_suffixes)
        return Touch(None, None, f"differential coverage not used: the change has no {kinds} line to check against")
    probe = framework.coverage_probe()
    if probe is not None and not runner.succeeds(probe):
        return Touch(None, None, f"differential coverage not used: `{probe}` failed (is the coverage tool installed "
                                 "where the tests run?)")
    data = runner.scratch_file(".coverage")
    try:
        command = framework.under_coverage([test], data, sorted(measured))
        if command is None:
            return Touch(None, None, f"differential coverage not used: {framework.name} cannot measure {test} in "
                                     "one run")
        run = runner.execute(command, [test])
        covered = framework.covered_lines(data, runner.repo)
    except OSError as error:  # the tests, which can write the scratch folder, may have put something in the way
        return Touch(None, None, f"the changed lines could not be checked ({error.strerror or error})")
    for leftover in runner.scratch.glob(f"{data.stem}.*"):
        leftover.unlink(missing_ok=True)
    if covered is None:
        return Touch(run, None, "the coverage run produced no data, so the changed lines could not be checked")
    touched: dict[str, list[int]] = {}
    for path, (name, lines) in measured.items():
        if executed := covered.get(path, set()) & lines:
            touched[name] = sorted(executed)
    if touched:
        where = ", ".join(f"{name}:{','.join(map(str, lines[:5]))}" for name, lines in sorted(touched.items()))
        note = f"executes changed lines ({where}), which supports a regression"
    else:
        note = "executes none of the changed lines, so the change under test cannot explain the failure (DeFlaker)"
    return Touch(run, touched, note)


__all__ = ["Touch", "measure", "resolve_changes"]
