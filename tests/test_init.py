"""`fixloop init`: a config and a workflow told from a repository's files, that pass the workflow checks."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.config import parse_config
from bot.errors import ConfigError
from bot.init import WORKFLOW_PATH, plan_init, workflow_template
from bot.init._detect import CHECKOUT, SETUP_PYTHON
from tests.conftest import run_git
from tests.fixtures import load_payload
from tests.test_action_files import (
    WORKFLOW,
    check_jsonschema,
    pin_problems,
    run_scripts,
    shellcheck,
    workflow_problems,
    zizmor_findings,
)

PYPROJECT = '[project]\nname = "calc"\nrequires-python = ">=3.11"\n[project.optional-dependencies]\ntest = ["pytest"]\n'
CI = "name: CI\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps: [{run: make}]\n"

# name -> (files at the root, setup commands, validate commands, actions the toolchain steps use)
STACKS: dict[str, tuple[dict[str, str], list[str], list[str], list[str]]] = {
    "pip": ({"pyproject.toml": PYPROJECT}, ["python -m pip install -e '.[test]'"], ["python -m pytest"],
            ["actions/setup-python"]),
    "requirements+unittest": ({"requirements.txt": "requests\n", "tests/test_x.py": "import unittest\n"},
                              ["python -m pip install -r requirements.txt"], ["python -m unittest discover"],
                              ["actions/setup-python"]),
    "uv": ({"pyproject.toml": PYPROJECT, "uv.lock": "", ".python-version": "3.12\n"},
           ["python -m pip install uv", "uv sync --extra test"], ["uv run python -m pytest"], ["actions/setup-python"]),
    "poetry": ({"pyproject.toml": '[tool.poetry]\nname = "x"\n[tool.pytest.ini_options]\n', "poetry.lock": ""},
               ["python -m pip install poetry", "poetry install"], ["poetry run python -m pytest"],
               ["actions/setup-python"]),
    "npm": ({"package.json": json.dumps({"scripts": {"test": "jest --ci"}}), "package-lock.json": "{}"},
            ["npm ci"], ["npm test"], ["actions/setup-node"]),
    "pnpm+vitest": ({"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'},
                                                 "devDependencies": {"vitest": "^3"}}), "pnpm-lock.yaml": "",
                     ".nvmrc": "22\n"},
                    ["pnpm install --frozen-lockfile"], ["npx vitest run"], ["actions/setup-node"]),
    "go": ({"go.mod": "module example.com/x\n\ngo 1.24\n"}, ["go mod download"], ["go test ./..."],
           ["actions/setup-go"]),
    "maven": ({"pom.xml": "<project/>", "mvnw": "#!/bin/sh\n"}, [], ["./mvnw -B test"], ["actions/setup-java"]),
    "gradle": ({"build.gradle.kts": "", ".java-version": "17\n"}, [], ["gradle test"], ["actions/setup-java"]),
    "rust": ({"Cargo.toml": "[workspace]\nmembers = []\n", "rust-toolchain.toml": "[toolchain]\n"},
             ["cargo fetch"], ["cargo test --workspace"], []),
    "go+node": ({"go.mod": "module x\n", "package.json": json.dumps({"scripts": {"test": "mocha"}})},
                ["npm install", "go mod download"], ["npm test", "go test ./..."],
                ["actions/setup-node", "actions/setup-go"]),
    "django": ({"manage.py": "", "requirements.txt": "django\n", "pyproject.toml": "[tool.black]\n"},
               ["python -m pip install -r requirements.txt"], ["python manage.py test"], ["actions/setup-python"]),
    "tox-only pytest": ({"setup.cfg": "[metadata]\nname = x\n", "tox.ini": "[testenv]\ncommands = pytest\n"},
                        ["python -m pip install -e .", "python -m pip install pytest"], ["python -m pytest"],
                        ["actions/setup-python"]),
    "npm workspaces": ({"package.json": json.dumps({"workspaces": ["packages/*"]}), "package-lock.json": "{}"},
                       ["npm ci"], ["npm test --workspaces"], ["actions/setup-node"]),
    "docs requirements beside jest": ({"requirements.txt": "mkdocs\n", "package.json": json.dumps(
        {"devDependencies": {"jest": "^30"}})}, ["npm install"], ["npx jest"], ["actions/setup-node"]),
}


def tree(root: Path, files: dict[str, str]) -> Path:
    """A git repository with `files`, not committed (init looks at what git would see)."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    run_git(root, "init", "--quiet")
    return root


def toolchain_steps(workflow: dict) -> list[dict]:
    steps = workflow["jobs"]["fixloop"]["steps"]
    names = [step.get("name") for step in steps]
    return steps[names.index("Check out the repository") + 1:names.index("Run fixloop")]


@pytest.mark.parametrize("name", STACKS)
def test_each_stack_gets_its_setup_test_command_and_toolchain(tmp_path, name):
    files, setup, validate, actions = STACKS[name]
    plan = plan_init(tree(tmp_path, {**files, ".github/workflows/ci.yml": CI}))
    config = parse_config(plan.files[".github/fixloop.yml"])
    assert (config.setup, config.validation) == (setup, validate)
    workflow = yaml.safe_load(plan.files[WORKFLOW_PATH])
    steps = toolchain_steps(workflow)
    assert [step["uses"].split("@")[0] for step in steps if "uses" in step] == actions
    assert workflow[True]["workflow_run"]["workflows"] == ["CI"]
    assert workflow_problems(workflow) == [] and pin_problems(steps) == []
    assert all(stack.reasons for stack in plan.detection.stacks), "every choice is explained"


def test_the_versions_come_from_the_repositorys_own_files(tmp_path):
    plan = plan_init(tree(tmp_path, {"pyproject.toml": PYPROJECT, ".node-version": "20\n",
                                     "package.json": json.dumps({"scripts": {"test": "mocha"}})}))
    steps = {step["name"]: step for step in toolchain_steps(yaml.safe_load(plan.files[WORKFLOW_PATH]))}
    assert steps["Set up Python"]["with"] == {"python-version-file": "pyproject.toml"}
    assert steps["Set up Node.js"]["with"] == {"node-version-file": ".node-version"}


def test_the_written_workflows_pass_zizmor_shellcheck_and_the_schema(tmp_path):
    """Every stack at once (the most steps), and a repository without CI (the trigger commented out)."""
    every = {path: text for files, *_ in STACKS.values() for path, text in files.items()}
    written = []
    for name, files in (("all", every), ("no-ci", {"go.mod": "module x\n"})):
        plan = plan_init(tree(tmp_path / name, files if name == "no-ci" else {**files, ".github/workflows/ci.yml": CI}))
        path = tmp_path / f"{name}.yml"
        path.write_text(plan.files[WORKFLOW_PATH])
        written.append(path)
        result = check_jsonschema("vendor.github-workflows", path)
        assert result.returncode == 0, result.stdout + result.stderr
        for where, script in run_scripts(yaml.safe_load(path.read_text())):
            assert shellcheck(script).returncode == 0, where
    assert zizmor_findings(*written) == []
    assert len(toolchain_steps(yaml.safe_load(written[0].read_text()))) >= 6


def test_zizmor_would_see_an_unpinned_toolchain_step(tmp_path):
    plan = plan_init(tree(tmp_path, {"go.mod": "module x\n", ".github/workflows/ci.yml": CI}))
    path = tmp_path / "fixloop.yml"
    path.write_text(re.sub(r"actions/setup-go@[0-9a-f]{40}", "actions/setup-go@v7", plan.files[WORKFLOW_PATH]))
    assert [finding["ident"] for finding in zizmor_findings(path)] == ["unpinned-uses"]


def test_without_ci_the_workflow_run_trigger_waits_for_a_name(tmp_path):
    plan = plan_init(tree(tmp_path, {"go.mod": "module x\n"}))
    workflow = yaml.safe_load(plan.files[WORKFLOW_PATH])
    assert "workflow_run" not in workflow[True] and {"issues", "workflow_dispatch"} <= set(workflow[True])
    assert "  # No CI workflow was found; name yours and uncomment these lines:" in plan.files[WORKFLOW_PATH]
    assert "  #   workflows: [CI]" in plan.files[WORKFLOW_PATH]
    assert any("No CI workflow" in line for line in plan.explanation())


def test_ci_workflows_are_named_as_workflow_run_matches_them(tmp_path):
    tree(tmp_path, {"go.mod": "module x\n",
                    ".github/workflows/ci.yml": CI,
                    ".github/workflows/lint.yaml": "on:\n  pull_request:\njobs: {}\n",  # no name: its path
                    ".github/workflows/release.yml": "name: Release\non: {release: {types: [published]}}\njobs: {}\n",
                    ".github/workflows/agent.yml": "name: Agent\non: push\njobs:\n  a:\n    steps:\n"
                                                   "      - uses: fixloop-dev/fixloop@v0\n",
                    ".github/workflows/broken.yml": "name: [\n"})
    plan = plan_init(tmp_path)
    assert plan.detection.ci_workflows == ("CI", ".github/workflows/lint.yaml")
    assert any("agent.yml already runs fixloop" in note for note in plan.detection.notes)
    assert any("broken.yml is not valid YAML" in note for note in plan.detection.notes)


def test_the_template_is_the_workflow_users_copy_and_shares_its_pins():
    assert workflow_template() == WORKFLOW.read_text()
    for action in (CHECKOUT, SETUP_PYTHON):
        assert action.uses in WORKFLOW.read_text()


def test_init_writes_both_files_and_explains_its_choices(make_repo, capsys):
    repo = make_repo({"pyproject.toml": PYPROJECT, ".github/workflows/ci.yml": CI})
    assert main(["init", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "Python (pyproject.toml):\n  - tests: pytest (named in pyproject.toml)\n" in out
    assert "  - pip: the project installed in editable mode with its 'test' extra\n" in out
    assert "fixloop hears about: CI" in out
    assert "wrote .github/fixloop.yml\nwrote .github/workflows/fixloop.yml\n" in out
    for path in (".github/fixloop.yml", WORKFLOW_PATH):
        assert stat.S_IMODE(os.stat(repo / path).st_mode) == 0o644
    assert parse_config((repo / ".github/fixloop.yml").read_text()).validation == ["python -m pytest"]
    assert not [p for p in (repo / ".github").rglob(".*") if p.is_file()], "no temporary file left"


def test_init_never_overwrites_without_force(make_repo, capsys):
    repo = make_repo({"go.mod": "module x\n", ".github/fixloop.yml": "validate: [make check]\n"})
    assert main(["init", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["fixloop: .github/fixloop.yml already exists; nothing was written (see what init "
                                "would write with --dry-run, or replace with --force)"]
    assert (repo / ".github/fixloop.yml").read_text() == "validate: [make check]\n"
    assert not (repo / WORKFLOW_PATH).exists(), "all or nothing"
    assert main(["init", "--repo", str(repo), "--force"]) == 0
    assert "go test ./..." in (repo / ".github/fixloop.yml").read_text()


def test_a_dry_run_prints_both_files_and_writes_nothing(make_repo, capsys):
    repo = make_repo({"Cargo.toml": "[package]\nname = 'x'\n"})
    assert main(["init", "--repo", str(repo), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--- .github/fixloop.yml (would be written) ---\n" in out and '  - "cargo test"\n' in out
    assert f"--- {WORKFLOW_PATH} (would be written) ---\n# fixloop: written by `fixloop init`" in out
    assert run_git(repo, "status", "--porcelain") == "" and not (repo / ".github").exists()


def test_an_unknown_repository_needs_a_test_command(make_repo, capsys):
    repo = make_repo({"Makefile": "test:\n\ttrue\n"})
    assert main(["init", "--repo", str(repo)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "cannot tell how" in line and "pass --validate CMD" in line
    assert main(["init", "--repo", str(repo), "--validate", "make test", "--setup", "make deps"]) == 0
    config = parse_config((repo / ".github/fixloop.yml").read_text())
    assert (config.setup, config.validation) == (["make deps"], ["make test"])


def test_not_a_repository_is_one_line(tmp_path, capsys):
    assert main(["init", "--repo", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_newcomers_first_hour_init_then_rehearse(make_repo, tmp_path, capsys):
    """The issue's Done-when: init in a repository, commit, then rehearse an issue-labeled event."""
    repo = make_repo({"pyproject.toml": PYPROJECT, "calc.py": "x = 1\n", ".github/workflows/ci.yml": CI})
    assert main(["init", "--repo", str(repo)]) == 0
    run_git(repo, "add", "--all")
    run_git(repo, "commit", "--quiet", "-m", "fixloop init")
    event = tmp_path / "event.json"
    payload = load_payload("issues.labeled", label__name="fixloop")
    payload["repository"]["default_branch"] = "main"
    event.write_text(json.dumps(payload))
    capsys.readouterr()
    assert main(["action", "--event", str(event), "--dry-run", "--repo", str(repo)]) == 0
    assert "Decision: run a issue session for issue:1" in capsys.readouterr().out


def test_what_git_ignores_tells_nothing(tmp_path):
    """A local .python-version or uv.lock that .gitignore keeps out is not on the runner."""
    plan = plan_init(tree(tmp_path, {"pyproject.toml": PYPROJECT, ".python-version": "3.12\n", "uv.lock": "",
                                     ".gitignore": ".python-version\nuv.lock\n"}))
    steps = toolchain_steps(yaml.safe_load(plan.files[WORKFLOW_PATH]))
    assert steps[0]["with"] == {"python-version-file": "pyproject.toml"}
    assert parse_config(plan.files[".github/fixloop.yml"]).setup == ["python -m pip install -e '.[test]'"]


def test_a_command_that_cannot_fail_is_never_chosen(tmp_path):
    """No `node --test` (it passes on finding no test) and no pytest for Python tooling without tests."""
    with pytest.raises(ConfigError, match="cannot tell how"):
        plan_init(tree(tmp_path / "a", {"package.json": "{}", "requirements.txt": "mkdocs\n"}))
    plan = plan_init(tree(tmp_path / "b", {"package.json": "{}", "go.mod": "module x\n"}))
    assert parse_config(plan.files[".github/fixloop.yml"]).validation == ["go test ./..."]
    assert any("Node.js is left out" in note for note in plan.detection.notes)


@pytest.mark.parametrize("files", [
    {"package.json": json.dumps({"dependencies": ["react"], "devDependencies": None, "scripts": 5}), "go.mod": "x"},
    {"pyproject.toml": 'project = "x"\n', "conftest.py": ""},
    {"go.mod": "x", ".github/workflows/a.yml": "on: [push, {pull_request: {}}]\njobs: {a: {steps: 5}}\n"},
    {"go.mod": "x", ".github/workflows/a.yml": "on: 7\njobs: [1]\n"},
])
def test_odd_project_files_are_read_without_a_traceback(tmp_path, files):
    assert plan_init(tree(tmp_path, files)).files


def test_odd_workflow_names_stay_one_valid_yaml_string(tmp_path):
    names = ["bad\x7fchar", "line\u2028break", 'quote" ] ${{ github.event.issue.title }}', "Tests \u2713"]
    files = {"go.mod": "x", **{f".github/workflows/w{i}.yml": f"name: {json.dumps(name)}\non: push\njobs: {{}}\n"
                               for i, name in enumerate(names)}}
    workflow = yaml.safe_load(plan_init(tree(tmp_path, files)).files[WORKFLOW_PATH])
    assert workflow[True]["workflow_run"]["workflows"] == sorted(names, key=lambda n: names.index(n))


def test_releases_and_tools_versions_without_node_are_not_taken_for_ci_or_versions(tmp_path):
    files = {"package.json": json.dumps({"scripts": {"test": "mocha"}}), ".tool-versions": "python 3.12\n",
             ".github/workflows/release.yml": "name: Release\non: {push: {tags: ['v*']}}\njobs: {}\n"}
    plan = plan_init(tree(tmp_path, files))
    assert plan.detection.ci_workflows == ()
    assert toolchain_steps(yaml.safe_load(plan.files[WORKFLOW_PATH]))[0]["with"] == {"node-version": "lts/*"}


def test_what_is_in_the_way_stops_everything_before_anything_is_written(make_repo, capsys):
    repo = make_repo({"go.mod": "module x\n", ".github": "a file\n"})
    assert main(["init", "--repo", str(repo)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "fixloop: .github is a file, where fixloop init needs a folder; nothing was written"]
    other = make_repo({"go.mod": "module x\n", f"{WORKFLOW_PATH}/keep": ""}, name="other")
    assert main(["init", "--repo", str(other), "--force"]) == 2
    assert "is a folder; nothing was written" in capsys.readouterr().err
    assert not (other / ".github/fixloop.yml").exists()
    assert sorted(p.name for p in (other / ".github").iterdir()) == ["workflows"], "no temporary file"


def test_a_dry_run_says_which_files_are_in_the_way_and_init_from_a_subfolder_says_where(make_repo, capsys):
    repo = make_repo({"go.mod": "module x\n", ".github/fixloop.yml": "validate: [make]\n", "sub/x.go": ""})
    assert main(["init", "--repo", str(repo / "sub"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fixloop init in {repo} (the root of the repository {repo / 'sub'} is in)\n")
    assert "--- .github/fixloop.yml (exists: a real run needs --force) ---" in out
    assert f"--- {WORKFLOW_PATH} (would be written) ---" in out
