"""The repository's `.github/fixloop.yml`: its model, defaults, and loading.

Every key has a default, so an empty file (or none) is a valid configuration; unknown keys are
errors, so a typo does not silently fall back to a default. The fixed keys other tools rely on:
`validate`, `setup`, `limits.iterations`, `trigger.label`, `trigger.command`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError

CONFIG_PATH = ".github/fixloop.yml"
DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_DENY_PATHS = (".git/**", ".github/workflows/**")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    iterations: int = Field(4, ge=1, le=50, description="Propose→validate rounds before giving up.")
    turns: int = Field(40, ge=1, le=500, description="Model turns allowed within one iteration.")
    tokens: int = Field(3_000_000, ge=1_000, description="Total tokens (prompt, cache and output) for the session.")
    cost_usd: float = Field(10.0, gt=0, description="Estimated cost ceiling in USD, from list prices.")
    wall_time: float = Field(3600, gt=0, description="Seconds the whole session may take.")
    command_timeout: float = Field(900, gt=0, description="Seconds one validation or setup command may take.")
    tool_timeout: float = Field(180, gt=0, description="Seconds one command of the agent's bash tool may take.")


class Trigger(_Strict):
    label: str = Field("fixloop", min_length=1, description="Issue label that starts a session.")
    command: str = Field("/fixloop", pattern=r"^/[A-Za-z0-9_-]+$", description="Comment command word.")


class CI(_Strict):
    auto: bool = Field(False, description="Start sessions on failed CI runs without a command.")
    workflows: list[str] = Field(default_factory=list, description="Workflow names or files watched; empty: all.")
    branches: list[str] = Field(default_factory=list, description="Branches watched; empty: the default branch.")
    max_sessions_per_branch: int = Field(3, ge=0, description="Automatic CI sessions per branch, to avoid loops.")
    allowed_bots: list[str] = Field(
        default_factory=list,
        description="Bot logins (e.g. dependabot[bot], renovate[bot]) whose pull requests get a session when their "
                    "CI fails, even without `auto`; fixloop commits the fix to the bot's branch.")


class Paths(_Strict):
    deny: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENY_PATHS),
        description="Glob patterns (** crosses folders) the agent may not touch.",
    )


class PullRequest(_Strict):
    labels: list[str] = Field(default_factory=list, description="Labels added to fixloop's draft pull requests.")
    reviewers: list[str] = Field(default_factory=list, description="Logins asked to review the draft pull requests.")


# A GitHub login of a person or organisation (assignable; never an app's `name[bot]`), or that or an
# `org/team` (mentionable).
LOGIN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"
MENTIONABLE = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9._-]{1,100})?$"
EscalateOn = Literal["not_validated", "error", "limit"]


class Escalate(_Strict):
    on: list[EscalateOn] = Field(
        default_factory=lambda: list(get_args(EscalateOn)),
        description="Endings that call a person: `not_validated` (validation still fails), `limit` (an iteration, "
                    "turn, token, cost or time limit stopped it) and `error`. Empty: never.")
    assign: list[Annotated[str, Field(pattern=LOGIN)]] = Field(
        default_factory=list, description="People (logins) assigned to the issue or pull request, or to the tracking "
                                          "issue.")
    mention: list[Annotated[str, Field(pattern=MENTIONABLE)]] = Field(
        default_factory=list, description="Logins or `org/team`s mentioned when a session escalates.")
    codeowners: bool = Field(True, description="Also mention the CODEOWNERS of the files the session touched or "
                                               "that hold the failing tests (read from the default branch).")
    label: str = Field("fixloop: needs a human", max_length=50,
                       description="Label added where fixloop escalates; empty: none.")
    after_failures: int = Field(1, ge=1, le=20, description="Escalate once this many sessions in a row on the same "
                                                             "issue, pull request or branch have failed.")
    wip_branch: bool = Field(True, description="Push the partial work of a session that did not validate to a "
                                               "`fixloop/wip/…` branch, which a person can check out and go on from.")


class Deflake(_Strict):
    quarantine: bool = Field(
        False, description="Allow retries, sleeps or skip markers as a deflake fix (a last resort)."
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence wanted that the fixed test is reliable.")
    max_failure_rate: float = Field(0.10, gt=0, lt=1, description="Failure rate the repeated runs must rule out.")


class Secrets(_Strict):
    scrub: list[str] = Field(
        default_factory=list,
        description="Extra environment variable names (shell patterns) removed from the agent's commands.",
    )


Provider = Literal["anthropic", "bedrock", "vertex", "foundry", "openai"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "bedrock", "vertex", "foundry", "openai")
DEFAULT_INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md")


class Pricing(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input: float = Field(ge=0, description="USD per million input (prompt) tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")
    cache_read: float = Field(0.0, ge=0, description="USD per million prompt tokens read from the cache.")
    cache_write: float = Field(0.0, ge=0, description="USD per million prompt tokens written to the cache.")


class Instructions(_Strict):
    enabled: bool = Field(True, description="Give the model the repository's instruction files as guidance.")
    files: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INSTRUCTION_FILES),
        description="Instruction files read from the base commit; AGENTS.md nearest to the task's files first.",
    )

    @field_validator("files")
    @classmethod
    def _inside_the_repository(cls, files: list[str]) -> list[str]:
        for path in files:
            relative = PurePosixPath(path.strip())
            if relative.is_absolute() or not relative.parts or ".." in relative.parts:
                raise ValueError(f"{path!r} is not a path from the repository's root (no leading / nor ..)")
        return files


TestFramework = Literal["auto", "pytest", "unittest", "go", "jest", "vitest", "node", "maven", "gradle", "cargo"]


class Tests(_Strict):
    framework: TestFramework = Field(
        "auto", description="The test framework of the validation commands: auto (from each command, else the "
                            "repository's files), pytest, unittest, go, jest, vitest, node, maven, gradle or cargo.")
    run: str | None = Field(None, pattern=r"\{tests\}", description="Command running chosen tests, `{tests}` standing "
                                                                   "for their ids (default: the framework's own).")


class Telemetry(_Strict):
    enabled: bool = Field(True, description="Export OpenTelemetry spans when an endpoint is known (here or "
                                            "OTEL_EXPORTER_OTLP_ENDPOINT).")
    endpoint: str | None = Field(None, description="OTLP/HTTP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT).")
    content: bool = Field(False, description="Include prompts, replies, tool input and output in spans (redacted).")


class Config(_Strict):
    model: str = Field(DEFAULT_MODEL, min_length=1, description="The model's name (the Action's `model` input and "
                                                                "`fixloop run --model` override it).")
    provider: Provider = Field("anthropic", description="Where the model is called: anthropic, bedrock, vertex, "
                                                         "foundry or openai (an OpenAI-compatible endpoint).")
    base_url: str | None = Field(None, pattern=r"^https?://\S+$",
                                 description="The model API's URL (default: the provider's own, or OPENAI_BASE_URL).")
    pricing: Pricing | None = Field(None, description="The model's prices, instead of fixloop's table (needed for a "
                                                      "cost limit on a model the table does not know).")
    instructions: Instructions = Field(default_factory=Instructions,
                                       description="The repository's instruction files for agents.")
    telemetry: Telemetry = Field(default_factory=Telemetry, description="OpenTelemetry traces of each session.")
    validation: list[str] = Field(
        default_factory=list, alias="validate", description="Commands that must all pass (exit 0)."
    )
    setup: list[str] = Field(default_factory=list, description="Commands run once before the agent starts.")
    tests: Tests = Field(default_factory=Tests, description="How the validation commands' test results are read.")
    limits: Limits = Field(default_factory=Limits, description="What one session may spend: rounds, turns, tokens, "
                                                                "cost, time.")
    trigger: Trigger = Field(default_factory=Trigger, description="How people start fixloop: a label, a command.")
    ci: CI = Field(default_factory=CI, description="Sessions from failed CI runs.")
    paths: Paths = Field(default_factory=Paths, description="Where the agent may not write.")
    branch_prefix: str = Field("fixloop/", pattern=r"^[A-Za-z0-9._/-]+/$",
                               description="Prefix of fixloop's branches (ends with /).")
    pull_request: PullRequest = Field(default_factory=PullRequest, description="fixloop's draft pull requests.")
    escalate: Escalate = Field(default_factory=Escalate, description="Who is told, and how, when a session does "
                                                                     "not validate.")
    deflake: Deflake = Field(default_factory=Deflake, description="Making flaky tests reliable, and proving it.")
    secrets: Secrets = Field(default_factory=Secrets, description="Keeping secrets from the agent's commands.")
    sandbox: Literal["auto", "required", "off"] = Field(
        "auto", description="Confine the agent's commands with bubblewrap: "
                            "when installed (auto), always (required), never (off).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_the_url(cls, url: str | None) -> str | None:
        """A password or a `?key=` in the URL would be shown wherever the endpoint is named."""
        parts = urlsplit(url or "")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not carry a user, password or query: give the key in the provider's variable "
                             "(e.g. OPENAI_API_KEY)")
        return url

    @field_validator("validation", "setup")
    @classmethod
    def _no_blank_commands(cls, commands: list[str]) -> list[str]:
        if any(not c.strip() for c in commands):
            raise ValueError("commands must not be blank")
        return commands

    def cost_limit_set(self) -> bool:
        """Whether `limits.cost_usd` was asked for (in the file or on the command line), not the default."""
        return "limits" in self.model_fields_set and "cost_usd" in self.limits.model_fields_set

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with command-line overrides applied (None means: keep the file's value)."""
        data = self.model_dump(by_alias=True, exclude_unset=True)  # what was set stays told apart from defaults
        for dotted, value in changes.items():
            if value is None:
                continue
            *parents, leaf = dotted.split(".")
            node = data
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return parse_config_data(data, source="command line")


def problems_of(error: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """(dotted key, explanation) for each problem pydantic found in a file of `root`'s model."""
    found = []
    for problem in error.errors():
        key = ".".join(str(p) for p in problem["loc"]).replace("validation", "validate") or "(top level)"
        message = _unknown_key(problem["loc"], root) if problem["type"] == "extra_forbidden" else problem["msg"]
        found.append((key, message.removeprefix("Value error, ")))
    return found


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """An unknown key, with the nearest known one (a typo) or the keys that are allowed there."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        fields = model.model_fields if model else {}
        field = next((f for name, f in fields.items() if part in (name, f.alias)), None)
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    known = sorted(f.alias or name for name, f in model.model_fields.items()) if model else []
    near = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if near:
        return f"unknown key; did you mean `{near[0]}`?"
    return f"unknown key; the keys here are {', '.join(known)}" if known else "unknown key"


def _describe(problems: list[tuple[str, str]], source: str) -> str:
    lines = [f"{source} is not a valid fixloop configuration:"]
    lines += [f"  - {key}: {message}" for key, message in problems]
    lines.append("See fixloop's configuration reference, docs/reference/config.md "
                 "(schema: bot/schemas/config.schema.json).")
    return "\n".join(lines)


def parse_config_data(data: Any, *, source: str = CONFIG_PATH) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys to values, not {type(data).__name__}.")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        problems = problems_of(error, Config)
        raise ConfigError(_describe(problems, source), problems) from None


# libyaml's loader where PyYAML has it: fast, and it refuses absurd nesting at once (the pure-Python one takes
# seconds to run out of recursion on a 5,000-deep list).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]  # PyYAML has no type hints
    """YAML 1.2's booleans: only true and false. YAML 1.1 also reads `on`, `off`, `yes` and `no` as booleans,
    which would make the key of `escalate: {on: [error]}` the boolean true (values are unaffected: pydantic
    still reads `auto: yes` as true)."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(text: str, *, source: str) -> Any:
    """The YAML document `text` (from `source`, for messages); ConfigError when it cannot be read."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = [(f"line {mark.line + 1}", str(getattr(error, "problem", "") or error))] if mark else []
        raise ConfigError(f"{source} is not valid YAML: {error}", where) from None
    except (RecursionError, ValueError) as error:  # absurdly deep nesting, integers too long to read
        raise ConfigError(f"{source} cannot be read: {type(error).__name__}: {str(error)[:200]}") from None


def parse_config(text: str, *, source: str = CONFIG_PATH) -> Config:
    return parse_config_data(read_yaml(text, source=source), source=source)


def key_line(text: str, dotted: str) -> int | None:
    """The 1-based line of `dotted` (e.g. "limits.iterations") in YAML `text`, or of its nearest parent."""
    if dotted.startswith("line "):
        return int(dotted.removeprefix("line "))
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line
