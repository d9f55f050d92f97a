"""Dependency-upgrade pull requests (`ci.allowed_bots`): a failed CI run on a listed bot's pull request
starts a fix session on the bot's branch, whose task names the dependency and its versions; other
bots, fixloop itself and forks stay ignored; a protected bot branch gets a draft against it instead;
the App's per-branch cap applies. Through `fixloop action` and `fixloop serve` against the fake GitHub,
with real git and real pytest, from real webhook payloads."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.github.dependencies import dependency_updates
from bot.github.events import parse_event
from bot.github.rules import Ignore, Run, decide
from tests.conftest import run_git
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, text
from tests.fixtures import load_payload
from tests.test_action_e2e import REPO, Runner, checks
from tests.test_app_server import make_app, seeded, with_installation  # noqa: F401 - fixtures
from tests.test_ci_sessions import FILES, PYTEST, failing_log

BRANCH = "dependabot/pip/requests-2.32.3"
TITLE = "Bump requests from 2.31.0 to 2.32.3"
BODY = ("Bumps [requests](https://github.com/psf/requests) from 2.31.0 to 2.32.3.\n<details>\n<summary>Release "
        "notes</summary>\n</details>\n\nDependabot will resolve any conflicts with this PR as long as you don't "
        "alter it yourself.")


def bots(more: str = "") -> str:
    """The `ci:` line that lists Dependabot and Renovate, with `more` keys."""
    return f"ci: {{allowed_bots: ['dependabot[bot]', 'renovate[bot]']{more}}}\n"


BOTS = bots()
DEP = "def add_numbers(a, b):\n    return a + b\n"  # the dependency's new API (the old one was `plus`)
PROJECT = {"test_calc.py": FILES["test_calc.py"], "dep.py": "def plus(a, b):\n    return a + b\n",
           "calc.py": "from dep import plus\n\n\ndef add(a, b):\n    return plus(a, b)\n",
           ".github/fixloop.yml": f"validate: [{PYTEST}]\nlimits: {{iterations: 2}}\n{BOTS}"}
FIX = Reply([edit("create", "calc.py", file_text="from dep import add_numbers\n\n\ndef add(a, b):\n"
                                                 "    return add_numbers(a, b)\n")])


# -- reading what moved ---------------------------------------------------------------------------------------------
def test_dependabot_titles_and_descriptions_name_the_dependency_and_versions():
    assert dependency_updates(TITLE, BODY) == "requests from 2.31.0 to 2.32.3"
    assert dependency_updates("build(deps-dev): bump pytest from 7.4.0 to 8.0.0 in /api", "") == \
        "pytest from 7.4.0 to 8.0.0"
    group = ("Bumps the pip group with 2 updates: [idna](https://x) and [urllib3](https://y).\n\n"
             "Updates `idna` from 3.6 to 3.7\n- [Release notes](https://z)\n\nUpdates `urllib3` from 2.2.1 to 2.2.2\n")
    assert dependency_updates("Bump the pip group with 2 updates", group) == \
        "idna from 3.6 to 3.7; urllib3 from 2.2.1 to 2.2.2"


def test_renovates_table_names_the_dependency_and_an_unknown_format_gives_the_title():
    body = ("This PR contains the following updates:\n\n| Package | Change | Age | Confidence |\n|---|---|---|---|\n"
            "| [lodash](https://lodash.com/) ([source](https://github.com/lodash/lodash)) | [`4.17.20` -> "
            "`4.17.21`](https://renovatebot.com/diffs/npm/lodash/4.17.20/4.17.21) | [![age](https://a)](https://b) "
            "| high |\n\n---\n")
    assert dependency_updates("chore(deps): update dependency lodash to v4.17.21", body) == \
        "lodash from 4.17.20 to 4.17.21"
    assert dependency_updates(" chore(deps): update dependency x to v2 ", "Some other text.") == \
        "chore(deps): update dependency x to v2"


# -- who gets a session ---------------------------------------------------------------------------------------------
def bot_run(sender: str = "dependabot[bot]", **changes: object) -> dict:
    """A real workflow_run.completed delivery for a run on a pull request, as `sender` caused it."""
    payload = load_payload("workflow_run.completed.with-pull-requests")
    payload["workflow_run"].update(conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch=BRANCH, head_repository={"full_name": "octo-org/octo-repo"})
    payload["workflow_run"].update(changes)
    payload["sender"].update(login=sender, type="Bot")
    return payload


def decided(payload: dict, config_text: str = BOTS, *, name: str = "workflow_run", app_slug: str | None = None):
    event = parse_event(name, payload)
    assert event is not None
    return decide(event, parse_config(config_text), permission_of=lambda login: "none", app_slug=app_slug)


def test_a_listed_bots_failed_run_is_a_ci_session_on_its_branch_without_ci_auto():
    result = decided(bot_run())
    assert isinstance(result, Run) and result.task.kind == "ci_failure"
    assert result.origin.target.branch == BRANCH and result.origin.requester == "dependabot[bot]"
    suite = load_payload("check_suite.completed")
    suite["check_suite"].update(conclusion="failure", head_branch=BRANCH)
    suite["check_suite"]["app"]["slug"] = "octocoders-linter"  # another CI app
    suite["sender"].update(login="renovate[bot]", type="Bot")
    assert isinstance(decided(suite, name="check_suite"), Run)


@pytest.mark.parametrize(("sender", "changes", "config_text", "reason"), [
    ("some-bot[bot]", {}, BOTS, "events from bots"),
    ("dependabot[bot]", {}, "ci: {auto: true}\n", "events from bots"),
    ("github-actions[bot]", {}, "ci: {allowed_bots: ['github-actions[bot]']}\n", "events from bots"),
    ("fixloop[bot]", {}, "ci: {allowed_bots: ['fixloop[bot]']}\n", "events from bots"),
    ("dependabot[bot]", {"head_branch": "fixloop/ci-fix-1234"}, BOTS, "fixloop's own"),
    ("dependabot[bot]", {"pull_requests": []}, BOTS, "not on a pull request"),
    ("dependabot[bot]", {"head_repository": {"full_name": "someone/fork"}}, BOTS, "forks"),
    ("dependabot[bot]", {"conclusion": "success"}, BOTS, "not a failure"),
    ("dependabot[bot]", {}, bots(", workflows: [Lint]"), "not watched"),
], ids=["unlisted-bot", "not-listed", "actions-token", "fixloop-app", "fixloop-branch", "no-pull-request", "fork",
        "green", "unwatched-workflow"])
def test_other_bots_fixloop_itself_forks_and_unwatched_runs_stay_ignored(sender, changes, config_text, reason):
    result = decided(bot_run(sender, **changes), config_text, app_slug="fixloop")
    assert isinstance(result, Ignore) and reason in result.reason


# -- sessions through `fixloop action` ------------------------------------------------------------------------------
@pytest.fixture
def bot(tmp_path, fake_github, monkeypatch):
    """A repository whose Dependabot pull request (#2) moved `dep` to a new API and broke `calc`."""
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=PROJECT)
        fake_github.add_workflow(REPO, "ci.yml", name="CI")
        workspace = runner.origin.workspace
        run_git(workspace, "checkout", "-q", "-b", BRANCH)
        (workspace / "dep.py").write_text(DEP)
        run_git(workspace, "commit", "-qam", TITLE)
        run_git(workspace, "push", "-q", "origin", BRANCH)
        run_git(workspace, "checkout", "-q", "main")  # the Action's checkout: the default branch
        runner.pull = fake_github.add_pull(REPO, BRANCH, title=TITLE, body=BODY, user="dependabot[bot]")
        runner.bot_sha = runner.origin.branch_sha(BRANCH)
        yield runner
        assert api.violations == []


def failed_bot_run(runner: Runner, sender: str = "dependabot[bot]") -> dict:
    run_id = runner.github.add_workflow_run(REPO, "ci.yml", conclusion="failure", head_branch=BRANCH,
                                            head_sha=runner.bot_sha, event="pull_request", actor=sender)
    runner.github.add_job(run_id, "tests", conclusion="failure",
                          log_text=failing_log("test_calc.py::test_add", "ImportError: cannot import name 'plus'"))
    payload = bot_run(sender, id=run_id, head_sha=runner.bot_sha, head_repository={"full_name": REPO})
    payload["workflow_run"]["pull_requests"][0].update(number=runner.pull)
    return payload


def test_a_dependabot_pull_requests_failed_run_gets_a_fix_on_its_branch_naming_the_update(bot):
    bot.api.push(FIX, Reply([text("calc now calls dep's new add_numbers.")]))
    assert bot.run("workflow_run", failed_bot_run(bot)) == 0
    prompt = bot.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "requests from 2.31.0 to 2.32.3" in prompt and "do not pin or revert" in prompt
    fixed = bot.origin.branch_sha(BRANCH)
    assert fixed != bot.bot_sha and run_git(bot.origin.bare, "rev-parse", f"{fixed}^").strip() == bot.bot_sha
    assert "add_numbers" in bot.origin.show(BRANCH, "calc.py")
    assert [pull.number for pull in bot.github.pulls(REPO)] == [bot.pull], "no pull request of fixloop's own"
    comment = bot.github.comments(REPO, bot.pull)[-1].body
    assert f"pushed a fix onto `{BRANCH}`: {fixed}" in comment
    session = checks(bot.github)["fixloop"]
    assert session.conclusion == "success" and f"pushed onto {BRANCH}" in session.output_title
    assert bot.outputs_map()["branch"] == BRANCH


def test_a_protected_bot_branch_gets_a_draft_pull_request_against_it(bot):
    hook = bot.origin.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do case $ref in refs/heads/dependabot/*)\n"
                    "  echo \"error: GH006: Protected branch update failed for $ref.\"; exit 1;; esac; done\n")
    hook.chmod(0o755)
    bot.api.push(FIX, Reply([text("calc now calls dep's new add_numbers.")]))
    assert bot.run("workflow_run", failed_bot_run(bot)) == 0
    assert bot.origin.branch_sha(BRANCH) == bot.bot_sha, "the bot's branch is untouched"
    (draft,) = [pull for pull in bot.github.pulls(REPO) if pull.number != bot.pull]
    assert draft.pull.draft and draft.pull.base_ref == BRANCH and draft.pull.head_ref.startswith("fixloop/ci-")
    assert "requests from 2.31.0 to 2.32.3" in draft.title
    assert "opened a draft pull request" in bot.github.comments(REPO, bot.pull)[-1].body


def test_an_unlisted_bots_failed_run_starts_nothing(bot):
    assert bot.run("workflow_run", failed_bot_run(bot, sender="some-bot[bot]")) == 0
    assert bot.outputs_map()["status"] == "skipped" and checks(bot.github) == {}
    assert bot.api.requests == [] and bot.origin.branch_sha(BRANCH) == bot.bot_sha


# -- the App's per-branch cap ---------------------------------------------------------------------------------------
def test_the_apps_per_branch_cap_applies_to_bot_sessions(make_fake_github, make_app):  # noqa: F811
    github = make_fake_github()
    github.add_repo(REPO, files={".github/fixloop.yml": "validate: [python -m pytest -q]\n"
                                                        + bots(", max_sessions_per_branch: 2"), "calc.py": "x = 1\n"})
    github.add_workflow(REPO, "fixloop.yml", run_name="fixloop {kind} #{target} ({correlation_id})")
    github.add_installation("octo", repositories=[REPO])
    app = make_app(github)

    def delivered(run_id: int) -> None:
        payload = bot_run(id=run_id, head_sha="b" * 40, head_repository={"full_name": REPO})
        payload["repository"].update(full_name=REPO, name="calc", default_branch="main")
        payload["repository"]["owner"].update(login="octo", type="Organization")
        app.deliver("workflow_run", with_installation(payload, github))
        app.settle()

    for run_id in (201, 202, 203):
        delivered(run_id)
    dispatched = github.dispatches(REPO)
    assert [d.inputs["target"] for d in dispatched] == ["201", "202"]
    assert dispatched[0].inputs["head"] == f"{BRANCH}@{'b' * 40}" and dispatched[0].inputs["kind"] == "ci_failure"
