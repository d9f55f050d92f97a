"""Task suites for `fixloop eval`, and the configurations compared on them.

A suite is a folder with one folder per task, each holding a `task.yml`:

    repo: repo.bundle          # a git bundle, or a repository folder (relative to the task's folder)
    commit: HEAD               # the commit the agent starts from (default: the bundle's HEAD)
    problem: |                 # the task in words, as a person would file it
      median() gives wrong answers for lists of even length.
    validate: [python -m pytest -q tests/test_visible.py]   # what the agent's validation runs
    setup: []                  # commands run before the agent, as in .github/fixloop.yml
    grade: [python -m pytest -q hidden_test.py]             # the hidden grading: all must pass
    language: python
    origin: "more-itertools 10.5.0 (MIT), a bug re-introduced in more.py"

and, beside it, `hidden/`: files laid over the agent's result before grading, never shown to it. A
SWE-bench-style JSONL file is read too, with `--repos DIR` holding a copy of each repository
(`DIR/owner__name`): its `test_patch` is the hidden part, its FAIL_TO_PASS and PASS_TO_PASS tests the grading.

A configuration file is a `.github/fixloop.yml` overlay (model, provider, limits, `search`, …) with an
optional `name` (default: the file's name) and `script`: a YAML file of answers per task that plays the
model (tests and dry runs; tasks it has no answer for are not resolved).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import Config, parse_config_data, problems_of, read_yaml
from bot.errors import ConfigError

TASK_FILE = "task.yml"
HIDDEN = "hidden"


class EvalTask(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    repo: str = Field(min_length=1)
    commit: str = Field("HEAD", pattern=r"^[A-Za-z0-9._/-]{1,200}$")
    problem: str = Field(min_length=1, max_length=20_000)
    validation: list[str] = Field(min_length=1, alias="validate")
    setup: list[str] = []
    grade: list[str] = Field(min_length=1)
    # The files (git pathspecs) of the agent's change that grading applies; empty: all of it. Grading then
    # judges the fix, not a change elsewhere that fools the tests (a module deleted, a test runner shadowed).
    graded_paths: list[str] = []
    language: str = ""
    origin: str = ""  # where the code comes from, and its licence
    hidden_patch: str | None = None  # applied before grading (SWE-bench's test_patch)
    folder: str = ""  # the task's folder (hidden files, a relative repo)

    def repository(self) -> Path:
        path = Path(self.repo)
        return path if path.is_absolute() else Path(self.folder) / path

    def hidden(self) -> Path | None:
        path = Path(self.folder) / HIDDEN
        return path if self.folder and path.is_dir() else None


def load_suite(path: Path, repos: Path | None = None) -> list[EvalTask]:
    """The tasks of a suite folder, or of a SWE-bench-style JSONL file (with `repos`). ConfigError names every
    problem."""
    if path.is_file():
        return _swe_bench(path, repos)
    if not path.is_dir():
        raise ConfigError(f"{path} is neither a suite folder nor a JSONL file of tasks")
    tasks, problems = [], []
    for task_file in sorted(path.glob(f"*/{TASK_FILE}")):
        try:
            data = read_yaml(task_file.read_text(encoding="utf-8"), source=str(task_file))
            if not isinstance(data, dict):
                raise ConfigError(f"{task_file} must be a mapping of keys to values")
            folder = task_file.parent.resolve()
            tasks.append(EvalTask.model_validate({"id": folder.name, **data, "folder": str(folder)}))
        except ValidationError as error:
            problems += [f"{task_file}: {key}: {message}" for key, message in problems_of(error, EvalTask)]
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("the suite has problems:\n" + "\n".join(f"  - {p}" for p in problems))
    if not tasks:
        raise ConfigError(f"{path} holds no task: each task is a folder with a {TASK_FILE}")
    return tasks


def _swe_bench(path: Path, repos: Path | None) -> list[EvalTask]:
    if repos is None:
        raise ConfigError(f"{path} is a JSONL file of SWE-bench-style tasks: give --repos DIR, with a copy of each "
                          "repository as DIR/owner__name")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            failing, passing = _tests(row["FAIL_TO_PASS"]), _tests(row.get("PASS_TO_PASS", []))
            owner_name = str(row["repo"])
            folder = repos.resolve() / owner_name.replace("/", "__")
            visible = " ".join(map(shlex.quote, passing[:50]))
            tasks.append(EvalTask(id=re.sub(r"[^A-Za-z0-9._-]", "_", str(row["instance_id"])), repo=str(folder),
                                  commit=str(row["base_commit"]), problem=str(row["problem_statement"]),
                                  validation=[f"python -m pytest -q {visible}".strip()],
                                  grade=[f"python -m pytest -q {' '.join(map(shlex.quote, failing + passing))}"],
                                  hidden_patch=str(row.get("test_patch") or "") or None, origin=owner_name))
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            raise ConfigError(f"{path}, line {number}: not a SWE-bench-style task ({error})") from None
    return tasks


def _tests(value: Any) -> list[str]:
    found = json.loads(value) if isinstance(value, str) else value
    if not isinstance(found, list):
        raise TypeError("a list of test ids")
    return [str(item) for item in found]


class EvalConfig(BaseModel):
    """One way of running the agent: a config overlay, and optionally scripted answers in place of a model."""

    name: str
    overlay: dict[str, Any]
    script: dict[str, list[dict[str, Any]]] | None = None  # task id -> turns: {say, calls: [{tool, input}]}

    def fingerprint(self) -> str:
        """Tells a changed configuration of the same name apart (a results file holds one of each name)."""
        text = json.dumps({"overlay": self.overlay, "script": self.script}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def config_for(self, task: EvalTask) -> Config:
        return parse_config_data({**self.overlay, "validate": task.validation, "setup": task.setup},
                                 source=f"configuration {self.name}")


def load_config(path: Path) -> EvalConfig:
    try:
        data = read_yaml(path.read_text(encoding="utf-8"), source=str(path))
    except OSError as error:
        raise ConfigError(f"configuration {path} cannot be read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of keys to values (a .github/fixloop.yml overlay)")
    name = str(data.pop("name", path.stem))
    script_path = data.pop("script", None)
    script = None
    if script_path is not None:
        script_file = (path.parent / str(script_path))
        try:
            script = read_yaml(script_file.read_text(encoding="utf-8"), source=str(script_file)) or {}
        except OSError as error:
            raise ConfigError(f"{path}: script {script_file} cannot be read ({error.strerror})") from None
        if not isinstance(script, dict) or not all(isinstance(turns, list) for turns in script.values()):
            raise ConfigError(f"{script_file} must map task ids to lists of turns ({{say, calls: [{{tool, input}}]}})")
        for task, turns in script.items():
            for turn in turns:
                calls = turn.get("calls") if isinstance(turn, dict) else None
                if not isinstance(turn, dict) or not all(isinstance(c, dict) and isinstance(c.get("tool"), str)
                                                         for c in calls or []):
                    raise ConfigError(f"{script_file}: task {task}: each turn is {{say: text, calls: [{{tool: name, "
                                      "input: {...}}]}}")
    config = EvalConfig(name=name, overlay=data, script=script)
    config.config_for(EvalTask(id="check", repo=".", problem="x", validation=["true"], grade=["true"]))  # checked now
    return config
