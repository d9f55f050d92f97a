"""`fixloop campaign`: `validate FILE` checks a campaign file before anyone starts it; `upgrade
PACKAGE --to VERSION --org ORG` writes one for a dependency upgrade; `start FILE`,
`status [ID]`, `pause|resume|retry-failed|cancel ID` talk to the App's API (`--app URL` or
FIXLOOP_APP_URL, with the bearer token in FIXLOOP_API_TOKEN)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.errors import ConfigError, FixloopError
from bot.github.commands import CAMPAIGN_STEERING


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
    upgrade = verbs.add_parser("upgrade", help="write a campaign that upgrades a dependency everywhere", description=(
        "Find the repositories of an organisation that depend on PACKAGE (pyproject.toml, requirements*.txt, "
        "package.json, go.mod on their default branch, through GitHub's API with GITHUB_TOKEN) and write a "
        "campaign file whose codemod bumps it to VERSION with each ecosystem's own tool, and whose agent fixes what "
        "breaks. Review the file, then `fixloop campaign start` it."))
    upgrade.add_argument("package", metavar="PACKAGE", help="the dependency: a Python or npm package, or a Go module")
    upgrade.add_argument("--to", required=True, metavar="VERSION", help="the version to move to, e.g. 3.0.0")
    upgrade.add_argument("--org", required=True, metavar="ORG", help="the organisation whose repositories to search")
    upgrade.add_argument("--tracking", metavar="OWNER/NAME",
                         help="the repository of the campaign's tracking issue (default: ORG/.github)")
    upgrade.add_argument("--output", type=Path, metavar="FILE",
                         help="where to write the campaign (default: upgrade-PACKAGE-VERSION.yml here; - for stdout)")
    upgrade.set_defaults(handler=_upgrade)
    start = verbs.add_parser("start", help="start a campaign on the App", description=(
        "Send a campaign file to the fixloop App, which finds its targets and dispatches one workflow run per "
        "target, at most `concurrency` at once. Prints the campaign's id and targets."))
    start.add_argument("file", type=Path, metavar="FILE", help="the campaign file (YAML)")
    start.add_argument("--requester", metavar="LOGIN", help="your GitHub login, recorded with the campaign")
    status = verbs.add_parser("status", help="where a campaign stands (all campaigns without ID)",
                              description="Show a campaign's status, its targets by state, and each target.")
    status.add_argument("id", nargs="?", metavar="ID", help="the campaign's id (cmp_...)")
    for verb, what in zip(CAMPAIGN_STEERING, ("stop starting targets (those running go on)",
                                     "start targets again; after a pilot, go on with the rest",
                                     "queue again the targets that failed or did not validate",
                                     "start no more targets (those running go on)"), strict=True):
        steer = verbs.add_parser(verb, help=what, description=f"{what[0].upper()}{what[1:]}.")
        steer.add_argument("id", metavar="ID", help="the campaign's id (cmp_...)")
        if verb == "retry-failed":
            steer.add_argument("--from-patch", action="store_true",
                               help="a target that did not validate goes on from its run's kept work")
    for verb in ("start", "status", *CAMPAIGN_STEERING):
        sub = verbs.choices[verb]
        sub.add_argument("--app", metavar="URL", help="the App's URL (default: $FIXLOOP_APP_URL)")
        sub.add_argument("--json", action="store_true", help="print the App's answer as JSON")
        sub.set_defaults(handler=_remote)


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


def _upgrade(args: argparse.Namespace) -> int:
    import re

    from github import Auth, GithubException
    from requests import RequestException

    from bot.campaign import LOGIN, parse_campaign
    from bot.campaign import _upgrade as upgrade
    from bot.github.client import RequestPolicy

    upgrade.check(args.package, args.to)
    if not re.fullmatch(LOGIN, args.org):
        raise ConfigError(f"--org {args.org!r} is not a GitHub organisation or user")
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or ""
    if not token:
        raise ConfigError("set GITHUB_TOKEN (or GH_TOKEN) to a token that can read the organisation's repositories")
    api_url = os.environ.get("GITHUB_API_URL", "https://api.github.com")
    # Reads only: GitHub's secondary limits are on writes, so PyGithub's spacing would only slow the scan.
    github = RequestPolicy(throttle=False).github(Auth.Token(token), api_url)

    def repositories(org: str) -> list[dict[str, object]]:
        return [{"full_name": r.full_name, "archived": r.archived} for r in github.get_organization(org).get_repos()]

    def listing(repository: str) -> list[str]:
        try:
            found = github.get_repo(repository).get_contents("")
        except GithubException:
            return []
        return [c.path for c in (found if isinstance(found, list) else [found]) if c.type == "file"]

    def read(repository: str, path: str) -> str | None:
        try:
            found = github.get_repo(repository).get_contents(path)
        except GithubException:
            return None
        return None if isinstance(found, list) else found.decoded_content.decode("utf-8", "replace")

    try:
        found = upgrade.dependents(args.org, args.package, repositories=repositories, read=read, listing=listing)
    except GithubException as error:
        raise ConfigError(f"GitHub refused to list the repositories of {args.org}: HTTP {error.status}") from None
    except RequestException as error:
        raise ConfigError(f"GitHub at {api_url} did not answer: {type(error).__name__}") from None
    if not found:
        print(f"no repository of {args.org} depends on {args.package}; no campaign written")
        return 0
    text = upgrade.campaign_text(args.package, args.to, args.org, found, args.tracking or f"{args.org}/.github")
    parse_campaign(text, source="the upgrade campaign")  # what it writes is a campaign `start` takes
    if str(args.output) == "-":
        print(text, end="")
        return 0
    slug = re.sub(r"[^a-z0-9]+", "-", f"upgrade-{args.package.rsplit('/', 1)[-1]}-{args.to}".lower()).strip("-")
    output = args.output or Path(f"{slug}.yml")
    try:
        with output.open("x", encoding="utf-8") as handle:  # never over a file someone wrote
            handle.write(text)
    except FileExistsError:
        raise ConfigError(f"{output} exists; choose another with --output") from None
    except OSError as error:
        raise ConfigError(f"{output} cannot be written: {error.strerror}") from None
    print(f"{output}: {len(found)} repositories of {args.org} depend on {args.package} "
          f"({', '.join(sorted({e for d in found for e in d.ecosystems}))}); review it, then "
          f"`fixloop campaign start {output}`")
    return 0


def _remote(args: argparse.Namespace) -> int:
    app = (args.app or os.environ.get("FIXLOOP_APP_URL", "")).rstrip("/")
    token = os.environ.get("FIXLOOP_API_TOKEN", "")
    if not app.startswith(("https://", "http://")):
        raise ConfigError("give the App's URL with --app URL or FIXLOOP_APP_URL, e.g. https://fixloop.example.com")
    if not token:
        raise ConfigError("set FIXLOOP_API_TOKEN to the App's API token (the App's own FIXLOOP_API_TOKEN)")
    if args.verb == "start":
        body = {"file": _read(args.file), **({"requester": args.requester} if args.requester else {})}
        answer = _call(app, token, "POST", "/api/campaigns", body)
    elif args.verb == "status":
        answer = _call(app, token, "GET", f"/api/campaigns/{quote(args.id, safe='')}" if args.id else "/api/campaigns")
    else:
        query = "?from_patch=true" if getattr(args, "from_patch", False) else ""
        answer = _call(app, token, "POST", f"/api/campaigns/{quote(args.id, safe='')}/{args.verb}{query}")
    if args.json:
        print(json.dumps(answer, indent=2))
    elif isinstance(answer, list):
        print("\n".join(f"{c['id']}  {c['name']}: {c['status']}, {_counts(c)}" for c in answer) or "no campaigns")
    else:
        print(f"{answer['id']}  {answer['name']}: {answer['status']}, {_counts(answer)}")
        if answer.get("tracking_issue"):
            print(f"  tracking issue: {answer['tracking_issue']}")
        for target in answer.get("targets", []):
            extra = target.get("pull_request") or target.get("reason") or target.get("run") or ""
            print(f"  {target['state']:<14} {target['target']}" + (f"  {extra}" if extra else ""))
    return 0


def _counts(campaign: dict[str, Any]) -> str:
    return ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in campaign["counts"].items() if n) or "no targets"


def _call(app: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import requests

    try:
        response = requests.request(method, f"{app}{path}", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as error:
        raise ConfigError(f"the App at {app} did not answer ({type(error).__name__}): check --app or "
                          "FIXLOOP_APP_URL") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code in (401, 404, 409, 422):
        detail = answer.get("detail") if isinstance(answer, dict) else None
        raise ConfigError(f"the App refused: {detail if isinstance(detail, str) else response.text[:300]}")
    if response.status_code >= 300:
        raise FixloopError(f"the App answered HTTP {response.status_code}: {response.text[:300]}")
    if not isinstance(answer, (dict, list)):
        raise ConfigError(f"{app} did not answer as the fixloop App does (no JSON): check --app or FIXLOOP_APP_URL")
    return answer


__all__ = ["add_parser"]
