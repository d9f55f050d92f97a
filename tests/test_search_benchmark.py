"""benchmarks/search_as_code.py end to end: its --json shape, the tasks answered by both strategies, and
the search programs sending fewer tokens than tool-call ping-pong.

A third of the tasks run here, for real over this interpreter's standard library; the benchmark itself
(`python benchmarks/search_as_code.py`) runs them all, and says when one is not answered (exit 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "benchmarks" / "search_as_code.py"
ROW_KEYS = {"name", "answered_ping_pong", "answered_program", "tokens_ping_pong", "tokens_program",
            "turns_ping_pong", "turns_program"}


def _task_names() -> list[str]:
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        import search_as_code
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    return [task.name for task in search_as_code.TASKS]


def test_search_benchmark_json() -> None:
    names = _task_names()[::3]
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--json", "--only", ",".join(names)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    result = json.loads(proc.stdout)

    assert set(result) == {"tasks", "total_ping_pong", "total_program"}
    assert [task["name"] for task in result["tasks"]] == names
    for task in result["tasks"]:
        assert set(task) == ROW_KEYS
        assert task["answered_ping_pong"] and task["answered_program"], task["name"]
        assert task["tokens_ping_pong"] > 0 and task["tokens_program"] > 0
        assert task["turns_ping_pong"] >= 2 and task["turns_program"] >= 2  # at least one call, then the answer
    assert result["total_ping_pong"] == sum(task["tokens_ping_pong"] for task in result["tasks"])
    assert result["total_program"] == sum(task["tokens_program"] for task in result["tasks"])
    assert proc.returncode == 0, proc.stderr
    assert result["total_program"] < result["total_ping_pong"]


def test_table_results_are_read_back() -> None:
    """The runner's table format (header of keys, one tab-separated row per record) is parsed back
    into records, so program answers are checked on what the model saw."""
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        import search_as_code as bench
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    seen = bench.Seen()
    table = ("path\tline\tscope\ttext\n"
             "a.py\t3\tK.m\t        return x\n"
             "a.py\t1\tK\tclass K:\n"
             "[emit() got 99,999 characters; only the first 10,000 are shown.]")
    seen.add(bench.program("emit(...)"), table)
    assert seen.lines == {("a.py", 3): "        return x", ("a.py", 1): "class K:"}
    assert seen.owner("a.py", 3) == "m" and seen.owner("a.py", 1) == "<module>"
    read = "path\tstart\tend\ttext\nb.py\t10\t11\tdef f():\\n    pass"
    seen.add(bench.program("emit(...)"), read)
    assert seen.lines[("b.py", 10)] == "def f():" and seen.lines[("b.py", 11)] == "    pass"
    assert seen.owner("b.py", 11) == "f"
    seen.add(bench.program("emit(...)"), "just prose, nothing to check")
    assert len(seen.lines) == 4
