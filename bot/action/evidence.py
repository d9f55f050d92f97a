"""Failure evidence for a failed workflow run.

For each failed job: its log, and the log of the same job in the most recent successful run of
that workflow on the base branch (the pass log), reduced by `bot.logs` to the lines that explain
the failure. Only this evidence goes to the model, the check run and the pull request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.github.client import GitHubClient, JobInfo, WorkflowRunInfo
from bot.logs import Evidence, extract_evidence, failing_tests
from bot.task import Context

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
                expired = "(the log has expired; only the job's name and steps are known)"
                items.append(Context(source=source, text=expired))
            else:
                compared = f"; lines also in green run {job.pass_run} were left out" if job.pass_run else ""
                items.append(Context(source=source + compared, text=job.evidence.text))
        return items

    def markdown(self) -> str:
        parts = [f"Failed run: {self.run.url}"]
        for job in self.jobs:
            body = job.evidence.text if job.evidence else "(log expired)"
            tokens = job.evidence.tokens if job.evidence else 0
            parts.append(f"**{job.title}** ({tokens} tokens of evidence)\n\n```\n{body}\n```")
        return "\n\n".join(parts)


def gather(github: GitHubClient, run: WorkflowRunInfo, base_branch: str, scratch: Path, *,
           budget: int = 4000) -> CIEvidence:
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
