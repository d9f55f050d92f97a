"""Publishing a session's result: push the branch, open or update the draft PR, comment. A fix for
a dependency bot's pull request is pushed onto the bot's branch instead, or, where that branch is
protected, to fixloop's branch with a draft against the bot's.

Only the orchestrator gets here, after the agent has finished; the token reaches `git push`
through the environment of that one process (an HTTP header in `GIT_CONFIG_*` variables), never
the remote URL, the git config on disk, or anything the agent's tools could read.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bot.action import render
from bot.action.plan import Plan
from bot.config import Config
from bot.errors import GitHubError, WorkspaceError
from bot.github.client import GitHubClient
from bot.secrets import Redactor
from bot.task import CampaignWork
from bot.trajectory import Report
from bot.workspace import push


def marker(correlation_id: str | None) -> str:
    """A hidden line in fixloop's pull requests; the App links them to its sessions by it."""
    return f"<!-- fixloop correlation={correlation_id} -->" if correlation_id else "<!-- fixloop -->"


def git_auth_env(token: str) -> dict[str, str]:
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: basic {basic}",
    }


@dataclass(frozen=True)
class Published:
    pull_url: str | None = None
    updated: bool = False  # an existing pull request was updated rather than opened
    problem: str | None = None  # the change was validated but could not be published
    onto: str | None = None  # the bot's branch the change was pushed onto (then `pull_url` is the bot's pull request)
    wip_branch: str | None = None  # where the partial work of a session that did not validate was pushed


# How GitHub refuses a push to a protected branch (branch protection, GH006) or one that rulesets guard (GH013).
PROTECTED_MARKS = ("protected branch", "gh006", "gh013")


def refused_as_protected(error: WorkspaceError) -> bool:
    text = str(error).casefold()
    return any(mark in text for mark in PROTECTED_MARKS)


def publish(report: Report, plan: Plan, *, github: GitHubClient, repo: Path, git_env: dict[str, str],
            config: Config, links: render.Links, redactor: Redactor, notes: str | None = None,
            addendum: Callable[[], str] = str) -> Published:
    """`notes`: CI failure evidence and triage, shown in the pull request; `addendum`: what the outcome
    comment says last (the escalation)."""
    published = Published()
    if report.status == "validated" and report.commit:
        published = _open_or_update(report, plan, github=github, repo=repo, git_env=git_env, config=config,
                                    links=links, redactor=redactor, notes=notes)
    elif report.wip_commit and config.escalate.wip_branch:
        published = Published(wip_branch=_push_wip(report.wip_commit, plan, github=github, repo=repo,
                                                   git_env=git_env, config=config))
    if plan.comment_on is not None:
        body = render.outcome_comment(
            report, pull_url=published.pull_url, updated=published.updated, problem=published.problem, links=links,
            onto=published.onto, wip_branch=published.wip_branch, command=config.trigger.command)
        try:
            github.comment(plan.comment_on, redactor.text("\n\n".join(p for p in (body, addendum()) if p)))
        except GitHubError as error:
            return Published(published.pull_url, published.updated, published.problem or f"comment failed: {error}",
                             published.onto)
    return published


def wip_branch_name(plan: Plan, config: Config) -> str:
    """`fixloop/wip/<the session's branch>`: one per target, so a retry replaces its earlier partial work."""
    return f"{config.branch_prefix}wip/{plan.branch.removeprefix(config.branch_prefix)}"


def _push_wip(commit: str, plan: Plan, *, github: GitHubClient, repo: Path, git_env: dict[str, str],
              config: Config) -> str | None:
    """The partial work pushed to its WIP branch (replacing an earlier attempt's); None when the push fails
    (the patch stays in the session artifact either way)."""
    branch = wip_branch_name(plan, config)
    try:
        push(repo, commit, branch, expected=github.branch_sha(branch), env=git_env)
    except (WorkspaceError, GitHubError):
        return None
    return branch


def _open_or_update(report: Report, plan: Plan, *, github: GitHubClient, repo: Path, git_env: dict[str, str],
                    config: Config, links: render.Links, redactor: Redactor, notes: str | None) -> Published:
    assert report.commit is not None
    try:
        push(repo, report.commit, plan.branch, expected=plan.expected_sha, env=git_env)
    except WorkspaceError as error:
        if plan.onto is not None and refused_as_protected(error):  # a draft against the bot's branch instead
            fallback = plan.onto.fallback
            plan = replace(plan, branch=fallback, expected_sha=github.branch_sha(fallback), onto=None)
            return _open_or_update(report, plan, github=github, repo=repo, git_env=git_env, config=config,
                                   links=links, redactor=redactor, notes=notes)
        return Published(problem=f"git push to {plan.branch} failed: {redactor.text(str(error))}")
    if plan.onto is not None:
        return Published(plan.onto.pull.url, updated=True, onto=plan.branch)
    work = plan.origin.target if isinstance(plan.origin.target, CampaignWork) else None
    title = redactor.text(work.title if work is not None else f"fixloop: {plan.task.title}")[:250]
    body = redactor.text(render.pull_request_body(report, task_source=plan.task.source, fixes=plan.fixes, links=links,
                                                  marker=marker(plan.origin.correlation_id), notes=notes))
    if work is not None:
        body = redactor.text(work.body) + "\n\n" + body
    try:
        existing = plan.existing_pr or github.open_pull_for(plan.branch)
        if existing is not None:
            github.update_pull(existing.number, title=title, body=body)
            return Published(existing.url, updated=True)
        pull = github.create_draft_pull(title=title, body=body, head=plan.branch, base=plan.pr_base)
        github.add_labels(pull.number, config.pull_request.labels)
        github.request_reviewers(pull.number, config.pull_request.reviewers)
        return Published(pull.url)
    except GitHubError as error:
        return Published(problem=str(error))
