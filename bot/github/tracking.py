"""fixloop's tracking issues for automatic CI sessions: one per failing branch, recognised by a
hidden line that names the branch, its failing commit and its latest failed run. A command on such
an issue works on that branch's CI failure (bot.github.rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

TRACKING_MARK = "<!-- fixloop tracking "
_TRACKING = re.compile(r"<!-- fixloop tracking key=([0-9a-f]{8}) run=(\d{0,20}) head=(\S*) -->")


@dataclass(frozen=True)
class Tracked:
    """What a tracking issue is about: the failing branch (and commit) and its latest failed run."""

    key: str  # stable per repository and branch
    run_id: int | None
    branch: str
    head_sha: str

    def line(self) -> str:
        return (f"{TRACKING_MARK}key={self.key} run={self.run_id or ''} "
                f"head={quote(self.branch, safe='')}@{self.head_sha} -->")


def read_tracked(text: str) -> Tracked | None:
    """What the tracking issue `text` is about: its last hidden line (fixloop writes it at the end)."""
    matches = list(_TRACKING.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    branch, _, sha = match.group(3).rpartition("@")
    return Tracked(match.group(1), int(match.group(2)) if match.group(2) else None, unquote(branch), sha)


def tracking_title(branch: str) -> str:
    """The tracking issue's title: the branch, as people search for it."""
    return f"fixloop could not fix CI on {branch}"[:250]
