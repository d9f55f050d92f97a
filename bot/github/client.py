"""The only module that talks to GitHub's REST API (through PyGithub).

Small functions over plain data, so the rest of fixloop never touches PyGithub objects. All
calls go to the given API URL, so GitHub Enterprise Server works unchanged. Objects are lazy:
a reaction or a check-run update is one request, with no fetch first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import requests
from github import Auth, Github, GithubException, GithubRetry, UnknownObjectException
from requests import RequestException

from bot.errors import GitHubError

# PyGithub spaces out requests to respect GitHub's secondary rate limits (at most 80
# content-creating requests a minute); tests on loopback turn this off.
THROTTLE = True
# PyGithub retries 5xx and rate-limited 403/429 answers (honouring retry-after); this is the one
# retry layer for GitHub calls: 4 tries, exponential backoff from RETRY_BACKOFF seconds.
RETRIES = 4
RETRY_BACKOFF = 0.5


@dataclass(frozen=True)
class IssueInfo:
    number: int
    title: str
    body: str
    author: str
    url: str
    is_pull_request: bool


@dataclass(frozen=True)
class PullInfo:
    number: int
    title: str
    body: str
    author: str
    url: str
    head_ref: str
    head_sha: str
    head_repository: str | None  # None when the fork is gone
    base_ref: str
    draft: bool


@dataclass(frozen=True)
class WorkflowRunInfo:
    id: int
    name: str
    head_sha: str
    head_branch: str
    url: str
    conclusion: str | None
    workflow_id: int = 0
    pull_requests: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobInfo:
    id: int
    name: str
    conclusion: str | None
    failed_steps: tuple[str, ...]
    url: str


LOG_LIMIT = 512 * 1024 * 1024  # a job log is cut here; the evidence extractor reads it as a stream


def _pull_info(pull: Any) -> PullInfo:
    head_repo = pull.head.repo
    return PullInfo(
        number=pull.number, title=pull.title, body=pull.body or "", author=pull.user.login, url=pull.html_url,
        head_ref=pull.head.ref, head_sha=pull.head.sha, head_repository=head_repo.full_name if head_repo else None,
        base_ref=pull.base.ref, draft=bool(pull.draft),
    )


class GitHubClient:
    def __init__(self, *, token: str, api_url: str, repository: str) -> None:
        self.repository = repository
        self._github = Github(auth=Auth.Token(token), base_url=api_url.rstrip("/"), lazy=True,
                              seconds_between_requests=0.25 if THROTTLE else None,
                              seconds_between_writes=1.0 if THROTTLE else None,
                              retry=GithubRetry(total=RETRIES, backoff_factor=RETRY_BACKOFF))
        self._repo = self._github.get_repo(repository)  # lazy, like the client

    def _call(self, what: str, action: Any) -> Any:
        try:
            return action()
        except GithubException as error:
            message = error.data.get("message") if isinstance(error.data, dict) else error.data
            raise GitHubError(f"GitHub refused to {what} in {self.repository}: HTTP {error.status}: {message}") from None
        except RequestException as error:  # connection failures, and retries used up
            raise GitHubError(f"could not {what} in {self.repository}: {type(error).__name__}: {error}") from None

    # -- repository --------------------------------------------------------------------------
    def default_branch(self) -> str:
        return str(self._call("read the repository", lambda: self._github.get_repo(self.repository).default_branch))

    def branch_sha(self, branch: str) -> str | None:
        try:
            return str(self._repo.get_branch(branch).commit.sha)
        except UnknownObjectException:
            return None

    def file_text(self, path: str, ref: str) -> str | None:
        """A file's text at `ref`, or None if it does not exist."""
        try:
            content = self._repo.get_contents(path, ref=ref)
        except UnknownObjectException:
            return None
        except GithubException as error:
            raise GitHubError(f"could not read {path} at {ref}: HTTP {error.status}") from None
        if isinstance(content, list):
            raise GitHubError(f"{path} is a directory, not a file")
        return content.decoded_content.decode("utf-8", "replace")

    def permission(self, login: str) -> str:
        """The user's permission: admin, write, read or none (maintain counts as write)."""
        try:
            return str(self._repo.get_collaborator_permission(login))
        except GithubException:
            return "none"

    # -- issues and pull requests ------------------------------------------------------------
    def issue(self, number: int) -> IssueInfo:
        issue = self._repo.get_issue(number)
        self._call(f"read issue #{number}", lambda: issue.title)  # completes the lazy object
        return IssueInfo(number, issue.title, issue.body or "", issue.user.login, issue.html_url,
                         issue.pull_request is not None)

    def pull(self, number: int) -> PullInfo:
        pull = self._repo.get_pull(number)
        self._call(f"read pull request #{number}", lambda: pull.title)
        return _pull_info(pull)

    def open_pull_for(self, head_branch: str) -> PullInfo | None:
        owner = self.repository.split("/")[0]
        pulls = self._call("list pull requests", lambda: list(self._repo.get_pulls(state="open", head=f"{owner}:{head_branch}")))
        return _pull_info(pulls[0]) if pulls else None

    def create_draft_pull(self, *, title: str, body: str, head: str, base: str) -> PullInfo:
        pull = self._call("open a pull request",
                          lambda: self._repo.create_pull(title=title, body=body, head=head, base=base, draft=True))
        return _pull_info(pull)

    def update_pull(self, number: int, *, title: str, body: str) -> None:
        self._call(f"update pull request #{number}", lambda: self._repo.get_pull(number).edit(title=title, body=body))

    def add_labels(self, number: int, labels: list[str]) -> None:
        if labels:
            self._call("add labels", lambda: self._repo.get_issue(number).add_to_labels(*labels))

    def request_reviewers(self, number: int, reviewers: list[str]) -> None:
        if reviewers:
            self._call("request reviewers", lambda: self._repo.get_pull(number).create_review_request(reviewers=reviewers))

    def comment(self, number: int, body: str) -> str:
        created = self._call("comment", lambda: self._repo.get_issue(number).create_comment(body))
        return str(created.html_url)

    def react(self, comment_id: int, kind: str, content: str) -> None:
        """React to an issue comment (kind "issue") or a review comment (kind "review")."""
        # Comment URLs do not contain the issue number, so any lazy parent will do.
        if kind == "review":
            self._call("react", lambda: self._repo.get_pull(1).get_review_comment(comment_id).create_reaction(content))
        else:
            self._call("react", lambda: self._repo.get_issue(1).get_comment(comment_id).create_reaction(content))

    # -- check runs ----------------------------------------------------------------------------
    def create_check_run(self, *, name: str, head_sha: str, status: str, output: dict[str, Any],
                         conclusion: str | None = None, details_url: str | None = None,
                         external_id: str | None = None, actions: list[dict[str, str]] | None = None) -> int:
        extra: dict[str, Any] = {"conclusion": conclusion} if conclusion else {}
        for key, value in (("details_url", details_url), ("external_id", external_id), ("actions", actions)):
            if value:
                extra[key] = value
        run = self._call(f"create check run {name!r}", lambda: self._repo.create_check_run(
            name=name, head_sha=head_sha, status=status, output=output, **extra))
        return int(run.id)

    def update_check_run(self, check_run_id: int, *, output: dict[str, Any], status: str | None = None,
                         conclusion: str | None = None, actions: list[dict[str, str]] | None = None) -> None:
        changes: dict[str, Any] = {"output": output}
        if actions is not None:
            changes["actions"] = actions
        if conclusion:
            changes["conclusion"] = conclusion
        elif status:
            changes["status"] = status
        self._call("update a check run", lambda: self._repo.get_check_run(check_run_id).edit(**changes))

    # -- actions -------------------------------------------------------------------------------
    def cancel_active_runs(self, workflow_file: str, number: int, *, except_run: int | None) -> list[int]:
        """Cancel the unfinished runs of a workflow whose title names `#number` (and not `#number0`)."""
        names_target = re.compile(rf"#{number}(?!\d)")
        workflow = self._repo.get_workflow(workflow_file)
        cancelled = []
        for status in ("in_progress", "queued", "waiting", "pending", "requested"):
            for run in self._call("list workflow runs", lambda s=status: list(workflow.get_runs(status=s))):
                if run.id != except_run and names_target.search(run.display_title or ""):
                    self._call("cancel a workflow run", run.cancel)
                    cancelled.append(int(run.id))
        return cancelled

    def workflow_run(self, run_id: int) -> WorkflowRunInfo:
        run = self._repo.get_workflow_run(run_id)
        self._call(f"read workflow run {run_id}", lambda: run.head_sha)
        return WorkflowRunInfo(id=run_id, name=run.name or run.path, head_sha=run.head_sha,
                               head_branch=run.head_branch or "", url=run.html_url, conclusion=run.conclusion,
                               workflow_id=run.workflow_id, pull_requests=tuple(p.number for p in run.pull_requests))

    def jobs(self, run_id: int) -> list[JobInfo]:
        jobs = self._call(f"list the jobs of run {run_id}", lambda: list(self._repo.get_workflow_run(run_id).jobs()))
        return [JobInfo(id=job.id, name=job.name, conclusion=job.conclusion, url=job.html_url,
                        failed_steps=tuple(step.name for step in job.steps if step.conclusion == "failure"))
                for job in jobs]

    def last_green_run(self, workflow_id: int, branch: str, *, before: int) -> int | None:
        """The most recent successful run of the workflow on `branch`, older than run `before`."""
        runs = self._call("list workflow runs", lambda: list(
            islice(self._repo.get_workflow(workflow_id).get_runs(branch=branch, status="success"), 20)))
        return next((int(run.id) for run in runs if run.id != before), None)

    def download_job_log(self, job_id: int, destination: Path) -> bool:
        """Save a job's log (GitHub answers with a redirect to the text); False when it has expired."""
        job = self._repo.get_workflow_job(job_id)  # lazy: only the log request is made
        try:
            location = job.logs_url()
        except GithubException as error:
            if error.status in (404, 410):
                return False
            raise GitHubError(f"could not read the log of job {job_id}: HTTP {error.status}") from None
        try:
            with requests.get(location, stream=True, timeout=60) as response:
                response.raise_for_status()
                written = 0
                with destination.open("wb") as handle:
                    for chunk in response.iter_content(1 << 20):
                        handle.write(chunk[: LOG_LIMIT - written])
                        written += len(chunk)
                        if written >= LOG_LIMIT:
                            break
        except RequestException as error:
            raise GitHubError(f"could not download the log of job {job_id}: {error}") from None
        return True

    def dispatch(self, workflow_file: str, ref: str, inputs: dict[str, str]) -> tuple[int | None, str | None]:
        """Start the workflow; the run's id and URL when the server returns them (github.com does)."""
        workflow = self._repo.get_workflow(workflow_file)
        try:
            result = self._call(f"dispatch {workflow_file}", lambda: workflow.create_dispatch(
                ref, inputs, throw=True, return_run_details=True))
        except GitHubError as error:
            if "return_run_details" not in str(error):
                raise
            # Older GitHub Enterprise Server versions do not know the field.
            result = self._call(f"dispatch {workflow_file}", lambda: workflow.create_dispatch(ref, inputs, throw=True))
        if isinstance(result, bool):
            return None, None
        return int(result.id), str(result.html_url)

    def find_run(self, workflow_file: str, title_contains: str) -> tuple[int, str] | None:
        """A recent workflow_dispatch run whose title carries `title_contains` (the correlation id)."""
        # islice, not [:20]: slicing an empty PaginatedList raises IndexError.
        runs = self._call("list workflow runs", lambda: list(
            islice(self._repo.get_workflow(workflow_file).get_runs(event="workflow_dispatch"), 20)))
        for run in runs:
            if title_contains in (run.display_title or ""):
                return int(run.id), str(run.html_url)
        return None

    def has_workflow(self, workflow_file: str) -> bool:
        try:
            self._repo.get_workflow(workflow_file).id  # noqa: B018 - completes the lazy object
        except UnknownObjectException:
            return False
        return True
