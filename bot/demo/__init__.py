"""`fixloop demo`: the whole loop on a bundled sample project with genuinely failing tests.

The sample's `median` is wrong for even-length input and for empty input. With an API key, the
real model fixes it; without one, a scripted model replays a prepared two-iteration fix (its
first proposal misses the empty case, which validation catches).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from itertools import count
from pathlib import Path

from bot.agent.model import Block, ScriptedModel, Text, tool_use
from bot.agent.tools import BASH, EDITOR
from bot.search import TOOL_NAME as SEARCH
from bot.workspace import git

SAMPLE = Path(__file__).with_name("sample")
TASK_TITLE = "median() gives wrong answers"
TASK_BODY = "median([4, 1, 3, 2]) returns 3 instead of 2.5, and median([]) crashes with IndexError. Fix median()."
EVEN_FIX_OLD = "    middle = len(ordered) // 2\n    return ordered[middle]\n"
EVEN_FIX_NEW = (
    "    middle = len(ordered) // 2\n"
    "    if len(ordered) % 2 == 0:\n"
    "        return (ordered[middle - 1] + ordered[middle]) / 2\n"
    "    return ordered[middle]\n"
)
EMPTY_FIX_OLD = "    ordered = sorted(values)\n    middle"
EMPTY_FIX_NEW = (
    "    if not values:\n"
    '        raise ValueError("median() of an empty sequence")\n'
    "    ordered = sorted(values)\n"
    "    middle"
)


def validation_command() -> str:
    """pytest from the interpreter running fixloop, which has it installed."""
    return f"{shlex.quote(sys.executable)} -m pytest -q"


def prepare_sample(parent: Path) -> Path:
    """A fresh git repository holding the sample project, committed."""
    repo = parent / "sample"
    shutil.copytree(SAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    identity = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
                "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com"}
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", "Sample project with a buggy median()", cwd=repo, env=identity)
    return repo


def make_temp_parent() -> Path:
    return Path(tempfile.mkdtemp(prefix="fixloop-demo-"))


_ids = count(1)
FIND_MEDIAN = """\
median = definitions("median")[0]
failing = "\\n".join(f"{t['test']}: {t['message']}" for t in evidence())
emit(read(median["path"], median["line"], median["end_line"])["text"] + "\\n\\nFailing:\\n" + failing)
"""


def _turn(text: str, *calls: tuple[str, dict[str, object]]) -> list[Block]:
    return [Text(text), *(tool_use(name, args, id=f"toolu_demo_{next(_ids):03d}") for name, args in calls)]


def scripted_model() -> ScriptedModel:
    """Replays a realistic fix: the first proposal misses the empty case; feedback catches it."""
    turns: list[list[Block]] = [
        _turn("Let me read median() and the tests that fail, in one search.", (SEARCH, {"program": FIND_MEDIAN})),
        _turn("median() takes the upper middle element for even lengths; average the two middles instead.",
              (EDITOR, {"command": "str_replace", "path": "stats.py",
                        "old_str": EVEN_FIX_OLD, "new_str": EVEN_FIX_NEW})),
        _turn("median() now averages the two middle values for even-length input."),
        _turn("The empty case still fails: raise ValueError like mean() does.",
              (EDITOR, {"command": "str_replace", "path": "stats.py",
                        "old_str": EMPTY_FIX_OLD, "new_str": EMPTY_FIX_NEW})),
        _turn("Let me run the tests myself.", (BASH, {"command": validation_command()})),
        _turn("median() now averages the two middle values for even-length input and raises ValueError "
              "for an empty sequence, matching mean()."),
    ]
    return ScriptedModel(turns, name="scripted-demo")


def has_api_key() -> bool:
    return bool(os.environ.get("ANTHROPIC_API_KEY"))
