"""`fixloop action` end to end, as in a workflow run: real webhook payloads as the event file, a
real bare repository as `origin`, the OpenAPI-checked fake GitHub, the scripted Messages API,
real git and real pytest. The fake fails any test whose requests or responses GitHub's
OpenAPI description rejects."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from bot.action.environment import write_outputs
from bot.cli import main
from bot.github.client import RequestPolicy
from bot.sandbox import INSTALL_HINT, bubblewrap
from tests.conftest import run_git
from tests.fakes.git_origin import make_origin, write_event
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import LOOPBACK_POLICY
from tests.fakes.messages_api import MessagesAPIServer, Reply, bash, edit, text
from tests.fixtures import load_payload

REPO = "octo/calc"
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                    "def test_zero():\n    assert add(0, 0) == 0\n",
    ".github/fixloop.yml": f"validate: [{PYTEST}]\nlimits: {{iterations: 3}}\nci: {{auto: true}}\n",
}
WRONG = Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a * b")])
RIGHT = Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")])
RIGHT_AT_ONCE = Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")])
DONE = Reply([text("add() subtracted instead of adding; it now adds.")])
TWO_ITERATIONS = [WRONG, DONE, RIGHT, DONE]


def parse_outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT as the runner reads it: `name<<DELIMITER`, lines, `DELIMITER`."""
    lines, values, i = text.splitlines(), {}, 0
    while i < len(lines):
        name, delimiter = lines[i].split("<<", 1)
        end = lines.index(delimiter, i + 1)
        values[name] = "\n".join(lines[i + 1 : end])
        i = end + 1
    return values


class Runner:
    """One repository on the fake GitHub, and a way to run `fixloop action` on an event."""

    def __init__(self, tmp_path: Path, github: FakeGitHub, api: MessagesAPIServer, monkeypatch, files=FILES,
                 policy: RequestPolicy = LOOPBACK_POLICY):
        self.tmp, self.github, self.api, self.monkeypatch, self.policy = tmp_path, github, api, monkeypatch, policy
        self.origin = make_origin(tmp_path, github, REPO, files)
        github.set_permission(REPO, "maintainer", "write")
        github.add_workflow(REPO, "fixloop.yml")
        self.issue = github.add_issue(REPO, "add() subtracts", "add(2, 3) returns -1.", user="reporter")
        self.outputs = tmp_path / "outputs.txt"
        self.summary = tmp_path / "summary.md"
        self.runs = 0

    def run(self, event_name: str, payload: dict, **extra_env: str) -> int:
        self.runs += 1
        payload["repository"].update(full_name=REPO, name="calc", default_branch="main")
        payload["repository"]["owner"]["login"] = "octo"
        env = {
            "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(write_event(self.tmp, payload)),
            "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": self.github.url, "GITHUB_SERVER_URL": "https://github.test",
            "GITHUB_RUN_ID": str(700 + self.runs), "GITHUB_SHA": self.origin.head,
            "GITHUB_WORKSPACE": str(self.origin.workspace), "GITHUB_OUTPUT": str(self.outputs),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/fixloop.yml@refs/heads/main",
            "GITHUB_TOKEN": "test-token", "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": self.api.url,
            **extra_env,
        }
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        return main(["action"], policy=self.policy)

    def outputs_map(self) -> dict[str, str]:
        return parse_outputs(self.outputs.read_text())

    def labeled(self, number: int | None = None) -> dict:
        payload = load_payload("issues.labeled", label__name="fixloop")
        payload["issue"].update(number=number or self.issue, title="add() subtracts", body="add(2, 3) returns -1.")
        payload["sender"]["login"] = "maintainer"
        return payload

    def comment(self, body: str, number: int, *, on_pull: bool = False) -> dict:
        payload = load_payload("issue_comment.created", comment__body=body)
        payload["issue"]["number"] = number
        payload["issue"].pop("pull_request", None)
        if on_pull:
            payload["issue"]["pull_request"] = {"url": f"{self.github.url}/repos/{REPO}/pulls/{number}"}
        payload["comment"]["id"] = self.github.add_issue_comment(REPO, number, body, user="maintainer")
        payload["sender"]["login"] = "maintainer"
        return payload


@pytest.fixture
def runner(tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        yield Runner(tmp_path, fake_github, api, monkeypatch)
        assert api.violations == []


def checks(github: FakeGitHub) -> dict:
    return {run.name: run for run in github.check_runs(REPO)}


def pull_url(github: FakeGitHub, number: int) -> str:
    return f"{github.root_url}/{REPO}/pull/{number}"


def test_labeled_issue_two_iterations_three_check_runs_pushed_branch_one_draft_pr_and_a_comment(runner, capsys):
    """The issue's acceptance scenario."""
    runner.api.push(*TWO_ITERATIONS)
    assert runner.run("issues", runner.labeled()) == 0
    out = capsys.readouterr().out
    github = runner.github

    runs = checks(github)
    assert set(runs) == {"fixloop", "fixloop / iteration 1", "fixloop / iteration 2"}
    assert ([runs[n].conclusion for n in ("fixloop / iteration 1", "fixloop / iteration 2", "fixloop")]
            == ["failure", "success", "success"])
    assert all(run.head_sha == runner.origin.head and run.status == "completed" for run in runs.values())
    first = runs["fixloop / iteration 1"]
    assert first.output_title == "Validation failed: 1 test(s)"
    assert [(a["path"], a["start_line"]) for a in first.annotations] == [("test_calc.py", 5)]
    assert "FAILED test_calc.py::test_add" in first.output_text
    assert "calc.py | 2" in runs["fixloop / iteration 2"].output_summary
    assert runs["fixloop"].external_id == "issue:1" and runs["fixloop"].actions == []

    (pull,) = github.pulls(REPO)
    assert pull.pull.draft is True and pull.pull.base_ref == "main"
    branch = pull.pull.head_ref
    assert branch.startswith("fixloop/add-subtracts-")
    assert "a + b" in runner.origin.show(branch, "calc.py")
    assert runner.origin.branch_sha(branch) == github.branch_sha(REPO, branch)
    assert "Fixes #1" in pull.body and "| 1 | ❌ failed | `test_calc.py::test_add` |" in pull.body
    assert "https://github.test/octo/calc/actions/runs/701" in pull.body

    comments = github.comments(REPO, runner.issue)
    url = pull_url(github, pull.number)
    assert len(comments) == 1 and url in comments[0].body
    outputs = runner.outputs_map()
    assert outputs["status"] == "validated" and outputs["pull-request-url"] == url
    assert outputs["branch"] == branch and outputs["iterations"] == "2"
    assert (Path(outputs["session-dir"]) / "report.json").exists()
    assert "## fixloop: Validated in 2 iteration(s)" in runner.summary.read_text()
    assert "::group::fixloop iteration 1" in out and "::endgroup::" in out
    assert out.index("::add-mask::test-token") < out.index("fixloop session")
    # The checkout is untouched and no credential was stored anywhere on disk.
    workspace = runner.origin.workspace
    assert run_git(workspace, "status", "--porcelain") == ""
    assert "test-token" not in (workspace / ".git" / "config").read_text()
    assert "extraheader" not in run_git(workspace, "config", "--list").lower()
    for request in github.requests:
        assert request.token == "test-token"


def test_command_on_someones_pull_request_opens_a_draft_against_its_branch(runner):
    workspace = runner.origin.workspace
    run_git(workspace, "checkout", "-q", "-b", "feature")
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b  # feature work\n")
    run_git(workspace, "commit", "-qam", "feature work")
    run_git(workspace, "push", "-q", "origin", "feature")
    run_git(workspace, "checkout", "-q", "main")
    head = runner.origin.branch_sha("feature")
    number = runner.github.add_pull(REPO, "feature", base="main", title="Feature work", user="contributor")
    runner.api.push(Reply([edit("str_replace", "calc.py", old_str="a - b  # feature work",
                                new_str="a + b  # feature work")]), DONE)
    assert runner.run("issue_comment", runner.comment("/fixloop fix make add() add", number, on_pull=True)) == 0

    pulls = {p.number: p for p in runner.github.pulls(REPO)}
    (new,) = [p for n, p in pulls.items() if n != number]
    assert new.pull.draft and new.pull.base_ref == "feature" and new.pull.head_ref.startswith("fixloop/feature-work-")
    assert "Fixes #" not in new.body
    assert {run.head_sha for run in runner.github.check_runs(REPO)} == {head}
    assert [r.content for r in runner.github.reactions(REPO, runner.github.comments(REPO, number)[0].id)] == ["eyes"]
    prompt = runner.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "@maintainer asked on pull request" in prompt and "make add() add" in prompt


def test_failed_workflow_run_opens_a_fix_against_the_failing_branch(runner):
    runner.github.add_workflow(REPO, "ci.yml", name="CI")
    run_id = runner.github.add_workflow_run(REPO, "ci.yml", conclusion="failure", head_sha=runner.origin.head)
    runner.github.add_job(run_id, "tests", conclusion="failure", log_text="make: *** [check] Error 2\n")
    payload = load_payload("workflow_run.completed")
    payload["workflow_run"].update(id=run_id, conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch="main", head_sha=runner.origin.head, head_repository={"full_name": REPO})
    payload["sender"]["login"] = "maintainer"
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("workflow_run", payload) == 0
    (pull,) = runner.github.pulls(REPO)
    assert pull.pull.base_ref == "main" and pull.pull.head_ref.startswith("fixloop/ci-fix-ci-main-failed-")
    assert checks(runner.github)["fixloop"].conclusion == "success"


def test_retry_updates_the_existing_pull_request_instead_of_opening_another(runner):
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    (first,) = runner.github.pulls(REPO)
    runner.api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="b + a")]),
                    Reply([text("Commutative now.")]))
    assert runner.run("issue_comment", runner.comment("/fixloop retry", runner.issue)) == 0
    (second,) = runner.github.pulls(REPO)
    assert second.number == first.number
    assert "b + a" in runner.origin.show(first.pull.head_ref, "calc.py")
    assert "Commutative now." in second.body
    bodies = [c.body for c in runner.github.comments(REPO, runner.issue) if "fixloop" in c.body]
    assert bodies[-1].startswith("fixloop updated a draft pull request")


def test_command_on_fixloops_own_pull_request_adds_a_commit_to_it(runner):
    runner.api.push(WRONG, DONE)
    assert runner.run("issues", runner.labeled(), FIXLOOP_MAX_ITERATIONS="1") == 1
    assert runner.github.pulls(REPO) == []  # not validated: nothing published
    runner.api.push(RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled()) == 0
    (pull,) = runner.github.pulls(REPO)
    branch = pull.pull.head_ref
    before = runner.origin.branch_sha(branch)
    runner.api.push(Reply([edit("create", "NOTES.md", file_text="add() adds.\n")]), DONE)
    assert runner.run("issue_comment", runner.comment("/fixloop fix add a note", pull.number, on_pull=True)) == 0
    (after,) = runner.github.pulls(REPO)
    assert after.number == pull.number
    assert run_git(runner.origin.bare, "rev-parse", f"{branch}^").strip() == before, "a commit on top, not a rewrite"
    assert runner.origin.show(branch, "NOTES.md") == "add() adds.\n"


def test_invalid_config_fails_the_check_run_at_the_offending_key(runner, capsys):
    runner.github.add_file(REPO, ".github/fixloop.yml", "validate: [pytest]\nlimits:\n  iterations: lots\n")
    assert runner.run("issues", runner.labeled()) == 2
    run = checks(runner.github)["fixloop"]
    assert run.conclusion == "failure" and run.output_title == "Invalid .github/fixloop.yml"
    (note,) = run.annotations
    assert ((note["path"], note["start_line"], note["title"])
            == (".github/fixloop.yml", 3, "fixloop config: limits.iterations"))
    (comment,) = runner.github.comments(REPO, runner.issue)
    assert "limits.iterations" in comment.body
    assert runner.api.requests == [], "no session starts with a broken config"
    assert runner.outputs_map()["status"] == "error"


def test_a_config_without_validation_commands_is_refused_not_waved_through(runner):
    runner.github.add_file(REPO, ".github/fixloop.yml", "limits: {iterations: 2}\n")
    assert runner.run("issues", runner.labeled()) == 2
    run = checks(runner.github)["fixloop"]
    assert run.conclusion == "failure" and "no validation commands" in run.output_summary
    assert runner.api.requests == [] and runner.github.pulls(REPO) == []


def test_the_owner_of_a_personal_repository_needs_no_permission_lookup(runner):
    payload = runner.labeled()
    payload["sender"]["login"] = "octo"
    runner.api.push(RIGHT_AT_ONCE, DONE)
    personal = {**payload["repository"], "owner": {"login": "octo", "type": "User"}}
    assert runner.run("issues", payload | {"repository": personal}) == 0
    assert not [r for r in runner.github.requests if "/permission" in r.path]
    assert len(runner.github.pulls(REPO)) == 1


def test_not_validated_session_is_honest_everywhere(runner):
    runner.api.push(WRONG, DONE)
    assert runner.run("issues", runner.labeled(), FIXLOOP_MAX_ITERATIONS="1") == 1
    runs = checks(runner.github)
    assert runs["fixloop"].conclusion == "neutral"
    assert runs["fixloop"].output_title.startswith("Not validated: iteration limit reached")
    assert runs["fixloop / iteration 1"].conclusion == "failure"
    assert [a["identifier"] for a in runs["fixloop"].actions] == ["retry"]
    assert runner.github.pulls(REPO) == []
    (comment,) = runner.github.comments(REPO, runner.issue)
    assert comment.body.startswith("fixloop could not validate a change: iteration limit reached")
    assert "changes.patch" in comment.body and "fixloop-session-701" in comment.body
    # The partial work is on a WIP branch a person can take over from, named in the comment.
    (wip,) = [b for b in run_git(runner.origin.bare, "branch").split() if b.startswith("fixloop/")]
    assert wip.startswith("fixloop/wip/add-subtracts-")
    assert f"git fetch origin {wip} && git switch {wip}" in comment.body
    assert "a * b" in run_git(runner.origin.bare, "show", f"{wip}:calc.py")
    assert run_git(runner.origin.bare, "log", "-1", "--format=%s", wip).startswith("fixloop: partial work on")
    assert runner.outputs_map()["status"] == "not_validated"


def test_without_wip_branches_the_partial_work_stays_in_the_artifact(tmp_path, fake_github, monkeypatch):
    files = {**FILES, ".github/fixloop.yml": FILES[".github/fixloop.yml"] + "escalate: {wip_branch: false}\n"}
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=files)
        api.push(WRONG, DONE)
        assert runner.run("issues", runner.labeled(), FIXLOOP_MAX_ITERATIONS="1") == 1
    assert [b for b in run_git(runner.origin.bare, "branch").split() if b.startswith("fixloop/")] == []
    (comment,) = fake_github.comments(REPO, runner.issue)
    assert "changes.patch" in comment.body and "git fetch" not in comment.body


def test_events_that_are_not_for_fixloop_do_nothing(runner):
    payload = load_payload("issues.labeled")  # label "bug"
    payload["sender"]["login"] = "maintainer"
    assert runner.run("issues", payload) == 0
    assert runner.outputs_map()["status"] == "skipped"
    assert runner.github.check_runs(REPO) == [] and runner.api.requests == []


def test_help_unknown_and_unauthorised_commands_get_replies_not_sessions(runner):
    assert runner.run("issue_comment", runner.comment("/fixloop help", runner.issue)) == 0
    assert runner.run("issue_comment", runner.comment("/fixloop retyr", runner.issue)) == 0
    stranger = runner.comment("/fixloop fix", runner.issue)
    stranger["sender"]["login"] = "stranger"
    assert runner.run("issue_comment", stranger) == 0
    replies = [c.body for c in runner.github.comments(REPO, runner.issue) if c.user.login != "maintainer"]
    assert "/fixloop deflake <test id>" in replies[0]
    assert "Did you mean `/fixloop retry`?" in replies[1]
    assert "@stranger" in replies[2] and "write access" in replies[2]
    assert runner.api.requests == [] and runner.github.check_runs(REPO) == []


def test_stop_cancels_the_running_session_for_that_issue(runner):
    active = runner.github.add_workflow_run(REPO, "fixloop.yml", status="in_progress", conclusion=None,
                                            display_title=f"fixloop issue #{runner.issue}")
    other = runner.github.add_workflow_run(REPO, "fixloop.yml", status="in_progress", conclusion=None,
                                           display_title="fixloop issue #10")
    waiting = runner.github.add_workflow_run(REPO, "fixloop.yml", status="waiting", conclusion=None,
                                             display_title=f"fixloop command #{runner.issue} (delivery-1)")
    assert runner.run("issue_comment", runner.comment("/fixloop stop", runner.issue)) == 0
    runs = {run.id: run for run in runner.github.workflow_runs(REPO)}
    assert runs[active].conclusion == "cancelled" and runs[waiting].conclusion == "cancelled"
    assert runs[other].status == "in_progress", "#1 must not match #10"
    assert runner.github.comments(REPO, runner.issue)[-1].body.startswith("Stopped 2 fixloop run(s) for #1")


def test_missing_actions_environment_is_a_clear_usage_error(monkeypatch, capsys):
    for name in ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY", "GITHUB_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["action"]) == 2
    assert "runs inside GitHub Actions" in capsys.readouterr().err


def test_outputs_are_heredocs_that_survive_hostile_values(tmp_path):
    hostile = {"status": "x\nEOF\nstatus<<EOF\ninjected", "branch": "b"}
    path = tmp_path / "out"
    write_outputs(path, hostile)
    assert parse_outputs(path.read_text()) == hostile


# -- model providers: the `provider` input, missing credentials, what the session spent ------------
OPENAI_SETTINGS = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.mark.parametrize(("inputs", "key_input"), [
    ({"ANTHROPIC_API_KEY": ""}, "anthropic-api-key"),
    ({"FIXLOOP_PROVIDER": "openai", "OPENAI_API_KEY": ""}, "openai-api-key"),
], ids=["anthropic", "openai"])
def test_a_missing_key_is_reported_like_an_invalid_config_naming_the_input(runner, capsys, monkeypatch, inputs,
                                                                          key_input):
    for name in OPENAI_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert runner.run("issues", runner.labeled(), **inputs) == 2
    out = capsys.readouterr().out
    run = checks(runner.github)["fixloop"]
    assert run.status == "completed" and run.conclusion == "failure" and run.actions == []
    assert run.output_title == "fixloop cannot start: a setting needs fixing"
    said = f"The action's `{key_input}` input is empty"
    assert said in run.output_summary
    (comment,) = runner.github.comments(REPO, runner.issue)
    assert comment.body.startswith("fixloop cannot start.") and said in comment.body
    assert f"::error::{said}" in out
    assert runner.outputs_map() | {"session-dir": ""} == {
        "status": "error", "pull-request-url": "", "branch": "", "iterations": "0", "session-dir": "",
        "cost-usd": "0.0000", "input-tokens": "0", "output-tokens": "0"}
    assert runner.api.requests == [] and runner.github.pulls(REPO) == []


def test_a_cloud_providers_missing_credentials_are_said_as_its_client_says_them(runner, monkeypatch):
    from bot.agent._anthropic import BEDROCK_NO_CREDENTIALS

    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    nowhere = str(runner.tmp / "no-aws")
    assert runner.run("issues", runner.labeled(), FIXLOOP_PROVIDER="bedrock", AWS_REGION="us-east-1",
                      AWS_CONFIG_FILE=nowhere, AWS_SHARED_CREDENTIALS_FILE=nowhere,
                      AWS_EC2_METADATA_DISABLED="true") == 2
    assert BEDROCK_NO_CREDENTIALS in checks(runner.github)["fixloop"].output_summary
    assert BEDROCK_NO_CREDENTIALS in runner.github.comments(REPO, runner.issue)[0].body
    assert runner.api.requests == []


def test_the_provider_input_wins_over_the_config_file(tmp_path, fake_github, monkeypatch):
    files = {**FILES, ".github/fixloop.yml": f"validate: [{PYTEST}]\nprovider: openai\n"}
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=files)
        api.push(RIGHT_AT_ONCE, DONE)
        assert runner.run("issues", runner.labeled(), FIXLOOP_PROVIDER="anthropic") == 0
        assert api.violations == [] and len(api.requests) == 2
    report = json.loads((Path(runner.outputs_map()["session-dir"]) / "report.json").read_text())
    assert report["provider"] == "anthropic" and report["status"] == "validated"


def test_a_provider_input_fixloop_does_not_know_is_one_line_naming_the_known_ones(runner, capsys):
    assert runner.run("issues", runner.labeled(), FIXLOOP_PROVIDER="aws") == 2
    err = capsys.readouterr().err
    assert err == ("fixloop: provider must be one of anthropic, bedrock, vertex, foundry, openai (or empty for the "
                   "config file's), not 'aws'.\n")
    assert runner.github.check_runs(REPO) == [] and runner.api.requests == []


SPENT = {"input_tokens": 1_000, "output_tokens": 40, "cache_read_input_tokens": 3_000,
         "cache_creation_input_tokens": 500}


@pytest.mark.parametrize(("model", "priced"), [("", True), ("claude-unlisted-1", False)], ids=["priced", "unpriced"])
def test_outputs_count_every_prompt_token_and_the_estimated_cost(runner, model, priced):
    runner.api.push(Reply(RIGHT_AT_ONCE.content, usage=SPENT), Reply(DONE.content, usage=SPENT))
    assert runner.run("issues", runner.labeled(), FIXLOOP_MODEL=model) == 0
    outputs = runner.outputs_map()
    assert outputs["input-tokens"] == str(2 * (1_000 + 3_000 + 500)) and outputs["output-tokens"] == "80"
    report = json.loads((Path(outputs["session-dir"]) / "report.json").read_text())
    if priced:
        assert report["cost_usd"] > 0 and outputs["cost-usd"] == f"{report['cost_usd']:.4f}"
    else:
        assert report["cost_usd"] is None and outputs["cost-usd"] == ""


CLOUD_SECRETS = {
    "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEKEYID0001", "AWS_SECRET_ACCESS_KEY": "aws-secret-wJalrXUtnFEMI-K7MDENG",
    "AWS_SESSION_TOKEN": "aws-session-IQoJb3JpZ2luX2VjEXAMPLE", "OPENAI_API_KEY": "sk-proj-openai-test-0123456789",
    "AZURE_CLIENT_SECRET": "azure-client-secret-8Q~example", "IDENTITY_HEADER": "azure-managed-identity-header-3c2b1a",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-request-token-5f4e3d",
}


def test_the_agents_shell_sees_no_cloud_credentials(runner, capsys):
    """What the clouds' login actions (and an Azure host) leave in the job's environment, with GitHub's
    OIDC request variables that `id-token: write` adds."""
    creds = runner.origin.workspace / "gha-creds-0123abcd.json"
    env = {**CLOUD_SECRETS, "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/oidc",
           "GOOGLE_APPLICATION_CREDENTIALS": str(creds), "GOOGLE_GHA_CREDS_PATH": str(creds),
           "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": str(creds), "AZURE_CLIENT_CERTIFICATE_PATH": str(creds),
           "AWS_REGION": "eu-central-1"}
    runner.api.push(Reply([bash("env | sort")]), RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled(), **env) == 0
    shell = runner.api.requests[1].body["messages"][-1]["content"][0]["content"]
    assert "AWS_REGION=eu-central-1" in shell, "the environment was printed, and a region is no secret"
    assert [name for name in env if f"{name}=" in shell] == ["AWS_REGION"]
    out = capsys.readouterr().out
    assert [name for name, value in CLOUD_SECRETS.items() if f"::add-mask::{value}" not in out] == []


# What google-github-actions/auth writes into the workspace for Workload Identity Federation: whoever
# reads it can request the job's OIDC tokens (for any audience) while the job runs.
GHA_CREDS = json.dumps({"type": "external_account", "credential_source": {
    "url": "https://token.actions.example/oidc?audience=x",
    "headers": {"Authorization": "Bearer oidc-request-token-in-the-creds-file-7a6b5c"}}})


@pytest.mark.xfail(bubblewrap() is None, strict=True, reason=f"bubblewrap is not available here ({INSTALL_HINT}): "
                   "unconfined, the agent's shell reads any file of the workspace by its path")
def test_the_google_credentials_file_in_the_workspace_is_out_of_the_agents_reach(runner):
    creds = runner.origin.workspace / "gha-creds-0123abcd.json"
    creds.write_text(GHA_CREDS)
    runner.api.push(Reply([bash(f"cat {shlex.quote(str(creds))}")]), RIGHT_AT_ONCE, DONE)
    assert runner.run("issues", runner.labeled(), GOOGLE_APPLICATION_CREDENTIALS=str(creds)) == 0
    shell = runner.api.requests[1].body["messages"][-1]["content"][0]["content"]
    assert "oidc-request-token-in-the-creds-file" not in shell
