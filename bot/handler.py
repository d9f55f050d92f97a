"""One handler for both ways in: the App's webhook and the Action's event file.

event → the config from the default branch → `rules.decide` → Ignore, Reply, Stop and an invalid
config are answered here, every text through the caller's redactor → a `Start` (the Run, the
config) goes back to the caller: the App dispatches it, the Action runs the session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.config import CONFIG_PATH, Config, key_line, parse_config
from bot.errors import ConfigError
from bot.github.client import Repository
from bot.github.events import Event
from bot.github.limits import ANNOTATIONS_PER_REQUEST, fit
from bot.github.rules import (
    SESSION_CHECK,
    CampaignAsk,
    Ignore,
    PermissionOf,
    Reply,
    Run,
    Stop,
    addressed_number,
    decide,
    owner_aware,
)
from bot.secrets import Redactor


@dataclass(frozen=True)
class Answered:
    """The handler dealt with the event itself."""

    outcome: str  # in words, for logs and the App's delivery record: "ignored: …", "replied", …
    invalid_config: ConfigError | None = None


@dataclass(frozen=True)
class Start:
    """A session to start: the App dispatches it, the Action runs it."""

    run: Run
    config: Config
    default_branch: str


class Handler:
    def __init__(self, github: Repository, *, redactor: Redactor, workflow_file: str, app_slug: str | None = None,
                 config_path: str = CONFIG_PATH, config_required: bool = True, own_run: int | None = None,
                 check_sha: str | None = None, details_url: str | None = None,
                 on_stop: Callable[[Stop], None] = lambda stop: None,
                 on_campaign: Callable[[CampaignAsk], str] | None = None) -> None:
        """`config_path`: the Action's `config` input may name another file. `config_required`: whether
        a missing config file is a mistake (the App passes False: a workflow may read its config from
        another file, and the Action checks that one). `own_run`: the workflow run
        handling the event (a Stop leaves it alone). `check_sha`: where an invalid config is shown as a
        failed check run (the App, whose token cannot write checks, passes None). `on_stop`: what else
        a Stop ends (the App's records of its sessions)."""
        self.github, self.redactor = github, redactor
        self.config_path, self.config_required = config_path, config_required
        self.workflow_file, self.app_slug, self.own_run = workflow_file, app_slug, own_run
        self.check_sha, self.details_url, self.on_stop = check_sha, details_url, on_stop
        self.on_campaign = on_campaign  # the App runs campaigns (its answer is the reply); the Action cannot

    def handle(self, event: Event, permission_of: PermissionOf, *,
               overrides: Mapping[str, object] | None = None) -> Answered | Start:
        """Read the config from the default branch, decide, and answer; a Run comes back as `Start`.
        `overrides`: config keys set by the Action's inputs (see `Config.with_overrides`)."""
        default_branch = event.repository.default_branch
        permission_of = owner_aware(event, permission_of)
        text = self.github.file_text(self.config_path, default_branch)
        try:
            config = self.load_config(text, default_branch)
        except ConfigError as error:
            return self._invalid(event, error, text or "", permission_of)
        config = config.with_overrides(**(overrides or {}))  # a bad override is the caller's mistake, not the file's
        decision = decide(event, config, permission_of=permission_of, workflow_file=self.workflow_file,
                          app_slug=self.app_slug)
        if isinstance(decision, Ignore):
            return Answered(f"ignored: {decision.reason}")
        if isinstance(decision, Reply):
            self.github.comment(decision.number, self.redactor.text(decision.body))
            return Answered("replied")
        if isinstance(decision, Stop):
            return self._stop(decision)
        if isinstance(decision, CampaignAsk):
            answer = self.on_campaign(decision) if self.on_campaign is not None else (
                "Campaigns run on the fixloop App (`fixloop serve`), which fans their targets out to each "
                "repository's workflow; this workflow alone cannot. See docs/campaigns.md.")
            self.github.comment(decision.number, self.redactor.text(answer))
            return Answered(f"campaign {decision.action}: replied")
        return Start(decision, config, default_branch)

    def _stop(self, stop: Stop) -> Answered:
        cancelled = self.github.cancel_active_runs(self.workflow_file, stop.number, except_run=self.own_run)
        self.on_stop(stop)
        what = f"Stopped {len(cancelled)} fixloop run(s)" if cancelled else "No fixloop run was active"
        self.github.comment(stop.number, self.redactor.text(f"{what} for #{stop.number}, as @{stop.requester} asked."))
        return Answered(f"stopped {len(cancelled)} run(s)")

    def _invalid(self, event: Event, error: ConfigError, text: str, permission_of: PermissionOf) -> Answered:
        """Report a broken config where someone who asked fixloop for something will see it."""
        addressed = decide(event, Config(), permission_of=permission_of, workflow_file=self.workflow_file,
                           app_slug=self.app_slug)
        if isinstance(addressed, Ignore):
            return Answered(f"ignored: {addressed.reason} (and {self.config_path} is invalid: {error})")
        if isinstance(addressed, Stop):  # a broken config must not keep a running session from being stopped
            return self._stop(addressed)
        report = self.redactor.text(f"```\n{error}\n```")
        if self.check_sha:
            notes = [{"path": self.config_path, "start_line": line, "end_line": line, "annotation_level": "failure",
                      "title": f"fixloop config: {key}", "message": message}
                     for key, message in error.problems if (line := key_line(text, key))]
            self.github.create_check_run(
                name=SESSION_CHECK, head_sha=self.check_sha, status="completed", conclusion="failure",
                output={"title": f"Invalid {self.config_path}", "summary": fit(report),
                        "annotations": notes[: ANNOTATIONS_PER_REQUEST]},
                details_url=self.details_url)
        if number := addressed_number(addressed):
            where = f"{self.config_path} on {event.repository.default_branch}"
            self.github.comment(number, f"fixloop cannot start: {where} is invalid.\n\n{report}")
        return Answered(f"refused: invalid {self.config_path}", invalid_config=error)

    def load_config(self, text: str | None, default_branch: str) -> Config:
        """The repository's config as committed on the default branch (`text`, None when there is no
        such file); one that cannot validate anything is invalid too."""
        config = parse_config(text or "", source=self.config_path)
        if not config.validation and (text is not None or self.config_required):
            raise ConfigError(
                f"{self.config_path} on {default_branch} has no validation commands, so no change could be validated. "
                "Add e.g. `validate: [python -m pytest -q]`.", [("validate", "at least one command is needed")])
        return config

    def config(self, default_branch: str) -> Config:
        """The config on the default branch, for a start that skipped `handle` (the App's API)."""
        return self.load_config(self.github.file_text(self.config_path, default_branch), default_branch)


def acknowledge(github: Repository, run: Run) -> None:
    """A reaction on the comment that asked, so the asker sees it was heard."""
    if comment := run.origin.comment:
        github.react(comment.id, comment.kind, "eyes")
