"""CODEOWNERS, read as GitHub reads it: the first of `.github/CODEOWNERS`, `CODEOWNERS` and
`docs/CODEOWNERS`; one `pattern owner…` rule a line, `#` comments; the last matching rule wins, and a
rule without owners means nobody. Patterns follow gitignore's, with GitHub's limits: no `!`, no
`[…]`, and `dir/*` matches that folder's own files only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.config import MENTIONABLE
from bot.paths import glob_regex

LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
_OWNER = re.compile(f"^@({MENTIONABLE.strip('^$')})$")  # a login or an org/team; e-mail owners are left out


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    owners: tuple[str, ...]  # logins and org/teams, without "@" (e-mail owners cannot be mentioned: left out)


def _translate(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    folder = pattern.endswith("/")
    body = pattern.strip("/")
    last = body.rsplit("/", 1)[-1]
    # A folder's name matches everything in it; `dir/*` (a wildcard after a folder) only that folder's own files.
    tail = "/.*" if folder else "" if "/" in body and "*" in last and last != "**" else "(?:/.*)?"
    return re.compile(("^" if anchored else "^(?:.*/)?") + glob_regex(body) + tail + "$")


def parse(text: str) -> list[Rule]:
    """The rules of a CODEOWNERS file; lines GitHub would not understand are skipped."""
    rules = []
    for line in text.splitlines():
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()  # a comment, whole-line or after a blank
        if not line:
            continue
        pattern, *owners = line.split()
        if pattern.startswith("!") or "[" in pattern:
            continue
        logins = tuple(m.group(1) for owner in owners if (m := _OWNER.match(owner)))
        rules.append(Rule(_translate(pattern), logins))
    return rules


def owners_of(rules: list[Rule], paths: Iterable[str]) -> list[str]:
    """The owners of `paths`, in the order the paths are given, each once."""
    found: dict[str, None] = {}
    for path in paths:
        rule = next((r for r in reversed(rules) if r.pattern.match(path.lstrip("/"))), None)
        if rule is not None:
            found.update(dict.fromkeys(rule.owners))
    return list(found)
