"""What a dependency bot's pull request moves: read from its title and description.

Dependabot: "Bump requests from 2.31.0 to 2.32.3" (maybe behind a prefix such as "chore(deps): "),
and in the description "Bumps [requests](…) from 2.31.0 to 2.32.3." or, for a group, one
"Updates `requests` from 2.31.0 to 2.32.3" per dependency. Renovate: "Update dependency x to v2"
and, in the description, a table with a Package and a Change column (`` `1.0.0` -> `2.0.0` ``).
"""

from __future__ import annotations

import re

_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")  # a markdown link: its text
_FROM_TO = r"(?P<name>\S+?)`? from `?(?P<old>[^\s`]+)`? to `?(?P<new>[^\s`]+)`?"
_DEPENDABOT = re.compile(rf"^(?:Bumps|Updates) `?{_FROM_TO}", re.MULTILINE)
_BUMP_TITLE = re.compile(rf"\bbump `?{_FROM_TO}", re.IGNORECASE)
_CHANGE = re.compile(r"`?(?P<old>[^\s`|]+)`?\s*(?:->|→)\s*`?(?P<new>[^\s`|]+)`?")


def dependency_updates(title: str, body: str) -> str:
    """The dependencies a bot's pull request updates, as "requests from 2.31.0 to 2.32.3" (several
    joined by "; "), read from its `title` and `body`; the title as it is for a format not known."""
    found = _dependabot(body) or _renovate_table(body)
    if not found and (match := _BUMP_TITLE.search(title.strip())):
        found = [_moved(match["name"], match["old"], match["new"])]
    return "; ".join(dict.fromkeys(found)) or title.strip()


def _moved(name: str, old: str, new: str) -> str:
    return f"{name} from {old} to {new.rstrip('.')}"


def _dependabot(body: str) -> list[str]:
    text = _LINK.sub(r"\1", body)
    return [_moved(m["name"], m["old"], m["new"]) for m in _DEPENDABOT.finditer(text)]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _renovate_table(body: str) -> list[str]:
    lines = body.splitlines()
    for i, line in enumerate(lines):
        header = [cell.casefold() for cell in _cells(line)] if line.lstrip().startswith("|") else []
        if "package" not in header or "change" not in header:
            continue
        package, change = header.index("package"), header.index("change")
        found = []
        for row in lines[i + 2:]:
            if not row.lstrip().startswith("|"):
                break
            cells = _cells(row)
            if len(cells) <= max(package, change) or not (moved := _CHANGE.search(cells[change])):
                continue
            link = _LINK.search(cells[package])
            name = (link[1] if link else cells[package].split(" (")[0]).strip("` ")
            found.append(_moved(name, moved["old"], moved["new"]))
        return found
    return []
