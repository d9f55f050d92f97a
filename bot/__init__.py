"""fixloop: a CI-native coding agent (propose → validate → iterate → draft PR).

The public API is what this module exports; everything else is implementation and may change.
Errors are documented in one place: `bot.errors`.
"""

from bot.agent.events import Ending
from bot.agent.model import AnthropicModel, Model, ScriptedModel
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
    "parse_config",
    "run_session",
]
