"""Campaign files: what `fixloop campaign validate` accepts, what it refuses (every problem, one line and
exit 2), and what it shows; the shipped JSON Schema agrees with the rules."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.campaign import Campaign, Target, parse_campaign
from bot.cli import main
from bot.errors import ConfigError

SCHEMA = json.loads((Path(__file__).parents[1] / "bot" / "schemas" / "campaign.schema.json").read_text())

UPGRADE = """\
name: requests-3
instructions: |
  Move from requests 2.x to 3.x: the session API changed; keep the behaviour.
codemod:
  - pyupgrade --py311-plus $(git ls-files '*.py')
validate: [python -m pytest -q]
targets:
  repositories: [octo/billing, octo/search, octo/ledger]
pull_request:
  title: "Upgrade requests to 3 in {repository}"
  labels: [dependencies]
  reviewers: [platform-lead]
concurrency: 2
max_cost_usd: 40
pilot: 1
tracking: octo/platform
"""

MONOREPO = """\
name: node-20
instructions: Move every package to Node 20.
targets:
  repository: octo/monorepo
  paths: [packages/api, packages/web, tools/cli]
branch: "fixloop/{campaign}/{path}"
tracking: octo/monorepo
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yml"
    path.write_text(text)
    return path


def test_a_campaign_over_repositories_shows_each_target_with_its_branch_and_title(tmp_path, capsys):
    assert main(["campaign", "validate", str(write(tmp_path, UPGRADE))]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown == [
        "campaign requests-3: valid",
        "  targets: 3 target(s)",
        "  2 at once, $40.00, a pilot of 1 first",
        "  codemod: 1 command(s) before the agent",
        "  tracking issue in octo/platform",
        '  - octo/billing: branch fixloop/campaign/requests-3, "Upgrade requests to 3 in octo/billing"',
        '  - octo/search: branch fixloop/campaign/requests-3, "Upgrade requests to 3 in octo/search"',
        '  - octo/ledger: branch fixloop/campaign/requests-3, "Upgrade requests to 3 in octo/ledger"',
    ]


def test_a_monorepo_campaign_gives_each_package_its_own_branch(tmp_path, capsys):
    assert main(["campaign", "validate", "--json", str(write(tmp_path, MONOREPO))]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(t["target"], t["branch"], t["title"]) for t in shown["targets"]] == [
        ("octo/monorepo:packages/api", "fixloop/node-20/packages/api", "node-20: octo/monorepo:packages/api"),
        ("octo/monorepo:packages/web", "fixloop/node-20/packages/web", "node-20: octo/monorepo:packages/web"),
        ("octo/monorepo:tools/cli", "fixloop/node-20/tools/cli", "node-20: octo/monorepo:tools/cli"),
    ]
    assert shown["campaign"]["concurrency"] == 5 and shown["campaign"]["validate"] is None
    jsonschema.validate(yaml.safe_load(MONOREPO), SCHEMA)


def test_a_query_is_left_to_the_api_and_filters_repositories(tmp_path, capsys):
    text = ("name: go-122\ninstructions: Go 1.22.\ntracking: octo/platform\n"
            "targets: {query: {org: octo, language: Go, name: 'svc-*'}}\n")
    assert main(["campaign", "validate", str(write(tmp_path, text))]) == 0
    assert ("  targets: the repositories of octo with language Go, name svc-* (found through GitHub's API when it "
            "starts)") in capsys.readouterr().out
    query = parse_campaign(text, source="c.yml").targets.query
    assert query is not None
    assert query.matches("svc-payments", [], "go", archived=False)
    assert not query.matches("svc-payments", [], "Go", archived=True), "archived repositories take no pull request"
    assert not query.matches("web", [], "Go", archived=False) and not query.matches("svc-x", [], "Rust", False)


@pytest.mark.parametrize(("change", "problem"), [
    ({"name": "Requests 3"}, "name: 'Requests 3' is not a campaign name: lower-case letters, digits and dashes"),
    ({"instructions": ""}, "instructions: String should have at least 1 character"),
    ({"targets": {}}, "targets: give exactly one of `repositories`, `query` or `paths`"),
    ({"targets": {"repositories": ["octo/a"], "paths": ["x"], "repository": "octo/m"}},
     "targets: give exactly one of `repositories`, `query` or `paths` (got repositories, paths)"),
    ({"targets": {"repositories": ["octo/a", "octo/A"]}}, "targets.repositories: 'octo/A' is listed twice"),
    ({"targets": {"repositories": ["https://github.com/octo/a"]}},
     "targets.repositories: 'https://github.com/octo/a' is not a repository; write owner/name"),
    ({"targets": {"paths": ["api"]}}, "targets: `paths` and `repository` go together"),
    ({"targets": {"repository": "octo/m", "paths": ["../etc"]}},
     "targets.paths: '../etc' is not a folder of the repository"),
    ({"targets": {"repository": "octo/m", "paths": ["a", "b"]}},
     "(top level): with `paths`, `branch` must contain {target} or {path}"),
    ({"branch": "fixloop/{campaign.__class__}"}, "branch: unknown placeholder {campaign.__class__}"),
    ({"pull_request": {"title": "{target!r}"}}, "pull_request.title: unknown placeholder {target!r}"),
    ({"pull_request": {"body": "{owner}"}}, "pull_request.body: unknown placeholder {owner}; the placeholders are"),
    ({"pull_request": {"reviewers": ["@lead"]}}, "pull_request.reviewers: '@lead' is not a GitHub login"),
    ({"concurrency": 0}, "concurrency: Input should be greater than or equal to 1"),
    ({"max_cost_usd": -1}, "max_cost_usd: Input should be greater than 0"),
    ({"pilot": 4}, "(top level): `pilot` is 4, but there are 3 targets"),
    ({"tracking": "platform"}, "tracking: 'platform' is not a repository; write owner/name"),
    ({"targets": {"query": {"org": "octo corp"}}}, "targets.query.org: 'octo corp' is not a GitHub organisation"),
    ({"concurency": 3}, "concurency: unknown key; did you mean `concurrency`?"),
    ({"concurrency": "7"}, "concurrency: Input should be a valid integer"),
    ({"tracking": "octo/platform\n"}, "tracking: 'octo/platform\\n' is not a repository"),
    ({"targets": {"repository": "octo/m", "paths": ["pkg/.git"]}}, "targets.paths: 'pkg/.git' is not a folder"),
    ({"targets": {"repository": "octo/m", "paths": ["a", "a/b"]}, "branch": "f/{path}"},
     "(top level): branches f/a and f/a/b cannot both exist in git"),
    ({"targets": {"repository": "octo/m", "paths": ["c d", "c-d"]}, "branch": "f/{path}"},
     "(top level): two packages of the repository get the same branch"),
    ({"branch": "{path}"}, "(top level): `branch` gives octo/billing no branch name"),
    ({"pull_request": {"title": "{target}" + "x" * 248}},
     "(top level): the pull request title of octo/billing is 260 characters"),
    ({"pull_request": {"title": "a\x00b"}}, "pull_request.title: control characters are not allowed"),
    ({"pull_request": {"labels": ["deps", "deps"]}}, "pull_request.labels: 'deps' is listed twice"),
])
def test_every_mistake_is_named_with_its_key_and_exit_code_2(tmp_path, capsys, change, problem):
    data = yaml.safe_load(UPGRADE) | change
    path = write(tmp_path, yaml.safe_dump(data))
    assert main(["campaign", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fixloop: {path} is not a valid campaign:\n") and f"  - {problem}" in err, err
    with pytest.raises(jsonschema.ValidationError) if _schema_can_tell(problem) else contextlib.nullcontext():
        jsonschema.validate(data, SCHEMA)


def _schema_can_tell(problem: str) -> bool:
    """The JSON Schema holds the per-field rules; the rules across fields are the validator's alone (and a
    pattern's `$` lets a final newline through in Python's `re`, which jsonschema uses)."""
    rules = (" is not a campaign name", "is not a repository", "not a GitHub", "at least 1", "greater than",
             "unknown key", "valid integer")
    return "\\n'" not in problem and any(rule in problem for rule in rules)


@pytest.mark.parametrize(("text", "message"), [
    ("name: [unclosed", "is not valid YAML"),
    ("- a list\n", "must be a mapping of keys to values, not list"),
])
def test_a_file_that_is_not_a_campaign_is_one_message_and_exit_2(tmp_path, capsys, text, message):
    assert main(["campaign", "validate", str(write(tmp_path, text))]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_or_a_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["campaign", "validate", str(tmp_path / "nope.yml")]) == 2
    assert capsys.readouterr().err == f"fixloop: {tmp_path / 'nope.yml'}: no such file\n"
    assert main(["campaign", "validate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"fixloop: {tmp_path} is a directory; give the campaign file\n"


def test_branch_names_are_made_safe_for_git_and_templates_render_every_placeholder():
    campaign = parse_campaign(MONOREPO, source="c.yml")
    weird = Target("octo/monorepo", "packages/a b..c")
    assert campaign.branch_for(weird) == "fixloop/node-20/packages/a-b-c"
    assert campaign.branch_for(Target("octo/monorepo", "pkg/.hidden/x.lock")) == "fixloop/node-20/pkg/hidden/x"
    assert campaign.render("{campaign}|{target}|{repository}|{path}", weird) == (
        "node-20|octo/monorepo:packages/a b..c|octo/monorepo|packages/a b..c")
    with pytest.raises(ConfigError):
        parse_campaign("name: x\n", source="c.yml")


def test_the_shipped_schema_accepts_the_examples_and_names_every_key():
    for text in (UPGRADE, MONOREPO):
        jsonschema.validate(yaml.safe_load(text), SCHEMA)
    assert set(SCHEMA["properties"]) == {field.alias or name for name, field in Campaign.model_fields.items()}
    assert SCHEMA["additionalProperties"] is False and set(SCHEMA["required"]) == {"name", "instructions",
                                                                                   "targets", "tracking"}
