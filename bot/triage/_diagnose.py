"""From failing tests to the kind of session a CI failure calls for: triage the tests at the
failing commit, confined, and read the verdicts as fix, deflake or infrastructure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot._process import cap_text, run_shell
from bot.deflake import DeflakeTarget
from bot.errors import ConfigError
from bot.frameworks import Framework
from bot.sandbox import Confinement
from bot.triage._triage import TriageReport, triage
from bot.workspace import Worktree, git


def changed_lines(repo: Path, old: str, new: str) -> dict[str, set[int]]:
    """Lines of `new` that differ from `old`, per file: the change under test, for DeFlaker's check."""
    changed: dict[str, set[int]] = {}
    path = None
    for text in git("diff", "--unified=0", "--no-color", old, new, cwd=repo).splitlines():
        if text.startswith("+++ "):
            path = text[6:] if text.startswith("+++ b/") else None
        elif text.startswith("@@") and path:
            match = re.search(r"\+(\d+)(?:,(\d+))?", text)
            if match:
                start, count = int(match.group(1)), int(match.group(2) or 1)
                changed.setdefault(path, set()).update(range(start, start + count))
    return changed


@dataclass(frozen=True)
class Diagnosis:
    """What the failing tests are, and so what kind of session (if any) the failure calls for."""

    kind: str  # "fix", "deflake" or "infrastructure"
    report: TriageReport | None
    deflake: DeflakeTarget | None
    skipped: str | None = None  # why triage was skipped, when it was

    def summary(self) -> str:
        if self.skipped is not None:
            return f"Triage skipped: {self.skipped}\nThe failure is treated as a regression, from the log's evidence."
        if self.report is None:
            return "No failing test could be named from the log; the failure is treated as a regression."
        lines = [f"Triage ({self.report.runs_total} reruns):"]
        lines += [f"- `{t.test}`: {t.verdict} ({t.failures}/{t.runs} runs failed"
                  + (f"; polluter `{t.polluter}`" if t.polluter else "") + f"). {t.evidence}"
                  for t in self.report.tests]
        return "\n".join(lines)


def diagnose(repo: Path, base_sha: str, tests: list[str], *, framework: Framework | None, setup: list[str],
             env: dict[str, str], timeout: float, confidence: float, changed: dict[str, set[int]] | None, sandbox: str,
             environ: Mapping[str, str]) -> Diagnosis:
    """Triage the failing tests in a scratch worktree at the failing commit, through `framework` (None:
    a language fixloop does not know, so no triage). The tests run confined (`sandbox`, the config's
    mode; `environ`, the runner's): the failing commit may hold code an agent wrote, fixloop's own
    earlier pull request among them. A triage that cannot run the tests becomes a fix session that
    says so, never an error."""
    if not tests:
        return Diagnosis("fix", None, None)
    if framework is None:
        return Diagnosis("fix", None, None, skipped=(
            "fixloop does not know this repository's test framework, so it cannot rerun the failing tests one by "
            "one (set `tests.framework` and `tests.run` in .github/fixloop.yml to enable it)."))
    worktree = Worktree.create(repo, base_sha)
    try:
        for command in setup:
            run_shell(command, cwd=worktree.root, env=env, timeout=timeout)
        with Confinement(sandbox, environ=environ, writable=[worktree.root],
                         readable=[worktree.common_dir, worktree.git_dir]) as confinement:
            report = triage(worktree.root, tests, confidence=confidence, changed_lines=changed, env=env,
                            timeout=timeout, confinement=confinement, framework=framework)
    except ConfigError as error:
        reason = cap_text(str(error), 1_500)
        return Diagnosis("fix", None, None, skipped=f"the failing tests could not be rerun:\n{reason}")
    except Exception as error:  # noqa: BLE001  # the tests under triage are untrusted: any failure is theirs
        reason = f"{type(error).__name__}: {cap_text(str(error), 500)}"
        return Diagnosis("fix", None, None, skipped=f"triage failed ({reason})")
    finally:
        worktree.remove()
    verdicts = {t.verdict for t in report.tests}
    if "regression" in verdicts:
        return Diagnosis("fix", report, None)
    unstable = [t for t in report.tests if t.verdict in ("flaky", "order_dependent")]
    if unstable:
        first = unstable[0]
        neighbours = [t for t in tests if t != first.test and framework.group(t) == framework.group(first.test)]
        return Diagnosis("deflake", report, DeflakeTarget(first.test, first.polluter, neighbours))
    return Diagnosis("infrastructure", report, None)
