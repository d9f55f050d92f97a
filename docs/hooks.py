"""MkDocs hook (mkdocs.yml `hooks:`): the generated references, written into their pages on every build.

A page holding `<!-- generated: cli -->` gets the command line reference in its place (from
`bot.cli.build_parser()`), `<!-- generated: config -->` the configuration reference (from the JSON Schema
of `bot.config.Config`). A config key without a description stops the build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's bot/, installed or not

from bot._docs import UndescribedKeys, cli_reference, config_reference


def _cli() -> str:
    from bot.cli import build_parser

    return cli_reference(build_parser())


def _config() -> str:
    from bot.schemas import config_schema

    try:
        return config_reference(config_schema())
    except UndescribedKeys as error:
        raise PluginError(str(error)) from None


GENERATED = {"<!-- generated: cli -->": _cli, "<!-- generated: config -->": _config}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    for marker, generate in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
