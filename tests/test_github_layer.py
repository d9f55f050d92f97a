"""Unit tests of the GitHub layer with `responses` (PyGithub's HTTP mocked at the transport)."""

from __future__ import annotations

import base64
import json

import pytest
import responses

from bot.action import render
from bot.action.checks import CheckRunReporter
from bot.action.plan import Refusal, plan_session
from bot.agent.events import ChangesMade, IterationStarted, SessionEnded, ValidationRan
from bot.agent.usage import Usage
from bot.config import Config
from bot.errors import GitHubError
from bot.github import limits
from bot.github.client import GitHubClient, RequestPolicy
from bot.secrets import Redactor
from bot.task import FailedRun, Origin, Task, Thread, stable_id
from bot.validation import CommandOutcome, FailedTest, ValidationResult

API = "https://api.github.com:443/repos/octo/calc"
GHES = "https://ghe.example.com:443/api/v3/repos/octo/calc"


POLICY = RequestPolicy(throttle=False, backoff=0)  # `responses` answers at once: no pacing, no backoff


def client(api_url: str = "https://api.github.com") -> GitHubClient:
    return GitHubClient(token="ghs_unit", api_url=api_url, repository="octo/calc", policy=POLICY)


def user(login: str) -> dict:
    return {"login": login, "id": 1, "type": "User"}


def pull_json(number: int, head_repo: str) -> dict:
    repo = {"full_name": head_repo, "name": head_repo.split("/")[1], "owner": user(head_repo.split("/")[0])}
    return {"number": number, "title": "Speed up", "body": "please", "user": user("contributor"),
            "html_url": f"https://github.com/octo/calc/pull/{number}", "draft": False,
            "head": {"ref": "speedup", "sha": "a" * 40, "repo": repo},
            "base": {"ref": "main", "sha": "b" * 40, "repo": {**repo, "full_name": "octo/calc"}}}


@responses.activate
def test_commands_on_fork_pull_requests_are_refused_before_anything_runs():
    responses.get(f"{API}/issues/5", json={"number": 5, "title": "Speed up", "body": "", "user": user("contributor"),
                                           "html_url": "https://github.com/octo/calc/pull/5",
                                           "pull_request": {"url": f"{API}/pulls/5"}})
    responses.get(f"{API}/pulls/5", json=pull_json(5, "someone/fork"))
    task = Task(kind="command", title="Speed up", source="@maintainer on pull request #5")
    origin = Origin(repository="octo/calc", target=Thread(number=5, pull_request=True))
    result = plan_session(task, origin, client(), Config(), "main")
    assert isinstance(result, Refusal) and result.number == 5 and "fork" in result.reason
    assert [c.request.method for c in responses.calls] == ["GET", "GET"], "no writes happened"


@responses.activate
def test_plan_for_an_issue_uses_a_stable_branch_and_finds_the_earlier_pull_request():
    responses.get(f"{API}/issues/7", json={"number": 7, "title": "Crash on empty input", "body": "see log",
                                           "user": user("reporter"), "html_url": "https://github.com/octo/calc/issues/7"})
    responses.get(f"{API}/branches/main", json={"name": "main", "commit": {"sha": "c" * 40}})
    branch = f"fixloop/crash-on-empty-input-{stable_id('octo/calc', '7')}"
    responses.get(f"{API}/branches/{branch}", json={"name": branch, "commit": {"sha": "d" * 40}})
    responses.get(f"{API}/pulls", json=[pull_json(9, "octo/calc")])
    task = Task(kind="issue", title="#7", source="the App")
    plan = plan_session(task, Origin(repository="octo/calc", target=Thread(number=7)), client(), Config(), "main")
    assert plan.branch == branch and plan.base_sha == "c" * 40 and plan.expected_sha == "d" * 40
    assert plan.existing_pr.number == 9 and plan.fixes == 7 and plan.task.title == "Crash on empty input"
    assert plan.task.context[0].source == "issue #7 by @reporter" and "see log" in plan.task.context[0].text
    assert responses.calls[-1].request.params == {"state": "open", "head": f"octo:{branch}", "per_page": "100"}


@pytest.mark.parametrize("title", ["Fix CI: tests failed on main", "Fix CI: CI failed on main", "Fix CI: main failed"],
                         ids=["webhook", "retry button", "dispatch typed by hand"])
@responses.activate
def test_a_ci_fix_branch_is_named_after_the_failing_branch_alone(title):
    """A retry, whichever way it comes, finds the branch (and pull request) of the first attempt;
    the name is the one the App has always used."""
    branch = f"fixloop/ci-fix-ci-main-failed-{stable_id('octo/calc', 'ci:main')}"
    responses.get(f"{API}/branches/{branch}", json={"name": branch, "commit": {"sha": "d" * 40}})
    responses.get(f"{API}/pulls", json=[])
    origin = Origin(repository="octo/calc", target=FailedRun(run_id=3, branch="main", head_sha="c" * 40))
    plan = plan_session(Task(kind="ci_failure", title=title, source="CI"), origin, client(), Config(), "main")
    assert plan.branch == branch and plan.expected_sha == "d" * 40 and plan.pr_base == "main"


@responses.activate
def test_reads_files_and_permissions_with_clear_failures():
    responses.get(f"{API}/contents/.github/fixloop.yml",
                  json={"type": "file", "encoding": "base64", "name": "fixloop.yml", "path": ".github/fixloop.yml",
                        "sha": "e" * 40, "content": base64.b64encode(b"validate: [make]\n").decode()})
    responses.get(f"{API}/contents/missing.yml", status=404, json={"message": "Not Found"})
    responses.get(f"{API}/collaborators/writer/permission", json={"permission": "write", "user": user("writer")})
    responses.get(f"{API}/collaborators/ghost/permission", status=404, json={"message": "Not Found"})
    responses.post(f"{API}/issues/3/comments", status=403, json={"message": "Resource not accessible by integration"})
    github = client()
    assert github.file_text(".github/fixloop.yml", "main") == "validate: [make]\n"
    assert github.file_text("missing.yml", "main") is None
    assert (github.permission("writer"), github.permission("ghost")) == ("write", "none")
    with pytest.raises(GitHubError, match=r"refused to comment in octo/calc: HTTP 403: Resource not accessible"):
        github.comment(3, "hi")


@responses.activate
def test_github_enterprise_server_urls_are_used_unchanged():
    responses.post(f"{GHES}/issues/3/comments", status=201, json={"id": 1, "html_url": "https://ghe.example.com/octo/calc/issues/3#c1",
                                                                  "body": "hi", "user": user("fixloop[bot]")})
    assert client("https://ghe.example.com/api/v3").comment(3, "hi").startswith("https://ghe.example.com/")


def failing(n: int) -> ValidationResult:
    tests = [FailedTest(id=f"tests/test_x.py::test_{i}", file="tests/test_x.py", line=i + 1, message="assert False")
             for i in range(n)]
    outcome = CommandOutcome(command="pytest", passed=False, exit_code=1, timed_out=False, duration_s=1.0,
                             tests_run=n, failed_tests=tests)
    return ValidationResult(passed=False, commands=[outcome])


@responses.activate
def test_check_run_annotations_go_fifty_per_request_and_outputs_fit_githubs_limits():
    responses.post(f"{API}/check-runs", status=201,
                   json={"id": 11, "name": "fixloop / iteration 1", "head_sha": "f" * 40})
    responses.patch(f"{API}/check-runs/11", json={"id": 11})
    warnings: list[str] = []
    reporter = CheckRunReporter(client(), head_sha="f" * 40, task_title="t", redactor=Redactor(["ghs_unit_secret"]),
                                warn=warnings.append)
    reporter(IterationStarted(n=1))
    reporter(ChangesMade(iteration=1, diff_stat="x | 1 +\n" * 20_000, changed_files=["x"]))
    reporter(ValidationRan(iteration=1, result=failing(120)))
    created, *updates = [json.loads(call.request.body) for call in responses.calls]
    assert created["status"] == "in_progress" and created["name"] == "fixloop / iteration 1"
    assert [len(u["output"].get("annotations", [])) for u in updates] == [50, 50, 20]
    assert [u.get("conclusion") for u in updates] == ["failure", None, None]
    assert all(len(u["output"]["summary"]) <= limits.CHECK_TEXT_LIMIT for u in updates)
    assert "truncated" in updates[0]["output"]["summary"]
    assert warnings == []


@responses.activate
def test_check_run_reporter_survives_github_failures_and_closes_stopped_iterations():
    responses.post(f"{API}/check-runs", status=201, json={"id": 12})
    responses.patch(f"{API}/check-runs/12", status=502, json={"message": "Bad gateway"})
    warnings: list[str] = []
    reporter = CheckRunReporter(client(), head_sha="f" * 40, task_title="t", redactor=Redactor(), warn=warnings.append)
    reporter(IterationStarted(n=1))
    reporter(SessionEnded(status="cancelled", reason="cancelled by SIGTERM", usage=Usage(), cost_usd=0))
    body = json.loads(responses.calls[-1].request.body)
    assert body["conclusion"] == "cancelled" and body["output"]["title"] == "Stopped: cancelled by SIGTERM"
    assert warnings and "502" in warnings[0], "retried (a PATCH sets fields: harmless to repeat), then reported"
    assert [c.request.method for c in responses.calls].count("PATCH") == 1 + POLICY.retries


def test_conclusions_are_derived_from_the_typed_ending_only():
    assert render.CONCLUSIONS == {"validated": "success", "not_validated": "neutral", "cancelled": "cancelled",
                                  "error": "failure"}


def test_fit_keeps_text_within_the_limit_and_says_so():
    text = "a" * 70_000
    fitted = limits.fit(text)
    assert len(fitted) <= limits.CHECK_TEXT_LIMIT and fitted.endswith("are in the session artifact.")
    assert limits.fit("short") == "short"


@responses.activate
def test_a_resend_refused_as_a_duplicate_looks_again_and_finds_what_the_lost_answer_made():
    # The first POST went through but its answer was lost; the list lagged, so the resend was
    # refused as a duplicate (422); looking again finds the pull request, and nothing else is sent.
    pull = {**pull_json(7, "octo/calc"), "draft": True,
            "head": {**pull_json(7, "octo/calc")["head"], "ref": "fixloop/x"}}
    responses.post(f"{API}/pulls", status=502, json={"message": "Bad Gateway"})
    responses.get(f"{API}/pulls", json=[])
    responses.post(f"{API}/pulls", status=422,
                   json={"message": "Validation Failed",
                         "errors": [{"message": "A pull request already exists for octo:fixloop/x."}]})
    responses.get(f"{API}/pulls", json=[pull])
    made = client().create_draft_pull(title="t", body="b", head="fixloop/x", base="main")
    assert made.number == 7
    assert [c.request.method for c in responses.calls] == ["POST", "GET", "POST", "GET"]
