"""Test frameworks as adapters (see `base.Framework`): which one a validation command uses, so that
its failures come back as named tests whatever the language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bot.frameworks.base import FailedTest, Framework, Results, Run
from bot.frameworks.go import Go
from bot.frameworks.jvm import Gradle, Maven
from bot.frameworks.node import Jest, NodeTest, Vitest
from bot.frameworks.pytest import Pytest
from bot.frameworks.rust import Cargo
from bot.frameworks.unittest import Unittest

# In the order they are tried: a command that runs tox or make is left to the repository's files.
_ADAPTERS: tuple[type[Framework], ...] = (Pytest, Unittest, Go, Jest, Vitest, NodeTest, Maven, Gradle, Cargo)
NAMES: tuple[str, ...] = tuple(adapter.name for adapter in _ADAPTERS)


def framework(name: str, run: str | None = None) -> Framework:
    """The adapter called `name` (one of NAMES); `run`: the repository's command for chosen tests."""
    (adapter,) = (a for a in _ADAPTERS if a.name == name)
    return adapter(run)


def detect(commands: Sequence[str], root: Path, configured: str = "auto", run: str | None = None) -> Framework | None:
    """The framework of the validation commands: the one the config names, else the one a command runs,
    else the one the repository's files show; None when nothing shows one (a language fixloop does not know)."""
    if configured != "auto":
        return framework(configured, run)
    adapters = [adapter(run) for adapter in _ADAPTERS]
    by_command = next((a for command in commands for a in adapters if a.recognises_command(command)), None)
    return by_command or next((a for a in adapters if a.recognises(root)), None)


def choose(command: str, root: Path, configured: str = "auto", run: str | None = None) -> Framework:
    """The framework of a validation command: the one the command runs, else the one the config
    names, else the one the repository's files show; pytest when nothing says (any command may run
    it: through make, tox or a script)."""
    adapters = [adapter(run) for adapter in _ADAPTERS]
    by_command = next((a for a in adapters if a.recognises_command(command)), None)
    return by_command or detect([], root, configured, run) or adapters[0]


__all__ = ["NAMES", "FailedTest", "Framework", "Results", "Run", "choose", "detect", "framework"]
