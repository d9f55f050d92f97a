"""Campaigns: one change (a migration, a dependency upgrade) across many repositories, or across the
packages of a monorepo. The campaign file's model and rules are in `bot.campaign._file`; `fixloop
campaign` is `bot.campaign.cli`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.campaign._file import (
        LOGIN,
        PLACEHOLDERS,
        Campaign,
        PullRequest,
        Target,
        TargetQuery,
        Targets,
        parse_campaign,
    )

_PUBLIC = {"LOGIN", "PLACEHOLDERS", "Campaign", "PullRequest", "Target", "TargetQuery", "Targets", "parse_campaign"}


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `fixloop` registers its `campaign` command without loading pydantic.
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bot.campaign' has no attribute {name!r}")
    return getattr(importlib.import_module("bot.campaign._file"), name)


__all__ = ["LOGIN", "PLACEHOLDERS", "Campaign", "PullRequest", "Target", "TargetQuery", "Targets", "parse_campaign"]
