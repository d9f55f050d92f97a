"""`fixloop campaign upgrade PACKAGE --to VERSION --org ORG`: the organisation's repositories that depend
on the package are found through the (fake, OpenAPI-checked) GitHub API, and the campaign it writes
bumps the version with each ecosystem's tool; the Python bump is run here for real."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from bot.campaign import parse_campaign
from bot.cli import main

REPOSITORIES = {
    "acme/billing": {"requirements.txt": "requests==2.31.0\nrequests-toolbelt>=1.0\nflask\n"},
    "acme/search": {"pyproject.toml": '[project]\nname = "search"\ndependencies = ["Requests[socks]>=2.0"]\n'},
    "acme/tools": {"requirements-dev.txt": "pytest\nrequests  # for the fixtures\n"},
    "acme/web": {"package.json": '{"dependencies": {"lodash": "^4.17.21"}, "devDependencies": {"jest": "^29"}}'},
    "acme/gateway": {"go.mod": "module acme.test/gateway\n\ngo 1.21\n\nrequire golang.org/x/text v0.13.0\n"},
    "acme/unrelated": {"requirements.txt": "requests-oauthlib\n"},
}


@pytest.fixture
def org(fake_github, monkeypatch, tmp_path):
    for name, files in REPOSITORIES.items():
        fake_github.add_repo(name, files=files)
    fake_github.add_repo("acme/legacy", files={"requirements.txt": "requests==1.0\n"}, archived=True)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    monkeypatch.chdir(tmp_path)
    return fake_github


def test_a_python_upgrade_finds_its_dependents_and_bumps_them_with_a_codemod_that_works(org, tmp_path, capsys):
    assert main(["campaign", "upgrade", "requests", "--to", "3.0.0", "--org", "acme"]) == 0
    assert "upgrade-requests-3-0-0.yml: 3 repositories of acme depend on requests (python)" in capsys.readouterr().out
    text = (tmp_path / "upgrade-requests-3-0-0.yml").read_text()
    campaign = parse_campaign(text, source="upgrade")
    assert campaign.targets.repositories == ["acme/billing", "acme/search", "acme/tools"], "not archived, not -oauthlib"
    assert campaign.tracking == "acme/.github" and campaign.branch == "fixloop/upgrade-requests-3-0-0"
    (codemod,) = campaign.codemod
    checkout = tmp_path / "billing"
    checkout.mkdir()
    for name, content in {**REPOSITORIES["acme/billing"], **REPOSITORIES["acme/search"]}.items():
        (checkout / name).write_text(content)
    subprocess.run(["bash", "-c", codemod], cwd=checkout, check=True, timeout=60)
    assert (checkout / "requirements.txt").read_text() == "requests==3.0.0\nrequests-toolbelt>=1.0\nflask\n"
    assert 'dependencies = ["Requests[socks]>=3.0.0"]' in (checkout / "pyproject.toml").read_text()
    assert main(["campaign", "upgrade", "requests", "--to", "3.0.0", "--org", "acme"]) == 2, "never over a file"
    assert "exists; choose another with --output" in capsys.readouterr().err


def test_npm_and_go_upgrades_use_their_own_tools(org, capsys):
    assert main(["campaign", "upgrade", "lodash", "--to", "5.0.0", "--org", "acme", "--output", "-"]) == 0
    node = yaml.safe_load(capsys.readouterr().out)
    assert node["targets"]["repositories"] == ["acme/web"]
    assert "npm install --ignore-scripts --no-audit --no-fund lodash@5.0.0" in node["codemod"][0]
    assert "pnpm add lodash@5.0.0" in node["codemod"][0] and "yarn add lodash@5.0.0" in node["codemod"][0]
    assert main(["campaign", "upgrade", "golang.org/x/text", "--to", "0.14.0", "--org", "acme", "--output", "-",
                 "--tracking", "acme/platform"]) == 0
    go = yaml.safe_load(capsys.readouterr().out)
    assert go["targets"]["repositories"] == ["acme/gateway"] and go["tracking"] == "acme/platform"
    assert go["codemod"] == ["if [ -f go.mod ]; then go get golang.org/x/text@v0.14.0 && go mod tidy; fi"]


@pytest.mark.parametrize(("argv", "message"), [
    (["requests;rm -rf ~", "--to", "3"], "is not a package name of Python, npm or Go"),
    (["requests", "--to", "3.0; touch x"], "is not a version"),
    (["requests", "--to", "3", "--org", "a/b"], "is not a GitHub organisation"),
])
def test_names_that_could_reach_a_shell_are_refused_in_one_line(org, capsys, argv, message):
    full = ["campaign", "upgrade", *argv, *([] if "--org" in argv else ["--org", "acme"])]
    assert main(full) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_no_dependents_writes_nothing_and_no_token_is_a_clear_error(org, tmp_path, monkeypatch, capsys):
    assert main(["campaign", "upgrade", "django", "--to", "5.0", "--org", "acme"]) == 0
    assert "no repository of acme depends on django" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.yml"))
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(["campaign", "upgrade", "django", "--to", "5.0", "--org", "acme"]) == 2
    assert "set GITHUB_TOKEN" in capsys.readouterr().err
