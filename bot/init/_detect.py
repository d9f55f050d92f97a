"""What a repository is built and tested with, told from the files at its root.

Pure reading: nothing here runs the repository's code. Each stack says what it found and why, so
that `fixloop init` can explain every line it writes.
"""

from __future__ import annotations

import json
import re
import tomllib
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


def detect(root: Path) -> Detection:
    stacks = [stack for find in (_python, _node, _go, _jvm, _rust) if (stack := find(root)) is not None]
    names, notes = _ci_workflows(root)
    return Detection(tuple(stacks), names, notes)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _first(root: Path, *names: str) -> str | None:
    return next((name for name in names if (root / name).is_file()), None)


# --- Python ---------------------------------------------------------------------------------------

_PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "requirements.txt")
_TEST_EXTRAS = ("test", "tests", "testing", "dev")
_REQUIREMENTS = ("requirements-dev.txt", "requirements-test.txt", "requirements_dev.txt", "requirements_test.txt",
                 "dev-requirements.txt", "test-requirements.txt", "requirements/test.txt", "requirements/dev.txt",
                 "requirements.txt")
# Where pytest is configured or depended on.
_PYTEST_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "Pipfile", *_REQUIREMENTS)


def _python(root: Path) -> Stack | None:
    found = _first(root, *_PYTHON_MARKERS)
    if found is None:
        return None
    reasons = []
    try:
        pyproject: dict[str, Any] = tomllib.loads(_text(root / "pyproject.toml"))
    except tomllib.TOMLDecodeError as error:
        pyproject = {}
        reasons.append(f"pyproject.toml could not be read ({error}); its settings were not used")
    project = pyproject.get("project", {})
    extras = [name for name in _TEST_EXTRAS if name in project.get("optional-dependencies", {})][:1]

    if (root / "uv.lock").is_file():
        run, setup = "uv run ", ["python -m pip install uv", "uv sync" + "".join(f" --extra {e}" for e in extras)]
        reasons.append("uv.lock: dependencies installed with uv")
    elif (root / "poetry.lock").is_file() or "poetry" in pyproject.get("tool", {}):
        run, setup = "poetry run ", ["python -m pip install poetry", "poetry install"]
        reasons.append("Poetry (poetry.lock or [tool.poetry]): dependencies installed with poetry")
    elif (root / "Pipfile").is_file():
        run, setup = "pipenv run ", ["python -m pip install pipenv", "pipenv install --dev"]
        reasons.append("Pipfile: dependencies installed with pipenv")
    elif (root / "pdm.lock").is_file():
        run, setup = "pdm run ", ["python -m pip install pdm", "pdm install"]
        reasons.append("pdm.lock: dependencies installed with pdm")
    else:
        run, setup = "", []
        if _first(root, "pyproject.toml", "setup.py", "setup.cfg"):
            target = f"'.[{extras[0]}]'" if extras else "."
            setup.append(f"python -m pip install -e {target}")
            extra = f" with its {extras[0]!r} extra" if extras else ""
            reasons.append(f"pip: the project installed in editable mode{extra}")
        if requirements := _first(root, *_REQUIREMENTS):
            setup.append(f"python -m pip install -r {requirements}")
            reasons.append(f"pip: {requirements} installed")

    pytest_in = next((name for name in _PYTEST_FILES if re.search(r"\bpytest\b", _text(root / name))), None)
    pytest_in = pytest_in or _first(root, "pytest.ini", "conftest.py")
    if pytest_in:
        validate = f"{run}python -m pytest"
        reasons.append(f"tests: pytest (named in {pytest_in})")
    elif any(root.glob("test*.py")) or any(root.glob("*/test*.py")):
        validate = f"{run}python -m unittest discover"
        reasons.append("tests: unittest (test files found, pytest named nowhere)")
    else:
        validate = f"{run}python -m pytest"
        reasons.append("tests: pytest assumed (no test runner named anywhere; change `validate` if that is wrong)")

    if version_file := _first(root, ".python-version"):
        version = ("python-version-file", version_file)
    elif "requires-python" in project:
        version = ("python-version-file", "pyproject.toml")
    else:
        version = ("python-version", "3.x")
        reasons.append("Python: the newest 3.x (no .python-version or requires-python to go by)")
    step = Step("Set up Python", SETUP_PYTHON, (version,))
    return Stack("Python", found, (step,), tuple(setup), (validate,), tuple(reasons))


# --- Node -----------------------------------------------------------------------------------------

# What `npm init` writes when there are no tests: running it can only fail.
_NPM_PLACEHOLDER = 'echo "Error: no test specified" && exit 1'


def _node(root: Path) -> Stack | None:
    if not (root / "package.json").is_file():
        return None
    reasons = []
    try:
        package = json.loads(_text(root / "package.json"))
        if not isinstance(package, dict):
            raise ValueError("not an object")
    except ValueError as error:
        package = {}
        reasons.append(f"package.json could not be read ({error}); its scripts were not used")

    steps: list[Step] = []
    if (root / "pnpm-lock.yaml").is_file():
        manager, install = "pnpm", "pnpm install --frozen-lockfile"
    elif (root / "yarn.lock").is_file():
        manager = "yarn"
        install = "yarn install --immutable" if (root / ".yarnrc.yml").is_file() else "yarn install --frozen-lockfile"
    else:
        manager = "npm"
        install = "npm ci" if _first(root, "package-lock.json", "npm-shrinkwrap.json") else "npm install"
    reasons.append(f"{manager}: dependencies installed with `{install}`")

    version_file = _first(root, ".nvmrc", ".node-version", ".tool-versions")
    version = ("node-version-file", version_file) if version_file else ("node-version", "lts/*")
    if not version_file:
        reasons.append("Node.js: the current LTS (no .nvmrc or .node-version to go by)")
    cache = (("cache", "npm"),) if install == "npm ci" else ()
    steps.append(Step("Set up Node.js", SETUP_NODE, (version, *cache)))
    if manager != "npm":  # pnpm and yarn come with Node.js through corepack, at the version package.json names
        steps.append(Step(f"Enable {manager}", run="corepack enable"))

    scripts = package.get("scripts", {}) if isinstance(package.get("scripts"), dict) else {}
    dev = {**package.get("dependencies", {}), **package.get("devDependencies", {})} if package else {}
    test_script = scripts.get("test")
    if isinstance(test_script, str) and test_script.strip() and test_script.strip() != _NPM_PLACEHOLDER:
        validate = f"{manager} test"
        reasons.append(f"tests: the package's test script (`{test_script.strip()[:60]}`)")
    elif "vitest" in dev:
        validate = "npx vitest run"
        reasons.append("tests: Vitest (a dependency; no test script)")
    elif "jest" in dev:
        validate = "npx jest"
        reasons.append("tests: Jest (a dependency; no test script)")
    else:
        validate = "node --test"
        reasons.append("tests: Node's own runner assumed (no test script, Jest or Vitest; change `validate` if wrong)")
    return Stack("Node.js", "package.json", tuple(steps), (install,), (validate,), tuple(reasons))


# --- Go, JVM, Rust --------------------------------------------------------------------------------

def _go(root: Path) -> Stack | None:
    if not (root / "go.mod").is_file():
        return None
    step = Step("Set up Go", SETUP_GO, (("go-version-file", "go.mod"),))
    return Stack("Go", "go.mod", (step,), ("go mod download",), ("go test ./...",),
                 ("Go: the version go.mod names; tests: `go test` over every package",))


def _jvm(root: Path) -> Stack | None:
    version = (("java-version-file", ".java-version"),) if (root / ".java-version").is_file() \
        else (("java-version", "21"),)
    if (root / "pom.xml").is_file():
        tool, found, command = "maven", "pom.xml", ("./mvnw" if (root / "mvnw").is_file() else "mvn") + " -B test"
    elif found_gradle := _first(root, "build.gradle.kts", "build.gradle", "settings.gradle.kts", "settings.gradle"):
        wrapper = "./gradlew" if (root / "gradlew").is_file() else "gradle"
        tool, found, command = "gradle", found_gradle, f"{wrapper} test"
    else:
        return None
    reasons = [f"tests: `{command}`"]
    if version[0][0] == "java-version":
        reasons.append("Java: 21 with Temurin (no .java-version to go by; change it to your project's)")
    step = Step("Set up Java", SETUP_JAVA, (("distribution", "temurin"), *version, ("cache", tool)))
    return Stack("Java", found, (step,), (), (command,), tuple(reasons))


def _rust(root: Path) -> Stack | None:
    if not (root / "Cargo.toml").is_file():
        return None
    pinned = _first(root, "rust-toolchain.toml", "rust-toolchain")
    # GitHub's Ubuntu runners come with rustup; without arguments it installs what the file names.
    install = "rustup toolchain install" if pinned else "rustup toolchain install stable --profile minimal"
    workspace = re.search(r"(?m)^\[workspace\]", _text(root / "Cargo.toml")) is not None
    command = "cargo test --workspace" if workspace else "cargo test"
    reasons = [f"Rust: {f'the toolchain {pinned} names' if pinned else 'stable'}; tests: `{command}`"]
    return Stack("Rust", "Cargo.toml", (Step("Set up Rust", run=install),), ("cargo fetch",), (command,),
                 tuple(reasons))


# --- CI workflows ---------------------------------------------------------------------------------

_CI_EVENTS = {"push", "pull_request", "merge_group"}


def _ci_workflows(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of the workflows that run on pushes or pull requests: those whose failures fixloop
    should hear about (`workflow_run` matches by name; a workflow without one is named by its path)."""
    folder = root / ".github" / "workflows"
    names: list[str] = []
    notes: list[str] = []
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        try:
            workflow = yaml.safe_load(_text(path))
        except yaml.YAMLError:
            notes.append(f"{path.relative_to(root)} is not valid YAML; it was left out of the CI workflows")
            continue
        if not isinstance(workflow, dict):
            continue
        if _runs_fixloop(workflow):
            if path.name != "fixloop.yml":
                notes.append(f"{path.relative_to(root)} already runs fixloop: keep one of the two workflows")
            continue
        triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
        events = {triggers} if isinstance(triggers, str) else set(triggers) if isinstance(triggers, list | dict) \
            else set()
        if events & _CI_EVENTS:
            name = workflow.get("name")
            names.append(name if isinstance(name, str) and name.strip() else str(path.relative_to(root)))
    return tuple(dict.fromkeys(names)), tuple(notes)


def _runs_fixloop(workflow: dict[Any, Any]) -> bool:
    jobs = workflow.get("jobs")
    steps = [step for job in (jobs.values() if isinstance(jobs, dict) else ()) if isinstance(job, dict)
             for step in job.get("steps") or () if isinstance(step, dict)]
    return any("/fixloop@" in str(step.get("uses", "")) for step in steps)
