"""JSON Schemas shipped with fixloop, generated from the pydantic models.

Regenerate after changing a model: `python -m bot.schemas` (a test fails while they are stale).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.campaign import Campaign
from bot.config import Config
from bot.trajectory import report_schema

HERE = Path(__file__).parent


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fixloop configuration (.github/fixloop.yml)"
    _state_defaults(schema, schema, Config().model_dump(mode="json", by_alias=True))
    return schema


def _state_defaults(schema: dict[str, Any], node: dict[str, Any], defaults: dict[str, Any]) -> None:
    """pydantic leaves out the defaults a factory makes (the lists); editors and the reference show them too."""
    for name, prop in node.get("properties", {}).items():
        if "$ref" in prop:
            _state_defaults(schema, schema["$defs"][prop["$ref"].split("/")[-1]], defaults[name])
        elif name in defaults:
            prop.setdefault("default", defaults[name])


def campaign_schema() -> dict[str, Any]:
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fixloop campaign file"
    return schema


GENERATORS: dict[str, Callable[[], dict[str, Any]]] = {
    "campaign.schema.json": campaign_schema,
    "report.schema.json": report_schema,
    "config.schema.json": config_schema,
}


def render(name: str) -> str:
    return json.dumps(GENERATORS[name](), indent=2, sort_keys=True) + "\n"


def main() -> None:
    for name in GENERATORS:
        (HERE / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {HERE / name}")

