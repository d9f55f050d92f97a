"""Where a session starts and where its result goes, decided before the agent runs.

- An issue: start from the default branch; push `fixloop/<slug>-<id>`, where the id is stable per
  issue, so a retry finds and updates its earlier pull request instead of opening another.
- A command on someone's pull request: start from its head; open a draft against its branch.
- A command on fixloop's own draft pull request: start from its head and add commits to it.
- A failed CI run: start from the failing commit; open a draft against the failing branch.
- A task in words (the App's web UI or API) on a branch: start from its tip; push a new
  `fixloop/<slug>-<id>` and open a draft against that branch. On a commit: start there, draft against
  the default branch.
- A campaign's target: start from the default branch; push the campaign's branch for the target
  (rendered by the App from the campaign file, one of fixloop's) and open a draft with the campaign's
  title and body; a retry goes on from that draft's tip. An existing branch that is not the
  campaign's draft is never replaced.
- A failed CI run on a pull request of a bot in `ci.allowed_bots` (a dependency update): start from
  the failing commit and push the fix onto the bot's branch; where that push is refused because the
  branch is protected, open a draft against the bot's branch instead.
Pull requests from forks are refused: fixloop never pushes to them or runs their code with secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import Config
from bot.github.client import PullInfo, Repository
from bot.github.dependencies import dependency_updates
from bot.task import CampaignWork, Context, FailedRun, Origin, Ref, Task, Thread, branch_name, ci_branch_name, stable_id


@dataclass(frozen=True)
class Onto:
    """A bot's pull request whose own branch (the plan's `branch`) gets the fix pushed onto it."""

    pull: PullInfo
    fallback: str  # fixloop's branch for a draft against the bot's branch, should the push be refused as protected


@dataclass(frozen=True)
class Kept:
    """The work an earlier attempt kept on its WIP branch, for a session that goes on from it."""

    branch: str
    patch: str  # what the branch changed since it left the plan's base, applied before the agent starts
    account: str  # the earlier attempt's account of itself (the WIP commit's message)


@dataclass(frozen=True)
class Plan:
    task: Task  # completed with what GitHub says about the target
    origin: Origin  # likewise (a thread's kind, a failed run's branch and commit)
    base_sha: str  # the commit the agent starts from
    fetch_ref: str  # what to fetch from origin so that base_sha is present
    check_sha: str  # where check runs are shown
    branch: str  # where the result is pushed
    expected_sha: str | None  # where `branch` is now on origin (None: it does not exist)
    pr_base: str  # base branch of the pull request
    existing_pr: PullInfo | None  # the pull request to update instead of opening one
    fixes: int | None  # issue closed by the pull request
    comment_on: int | None  # where the outcome is reported
    onto: Onto | None = None  # set when `branch` is a bot's pull request branch, not fixloop's
    kept: Kept | None = None  # what a resumed session goes on from


@dataclass(frozen=True)
class Refusal:
    number: int | None
    reason: str


def plan_session(task: Task, origin: Origin, github: Repository, config: Config,
                 default_branch: str) -> Plan | Refusal:
    target = origin.target
    if isinstance(target, FailedRun):
        return _ci_plan(task, origin, target, github, config)
    if isinstance(target, CampaignWork):
        return _campaign_plan(task, origin, target, github, config, default_branch)
    if isinstance(target, Ref):
        return _task_plan(task, origin, target, github, config, default_branch)
    issue = github.issue(target.number)
    if issue.is_pull_request:
        return _pull_plan(task, origin, github, config, github.pull(target.number))
    task = task.model_copy(update={
        "title": issue.title,
        "context": [Context(source=f"issue #{issue.number} by @{issue.author}",
                            text=f"{issue.title}\n\n{issue.body}".strip()),
                    *[c for c in task.context if not c.source.startswith(f"issue #{issue.number}")]],
    })
    origin = origin.model_copy(update={"target": Thread(number=issue.number)})
    base_sha = github.branch_sha(default_branch)
    if base_sha is None:
        return Refusal(issue.number, f"the default branch {default_branch!r} was not found")
    branch = branch_name(config.branch_prefix, task, stable_id(origin.repository, str(issue.number)))
    return Plan(task=task, origin=origin, base_sha=base_sha, fetch_ref=default_branch, check_sha=base_sha,
                branch=branch, expected_sha=github.branch_sha(branch), pr_base=default_branch,
                existing_pr=github.open_pull_for(branch), fixes=issue.number, comment_on=issue.number)


def _campaign_plan(task: Task, origin: Origin, target: CampaignWork, github: Repository, config: Config,
                   default_branch: str) -> Plan | Refusal:
    """A campaign's target: from the default branch onto the campaign's branch for it, which must be one
    of fixloop's (`branch_prefix`) and either new or this campaign's own draft (a retry goes on from its
    tip, keeping what people added there); never another branch, which it would replace."""
    if not target.branch.startswith(config.branch_prefix) or target.branch == default_branch:
        return Refusal(None, f"the campaign's branch {target.branch!r} is not one of fixloop's: it must start with "
                             f"{config.branch_prefix!r} (the repository's `branch_prefix`)")
    tip = github.branch_sha(target.branch)
    existing = github.open_pull_for(target.branch) if tip is not None else None
    if tip is not None and (existing is None or f"correlation={target.id}-" not in existing.body):
        return Refusal(None, f"{target.branch} exists and is not this campaign's draft; fixloop does not replace it")
    if existing is not None:
        return Plan(task=task, origin=origin, base_sha=existing.head_sha, fetch_ref=target.branch,
                    check_sha=existing.head_sha, branch=target.branch, expected_sha=existing.head_sha,
                    pr_base=existing.base_ref, existing_pr=existing, fixes=None, comment_on=None)
    base_sha = github.branch_sha(default_branch)
    if base_sha is None:
        return Refusal(None, f"the default branch {default_branch!r} was not found")
    return Plan(task=task, origin=origin, base_sha=base_sha, fetch_ref=default_branch, check_sha=base_sha,
                branch=target.branch, expected_sha=None, pr_base=default_branch, existing_pr=None, fixes=None,
                comment_on=None)


def _task_plan(task: Task, origin: Origin, target: Ref, github: Repository, config: Config,
               default_branch: str) -> Plan | Refusal:
    """A task in words: from a branch onto a new branch of fixloop's and a draft against that branch, or from a
    commit and a draft against the default branch."""
    tip = github.branch_sha(target.ref)
    if tip is None and not re.fullmatch(r"[0-9a-f]{40}", target.ref):
        return Refusal(None, f"{target.ref!r} is neither a branch of {origin.repository} nor a full commit id")
    base_sha, onto = (tip, target.ref) if tip is not None else (target.ref, default_branch)
    branch = branch_name(config.branch_prefix, task, stable_id(origin.repository, origin.key()))
    return Plan(task=task, origin=origin, base_sha=base_sha, fetch_ref=onto if tip is not None else base_sha,
                check_sha=base_sha, branch=branch, expected_sha=github.branch_sha(branch), pr_base=onto,
                existing_pr=github.open_pull_for(branch), fixes=None, comment_on=None)


def _pull_plan(task: Task, origin: Origin, github: Repository, config: Config, pull: PullInfo) -> Plan | Refusal:
    if pull.head_repository != origin.repository:
        return Refusal(pull.number, "this pull request comes from a fork; fixloop does not push to forks or run "
                                    "their code with this repository's secrets.")
    task = task.model_copy(update={
        "title": pull.title,
        "context": [*task.context, Context(source=f"pull request #{pull.number} by @{pull.author}",
                                           text=f"{pull.title}\n\n{pull.body}".strip())],
    })
    origin = origin.model_copy(update={"target": Thread(number=pull.number, pull_request=True)})
    expected: str | None
    existing: PullInfo | None
    if pull.head_ref.startswith(config.branch_prefix):  # fixloop's own draft: add commits to it
        branch, expected, pr_base, existing = pull.head_ref, pull.head_sha, pull.base_ref, pull
    else:
        branch = branch_name(config.branch_prefix, task, stable_id(origin.repository, f"pr{pull.number}"))
        expected, pr_base, existing = github.branch_sha(branch), pull.head_ref, github.open_pull_for(branch)
    return Plan(task=task, origin=origin, base_sha=pull.head_sha, fetch_ref=pull.head_ref, check_sha=pull.head_sha,
                branch=branch, expected_sha=expected, pr_base=pr_base, existing_pr=existing, fixes=None,
                comment_on=pull.number)


def _ci_plan(task: Task, origin: Origin, target: FailedRun, github: Repository, config: Config) -> Plan | Refusal:
    sha, branch = target.head_sha, target.branch
    if not sha or not branch:  # dispatched with just the workflow run id
        if target.run_id is None:
            return Refusal(None, "a CI failure needs the failed workflow run or the failing branch@sha")
        run = github.workflow_run(target.run_id)
        sha, branch = run.head_sha, run.head_branch
        task = task.model_copy(update={
            "title": f"Fix CI: {run.name} failed on {branch}",
            "context": [*task.context, Context(source=f"workflow run {run.id}",
                                               text=f"{run.name} concluded {run.conclusion}: {run.url}")],
        })
        origin = origin.model_copy(update={"target": target.model_copy(update={"head_sha": sha, "branch": branch})})
    own = github.open_pull_for(branch) if branch.startswith(config.branch_prefix) else None
    if own is not None:
        return Plan(task=task, origin=origin, base_sha=sha, fetch_ref=branch, check_sha=sha, branch=branch,
                    expected_sha=own.head_sha, pr_base=own.base_ref, existing_pr=own, fixes=None, comment_on=own.number)
    fix_branch = ci_branch_name(config.branch_prefix, branch, stable_id(origin.repository, f"ci:{branch}"))
    bot = github.open_pull_for(branch) if config.ci.allowed_bots else None
    if bot is not None and bot.author in config.ci.allowed_bots and bot.head_repository == origin.repository:
        return _bot_plan(task, origin, bot, sha, fix_branch)
    return Plan(task=task, origin=origin, base_sha=sha, fetch_ref=branch, check_sha=sha, branch=fix_branch,
                expected_sha=github.branch_sha(fix_branch), pr_base=branch,
                existing_pr=github.open_pull_for(fix_branch), fixes=None, comment_on=None)


def _bot_plan(task: Task, origin: Origin, pull: PullInfo, sha: str, fallback: str) -> Plan | Refusal:
    """A failed run on a dependency bot's pull request: the fix goes onto the bot's branch, and the
    task says which dependency moved from which version to which."""
    if pull.head_sha != sha:
        return Refusal(None, f"{pull.head_ref} has moved on from {sha[:12]} (to {pull.head_sha[:12]}); the newer "
                             "commit's own CI run decides whether it needs a fix")
    moved = dependency_updates(pull.title, pull.body)[:300]  # a bot's words: the listing vouches for the bot
    task = task.model_copy(update={
        "title": f"Fix CI after the update of {moved}"[:200],
        "instructions": (f"{task.instructions}\n\nPull request #{pull.number} by @{pull.author} updates a "
                         f"dependency: {moved}. Adapt the code to the new version; do not pin or revert "
                         "the update.").strip(),
        "context": [*task.context, Context(source=f"pull request #{pull.number} by @{pull.author}",
                                           text=f"{pull.title}\n\n{pull.body}".strip())],
    })
    return Plan(task=task, origin=origin, base_sha=sha, fetch_ref=pull.head_ref, check_sha=sha, branch=pull.head_ref,
                expected_sha=sha, pr_base=pull.head_ref, existing_pr=None, fixes=None, comment_on=pull.number,
                onto=Onto(pull=pull, fallback=fallback))
