"""`fixloop init`: write `.github/fixloop.yml` and the fixloop workflow for a repository.

What the repository is built and tested with is told from its files (`_detect`); the workflow is
fixloop's own template (`workflows/fixloop.yml`) with the toolchain steps and the CI workflow names
filled in, so there is one workflow to maintain. Nothing is written over an existing file unless
asked (`force`), and nothing at all when one of the files is in the way.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from bot.config import CONFIG_PATH, parse_config
from bot.errors import ConfigError
from bot.init._detect import Detection, Files, Stack, Step, detect
from bot.workspace import git

WORKFLOW_PATH = ".github/workflows/fixloop.yml"
__all__ = ["WORKFLOW_PATH", "InitPlan", "in_the_way", "plan_init", "workflow_template", "write"]


@dataclass(frozen=True)
class InitPlan:
    root: Path
    detection: Detection
    files: dict[str, str]  # path relative to the root -> text

    def explanation(self) -> list[str]:
        lines = []
        for stack in self.detection.stacks:
            lines.append(f"{stack.language} ({stack.found}):")
            lines += [f"  - {reason}" for reason in stack.reasons]
        names = self.detection.ci_workflows
        lines.append(f"CI workflows whose failures fixloop hears about: {', '.join(names)}" if names else
                     "No CI workflow runs on pushes or pull requests here: the workflow's `workflow_run` trigger is "
                     "left commented out (name your CI workflow there to have fixloop look at its failures)")
        lines += [f"note: {note}" for note in self.detection.notes]
        return lines


def workflow_template() -> str:
    """The workflow users copy: shipped inside the wheel, or read from the source tree in a checkout."""
    packaged = files("bot").joinpath("_data/fixloop-workflow.yml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "workflows" / "fixloop.yml").read_text(encoding="utf-8")


def plan_init(root: Path, *, validate: list[str] | None = None, setup: list[str] | None = None) -> InitPlan:
    """What `fixloop init` would write in `root`; `validate` and `setup` replace what was detected."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root)
    detection = detect(Files(root, filter(None, listed.split("\0"))))
    validate = validate or [command for stack in detection.stacks for command in stack.validate]
    setup = setup if setup is not None else [command for stack in detection.stacks for command in stack.setup]
    if not validate:
        raise ConfigError(f"cannot tell how {root} is tested (no pyproject.toml, setup.py, package.json, go.mod, "
                          "pom.xml, build.gradle or Cargo.toml at its root): pass --validate CMD (repeatable), "
                          "e.g. --validate 'make test'")
    config = _config_text(detection, setup, validate)
    workflow = _workflow_text(detection)
    parse_config(config)  # what init writes, fixloop must read, and GitHub too
    if not isinstance(yaml.safe_load(workflow), dict):
        raise RuntimeError("fixloop init wrote a workflow that is not a YAML mapping")
    return InitPlan(root, detection, {CONFIG_PATH: config, WORKFLOW_PATH: workflow})


def in_the_way(plan: InitPlan) -> list[str]:
    """The plan's files that exist already (or something else at their place)."""
    return [path for path in plan.files if os.path.lexists(plan.root / path)]


def write(plan: InitPlan, *, force: bool) -> list[str]:
    """Write the plan's files: all of them, or none when some exist and `force` is not given, or when
    one of them cannot be written (checked before anything is)."""
    existing = in_the_way(plan)
    if existing and not force:
        raise ConfigError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was "
                          "written (see what init would write with --dry-run, or replace with --force)")
    for path in plan.files:
        target = plan.root / path
        if target.is_dir() and not target.is_symlink():
            raise ConfigError(f"{path} is a folder; nothing was written (move it away first)")
        for folder in reversed(target.relative_to(plan.root).parents[:-1]):
            if (plan.root / folder).exists() and not (plan.root / folder).is_dir():
                raise ConfigError(f"{folder} is a file, where fixloop init needs a folder; nothing was written")
    for path, text in plan.files.items():
        target = plan.root / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written beside the target and renamed over it: an interrupted init leaves no half file.
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                os.chmod(temporary, 0o644)
                os.replace(temporary, target)
            finally:
                Path(temporary).unlink(missing_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None
    return list(plan.files)


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one), with every unprintable character escaped:
    YAML refuses some raw (DEL), and line separators would break the line."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in text)


def _config_text(detection: Detection, setup: list[str], validate: list[str]) -> str:
    found = "; ".join(f"{stack.language} ({stack.found})" for stack in detection.stacks) or "nothing detected"
    lines = [
        "# fixloop's settings for this repository, written by `fixloop init` (found: " + found + ").",
        "# fixloop reads this file from the default branch. Every key not here has a default: see the",
        "# configuration reference in fixloop's documentation.",
        "",
        "# Run once, on the runner, before the agent starts (installing what the tests need):",
        *(["setup:", *(f"  - {_quoted(command)}" for command in setup)] if setup else ["setup: []"]),
        "",
        "# Must all pass (exit 0) for a change to count as validated:",
        "validate:",
        *(f"  - {_quoted(command)}" for command in validate),
    ]
    return "\n".join(lines) + "\n"


_HEADER = "# fixloop: copy this file"
_TOOLCHAIN_START = "      # Your project's toolchain."
_FIXLOOP_STEP = "      - name: Run fixloop"
_CI_NAMES = "    workflows: [CI]"


def _workflow_text(detection: Detection) -> str:
    text = workflow_template()
    lines = text.splitlines()
    places = {mark: [i for i, line in enumerate(lines) if line.startswith(mark)]
              for mark in (_HEADER, _TOOLCHAIN_START, _FIXLOOP_STEP, _CI_NAMES)}
    # Filled in from the bottom up, so that the earlier places stay where they were found.
    if any(len(found) != 1 for found in places.values()) or not (
            places[_HEADER] < places[_CI_NAMES] < places[_TOOLCHAIN_START] < places[_FIXLOOP_STEP]):
        raise RuntimeError("workflows/fixloop.yml no longer has the places fixloop init fills in")
    lines[0] = "# fixloop: written by `fixloop init`. Review it, then commit it."
    [start], [end], [ci] = places[_TOOLCHAIN_START], places[_FIXLOOP_STEP], places[_CI_NAMES]
    lines[start:end] = _toolchain(detection.stacks)
    if detection.ci_workflows:
        names = f"    workflows: [{', '.join(map(_quoted, detection.ci_workflows))}]"
        lines[ci] = f"{names:<37} # the CI workflows fixloop init found"
    else:  # `workflow_run` with no workflow named is an error on GitHub: leave it for the user to name one
        trigger = ci - 1
        lines[trigger:ci + 2] = ["  # No CI workflow was found; name yours and uncomment these lines:",
                                 *(f"  # {line[2:]}" for line in lines[trigger:ci + 2])]
    return "\n".join(lines) + "\n"


def _toolchain(stacks: tuple[Stack, ...]) -> list[str]:
    languages = ", ".join(stack.language for stack in stacks) or "none detected"
    lines = [f"      # Your project's toolchain ({languages}; written by fixloop init). fixloop runs the `setup`",
             "      # and `validate` commands from .github/fixloop.yml on this runner, so install here what they",
             "      # need, as your CI does. fixloop brings its own private Python and leaves PATH alone."]
    for step in (step for stack in stacks for step in stack.steps):
        lines += _step(step)
    return [*lines, ""]


def _step(step: Step) -> list[str]:
    lines = [f"      - name: {step.name}"]
    if step.action is not None:
        lines.append(f"        uses: {step.action.uses}")
    if step.inputs:
        lines += ["        with:", *(f"          {key}: {_quoted(value)}" for key, value in step.inputs)]
    if step.run is not None:
        lines.append(f"        run: {step.run}")
    return lines
