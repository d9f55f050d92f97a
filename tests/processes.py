"""A test's own process tree (Linux `/proc`), and the suite's handling of Ctrl-C and SIGTERM.

Tests look for stray processes among their own descendants, never machine-wide (`pgrep -f` also
finds other people's processes, and other tests'). A process that double-forks leaves the tree;
`adopting_orphans` makes the test process a child subreaper, so such orphans come back to it.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

import pytest

_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def set_subreaper(on: bool) -> None:
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every live process."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:  # gone meanwhile
                continue
            found[int(entry.name)] = (int(fields[1]), fields[0])
    return found


def descendants(pid: int | None = None) -> dict[int, str]:
    """Every running (not zombie) process below `pid` (default: this one), with its command line."""
    parents = _parents()
    below, frontier = [], [os.getpid() if pid is None else pid]
    while frontier:
        children = [child for child, (parent, _) in parents.items() if parent in frontier]
        below += children
        frontier = children
    commands = {}
    for child in below:
        if parents[child][1] != "Z":
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    commands[child] = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
    return commands


def kill_descendants(pid: int | None = None) -> None:
    """SIGKILL everything below `pid`, again while orphans are still being handed back to a subreaper."""
    for _ in range(20):
        found = descendants(pid)
        if not found:
            return
        _kill(found)
        time.sleep(0.05)


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGKILL)


@contextmanager
def adopting_orphans() -> Iterator[Callable[[], dict[int, str]]]:
    """Within the block, orphans of this process's children come back to it; yields a function that
    lists the processes started since the block began. Those still running at the end are killed, so
    a failing test leaves nothing behind."""
    before = set(descendants())
    set_subreaper(True)

    def started() -> dict[int, str]:
        return {pid: command for pid, command in descendants().items() if pid not in before}

    try:
        yield started
    finally:
        # Killed, not reaped: the zombies of adopted orphans are listed nowhere (`descendants` skips
        # them), and reaping could take the exit status of a child a `Popen` still waits for.
        _kill(started())
        set_subreaper(False)


# -- Ctrl-C and SIGTERM stop the suite -------------------------------------------------------------
#
# With pytest-xdist, the process the signal reaches first is the controller; the tests run in its
# workers, which xdist would give ten seconds to finish the test they are in. The controller instead
# kills every process below it at once (the workers, and what their tests started, orphans
# included: it is their subreaper) and then stops as pytest does on Ctrl-C.
#
# In one process (`-n 0`), a test that runs a session has the session's own handler, which turns the
# signal into a cancelled session: the test ends, and the suite would go on. The signal is still
# written to a wakeup file descriptor, whatever handler runs, and is read after each test.


STOP_DEADLINE = 15.0  # seconds pytest's own interrupt handling gets before the controller exits anyway


def _stop_everything(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kill_descendants()
    # The KeyboardInterrupt lands wherever the controller was; execnet's teardown of workers that are
    # already gone has been seen to hang there on a loaded machine. A stop must stop.
    threading.Thread(target=_exit_after, args=(STOP_DEADLINE, signum), daemon=True).start()
    raise KeyboardInterrupt(f"the suite was stopped by {signal.Signals(signum).name}")


def _exit_after(seconds: float, signum: int) -> None:
    time.sleep(seconds)
    os.write(2, f"\nthe suite was stopped by {signal.Signals(signum).name}; its teardown did not end within "
                f"{seconds:.0f} s, so it exits now; where it was:\n".encode())
    faulthandler.dump_traceback(all_threads=True)
    kill_descendants()
    os._exit(130)


_wakeup: tuple[int, int] | None = None
_suite_pid = os.getpid()
STOPPING = (signal.SIGINT, signal.SIGTERM)


_mask_before_fork: set[signal.Signals] = set()


def _before_fork() -> None:
    """A process a test forks (multiprocessing) is not the suite: its signals are its own. They are held
    across the fork, so none reaches the child before it has let go of the suite's handler and pipe."""
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)


def _after_fork_in_parent() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def _after_fork_in_child() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def pytest_configure(config: pytest.Config) -> None:
    global _wakeup, _suite_pid
    _suite_pid = os.getpid()
    if hasattr(config, "workerinput"):  # an xdist worker: its controller stops it
        return
    if getattr(config.option, "dist", "no") != "no":
        set_subreaper(True)
        for stopping in STOPPING:
            signal.signal(stopping, _stop_everything)
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the suite as Ctrl-C does
    _wakeup = (read, write)
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if _wakeup is not None:
        signal.set_wakeup_fd(_wakeup[1], warn_on_full_buffer=False)  # again: an asyncio loop may have reset it
    yield
    if _wakeup is None or os.getpid() != _suite_pid:
        return
    received = b""
    with suppress(BlockingIOError):
        while chunk := os.read(_wakeup[0], 4096):  # all of it: a flood of other signals must not hide one
            received += chunk
    stopping = [number for number in received if number in STOPPING]
    if stopping and not item.get_closest_marker("signals_itself"):
        kill_descendants()
        pytest.exit(f"stopped by {signal.Signals(stopping[0]).name}", returncode=130)
