"""A Task: what a session is asked to do, whichever way it came in.

`instructions` come from someone entitled to ask (the person at the command line, a user with
write access who commented a command, the App that checked that). `context` is material from
anyone (issue text, a pull request description, CI evidence): the model sees it fenced as data.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

TaskKind = Literal["local", "issue", "command", "ci_failure", "deflake"]


class Context(BaseModel):
    source: str  # provenance in words: "issue #12 by @octocat"
    text: str


class Target(BaseModel):
    """Where on GitHub the task points, and who asked."""

    repository: str  # owner/name
    number: int | None = None  # the issue or pull request
    pull_request: bool = False
    requester: str | None = None
    comment_id: int | None = None  # the triggering comment, for reactions and replies
    comment_kind: Literal["issue", "review"] | None = None
    ci_run_id: int | None = None  # the failed workflow run
    ci_head_sha: str | None = None
    ci_branch: str | None = None
    test_id: str | None = None  # for deflake
    correlation_id: str | None = None  # the App's delivery id, carried through the dispatch


class Task(BaseModel):
    kind: TaskKind
    title: str = Field(min_length=1)
    instructions: str = ""
    context: list[Context] = []
    source: str  # where the task came from, in words
    target: Target | None = None

    def slug(self, limit: int = 40) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")
        return words[:limit].rstrip("-") or "change"

    def statement(self) -> str:
        """The task in one text, for records (the model gets the fenced form from the prompt)."""
        parts = [self.title, self.instructions, *(f"[{c.source}]\n{c.text}" for c in self.context)]
        return "\n\n".join(p for p in parts if p.strip())
