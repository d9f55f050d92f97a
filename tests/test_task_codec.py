"""The Task codec: `Task` + `Origin` ⇄ the `workflow_dispatch` inputs of workflows/fixloop.yml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
import yaml

from bot.config import Config
from bot.errors import MalformedEvent
from bot.github.events import parse_event
from bot.github.rules import Run, decide
from bot.task import (
    DISPATCH_KINDS,
    INPUTS_LIMIT,
    Comment,
    Context,
    DispatchKind,
    FailedRun,
    Origin,
    Task,
    TaskKind,
    Thread,
    from_inputs,
    to_inputs,
)
from tests.fixtures import load_payload

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "fixloop.yml"
REPO = "octo/calc"


def workflow_inputs() -> dict[str, dict[str, object]]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return document[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key `on` as True


def test_the_workflows_kind_options_are_the_one_task_kind_definition():
    assert workflow_inputs()["kind"]["options"] == list(get_args(DispatchKind)) == list(DISPATCH_KINDS)
    assert set(DISPATCH_KINDS) == set(get_args(TaskKind)) - {"local"}


def test_the_codec_writes_exactly_the_workflows_inputs_within_githubs_count():
    task = Task(kind="issue", title="t", source="s")
    inputs = to_inputs(task, Origin(repository=REPO, target=Thread(number=1)))
    assert set(inputs) == set(workflow_inputs())
    assert len(inputs) <= 10, "GitHub Enterprise Server up to 3.19 takes at most 10 inputs"


CASES = [
    (Task(kind="issue", title="Crash on empty input", instructions="Resolve issue #7 (labelled 'fixloop' by @w).",
          context=[Context(source="issue #7 by @reporter", text="Crash on empty input\n\nsee `log` \"quoted\"")],
          source="issue #7 by @reporter"),
     Origin(repository=REPO, target=Thread(number=7), requester="w", correlation_id="d-1")),
    (Task(kind="command", title="Speed up", instructions="@w asked on pull request #5: use a set",
          context=[Context(source="the rest of @w's comment", text="The list is slow.\n```py\nx = [1]\n```")],
          source="@w on pull request #5"),
     Origin(repository=REPO, target=Thread(number=5), requester="w", correlation_id="d-2")),
    (Task(kind="deflake", title="Flaky", instructions="Test 'tests/test_a.py::test_b' is suspected to be flaky.",
          source="@w on issue #3", test="tests/test_a.py::test_b[x-1]"),
     Origin(repository=REPO, target=Thread(number=3), requester="w", correlation_id="d-3")),
    (Task(kind="ci_failure", title="Fix CI: CI failed on release/1.2", instructions="The CI check 'CI' failed.",
          context=[Context(source="CI run of CI", text="CI failed on release/1.2 at abc: https://x/1")],
          source="a failed run of CI on release/1.2"),
     Origin(repository=REPO, target=FailedRun(run_id=99, branch="release/1.2", head_sha="a" * 40), requester="w",
            correlation_id="d-4")),
    (Task(kind="ci_failure", title="Fix CI: Jenkins failed on main", instructions="Make it pass.", source="Jenkins"),
     Origin(repository=REPO, target=FailedRun(run_id=None, branch="main", head_sha="b" * 40), requester="w")),
]


@pytest.mark.parametrize(("task", "origin"), CASES, ids=[task.kind for task, _ in CASES])
def test_round_trip_is_lossless(task, origin):
    assert from_inputs(to_inputs(task, origin), repository=REPO, sender="fixloop[bot]") == (task, origin)


def test_the_comment_and_the_pull_request_flag_are_left_to_the_app_and_the_runner():
    task = Task(kind="command", title="Speed up", source="@w on pull request #5")
    origin = Origin(repository=REPO, target=Thread(number=5, pull_request=True), requester="w",
                    comment=Comment(id=11, kind="review"))
    _, decoded = from_inputs(to_inputs(task, origin), repository=REPO, sender="bot")
    assert decoded == Origin(repository=REPO, target=Thread(number=5), requester="w")


def test_decisions_survive_the_dispatch():
    """What rules decide for a webhook is what the runner decides from the dispatch the App makes."""
    payload = load_payload("issue_comment.created", comment__body="/fixloop deflake tests/test_a.py::test_b\nflaky")
    payload["sender"]["login"] = "writer"
    event = parse_event("issue_comment", payload)
    run = decide(event, Config(), permission_of=lambda login: "write")
    assert isinstance(run, Run) and run.task.test == "tests/test_a.py::test_b"
    dispatch = load_payload("workflow_dispatch")
    dispatch["inputs"] = to_inputs(run.task, run.origin)
    dispatch["repository"] = payload["repository"]  # the App dispatches in the repository the event came from
    handed = decide(parse_event("workflow_dispatch", dispatch), Config(), permission_of=lambda login: "none")
    assert isinstance(handed, Run)
    assert handed.task == run.task
    assert handed.origin == run.origin.model_copy(update={"comment": None})


def test_inputs_typed_by_hand_need_only_kind_and_target():
    task, origin = from_inputs({"kind": "issue", "target": "#12"}, repository=REPO, sender="maintainer")
    assert (task.kind, task.title, origin.target, origin.requester) == ("issue", "#12", Thread(number=12), "maintainer")
    task, origin = from_inputs({"kind": "ci_failure", "target": "77"}, repository=REPO, sender="m")
    assert origin.target == FailedRun(run_id=77) and task.title == "Fix CI: workflow run 77 failed"


@pytest.mark.parametrize(("inputs", "message"), [
    ({"kind": "rm -rf", "target": "1"}, "kind='rm -rf' is not one of"),
    ({"kind": "issue", "target": "abc"}, "target='abc' is not a number"),
    ({"kind": "issue", "target": "²"}, "is not a number"),
    ({"kind": "issue", "target": "9" * 5_000}, "is not a number"),
    ({"kind": "deflake", "target": "3", "test": "--basetemp=/x"}, "is not a test id"),
    ({"kind": "deflake", "target": "3"}, "test is needed for kind=deflake"),
    ({"kind": "issue", "target": "3", "context": "[{\"source\": 1}]"}, "context is not a list"),
    ({"kind": "issue", "target": "3", "context": "not json"}, "context is not a list"),
])
def test_bad_inputs_are_a_clear_error(inputs, message):
    with pytest.raises(MalformedEvent, match=message):
        from_inputs(inputs, repository=REPO, sender="m")


def sent_size(inputs: dict[str, str]) -> int:
    return len(json.dumps(inputs))  # as the client sends them: JSON, escapes included


def test_inputs_over_githubs_limit_are_cut_longest_first_and_stay_valid():
    big, small = "x" * 70_000, "the rest of the comment"
    task = Task(kind="issue", title="t", instructions="i" * 2_000, source="s",
                context=[Context(source="issue #1", text=big), Context(source="comment", text=small)])
    inputs = to_inputs(task, Origin(repository=REPO, target=Thread(number=1)))
    assert sent_size(inputs) <= INPUTS_LIMIT
    decoded, _ = from_inputs(inputs, repository=REPO, sender="m")
    assert decoded.context[1].text == small and decoded.instructions == task.instructions
    assert decoded.context[0].text.startswith("xxx") and decoded.context[0].text.endswith("dispatch inputs)")
    assert len(decoded.context[0].text) > 60_000, "only what does not fit is cut"


@pytest.mark.parametrize("unit", ["é", '"\n\\', "\x01", "🙂"], ids=["accent", "escapes", "control", "emoji"])
def test_texts_that_escaping_inflates_are_cut_to_fit_but_not_to_nothing(unit):
    task = Task(kind="issue", title="t", instructions="i", source="s",
                context=[Context(source="issue #1", text=unit * 200_000)])
    inputs = to_inputs(task, Origin(repository=REPO, target=Thread(number=1)))
    assert sent_size(inputs) <= INPUTS_LIMIT
    (item,) = from_inputs(inputs, repository=REPO, sender="m")[0].context
    assert item.text.startswith(unit * 10) and len(json.dumps(item.text)) > 20_000, "cut by what it costs, no more"


def test_many_small_items_end_in_inputs_that_fit():
    task = Task(kind="issue", title="t", source="s", context=[Context(source="s" * 40, text="x")] * 2_000)
    inputs = to_inputs(task, Origin(repository=REPO, target=Thread(number=1)))
    assert sent_size(inputs) <= INPUTS_LIMIT and inputs["context"]


def test_a_task_that_cannot_fit_is_a_clear_error():
    task = Task(kind="issue", title="t" * 70_000, source="s")
    with pytest.raises(MalformedEvent, match="does not fit"):
        to_inputs(task, Origin(repository=REPO, target=Thread(number=1)))


def test_a_branch_holding_an_at_sign_survives_the_head_input():
    origin = Origin(repository=REPO, target=FailedRun(run_id=5, branch="user@fix/x", head_sha="c" * 40), requester="w")
    task = Task(kind="ci_failure", title="Fix CI", instructions="fix", source="s")
    assert from_inputs(to_inputs(task, origin), repository=REPO, sender="m")[1] == origin
    _, typed = from_inputs({"kind": "ci_failure", "target": "5", "head": "main"}, repository=REPO, sender="m")
    assert typed.target == FailedRun(run_id=5, branch="main")


def test_a_local_task_is_never_dispatched():
    with pytest.raises(ValueError, match="local"):
        to_inputs(Task(kind="local", title="t", source="s"), Origin(repository=REPO, target=Thread(number=1)))


def test_a_task_is_stated_once():
    """`fixloop run --task` makes its first line the title: the statement (report.json's `task`) does
    not repeat it."""
    local = Task(kind="local", title="Fix add()", instructions="Fix add()\nadd(2, 3) must be 5", source="cli")
    assert local.statement() == "Fix add()\nadd(2, 3) must be 5"
    issue = Task(kind="issue", title="Crash", instructions="Resolve issue #7.", source="s",
                 context=[Context(source="issue #7", text="Crash\n\nlog")])
    assert issue.statement() == "Crash\n\nResolve issue #7.\n\n[issue #7]\nCrash\n\nlog"
