"""The one exception tree of fixloop.

    FixloopError                    base of everything fixloop raises on purpose
    ├── ConfigError                 bad or missing configuration, flags or settings (exit 2)
    │   └── MissingAPIKey           no credentials for the model's provider (ANTHROPIC_API_KEY, a cloud's)
    │   └── MalformedEvent          an event payload lacks what GitHub's events always have
    ├── WorkspaceError              git could not prepare, read or update a repository
    ├── GitHubError                 a GitHub API call failed after its retries
    ├── NotStarted                  the App did not start (or stop, or retry) a session asked for through
    │                               its API or web UI; `status` is the HTTP status that says why
    ├── ModelError                  the model API failed after its retries, or refused the request
    └── SessionCancelled            SIGINT/SIGTERM arrived; the session ends as `cancelled`

    WallTimeExceeded                (a BaseException) the session's wall time ran out during a call;
                                    the session ends as `not_validated`, reason: wall time

Tool failures (a bad path, a command timeout) are not exceptions: they go back to the model as
tool results it can act on. Catch-all handlers exist only at the outer edge (the CLI turns an
unexpected exception into the `error` ending and exit code 3). WallTimeExceeded is control flow,
like KeyboardInterrupt: it derives from BaseException so that no `except Exception` on its way (the
model SDK's retries, a library's error handling) can swallow it.

Exit codes of every fixloop command (defined here, once): 0 validated (or nothing to do), 1 not
validated, 2 a mistake the user can fix (a ConfigError, bad flags), 3 an error, 130 cancelled.
"""

from __future__ import annotations

EXIT_CODES = {"validated": 0, "not_validated": 1, "error": 3, "cancelled": 130}  # by a session's ending
EXIT_USAGE = 2


class FixloopError(Exception):
    """Base class for every error fixloop raises on purpose."""


class ConfigError(FixloopError):
    """Configuration, flags or settings are wrong; the message says how to fix them.

    `problems` lists (dotted key, explanation) pairs when a config file is at fault, so a
    check run can point at the offending line.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class MissingAPIKey(ConfigError):
    """The model's credentials are missing; `message` says what the chosen provider needs (the default
    names ANTHROPIC_API_KEY)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (
            "ANTHROPIC_API_KEY is not set. Export your Anthropic API key "
            "(export ANTHROPIC_API_KEY=sk-ant-...) or, for a try-out without a key, run `fixloop demo`, "
            "which uses a scripted model."
        ))


class MalformedEvent(ConfigError):
    """A payload of a supported event that lacks what the event must have (a hand-made event file,
    or a delivery that is not GitHub's)."""


class WorkspaceError(FixloopError):
    """A git operation on the target repository failed."""


class GitHubError(FixloopError):
    """A GitHub API call failed; the message says which call and why."""


class NotStarted(FixloopError):
    """A session the App's API or web UI was asked to start, stop or retry, and did not."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ModelError(FixloopError):
    """The model API failed after retries, or rejected the request."""


class SessionCancelled(FixloopError):
    """The session was interrupted by a signal; partial work is kept."""


class WallTimeExceeded(BaseException):  # named for what happened, like KeyboardInterrupt
    """The session's `limits.wall_time` ran out while a call was under way (raised by its watchdog)."""
