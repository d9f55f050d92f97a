"""Keeping secrets out of the agent's reach and out of everything fixloop writes.

Two mechanisms, used everywhere:
- `scrubbed_environment` builds the environment for the agent's commands and for validation:
  credentials never reach a process the model can steer.
- `Redactor` is the single step every written text passes through (trajectory, reports,
  terminal, and later check runs and comments): it removes the session's known secret values and
  anything shaped like a GitHub token, an Anthropic key, a private key block or a JWT.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Environment variable names treated as secret (shell-style patterns, case-insensitive).
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "*CREDS*",  # google-github-actions/auth's GOOGLE_GHA_CREDS_PATH (its key file holds the OIDC request token)
    "*CLIENT_CERTIFICATE*",  # AZURE_CLIENT_CERTIFICATE_PATH: a service principal's certificate and key
    "IDENTITY_HEADER",  # what an Azure host's managed identity endpoint asks for its tokens
    "*API_KEY*",
    "*PRIVATE_KEY*",
    "*ACCESS_KEY*",
    "ANTHROPIC_*",
    "OPENAI_*",  # OPENAI_API_KEY, OPENAI_ADMIN_KEY, the organization and project ids
    "ACTIONS_*",
    "INPUT_*",  # GitHub Action inputs, which carry the keys the workflow passes in
    "OTEL_EXPORTER_OTLP_*HEADERS",  # an OpenTelemetry collector's credentials (fixloop's own exporter reads them)
    "SSH_AUTH_SOCK",
    "*ASKPASS*",
    "GPG_AGENT_INFO",
    "NPM_CONFIG__AUTH*",
)

# The runner's file commands: a line appended to one of these files changes every later step of the
# job, so no process fixloop starts gets their names (setup commands included).
RUNNER_FILE_COMMANDS = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")

# Settings added to the scrubbed environment so commands never wait for a human or a pager.
_QUIET_ENVIRONMENT = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "TERM": "dumb",
    "PYTHONDONTWRITEBYTECODE": "1",
}

_SHAPES = re.compile(
    "|".join(
        (
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?-----END[A-Z ]*PRIVATE KEY-----",
            r"\bgh[pousr]_[A-Za-z0-9]{20,}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
            r"\bsk-ant-[A-Za-z0-9_\-]{10,}",
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids
            r"\bABSK[A-Za-z0-9+/=]{20,}",  # Bedrock API keys
            r"\bya29\.[A-Za-z0-9_\-]{20,}",  # Google OAuth access tokens
            r"\bAIza[A-Za-z0-9_\-]{35}\b",  # Google API keys
            r"(?<=://)[^/\s@:]+:[^/\s@]+(?=@)",  # the user:password of a URL
            r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}",
        )
    ),
    re.DOTALL,
)
REDACTED = "[REDACTED]"
# Shorter values are too likely to be ordinary words ("true", a port number) to redact safely.
_MIN_SECRET_LENGTH = 8


def public_url(url: str) -> str:
    """A URL as fixloop may show it: scheme, host, port and path; never a user, password or query (a
    key passed as `?key=`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", "")).rstrip("/")


def is_secret_name(name: str, extra_patterns: Iterable[str] = ()) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in (*SECRET_NAME_PATTERNS, *extra_patterns))


_PR_SET_DUMPABLE = 4


def protect_this_process() -> None:
    """Make fixloop's own process non-dumpable (Linux): its /proc/<pid>/environ, which holds the
    tokens it was started with, then cannot be read, nor the process traced, by other processes
    of the same user, such as the tests the agent wrote. Children are unaffected."""
    if sys.platform != "linux":
        return
    import ctypes  # Linux only, and only here

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def scrubbed_environment(environ: Mapping[str, str], extra_patterns: Iterable[str] = ()) -> dict[str, str]:
    """A copy of `environ` without secret-looking variables and the runner's file commands, plus
    non-interactive settings."""
    extra = tuple(extra_patterns)
    kept = {name: value for name, value in environ.items()
            if not is_secret_name(name, extra) and name not in RUNNER_FILE_COMMANDS}
    return kept | _QUIET_ENVIRONMENT


def _plain_url(value: str) -> bool:
    """An http(s) URL with nothing private in it (no user, password, query or fragment): an endpoint
    such as ANTHROPIC_BASE_URL, which error messages must be able to name."""
    try:
        url = urlsplit(value.strip())
    except ValueError:
        return False
    return (url.scheme in ("http", "https") and bool(url.hostname) and "@" not in url.netloc
            and not url.query and not url.fragment)


class Redactor:
    """Removes known secret values and secret-shaped strings from text."""

    def __init__(self, known_values: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*known_values)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], extra_patterns: Iterable[str] = ()) -> Redactor:
        extra = tuple(extra_patterns)
        return cls(value for name, value in environ.items() if is_secret_name(name, extra) and not _plain_url(value))

    def add(self, *values: str) -> None:
        fresh = {v.strip() for v in values if v and len(v.strip()) >= _MIN_SECRET_LENGTH} - self._known
        if not fresh:
            return
        self._known |= fresh
        # Longest first, so a secret that contains another is removed whole.
        alternatives = sorted(self._known, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    @property
    def values(self) -> list[str]:
        """The known secret values (to mask them in CI logs before anything is printed)."""
        return sorted(self._known)

    def text(self, value: str) -> str:
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        return _SHAPES.sub(REDACTED, value)

    def data(self, value: Any) -> Any:
        """Redact every string inside JSON-like data (dicts, lists, strings)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value
