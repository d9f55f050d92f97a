"""`fixloop eval run`: every configuration on every task, `repeats` times, each run in its own clone, worktree
and sandbox, up to `jobs` at once (separate processes), graded by the task's hidden tests.

A run is one line of the results file (JSONL), appended as soon as it ends: an interrupted evaluation
resumes where it stopped (runs already in the file are not run again).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bot.agent.model import Block, Model, ScriptedModel, Text, ToolCall, make_model
from bot.config import Config
from bot.errors import ConfigError, FixloopError
from bot.eval.report import read_rows
from bot.eval.suite import EvalConfig, EvalTask
from bot.sandbox import Confinement
from bot.secrets import scrubbed_environment
from bot.session import SessionSpec, run_session
from bot.task import Task
from bot.workspace import git

GRADE_TIMEOUT = 900.0


def run_key(config: str, task: str, repeat: int) -> str:
    return f"{config}/{task}/{repeat}"


def done_keys(results: Path, configs: list[EvalConfig]) -> set[str]:
    """The runs already in the results file. A run that could not start (its repository not cloned) is run
    again, as is a line cut short by an interruption; runs of a configuration changed since are refused."""
    if not results.exists():
        return set()
    fingerprints = {config.name: config.fingerprint() for config in configs}
    keys = set()
    for row in read_rows(results):
        key = run_key(row["config"], row["task"], row["repeat"])
        if row["config"] in fingerprints and row.get("fingerprint") not in (None, fingerprints[row["config"]]):
            raise ConfigError(f"{results} holds runs of another configuration named {row['config']!r}: write the "
                              "results of this one elsewhere (--out), or rename it")
        if not row.get("infrastructure"):
            keys.add(key)
    return keys


def run_suite(tasks: list[EvalTask], configs: list[EvalConfig], results: Path, *, repeats: int = 1, jobs: int = 1,
              say: Callable[[str], None] = print) -> int:
    """Run what the results file lacks; returns how many runs were made now."""
    done = done_keys(results, configs)
    todo = [(config, task, repeat) for repeat in range(1, repeats + 1) for config in configs for task in tasks
            if run_key(config.name, task.id, repeat) not in done]
    if len(todo) < repeats * len(configs) * len(tasks):
        say(f"{repeats * len(configs) * len(tasks) - len(todo)} run(s) already in {results}: resuming")
    results.parent.mkdir(parents=True, exist_ok=True)
    # A line an interruption cut short is ended first, so the next run's line starts a line of its own.
    separator = "\n" if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n") \
        else ""
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(run_one, config, task, repeat) for config, task, repeat in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                row = future.result()
                with results.open("a", encoding="utf-8") as out:
                    out.write(separator + json.dumps(row) + "\n")
                separator = ""
                say(f"{row['config']} · {row['task']} · #{row['repeat']}: "
                    f"{'resolved' if row['resolved'] else 'not resolved'} ({row['status']}, {row['wall_s']:.0f} s)")
    return len(todo)


def run_one(config: EvalConfig, task: EvalTask, repeat: int) -> dict[str, Any]:
    """One session on a fresh clone of the task's repository, then its grading; the results file's line.
    Whatever goes wrong is in the line: an evaluation never stops for one run."""
    started = time.monotonic()
    row: dict[str, Any] = {"config": config.name, "fingerprint": config.fingerprint(), "task": task.id,
                           "repeat": repeat, "resolved": False, "status": "error", "reason": "", "tokens": None,
                           "cost_usd": None, "iterations": 0, "wall_s": 0.0}
    scratch = Path(tempfile.mkdtemp(prefix="fixloop-eval-"))
    try:
        try:
            clone, base = _checkout(task, scratch)
        except FixloopError as error:  # not the agent's doing: the run is made again on resume
            row |= {"infrastructure": True, "reason": f"{type(error).__name__}: {error}"[:500]}
            return row
        session_config = config.config_for(task)
        report = run_session(SessionSpec(
            repo=clone, task=Task(kind="local", title=task.problem.strip().splitlines()[0][:100],
                                  instructions=task.problem, source=f"the evaluation task {task.id}"),
            config=session_config, model=_model(config, task, session_config), base=base, out_dir=scratch / "session",
            branch="fixloop/eval"))
        row |= {"status": report.status, "reason": report.reason[:500], "tokens": report.usage.total,
                "cost_usd": report.cost_usd, "iterations": len(report.iterations)}
        patch = scratch / "session" / "changes.patch"
        row["resolved"], row["grade"] = _grade(task, clone, base, report.commit,
                                               patch if patch.exists() else None, session_config)
    except Exception as error:  # noqa: BLE001 - the run's own failure, recorded in its line
        row["reason"] = f"{type(error).__name__}: {error}"[:500]
    finally:
        row["wall_s"] = round(time.monotonic() - started, 2)
        shutil.rmtree(scratch, ignore_errors=True)
    return row


def _checkout(task: EvalTask, scratch: Path) -> tuple[Path, str]:
    """A repository with the task's commit and nothing after it: no remote to find the suite (and its hidden
    tests) through, no later commits (a fix) to read."""
    source = task.repository().resolve()
    probe = scratch / "probe"
    git("clone", "--quiet", "--no-checkout", str(source), str(probe), cwd=scratch)
    base = _resolve(probe, task.commit)
    clone = scratch / "repo"
    git("init", "--quiet", str(clone), cwd=scratch)
    git("fetch", "--quiet", str(probe), base, cwd=clone)
    git("update-ref", "refs/heads/main", base, cwd=clone)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=clone)
    shutil.rmtree(probe)
    return clone, base


def _resolve(clone: Path, commit: str) -> str:
    """The task's commit in the clone: a commit id, a tag, or a branch of the source (origin/<name> here)."""
    for candidate in (commit, f"origin/{commit}"):
        try:
            return git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=clone).strip()
        except FixloopError:
            continue
    raise ConfigError(f"the task's commit {commit!r} is not in its repository")


def _grade(task: EvalTask, clone: Path, base: str, commit: str | None, patch: Path | None,
           config: Any) -> tuple[bool, str]:
    """The hidden tests on the agent's result: its change on the base (its commit when it validated: the
    patch file is redacted; only `graded_paths` of it when the task names them), the hidden files and patch
    laid over, every grading command run confined."""
    graded = clone.parent / "graded"
    git("worktree", "add", "--quiet", "--detach", str(graded), base, cwd=clone)
    change = git("diff", "--binary", base, commit, cwd=clone) if commit else (
        patch.read_text(encoding="utf-8") if patch is not None else "")
    if change.strip():
        only = [f"--include={path}" for path in task.graded_paths]
        git("apply", "--whitespace=nowarn", *only, "-", cwd=graded, input_text=change)
    if task.hidden_patch:
        touched = re.findall(r"^diff --git a/(\S+) ", task.hidden_patch, flags=re.MULTILINE)
        for path in touched:  # the tests as the base has them: the hidden patch applies to those
            if git("ls-tree", "--name-only", base, "--", path, cwd=clone).strip():
                git("checkout", base, "--", path, cwd=graded)
        git("apply", "--whitespace=nowarn", "-", cwd=graded, input_text=task.hidden_patch)
    if (hidden := task.hidden()) is not None:
        shutil.copytree(hidden, graded, dirs_exist_ok=True)
    env = scrubbed_environment(os.environ, config.secrets.scrub)
    with Confinement(config.sandbox, environ=os.environ, writable=[graded]) as confinement:
        for command in task.grade:
            result = confinement.run(command, cwd=graded, env=env, timeout=GRADE_TIMEOUT, output_limit=4_000)
            if result.exit_code != 0:
                return False, f"`{command}` exited {result.exit_code}"
    return True, "every grading command passed"


def _model(config: EvalConfig, task: EvalTask, session_config: Config) -> Model:
    if config.script is None:
        return make_model(session_config)
    turns = [_turn(turn, n) for n, turn in enumerate(config.script.get(task.id, []))]
    return ScriptedModel(turns or [[Text("I have no answer for this task.")]], name=f"scripted-{config.name}")


def _turn(turn: dict[str, Any], n: int) -> list[Block]:
    blocks: list[Block] = [Text(str(turn["say"]))] if turn.get("say") else []
    blocks += [ToolCall(f"toolu_eval_{n:03d}_{i}", str(call["tool"]), dict(call.get("input") or {}))
               for i, call in enumerate(turn.get("calls") or [])]
    return blocks
