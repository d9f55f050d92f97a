"""Running a shell command with a timeout, a clean kill and bounded output.

Output goes to a temporary file, not to memory, so a command printing gigabytes costs disk, not RAM;
only its head and tail are read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when the command was killed for running too long
    output: str  # stdout and stderr interleaved, capped with the middle elided
    timed_out: bool
    duration_s: float
    output_bytes: int  # the full size before capping


def cap_text(text: str, limit: int) -> str:
    """Keep the head and the tail of `text` within about `limit` characters, noting what was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 5
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters elided ...]\n{text[-tail:]}"


def _read_capped(path: Path, limit: int) -> tuple[str, int]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= limit:
            return handle.read().decode("utf-8", "replace"), size
        head = limit * 2 // 5
        tail = limit - head
        first = handle.read(head).decode("utf-8", "replace")
        handle.seek(size - tail)
        last = handle.read().decode("utf-8", "replace")
    return f"{first}\n[... {size - head - tail} bytes elided ...]\n{last}", size


def regular_file(path: Path) -> bool:
    """Whether `path` is a regular file itself (not a link, FIFO or device): a file that code the agent
    wrote could have prepared is read only then, so reading it cannot block or leave the folder."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# How many commands this process ran outside a sandbox. fixloop's own files can only have changed if
# one did (confined code sees them read-only), so their check is skipped while this stays where it was.
_unconfined = 0
_unconfined_lock = threading.Lock()


def unconfined_runs() -> int:
    """How many commands `run_shell` ran without `confined=True` in this process so far."""
    return _unconfined


def run_shell(
    command: str | list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    output_limit: int = 30_000,
    stdin: Path | None = None,
    confined: bool = False,
) -> CommandResult:
    """Run `command` (a bash script, or an argv list) in its own process group, reading `stdin`
    (a file; none by default). `confined`: the command is wrapped in a sandbox (see `unconfined_runs`).

    On timeout, cancellation or any other interruption the whole group is killed, so no
    grandchild outlives the call.
    """
    global _unconfined
    if not confined:
        with _unconfined_lock:
            _unconfined += 1
    argv = ["bash", "-c", command] if isinstance(command, str) else command
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix="fixloop-out-", delete=False) as out, \
            (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        out_path = Path(out.name)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=source,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            out_path.unlink(missing_ok=True)
            return CommandResult(127, f"could not start command: {exc}", False, 0.0, 0)
        timed_out = False
        try:
            exit_code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            exit_code, timed_out = None, True
        except BaseException:
            _kill_group(proc)
            out_path.unlink(missing_ok=True)
            raise
        else:
            # The shell is gone; stray background children it left must not outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    try:
        output, size = _read_capped(out_path, output_limit)
    finally:
        out_path.unlink(missing_ok=True)
    return CommandResult(exit_code, output, timed_out, time.monotonic() - started, size)


__all__ = ["CommandResult", "cap_text", "regular_file", "run_shell"]
