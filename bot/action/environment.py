"""The GitHub Actions side of a runner: its environment, workflow commands, outputs, summary."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.config import CONFIG_PATH, PROVIDERS, Provider
from bot.errors import ConfigError
from bot.task import WORKFLOW_FILE

REQUIRED = ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY", "GITHUB_WORKSPACE")


@dataclass(frozen=True)
class ActionsEnvironment:
    event_name: str
    event_path: Path
    repository: str
    workspace: Path
    token: str
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    run_id: str | None = None
    sha: str | None = None
    step_summary: Path | None = None
    output: Path | None = None
    workflow_file: str = WORKFLOW_FILE
    model: str | None = None
    provider: Provider | None = None
    max_iterations: int | None = None
    config_path: str = CONFIG_PATH

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ActionsEnvironment:
        missing = [name for name in REQUIRED if not environ.get(name)]
        if missing:
            raise ConfigError(
                f"`fixloop action` runs inside GitHub Actions, but {', '.join(missing)} is not set. "
                "Use the fixloop action in a workflow (see workflows/fixloop.yml), or `fixloop run` locally."
            )
        token = environ.get("GITHUB_TOKEN", "")
        if not token:
            raise ConfigError(
                "GITHUB_TOKEN is not set. Pass the action's `github-token` input (an App installation token from "
                "actions/create-github-app-token, or ${{ github.token }})."
            )
        iterations = environ.get("FIXLOOP_MAX_ITERATIONS", "").strip()
        if iterations and not (iterations.isdigit() and int(iterations) > 0):
            raise ConfigError(f"max-iterations must be a positive whole number, not {iterations!r}.")
        named = environ.get("FIXLOOP_PROVIDER", "").strip()
        provider = next((known for known in PROVIDERS if known == named), None)
        if named and provider is None:
            raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)} (or empty for the config file's), "
                              f"not {named!r}.")
        workflow_ref = environ.get("GITHUB_WORKFLOW_REF", "")
        return cls(
            event_name=environ["GITHUB_EVENT_NAME"],
            event_path=Path(environ["GITHUB_EVENT_PATH"]),
            repository=environ["GITHUB_REPOSITORY"],
            workspace=Path(environ["GITHUB_WORKSPACE"]),
            token=token,
            api_url=environ.get("GITHUB_API_URL") or cls.api_url,
            server_url=environ.get("GITHUB_SERVER_URL") or cls.server_url,
            run_id=environ.get("GITHUB_RUN_ID") or None,
            sha=environ.get("GITHUB_SHA") or None,
            step_summary=_path(environ.get("GITHUB_STEP_SUMMARY")),
            output=_path(environ.get("GITHUB_OUTPUT")),
            workflow_file=workflow_ref.split("@", 1)[0].rsplit("/", 1)[-1] or cls.workflow_file,
            model=environ.get("FIXLOOP_MODEL") or None,
            provider=provider,
            max_iterations=int(iterations) if iterations else None,
            config_path=environ.get("FIXLOOP_CONFIG") or cls.config_path,
        )

    @property
    def run_url(self) -> str | None:
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}" if self.run_id else None

    @property
    def artifact(self) -> str | None:
        return f"fixloop-session-{self.run_id}" if self.run_id else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _escape(data: str) -> str:
    return data.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class WorkflowCommands:
    """`::command::` lines the runner interprets (masking, groups, annotations)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def mask(self, value: str) -> None:
        for line in value.splitlines() or [value]:  # multi-line secrets are masked line by line
            if line.strip():
                self._say(f"::add-mask::{_escape(line)}")

    def group(self, title: str) -> None:
        self._say(f"::group::{_escape(title)}")

    def endgroup(self) -> None:
        self._say("::endgroup::")

    def notice(self, message: str) -> None:
        self._say(f"::notice::{_escape(message)}")

    def warning(self, message: str) -> None:
        self._say(f"::warning::{_escape(message)}")

    def error(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = ",".join(p for p in (f"file={file}" if file else "", f"line={line}" if line else "") if p)
        self._say(f"::error{' ' + where if where else ''}::{_escape(message)}")


def write_outputs(path: Path | None, values: Mapping[str, str]) -> None:
    """Step outputs, each as a heredoc with a random delimiter (values may hold untrusted text)."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as handle:
        for name, value in values.items():
            delimiter = f"fixloop_{secrets.token_hex(8)}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def append_summary(path: Path | None, markdown: str) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(markdown)
