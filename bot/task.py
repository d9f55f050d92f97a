"""A Task: what a session is asked to do, whichever way it came in; where on GitHub it points
(`Origin`); and the one codec that hands both to a workflow run as `workflow_dispatch` inputs.

`instructions` come from someone entitled to ask (the person at the command line, a user with
write access who commented a command, the App that checked that). `context` is material from
anyone (issue text, a pull request description, CI evidence): the model sees it fenced as data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from bot.errors import MalformedEvent

SessionKind = Literal["issue", "command", "ci_failure", "deflake", "task"]  # what a person or an event asks for
DispatchKind = Literal[SessionKind, "campaign"]  # "campaign": one target of a campaign, from the App
TaskKind = Literal["local", DispatchKind]
DISPATCH_KINDS: tuple[str, ...] = get_args(DispatchKind)  # the `kind` options of workflows/fixloop.yml
RUN_EVENTS_PATH = "/api/runs/events"  # where a runner posts its session's events to the App (bot.app.run_events)
WORKFLOW_FILE = "fixloop.yml"  # the workflow the App dispatches, in .github/workflows/ (a setting can rename it)

# GitHub refuses a dispatch whose inputs add up to more than this many characters; fixloop counts
# them as the JSON it sends (escapes included), with room to spare for the request around them.
INPUTS_LIMIT = 65_535
INPUTS_BUDGET = INPUTS_LIMIT - 1_024
CUT = "\n(cut to fit GitHub's limit on workflow_dispatch inputs)"


class Context(BaseModel):
    source: str  # provenance in words: "issue #12 by @octocat"
    text: str


class Task(BaseModel):
    kind: TaskKind
    title: str = Field(min_length=1)
    instructions: str = ""
    context: list[Context] = []
    source: str  # where the task came from, in words
    test: str | None = None  # the test to make reliable (deflake)
    resume: bool = False  # go on from the kept work on the target's WIP branch (`/fixloop retry --continue`)

    def slug(self, limit: int = 40) -> str:
        return _slug(self.title, limit)

    def statement(self) -> str:
        """The task in one text, for records (the model gets the fenced form from the prompt)."""
        title = "" if self.instructions.startswith(self.title) else self.title  # a local task's first line
        parts = [title, self.instructions, *(f"[{c.source}]\n{c.text}" for c in self.context)]
        return "\n\n".join(p for p in parts if p.strip())


def _slug(text: str, limit: int) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "change"


def branch_name(prefix: str, task: Task, suffix: str) -> str:
    """fixloop's branch for an issue, a pull request or a local task: `prefix` (the config's
    `branch_prefix`), the title's slug, and `suffix` (a `stable_id` for GitHub targets, so that a
    retry finds its earlier branch and pull request)."""
    return f"{prefix}{task.slug()}-{suffix}"


def ci_branch_name(prefix: str, failing_branch: str, suffix: str) -> str:
    """fixloop's branch for a fix of CI on `failing_branch`, named after that branch alone (as the App
    has always named it): a retry finds it whichever way it came and whatever the failed run's name."""
    return f"{prefix}ci-{_slug(f'Fix CI: {failing_branch} failed', 30)}-{suffix}"


def stable_id(repository: str, key: str) -> str:
    return hashlib.sha1(f"{repository}#{key}".encode()).hexdigest()[:8]


class Thread(BaseModel):
    """An issue or a pull request."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    number: int
    pull_request: bool = False


class FailedRun(BaseModel):
    """A failed CI run: the workflow run (None for another CI app's check suite) and the failing
    branch and commit (None when only the run was handed over: they are looked up from it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    run_id: int | None = None
    branch: str | None = None
    head_sha: str | None = None


class Ref(BaseModel):
    """A task in words on a branch or a commit (started from the App's web UI or API), with no issue."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ref: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._/-]+$")
    iterations: int | None = Field(None, ge=1, le=100)  # at most this many, within the repository's own limit

    @field_validator("ref")
    @classmethod
    def _a_ref_git_can_hold(cls, value: str) -> str:
        if ".." in value or value.startswith(("-", "/", ".")) or value.endswith(("/", ".lock", ".")):
            raise ValueError(f"{value!r} is not a branch or a commit")
        return value


class CampaignWork(BaseModel):
    """One target of a campaign, as the App hands it over: the repository (a folder of it, for a
    monorepo) is the target; the branch and the pull request are the campaign's, rendered for it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")  # the App's campaign id
    campaign: str = Field(min_length=1, max_length=100)  # its name
    path: str = ""  # the package's folder in a monorepo; "" for the whole repository
    branch: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=256)
    body: str = ""
    labels: list[str] = []
    reviewers: list[str] = []
    codemod: list[str] = []
    setup: list[str] | None = None
    validation: list[str] | None = Field(None, alias="validate")
    resume_run: int | None = Field(None, ge=1)  # a retry from the kept work of this earlier workflow run

    @field_validator("branch")
    @classmethod
    def _branch_git_can_hold(cls, value: str) -> str:
        parts = value.split("/")
        if (not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or ".." in value or any(
                not part or part.startswith(".") or part.endswith((".lock", ".")) for part in parts)):
            raise ValueError(f"{value!r} is not a branch name fixloop pushes to")
        return value

    @field_validator("path")
    @classmethod
    def _folder_of_the_repository(cls, value: str) -> str:
        parts = value.split("/")
        if value and (value.startswith("/") or any(part in ("", ".", "..", ".git") for part in parts)):
            raise ValueError(f"{value!r} is not a folder of the repository")
        return value


class Comment(BaseModel):
    """The comment that asked, for a reaction."""

    model_config = ConfigDict(frozen=True)
    id: int
    kind: Literal["issue", "review"]


class Origin(BaseModel):
    """Where on GitHub a task points, who asked, and the App's id for the request."""

    model_config = ConfigDict(frozen=True)
    repository: str  # owner/name
    target: Thread | FailedRun | CampaignWork | Ref
    requester: str | None = None
    comment: Comment | None = None
    correlation_id: str | None = None  # the App's delivery id, carried through the dispatch

    @property
    def number(self) -> int | None:
        """The issue or pull request to answer on, if the target is one."""
        return self.target.number if isinstance(self.target, Thread) else None

    def key(self) -> str:
        """The target in one word: the App's one-session-per-target key, and the `external_id` of
        fixloop's check runs, which their buttons read back."""
        target = self.target
        if isinstance(target, Thread):
            return f"{'pr' if target.pull_request else 'issue'}:{target.number}"
        if isinstance(target, CampaignWork):
            return f"campaign:{target.id}:{target.path}"
        if isinstance(target, Ref):  # each request its own target: tasks in words on one branch are not one
            return f"task:{target.ref}:{self.correlation_id or ''}"
        return f"ci:{target.run_id or 0}:{target.branch}@{target.head_sha}"


_CONTEXT = TypeAdapter(list[Context])


def split_head(head: str) -> tuple[str, str]:
    """`branch@sha` as (branch, sha); a branch name may hold "@", a commit id never does."""
    branch, at, sha = head.rpartition("@")
    return (branch, sha) if at else (head, "")


def to_inputs(task: Task, origin: Origin) -> dict[str, str]:
    """The `workflow_dispatch` inputs that hand `task` to the repository's fixloop workflow.

    Lossless for what the runner needs: `from_inputs` gives back the same task and origin, except
    the comment that asked (the App has answered it) and whether the number is a pull request (the
    runner asks GitHub). When the inputs, as JSON, would exceed GitHub's limit, the longest texts
    are cut to fit (and context items cut to nothing are left out). Raises MalformedEvent for a task
    that cannot fit at all."""
    if task.kind == "local":
        raise ValueError("a local task is not dispatched")
    target = origin.target
    inputs = {
        "kind": task.kind,
        "target": str(target.number if isinstance(target, Thread) else
                      target.run_id or 0 if isinstance(target, FailedRun) else 0),
        # `head` also carries a campaign's target, and a task's branch or commit: GitHub Enterprise Server up to
        # 3.19 takes 10 inputs.
        "head": _head(task, target),
        "test": task.test or "",
        "title": task.title,
        "instructions": task.instructions,
        "context": "",
        "source": task.source,
        "requester": origin.requester or "",
        "correlation_id": origin.correlation_id or "",
    }
    context = [item.model_copy() for item in task.context]
    while True:
        inputs["context"] = _CONTEXT.dump_json(context).decode() if context else ""
        excess = len(json.dumps(inputs)) - INPUTS_BUDGET
        if excess <= 0:
            return inputs
        longest = max(context, key=lambda item: len(item.text), default=None)
        if longest is not None and len(longest.text) > max(len(CUT), len(inputs["instructions"])):
            longest.text = _cut(longest.text, excess, json.dumps(json.dumps(longest.text, ensure_ascii=False)))
        elif len(inputs["instructions"]) > len(CUT):
            inputs["instructions"] = _cut(inputs["instructions"], excess, json.dumps(inputs["instructions"]))
        elif context:
            context.pop()
        else:
            raise MalformedEvent(f"the task does not fit the {INPUTS_LIMIT:,} characters GitHub takes as "
                                 "workflow_dispatch inputs, even with its texts cut")


def _head(task: Task, target: Thread | FailedRun | CampaignWork | Ref) -> str:
    """The `head` input: a failed run's `branch@sha`, a campaign's target or a task's ref as JSON, or
    nothing for an issue or pull request. A task that goes on from kept work (`resume`) has it as JSON
    with `"resume": true` (the inputs are full: GitHub Enterprise Server takes 10)."""
    if isinstance(target, CampaignWork):
        return target.model_dump_json(by_alias=True)  # a campaign's retry has its own way (resume_run)
    fields: dict[str, object] = {"resume": True} if task.resume else {}
    if isinstance(target, Ref):
        return json.dumps({**target.model_dump(exclude_none=True), **fields})
    if isinstance(target, FailedRun):
        if not fields:
            return f"{target.branch or ''}@{target.head_sha or ''}"
        return json.dumps({**target.model_dump(include={"branch", "head_sha"}, exclude_none=True), **fields})
    return json.dumps(fields) if fields else ""


def _cut(text: str, excess: int, encoded: str) -> str:
    """`text` shortened by about `excess` characters of its `encoded` form (escaping makes some
    characters count several times), ending in a note that it was cut."""
    kept = text.removesuffix(CUT)
    drop = math.ceil(excess * len(text) / len(encoded)) + len(CUT) + 16
    return kept[: max(0, len(kept) - drop)] + CUT


def from_inputs(inputs: Mapping[str, object], *, repository: str, sender: str) -> tuple[Task, Origin]:
    """The task and origin that `to_inputs` wrote, also from inputs someone typed into the Actions
    tab (only `kind` and `target` are needed). Raises MalformedEvent for inputs that make no task."""
    def text(name: str) -> str:
        return str(inputs.get(name) or "").strip()

    kind, raw = text("kind"), text("target").lstrip("#")
    if kind not in DISPATCH_KINDS:
        raise MalformedEvent(f"workflow_dispatch input kind={kind!r} is not one of {sorted(DISPATCH_KINDS)}")
    if not re.fullmatch(r"[0-9]{1,12}", raw):
        raise MalformedEvent(f"workflow_dispatch input target={raw[:40]!r} is not a number")
    if kind == "deflake" and not text("test"):
        raise MalformedEvent("workflow_dispatch input test is needed for kind=deflake (a test id)")
    if text("test").startswith("-"):
        raise MalformedEvent(f"workflow_dispatch input test={text('test')[:80]!r} is not a test id")
    try:
        context = _CONTEXT.validate_json(text("context")) if text("context") else []
    except ValidationError as error:
        raise MalformedEvent(f"workflow_dispatch input context is not a list of {{source, text}}: {error}") from None
    requester = text("requester") or sender
    head: str | dict[str, object] = text("head")
    resume = False
    if kind != "campaign" and isinstance(head, str) and head.startswith("{"):
        try:
            head = json.loads(head)
        except ValueError:
            raise MalformedEvent(f"workflow_dispatch input head={text('head')[:80]!r} is not JSON") from None
        asked = head.pop("resume", False) if isinstance(head, dict) else None
        if not isinstance(asked, bool):
            raise MalformedEvent(f"workflow_dispatch input head={text('head')[:80]!r} is not a target")
        resume = asked
    target: Thread | FailedRun | CampaignWork | Ref
    if kind == "task":
        try:  # the App's JSON, or a branch typed into the Actions tab
            target = Ref.model_validate(head) if isinstance(head, dict) else Ref(ref=head)
        except ValidationError:
            raise MalformedEvent(f"workflow_dispatch input head={text('head')[:80]!r} is not a branch or a commit "
                                 "(kind task works on one)") from None
        if not str(inputs.get("instructions") or "").strip():
            raise MalformedEvent("workflow_dispatch input instructions is needed for kind=task (the task in words)")
        title = text("title") or str(inputs.get("instructions")).strip().splitlines()[0][:100]
    elif kind == "campaign":
        try:
            target = CampaignWork.model_validate_json(text("head"))
        except ValidationError as error:
            raise MalformedEvent(f"workflow_dispatch input head is not a campaign's target: {error}") from None
        title = target.title
    elif kind == "ci_failure":
        try:
            branch, sha = split_head(head) if isinstance(head, str) else ("", "")
            target = (FailedRun.model_validate({**head, "run_id": int(raw) or None}) if isinstance(head, dict) else
                      FailedRun(run_id=int(raw) or None, branch=branch or None, head_sha=sha or None))
        except ValidationError:
            raise MalformedEvent(f"workflow_dispatch input head={text('head')[:80]!r} is not branch@sha") from None
        title = f"Fix CI: {target.branch or f'workflow run {raw}'} failed"
    else:
        if isinstance(head, dict) and head:
            raise MalformedEvent(f"workflow_dispatch input head={text('head')[:80]!r} is not for kind={kind}")
        target = Thread(number=int(raw))
        title = f"#{raw}"
    task = Task(kind=cast(DispatchKind, kind), title=text("title") or title, test=text("test") or None, context=context,
                instructions=str(inputs.get("instructions") or "") or "Work on the target.",
                source=text("source") or f"@{requester} through the fixloop App", resume=resume)
    return task, Origin(repository=repository, target=target, requester=requester,
                        correlation_id=text("correlation_id") or None)
