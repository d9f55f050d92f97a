"""Glob patterns for repository paths, where `**` crosses folders and `*` does not."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_regex(pattern) + r"\Z")


def glob_regex(pattern: str) -> str:
    """The regular expression (unanchored) of a glob pattern, `**` crossing folders and `*` not."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")  # "dir/**" also covers "dir" itself
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def matches_any(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern matching the repository-relative POSIX `path`, or None."""
    for pattern in patterns:
        if _compile(pattern.strip("/") if pattern != "/" else pattern).match(path):
            return pattern
    return None
