"""`fixloop action`: one session inside a GitHub Actions runner.

event file → the shared handler (config, rules; it answers what needs no session) → plan →
session check run → agent session (a check run per iteration) → push, draft PR, comment →
session check run concluded → job summary, outputs. The session check run is concluded whatever
happens: an unexpected exception marks it failed before it propagates.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from bot.action import render
from bot.action.app_report import AppReporter
from bot.action.checks import CheckRunReporter
from bot.action.environment import ActionsEnvironment, WorkflowCommands, append_summary, write_outputs
from bot.action.escalate import Escalator, find_tracking_issue
from bot.action.evidence import gather
from bot.action.plan import Kept, Plan, Refusal, plan_session
from bot.action.publish import git_auth_env, publish, wip_branch_name
from bot.agent.model import make_model
from bot.agent.usage import Usage
from bot.config import Config, Provider
from bot.deflake import DeflakeTarget
from bot.errors import (
    EXIT_CODES,
    EXIT_USAGE,
    ConfigError,
    GitHubError,
    MalformedEvent,
    MissingAPIKey,
    WorkspaceError,
)
from bot.frameworks import detect
from bot.github.client import GitHubClient, RequestPolicy
from bot.github.events import Event, parse_event
from bot.github.limits import fit
from bot.github.rules import SESSION_CHECK
from bot.github.tracking import Tracked
from bot.handler import Answered, Handler, acknowledge
from bot.reporting.terminal import TerminalReporter
from bot.sandbox import bubblewrap
from bot.secrets import Redactor, scrubbed_environment
from bot.session import SessionSpec, run_session
from bot.task import CampaignWork, Context, FailedRun, Ref, stable_id
from bot.trajectory import Report
from bot.triage import changed_lines, diagnose
from bot.workspace import changes_since_fork, commit_text, fetch, has_commit, watch_own_files

# The providers whose key is an input of the action (action.yml passes it on as the provider's variable).
KEY_INPUTS: dict[Provider, tuple[str, str]] = {"anthropic": ("anthropic-api-key", "ANTHROPIC_API_KEY"),
                                               "openai": ("openai-api-key", "OPENAI_API_KEY")}


class ActionRunner:
    def __init__(self, environ: Mapping[str, str], *, policy: RequestPolicy = RequestPolicy()) -> None:
        self.environ = dict(environ)
        self.env = ActionsEnvironment.from_environ(environ)
        self.commands = WorkflowCommands(sys.stdout)
        self.git_env = git_auth_env(self.env.token)
        self.redactor = Redactor.from_environment(environ)
        self.redactor.add(self.env.token, self.git_env["GIT_CONFIG_VALUE_0"].split()[-1])
        for value in self.redactor.values:  # before anything else is printed
            self.commands.mask(value)
        self.github = GitHubClient(token=self.env.token, api_url=self.env.api_url, repository=self.env.repository,
                                   policy=policy)
        self.links = render.Links(run_url=self.env.run_url, artifact=self.env.artifact)
        self.can_stop = False
        self.app: AppReporter | None = None  # where session events go, when the App asked for them

    def log(self, message: str) -> None:
        print(self.redactor.text(message), flush=True)

    def finish(self, status: str, **values: str) -> None:
        write_outputs(self.env.output, {"status": status, "pull-request-url": "", "branch": "", "iterations": "0",
                                        "session-dir": "", **usage_outputs(Usage(), 0.0), **values})

    def run(self) -> int:
        """The Action's entry point: read the event file and hand it to the shared handler, which
        answers Ignore, Reply, Stop and an invalid config; run the session it starts and publish it.
        Returns the exit code (0 validated or nothing to do, 1 not validated, 2 a usage or config
        error, 3 an error, 130 cancelled)."""
        try:
            payload = json.loads(self.env.event_path.read_text(encoding="utf-8"))
            event = parse_event(self.env.event_name, payload)
        except (OSError, ValueError, MalformedEvent) as error:
            raise ConfigError(f"cannot read the {self.env.event_name} event at {self.env.event_path}: "
                              f"{error}") from None
        if not isinstance(event, Event):
            self.log(f"fixloop does not act on {self.env.event_name}.{payload.get('action') or ''} events; "
                     "nothing to do.")
            self.finish("skipped")
            return 0
        handler = Handler(self.github, redactor=self.redactor, workflow_file=self.env.workflow_file,
                          config_path=self.env.config_path, own_run=int(self.env.run_id) if self.env.run_id else None,
                          check_sha=self.env.sha, details_url=self.env.run_url)
        handled = handler.handle(event, self.github.permission, overrides={
            "model": self.env.model, "provider": self.env.provider, "limits.iterations": self.env.max_iterations})
        if isinstance(handled, Answered):
            return self.answered(handled)
        run, config = handled.run, handled.config
        acknowledge(self.github, run)
        plan = plan_session(run.task, run.origin, self.github, config, handled.default_branch)
        if not isinstance(plan, Refusal) and plan.task.resume:
            plan = self.kept_work(plan, config)
        if isinstance(plan, Refusal):
            if plan.number:
                self.github.comment(plan.number, self.redactor.text(f"fixloop did not start: {plan.reason}"))
            self.log(f"Not started: {plan.reason}")
            self.finish("skipped")
            return 0
        return self.session(plan, config)

    def answered(self, answered: Answered) -> int:
        if error := answered.invalid_config:
            self.commands.error(str(error).splitlines()[0], file=self.env.config_path)
            self.log(str(error))
            self.finish("error")
            return EXIT_USAGE
        self.log(f"Nothing to start: {answered.outcome}.")
        self.finish("skipped")
        return 0

    def kept_work(self, plan: Plan, config: Config) -> Plan | Refusal:
        """A session that goes on from the earlier attempt's WIP branch (`retry --continue`): what the branch
        changed since it left the plan's base, to apply on that base (so a base that moved on keeps its
        commits), and the earlier attempt's account (the WIP commit's message, from its trajectory)."""
        wip = wip_branch_name(plan, config)
        tip = self.github.branch_sha(wip)
        if tip is None:
            return Refusal(self.asked_on(plan),
                           f"there is no kept work on `{wip}` to go on from (no earlier attempt left any, or it was "
                           f"deleted); comment `{config.trigger.command} retry` to start again.")
        try:
            for ref, sha in ((plan.fetch_ref, plan.base_sha), (wip, tip)):
                if not has_commit(self.env.workspace, sha):
                    fetch(self.env.workspace, ref, env=self.git_env)
            patch = changes_since_fork(self.env.workspace, plan.base_sha, tip)
            account = commit_text(self.env.workspace, tip).strip()
        except (WorkspaceError, UnicodeDecodeError) as error:
            reason = "its text is not UTF-8" if isinstance(error, UnicodeDecodeError) else str(error).strip()
            return Refusal(self.asked_on(plan),
                           f"the kept work on `{wip}` cannot be carried over ({self.redactor.text(reason)[:300]}); "
                           f"take it over by hand or comment `{config.trigger.command} retry` to start again.")
        return replace(plan, kept=Kept(wip, patch, account))

    def asked_on(self, plan: Plan) -> int | None:
        """Where to answer about a session: its thread, or for a CI session its branch's tracking issue."""
        if plan.comment_on is not None:
            return plan.comment_on
        tracked = self.tracked(plan)
        issue = find_tracking_issue(self.github, tracked) if tracked is not None else None
        return issue.number if issue is not None else None

    @staticmethod
    def go_on(plan: Plan, kept: Kept) -> Plan:
        """The plan of a resumed session: its first prompt carries the earlier attempt's account."""
        task = plan.task.model_copy(update={
            "instructions": (f"{plan.task.instructions}\n\nThis session goes on from an earlier attempt whose "
                             f"partial work (branch {kept.branch}) is already in the worktree. Its account is in the "
                             "context: build on what worked, and change course where validation showed it "
                             "wrong.").strip(),
            "context": [Context(source=f"fixloop's earlier attempt, kept on {kept.branch}", text=kept.account),
                        *plan.task.context]})
        return replace(plan, task=task)

    def session(self, plan: Plan, config: Config) -> int:
        self.can_stop = plan.origin.number is not None
        check_id = self.github.create_check_run(
            name=SESSION_CHECK, head_sha=plan.check_sha, status="in_progress",
            output=self.redactor.data(render.session_in_progress(plan.task.title, plan.task.source)),
            details_url=self.env.run_url, external_id=plan.origin.key(),
            actions=render.session_buttons(None, can_stop=self.can_stop))
        reported = None if isinstance(plan.origin.target, CampaignWork) else plan.origin.correlation_id  # a session's
        self.app = AppReporter.from_environ(self.environ, reported, redactor=self.redactor, warn=self.commands.warning)
        try:
            return self._session(plan, config, check_id)
        except ConfigError as error:  # raised before the agent runs: no credentials, `sandbox: required`, ...
            self.tell_app("error", str(error))
            return self.cannot_start(plan, config, check_id, error)
        except BaseException as error:
            self.tell_app("cancelled" if isinstance(error, KeyboardInterrupt) else "error",
                          f"{type(error).__name__}: {error}")
            self.github.update_check_run(check_id, conclusion="failure", output=self.redactor.data({
                "title": "fixloop failed before the session could finish",
                "summary": fit(f"{type(error).__name__}: {error}")}))
            raise
        finally:
            if self.app is not None:
                self.app.close()

    def tell_app(self, status: str, reason: str, **ending: object) -> None:
        """The session's ending, as the App records it (`finished`: after the pull request, unlike the
        loop's `session_ended`)."""
        if self.app is not None:
            self.app.post("finished", {"status": status, "reason": reason, "run_url": self.env.run_url, **ending})

    def cannot_start(self, plan: Plan, config: Config, check_id: int, error: ConfigError) -> int:
        """A setting to fix stopped the session before its agent ran: said as an invalid config is (a
        failed check run, a comment where fixloop was asked, an error in the log), exit 2."""
        message = str(error)
        if isinstance(error, MissingAPIKey) and config.provider in KEY_INPUTS:
            name, variable = KEY_INPUTS[config.provider]
            message = (f"The action's `{name}` input is empty, and provider {config.provider} needs it. Pass it a "
                       f"secret (`{name}: ${{{{ secrets.{variable} }}}}`), or choose another provider with the "
                       f"action's `provider` input or `provider:` in {self.env.config_path}.")
        report = self.redactor.text(f"```\n{message}\n```")
        self.github.update_check_run(check_id, conclusion="failure", actions=[], output={
            "title": "fixloop cannot start: a setting needs fixing", "summary": fit(report)})
        if plan.comment_on:
            self.github.comment(plan.comment_on, f"fixloop cannot start.\n\n{report}")
        self.commands.error(self.redactor.text(message.splitlines()[0]))
        self.log(message)
        self.finish("error")
        return EXIT_USAGE

    def _session(self, plan: Plan, config: Config, check_id: int) -> int:
        model = make_model(config)  # first: missing credentials stop the session before any other work
        watch_own_files(self.environ)  # before any code of the repository runs (triage's setup, the session's)
        bubblewrap()  # chosen before it too: a `bwrap` the setup commands planted is never used
        if not has_commit(self.env.workspace, plan.base_sha):
            fetch(self.env.workspace, plan.fetch_ref, env=self.git_env)
        deflake, notes = None, None
        work = plan.origin.target if isinstance(plan.origin.target, CampaignWork) else None
        start_patch = None
        if isinstance(plan.origin.target, Ref) and plan.origin.target.iterations:  # asked for fewer than the config's
            config = config.model_copy(update={"limits": config.limits.model_copy(update={
                "iterations": min(config.limits.iterations, plan.origin.target.iterations)})})
        if work is not None:
            config = campaign_config(config, work)
            if work.resume_run is not None:
                start_patch = self.kept_patch(work.resume_run)
        if plan.task.kind in ("ci_failure", "deflake"):
            prepared = self.diagnose(plan, config, check_id)  # at the failing commit, before any kept work
            if prepared is None:
                return 0
            plan, deflake, notes = prepared
        if (kept := plan.kept) is not None:
            plan, start_patch = self.go_on(plan, kept), kept.patch
        console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        checks = CheckRunReporter(self.github, head_sha=plan.check_sha, task_title=plan.task.title,
                                  redactor=self.redactor, warn=self.commands.warning, details_url=self.env.run_url)
        report = run_session(SessionSpec(
            repo=self.env.workspace, task=plan.task, config=config, model=model, base=plan.base_sha, branch=plan.branch,
            sinks=[TerminalReporter(self.redactor, console, groups=True), checks,
                   *([self.app] if self.app is not None else [])], environ=self.environ,
            deflake=deflake, start_patch=start_patch,
            codemod=in_folder(work.codemod, work.path) if work is not None and start_patch is None else ()))
        escalator = self.escalator(report, plan, config)
        published = publish(report, plan, github=self.github, repo=self.env.workspace, git_env=self.git_env,
                            config=config, links=self.links, redactor=self.redactor, notes=notes,
                            addendum=escalator.addendum if escalator is not None else str)
        escalated = None  # why a person was called, once they were
        if escalator is not None:
            try:
                escalator.finish(wip_branch=published.wip_branch, links_line=self.links.line(),
                                 redact=self.redactor.text)
                escalated = escalator.escalation.reason if escalator.escalation is not None else None
            except GitHubError as error:
                self.commands.warning(self.redactor.text(f"fixloop could not escalate on GitHub: {error}"))
        conclusion = "failure" if published.problem else render.conclusion_for(report.status)
        output = render.session_done(report, pull_url=published.pull_url, problem=published.problem, links=self.links,
                                     onto=published.onto)
        if notes:
            output["text"] = fit(notes)
        self.github.update_check_run(check_id, conclusion=conclusion, output=self.redactor.data(output),
                                     actions=render.session_buttons(report.status, can_stop=self.can_stop))
        self.tell_app("error" if published.problem else report.status, published.problem or report.reason,
                      pull_request_url=published.pull_url, cost_usd=report.cost_usd, tokens=report.usage.total,
                      escalation=escalated,
                      iterations=len(report.iterations), branch=plan.branch if report.commit else None,
                      diff_stat=report.diff_stat, summary=report.summary)
        append_summary(self.env.step_summary, self.redactor.text(render.job_summary(
            report, pull_url=published.pull_url, problem=published.problem, links=self.links, onto=published.onto)))
        self.finish(report.status, **{
            "pull-request-url": published.pull_url or "", "branch": plan.branch if report.commit else "",
            "iterations": str(len(report.iterations)), "session-dir": str(Path(report.trajectory).parent),
            **usage_outputs(report.usage, report.cost_usd)})
        if published.problem:
            self.commands.error(published.problem)
            return EXIT_CODES["error"]
        return report.exit_code


    def escalator(self, report: Report, plan: Plan, config: Config) -> Escalator | None:
        """The session's escalation, for an issue or pull request (its thread) or an automatic CI session (its
        branch's tracking issue); None for other targets (a campaign has its own tracking issue; the App shows
        a task's) or when GitHub cannot say what fixloop said before."""
        tracked = self.tracked(plan)
        if plan.comment_on is None and tracked is None:
            return None
        try:
            return Escalator(report, config.escalate, self.github, thread=plan.comment_on, tracked=tracked,
                             command=config.trigger.command, default_branch=self.github.default_branch())
        except GitHubError as error:
            self.commands.warning(self.redactor.text(f"fixloop could not read what it said before, so it does not "
                                                     f"escalate: {error}"))
            return None

    @staticmethod
    def tracked(plan: Plan) -> Tracked | None:
        """What the tracking issue of an automatic CI session (one with no thread to report on) is about."""
        target = plan.origin.target
        if plan.comment_on is not None or not isinstance(target, FailedRun) or not target.branch:
            return None
        return Tracked(key=stable_id(plan.origin.repository, f"ci:{target.branch}"), run_id=target.run_id,
                       branch=target.branch, head_sha=target.head_sha or plan.check_sha)

    def kept_patch(self, run_id: int) -> str:
        """The partial work an earlier run kept (its session folder's changes.patch, in its artifact)."""
        try:
            data = self.github.artifact_file(run_id, f"fixloop-session-{run_id}", "changes.patch")
        except GitHubError as error:
            raise ConfigError(f"the kept work of run {run_id} could not be read: {error}") from None
        if data is None:
            raise ConfigError(f"run {run_id} kept no work to go on from (its artifact holds no changes.patch, or has "
                              "expired after its retention period); retry without --from-patch")
        return data.decode("utf-8", "replace")

    def diagnose(self, plan: Plan, config: Config, check_id: int) -> tuple[Plan, DeflakeTarget | None, str] | None:
        """Evidence and triage for CI failures and deflake requests; None when no session is called for."""
        task, target = plan.task, plan.origin.target
        env = scrubbed_environment(self.environ, config.secrets.scrub)
        tests: list[str] = []
        changed: dict[str, set[int]] | None = None
        notes: list[str] = []
        if task.kind == "ci_failure" and isinstance(target, FailedRun) and target.run_id:
            run = self.github.workflow_run(target.run_id)
            with tempfile.TemporaryDirectory(prefix="fixloop-ci-") as scratch:  # the downloaded logs
                evidence = gather(self.github, run, plan.pr_base, Path(scratch))
            task = task.model_copy(update={"context": [*task.context, *evidence.context()]})
            tests, notes = evidence.failing_tests(), [evidence.markdown()]
            green = next((job.pass_run for job in evidence.jobs if job.pass_run), None)
            if green and has_commit(self.env.workspace, green_sha := self.github.workflow_run(green).head_sha):
                changed = changed_lines(self.env.workspace, green_sha, plan.base_sha)
        elif task.kind == "deflake" and task.test:
            tests = [task.test]
        self.log(f"Triage of {len(tests)} failing test(s): {', '.join(tests[:10]) or 'none named in the log'}")
        framework = detect(config.validation, self.env.workspace, config.tests.framework, config.tests.run)
        diagnosis = diagnose(self.env.workspace, plan.base_sha, tests, framework=framework, setup=config.setup, env=env,
                             timeout=config.limits.command_timeout, confidence=config.deflake.confidence,
                             changed=changed, sandbox=config.sandbox, environ=self.environ)
        notes.insert(0, diagnosis.summary())
        if diagnosis.kind == "infrastructure":
            self.infrastructure(plan, "\n\n".join(notes), check_id)
            return None
        context = [*task.context, Context(source="fixloop's triage of the failing tests", text=diagnosis.summary())]
        if diagnosis.deflake is not None:
            test = diagnosis.deflake.test
            task = task.model_copy(update={"kind": "deflake", "test": test, "context": context, "instructions": (
                f"Test {test} is unreliable: it fails some of the time at this commit (see the triage). Find the "
                "cause of the nondeterminism (shared state, ordering, time, randomness, concurrency, external "
                "resources) and fix it in the test or the code under it. Do not add retries, sleeps or skip "
                "markers. Validation reruns the test many times in random orders.")})
        else:
            task = task.model_copy(update={"kind": "ci_failure" if task.kind == "ci_failure" else "command",
                                           "context": context})
        return replace(plan, task=task), diagnosis.deflake, "\n\n".join(notes)

    def infrastructure(self, plan: Plan, notes: str, check_id: int) -> None:
        """The failure did not reproduce: report the evidence, change no code."""
        body = ("fixloop could not reproduce this failure: the failing tests pass when rerun here, so it looks "
                f"like an environment or infrastructure problem rather than a code change to make.\n\n{notes}")
        self.github.update_check_run(check_id, conclusion="neutral", actions=[], output=self.redactor.data({
            "title": "Could not reproduce: likely an environment or infrastructure problem",
            "summary": fit(body)}))
        if plan.comment_on:
            self.github.comment(plan.comment_on, self.redactor.text(fit(body, 60_000)))
        self.log(body)
        self.tell_app("not_validated", "the failure did not reproduce: likely an environment or infrastructure "
                                       "problem; no code was changed")
        self.finish("skipped")


def campaign_config(config: Config, work: CampaignWork) -> Config:
    """The repository's config with the campaign's `setup` and `validate` in place of its own, run in the
    target's folder of a monorepo; the campaign's labels and reviewers added to the pull request's."""
    pull_request = config.pull_request.model_copy(update={
        "labels": list(dict.fromkeys([*config.pull_request.labels, *work.labels])),
        "reviewers": list(dict.fromkeys([*config.pull_request.reviewers, *work.reviewers]))})
    return config.model_copy(update={
        "setup": in_folder(work.setup, work.path) if work.setup is not None else config.setup,
        "validation": in_folder(work.validation, work.path) if work.validation is not None else
        in_folder(config.validation, work.path), "pull_request": pull_request})


def in_folder(commands: list[str], path: str) -> list[str]:
    """`commands` run in the repository's folder `path` (each from there, as a whole: a `cd` that fails runs
    nothing; the folder is quoted, never the command)."""
    return [f"cd {shlex.quote(path)} || exit 2; {command}" for command in commands] if path else list(commands)


def usage_outputs(usage: Usage, cost_usd: float | None) -> dict[str, str]:
    """The step outputs of what a session spent: `input-tokens` counts every prompt token (fresh, read
    from the cache and written to it), `cost-usd` is the estimate in USD, empty when the price is unknown."""
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    return {"cost-usd": "" if cost_usd is None else f"{cost_usd:.4f}", "input-tokens": str(prompt),
            "output-tokens": str(usage.output_tokens)}


def run_action(environ: Mapping[str, str] | None = None, *, policy: RequestPolicy = RequestPolicy()) -> int:
    """`fixloop action`: one session inside a GitHub Actions runner (see ActionRunner.run); `policy`: how
    its GitHub requests are paced and retried."""
    return ActionRunner(os.environ if environ is None else environ, policy=policy).run()
