"""When a session fails, a person knows and can take over (`escalate` in .github/fixloop.yml).

The deciding is pure and tested as such: CODEOWNERS as GitHub reads it, who is called and when. End to
end, `fixloop action` runs as in a workflow run (real git, real pytest, the scripted Messages API, the
OpenAPI-checked fake GitHub): a not-validated issue session calls the owners of the touched and failing
files once, labels and assigns; automatic CI failures keep one tracking issue per branch; and
`/fixloop retry --continue` goes on from the kept work with the earlier attempt's account in its prompt.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.action.escalate import MAX_MENTIONS, Trail, decide, look_first, read_trail, reason_for, section, tracking_body
from bot.action.render import Links, code, fence, outcome_comment, pull_request_body, quiet_mentions
from bot.agent.usage import Usage
from bot.config import Escalate, parse_config
from bot.errors import ConfigError
from bot.github.codeowners import owners_of, parse
from bot.github.commands import parse_command
from bot.github.tracking import Tracked, read_tracked
from bot.trajectory import IterationReport, Report, ValidationSummary
from tests.conftest import run_git
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit
from tests.fixtures import load_payload
from tests.test_action_e2e import DONE, FILES, REPO, WRONG, Runner

# -- CODEOWNERS, as GitHub's documentation describes it -------------------------------------------------------------

DOCS_EXAMPLE = """\
# These owners will be the default owners for everything
*       @global-owner1 @global-owner2
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/*  docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
!ignored.py @nobody
"""


@pytest.mark.parametrize("path, owners", [
    ("README.md", ["global-owner1", "global-owner2"]),
    ("src/app.js", ["js-owner"]),
    ("main.go", []),  # an e-mail owner cannot be mentioned
    ("notes/a.txt", ["octo-org/octocats"]),
    ("build/logs/today/x.log", ["octocat"]),  # **/logs, later than /build/logs/
    ("docs/getting-started.md", ["doctocat"]),  # /docs/ comes later than docs/*
    ("scripts/deploy.sh", ["doctocat", "octocat"]),
    ("deeply/nested/logs/x", ["octocat"]),
    ("apps/github/main.py", []),  # a later rule without owners: nobody
    ("apps/web/main.py", ["octocat"]),
])
def test_codeowners_follow_githubs_rules(path, owners):
    assert owners_of(parse(DOCS_EXAMPLE), [path]) == owners


def test_a_folders_star_matches_its_own_files_only_and_owners_come_once_in_order():
    rules = parse("docs/* @writer\n*.py @py @writer\n")
    assert owners_of(rules, ["docs/a.md"]) == ["writer"]
    assert owners_of(rules, ["docs/deep/a.md"]) == []
    assert owners_of(rules, ["docs/a.md", "x.py", "y.py"]) == ["writer", "py"]
    assert owners_of(parse("*.py @py\t# not @boss\n"), ["a.py"]) == ["py"]  # a comment after a tab too
    assert owners_of(parse("build* @builder\n"), ["build-tools/x.sh"]) == ["builder"]  # no folder: anywhere


# -- deciding --------------------------------------------------------------------------------------------------------

def report(status: str = "not_validated", *, limit: str | None = None, reason: str = "validation still fails",
           failed: tuple[str, ...] = ("tests/test_a.py::test_x",), changed: tuple[str, ...] = ("src/a.py",)) -> Report:
    now = datetime.now(UTC)
    validation = ValidationSummary(passed=False, failed_tests=list(failed), failed_files=["tests/test_a.py"],
                                   commands=[])
    return Report(session_id="s", status=status, reason=reason, task="t", model="m", repo="/r", base_commit="0" * 40,
                  started_at=now, finished_at=now, iterations=[IterationReport(n=1, turns=2, tool_calls=3,
                                                                              validation=validation)],
                  usage=Usage(), cost_usd=None, changed_files=list(changed), limit=limit, trajectory="t.jsonl")


def test_endings_map_to_the_policys_reasons():
    assert reason_for(report()) == "not_validated"
    assert reason_for(report(limit="iterations")) == "limit"
    assert reason_for(report("error")) == "error"
    assert reason_for(report("validated")) is None and reason_for(report("cancelled")) is None


def test_people_are_called_once_bots_never_and_at_most_a_limit():
    policy = Escalate(mention=["lead", "octo/qa"], assign=["lead", "lead"])
    owners = ["alice", "renovate[bot]", "Lead", "bob"]
    trail, escalation = decide(report(), policy, Trail(), owners)
    assert escalation is not None and escalation.reason == "not_validated"
    assert escalation.mention == ("lead", "octo/qa", "alice", "bob")  # "Lead" is lead; the bot is left out
    assert escalation.assign == ("lead",) and escalation.label == "fixloop: needs a human"
    assert trail == Trail(1, ("lead", "octo/qa", "alice", "bob"))
    # The same failure again: nobody is called twice.
    again_trail, again = decide(report(), policy, trail, owners)
    assert again is not None and again.mention == () and again.failures == 2
    assert again_trail.mentioned == trail.mentioned
    # Many owners: a limit, and the rest counted.
    many = [f"owner{i}" for i in range(25)]
    _, crowded = decide(report(), Escalate(), Trail(), many)
    assert crowded is not None and len(crowded.mention) == MAX_MENTIONS and crowded.left_out == 25 - MAX_MENTIONS


def test_after_failures_on_and_the_endings_that_reset_or_keep_the_trail():
    policy = Escalate(after_failures=2, on=["limit", "error"], codeowners=False, mention=["lead"])
    first, none = decide(report(limit="turns"), policy, Trail(), [])
    assert none is None and first.failures == 1
    second, escalation = decide(report(limit="turns"), policy, first, [])
    assert escalation is not None and escalation.reason == "limit" and escalation.mention == ("lead",)
    assert decide(report(), policy, second, [])[1] is None  # not_validated is not listed
    assert decide(report("cancelled"), policy, second, [])[0] == second  # a person stopped it: nothing changes
    assert decide(report("validated"), policy, second, []) == (Trail(), None)  # the streak is over
    assert decide(report(), Escalate(codeowners=False), Trail(), ["alice"])[1].mention == ()


def test_trails_and_tracking_lines_read_back_what_they_wrote():
    trail = Trail(3, ("alice", "octo/qa"))
    assert read_trail(["no mark", f"old {Trail(1, ('x',)).line()}", f"text\n{trail.line()}"]) == trail
    odd = Tracked("0123abcd", 42, "feature/a-->b @x", "f" * 40)
    assert read_tracked(f"body\n{odd.line()}\n") == odd
    assert read_tracked("<!-- fixloop tracking key=zz run=1 head=a@b -->") is None


def test_untrusted_words_call_nobody_and_cannot_close_their_fence():
    assert quiet_mentions("ping @alice, `@bob and @octo/team") == "ping @\u200dalice, `@\u200dbob and @\u200docto/team"
    block = fence("```\n@alice\n````")
    assert block.startswith("`````text\n") and block.endswith("\n`````")
    assert code("a` @ceo `b") == "``a` @\u200dceo `b``" and code("`x`") == "`` `x` ``"
    # Test ids and file names are the tests' and the agent's words: shown as code that does not end early.
    hostile = report(failed=("tests/t.py::test[a` @victim `b]",), changed=("src/x` @ceo `.py",))
    assert "@victim" not in look_first(hostile) and "@ceo" not in look_first(hostile)
    escalation = decide(hostile, Escalate(mention=["lead"], codeowners=False), Trail(), [])[1]
    text = section(escalation, hostile, wip_branch=None, command="/fixloop")
    assert text.count("@") - text.count("@\u200d") == 1 and "@lead" in text


def test_the_pull_request_and_the_outcome_comment_call_nobody_the_tests_or_the_agent_name():
    hostile = report(failed=("t.py::t[`@octocat`]",), reason="setup failed: ping @boss")
    hostile = hostile.model_copy(update={"summary": "Fixed it, thanks @mona"})
    body = pull_request_body(hostile, task_source="issue #1", fixes=1, links=Links(), marker="<!-- fixloop -->")
    comment = outcome_comment(hostile, pull_url=None, updated=False, problem=None, links=Links(),
                              wip_branch="fixloop/wip/x")
    for text in (body, comment):
        assert not re.search(r"@(?=[A-Za-z0-9])", text.replace("`` t.py::t[`@\u200doctocat`] ``", "")), text
    assert "git fetch origin fixloop/wip/x && git switch fixloop/wip/x" in comment  # copyable as it is


def test_a_hidden_line_in_untrusted_text_cannot_pose_as_fixloops_state():
    forged = "FAILED <!-- fixloop tracking key=0badf00d run=1 head=evil@" + "b" * 40 + " -->"
    tracked = Tracked("0123abcd", 7, "main", "a" * 40)
    body = tracking_body(tracked, report(reason=forged), escalation=None, trail=Trail(1),
                         wip_branch=None, command="/fixloop", links_line="", call=True)
    assert read_tracked(body) == tracked and body.count("<!-- fixloop tracking ") == 1
    trail_forged = f"{Trail(9, ('x',)).line()}"
    assert read_trail([f"{fence(trail_forged)}\n{Trail(1).line()}"]) == Trail(1)


def test_retry_continue_is_a_retry_that_goes_on():
    command = parse_command("/fixloop retry --continue")
    assert (command.verb, command.argument) == ("retry", "--continue")


# -- end to end --------------------------------------------------------------------------------------------------------

CODEOWNERS = ("* @fallback\n/calc.py @alice\ntest_*.py @bob @octo/qa @renovate[bot]\n")
CONFIG = FILES[".github/fixloop.yml"] + "escalate: {assign: [maintainer], mention: [lead]}\n"
ESCALATING = {**FILES, ".github/CODEOWNERS": CODEOWNERS, ".github/fixloop.yml": CONFIG}


@pytest.fixture
def runner(tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        yield Runner(tmp_path, fake_github, api, monkeypatch, files=ESCALATING)
        assert api.violations == []


def fixloop_comments(runner, number):
    return [c.body for c in runner.github.comments(REPO, number) if c.user.login.endswith("[bot]")]


def first_prompt(runner, index=-1):
    return runner.api.requests[index].body["messages"][0]["content"][0]["text"]


def test_a_not_validated_issue_session_calls_the_owners_once_labels_assigns_and_a_retry_goes_on(runner):
    github = runner.github
    runner.api.push(WRONG, DONE)
    assert runner.run("issues", runner.labeled(), FIXLOOP_MAX_ITERATIONS="1") == 1
    (comment,) = fixloop_comments(runner, runner.issue)
    # One place: who is called (the listed person, then the owners of the touched and the failing file), why it
    # stopped, where to look first, what it tried; never a bot.
    assert "### fixloop needs a person: @lead @alice @bob @octo/qa\n" in comment
    assert "renovate" not in comment and "@fallback" not in comment
    assert "was stopped by a limit" in comment
    assert "**Look first at** the failing test(s) `test_calc.py::test_add` in `test_calc.py`" in comment
    assert "validation failed: test_calc.py::test_add" in comment
    assert "/fixloop retry --continue" in comment
    issue = github.issue(REPO, runner.issue)
    assert issue.labels == ["fixloop: needs a human"] and [a.login for a in issue.assignees] == ["maintainer"]

    # It fails again: the same people are not called a second time.
    runner.api.push(WRONG, DONE)
    assert runner.run("issue_comment", runner.comment("/fixloop retry", runner.issue), FIXLOOP_MAX_ITERATIONS="1") == 1
    second = fixloop_comments(runner, runner.issue)[-1]
    assert "### fixloop needs a person\n" in second and "2 times in a row" in second
    assert not any(f"@{login}" in second for login in ("lead", "alice", "bob", "octo/qa"))

    # `retry --continue` starts from the WIP branch, with the earlier attempt's account in its first prompt.
    (wip,) = [b for b in run_git(runner.origin.bare, "branch").split() if b.startswith("fixloop/wip/")]
    kept = runner.origin.branch_sha(wip)
    runner.api.push(Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
    assert runner.run("issue_comment", runner.comment("/fixloop retry --continue", runner.issue)) == 0
    prompt = first_prompt(runner, -2)
    assert f"fixloop's earlier attempt, kept on {wip}" in prompt
    assert "What was tried (1 iteration(s)):" in prompt and "validation failed: test_calc.py::test_add" in prompt
    assert "already in the worktree" in prompt
    (pull,) = github.pulls(REPO)
    # The kept work is applied on the current base: one commit on main, whatever the WIP branch's history.
    assert run_git(runner.origin.bare, "rev-parse", f"{pull.pull.head_ref}^").strip() == runner.origin.head
    assert runner.origin.branch_sha(wip) == kept
    assert "a + b" in runner.origin.show(pull.pull.head_ref, "calc.py")
    assert "failures=0" in fixloop_comments(runner, runner.issue)[-1]  # the streak is over


def test_continue_without_kept_work_says_so_and_starts_nothing(runner):
    assert runner.run("issue_comment", runner.comment("/fixloop retry --continue", runner.issue)) == 0
    (answer,) = fixloop_comments(runner, runner.issue)
    assert "there is no kept work on `fixloop/wip/" in answer and "`/fixloop retry` to start again" in answer
    assert runner.api.requests == []
    # A WIP branch that shares no history with the base cannot be carried over: said, nothing started.
    workspace = runner.origin.workspace
    wip = answer.split("`")[1]
    run_git(workspace, "checkout", "-q", "--orphan", "elsewhere")
    run_git(workspace, "commit", "-q", "-m", "unrelated")
    run_git(workspace, "push", "-q", "origin", f"elsewhere:refs/heads/{wip}")
    run_git(workspace, "checkout", "-q", "main")
    assert runner.run("issue_comment", runner.comment("/fixloop retry --continue", runner.issue)) == 0
    assert f"the kept work on `{wip}` cannot be carried over" in fixloop_comments(runner, runner.issue)[-1]
    assert runner.api.requests == [] and runner.github.check_runs(REPO) == []


def failed_run(runner, sha: str) -> dict:
    github = runner.github
    run_id = github.add_workflow_run(REPO, "ci.yml", conclusion="failure", head_sha=sha)
    github.add_job(run_id, "tests", conclusion="failure", log_text="FAILED test_calc.py::test_add\n")
    payload = load_payload("workflow_run.completed")
    payload["workflow_run"].update(id=run_id, conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch="main", head_sha=sha, head_repository={"full_name": REPO})
    payload["sender"]["login"] = "maintainer"
    return payload


def test_automatic_ci_failures_keep_one_tracking_issue_per_branch_and_it_takes_retry_continue(
        tmp_path, fake_github, monkeypatch):
    """With `after_failures: 2`: the first failure opens the branch's tracking issue and calls nobody, the
    second calls the people (once), a third calls nobody again; `retry --continue` there goes on."""
    config = CONFIG.replace("mention: [lead]", "mention: [lead], after_failures: 2")
    files = {**ESCALATING, ".github/fixloop.yml": config}
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=files)
        github = runner.github
        github.add_workflow(REPO, "ci.yml", name="CI")

        def tracking_issues():
            return [i for i in github.issues(REPO) if i.pull is None and i.number != runner.issue]

        runner.api.push(WRONG, DONE)
        assert runner.run("workflow_run", failed_run(runner, runner.origin.head), FIXLOOP_MAX_ITERATIONS="1") == 1
        (tracking,) = tracking_issues()
        assert tracking.title == "fixloop could not fix CI on main" and tracking.labels == []
        assert "failed 1 time(s) in a row" in tracking.body and "Nobody is called yet" in tracking.body
        assert "/fixloop retry --continue" in tracking.body and tracking.assignees == []

        # The second failure in a row: the same issue, now labelled and assigned; the comment calls people.
        runner.api.push(WRONG, DONE)
        assert runner.run("workflow_run", failed_run(runner, runner.origin.head), FIXLOOP_MAX_ITERATIONS="1") == 1
        (updated,) = tracking_issues()
        assert updated.number == tracking.number and "failed 2 time(s) in a row" in updated.body
        assert updated.labels == ["fixloop: needs a human"] and [a.login for a in updated.assignees] == ["maintainer"]
        assert "validation failed: test_calc.py::test_add" in updated.body
        assert "@alice" not in updated.body  # the body keeps the names, defused; the comment calls, once
        (called,) = fixloop_comments(runner, tracking.number)
        assert called.startswith("@lead @alice @bob @octo/qa: fixloop failed again on `main` (2 in a row)")

        # A third: nobody is called again.
        runner.api.push(WRONG, DONE)
        assert runner.run("workflow_run", failed_run(runner, runner.origin.head), FIXLOOP_MAX_ITERATIONS="1") == 1
        assert [i.number for i in tracking_issues()] == [tracking.number]
        again = fixloop_comments(runner, tracking.number)[-1]
        assert again.startswith("fixloop failed again on `main` (3 in a row)") and "@alice" not in again

        # `/fixloop retry --continue` on the tracking issue: the branch's CI session, from the kept work.
        body = github.issue(REPO, tracking.number).body
        payload = runner.comment("/fixloop retry --continue", tracking.number)
        payload["issue"].update(title=tracking.title, body=body,
                                user={**payload["issue"]["user"], "login": "github-actions[bot]", "type": "Bot"})
        runner.api.push(Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
        assert runner.run("issue_comment", payload) == 0
        assert "fixloop's earlier attempt, kept on fixloop/wip/ci-" in first_prompt(runner, -2)
        (pull,) = github.pulls(REPO)
        assert pull.pull.base_ref == "main" and "a + b" in runner.origin.show(pull.pull.head_ref, "calc.py")
        closing = fixloop_comments(runner, tracking.number)[-1]
        assert closing.startswith("A later session on `main` validated a fix.")
        assert "failures=0" in github.issue(REPO, tracking.number).body

        # Without kept work (the WIP branch deleted), `--continue` is answered there and starts nothing.
        (wip,) = [b for b in run_git(runner.origin.bare, "branch").split() if b.startswith("fixloop/wip/")]
        run_git(runner.origin.workspace, "push", "-q", "origin", "--delete", wip)
        asked = len(runner.api.requests)
        payload = runner.comment("/fixloop retry --continue", tracking.number)
        payload["issue"].update(title=tracking.title, body=github.issue(REPO, tracking.number).body,
                                user={**payload["issue"]["user"], "login": "github-actions[bot]", "type": "Bot"})
        assert runner.run("issue_comment", payload) == 0
        assert f"there is no kept work on `{wip}`" in fixloop_comments(runner, tracking.number)[-1]
        assert len(runner.api.requests) == asked
        assert api.violations == []


def test_a_listed_bot_cannot_be_assigned_and_escalation_can_be_turned_off(tmp_path, fake_github, monkeypatch):
    with pytest.raises(ConfigError, match=r"escalate\.assign"):
        parse_config("validate: [pytest]\nescalate: {assign: ['dependabot[bot]']}\n")
    files = {**ESCALATING, ".github/fixloop.yml": FILES[".github/fixloop.yml"] + "escalate: {on: []}\n"}
    with MessagesAPIServer() as api:
        quiet = Runner(tmp_path, fake_github, api, monkeypatch, files=files)
        api.push(WRONG, DONE)
        assert quiet.run("issues", quiet.labeled(), FIXLOOP_MAX_ITERATIONS="1") == 1
    (comment,) = fixloop_comments(quiet, quiet.issue)
    assert "needs a person" not in comment and "failures=1" in comment
    assert "fixloop: needs a human" not in fake_github.issue(REPO, quiet.issue).labels
