"""The only module that talks to GitHub's REST API (through PyGithub).

Small functions over plain data, so the rest of fixloop never touches PyGithub objects. All
calls go to the given API URL, so GitHub Enterprise Server works unchanged. Objects are lazy:
a reaction or a check-run update is one request, with no fetch first.

Creating is idempotent: a POST whose answer is lost (5xx, dropped connection, timeout) may
still have been carried out, so it is never resent blindly; `_retried` looks for what it would
have made first (comments and check runs carry a hidden key for that, pull requests are found
by branch, dispatched runs by correlation id). Right after a create, GitHub's replicas may answer
404 for the new object; requests on what this client made retry that, others do not.
"""

from __future__ import annotations

import io
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar

import requests
from github import Auth, Github, GithubException, GithubRetry, UnknownObjectException
from github.WorkflowRun import WorkflowRun
from requests import RequestException

from bot.errors import GitHubError
from bot.github.limits import CHECK_TEXT_LIMIT

FIND_RUN_DEPTH = 500  # runs looked through for a dispatch whose answer was lost
ARTIFACT_LIMIT = 100 * 1024 * 1024  # the largest artifact fixloop downloads (a session folder is far smaller)
ARTIFACT_FILE_LIMIT = 5 * 1024 * 1024  # the largest file it reads out of one

# How far back to look for a comment an earlier attempt may have made: GitHub's clock and the
# runner's can disagree by a little.
CLOCK_SKEW = timedelta(minutes=10)

T = TypeVar("T")


class _Retry(GithubRetry):
    """PyGithub's retry, except for POSTs, which create things: one is resent only after a
    rate-limit answer (GitHub refused it, so nothing was made). After a 5xx, a dropped
    connection or a timeout it may have been carried out, and `GitHubClient._retried` decides.
    PATCH (which sets fields) is retried like GET, PUT and DELETE."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allowed_methods", frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"}))
        super().__init__(**kwargs)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method == "POST":  # GithubRetry.increment resends a 403 only when it is a rate limit
            return status_code == 403 or (status_code == 429 and has_retry_after)
        return bool(super().is_retry(method, status_code, has_retry_after))


@dataclass(frozen=True)
class RequestPolicy:
    """How fixloop paces, times out and retries its requests to GitHub: every PyGithub client it
    makes (`GitHubClient`, the App's `InstallationTokens`) is built by `github`. Tests against the
    loopback fake pass `RequestPolicy(throttle=False, backoff=0)`."""

    # PyGithub spaces out requests to respect GitHub's secondary rate limits (at most 80
    # content-creating requests a minute).
    throttle: bool = True
    # PyGithub retries 5xx and rate-limited 403/429 answers (honouring retry-after), dropped
    # connections and timeouts, with exponential backoff from `backoff` seconds. POSTs are the
    # exception (see `_Retry`): `GitHubClient._retried` retries them, and 404s of objects just
    # created, with the same numbers.
    retries: int = 4
    backoff: float = 0.5
    # Seconds to wait for an answer (an int: PyGithub's type). GitHub answers in a second or two;
    # past this the connection is given up and the request counts as failed (and is retried).
    timeout: int = 15

    def github(self, auth: Auth.Auth, api_url: str) -> Github:
        """A PyGithub client for `api_url` that follows this policy."""
        return Github(auth=auth, base_url=api_url.rstrip("/"), lazy=True, timeout=self.timeout, per_page=100,
                      seconds_between_requests=0.25 if self.throttle else None,
                      seconds_between_writes=1.0 if self.throttle else None,
                      retry=_Retry(total=self.retries, backoff_factor=self.backoff))

    def pause(self, attempt: int) -> None:
        """The wait before retry `attempt` (from 0) of what urllib3 does not retry itself."""
        time.sleep(self.backoff * 2**attempt)


def _may_have_happened(error: Exception) -> bool:
    """Whether a failed POST may still have been carried out: no answer, or a server error."""
    return isinstance(error, RequestException) or (isinstance(error, GithubException) and error.status >= 500)


def _nothing_to_find() -> None:
    """The `find` of a POST that is harmless to repeat (a label, a reaction): just send it again."""


def _tagged(text: str, key: str) -> str:
    """`text` with a hidden line by which `_retried` recognises what it made (within GitHub's limit)."""
    tag = f"\n\n<!-- fixloop create={key} -->"
    return text[: CHECK_TEXT_LIMIT - len(tag)] + tag


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


class Repository(Protocol):
    """What deciding and planning read from, and write to, one repository on GitHub: `GitHubClient`,
    or a stand-in such as the Action's rehearsal (`fixloop action --event FILE --dry-run`)."""

    def file_text(self, path: str, ref: str) -> str | None: ...
    def permission(self, login: str) -> str: ...
    def issue(self, number: int) -> IssueInfo: ...
    def pull(self, number: int) -> PullInfo: ...
    def branch_sha(self, branch: str) -> str | None: ...
    def open_pull_for(self, head_branch: str) -> PullInfo | None: ...
    def workflow_run(self, run_id: int) -> WorkflowRunInfo: ...
    def comment(self, number: int, body: str) -> str: ...
    def react(self, comment_id: int, kind: str, content: str) -> None: ...
    def cancel_active_runs(self, workflow_file: str, number: int, *, except_run: int | None) -> list[int]: ...
    def create_check_run(self, *, name: str, head_sha: str, status: str, output: dict[str, Any],
                         conclusion: str | None = None, details_url: str | None = None,
                         external_id: str | None = None, actions: list[dict[str, str]] | None = None) -> int: ...


class GitHubClient:
    def __init__(self, *, token: str, api_url: str, repository: str, policy: RequestPolicy = RequestPolicy()) -> None:
        self.repository, self.policy = repository, policy
        self._token = token
        self._github = policy.github(Auth.Token(token), api_url)
        self._repo = self._github.get_repo(repository)  # lazy, like the client
        self._created: set[str] = set()  # "check-run:<id>", "issue:<number>": what this client made

    def _failure(self, what: str, error: GithubException | RequestException) -> GitHubError:
        if isinstance(error, GithubException):
            message = error.data.get("message") if isinstance(error.data, dict) else error.data
            return GitHubError(f"GitHub refused to {what} in {self.repository}: HTTP {error.status}: {message}")
        # connection failures and timeouts, and retries used up
        return GitHubError(f"could not {what} in {self.repository}: {type(error).__name__}: {error}")

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (GithubException, RequestException) as error:
            raise self._failure(what, error) from None

    def _retried(self, what: str, action: Callable[[], T], *, find: Callable[[], T | None] | None = None,
                 created: str | None = None) -> T:
        """`action`, retried where urllib3 cannot tell whether to (up to `policy.retries` times).

        `find`, for a POST (urllib3 never resends one after a lost answer): when the answer is lost,
        the POST may have been carried out, so `find` looks for what it made, and only if nothing is
        found is it sent again. `created`, the key of an object this client made: a 404 is then
        GitHub's replicas lagging behind the create, and is retried.
        """
        attempt = 0
        while True:
            try:
                return action()
            except (GithubException, RequestException) as error:
                # A resend refused as a duplicate (422) means the earlier attempt went through after
                # all and `find` missed it (GitHub's lists can lag): look again.
                refused_as_made = attempt > 0 and isinstance(error, GithubException) and error.status == 422
                lost = find is not None and (_may_have_happened(error) or refused_as_made)
                lagging = isinstance(error, UnknownObjectException) and created in self._created
                if attempt == self.policy.retries or not (lost or lagging):
                    raise self._failure(what, error) from None
            self.policy.pause(attempt)
            attempt += 1
            if find is not None:
                found = self._call(f"check whether an attempt to {what} went through", find)
                if found is not None:
                    return found

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
        pulls = self._call("list pull requests",
                           lambda: list(self._repo.get_pulls(state="open", head=f"{owner}:{head_branch}")))
        return _pull_info(pulls[0]) if pulls else None

    def create_draft_pull(self, *, title: str, body: str, head: str, base: str) -> PullInfo:
        """A draft pull request from `head`; there is at most one open per branch, so an earlier
        attempt that went through is found by its branch."""
        pull = self._retried("open a pull request", lambda: _pull_info(self._repo.create_pull(
            title=title, body=body, head=head, base=base, draft=True)), find=lambda: self.open_pull_for(head))
        self._created.add(f"issue:{pull.number}")
        return pull

    def update_pull(self, number: int, *, title: str, body: str) -> None:
        self._retried(f"update pull request #{number}",
                      lambda: self._repo.get_pull(number).edit(title=title, body=body), created=f"issue:{number}")

    def add_labels(self, number: int, labels: list[str]) -> None:
        if labels:
            self._retried("add labels", lambda: self._repo.get_issue(number).add_to_labels(*labels),
                          find=_nothing_to_find, created=f"issue:{number}")

    def request_reviewers(self, number: int, reviewers: list[str]) -> None:
        if reviewers:
            self._retried("request reviewers",
                          lambda: self._repo.get_pull(number).create_review_request(reviewers=reviewers),
                          find=_nothing_to_find, created=f"issue:{number}")

    def add_assignees(self, number: int, logins: list[str]) -> None:
        """Assign people to an issue or pull request (GitHub leaves out, silently, anyone who may not be)."""
        if logins:
            self._retried("add assignees", lambda: self._repo.get_issue(number).add_to_assignees(*logins),
                          find=_nothing_to_find, created=f"issue:{number}")

    def bot_comments(self, number: int, mark: str) -> list[str]:
        """The bodies of the comments on an issue or pull request that an app wrote and that hold `mark`,
        oldest first."""
        return self._call(f"read the comments of #{number}", lambda: [
            c.body for c in self._repo.get_issue(number).get_comments()
            if c.user.type == "Bot" and mark in (c.body or "")])

    def open_bot_issues(self, mark: str, limit: int = 500) -> list[IssueInfo]:
        """Open issues (not pull requests) that an app opened and whose body holds `mark`, among the newest
        `limit` open ones."""
        def read() -> list[IssueInfo]:
            found = []
            for index, issue in enumerate(self._repo.get_issues(state="open")):
                if index == limit:
                    break
                if issue.pull_request is None and issue.user.type == "Bot" and mark in (issue.body or ""):
                    found.append(IssueInfo(issue.number, issue.title, issue.body or "", issue.user.login,
                                           issue.html_url, False))
            return found
        return self._call("list open issues", read)

    def comment(self, number: int, body: str) -> str:
        """Comment on an issue or pull request; the comment's hidden key tells whether an
        attempt whose answer was lost made it."""
        key = uuid.uuid4().hex
        since = datetime.now(UTC) - CLOCK_SKEW
        issue = self._repo.get_issue(number)

        def find() -> str | None:
            return next((str(c.html_url) for c in issue.get_comments(since=since) if key in c.body), None)

        return self._retried("comment", lambda: str(issue.create_comment(_tagged(body, key)).html_url), find=find)

    def open_issue(self, title: str, body: str, labels: list[str] | None = None) -> tuple[int, str]:
        """Open an issue; its number and URL."""
        issue = self._call("open an issue", lambda: self._repo.create_issue(title=title, body=body,
                                                                            labels=labels or []))
        self._created.add(f"issue:{issue.number}")
        return int(issue.number), str(issue.html_url)

    def edit_issue(self, number: int, body: str) -> None:
        """Replace an issue's body (a PATCH: sending it again does no harm)."""
        self._retried(f"edit issue #{number}", lambda: self._repo.get_issue(number).edit(body=body),
                      find=None, created=f"issue:{number}")

    def react(self, comment_id: int, kind: str, content: str) -> None:
        """React to an issue comment (kind "issue") or a review comment (kind "review")."""
        # Comment URLs do not contain the issue number, so any lazy parent will do.
        if kind == "review":
            self._retried("react",
                          lambda: self._repo.get_pull(1).get_review_comment(comment_id).create_reaction(content),
                          find=_nothing_to_find)
        else:
            self._retried("react", lambda: self._repo.get_issue(1).get_comment(comment_id).create_reaction(content),
                          find=_nothing_to_find)

    # -- check runs ----------------------------------------------------------------------------
    def create_check_run(self, *, name: str, head_sha: str, status: str, output: dict[str, Any],
                         conclusion: str | None = None, details_url: str | None = None,
                         external_id: str | None = None, actions: list[dict[str, str]] | None = None) -> int:
        """The new check run's id. Its summary carries a hidden key, by which an attempt whose
        answer was lost is found among the check runs of `head_sha` with that name."""
        extra: dict[str, Any] = {"conclusion": conclusion} if conclusion else {}
        for field, value in (("details_url", details_url), ("external_id", external_id), ("actions", actions)):
            if value:
                extra[field] = value
        key = uuid.uuid4().hex
        tagged = {**output, "summary": _tagged(output.get("summary", ""), key)}

        def find() -> int | None:
            runs = self._repo.get_commit(head_sha).get_check_runs(check_name=name, filter="all")
            return next((int(run.id) for run in runs if key in (run.output.summary or "")), None)

        check_id = self._retried(f"create check run {name!r}", lambda: int(self._repo.create_check_run(
            name=name, head_sha=head_sha, status=status, output=tagged, **extra).id), find=find)
        self._created.add(f"check-run:{check_id}")
        return check_id

    def update_check_run(self, check_run_id: int, *, output: dict[str, Any], status: str | None = None,
                         conclusion: str | None = None, actions: list[dict[str, str]] | None = None) -> None:
        changes: dict[str, Any] = {"output": output}
        if actions is not None:
            changes["actions"] = actions
        if conclusion:
            changes["conclusion"] = conclusion
        elif status:
            changes["status"] = status
        self._retried("update a check run", lambda: self._repo.get_check_run(check_run_id).edit(**changes),
                      created=f"check-run:{check_run_id}")

    # -- actions -------------------------------------------------------------------------------
    def cancel_active_runs(self, workflow_file: str, number: int, *, except_run: int | None) -> list[int]:
        """Cancel the unfinished runs of a workflow whose title names `#number` (and not `#number0`)."""
        names_target = re.compile(rf"#{number}(?!\d)")
        workflow = self._repo.get_workflow(workflow_file)
        cancelled = []

        def runs(status: str) -> list[Any]:
            return self._call("list workflow runs", lambda: list(workflow.get_runs(status=status)))

        for status in ("in_progress", "queued", "waiting", "pending", "requested"):
            for run in runs(status):
                if run.id != except_run and names_target.search(run.display_title or ""):
                    self._retried("cancel a workflow run", run.cancel, find=_nothing_to_find)
                    cancelled.append(int(run.id))
        return cancelled

    def cancel_run(self, run_id: int) -> None:
        """Cancel a workflow run (GitHub answers 409 for a run that has already ended)."""
        run = self._call(f"read workflow run {run_id}", lambda: self._repo.get_workflow_run(run_id))
        self._retried("cancel a workflow run", run.cancel, find=_nothing_to_find)

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

    def artifact_file(self, run_id: int, artifact: str, path: str, limit: int = ARTIFACT_FILE_LIMIT) -> bytes | None:
        """The file `path` in the run's artifact named `artifact` (GitHub answers the download with a
        redirect to the zip); None when there is no such artifact or file, or it has expired."""
        try:
            found = [a for a in self._repo.get_workflow_run(run_id).get_artifacts() if a.name == artifact]
        except UnknownObjectException:  # the run is gone (deleted, or past the retention period)
            return None
        except GithubException as error:
            raise GitHubError(f"could not list the artifacts of run {run_id}: HTTP {error.status}") from None
        except RequestException as error:
            raise GitHubError(f"could not list the artifacts of run {run_id}: {error}") from None
        if not found or found[0].expired:
            return None
        try:
            with requests.get(found[0].archive_download_url, headers={"Authorization": f"Bearer {self._token}"},
                              stream=True, timeout=60) as response:
                if response.status_code in (404, 410):
                    return None
                response.raise_for_status()
                data = response.raw.read(ARTIFACT_LIMIT + 1, decode_content=True)
        except RequestException as error:
            raise GitHubError(f"could not download the artifact {artifact} of run {run_id}: {error}") from None
        if len(data) > ARTIFACT_LIMIT:
            return None
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                member = archive.getinfo(path)
                if member.file_size > limit:
                    return None
                return archive.read(member)
        except (KeyError, zipfile.BadZipFile):
            return None

    def dispatch(self, workflow_file: str, ref: str, inputs: dict[str, str]) -> tuple[int | None, str | None]:
        """Start the workflow; the run's id and URL when the server returns them (github.com does)."""
        workflow = self._repo.get_workflow(workflow_file)
        correlation = inputs.get("correlation_id")

        def find() -> tuple[int | None, str | None] | None:
            # The run's title carries the correlation id; without one, nothing can be recognised.
            return self.find_run(workflow_file, correlation) if correlation else None

        def post(details: bool) -> tuple[int | None, str | None]:
            result: bool | WorkflowRun = (workflow.create_dispatch(ref, inputs, throw=True, return_run_details=True)
                                          if details else workflow.create_dispatch(ref, inputs, throw=True))
            return (None, None) if isinstance(result, bool) else (int(result.id), str(result.html_url))

        try:
            return self._retried(f"dispatch {workflow_file}", lambda: post(True), find=find)
        except GitHubError as error:
            if "return_run_details" not in str(error):
                raise
            # Older GitHub Enterprise Server versions do not know the field.
            return self._retried(f"dispatch {workflow_file}", lambda: post(False), find=find)

    def find_run(self, workflow_file: str, title_contains: str) -> tuple[int, str] | None:
        """A recent workflow_dispatch run whose title carries `title_contains` (the correlation id), among
        the latest FIND_RUN_DEPTH (a burst of dispatches can put hundreds after it), newest first."""
        def search() -> tuple[int, str] | None:
            # islice, not [:n]: slicing an empty PaginatedList raises IndexError; pages load as they are read.
            runs = self._repo.get_workflow(workflow_file).get_runs(event="workflow_dispatch")
            for run in islice(runs, FIND_RUN_DEPTH):
                if title_contains in (run.display_title or ""):
                    return int(run.id), str(run.html_url)
            return None

        return self._call("list workflow runs", search)

    def has_workflow(self, workflow_file: str) -> bool:
        try:
            self._repo.get_workflow(workflow_file).id  # noqa: B018 - completes the lazy object
        except UnknownObjectException:
            return False
        return True
