"""What the orchestrator itself costs per iteration, beyond model latency and the project's tests.

A scripted model answers instantly with a typical iteration's tool calls (view a file, edit it,
run a command); validation fails until the last iteration. The orchestrator's time per iteration
is the iteration's wall time minus the validation command's own run time. The bytes are what one
iteration adds to the trajectory and what is sent to the model (the request body grows with the
conversation).

Baseline, in the same run: "bare", the same file edits and commands done directly with
pathlib and subprocess, without events, trajectory, limits or redaction.

    python benchmarks/loop_overhead.py [--sessions 5] [--iterations 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.agent._anthropic import request_params
from bot.agent.events import Event, IterationEnded, IterationStarted, ValidationRan
from bot.agent.model import Block, Message, ModelReply, ScriptedModel, Text, ToolSpec, tool_use
from bot.agent.tools import BASH, EDITOR
from bot.config import Config
from bot.session import SessionSpec, run_session
from bot.task import Task

SOURCE = "".join(f"def function_{i}(x):\n    return x + {i}\n\n\n" for i in range(200))  # a 800-line module
VALIDATE = "grep -qs DONE marker.txt"


def make_repo(parent: Path) -> Path:
    repo = parent / "repo"
    repo.mkdir()
    (repo / "module.py").write_text(SOURCE)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *identity, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def iteration_calls(n: int, last: bool) -> list[list[Block]]:
    """One iteration's turns: view, edit, run a command, (mark done on the last), end turn."""
    edit = {"command": "str_replace", "path": "module.py",
            "old_str": f"return x + {n}\n", "new_str": f"return x + {n} + 0\n"}
    turns = [
        [tool_use(EDITOR, {"command": "view", "path": "module.py"}, id=f"t{n}a")],
        [tool_use(EDITOR, edit, id=f"t{n}b")],
        [tool_use(BASH, {"command": "true"}, id=f"t{n}c")],
    ]
    if last:
        marker = {"command": "create", "path": "marker.txt", "file_text": "DONE\n"}
        turns.append([tool_use(EDITOR, marker, id=f"t{n}d")])
    turns.append([Text(f"iteration {n} done")])
    return turns


class Timing:
    def __init__(self) -> None:
        self.iteration_seconds: list[float] = []
        self.validation_seconds: list[float] = []
        self._started = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, IterationStarted):
            self._started = time.perf_counter()
        elif isinstance(event, ValidationRan) and event.iteration > 0:
            self.validation_seconds.append(sum(c.duration_s for c in event.result.commands))
        elif isinstance(event, IterationEnded):
            self.iteration_seconds.append(time.perf_counter() - self._started)


class MeasuringModel(ScriptedModel):
    """The scripted model, also counting the request bytes a real API call would send (Anthropic's)."""

    def __init__(self, turns: list[list[Block]]) -> None:
        super().__init__(turns)
        self.request_bytes: list[int] = []

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        self.request_bytes.append(len(json.dumps(request_params(system, tools, messages))))
        return super().complete(system=system, tools=tools, messages=messages)


def run_fixloop(iterations: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        repo = make_repo(Path(scratch))
        turns = [t for n in range(1, iterations + 1) for t in iteration_calls(n, n == iterations)]
        model = MeasuringModel(turns)
        timing = Timing()
        config = Config(validate=[VALIDATE], limits={"iterations": iterations})
        started = time.perf_counter()
        report = run_session(SessionSpec(repo=repo, task=Task(kind="local", title="bench", source="benchmark"),
                                         config=config, model=model, out_dir=Path(scratch) / "out", sinks=[timing]))
        total = time.perf_counter() - started
        assert report.status == "validated", report.reason
        trajectory_bytes = (Path(scratch) / "out" / "trajectory.jsonl").stat().st_size
    loop_seconds = [i - v for i, v in zip(timing.iteration_seconds, timing.validation_seconds, strict=True)]
    return {
        "orchestrator_ms_per_iteration": 1000 * statistics.mean(loop_seconds),
        "session_fixed_ms": 1000 * (total - sum(timing.iteration_seconds)),
        "trajectory_bytes_per_iteration": trajectory_bytes / iterations,
        "request_bytes_per_iteration": sum(model.request_bytes) / iterations,
    }


def run_bare(iterations: int) -> dict[str, float]:
    """The same edits and commands without fixloop: the floor any orchestrator pays."""
    with tempfile.TemporaryDirectory() as scratch:
        repo = make_repo(Path(scratch))
        per_iteration = []
        for n in range(1, iterations + 1):
            started = time.perf_counter()
            path = repo / "module.py"
            path.read_text()
            path.write_text(path.read_text().replace(f"return x + {n}\n", f"return x + {n} + 0\n", 1))
            subprocess.run(["bash", "-c", "true"], cwd=repo, check=True)
            if n == iterations:
                (repo / "marker.txt").write_text("DONE\n")
            validation_started = time.perf_counter()
            subprocess.run(["bash", "-c", VALIDATE], cwd=repo)
            validation = time.perf_counter() - validation_started
            per_iteration.append(time.perf_counter() - started - validation)
    return {"orchestrator_ms_per_iteration": 1000 * statistics.mean(per_iteration)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fixloop = [run_fixloop(args.iterations) for _ in range(args.sessions)]
    bare = [run_bare(args.iterations) for _ in range(args.sessions)]
    result = {
        "sessions": args.sessions,
        "iterations_per_session": args.iterations,
        "fixloop": {k: round(statistics.median(r[k] for r in fixloop), 2) for k in fixloop[0]},
        "bare": {k: round(statistics.median(r[k] for r in bare), 2) for k in bare[0]},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    f, b = result["fixloop"], result["bare"]
    print(f"loop overhead ({args.sessions} sessions × {args.iterations} iterations, medians; model and tests excluded)")
    print(f"  orchestrator per iteration : fixloop {f['orchestrator_ms_per_iteration']:.1f} ms   "
          f"bare {b['orchestrator_ms_per_iteration']:.1f} ms")
    print(f"  per session (worktree, baseline, snapshot, commit, report): {f['session_fixed_ms']:.1f} ms")
    print(f"  trajectory bytes per iteration: {f['trajectory_bytes_per_iteration']:.0f}")
    print(f"  model request bytes per iteration: {f['request_bytes_per_iteration']:.0f}")


if __name__ == "__main__":
    main()
