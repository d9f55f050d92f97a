"""No package imports one above it (see the layout in docs/development.md).

Read from the source with `ast`, so imports inside functions (the command line's lazy ones) count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"

# package → what it must never import. The two ways in (App, Action) sit on the handler, the
# handler on GitHub's vocabulary; the agent and the session know nothing of GitHub.
FORBIDDEN = {
    "bot.github": ("bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent", "bot.trajectory",
                   "bot.triage", "bot.search", "bot.validation", "bot.workspace", "bot.sandbox", "bot.cli"),
    "bot.handler": ("bot.app", "bot.action", "bot.session", "bot.agent", "bot.cli"),
    "bot.app": ("bot.action", "bot.session", "bot.agent", "bot.triage", "bot.cli"),
    "bot.action": ("bot.app", "bot.cli"),
    "bot.session": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.cli"),
    "bot.agent": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.cli"),
    "bot.task": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent", "bot.cli"),
    "bot.triage": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent", "bot.cli"),
    "bot.logs": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent", "bot.cli"),
    "bot.search": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent", "bot.cli"),
    # Test framework adapters: what validation, triage and deflake use, knowing none of them.
    "bot.frameworks": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.agent",
                       "bot.triage", "bot.validation", "bot.deflake", "bot.sandbox", "bot.cli"),
    # Traces of sessions and of the App: both may use it, so it knows neither (nor GitHub).
    "bot.telemetry": ("bot.github", "bot.handler", "bot.app", "bot.action", "bot.session", "bot.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(BOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (fixloop uses absolute imports only: a relative one fails here)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import of {node.module!r}; use an absolute one"
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module or ""}
    return found


def sources() -> list[Path]:
    return sorted(p for p in BOT.rglob("*.py") if "sample" not in p.parts)


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(BOT)))
def test_no_module_imports_a_layer_above_its_own(path):
    name = module_name(path)
    rules = [(layer, banned) for layer, banned in FORBIDDEN.items() if under(name, layer)]
    wrong = sorted({imported for imported in imports(path) for _, banned in rules
                    for above in banned if under(imported, above)})
    assert not wrong, f"{name} imports {wrong}"


def test_the_check_would_see_a_violation(tmp_path):
    """The import reader finds plain, from- and function-level imports."""
    sample = tmp_path / "sample.py"
    sample.write_text("import bot.session\nfrom bot.agent import loop\n\n"
                      "def f():\n    from bot.action.runner import run_action\n")
    assert {"bot.session", "bot.agent", "bot.agent.loop", "bot.action.runner"} <= imports(sample)
