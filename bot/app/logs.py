"""Structured logs: one JSON object per line, on stderr, through the standard `logging` module.

    from bot.app.logs import configure, logger
    configure("INFO", redact=Redactor([webhook_secret]).text)
    logger.info("dispatched", extra={"delivery": delivery_id, "event": "issues",
                                     "repository": "o/r", "outcome": "dispatched"})

prints `{"ts": "2025-01-01T12:00:00.000Z", "level": "INFO", "logger": "fixloop.app",
"message": "dispatched", "delivery": "…", "event": "issues", "repository": "o/r",
"outcome": "dispatched"}`. An exception logged with `logger.exception(...)` (or `exc_info=`) adds
`"exc"`, the formatted traceback. Every string, keys included, passes through `redact` when given.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from bot.errors import ConfigError

logger = logging.getLogger("fixloop.app")

_ROOT = "fixloop"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_CORE_KEYS = ("ts", "level", "logger", "message", "exc", "stack")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; `redact` is applied to every string."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_"):
                continue
            line[f"extra_{key}" if key in _CORE_KEYS else key] = value
        return json.dumps(self._clean(line), ensure_ascii=False, allow_nan=False)

    def _clean(self, value: Any) -> Any:
        """JSON-ready data: strings redacted, containers walked, anything else as its str()."""
        if isinstance(value, str):
            return self._redact(value) if self._redact else value
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else self._clean(repr(value))
        if isinstance(value, dict):
            return {self._clean(str(k)): self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._clean(v) for v in value]
        return self._clean(str(value))


class _JsonHandler(logging.StreamHandler[IO[str]]):
    """Marks the handler `configure` installed, so a second call replaces it."""


def configure(
    level: str = "INFO",
    stream: IO[str] | None = None,
    redact: Callable[[str], str] | None = None,
) -> None:
    """Send the `fixloop` loggers' records to `stream` (default stderr) as JSON lines.

    Idempotent: calling it again replaces the handler it installed before. The `fixloop` logger
    stops propagating to the root logger, so no line is printed twice by another handler.
    Raises ConfigError for an unknown level name.
    """
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ConfigError(f"unknown log level {level!r}; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    root = logging.getLogger(_ROOT)
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(redact))
    root.addHandler(handler)
    root.setLevel(levels[level.upper()])
    root.propagate = False
