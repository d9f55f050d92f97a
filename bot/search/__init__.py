"""The read-only search SDK the agent's programs run against (its documentation is `REFERENCE`).

Listing, grep, reading, definitions and references over one repository, returning plain data;
the sandbox runner (`bot.search._runner`: `run_program`, and `SearchCode`, the agent's
`search_code` tool) runs a program in a limited child process that calls `configure` and supplies `emit`.
"""

from bot.search._runner import (
    TOOL_NAME,
    TOOL_SPEC,
    ProgramResult,
    SearchCode,
    SearchLimits,
    run_program,
    search_sandbox_paths,
)
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

__all__ = [
    "REFERENCE",
    "TOOL_NAME",
    "TOOL_SPEC",
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
    "unique",
]
