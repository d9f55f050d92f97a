"""Failure evidence for a failed workflow run.

For each failed job: its log, and the log of the same job in the most recent successful run of
that workflow on the base branch (the pass log), reduced by `bot.logs` to the lines that explain
the failure. Only this evidence goes to the model, the check run and the pull request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot._process import run_shell
from bot.deflake import DeflakeTarget
from bot.github.client import GitHubClient, JobInfo, WorkflowRunInfo
from bot.logs import Evidence, extract_evidence, failing_tests
from bot.sandbox import Confinement
from bot.task import Context
from bot.triage import TriageReport, triage
from bot.workspace import Worktree, git

FAILED = ("failure", "timed_out")
_NUMBERED = re.compile(r"^\s*\d+: ")


@dataclass(frozen=True)
class JobEvidence:
    job: JobInfo
    evidence: Evidence | None  # None when the log has expired
    pass_run: int | None  # the green run whose log was the comparison

    @property
    def title(self) -> str:
        steps = f" (failed step: {', '.join(self.job.failed_steps)})" if self.job.failed_steps else ""
        return f"job {self.job.name}{steps}"


@dataclass(frozen=True)
class CIEvidence:
    run: WorkflowRunInfo
    jobs: list[JobEvidence]

    def failing_tests(self) -> list[str]:
        """Tests the evidence names as failing (its lines read `N: text`; the numbers are dropped)."""
        found: list[str] = []
        for job in self.jobs:
            if job.evidence:
                lines = "\n".join(_NUMBERED.sub("", line) for line in job.evidence.text.splitlines())
                found += [test for test in failing_tests(lines) if test not in found]
        return found

    def context(self) -> list[Context]:
        """The evidence as the model sees it: untrusted material, fenced with its provenance."""
        items = []
        for job in self.jobs:
            source = f"the log of {job.title} in run {self.run.id}"
            if job.evidence is None:
                items.append(Context(source=source, text="(the log has expired; only the job's name and steps are known)"))
            else:
                compared = f"; lines also in green run {job.pass_run} were left out" if job.pass_run else ""
                items.append(Context(source=source + compared, text=job.evidence.text))
        return items

    def markdown(self) -> str:
        parts = [f"Failed run: {self.run.url}"]
        for job in self.jobs:
            body = job.evidence.text if job.evidence else "(log expired)"
            parts.append(f"**{job.title}** ({job.evidence.tokens if job.evidence else 0} tokens of evidence)\n\n```\n{body}\n```")
        return "\n\n".join(parts)


def gather(github: GitHubClient, run: WorkflowRunInfo, base_branch: str, scratch: Path, *, budget: int = 4000) -> CIEvidence:
    scratch.mkdir(parents=True, exist_ok=True)
    failed = [job for job in github.jobs(run.id) if job.conclusion in FAILED]
    green = github.last_green_run(run.workflow_id, base_branch, before=run.id) if run.workflow_id else None
    green_jobs = {job.name: job for job in github.jobs(green)} if green else {}
    share = max(500, budget // max(1, len(failed)))
    jobs = []
    for job in failed:
        fail_log = scratch / f"job-{job.id}.log"
        if not github.download_job_log(job.id, fail_log):
            jobs.append(JobEvidence(job, None, None))
            continue
        twin = green_jobs.get(job.name)
        pass_log = scratch / f"job-{twin.id}-green.log" if twin else None
        if twin and pass_log and not github.download_job_log(twin.id, pass_log):
            pass_log = None
        evidence = extract_evidence(fail_log, pass_log, budget=share)
        jobs.append(JobEvidence(job, evidence, green if pass_log else None))
    return CIEvidence(run, jobs)


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

    def summary(self) -> str:
        if self.report is None:
            return "No failing test could be named from the log; the failure is treated as a regression."
        lines = [f"Triage ({self.report.runs_total} reruns):"]
        lines += [f"- `{t.test}`: {t.verdict} ({t.failures}/{t.runs} runs failed"
                  + (f"; polluter `{t.polluter}`" if t.polluter else "") + f"). {t.evidence}" for t in self.report.tests]
        return "\n".join(lines)


def diagnose(repo: Path, base_sha: str, tests: list[str], *, setup: list[str], env: dict[str, str],
             timeout: float, confidence: float, changed: dict[str, set[int]] | None, sandbox: str,
             environ: Mapping[str, str]) -> Diagnosis:
    """Triage the failing tests in a scratch worktree at the failing commit. The tests run confined
    (`sandbox`, the config's mode; `environ`, the runner's): the failing commit may hold code an agent
    wrote, fixloop's own earlier pull request among them."""
    if not tests:
        return Diagnosis("fix", None, None)
    worktree = Worktree.create(repo, base_sha)
    try:
        for command in setup:
            run_shell(command, cwd=worktree.root, env=env, timeout=timeout)
        with Confinement(sandbox, environ=environ, writable=[worktree.root],
                         readable=[worktree.common_dir, worktree.git_dir]) as confinement:
            report = triage(worktree.root, tests, confidence=confidence, changed_lines=changed, env=env,
                            timeout=timeout, confinement=confinement)
    finally:
        worktree.remove()
    verdicts = {t.verdict for t in report.tests}
    if "regression" in verdicts:
        return Diagnosis("fix", report, None)
    unstable = [t for t in report.tests if t.verdict in ("flaky", "order_dependent")]
    if unstable:
        first = unstable[0]
        neighbours = [t for t in tests if t != first.test and t.split("::")[0] == first.test.split("::")[0]]
        return Diagnosis("deflake", report, DeflakeTarget(first.test, first.polluter, neighbours))
    return Diagnosis("infrastructure", report, None)
