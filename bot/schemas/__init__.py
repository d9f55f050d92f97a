"""JSON Schemas shipped with fixloop, generated from the pydantic models.

Regenerate after changing a model: `python -m bot.schemas` (a test fails while they are stale).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.trajectory import report_schema

HERE = Path(__file__).parent


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fixloop configuration (.github/fixloop.yml)"
    return schema


GENERATORS: dict[str, Callable[[], dict[str, Any]]] = {
    "report.schema.json": report_schema,
    "config.schema.json": config_schema,
}


def render(name: str) -> str:
    return json.dumps(GENERATORS[name](), indent=2, sort_keys=True) + "\n"


def main() -> None:
    for name in GENERATORS:
        (HERE / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {HERE / name}")

