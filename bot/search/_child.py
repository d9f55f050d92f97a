"""The process a `search_code` program runs in (started by bot.search._runner, never imported).

It reads one request (program, evidence, limits) as JSON on stdin, runs the program against the
SDK, and writes one JSON answer on stdout. Before the program starts, an audit hook (PEP 578)
makes the process read-only and offline whatever the platform: no file writes or deletions, no
reads outside the repository and the interpreter, no sockets, no new processes, no ctypes. The
runner adds resource limits and, where bubblewrap is available, a mount and network namespace.
"""

from __future__ import annotations

import io
import json
import linecache
import os
import resource
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bot.search as sdk

PROGRAM_FILE = "<search_code>"
PROGRAM_API = ("files", "grep", "read", "definitions", "references", "evidence", "unique", "rank")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_FORBIDDEN = {
    "os.remove": "delete files", "os.rmdir": "delete folders", "os.rename": "rename files", "os.mkdir": "create folders",
    "os.chmod": "change permissions", "os.chown": "change owners", "os.truncate": "truncate files",
    "os.symlink": "create links", "os.link": "create links", "os.utime": "touch files", "os.chdir": "change folder",
    "shutil.rmtree": "delete folders", "shutil.copyfile": "copy files", "shutil.move": "move files",
    "socket.__new__": "open sockets (there is no network)", "socket.getaddrinfo": "resolve host names (there is no network)",
    "subprocess.Popen": "start processes", "os.system": "start processes", "os.exec": "start processes",
    "os.posix_spawn": "start processes", "os.spawn": "start processes", "os.fork": "start processes",
    "os.forkpty": "start processes", "os.kill": "send signals", "os.killpg": "send signals",
    "ctypes.dlopen": "load native code", "ctypes.dlsym": "load native code", "ctypes.cdata": "load native code",
    "os.putenv": "change the environment", "sys.addaudithook": "install audit hooks",
    "os.setxattr": "change file attributes", "os.removexattr": "change file attributes",
}
# Functions that change files or reach other processes without raising an audit event: removed
# from the program's process before it runs.
_UNAUDITED = {"os": ("mknod", "mkfifo", "pidfd_open", "memfd_create"), "posix": ("mknod", "mkfifo", "pidfd_open", "memfd_create"),
              "signal": ("pidfd_send_signal",)}
# Modules that start processes or load native code; they are not loaded in this process (the runner
# lists the files), so their import is the way to them.
_FORBIDDEN_MODULES = {"subprocess": "start processes", "_posixsubprocess": "start processes",
                      "multiprocessing": "start processes", "_multiprocessing": "start processes",
                      "pty": "start processes", "ctypes": "load native code", "_ctypes": "load native code"}


class Refused(PermissionError):
    """An operation search programs may not perform."""


def _audit(readable: tuple[str, ...]) -> Callable[[str, tuple[Any, ...]], None]:
    def inside(path: Any) -> bool:
        real = os.path.realpath(os.fsdecode(path))
        return any(real == root or real.startswith(root + os.sep) for root in readable)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)) and not inside(args[0]):
            raise Refused(f"search programs can only list the repository: {os.fsdecode(args[0])!r} is outside it")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (mode is None and flags & _WRITE_FLAGS)
            if writes:
                raise Refused(f"search programs are read-only: cannot open {path!r} for writing")
            if not isinstance(path, int) and not inside(path):  # an int is an already open descriptor
                raise Refused(f"search programs can only read the repository: {os.fsdecode(path)!r} is outside it")
        elif event in _FORBIDDEN:
            raise Refused(f"search programs cannot {_FORBIDDEN[event]} ({event})")
        elif event == "import" and (module := str(args[0]).partition(".")[0]) in _FORBIDDEN_MODULES:
            raise Refused(f"search programs cannot {_FORBIDDEN_MODULES[module]} (import {module})")
    return hook


class PrintedTooMuch(Exception):
    pass


class _Capped(io.TextIOBase):
    """print() output, kept up to `limit` characters; the rest is counted, not stored, and a
    program that keeps printing far past it is stopped (it is looping, not searching)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.kept, self.dropped = limit, io.StringIO(), 0

    def write(self, text: str) -> int:
        room = max(self.limit - self.kept.tell(), 0)
        self.kept.write(text[:room])
        self.dropped += max(len(text) - room, 0)
        if self.dropped > 1000 * self.limit:
            raise PrintedTooMuch(f"the program printed more than {self.dropped:,} characters and was stopped; "
                                 f"print() output is cut at {self.limit:,}: return results with emit()")
        return len(text)


def _trimmed_traceback(error: BaseException) -> str:
    """The traceback reduced to the program's own lines, so the model sees what to fix in its code."""
    if isinstance(error, SyntaxError) and error.filename == PROGRAM_FILE:
        return "".join(traceback.format_exception_only(type(error), error)).strip()
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == PROGRAM_FILE]
    lines = [f"  line {f.lineno}, in {'the program' if f.name == '<module>' else f.name}: {f.line}" for f in frames]
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    if isinstance(error, MemoryError):
        message = "MemoryError: the program ran out of memory (it is limited); narrow what it loads or keeps"
    return "\n".join(["Traceback (the program's lines):", *lines, message])


_SCALARS = (str, int, float, bool, type(None))


def _encode(value: Any, limit: int) -> tuple[str, int]:
    """The emitted value as the model will read it: a string as it is; a list of flat records with
    the same keys as a table (keys once, then one tab-separated row each: JSON would repeat every
    key on every row); anything else as JSON."""
    if isinstance(value, str):
        text = value
    elif _is_table(value):
        keys = list(value[0])
        rows = ["\t".join(keys), *("\t".join(_cell(record[key]) for key in keys) for record in value)]
        text = "\n".join(rows)
    else:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    return text[:limit], len(text)


def _is_table(value: Any) -> bool:
    if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
        return False
    keys = list(value[0])
    return all(list(item) == keys and all(isinstance(v, _SCALARS) for v in item.values()) for item in value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).replace("\t", "\\t").replace("\n", "\\n")  # code's own backslashes stay readable


def _remove_unaudited() -> None:
    for module_name, names in _UNAUDITED.items():
        module = sys.modules.get(module_name)
        for name in names:
            if module is not None and hasattr(module, name):
                delattr(module, name)


def _limit_resources(limits: dict[str, int]) -> None:
    # Hard limits equal to the soft ones: the program cannot raise them again. No new processes
    # (or threads) either, where the kernel enforces it (not for root).
    memory = limits["memory_mb"] * 1024 * 1024
    for kind, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, memory),
                        (resource.RLIMIT_FSIZE, limits["answer_bytes"]), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_NPROC, 0)):
        resource.setrlimit(kind, (value, value))


def main() -> None:
    request = json.loads(sys.stdin.read())
    limits = request["limits"]
    _limit_resources(limits)
    root = os.path.realpath(".")
    sdk.configure(root, evidence=request.get("evidence") or [], listing=request["listing"])
    readable = tuple(dict.fromkeys(os.path.realpath(p) for p in (root, sys.prefix, sys.base_prefix,
                                                                  str(Path(sdk.__file__).parents[1]), "/dev/null")))
    real_stdout = sys.stdout
    printed = _Capped(limits["print_chars"])
    sys.stdout = sys.stderr = printed
    emitted: list[Any] = []

    def emit(value: Any) -> None:
        if emitted:
            raise RuntimeError("emit() was already called: call it once, with everything you want to read")
        emitted.append(value)

    namespace = {name: getattr(sdk, name) for name in PROGRAM_API} | {"emit": emit}
    answer: dict[str, Any] = {}
    try:
        code = compile(request["program"], PROGRAM_FILE, "exec")
        # So that tracebacks can quote the program's lines.
        linecache.cache[PROGRAM_FILE] = (len(request["program"]), None, request["program"].splitlines(True), PROGRAM_FILE)
        _remove_unaudited()
        sys.addaudithook(_audit(readable))
        exec(code, namespace)  # noqa: S102 - running the agent's program is the point; see the hook above
    except BaseException as error:  # noqa: BLE001 - the program's failure is a result for the model, whatever it is
        answer["error"] = _trimmed_traceback(error)
    if emitted:
        answer["emitted"], answer["emitted_chars"] = _encode(emitted[0], limits["output_chars"])
    answer["printed"], answer["printed_dropped"] = printed.kept.getvalue(), printed.dropped
    real_stdout.write(json.dumps(answer, ensure_ascii=False))
    real_stdout.flush()


if __name__ == "__main__":
    main()
