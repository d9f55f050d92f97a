"""A Task: what a session is asked to do, whichever way it came in."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

TaskKind = Literal["local", "issue", "command", "ci_failure", "deflake"]


class Task(BaseModel):
    kind: TaskKind
    title: str = Field(min_length=1)
    body: str = ""  # untrusted text: the issue body, the comment's instructions, the failure evidence
    source: str  # where it came from, in words: "the command line", "issue #12 by @octocat"

    def slug(self, limit: int = 40) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")
        return words[:limit].rstrip("-") or "change"

    def statement(self) -> str:
        return f"{self.title}\n\n{self.body}".strip()
