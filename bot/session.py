"""A session from start to end: worktree → setup → baseline → agent loop → outcome → report.

This is the one place that turns any failure into a typed ending: whatever happens, the
session writes its trajectory and report, keeps the partial work as a patch, and removes its
worktree. Only a validated session creates a commit and a branch, and only here.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bot._git import trusted_git
from bot._process import cap_text, run_shell
from bot.agent.budget import Budget
from bot.agent.events import (
    ChangesMade,
    Ending,
    GuidanceRead,
    LimitReached,
    SessionEnded,
    SessionStarted,
    Sink,
    ValidationRan,
    fan_out,
)
from bot.agent.guidance import read_guidance, task_files
from bot.agent.loop import AgentLoop, Validation
from bot.agent.model import Model
from bot.agent.pricing import price_for
from bot.agent.prompts import SYSTEM_PROMPT, task_message
from bot.agent.tools import Toolbox
from bot.attempt import summarize
from bot.config import Config
from bot.deflake import DeflakeTarget, DeflakeValidation
from bot.errors import (
    ConfigError,
    ModelError,
    SessionCancelled,
    WallTimeExceeded,
    WorkspaceError,
)
from bot.paths import matches_any
from bot.sandbox import Confinement, bubblewrap
from bot.search import SearchCode, search_sandbox_paths
from bot.secrets import Redactor, scrubbed_environment
from bot.task import Task, branch_name
from bot.telemetry import session_tracing
from bot.trajectory import Report, ReportBuilder, TrajectoryWriter, write_report
from bot.validation import CommandOutcome, ValidationResult, Validator, relevant_excerpt
from bot.workspace import (
    Snapshot,
    Worktree,
    create_branch,
    repository_root,
    resolve_commit,
    verify_own_files,
    watch_own_files,
)

WIP_SUBJECT = "fixloop: partial work on "  # the first line of a WIP commit; its body is the attempt's summary
DIFF_LIMIT = 200_000  # characters of an iteration's change kept in its event (the trajectory, the App's page)


class _SnapshotThenValidate:
    """Validation as the loop sees it: first record what changed, then run the commands."""

    def __init__(self, validator: Validation, worktree: Worktree, emit: Sink) -> None:
        self.validator, self.worktree, self.emit = validator, worktree, emit
        self.iteration = 0

    def run(self) -> ValidationResult:
        self.iteration += 1
        snapshot = self.worktree.snapshot()
        self.emit(ChangesMade(iteration=self.iteration, diff_stat=snapshot.diff_stat,
                              changed_files=snapshot.changed_paths, diff=cap_text(snapshot.patch, DIFF_LIMIT)))
        return self.validator.run()


@dataclass
class SessionSpec:
    repo: Path
    task: Task
    config: Config
    model: Model
    base: str = "HEAD"
    out_dir: Path | None = None  # default: <repo>/.fixloop/sessions/<id>
    branch: str | None = None  # chosen by the caller (GitHub mode); default fixloop/<slug>-<id>
    deflake: DeflakeTarget | None = None  # validate by repeated runs of this test as well
    codemod: Sequence[str] = ()  # a campaign's deterministic commands, run confined before the baseline
    start_patch: str | None = None  # an earlier attempt's kept work, applied before the baseline (instead of codemod)
    sinks: Sequence[Sink] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def new_session_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def default_session_dir(repo: Path, session_id: str) -> Path:
    root = repo / ".fixloop"
    root.mkdir(exist_ok=True)
    # The folder ignores itself, so sessions never show up in the user's `git status`.
    (root / ".gitignore").write_text("*\n")
    return root / "sessions" / session_id


@contextmanager
def cancellable() -> Iterator[None]:
    """SIGINT and SIGTERM raise SessionCancelled in the main thread while inside this block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the cleanup
        raise SessionCancelled(f"cancelled by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise WallTimeExceeded in the main thread once `seconds` have passed, whatever it is doing then:
    a tool call, validation or a model call that hangs is interrupted (run_shell kills what it
    started). Sessions in other threads are held to their wall time between steps only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise WallTimeExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_session(spec: SessionSpec) -> Report:
    """Run one session to its end and return its report (also written to the session folder).

    Raises only for what stops a session from starting (ConfigError: `sandbox: required` without
    bubblewrap, no trustworthy git; WorkspaceError: no such repository or commit); everything
    after that becomes the report's typed ending."""
    trusted_git()  # git and bubblewrap are chosen before any code of the repository runs
    bubblewrap()
    repo = repository_root(spec.repo)
    base = resolve_commit(repo, spec.base)
    config = spec.config
    price = price_for(config.provider, spec.model.name, config.pricing)
    if price is None and config.cost_limit_set():
        raise ConfigError(f"limits.cost_usd needs the price of {spec.model.name!r}, which fixloop's table does not "
                          "know: add `pricing: {input: USD, output: USD}` (per million tokens) to the config, or "
                          "drop the cost limit")
    session_id = new_session_id()
    session_dir = spec.out_dir or default_session_dir(repo, session_id)
    # Whatever stops the session from starting or ending (a session folder that cannot be made, an
    # interrupted cleanup), the worktree, the scratch folder and the trajectory are closed, in this order.
    with ExitStack() as cleanup:
        worktree = Worktree.create(repo, base)
        cleanup.callback(worktree.remove)
        confinement = cleanup.enter_context(Confinement(config.sandbox, environ=spec.environ, writable=[worktree.root],
                                                        readable=[worktree.common_dir, worktree.git_dir]))
        watch_own_files(spec.environ)
        session_dir.mkdir(parents=True, exist_ok=True)
        redactor = Redactor.from_environment(spec.environ, config.secrets.scrub)
        trajectory = TrajectoryWriter(session_dir / "trajectory.jsonl", redactor)
        cleanup.callback(trajectory.close)
        builder = ReportBuilder()
        tracing = cleanup.enter_context(session_tracing(config.telemetry, spec.environ, redactor))
        emit = fan_out([trajectory, builder, *spec.sinks, *tracing])
        budget = Budget(config.limits, price)
        emit(SessionStarted(session_id=session_id, task=spec.task.statement(), task_kind=spec.task.kind,
                            model=spec.model.name,
                            provider=config.provider, repo=str(repo),
                            base_commit=base, limits=config.limits.model_dump(), confinement=confinement.description,
                            confined=confinement.confined, replay={
                                "task": spec.task.model_dump(mode="json"), "config": config.model_dump(mode="json"),
                                "worktree": str(worktree.root), "codemod": list(spec.codemod),
                                "start_patch": spec.start_patch,
                                "deflake": None if spec.deflake is None else dataclasses.asdict(spec.deflake)}))
        ending = _drive(spec, worktree, confinement, budget, emit, redactor)
        with _signals_deferred():
            ending, outcome = _conclude(ending, spec, worktree, session_id, session_dir, redactor, builder)
            emit(SessionEnded(status=ending.status, reason=ending.reason, usage=budget.usage, cost_usd=budget.cost_usd,
                              user_error=ending.user_error))
            report = builder.build(trajectory=str(session_dir / "trajectory.jsonl"), **outcome)
            write_report(report, session_dir / "report.json", redactor)
    return report


# The shell's exit codes for a command it cannot start, and its messages for them.
CANNOT_RUN = {126: "not executable", 127: "not found"}
_SHELL_SAYS = (": not found", "command not found", "Permission denied", "No such file or directory")


def _cannot_run(outcome: CommandOutcome) -> bool:
    """A validation command the shell could not start (a typo, a tool not installed), as opposed to
    tests that ran and failed: that is the config's mistake, and no model can fix it."""
    return (outcome.exit_code in CANNOT_RUN and not outcome.tests_run
            and any(said in outcome.excerpt for said in _SHELL_SAYS))


def _evidence(task: Task, baseline: ValidationResult) -> list[dict[str, Any]]:
    """What `evidence()` gives a search program: the CI failure's evidence, then the tests failing now."""
    found: list[dict[str, Any]] = []
    if task.kind in ("ci_failure", "deflake"):
        found += [{"source": item.source, "text": item.text} for item in task.context]
    found += [{"test": t.id, "path": t.file, "line": t.line, "message": t.message} for t in baseline.failed_tests]
    return found


def _drive(spec: SessionSpec, worktree: Worktree, confinement: Confinement, budget: Budget, emit: Sink,
           redactor: Redactor) -> Ending:
    config = spec.config
    env = scrubbed_environment(spec.environ, config.secrets.scrub)
    try:
        with cancellable(), watchdog(config.limits.wall_time - budget.elapsed):
            # The setup commands come from the base commit, before the agent: they keep the job's rights.
            for command in config.setup:
                result = run_shell(command, cwd=worktree.root, env=env, timeout=config.limits.command_timeout,
                                   output_limit=100_000)
                if result.exit_code in CANNOT_RUN:
                    return Ending.cannot_run(f"setup command `{command}` cannot run ({CANNOT_RUN[result.exit_code]}):"
                                             f"\n{relevant_excerpt(result.output, 2_000)}\nFix `setup` in the config; "
                                             "no model call was made.")
                if result.exit_code != 0:
                    why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                    return Ending.error(f"setup command `{command}` {why}:\n{relevant_excerpt(result.output, 2_000)}")
            # A retry goes on from the earlier attempt's kept work.
            if spec.start_patch is not None:
                try:
                    worktree.apply(spec.start_patch)
                except WorkspaceError as error:
                    return Ending.error(f"the earlier attempt's kept patch does not apply to {worktree.base[:12]}: "
                                        f"{error}")
            # A campaign's codemod changes the code before the agent, which then fixes what it broke.
            for command in spec.codemod:
                result = confinement.run(command, cwd=worktree.root, env=env, timeout=config.limits.command_timeout,
                                         output_limit=100_000)
                if result.exit_code != 0:
                    why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                    return Ending.error(f"codemod command `{command}` {why}:\n{relevant_excerpt(result.output, 2_000)}")
            validator = Validator(config.validation, cwd=worktree.root, env=env, timeout=config.limits.command_timeout,
                                  scratch=confinement.tempdir("validation-"), confinement=confinement,
                                  tests=config.tests)
            baseline = validator.run()
            emit(ValidationRan(iteration=0, result=baseline))
            if unrunnable := next((c for c in baseline.commands if _cannot_run(c)), None):
                return Ending.cannot_run(
                    f"validation command `{unrunnable.command}` cannot run ({CANNOT_RUN[unrunnable.exit_code or 0]}):"
                    f"\n{unrunnable.excerpt.strip()}\nFix `validate` in the config (or --validate); no model call "
                    "was made.")
            # The repository's instruction files at the base; the failing tests say which AGENTS.md is nearest.
            guidance = read_guidance(repo=worktree.repo, commit=worktree.base, settings=config.instructions,
                                     named=task_files(spec.task, baseline.failed_tests))
            if guidance.files:
                emit(GuidanceRead(files=guidance.files))
            # From here on the agent's shell could rewrite git's config or hooks: fixloop's git refuses to run
            # if it does.
            worktree.record_git_state()
            search = SearchCode(worktree.root, _evidence(spec.task, baseline), confinement.offline(
                search_sandbox_paths(worktree.root, [worktree.common_dir, worktree.git_dir])))
            tools = Toolbox(worktree.root, env=env, deny=config.paths.deny, command_timeout=config.limits.tool_timeout,
                            confinement=confinement, search=search)
            checks: Validation = validator
            if spec.deflake is not None:
                checks = DeflakeValidation(validator, worktree, spec.deflake, config.deflake, env,
                                           config.limits.command_timeout, confinement)
            loop = AgentLoop(model=spec.model, tools=tools, validation=_SnapshotThenValidate(checks, worktree, emit),
                             limits=config.limits, budget=budget, emit=emit, system=SYSTEM_PROMPT,
                             shield=redactor.text)
            return loop.run(redactor.text(task_message(task=spec.task, validation=config.validation,
                                                       baseline_feedback=baseline.feedback(),
                                                       guidance=guidance.texts)))
    except WallTimeExceeded:
        detail = (f"time limit reached: {budget.elapsed:.0f} s of {config.limits.wall_time:.0f} s "
                  "(a call still running was stopped)")
        emit(LimitReached(limit="wall_time", detail=detail))
        return Ending.not_validated(detail)
    except SessionCancelled as cancelled:
        return Ending.cancelled(str(cancelled))
    except (ModelError, WorkspaceError) as error:
        return Ending.error(str(error))
    except Exception as error:  # noqa: BLE001 - the session's outer edge: an honest ending, not a lost session
        return Ending.error(f"internal error: {type(error).__name__}: {error}")


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Outcome and report are short and must not be cut in half: hold signals until they are done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def commit_message(task: Task, summary: str, config: Config, session_id: str) -> str:
    checks = "\n".join(f"  $ {command}" for command in config.validation)
    why = summary.strip() or "The change makes the validation commands pass."
    return (f"fixloop: {task.title[:60]}\n\n{why}\n\nTask: {task.source}\nValidated by:\n{checks}\n"
            f"Session: {session_id}\n")


def _conclude(
    ending: Ending, spec: SessionSpec, worktree: Worktree, session_id: str, session_dir: Path, redactor: Redactor,
    builder: ReportBuilder,
) -> tuple[Ending, dict[str, object]]:
    summary = builder.summary
    try:
        verify_own_files()
        snapshot: Snapshot = worktree.snapshot()
    except WorkspaceError as error:  # the agent changed git's or fixloop's files: no git runs with them
        return Ending.error(str(error)), {"summary": summary}
    outcome: dict[str, object] = {"diff_stat": snapshot.diff_stat, "changed_files": snapshot.changed_paths,
                                  "summary": summary}
    protected = [p for p in snapshot.changed_paths if matches_any(p, spec.config.paths.deny)]
    if ending.status == "validated" and protected:
        ending = Ending.not_validated(f"the change touches protected paths ({', '.join(protected)}); nothing was "
                                      "committed")
    elif ending.status == "validated" and redactor.text(snapshot.patch) != snapshot.patch:
        ending = Ending.not_validated("the change contains a secret, or text shaped like a token or private key; "
                                      "nothing was committed (the saved patch has it redacted)")
    elif ending.status == "validated" and snapshot.empty:
        ending = Ending.not_validated("validation passes, but no file was changed: there is nothing to propose")
    if ending.status == "validated":
        message = redactor.text(commit_message(spec.task, summary, spec.config, session_id))
        commit = worktree.commit(snapshot, message)
        branch = spec.branch or branch_name(spec.config.branch_prefix, spec.task, session_id.rsplit("-", 1)[-1])
        create_branch(worktree.repo, branch, commit, replace=spec.branch is not None)
        outcome |= {"branch": branch, "commit": commit}
    if not snapshot.empty:  # the change as a patch, committed or not (what `fixloop replay` compares)
        patch = session_dir / "changes.patch"
        patch.write_text(redactor.text(snapshot.patch), encoding="utf-8")
        if ending.status != "validated":
            outcome["patch"] = str(patch)
            if redactor.text(snapshot.patch) == snapshot.patch and not protected:  # nothing secret-shaped in it
                attempt = summarize(builder.iterations, reason=ending.reason[:500], summary=summary,
                                    changed_files=snapshot.changed_paths)
                message = redactor.text(f"{WIP_SUBJECT}{spec.task.title[:60]}\n\n{attempt}\n\nSession: {session_id}\n")
                outcome["wip_commit"] = worktree.commit(snapshot, message)
    return ending, outcome
