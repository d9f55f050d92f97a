"""Campaign files: one change (a migration, a dependency upgrade) across many repositories, or across
the packages of a monorepo, as one file a platform team writes and reviews.

A campaign names its instructions, optional deterministic codemod commands run before the agent,
`setup`/`validate` overrides, its targets (a list of repositories, a query over an organisation's
repositories, or `paths` in one repository), the branch and pull request every target gets (as
templates), and how it runs: `concurrency`, `max_cost_usd`, `pilot`, and the repository of its
tracking issue. `parse_campaign` reads and checks one (its JSON Schema, generated from these
models, ships as bot/schemas/campaign.schema.json); `Campaign.targets.listed()` expands the
targets that need no API call, each with its branch and pull request title rendered.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.config import LOGIN, problems_of, read_yaml
from bot.errors import ConfigError

# The placeholders of the branch and pull request templates.
PLACEHOLDERS = {
    "campaign": "the campaign's name",
    "target": "the target: owner/name, or owner/name:path for a package of a monorepo",
    "repository": "the target's repository, owner/name",
    "path": "the target's folder in a monorepo ('' for a whole repository)",
}
_REPOSITORY = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_REF_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+|\.\.+|/{2,}")


def _matching(pattern: str, what: str) -> Any:
    """A validator of a string field that must match `pattern` (shown in the JSON Schema too), saying `what`."""
    def check(cls: type, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return classmethod(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _template(text: str) -> str:
    """A template may use only PLACEHOLDERS, plainly (no attribute, index, conversion or format)."""
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise ValueError("control characters are not allowed")
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ValueError(f"not a valid template ({error}); write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(f"unknown placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}}; the placeholders are "
                             + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    return text


class TargetQuery(_Strict):
    org: str = Field(json_schema_extra={"pattern": LOGIN},
                     description="The organisation (or user) whose repositories are searched.")
    topic: str | None = Field(None, min_length=1, description="Only repositories with this topic.")
    language: str | None = Field(None, min_length=1, description="Only repositories whose main language is this.")
    name: str | None = Field(None, min_length=1, description="Only repository names matching this glob, e.g. `svc-*`.")
    archived: bool = Field(False, description="Include archived repositories (they cannot take a pull request).")

    _org = field_validator("org")(_matching(LOGIN, "a GitHub organisation or user"))

    def matches(self, name: str, topics: list[str], language: str | None, archived: bool) -> bool:
        """Whether a repository of the organisation (its name without the owner) is a target."""
        return ((self.archived or not archived) and (self.topic is None or self.topic in topics)
                and (self.language is None or (language or "").lower() == self.language.lower())
                and (self.name is None or fnmatchcase(name, self.name)))


class Targets(_Strict):
    """Exactly one of `repositories`, `query`, or `paths` (with `repository`)."""

    repositories: list[str] | None = Field(None, min_length=1, description="The repositories, as owner/name.",
                                           json_schema_extra={"items": {"type": "string", "pattern": _REPOSITORY}})
    query: TargetQuery | None = Field(None, description="The repositories of an organisation that match, found "
                                                        "through GitHub's API when the campaign starts.")
    repository: str | None = Field(None, json_schema_extra={"pattern": _REPOSITORY},
                                   description="The monorepo whose `paths` are targets.")
    paths: list[str] | None = Field(None, min_length=1, description="Folders of `repository`: one session each.")

    _repository = field_validator("repository")(_matching(_REPOSITORY, "a repository; write owner/name"))

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not re.fullmatch(_REPOSITORY, name):
                raise ValueError(f"{name!r} is not a repository; write owner/name")
        _no_repeats(value or [])
        return value

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            pure = PurePosixPath(path)
            if (not path or pure.is_absolute() or ".." in pure.parts or path != pure.as_posix() or path == "."
                    or ".git" in pure.parts):
                raise ValueError(f"{path!r} is not a folder of the repository; write it relative, e.g. packages/api")
        _no_repeats(value or [])
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Targets:
        kinds = [k for k, v in (("repositories", self.repositories), ("query", self.query), ("paths", self.paths))
                 if v is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of `repositories`, `query` or `paths`" +
                             (f" (got {', '.join(kinds)})" if kinds else ""))
        if (self.paths is None) != (self.repository is None):
            raise ValueError("`paths` and `repository` go together: the folders of that one repository")
        return self

    def listed(self) -> list[Target] | None:
        """The targets, in the file's order; None for a query (GitHub's API answers it)."""
        if self.repositories is not None:
            return [Target(name, "") for name in self.repositories]
        if self.paths is not None and self.repository is not None:
            return [Target(self.repository, path) for path in self.paths]
        return None


def _no_repeats(values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value.lower() in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value.lower())


@dataclass(frozen=True)
class Target:
    repository: str  # owner/name
    path: str  # a folder of a monorepo; "" for the whole repository

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.path}" if self.path else self.repository


class PullRequest(_Strict):
    title: str = Field("{campaign}: {target}", min_length=1, max_length=256, description="Title template.")
    body: str = Field("Part of the campaign `{campaign}`, for `{target}`.", description="Body template, markdown.")
    labels: list[str] = Field(default_factory=list, description="Labels every pull request gets.")
    reviewers: list[str] = Field(default_factory=list, description="Logins asked to review every pull request.",
                                 json_schema_extra={"items": {"type": "string", "pattern": LOGIN}})

    @field_validator("title", "body")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _template(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label.strip() or len(label) > 50 or any(ord(c) < 32 for c in label):
                raise ValueError(f"{label!r} is not a label GitHub takes (1 to 50 printable characters)")
        _no_repeats(value)
        return value

    @field_validator("reviewers")
    @classmethod
    def _logins(cls, value: list[str]) -> list[str]:
        for login in value:
            if not re.fullmatch(LOGIN, login):
                raise ValueError(f"{login!r} is not a GitHub login")
        return value


class Campaign(_Strict):
    name: str = Field(json_schema_extra={"pattern": _NAME},
                      description="Lower-case letters, digits and dashes; it names the branches and the tracking "
                                  "issue.")
    instructions: str = Field(min_length=1, description="What to change, as the agent's task.")
    codemod: list[str] = Field(default_factory=list,
                               description="Deterministic commands run before the agent (pyupgrade, jscodeshift, "
                                           "OpenRewrite, `go fix`, sed); the agent fixes what they break.")
    setup: list[str] | None = Field(None, description="Replaces each target's `setup` (.github/fixloop.yml).")
    validation: list[str] | None = Field(None, alias="validate",
                                         description="Replaces each target's `validate` (.github/fixloop.yml).")
    targets: Targets = Field(description="The repositories, a query over an organisation's, or a monorepo's paths.")
    branch: str = Field("fixloop/campaign/{campaign}", min_length=1, max_length=200,
                        description="Branch template; with `paths` it must name the target ({target} or {path}).")
    pull_request: PullRequest = Field(default_factory=PullRequest, description="The draft pull request of each target.")
    concurrency: int = Field(5, ge=1, le=1_000, strict=True, description="Sessions running at once, in all.")
    max_cost_usd: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False, strict=True,
                                       description="Stop starting targets once the campaign's spending reaches this.")
    pilot: int = Field(0, ge=0, le=10_000, strict=True,
                       description="Run this many targets first, then wait for a person to continue.")
    tracking: str = Field(json_schema_extra={"pattern": _REPOSITORY},
                          description="The repository (owner/name) of the tracking issue.")

    _name = field_validator("name")(_matching(_NAME, "a campaign name: lower-case letters, digits and dashes "
                                                     "(it names branches), e.g. requests-3"))
    _tracking = field_validator("tracking")(_matching(_REPOSITORY, "a repository; write owner/name"))

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        return _template(value)

    @model_validator(mode="after")
    def _distinct_branches(self) -> Campaign:
        if self.targets.paths is not None and not {"target", "path"} & _names(self.branch):
            raise ValueError("with `paths`, `branch` must contain {target} or {path}: the packages of one repository "
                             "need a branch each")
        listed = self.targets.listed()
        if listed is not None and self.pilot > len(listed):
            raise ValueError(f"`pilot` is {self.pilot}, but there are {len(listed)} targets")
        for target in listed or []:
            if not self.branch_for(target):
                raise ValueError(f"`branch` gives {target.name} no branch name")
            if len(title := self.render(self.pull_request.title, target)) > 256:
                raise ValueError(f"the pull request title of {target.name} is {len(title)} characters long; GitHub "
                                 "takes 256")
        if self.targets.paths is not None:
            self._branches_apart([self.branch_for(t) for t in listed or []])
        return self

    @staticmethod
    def _branches_apart(branches: list[str]) -> None:
        """The packages of one repository need branches git can hold together."""
        if len(set(branches)) < len(branches):
            raise ValueError("two packages of the repository get the same branch; make `branch` name them apart")
        # git cannot hold both `a` and `a/b`: one would be a folder of the other.
        ordered = sorted(branches)
        clash = next(((a, b) for a, b in itertools.pairwise(ordered) if b.startswith(a + "/")), None)
        if clash is not None:
            raise ValueError(f"branches {clash[0]} and {clash[1]} cannot both exist in git (one is a folder of the "
                             "other); make `branch` name them apart")

    def render(self, template: str, target: Target) -> str:
        return template.format(campaign=self.name, target=target.name, repository=target.repository,
                               path=target.path)

    def branch_for(self, target: Target) -> str:
        """The target's branch: the template, with what git refuses in a branch name made dashes (and no
        part that starts with a dot or ends in `.lock`)."""
        parts = _REF_UNSAFE.sub("-", self.render(self.branch, target).replace(":", "/")).split("/")
        return "/".join(p for p in (re.sub(r"(?:\.lock)+$", "", part).strip(".-") for part in parts) if p)


def _names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def parse_campaign(text: str, *, source: str) -> Campaign:
    """The campaign in YAML `text` (from `source`, for messages); ConfigError listing every problem."""
    data = read_yaml(text, source=source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values, not {type(data).__name__}.")
    try:
        return Campaign.model_validate(data)
    except ValidationError as error:
        problems = problems_of(error, Campaign)
        lines = [f"{source} is not a valid campaign:", *(f"  - {key}: {message}" for key, message in problems),
                 "See docs/campaigns.md (schema: bot/schemas/campaign.schema.json)."]
        raise ConfigError("\n".join(lines), problems) from None


__all__ = ["LOGIN", "PLACEHOLDERS", "Campaign", "PullRequest", "Target", "TargetQuery", "Targets", "parse_campaign"]
