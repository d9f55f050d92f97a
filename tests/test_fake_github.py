"""End-to-end tests of the fake GitHub server, driven by the real PyGithub over real HTTP."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import github
import jwt
import pytest
import requests
from github import Auth, GithubException, GithubIntegration

from tests.fakes.github import FakeGitHub, load_spec
from tests.fakes.github.fixture import TEST_APP_ID, TEST_TOKEN, AppKey
from tests.fakes.github.spec import SPEC_PATH

REPO = "octo-org/demo"
ROOT = Path(__file__).resolve().parent.parent


def client(server: FakeGitHub, token: str = TEST_TOKEN, **kwargs: Any) -> github.Github:
    kwargs.setdefault("seconds_between_requests", 0)
    kwargs.setdefault("seconds_between_writes", 0)
    return github.Github(auth=Auth.Token(token), base_url=server.url, **kwargs)


def app_client(server: FakeGitHub, key: AppKey) -> GithubIntegration:
    return GithubIntegration(auth=Auth.AppAuth(TEST_APP_ID, key.private_pem),
                             base_url=server.url, seconds_between_requests=0,
                             seconds_between_writes=0)


def api(server: FakeGitHub, method: str, path: str, token: str | None = TEST_TOKEN, *,
        bearer: str | None = None, **kwargs: Any) -> requests.Response:
    """A plain HTTP call (``token X``, or ``Bearer <bearer>`` for App JWTs)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else (
        {"Authorization": f"token {token}"} if token else {})
    return requests.request(method, server.url + path, headers=headers, timeout=10,
                            allow_redirects=False, **kwargs)


def seed(server: FakeGitHub) -> FakeGitHub:
    """One repository, a feature branch one commit ahead of main, and a workflow."""
    server.add_repo(REPO, files={"README.md": "# demo\n",
                                 ".github/fixloop.yml": "model: small\nmax_iterations: 3\n",
                                 "src/app.py": "print('hi')\n"})
    server.add_commit(REPO, "fixloop/issue-7", {"src/app.py": "print('fixed')\n"},
                      message="Fix the greeting")
    server.add_workflow(REPO, "fixloop.yml", name="fixloop")
    return server


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    return seed(fake_github)


@pytest.fixture
def gh_run_details(make_fake_github: Callable[..., FakeGitHub]) -> FakeGitHub:
    """Like ``gh``, but dispatches honour ``return_run_details`` (as github.com does)."""
    return seed(make_fake_github(supports_run_details=True))


# --------------------------------------------------------------------------------------------
# the vendored description


def _trim_module() -> Any:
    spec = importlib.util.spec_from_file_location("trim_openapi", ROOT / "tests/fakes/github_data/trim_openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trimmed_description_is_small_complete_and_quick_to_load() -> None:
    raw = json.loads(SPEC_PATH.read_text())
    served = {(m.upper(), p) for p, item in raw["paths"].items() for m in item
              if m != "parameters"}
    assert served == set(_trim_module().OPERATIONS)
    assert SPEC_PATH.stat().st_size < 1_000_000
    assert (SPEC_PATH.parent / "LICENSE").read_text().startswith("MIT License")
    loaded = load_spec()
    assert loaded is load_spec()  # cached: loaded once per process
    assert loaded.load_seconds < 2.0


# --------------------------------------------------------------------------------------------
# repositories and contents


def test_get_repo_and_read_files(gh: FakeGitHub) -> None:
    repo = client(gh).get_repo(REPO)
    assert (repo.full_name, repo.default_branch, repo.private) == (REPO, "main", False)
    assert repo.url == f"{gh.url}/repos/{REPO}"

    config = repo.get_contents(".github/fixloop.yml")
    assert not isinstance(config, list)
    assert config.decoded_content == b"model: small\nmax_iterations: 3\n"
    on_branch = repo.get_contents("src/app.py", ref="fixloop/issue-7")
    assert not isinstance(on_branch, list)
    assert on_branch.decoded_content == b"print('fixed')\n"
    listing = repo.get_contents("src")
    assert isinstance(listing, list) and [f.path for f in listing] == ["src/app.py"]

    with pytest.raises(github.UnknownObjectException):
        repo.get_contents("missing.txt")
    assert gh.requests[-1].status == 404


def test_branch_and_commit(gh: FakeGitHub) -> None:
    repo = client(gh).get_repo(REPO)
    sha = gh.branch_sha(REPO, "fixloop/issue-7")
    branch = repo.get_branch("fixloop/issue-7")  # a slash in the branch name
    assert branch.commit.sha == sha
    commit = repo.get_commit(sha)
    assert commit.commit.message == "Fix the greeting"
    assert [(f.filename, f.status) for f in commit.files] == [("src/app.py", "modified")]
    with pytest.raises(github.UnknownObjectException):
        repo.get_branch("nope")


def test_collaborator_permission(gh: FakeGitHub) -> None:
    gh.set_permission(REPO, "alice", "write")
    gh.set_permission(REPO, "mallory", "maintain")
    gh.add_user("bob")
    repo = client(gh).get_repo(REPO)
    assert repo.get_collaborator_permission("alice") == "write"
    assert repo.get_collaborator_permission("mallory") == "write"  # legacy field folds roles
    assert repo.get_collaborator_role_name("mallory") == "maintain"
    assert repo.get_collaborator_permission("bob") == "read"  # public repo, no role
    with pytest.raises(github.UnknownObjectException):
        repo.get_collaborator_permission("ghost")


# --------------------------------------------------------------------------------------------
# check runs


def _annotations(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"path": "src/app.py", "start_line": i, "end_line": i,
             "annotation_level": "warning", "message": f"problem {i}"}
            for i in range(start, start + n)]


def test_check_run_lifecycle_accumulates_annotations(gh: FakeGitHub) -> None:
    repo = client(gh).get_repo(REPO)
    sha = gh.branch_sha(REPO, "fixloop/issue-7")
    run = repo.create_check_run(name="fixloop", head_sha=sha, status="in_progress",
                                external_id="job-1")
    assert run.status == "in_progress"
    assert run.raw_data["conclusion"] is None

    run.edit(output={"title": "Lint", "summary": "first batch", "annotations": _annotations(50)})
    run.edit(status="completed", conclusion="failure",
             output={"title": "Lint", "summary": "60 problems",
                     "annotations": _annotations(10, start=51)})
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert run.output.annotations_count == 60

    stored = gh.check_run(REPO, run.id)
    assert [a["start_line"] for a in stored.annotations] == list(range(1, 61))
    assert stored.output_summary == "60 problems"
    listed = list(repo.get_commit(sha).get_check_runs(check_name="fixloop"))
    assert [c.id for c in listed] == [run.id]
    assert repo.get_check_run(run.id).completed_at is not None


def test_check_run_limits_are_enforced(gh: FakeGitHub) -> None:
    repo = client(gh).get_repo(REPO)
    sha = gh.branch_sha(REPO, "main")
    run = repo.create_check_run(name="fixloop", head_sha=sha)

    with pytest.raises(GithubException) as too_long:
        run.edit(output={"title": "t", "summary": "x" * 65536})
    assert too_long.value.status == 422
    with pytest.raises(GithubException) as too_many:
        run.edit(output={"title": "t", "summary": "s", "annotations": _annotations(51)})
    assert too_many.value.status == 422
    assert gh.check_run(REPO, run.id).annotations == []  # nothing applied

    violations = gh.take_violations()
    assert len(violations) == 2
    assert "is too long" in violations[0] and "is too long" in violations[1]

    with pytest.raises(GithubException) as unknown_sha:
        repo.create_check_run(name="fixloop", head_sha="0" * 40)
    assert unknown_sha.value.status == 422
    assert gh.violations == []  # a known commit is a GitHub rule, not a schema violation


def test_invalid_request_is_rejected_and_recorded(gh: FakeGitHub) -> None:
    resp = api(gh, "POST", f"/repos/{REPO}/check-runs", json={"name": "no sha"})
    assert resp.status_code == 422
    assert resp.json()["message"].startswith("Invalid request.")
    assert "documentation_url" in resp.json()
    violations = gh.take_violations()
    assert len(violations) == 1
    assert violations[0].startswith(f"POST /repos/{REPO}/check-runs: request:")
    assert "'head_sha' is a required property" in violations[0]
    assert gh.check_runs(REPO) == []


def test_undeclared_body_properties(gh: FakeGitHub,
                                   make_fake_github: Callable[..., FakeGitHub]) -> None:
    number = gh.add_pull(REPO, "fixloop/issue-7", draft=True)
    # REST cannot change draft state (GraphQL can); GitHub ignores the field, the fake flags it.
    resp = api(gh, "PATCH", f"/repos/{REPO}/pulls/{number}", json={"draft": False})
    assert resp.status_code == 422
    assert "('draft' was unexpected)" in gh.take_violations()[0]

    lenient = seed(make_fake_github(strict_request_bodies=False))
    number = lenient.add_pull(REPO, "fixloop/issue-7", draft=True)
    resp = api(lenient, "PATCH", f"/repos/{REPO}/pulls/{number}", json={"draft": False})
    assert resp.status_code == 200 and resp.json()["draft"] is True


def test_unknown_path_is_404_and_recorded(gh: FakeGitHub) -> None:
    resp = api(gh, "GET", f"/repos/{REPO}/hooks")
    assert resp.status_code == 404 and resp.json()["message"] == "Not Found"
    assert gh.take_violations() == [
        f"GET /repos/{REPO}/hooks: request: no such operation in the trimmed OpenAPI description"]


# --------------------------------------------------------------------------------------------
# pull requests, comments, reactions, labels, reviewers


def test_draft_pull_request_found_by_head(gh: FakeGitHub) -> None:
    repo = client(gh).get_repo(REPO)
    pr = repo.create_pull(base="main", head="fixloop/issue-7", title="Fix greeting",
                          body="Closes #7", draft=True)
    assert pr.draft is True and pr.head.sha == gh.branch_sha(REPO, "fixloop/issue-7")

    found = list(repo.get_pulls(state="open", head="octo-org:fixloop/issue-7"))
    assert [p.number for p in found] == [pr.number]
    assert list(repo.get_pulls(head="octo-org:other-branch")) == []
    assert gh.pulls(REPO)[0].pull is not None and gh.pulls(REPO)[0].pull.draft  # type: ignore[union-attr]

    with pytest.raises(GithubException) as duplicate:
        repo.create_pull(base="main", head="fixloop/issue-7", title="again", body="")
    assert duplicate.value.status == 422
    assert duplicate.value.data["errors"][0]["message"] == (
        "A pull request already exists for octo-org:fixloop/issue-7.")
    assert len(gh.pulls(REPO)) == 1


def test_pull_request_needs_commits_and_existing_head(gh: FakeGitHub) -> None:
    gh.add_branch(REPO, "empty")
    repo = client(gh).get_repo(REPO)
    with pytest.raises(GithubException) as no_commits:
        repo.create_pull(base="main", head="empty", title="t", body="")
    assert no_commits.value.data["errors"][0]["message"] == "No commits between main and empty"
    with pytest.raises(GithubException) as no_branch:
        repo.create_pull(base="main", head="not-pushed", title="t", body="")
    assert no_branch.value.data["errors"][0]["field"] == "head"


def test_update_pull_labels_and_reviewers(gh: FakeGitHub) -> None:
    gh.set_permission(REPO, "alice", "write")
    repo = client(gh).get_repo(REPO)
    pr = repo.create_pull(base="main", head="fixloop/issue-7", title="Fix", body="", draft=True)
    pr.edit(title="Fix greeting (2 iterations)", body="updated")
    assert repo.get_pull(pr.number).title == "Fix greeting (2 iterations)"
    as_issue = repo.get_issue(pr.number)  # pull requests are issues too
    assert as_issue.pull_request is not None and as_issue.body == "updated"

    pr.add_to_labels("fixloop", "bot")
    assert gh.issue(REPO, pr.number).labels == ["fixloop", "bot"]
    pr.create_review_request(reviewers=["alice"])
    assert [u.login for u in gh.pulls(REPO)[0].pull.requested_reviewers] == ["alice"]  # type: ignore[union-attr]
    with pytest.raises(GithubException) as outsider:
        pr.create_review_request(reviewers=["stranger"])
    assert outsider.value.status == 422

    pr.edit(state="closed")
    assert [p.number for p in repo.get_pulls(state="closed")] == [pr.number]
    assert list(repo.get_pulls(state="open")) == []


def test_comment_and_reactions(gh: FakeGitHub) -> None:
    number = gh.add_issue(REPO, "Greeting is wrong", "please fix", user="reporter")
    repo = client(gh).get_repo(REPO)
    issue = repo.get_issue(number)
    assert issue.user.login == "reporter"
    comment = issue.create_comment("On it.")
    comment.edit("On it (iteration 1).")
    reaction = comment.create_reaction("rocket")
    again = comment.create_reaction("rocket")  # GitHub answers 200 with the existing reaction
    assert reaction.id == again.id

    stored = gh.comments(REPO, number)
    assert [(c.body, c.user.login) for c in stored] == [("On it (iteration 1).",
                                                         "github-actions[bot]")]
    assert [r.content for r in gh.reactions(REPO, comment.id)] == ["rocket"]
    assert [c.body for c in issue.get_comments()] == ["On it (iteration 1)."]

    pr_number = gh.add_pull(REPO, "fixloop/issue-7")
    review_comment = gh.add_review_comment(REPO, pr_number, "/fixloop try again")
    resp = api(gh, "POST", f"/repos/{REPO}/pulls/comments/{review_comment}/reactions",
               json={"content": "eyes"})
    assert resp.status_code == 201
    assert [r.content for r in gh.reactions(REPO, review_comment)] == ["eyes"]


def test_concurrent_requests(gh: FakeGitHub) -> None:
    number = gh.add_issue(REPO, "many hands")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda i: api(gh, "POST", f"/repos/{REPO}/issues/{number}/comments",
                          json={"body": f"comment {i}"}).status_code, range(16)))
    assert statuses == [201] * 16
    comments = gh.comments(REPO, number)
    assert sorted(c.body for c in comments) == sorted(f"comment {i}" for i in range(16))
    assert len({c.id for c in comments}) == 16


def test_comments_paginate(gh: FakeGitHub) -> None:
    number = gh.add_issue(REPO, "busy issue")
    for i in range(35):
        gh.add_issue_comment(REPO, number, f"comment {i}")
    comments = client(gh, per_page=10).get_repo(REPO).get_issue(number).get_comments()
    assert [c.body for c in comments] == [f"comment {i}" for i in range(35)]
    pages = [r for r in gh.requests if r.path.endswith(f"/issues/{number}/comments")]
    assert len(pages) == 4


# --------------------------------------------------------------------------------------------
# Actions


def test_dispatch_without_and_with_run_details(gh_run_details: FakeGitHub) -> None:
    gh = gh_run_details
    workflow = client(gh).get_repo(REPO).get_workflow("fixloop.yml")
    assert workflow.path == ".github/workflows/fixloop.yml"

    assert workflow.create_dispatch("main", {"issue": "7", "correlation_id": "abc"}) is True
    assert gh.requests[-1].status == 204
    run = workflow.create_dispatch("fixloop/issue-7", {"issue": "7"}, return_run_details=True)
    assert gh.requests[-1].status == 200
    assert isinstance(run, github.WorkflowRun.WorkflowRun)

    dispatches = gh.dispatches(REPO)
    assert [(d.ref, d.inputs) for d in dispatches] == [
        ("main", {"issue": "7", "correlation_id": "abc"}), ("fixloop/issue-7", {"issue": "7"})]
    assert dispatches[1].run_id == run.id
    assert run.status == "queued" and run.head_branch == "fixloop/issue-7"


def test_dispatch_errors(gh: FakeGitHub, make_fake_github: Callable[..., FakeGitHub]) -> None:
    repo = client(gh).get_repo(REPO)
    workflow = repo.get_workflow("fixloop.yml")
    with pytest.raises(GithubException) as too_many:
        workflow.create_dispatch("main", {f"k{i}": "v" for i in range(26)}, throw=True)
    assert too_many.value.status == 422
    assert any("has too many properties" in v for v in gh.take_violations())
    with pytest.raises(GithubException) as bad_ref:
        workflow.create_dispatch("no-such-branch", throw=True)
    assert bad_ref.value.status == 422
    with pytest.raises(github.UnknownObjectException):
        repo.get_workflow("other.yml")
    resp = api(gh, "POST", f"/repos/{REPO}/actions/workflows/other.yml/dispatches",
               json={"ref": "main"})
    assert resp.status_code == 404
    assert gh.dispatches(REPO) == []

    # Built without supports_run_details (older GHES): 204 and no run id, even when asked.
    answer: object = workflow.create_dispatch("main", return_run_details=True)
    assert answer is True  # PyGithub's "no details" answer
    assert gh.requests[-1].status == 204
    assert [d.ref for d in gh.dispatches(REPO)] == ["main"]


def test_declared_inputs_are_checked(gh: FakeGitHub) -> None:
    gh.add_workflow(REPO, "strict.yml", inputs={"issue": {"required": True}},
                    run_name="fixloop {issue}")
    wf = client(gh).get_repo(REPO).get_workflow("strict.yml")
    with pytest.raises(GithubException) as unexpected:
        wf.create_dispatch("main", {"issue": "1", "typo": "x"}, throw=True)
    assert unexpected.value.data["message"] == "Unexpected inputs provided: ['typo']"
    assert wf.create_dispatch("main", {"issue": "9"}) is True
    assert [r.display_title for r in gh.workflow_runs(REPO)] == ["fixloop 9"]


def test_workflow_run_jobs_and_log(gh: FakeGitHub) -> None:
    run_id = gh.add_workflow_run(REPO, "fixloop.yml", conclusion="failure",
                                 head_branch="fixloop/issue-7")
    job_id = gh.add_job(run_id, "test", conclusion="failure",
                        log_text="FAILED tests/test_app.py::test_greeting\n")
    gh.add_job(run_id, "lint")
    repo = client(gh).get_repo(REPO)

    run = repo.get_workflow_run(run_id)
    assert (run.conclusion, run.head_branch) == ("failure", "fixloop/issue-7")
    jobs = list(run.jobs())
    assert [(j.id, j.name, j.conclusion) for j in jobs] == [
        (job_id, "test", "failure"), (job_id + 1, "lint", "success")]
    location = jobs[0].logs_url()
    assert location.startswith(gh.root_url) and gh.requests[-1].status == 302
    assert requests.get(location, timeout=10).text == "FAILED tests/test_app.py::test_greeting\n"

    listed = list(repo.get_workflow("fixloop.yml").get_runs(branch="fixloop/issue-7"))
    assert [r.id for r in listed] == [run_id]
    assert list(repo.get_workflow_runs(status="success")) == []


def test_dispatch_hook_can_complete_the_run(gh_run_details: FakeGitHub) -> None:
    gh = gh_run_details
    def finish(dispatch: Any, run: Any) -> None:
        gh.add_job(run.id, "fixloop", log_text=f"inputs={dispatch.inputs}\n")
        gh.update_workflow_run(run.id, conclusion="success")

    gh.on_dispatch(finish)
    wf = client(gh).get_repo(REPO).get_workflow("fixloop.yml")
    run = wf.create_dispatch("main", {"issue": "3"}, return_run_details=True)
    run.update()
    assert run.conclusion == "success"
    assert [j.name for j in run.jobs()] == ["fixloop"]


# --------------------------------------------------------------------------------------------
# auth: tokens, App JWTs, installation tokens


def test_missing_or_unknown_token_is_401(gh: FakeGitHub) -> None:
    assert api(gh, "GET", f"/repos/{REPO}", token=None).status_code == 401
    with pytest.raises(github.BadCredentialsException):
        client(gh, token="ghp_wrong").get_repo(REPO)
    assert gh.requests[-1].token == "ghp_wrong" and gh.requests[-1].auth_kind is None


def test_app_mints_installation_token(gh: FakeGitHub, github_app_key: AppKey) -> None:
    integration = app_client(gh, github_app_key)
    assert integration.get_app().slug == "fixloop"
    installation = integration.get_repo_installation("octo-org", "demo")
    assert installation.id == gh.installation_id("octo-org")
    assert [i.id for i in integration.get_installations()] == [installation.id]

    grant = integration.get_access_token(installation.id, permissions={"checks": "write",
                                                                       "metadata": "read"})
    assert grant.token.startswith("ghs_")
    assert 3500 < (grant.expires_at.timestamp() - time.time()) <= 3600
    assert gh.issued_tokens()[0].permissions == {"checks": "write", "metadata": "read"}

    repo = client(gh, token=grant.token).get_repo(REPO)
    run = repo.create_check_run(name="fixloop", head_sha=gh.branch_sha(REPO, "main"))
    assert gh.check_run(REPO, run.id).app_id == TEST_APP_ID
    assert gh.requests[-1].token == grant.token and gh.requests[-1].auth_kind == "installation"

    with pytest.raises(GithubException) as narrowed:  # the token lacks issues/pulls write
        repo.get_pulls().totalCount  # noqa: B018 - reading it makes the request
    assert narrowed.value.status == 403


def test_installation_token_narrowed_to_repositories(gh: FakeGitHub,
                                                     github_app_key: AppKey) -> None:
    gh.add_repo("octo-org/other")
    app_jwt = Auth.AppAuth(TEST_APP_ID, github_app_key.private_pem).create_jwt()
    resp = api(gh, "POST", f"/app/installations/{gh.installation_id('octo-org')}/access_tokens",
               bearer=app_jwt, json={"repositories": ["demo"], "permissions": {"contents": "read"}})
    assert resp.status_code == 201
    body = resp.json()
    assert [r["full_name"] for r in body["repositories"]] == [REPO]
    assert body["repository_selection"] == "selected"
    assert body["permissions"] == {"contents": "read"}

    scoped = client(gh, token=body["token"])
    assert scoped.get_repo(REPO).get_contents("README.md")
    with pytest.raises(github.UnknownObjectException):
        scoped.get_repo("octo-org/other")


def test_bad_app_jwts_are_rejected(gh: FakeGitHub, github_app_key: AppKey) -> None:
    now = int(time.time())

    def call(claims: dict[str, Any]) -> requests.Response:
        token = jwt.encode(claims, github_app_key.private_pem, algorithm="RS256")
        return api(gh, "GET", "/app", bearer=token)

    app_id = str(TEST_APP_ID)
    assert call({"iat": now - 60, "exp": now + 540, "iss": app_id}).status_code == 200
    too_long = call({"iat": now - 60, "exp": now + 3600, "iss": app_id})
    assert too_long.status_code == 401 and "too far in the future" in too_long.json()["message"]
    assert call({"iat": now + 300, "exp": now + 600, "iss": app_id}).status_code == 401
    assert call({"iat": now - 600, "exp": now - 10, "iss": app_id}).status_code == 401
    assert call({"iat": now - 60, "exp": now + 540, "iss": "999"}).status_code == 401
    assert api(gh, "GET", "/app").status_code == 401  # a plain token is not a JWT


# --------------------------------------------------------------------------------------------
# fault injection, GHES prefix, misc


def test_injected_502_is_retried_by_pygithub(gh: FakeGitHub) -> None:
    gh.inject("GET", rf"^/repos/{REPO}$", 502)
    assert client(gh).get_repo(REPO).name == "demo"  # PyGithub's default retry
    assert [r.status for r in gh.requests if r.path == f"/repos/{REPO}"] == [502, 200]


def test_injected_faults_without_retry(gh: FakeGitHub) -> None:
    no_retry = client(gh, retry=None)
    gh.inject("GET", r"/pulls$", 503, times=2)
    for _ in range(2):
        with pytest.raises(GithubException) as unavailable:
            no_retry.get_repo(REPO).get_pulls().get_page(0)
        assert unavailable.value.status == 503
    assert no_retry.get_repo(REPO).get_pulls().get_page(0) == []

    gh.inject("POST", r"/check-runs$", 403, headers={"Retry-After": "30"},
              body={"message": "You have exceeded a secondary rate limit."})
    resp = api(gh, "POST", f"/repos/{REPO}/check-runs",
               json={"name": "x", "head_sha": gh.branch_sha(REPO, "main")})
    assert resp.status_code == 403 and resp.headers["Retry-After"] == "30"
    assert gh.check_runs(REPO) == []

    gh.inject_reset("GET", r"/rate_limit$")
    with pytest.raises(requests.ConnectionError):
        api(gh, "GET", "/rate_limit")
    assert api(gh, "GET", "/rate_limit").status_code == 200


def test_enterprise_prefix(make_fake_github: Callable[..., FakeGitHub]) -> None:
    ghes = make_fake_github(prefix="/api/v3")
    ghes.add_repo(REPO, files={"a.txt": "A\n"})
    assert ghes.url.endswith("/api/v3")
    repo = client(ghes).get_repo(REPO)
    assert repo.url == f"{ghes.url}/repos/{REPO}"
    content = repo.get_contents("a.txt")
    assert not isinstance(content, list) and content.decoded_content == b"A\n"
    assert client(ghes).get_rate_limit().resources.core.limit == 5000

    outside = requests.get(f"{ghes.root_url}/repos/{REPO}", timeout=10,
                           headers={"Authorization": f"token {TEST_TOKEN}"})
    assert outside.status_code == 404
    assert ghes.take_violations() == [f"GET /repos/{REPO}: request: outside the API prefix"]


def _start_and_stop() -> float:
    started = time.perf_counter()
    with FakeGitHub() as server:
        assert requests.get(server.url + "/rate_limit", timeout=5).status_code == 200
    elapsed = time.perf_counter() - started
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/rate_limit", timeout=1)
    return elapsed


def test_server_starts_and_stops() -> None:
    _start_and_stop()


@pytest.mark.timing
def test_server_starts_and_stops_quickly() -> None:
    assert _start_and_stop() < 1.0
