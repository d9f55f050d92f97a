"""fixloop: a CI-native coding agent (propose → validate → iterate → draft PR).

The public API is what this module exports; everything else is implementation and may change.
Errors are documented in one place: `bot.errors`.

Read the package in the order data flows through it: `github` (events, commands, rules: an event
becomes a decision) → `handler` (one for both ways in) → `app` (dispatches the Run to a workflow) or
`action` (plans it and runs the session) → `session` → `agent` (the loop ⇄ model, tools) and
`validation` → the Action's check runs and `publish` → the audit trail (`trajectory`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.agent._anthropic import AnthropicModel
    from bot.agent.events import Ending
    from bot.agent.model import Model, ScriptedModel, make_model
    from bot.config import Config, parse_config
    from bot.errors import (
        ConfigError,
        FixloopError,
        MissingAPIKey,
        ModelError,
        SessionCancelled,
        WorkspaceError,
    )
    from bot.session import SessionSpec, run_session
    from bot.task import Task
    from bot.trajectory import Report

# Imported on first use, so that a small entry point (a search program's process, `fixloop --help`)
# does not pay for the model SDK and the rest of the package.
_HOMES = {
    "Ending": "bot.agent.events", "AnthropicModel": "bot.agent._anthropic", "Model": "bot.agent.model",
    "ScriptedModel": "bot.agent.model", "make_model": "bot.agent.model", "Config": "bot.config",
    "parse_config": "bot.config", "ConfigError": "bot.errors", "FixloopError": "bot.errors",
    "MissingAPIKey": "bot.errors", "ModelError": "bot.errors", "SessionCancelled": "bot.errors",
    "WorkspaceError": "bot.errors", "SessionSpec": "bot.session", "run_session": "bot.session", "Task": "bot.task",
    "Report": "bot.trajectory",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bot' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__version__ = "0.1.0"
__all__ = [
    "AnthropicModel",
    "Config",
    "ConfigError",
    "Ending",
    "FixloopError",
    "MissingAPIKey",
    "Model",
    "ModelError",
    "Report",
    "ScriptedModel",
    "SessionCancelled",
    "SessionSpec",
    "Task",
    "WorkspaceError",
    "make_model",
    "parse_config",
    "run_session",
]
