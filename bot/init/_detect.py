"""What a repository is built and tested with, told from the files at its root.

Pure reading: nothing here runs the repository's code. Each stack says what it found and why, so
that `fixloop init` can explain every line it writes.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Action:
    """A GitHub action pinned to a full commit SHA, its release named in a comment (as zizmor asks)."""

    repository: str
    commit: str
    release: str

    @property
    def uses(self) -> str:
        return f"{self.repository}@{self.commit}  # {self.release}"


# The newest releases read from the actions' own repositories (tags dereferenced to commits).
# workflows/fixloop.yml pins the same ones (tests/test_init.py checks).
CHECKOUT = Action("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1")
SETUP_PYTHON = Action("actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0")
SETUP_NODE = Action("actions/setup-node", "820762786026740c76f36085b0efc47a31fe5020", "v7.0.0")
SETUP_GO = Action("actions/setup-go", "b7ad1dad31e06c5925ef5d2fc7ad053ef454303e", "v7.0.0")
SETUP_JAVA = Action("actions/setup-java", "b6effb05e454b25005698d916606bdc6ffcbf961", "v5.7.0")


@dataclass(frozen=True)
class Step:
    """One step of the workflow's toolchain section: an action with inputs, or a command."""

    name: str
    action: Action | None = None
    inputs: tuple[tuple[str, str], ...] = ()
    run: str | None = None


@dataclass(frozen=True)
class Stack:
    """One language's toolchain, dependency install and test command, with the reasons."""

    language: str
    found: str  # the file that told
    steps: tuple[Step, ...]
    setup: tuple[str, ...]
    validate: tuple[str, ...]
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detection:
    stacks: tuple[Stack, ...]
    ci_workflows: tuple[str, ...]  # names of the workflows that run on pushes and pull requests
    notes: tuple[str, ...] = field(default=())


class Files:
    """The repository as git sees it: tracked files and untracked ones that are not ignored. A file
    that .gitignore keeps out (a local .python-version, say) is not on the runner, so it tells nothing."""

    def __init__(self, root: Path, paths: Iterable[str]) -> None:
        self.root = root
        self.paths = frozenset(paths)

    def first(self, *names: str) -> str | None:
        return next((name for name in names if name in self.paths and (self.root / name).is_file()), None)

    def text(self, name: str) -> str:
        if name not in self.paths:
            return ""
        try:
            return (self.root / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def any(self, pattern: str) -> bool:
        return any(re.search(pattern, path) for path in self.paths)


def detect(files: Files) -> Detection:
    notes: list[str] = []
    stacks = [stack for find in (_python, _node, _go, _jvm, _rust) if (stack := find(files, notes)) is not None]
    names = _ci_workflows(files, notes)
    return Detection(tuple(stacks), names, tuple(notes))


def _mapping(value: object) -> dict[str, Any]:
    """A value read from a project file, where a mapping is expected: anything else counts as empty."""
    return value if isinstance(value, dict) else {}


# --- Python ---------------------------------------------------------------------------------------

_PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "requirements.txt")
_TEST_EXTRAS = ("test", "tests", "testing", "dev")
_REQUIREMENTS = ("requirements-dev.txt", "requirements-test.txt", "requirements_dev.txt", "requirements_test.txt",
                 "dev-requirements.txt", "test-requirements.txt", "requirements/test.txt", "requirements/dev.txt",
                 "requirements.txt")
# Where pytest is configured or depended on.
_PYTEST_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "Pipfile", *_REQUIREMENTS)
_PYTHON_TEST_FILE = r"(^|/)(test_[^/]*|[^/]*_test|tests?)\.py$|(^|/)tests?/[^/]*\.py$"


def _python(files: Files, notes: list[str]) -> Stack | None:
    found = files.first(*_PYTHON_MARKERS)
    if found is None:
        return None
    reasons = []
    try:
        pyproject = _mapping(tomllib.loads(files.text("pyproject.toml")))
    except tomllib.TOMLDecodeError as error:
        pyproject = {}
        reasons.append(f"pyproject.toml could not be read ({error}); its settings were not used")
    project = _mapping(pyproject.get("project"))
    optional = _mapping(project.get("optional-dependencies"))
    extras = [name for name in _TEST_EXTRAS if isinstance(optional.get(name), list)][:1]

    pytest_in = next((name for name in _PYTEST_FILES if re.search(r"\bpytest\b", files.text(name))), None)
    pytest_in = pytest_in or files.first("pytest.ini", "conftest.py")
    django = files.first("manage.py") and not re.search(r"pytest[-_]django", "".join(map(files.text, _PYTEST_FILES)))
    if django:
        runner = "python manage.py test"
        reasons.append("tests: Django's test runner (manage.py)")
    elif pytest_in:
        runner = "python -m pytest"
        reasons.append(f"tests: pytest (named in {pytest_in})")
    elif files.any(_PYTHON_TEST_FILE):
        runner = "python -m unittest discover"
        reasons.append("tests: unittest (test files found, pytest named nowhere)")
    else:  # Python tooling only (docs, scripts): nothing to validate, nothing to install for it
        notes.append(f"{found} but no Python tests: Python is left out of `validate` and `setup`")
        return None

    if files.first("uv.lock"):
        run, setup = "uv run ", ["python -m pip install uv", "uv sync" + "".join(f" --extra {e}" for e in extras)]
        reasons.append("uv.lock: dependencies installed with uv")
    elif files.first("poetry.lock") or "poetry" in _mapping(pyproject.get("tool")):
        run, setup = "poetry run ", ["python -m pip install poetry", "poetry install"]
        reasons.append("Poetry (poetry.lock or [tool.poetry]): dependencies installed with poetry")
    elif files.first("Pipfile"):
        run, setup = "pipenv run ", ["python -m pip install pipenv", "pipenv install --dev"]
        reasons.append("Pipfile: dependencies installed with pipenv")
    elif files.first("pdm.lock"):
        run, setup = "pdm run ", ["python -m pip install pdm", "pdm install"]
        reasons.append("pdm.lock: dependencies installed with pdm")
    else:
        run, setup, installed = "", [], ""
        # A pyproject.toml that only configures tools (black, ruff) is no package to install.
        if project or "build-system" in pyproject or files.first("setup.py", "setup.cfg"):
            target = f"'.[{extras[0]}]'" if extras else "."
            setup.append(f"python -m pip install -e {target}")
            installed += " ".join(map(str, optional.get(extras[0], []))) if extras else ""
            extra = f" with its {extras[0]!r} extra" if extras else ""
            reasons.append(f"pip: the project installed in editable mode{extra}")
        if requirements := files.first(*_REQUIREMENTS):
            setup.append(f"python -m pip install -r {requirements}")
            installed += files.text(requirements)
            reasons.append(f"pip: {requirements} installed")
        if runner == "python -m pytest" and not re.search(r"\bpytest\b", installed):
            setup.append("python -m pip install pytest")
            reasons.append("pip: pytest installed too (no extra or requirements file installs it)")

    if version_file := files.first(".python-version"):
        version = ("python-version-file", version_file)
    elif "requires-python" in project:
        version = ("python-version-file", "pyproject.toml")
    else:
        version = ("python-version", "3.x")
        reasons.append("Python: the newest 3.x (no .python-version or requires-python to go by)")
    step = Step("Set up Python", SETUP_PYTHON, (version,))
    return Stack("Python", found, (step,), tuple(setup), (f"{run}{runner}",), tuple(reasons))


# --- Node -----------------------------------------------------------------------------------------

# What `npm init` writes when there are no tests: running it can only fail.
_NPM_PLACEHOLDER = 'echo "Error: no test specified" && exit 1'


def _node(files: Files, notes: list[str]) -> Stack | None:
    if not files.first("package.json"):
        return None
    reasons = []
    try:
        package = _mapping(json.loads(files.text("package.json")))
    except ValueError as error:
        package = {}
        reasons.append(f"package.json could not be read ({error}); its scripts were not used")

    if files.first("pnpm-lock.yaml"):
        manager, install = "pnpm", "pnpm install --frozen-lockfile"
    elif files.first("yarn.lock"):
        manager = "yarn"
        install = "yarn install --immutable" if files.first(".yarnrc.yml") else "yarn install --frozen-lockfile"
    else:
        manager = "npm"
        install = "npm ci" if files.first("package-lock.json", "npm-shrinkwrap.json") else "npm install"

    scripts = _mapping(package.get("scripts"))
    dependencies = {**_mapping(package.get("dependencies")), **_mapping(package.get("devDependencies"))}
    test_script = scripts.get("test")
    workspaces = bool(package.get("workspaces")) or files.first("pnpm-workspace.yaml") is not None
    if isinstance(test_script, str) and test_script.strip() and test_script.strip() != _NPM_PLACEHOLDER:
        validate = f"{manager} test"
        reasons.append(f"tests: the package's test script (`{test_script.strip()[:60]}`)")
    elif "vitest" in dependencies:
        validate = "npx vitest run"
        reasons.append("tests: Vitest (a dependency; no test script)")
    elif "jest" in dependencies:
        validate = "npx jest"
        reasons.append("tests: Jest (a dependency; no test script)")
    elif workspaces:
        validate = {"npm": "npm test --workspaces", "pnpm": "pnpm -r test",
                    "yarn": "yarn workspaces foreach --all run test" if files.first(".yarnrc.yml")
                    else "yarn workspaces run test"}[manager]
        reasons.append("tests: each workspace's test script (no test script at the root)")
    else:  # `node --test` would pass on finding no test at all: no command is better than one that cannot fail
        notes.append("package.json has no test script, Jest or Vitest: Node.js is left out of `validate` and `setup`")
        return None
    reasons.insert(0, f"{manager}: dependencies installed with `{install}`")

    steps: list[Step] = []
    version_file = files.first(".nvmrc", ".node-version")
    if version_file is None and re.search(r"(?m)^nodejs\s", files.text(".tool-versions")):
        version_file = ".tool-versions"
    version = ("node-version-file", version_file) if version_file else ("node-version", "lts/*")
    if not version_file:
        reasons.append("Node.js: the current LTS (no .nvmrc or .node-version to go by)")
    cache = (("cache", "npm"),) if install == "npm ci" else ()
    steps.append(Step("Set up Node.js", SETUP_NODE, (version, *cache)))
    if manager != "npm":  # pnpm and yarn come with Node.js through corepack, at the version package.json names
        steps.append(Step(f"Enable {manager}", run="corepack enable"))
    return Stack("Node.js", "package.json", tuple(steps), (install,), (validate,), tuple(reasons))


# --- Go, JVM, Rust --------------------------------------------------------------------------------

def _go(files: Files, _notes: list[str]) -> Stack | None:
    if not files.first("go.mod"):
        return None
    step = Step("Set up Go", SETUP_GO, (("go-version-file", "go.mod"),))
    return Stack("Go", "go.mod", (step,), ("go mod download",), ("go test ./...",),
                 ("Go: the version go.mod names; tests: `go test` over every package",))


def _jvm(files: Files, _notes: list[str]) -> Stack | None:
    version = (("java-version-file", ".java-version"),) if files.first(".java-version") else (("java-version", "21"),)
    if files.first("pom.xml"):
        tool, found, command = "maven", "pom.xml", ("./mvnw" if files.first("mvnw") else "mvn") + " -B test"
    elif found_gradle := files.first("build.gradle.kts", "build.gradle", "settings.gradle.kts", "settings.gradle"):
        wrapper = "./gradlew" if files.first("gradlew") else "gradle"
        tool, found, command = "gradle", found_gradle, f"{wrapper} test"
    else:
        return None
    reasons = [f"tests: `{command}`"]
    if version[0][0] == "java-version":
        reasons.append("Java: 21 with Temurin (no .java-version to go by; change it to your project's)")
    step = Step("Set up Java", SETUP_JAVA, (("distribution", "temurin"), *version, ("cache", tool)))
    return Stack("Java", found, (step,), (), (command,), tuple(reasons))


def _rust(files: Files, _notes: list[str]) -> Stack | None:
    if not files.first("Cargo.toml"):
        return None
    pinned = files.first("rust-toolchain.toml", "rust-toolchain")
    # GitHub's Ubuntu runners come with rustup; without arguments it installs what the file names.
    install = "rustup toolchain install" if pinned else "rustup toolchain install stable --profile minimal"
    workspace = re.search(r"(?m)^\[workspace\]", files.text("Cargo.toml")) is not None
    command = "cargo test --workspace" if workspace else "cargo test"
    reasons = [f"Rust: {f'the toolchain {pinned} names' if pinned else 'stable'}; tests: `{command}`"]
    return Stack("Rust", "Cargo.toml", (Step("Set up Rust", run=install),), ("cargo fetch",), (command,),
                 tuple(reasons))


# --- CI workflows ---------------------------------------------------------------------------------

_CI_EVENTS = {"push", "pull_request", "merge_group"}


def _ci_workflows(files: Files, notes: list[str]) -> tuple[str, ...]:
    """The names of the workflows that run on pushes or pull requests: those whose failures fixloop
    should hear about (`workflow_run` matches by name; a workflow without one is named by its path)."""
    names: list[str] = []
    for path in sorted(p for p in files.paths if re.fullmatch(r"\.github/workflows/[^/]+\.ya?ml", p)):
        try:
            workflow = yaml.safe_load(files.text(path))
        except yaml.YAMLError:
            notes.append(f"{path} is not valid YAML; it was left out of the CI workflows")
            continue
        if not isinstance(workflow, dict):
            continue
        if _runs_fixloop(workflow):
            if path != ".github/workflows/fixloop.yml":
                notes.append(f"{path} already runs fixloop: keep one of the two workflows")
            continue
        if _ci_events(workflow.get("on", workflow.get(True))):  # YAML 1.1 reads a bare `on` as true
            name = workflow.get("name")
            names.append(name if isinstance(name, str) and name.strip() else path)
    return tuple(dict.fromkeys(names))


def _ci_events(triggers: object) -> set[str]:
    """The CI events among a workflow's triggers; a push of tags alone (a release) is not CI."""
    if isinstance(triggers, str):
        triggers = [triggers]
    if isinstance(triggers, list):
        triggers = {name: None for item in triggers for name in ([item] if isinstance(item, str) else _mapping(item))}
    events = {event for event in _mapping(triggers) if event in _CI_EVENTS}
    push = _mapping(_mapping(triggers).get("push"))
    if push and {"tags", "tags-ignore"} & set(push) and not {"branches", "branches-ignore"} & set(push):
        events.discard("push")
    return events


def _runs_fixloop(workflow: dict[Any, Any]) -> bool:
    jobs = _mapping(workflow.get("jobs"))
    steps = [step for job in jobs.values() for step in _list(_mapping(job).get("steps")) if isinstance(step, dict)]
    return any("/fixloop@" in str(step.get("uses", "")) for step in steps)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
