import pytest

from bot.config import Config, parse_config
from bot.errors import MalformedEvent
from bot.github.events import parse_event
from bot.github.rules import Ignore, Reply, Run, Stop, decide
from bot.github.tracking import Tracked
from bot.task import FailedRun, Thread
from tests.fixtures import load_payload

CONFIG = Config()
WRITERS = {"Codertocat": "admin", "writer": "write", "maint": "maintain"}


def permission(login: str) -> str:
    return WRITERS.get(login, "read")


def decision(name: str, payload: dict, config: Config = CONFIG):
    event = parse_event(name, payload)
    assert event is not None
    return decide(event, config, permission_of=permission)


def test_trigger_label_by_a_writer_runs_a_task_with_the_issue_as_fenced_context():
    result = decision("issues", load_payload("issues.labeled", label__name="fixloop"))
    assert isinstance(result, Run)
    task = result.task
    assert task.kind == "issue" and task.title == "Spelling error in the README file"
    origin = result.origin
    assert origin.repository == "Codertocat/Hello-World" and origin.target == Thread(number=1)
    assert origin.requester == "Codertocat" and not origin.target.pull_request
    assert task.context[0].source == "issue #1 by @Codertocat"
    assert "It looks like you accidently spelled 'commit' with two 't's." in task.context[0].text


def test_other_labels_are_ignored_and_label_case_does_not_matter():
    assert isinstance(decision("issues", load_payload("issues.labeled")), Ignore)  # label "bug"
    assert isinstance(decision("issues", load_payload("issues.labeled", label__name="FixLoop")), Run)
    custom = parse_config("trigger: {label: autofix}")
    assert isinstance(decision("issues", load_payload("issues.labeled", label__name="autofix"), custom), Run)


def test_label_by_someone_without_write_access_gets_a_polite_refusal():
    payload = load_payload("issues.labeled", label__name="fixloop")
    payload["sender"]["login"] = "visitor"
    result = decision("issues", payload)
    assert isinstance(result, Reply) and result.number == 1
    assert "@visitor" in result.body and "write access" in result.body


def test_bots_never_trigger():
    payload = load_payload("issue_comment.created", comment__body="/fixloop fix")
    payload["sender"].update(login="fixloop[bot]", type="Bot")
    assert "bots" in decision("issue_comment", payload).reason
    payload["sender"].update(login="renovate[bot]", type="User")
    assert isinstance(decision("issue_comment", payload), Ignore)


def test_comment_commands():
    def comment(body: str, login: str = "writer"):
        payload = load_payload("issue_comment.created", comment__body=body)
        payload["sender"]["login"] = login
        return decision("issue_comment", payload)

    assert isinstance(comment("Thanks, looks good"), Ignore)
    fix = comment("/fixloop fix use a set\nThe list is slow.")
    assert isinstance(fix, Run)
    assert fix.task.kind == "issue" and "@writer asked on issue #1: use a set" in fix.task.instructions
    assert fix.task.context[0].text == "The list is slow."
    assert fix.origin.comment.id == 492700400
    assert isinstance(comment("/fixloop stop"), Stop)
    help_reply = comment("/fixloop help", login="visitor")
    assert isinstance(help_reply, Reply) and "/fixloop retry" in help_reply.body, "help is for everyone"
    assert "not a fixloop command" in comment("/fixloop deploy").body
    assert "needs a test id" in comment("/fixloop deflake").body
    refused = comment("/fixloop fix", login="visitor")
    assert isinstance(refused, Reply) and "write access" in refused.body
    deflake = comment("/fixloop deflake tests/test_a.py::test_b")
    assert deflake.task.kind == "deflake" and deflake.task.test == "tests/test_a.py::test_b"


def test_command_on_a_pull_request():
    payload = load_payload("issue_comment.created", comment__body="/fixloop retry")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
    result = decision("issue_comment", payload)
    assert result.task.kind == "command" and result.origin.target.pull_request
    assert "Try again." in result.task.instructions


def test_review_comment_command_names_the_file_and_line():
    payload = load_payload("pull_request_review_comment.created", comment__body="/fixloop fix rename this")
    result = decision("pull_request_review_comment", payload)
    assert isinstance(result, Run) and result.origin.comment.kind == "review"
    assert "about README.md line 265: rename this" in result.task.instructions and result.origin.target.pull_request


def ci_payload(**changes):
    payload = load_payload("workflow_run.completed")
    payload["workflow_run"].update(conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch="master")
    payload["workflow_run"].update(changes)
    payload["sender"]["login"] = "writer"
    return payload


AUTO = parse_config("ci: {auto: true}")


def test_ci_failure_on_a_watched_branch_runs():
    result = decision("workflow_run", ci_payload(), AUTO)
    assert isinstance(result, Run) and result.task.kind == "ci_failure"
    target = result.origin.target
    assert target.branch == "master" and target.run_id == 289782451 and len(target.head_sha) == 40


@pytest.mark.parametrize(
    "config, changes, reason",
    [
        (CONFIG, {}, "automatic CI sessions are off"),
        (AUTO, {"conclusion": "success"}, "not a failure"),
        (AUTO, {"head_branch": "feature"}, "is not watched (ci.branches)"),
        (AUTO, {"path": ".github/workflows/fixloop.yml"}, "its own workflow"),
        (parse_config("ci: {auto: true, workflows: [Lint]}"), {}, "is not watched (ci.workflows)"),
        (AUTO, {"head_repository": {"full_name": "someone/fork"}}, "forks"),
    ],
)
def test_ci_failures_that_do_not_run(config, changes, reason):
    result = decision("workflow_run", ci_payload(**changes), config)
    assert isinstance(result, Ignore) and reason in result.reason


def test_ci_branch_patterns():
    config = parse_config("ci: {auto: true, branches: ['release/*']}")
    assert isinstance(decision("workflow_run", ci_payload(head_branch="release/1.2"), config), Run)


def test_dispatch_from_the_app():
    payload = load_payload("workflow_dispatch")
    payload["inputs"] = {"kind": "issue", "target": "12", "instructions": "", "requester": "writer",
                         "correlation_id": "d-1"}
    result = decision("workflow_dispatch", payload)
    assert isinstance(result, Run)
    assert (result.origin.number, result.origin.correlation_id, result.origin.requester) == (12, "d-1", "writer")
    payload["inputs"]["kind"] = "rm -rf"
    assert isinstance(decision("workflow_dispatch", payload), Ignore)
    payload["inputs"].update(kind="ci_failure", target="#99")
    assert decision("workflow_dispatch", payload).origin.target.run_id == 99


def test_unsupported_events_and_malformed_payloads():
    assert parse_event("star", {"action": "created"}) is None
    assert parse_event("issues", {"action": "opened"}) is None
    with pytest.raises(MalformedEvent, match="issue"):
        parse_event("issues", {"action": "labeled", "label": {"name": "x"}, "repository": {"full_name": "a/b"},
                               "sender": {"login": "x"}})
    with pytest.raises(MalformedEvent):
        parse_event("issues", ["not", "an", "object"])


def test_a_deflake_test_id_is_never_an_option_for_the_test_runner():
    payload = load_payload("issue_comment.created", comment__body="/fixloop deflake --basetemp=/etc")
    payload["sender"]["login"] = "writer"
    reply = decision("issue_comment", payload)
    assert isinstance(reply, Reply) and "needs a test id" in reply.body


def test_retry_continue_asks_to_go_on_and_a_tracking_issue_of_fixloops_is_its_branchs_ci_failure():
    tracked = Tracked("0123abcd", 77, "master", "a" * 40)  # the payload's default branch

    def on_issue(body: str, author: dict) -> Run:
        payload = load_payload("issue_comment.created", comment__body=body)
        payload["issue"].pop("pull_request", None)
        payload["issue"].update(body=f"fixloop could not fix CI.\n{tracked.line()}", user=author)
        return decision("issue_comment", payload)

    bot = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
    run = on_issue("/fixloop retry --continue", bot)
    assert isinstance(run, Run) and run.task.kind == "ci_failure" and run.task.resume
    assert run.origin.target == FailedRun(run_id=77, branch="master", head_sha="a" * 40)
    assert run.origin.comment is not None
    plain = on_issue("/fixloop retry", bot)
    assert isinstance(plain, Run) and plain.task.kind == "ci_failure" and not plain.task.resume
    # A line naming a branch CI sessions do not watch (or one of fixloop's) gets no session.
    tracked = Tracked("0123abcd", 77, "release/1.x", "a" * 40)
    refused = on_issue("/fixloop retry", bot)
    assert isinstance(refused, Reply) and "watched branches only" in refused.body
    # The same hidden line in a person's issue is just text: an ordinary issue session, nothing else.
    forged = on_issue("/fixloop retry --continue", {"login": "mallory", "id": 5, "type": "User"})
    assert isinstance(forged, Run) and forged.task.kind == "issue" and isinstance(forged.origin.target, Thread)
    assert forged.task.resume
