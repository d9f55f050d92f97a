"""What a session says on GitHub: check-run outputs, the pull request, comments, job summary.

Pure functions of the session's data, fitted to GitHub's limits (`bot.github.limits`).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from bot.agent.events import Status
from bot.agent.guidance import GUIDANCE_TOKENS
from bot.agent.pricing import cost_text
from bot.agent.usage import Usage
from bot.github.limits import SUMMARY_FILE_LIMIT, fit
from bot.github.rules import SESSION_CHECK
from bot.trajectory import IterationReport, Report
from bot.validation import CommandOutcome, FailedTest, ValidationResult

CONCLUSIONS: dict[Status, str] = {
    "validated": "success",
    "not_validated": "neutral",
    "cancelled": "cancelled",
    "error": "failure",
}


# Buttons on the session check run (label ≤ 20, description ≤ 40, identifier ≤ 20 characters).
STOP_BUTTON = {"label": "Stop", "description": "Stop this fixloop session", "identifier": "stop"}
RETRY_BUTTON = {"label": "Retry", "description": "Run fixloop again on this target", "identifier": "retry"}


def session_buttons(status: Status | None, *, can_stop: bool) -> list[dict[str, str]]:
    """Stop while the session runs (when it has an issue or PR to stop by); Retry unless validated."""
    if status is None:
        return [STOP_BUTTON] if can_stop else []
    return [] if status == "validated" else [RETRY_BUTTON]


def conclusion_for(status: Status) -> str:
    """The session check run's conclusion: derived from the typed ending, never green by default."""
    return CONCLUSIONS[status]


def iteration_check_name(n: int) -> str:
    return f"{SESSION_CHECK} / iteration {n}"


def _fence(text: str, language: str = "") -> str:
    """`text` in a code block no line of it can close (and no hidden line of it taken for fixloop's)."""
    text = text.replace(_HIDDEN, _QUOTED)
    ticks = "`" * max(3, _longest_backticks(text) + 1)
    return f"{ticks}{language}\n{text}\n{ticks}"


def _longest_backticks(text: str) -> int:
    """The longest run of backticks in `text`: a fence or code span must be longer to hold it."""
    return max(map(len, re.findall("`+", text)), default=0)


_HIDDEN, _QUOTED = "<!-- fixloop", "<!-- (quoted) fixloop"  # fixloop's hidden state lines, and one defused


def fence(text: str) -> str:
    return _fence(text, "text")


def quiet_mentions(text: str) -> str:
    """`text` with every @mention defused (a zero-width joiner after the @, wherever it stands: a backtick
    left open does not make a code span), and its hidden lines that look like fixloop's own made visible:
    words fixloop passes on from the agent, a test or a log never call anyone or pose as fixloop's state."""
    return re.sub(r"@(?=[A-Za-z0-9])", "@\u200d", text).replace(_HIDDEN, _QUOTED)


def code(text: str) -> str:
    """`text` as a code span no backtick of it can close, its mentions defused."""
    text = quiet_mentions(text)
    ticks = "`" * (_longest_backticks(text) + 1)
    return f"{ticks} {text} {ticks}" if text.startswith("`") or text.endswith("`") else f"{ticks}{text}{ticks}"


def _quote(text: str) -> str:
    """The agent's words as a quote, calling nobody."""
    return "\n".join(f"> {line}" for line in quiet_mentions(text).strip().splitlines()) or "> (no explanation given)"


def _tokens(usage: Usage) -> str:
    return f"{usage.total:,}"


def validation_table(commands: list[CommandOutcome]) -> str:
    rows = ["| command | result | tests | time |", "|---|---|---|---|"]
    for outcome in commands:
        result = ("✅ passed" if outcome.passed
                  else "⏱️ timed out" if outcome.timed_out else f"❌ exit {outcome.exit_code}")
        if outcome.tests_run is None:
            tests = "n/a"
        elif outcome.failed_tests:
            tests = (f"{len(outcome.failed_tests)} of {outcome.tests_run} failed"
                     + (" (re-run of earlier failures)" if outcome.focused else ""))
        else:
            tests = f"{outcome.tests_run} passed"
        command = outcome.command.replace("|", "\\|").replace("`", "'")
        rows.append(f"| `{command}` | {result} | {tests} | {outcome.duration_s:.1f} s |")
    return "\n".join(rows)


def failure_annotations(failed: list[FailedTest]) -> list[dict[str, Any]]:
    """Check-run annotations for failing tests whose location is a file in the repository."""
    notes = []
    for test in failed:
        if not test.file or not test.line or test.file.startswith("/"):
            continue
        notes.append({
            "path": test.file, "start_line": test.line, "end_line": test.line, "annotation_level": "failure",
            "title": test.id[:255], "message": fit(test.message or "failed", 60_000),
        })
    return notes


@dataclass(frozen=True)
class Search:
    """One `search_code` call: the agent's program and what came back."""

    program: str
    result: str
    is_error: bool


@dataclass
class IterationView:
    n: int
    said: list[str] = field(default_factory=list)
    tool_calls: int = 0
    searches: list[Search] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    diff_stat: str = ""
    validation: ValidationResult | None = None


def iteration_in_progress(view: IterationView, task_title: str) -> dict[str, Any]:
    return {"title": f"Iteration {view.n}: the agent is working",
            "summary": f"fixloop is working on **{task_title}**. "
                       "This check completes when the iteration's validation has run."}


def iteration_done(view: IterationView, *, total: Usage, cost_usd: float | None, stopped: str | None = None
                   ) -> dict[str, Any]:
    result = view.validation
    if result is None:
        title = f"Stopped: {stopped or 'the session ended'}"
    elif result.passed:
        title = "Validation passed"
    else:
        failed = result.failed_tests
        title = f"Validation failed: {len(failed)} test(s)" if failed else "Validation failed"
    why = view.said[-1] if view.said else ""
    parts = [
        "### What the agent changed and why", _quote(why),
        "### Diff", _fence(view.diff_stat) if view.diff_stat else "No files changed yet.",
    ]
    if result is not None:
        parts += ["### Validation", validation_table(result.commands)]
    parts.append(f"### Tokens\n{_tokens(view.usage)} this iteration ({view.tool_calls} tool calls) · "
                 f"{_tokens(total)} so far · {cost_text(cost_usd)} so far")
    output: dict[str, Any] = {"title": title[:255], "summary": fit("\n\n".join(parts))}
    details = []
    if result is not None and not result.passed:
        details.append(_fence(result.feedback()))
    if view.searches:
        details.append(how_the_agent_searched(view.searches))
    if details:
        output["text"] = fit("\n\n".join(details))
    return output


def how_the_agent_searched(searches: list[Search], *, result_chars: int = 1_500) -> str:
    """The agent's search programs, each with the start of what it got back: how it chose what to read."""
    parts = [f"### How the agent searched\n{len(searches)} search program(s) this iteration."]
    for n, search in enumerate(searches, 1):
        got = "failed" if search.is_error else f"returned {len(search.result):,} characters"
        excerpt = search.result if len(search.result) <= result_chars else search.result[:result_chars] + "\n…"
        parts.append(f"**Program {n}** ({got})\n{_fence(search.program, 'python')}\n{_fence(excerpt)}")
    return "\n\n".join(parts)


def iteration_table(iterations: list[IterationReport]) -> str:
    rows = ["| iteration | validation | failing tests | tokens |", "|---|---|---|---|"]
    for it in iterations:
        if it.validation is None:
            verdict, failing = "stopped", ""
        else:
            verdict = "✅ passed" if it.validation.passed else "❌ failed"
            failing = ", ".join(code(t).replace("|", "\\|") for t in it.validation.failed_tests[:5])
            failing += f" and {len(it.validation.failed_tests) - 5} more" if len(it.validation.failed_tests) > 5 else ""
        rows.append(f"| {it.n} | {verdict} | {failing} | {_tokens(it.usage)} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Links:
    run_url: str | None = None
    artifact: str | None = None  # the name of the uploaded session folder

    def line(self) -> str:
        if not self.run_url:
            return ""
        audit = f" · audit trail: artifact `{self.artifact}` on that run" if self.artifact else ""
        return f"Workflow run: {self.run_url}{audit}"


def _evidence(report: Report) -> str:
    last = next((it.validation for it in reversed(report.iterations) if it.validation), None)
    if last is None:
        return "No validation ran."
    notes = [f"- {outcome.excerpt}" for outcome in last.commands if outcome.passed and outcome.excerpt]
    return "\n\n".join([validation_table(last.commands), *notes])


def pull_request_body(report: Report, *, task_source: str, fixes: int | None, links: Links, marker: str,
                      notes: str | None = None) -> str:
    parts = [
        marker,
        f"fixloop proposes this change for {task_source}." + (f"\n\nFixes #{fixes}" if fixes else ""),
        "### What changed and why", _quote(report.summary),
        "### Iterations", iteration_table(report.iterations),
        "### Validation evidence", _evidence(report),
        *(["### The CI failure", quiet_mentions(notes)] if notes else []),
        "### Cost", f"{_tokens(report.usage)} tokens "
                    f"({report.usage.cache_read_input_tokens:,} read from the prompt cache) · "
                    f"{cost_text(report.cost_usd)} · model `{report.model}`",
        links.line(),
        "_This draft was opened by fixloop. Review it like any other change; nothing is merged automatically._",
    ]
    return fit("\n\n".join(p for p in parts if p), 60_000, where="the workflow run")


def session_in_progress(task_title: str, task_source: str) -> dict[str, Any]:
    return {"title": f"Working on: {task_title}"[:255],
            "summary": f"Started by {task_source}. Each iteration reports as its own check run."}


def session_done(report: Report, *, pull_url: str | None, problem: str | None, links: Links,
                 onto: str | None = None) -> dict[str, Any]:
    """`onto`: the bot's branch the change was pushed onto (`pull_url` is then the bot's pull request)."""
    if problem:
        title = f"Validated, but the result could not be published: {problem}"
    elif report.status == "validated":
        opened = f": pushed onto {onto}" if onto else ": draft pull request opened" if pull_url else ""
        title = f"Validated in {len(report.iterations)} iteration(s){opened}"
    else:
        title = f"{report.status.replace('_', ' ').capitalize()}: {report.reason}"
    parts = [
        f"**Outcome:** {report.status} ({report.reason})" + (f"\n\n**Pull request:** {pull_url}" if pull_url else ""),
        iteration_table(report.iterations),
        f"{_tokens(report.usage)} tokens · {cost_text(report.cost_usd)} · model `{report.model}`",
        confinement_line(report),
        guidance_line(report),
        links.line(),
    ]
    return {"title": fit(title, 250), "summary": fit("\n\n".join(p for p in parts if p))}


def guidance_line(report: Report) -> str:
    """The repository's instruction files the model was given, and those skipped ("" when none was found)."""
    if not report.guidance:
        return ""
    given = [f"{f.path} (cut at {GUIDANCE_TOKENS:,} tokens)" if f.cut else f.path
             for f in report.guidance if f.skipped is None]
    skipped = [f"{f.path} ({f.skipped})" for f in report.guidance if f.skipped is not None]
    line = f"Repository guidance: {', '.join(given) or 'none given'}"
    return f"{line}; skipped: {', '.join(skipped)}" if skipped else line


def confinement_line(report: Report) -> str:
    """How code the agent touched ran; a warning where it ran without the sandbox."""
    if report.confined:
        return ("Code the agent touched (its shell, validation, test reruns, search programs) ran confined by: "
                f"{report.confinement}")
    return (f"> [!WARNING]\n> Validation and the agent's commands ran **unconfined**: {report.confinement}. "
            "Code the agent wrote could read what the runner user can read. See fixloop's SECURITY.md.")


def outcome_comment(report: Report, *, pull_url: str | None, updated: bool, problem: str | None, links: Links,
                    onto: str | None = None, wip_branch: str | None = None, command: str = "/fixloop") -> str:
    """`onto`: the bot's branch the change was pushed onto, the branch of the pull request commented on;
    `wip_branch`: where the partial work of a session that did not validate was pushed; `command`: the
    repository's command word."""
    tokens = f"{_tokens(report.usage)} tokens, {cost_text(report.cost_usd)}"
    if onto and not problem:
        return (f"fixloop pushed a fix onto `{onto}`: {report.commit}\n\nValidated in {len(report.iterations)} "
                f"iteration(s) ({tokens}). {links.line()}").strip()
    if pull_url and not problem:
        verb = "updated" if updated else "opened"
        return (f"fixloop {verb} a draft pull request: {pull_url}\n\nValidated in {len(report.iterations)} "
                f"iteration(s) ({tokens}). {links.line()}").strip()
    reason = quiet_mentions(report.reason)  # may quote a command's output
    if problem:
        head = f"fixloop validated a change but could not publish it: {quiet_mentions(problem)}"
    elif report.status == "error":
        head = f"fixloop stopped with an error: {reason}"
    elif report.status == "cancelled":
        head = f"fixloop was cancelled ({reason})."
    else:
        head = f"fixloop could not validate a change: {reason}."
    where = ""
    if report.patch:
        artifact = f" `{links.artifact}`" if links.artifact else ""
        where = f"\n\nThe partial change is kept as `changes.patch` in the session artifact{artifact}."
    if wip_branch:
        where += (f"\n\nTo take over from it: {code(f'git fetch origin {wip_branch} && git switch {wip_branch}')}. Or "
                  f"comment `{command} retry --continue` to have fixloop go on from it (a plain retry starts again "
                  "and replaces it).")
    table = iteration_table(report.iterations)
    return f"{head}\n\nWhat it tried ({tokens}):\n\n{table}{where}\n\n{links.line()}".strip()


def job_summary(report: Report, *, pull_url: str | None, problem: str | None, links: Links,
                onto: str | None = None) -> str:
    out = session_done(report, pull_url=pull_url, problem=problem, links=links, onto=onto)
    return fit(f"## fixloop: {out['title']}\n\n{out['summary']}\n", SUMMARY_FILE_LIMIT - 1024)


def session_markdown(report: Report) -> str:
    """A finished session as its check run and pull request show it, for `fixloop show`."""
    out = session_done(report, pull_url=None, problem=None, links=Links())
    where = (f"Branch `{report.branch}` at `{report.commit}`" if report.branch
             else f"Nothing committed; the partial change is in `{report.patch}`" if report.patch else "")
    parts = [f"# fixloop: {out['title']}", out["summary"], where,
             "## What changed and why", _quote(report.summary), "## Validation evidence", _evidence(report),
             f"Session {report.session_id} · {report.started_at:%Y-%m-%d %H:%M:%S} UTC · {report.repo} @ "
             f"{report.base_commit[:10]}"]
    return "\n\n".join(p for p in parts if p) + "\n"


def session_html(report: Report) -> str:
    """The same as `session_markdown`, as a page of its own (every text escaped)."""
    e = html.escape
    title = e(session_done(report, pull_url=None, problem=None, links=Links())["title"])
    rows = []
    for it in report.iterations:
        verdict = "stopped" if it.validation is None else "passed" if it.validation.passed else "failed"
        failing = ", ".join(it.validation.failed_tests[:5]) if it.validation else ""
        rows.append(f"<tr><td>{it.n}</td><td>{verdict}</td><td>{e(failing)}</td><td>{it.usage.total:,}</td></tr>")
    body = [
        f"<h1>fixloop: {title}</h1>",
        f"<p><strong>Outcome:</strong> {e(report.status)} ({e(report.reason)})</p>",
        "<table><tr><th>iteration</th><th>validation</th><th>failing tests</th><th>tokens</th></tr>",
        *rows, "</table>",
        f"<p>{report.usage.total:,} tokens · {cost_text(report.cost_usd)} · model {e(report.model)}</p>",
        *([f"<p>{e(line)}</p>"] if (line := guidance_line(report)) else []),
        "<h2>What changed and why</h2>", f"<blockquote>{e(report.summary or '(no explanation given)')}</blockquote>",
        "<h2>Validation evidence</h2>", f"<pre>{e(_evidence(report))}</pre>",
        f"<p>Session {e(report.session_id)} · {report.started_at:%Y-%m-%d %H:%M:%S} UTC · {e(report.repo)} @ "
        f"{e(report.base_commit[:10])}</p>",
    ]
    head = f'<!doctype html>\n<html><head><meta charset="utf-8"><title>fixloop: {title}</title></head><body>'
    return "\n".join([head, *body, "</body></html>"]) + "\n"
