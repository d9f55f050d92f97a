"""The documentation site (mkdocs.yml, docs/): its generated references are complete, and it builds strictly.

The references are checked against the parser and the schema walked here, independently of bot/_docs.py; the
strict build also fails on a link to a missing page or anchor, and on a page left out of the navigation.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot._docs import UndescribedKeys, cli_reference, config_reference, undescribed
from bot.cli import build_parser
from bot.schemas import config_schema

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def every_command(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += every_command(child)
    return found


def every_key(schema: dict[str, Any], node: dict[str, Any] | None = None, path: str = "") -> list[str]:
    node = schema if node is None else node
    keys = []
    for name, prop in node.get("properties", {}).items():
        target = schema["$defs"][prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
        keys += [f"{path}{name}", *every_key(schema, target, f"{path}{name}.")]
    return keys


def test_the_cli_reference_has_every_command_and_every_flag():
    page = cli_reference(build_parser())
    commands = every_command(build_parser())
    names = {command.prog for command in commands}
    assert {"fixloop run", "fixloop logs extract", "fixloop app manifest", "fixloop triage"} <= names
    for command in commands:
        assert f"# `{command.prog}`\n" in page, f"{command.prog} has no section"
        if command.description:  # its opening words (the page escapes Markdown's own characters in the rest)
            assert re.match(r"[A-Za-z ,.']*", " ".join(command.description.split())).group() in page
        section = page.split(f"# `{command.prog}`\n", 1)[1].split("\n#", 1)[0]
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert (action.option_strings[-1] if action.option_strings else action.metavar or action.dest) in section


def test_the_cli_reference_escapes_prose_but_not_code():
    parser = argparse.ArgumentParser(prog="tool", description="Writes <repo>/x; `a|b` stays code; GITHUB_* stays.")
    parser.add_argument("--mode", choices=("a", "b"), default="a", help="one of a|b (default %(default)s)")
    page = cli_reference(parser)
    assert "Writes &lt;repo&gt;/x; `a|b` stays code; GITHUB\\_\\* stays." in page
    assert "| `--mode {a,b}` | one of a\\|b (default a) | `a` |" in page


def test_the_config_reference_has_every_key_with_its_default():
    schema = config_schema()
    page = config_reference(schema)
    keys = every_key(schema)
    assert {"validate", "limits.iterations", "ci.auto", "paths.deny", "sandbox"} <= set(keys)
    for key in keys:
        assert f"`{key}`" in page, f"{key} is not in the configuration reference"
    assert '| `paths.deny` | list of strings | `[".git/**", ".github/workflows/**"]` |' in page  # a factory's default
    assert "| `sandbox` | string | `auto` | `auto`, `required`, `off` |" in page
    assert "| `limits.iterations` | integer | `4` | ≥ 1, ≤ 50 |" in page


def test_a_config_key_without_a_description_stops_the_reference():
    schema = config_schema()
    assert undescribed(schema) == []
    del schema["$defs"]["Trigger"]["properties"]["command"]["description"]
    assert undescribed(schema) == ["trigger.command"]
    with pytest.raises(UndescribedKeys, match=r"trigger\.command"):
        config_reference(schema)


def test_the_site_builds_strictly_with_both_references(tmp_path):
    """`mkdocs build --strict`, as .ci/run does: every link and anchor resolves, every page is in the nav."""
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    assert "WARNING" not in build.stderr, build.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in every_command(build_parser()):
        assert f'id="{"-".join(command.prog.split())}"' in cli, f"{command.prog} is not on the built page"
    config = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    for key in every_key(config_schema()):
        assert f"<code>{key}</code>" in config
    security = (site / "security" / "index.html").read_text(encoding="utf-8")
    assert "What fixloop promises" in security and "--8&lt;--" not in security  # SECURITY.md, included


def test_the_readme_keeps_the_two_commands_and_ci_runs_its_test_command():
    readme = README.read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'\n\n"
            "fixloop demo          # the main job: fixes a real bug in a bundled sample project\n"
            "python -m pytest      # the tests") in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line for line in ci.splitlines() if line and not line.startswith("#")]
    # The command exactly, its status the script's (types and docs are checked while it runs).
    assert "python -m pytest || status=$?" in lines and lines[-1] == 'exit "$status"'
    assert lines.index("python -m pytest || status=$?") == lines.index("status=0") + 1


def test_the_readme_links_to_files_that_exist():
    """GitHub shows README.md: its links into docs/ must resolve there too."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link]
    assert "docs/quickstart.md" in local and "docs/reference/cli.md" in local
    assert [link for link in local if not (ROOT / link).exists()] == []
