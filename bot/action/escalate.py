"""Calling a person when a session fails, as `escalate` in .github/fixloop.yml says.

Deciding is pure (`decide`): which ending calls a person, after how many failures in a row, whom to
mention (the listed people and the CODEOWNERS of the touched and failing files, at most
`MAX_MENTIONS`, never anyone already called about this failure, never a bot or fixloop itself) and
whom to assign. What fixloop said before is read back from hidden lines in its own comments and
tracking issues (`Trail`), so a runner needs no database.

Where it goes: an issue or pull request gets the escalation in fixloop's outcome comment, with the
label and the assignees. An automatic CI session has no thread: it opens one tracking issue per
failing branch, and updates it (a comment for each new failure) instead of opening another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bot.action.render import code, fence, quiet_mentions
from bot.attempt import last_validation, summarize
from bot.config import Escalate, EscalateOn
from bot.github import codeowners
from bot.github.client import GitHubClient, IssueInfo
from bot.github.tracking import TRACKING_MARK, Tracked, read_tracked, tracking_title
from bot.trajectory import Report

MAX_MENTIONS = 10
TRAIL_MARK = "<!-- fixloop escalation "
_TRAIL = re.compile(r"<!-- fixloop escalation failures=(\d{1,4}) mentioned=([A-Za-z0-9,/._-]*) -->")


def reason_for(report: Report) -> EscalateOn | None:
    """How the session failed, in the policy's words; None when it did not fail (validated, cancelled)."""
    if report.status == "error":
        return "error"
    if report.status == "not_validated":
        return "limit" if report.limit else "not_validated"
    return None


@dataclass(frozen=True)
class Trail:
    """What fixloop has said on a thread or tracking issue since its last success."""

    failures: int = 0  # failed sessions in a row
    mentioned: tuple[str, ...] = ()  # people called about this failure

    def line(self) -> str:
        return f"{TRAIL_MARK}failures={self.failures} mentioned={','.join(self.mentioned)} -->"


def read_trail(texts: Iterable[str]) -> Trail:
    """The trail in the last of `texts` (fixloop's own comments, oldest first) that has one, its last line
    (fixloop writes it last; anything quoted before it is defused anyway)."""
    found = Trail()
    for text in texts:
        for match in _TRAIL.finditer(text):
            found = Trail(int(match.group(1)), tuple(m for m in match.group(2).split(",") if m))
    return found


@dataclass(frozen=True)
class Escalation:
    reason: EscalateOn
    failures: int  # failed sessions in a row, this one included
    mention: tuple[str, ...]  # called now
    left_out: int  # owners beyond MAX_MENTIONS, not called
    assign: tuple[str, ...]
    label: str | None


def _is_bot(login: str) -> bool:
    """An app's account (fixloop's own among them): never called or assigned."""
    return login.casefold().endswith("[bot]")


def decide(report: Report, policy: Escalate, trail: Trail, owners: Sequence[str]) -> tuple[Trail, Escalation | None]:
    """The trail after this session, and the escalation it calls for (None: none)."""
    reason = reason_for(report)
    if report.status == "validated":
        return Trail(), None
    if reason is None:  # cancelled: a person stopped it, nobody needs calling
        return trail, None
    failures = trail.failures + 1
    if reason not in policy.on or failures < policy.after_failures:
        return Trail(failures, trail.mentioned), None
    called = {login.casefold() for login in trail.mentioned}
    wanted: dict[str, str] = {}  # by login in any case (GitHub's logins are case-insensitive)
    for login in [*policy.mention, *(owners if policy.codeowners else [])]:
        if not _is_bot(login) and login.casefold() not in called:
            wanted.setdefault(login.casefold(), login)
    mention = tuple(wanted.values())[:MAX_MENTIONS]
    assign = tuple(login for login in dict.fromkeys(policy.assign) if not _is_bot(login))
    return Trail(failures, (*trail.mentioned, *mention)), Escalation(
        reason=reason, failures=failures, mention=mention, left_out=len(wanted) - len(mention), assign=assign,
        label=policy.label or None)


_REASONS = {"not_validated": "did not validate", "limit": "was stopped by a limit", "error": "stopped with an error"}


def section(escalation: Escalation, report: Report, *, wip_branch: str | None, command: str,
            call: bool = True) -> str:
    """The escalation, in one place: whom it calls (`call`: False names them without calling them, where
    a comment calls them instead), why the session stopped, what it tried, where to look first and how to
    take over. Untrusted text (test ids, file names, the agent's words, test output) is shown as code,
    its mentions defused."""
    who = " ".join(f"@{login}" if call else quiet_mentions(f"@{login}") for login in escalation.mention)
    more = f" ({escalation.left_out} more owner(s) not mentioned)" if escalation.left_out else ""
    again = f", {escalation.failures} times in a row" if escalation.failures > 1 else ""
    lines = [f"### fixloop needs a person{': ' + who if who else ''}{more}", "",
             f"The session {_REASONS[escalation.reason]}{again}.", "",
             f"**Look first at** {look_first(report)}"]
    if wip_branch:
        lines += ["", f"**Take over:** {code(f'git fetch origin {wip_branch} && git switch {wip_branch}')}, or "
                      f"comment `{command} retry --continue` to have fixloop go on from it."]
    attempt = summarize(report.iterations, reason=report.reason, summary=report.summary,
                        changed_files=report.changed_files)
    lines += ["", "<details><summary>What it tried</summary>", "", fence(quiet_mentions(attempt)), "", "</details>"]
    return "\n".join(lines)


def look_first(report: Report) -> str:
    """Where a person should start: the tests failing last, their files, and what the session changed."""
    last = last_validation(report)
    parts = []
    if last is not None and last.failed_tests:
        parts.append("the failing test(s) " + ", ".join(code(t) for t in last.failed_tests[:3])
                     + (f" in {', '.join(code(f) for f in last.failed_files[:3])}" if last.failed_files else ""))
    if report.changed_files:
        parts.append("the session's change to " + ", ".join(code(f) for f in report.changed_files[:5]))
    if report.status == "error" or not parts:
        parts.insert(0, "the reason it stopped, above, and the session log")
    return "; then ".join(parts) + "."


# -- tracking issues -----------------------------------------------------------------------------------------------

def tracking_body(tracked: Tracked, report: Report, *, escalation: Escalation | None, trail: Trail,
                  wip_branch: str | None, command: str, links_line: str, call: bool) -> str:
    """The tracking issue, rewritten after each failure on its branch (`call`: whether its mentions call,
    as when it is opened; an edit's would not, so a comment calls the people then)."""
    head = (f"fixloop's automatic sessions on {code(tracked.branch)} failed {trail.failures} time(s) in a row; the "
            f"latest at `{tracked.head_sha[:12]}`: {quiet_mentions(report.reason)}")
    body = [head, "", links_line]
    if escalation is not None:
        body += ["", section(escalation, report, wip_branch=wip_branch, command=command, call=call)]
    else:
        body += ["", "Nobody is called yet (see `escalate` in .github/fixloop.yml)."]
    go_on = f"`{command} retry --continue` to have fixloop go on from its kept work, or " if wip_branch else ""
    body += ["", f"Comment {go_on}`{command} retry` to start again, here."]
    body += ["", tracked.line(), trail.line()]
    return "\n".join(body)


# -- on GitHub -----------------------------------------------------------------------------------------------------

class Escalator:
    """One session's escalation on GitHub: read what fixloop said before, decide, and say it where the
    session reports (its thread's outcome comment, or the branch's tracking issue)."""

    def __init__(self, report: Report, policy: Escalate, github: GitHubClient, *, thread: int | None,
                 tracked: Tracked | None, command: str, default_branch: str) -> None:
        self.report, self.policy, self.github, self.thread, self.tracked = report, policy, github, thread, tracked
        self.command = command
        self.issue: IssueInfo | None = None  # the open tracking issue of the branch, if any
        if thread is not None:
            before = read_trail(github.bot_comments(thread, TRAIL_MARK))
        elif tracked is not None:
            self.issue = find_tracking_issue(github, tracked)
            before = read_trail([self.issue.body]) if self.issue is not None else Trail()
        else:
            before = Trail()
        failing = reason_for(report) is not None
        owners = self._owners(default_branch) if failing and policy.codeowners else []
        self.trail, self.escalation = decide(report, policy, before, owners)

    def _owners(self, default_branch: str) -> list[str]:
        """The CODEOWNERS (from the default branch: a branch's own file could name anyone) of the touched
        and failing files."""
        for path in codeowners.LOCATIONS:
            text = self.github.file_text(path, default_branch)
            if text is not None:
                last = last_validation(self.report)
                return codeowners.owners_of(codeowners.parse(text), [*self.report.changed_files,
                                                                     *(last.failed_files if last else [])])
        return []

    def addendum(self) -> str:
        """What the thread's outcome comment adds (which says how to take over): the escalation, and the
        trail for the next session."""
        if self.thread is None:
            return ""
        parts = [section(self.escalation, self.report, wip_branch=None, command=self.command)
                 if self.escalation is not None else "", self.trail.line()]
        return "\n\n".join(p for p in parts if p)

    def finish(self, *, wip_branch: str | None, links_line: str, redact: Callable[[str], str]) -> None:
        """Label and assign where the session reported; for a branch, open or update its tracking issue."""
        escalation = self.escalation
        if self.thread is not None:
            if escalation is not None:
                self.github.add_labels(self.thread, [escalation.label] if escalation.label else [])
                self.github.add_assignees(self.thread, list(escalation.assign))
            return
        if self.tracked is None:
            return
        if reason_for(self.report) is None:  # validated or cancelled
            if self.issue is not None and self.report.status == "validated":  # the streak is over: say so
                self.github.comment(self.issue.number, redact(
                    f"A later session on {code(self.tracked.branch)} validated a fix. {links_line}"))
                self.github.edit_issue(self.issue.number, _retrailed(self.issue.body, self.trail))
            return
        body = redact(tracking_body(self.tracked, self.report, escalation=escalation, trail=self.trail,
                                    wip_branch=wip_branch, command=self.command, links_line=links_line,
                                    call=self.issue is None))
        if self.issue is None:
            number, _ = self.github.open_issue(tracking_title(self.tracked.branch), body,
                                               [escalation.label] if escalation and escalation.label else None)
        else:
            number = self.issue.number
            self.github.edit_issue(number, body)  # people are called in the comment below, once
            called = " ".join(f"@{login}" for login in escalation.mention) if escalation else ""
            self.github.comment(number, redact(
                f"{called + ': ' if called else ''}fixloop failed again on {code(self.tracked.branch)} "
                f"({self.trail.failures} in a row): {quiet_mentions(self.report.reason)} {links_line}"))
            if escalation is not None and escalation.label:
                self.github.add_labels(number, [escalation.label])
        if escalation is not None:
            self.github.add_assignees(number, list(escalation.assign))


def find_tracking_issue(github: GitHubClient, tracked: Tracked) -> IssueInfo | None:
    """The open tracking issue of `tracked`'s branch, if fixloop has one."""
    return next((issue for issue in github.open_bot_issues(TRACKING_MARK)
                 if (found := read_tracked(issue.body)) is not None and found.key == tracked.key), None)


def _retrailed(body: str, trail: Trail) -> str:
    return _TRAIL.sub(trail.line(), body) if _TRAIL.search(body) else f"{body}\n{trail.line()}"
