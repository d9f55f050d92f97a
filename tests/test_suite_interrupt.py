"""Ctrl-C and SIGTERM stop the suite (tests/processes.py): it ends, runs no further test, and leaves
no process behind, with xdist's workers (the default) and in one process (`-n 0`).

The suite under test is a small probe file run with this suite's own settings and plugins: the
first test waits inside a session's signal handling (which turns a signal into a cancelled session:
on its own, the test would end and the suite go on), the second in a child process, the third must
never start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import adopting_orphans

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import os, pathlib, subprocess, time
from bot.session import cancellable

def mark(name):
    pathlib.Path(os.environ["PROBE_MARKS"], name).touch()

def test_waits_in_a_session():
    mark("session")
    with cancellable():
        time.sleep(300)

def test_waits_in_a_child():
    mark("child")
    subprocess.run(["sleep", "300"])

def test_never_starts():
    mark("never")
'''


def interrupt(tmp_path: Path, workers: str, stop: str) -> tuple[int, str, float, dict[int, str]]:
    """Run the probe suite, wait until its tests are waiting, signal it; (exit code, output, seconds
    from the signal to the exit, processes left behind)."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    marks = tmp_path / "marks"
    marks.mkdir()
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
               "-p", "tests.processes", "-p", "no:cacheprovider", "-n", workers, str(tmp_path / "test_probe.py")]
    with adopting_orphans() as left_behind:
        suite = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PROBE_MARKS": str(marks)},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            waiting = {"child", "session"} if workers != "0" else {"session"}
            deadline = time.monotonic() + 120
            while {p.name for p in marks.iterdir()} < waiting and suite.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert {p.name for p in marks.iterdir()} >= waiting, "the probe's tests never started"
            time.sleep(0.3)  # into the wait
            signalled = time.monotonic()
            if stop == "ctrl-c":  # the terminal signals the whole foreground process group
                os.killpg(suite.pid, signal.SIGINT)
            else:
                suite.send_signal(signal.SIGTERM)
            output, _ = suite.communicate(timeout=60)
            took = time.monotonic() - signalled
        finally:
            if suite.poll() is None:
                os.killpg(suite.pid, signal.SIGKILL)
                suite.wait()
        time.sleep(0.2)
        left = left_behind()
    assert not (marks / "never").exists(), f"the suite went on after the signal:\n{output}"
    return suite.returncode, output, took, left


@pytest.mark.parametrize("workers", ["2", "0"])
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_signal_stops_the_suite_and_leaves_nothing_running(tmp_path, workers, stop):
    code, output, _, left = interrupt(tmp_path, workers, stop)
    assert code in (2, 130), output  # pytest's "interrupted", or the exit the suite's plugin asks for
    assert left == {}, f"left running: {left}"
    if workers == "0" and stop == "ctrl-c":  # the session's handler had it: the suite stops after that test
        assert "stopped by SIGINT" in output, output


@pytest.mark.timing
@pytest.mark.parametrize("workers", ["2", "0"])
def test_ctrl_c_stops_the_suite_within_5_seconds(tmp_path, workers):
    _, output, took, _ = interrupt(tmp_path, workers, "ctrl-c")
    assert took < 5, f"{took:.1f} s\n{output}"


FORKING = """
import multiprocessing, os, pathlib, time

def test_a_forked_child_is_stopped():
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(300,))
    child.start()
    child.terminate()
    child.join(60)
    assert child.exitcode == -15

def test_after():
    pathlib.Path(os.environ["PROBE_MARKS"], "after").touch()
"""


def test_a_signal_to_a_forked_child_does_not_stop_the_suite(tmp_path):
    (tmp_path / "test_forking.py").write_text(FORKING)
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
               "-p", "tests.processes", "-p", "no:cacheprovider", "-n", "0", str(tmp_path / "test_forking.py")]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PROBE_MARKS": str(tmp_path)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and (tmp_path / "after").exists(), result.stdout + result.stderr
