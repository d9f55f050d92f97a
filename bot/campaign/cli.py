"""`fixloop campaign validate FILE`: check a campaign file before anyone starts it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bot.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `campaign` on the `fixloop` subcommands."""
    parser = commands.add_parser("campaign", help="one change across many repositories (campaign files)",
                                 description="Campaigns: one change across many repositories, or the packages of a "
                                             "monorepo, each target validated and proposed as its own draft pull "
                                             "request.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    validate = verbs.add_parser("validate", help="check a campaign file and show its targets", description=(
        "Check a campaign file against its schema (bot/schemas/campaign.schema.json) and its rules, and show what "
        "it would do: each listed target with its branch and pull request title. Exit code 0 when it is valid, 2 "
        "with every problem listed when it is not."))
    validate.add_argument("file", type=Path, metavar="FILE", help="the campaign file (YAML)")
    validate.add_argument("--json", action="store_true", help="print the campaign as fixloop reads it, as JSON")
    validate.set_defaults(handler=_validate)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; give the campaign file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} cannot be read: {error}") from None


def _validate(args: argparse.Namespace) -> int:
    from bot.campaign import parse_campaign

    campaign = parse_campaign(_read(args.file), source=str(args.file))
    listed = campaign.targets.listed()
    targets = [{"target": t.name, "repository": t.repository, "path": t.path, "branch": campaign.branch_for(t),
                "title": campaign.render(campaign.pull_request.title, t)} for t in listed or []]
    if args.json:
        summary: dict[str, Any] = {"campaign": campaign.model_dump(mode="json", by_alias=True), "targets": targets}
        print(json.dumps(summary, indent=2))
        return 0
    query = campaign.targets.query
    if query is not None:
        filters = ", ".join(f"{key} {value}" for key, value in query.model_dump(exclude_none=True).items()
                            if key != "org" and value is not False)
        found = f"the repositories of {query.org}" + (f" with {filters}" if filters else "") + \
            " (found through GitHub's API when it starts)"
    else:
        found = f"{len(targets)} target(s)"
    budget = f"${campaign.max_cost_usd:,.2f}" if campaign.max_cost_usd is not None else "no cost limit"
    lines = [f"campaign {campaign.name}: valid", f"  targets: {found}",
             f"  {campaign.concurrency} at once, {budget}" + (f", a pilot of {campaign.pilot} first" if campaign.pilot
                                                             else ""),
             f"  codemod: {len(campaign.codemod)} command(s) before the agent" if campaign.codemod else "",
             f"  tracking issue in {campaign.tracking}"]
    lines += [f"  - {t['target']}: branch {t['branch']}, \"{t['title']}\"" for t in targets]
    print("\n".join(line for line in lines if line))
    return 0


__all__ = ["add_parser"]
