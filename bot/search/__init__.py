"""The read-only search SDK the agent's programs run against (its documentation is `REFERENCE`).

Listing, grep, reading, definitions and references over one repository, returning plain data;
the sandbox runner (`bot.search._runner`: `run_program`, and `SearchCode`, the agent's
`search_code` tool) runs a program in a limited child process that calls `configure` and supplies `emit`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bot.search._sdk import (
    REFERENCE,
    configure,
    evidence,
    files,
    grep,
    rank,
    read,
    unique,
)
from bot.search._symbols import definitions, references

if TYPE_CHECKING:
    from bot.search._runner import (
        INPUT_SCHEMA,
        TOOL_NAME,
        ProgramResult,
        SearchCode,
        SearchLimits,
        run_program,
        search_sandbox_paths,
        tool_description,
    )

_RUNNER = {"INPUT_SCHEMA", "TOOL_NAME", "ProgramResult", "SearchCode", "SearchLimits", "run_program",
           "search_sandbox_paths", "tool_description"}


def __getattr__(name: str) -> Any:
    # The runner (and with it `subprocess`) is loaded on first use, never in a search program's
    # own process, which imports this package for the SDK alone.
    if name in _RUNNER:
        return getattr(importlib.import_module("bot.search._runner"), name)
    raise AttributeError(f"module 'bot.search' has no attribute {name!r}")

__all__ = [
    "INPUT_SCHEMA",
    "REFERENCE",
    "TOOL_NAME",
    "ProgramResult",
    "SearchCode",
    "SearchLimits",
    "configure",
    "definitions",
    "evidence",
    "files",
    "grep",
    "rank",
    "read",
    "references",
    "run_program",
    "search_sandbox_paths",
    "tool_description",
    "unique",
]
