"""The process a `search_code` program runs in (started by bot.search._runner, never imported).

It reads one request (program, evidence, limits) as JSON on stdin, runs the program against the
SDK, and writes one JSON answer on stdout. Before the program starts, an audit hook (PEP 578)
makes the process read-only and offline whatever the platform: no file writes or deletions, no
reads outside the repository and the interpreter, no sockets, no new processes, no ctypes. The
runner adds resource limits and, where bubblewrap is available, a mount and network namespace.

What a program may import is an allow-list, decided from the module's full dotted name and where
its spec says it comes from: the SDK from fixloop's own package, and a list of pure standard-library
modules (with the accelerators they load) from the standard library. Everything else is refused,
at every door: the import statement and importlib (the audit hook's `import` event, and a finder
that checks each spec's origin before the module loads), a native module loaded from a file under
another name (the `import` event of `_imp.create_dynamic` names the file), and a module compiled
into the interpreter (`_imp.create_builtin`, which raises no event, is replaced by one that asks the
hook first).
"""

from __future__ import annotations

import _imp
import importlib.machinery
import io
import json
import linecache
import os
import resource
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bot.search as sdk

PROGRAM_FILE = "<search_code>"
PROGRAM_API = ("files", "grep", "read", "definitions", "references", "evidence", "unique", "rank")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_FORBIDDEN = {
    "os.remove": "delete files", "os.rmdir": "delete folders", "os.rename": "rename files",
    "os.mkdir": "create folders", "os.chmod": "change permissions", "os.chown": "change owners",
    "os.truncate": "truncate files",
    "os.symlink": "create links", "os.link": "create links", "os.utime": "touch files", "os.chdir": "change folder",
    "shutil.rmtree": "delete folders", "shutil.copyfile": "copy files", "shutil.move": "move files",
    "socket.__new__": "open sockets (there is no network)",
    "socket.getaddrinfo": "resolve host names (there is no network)",
    "subprocess.Popen": "start processes", "os.system": "start processes", "os.exec": "start processes",
    "os.posix_spawn": "start processes", "os.spawn": "start processes", "os.fork": "start processes",
    "os.forkpty": "start processes", "os.kill": "send signals", "os.killpg": "send signals",
    "ctypes.dlopen": "load native code", "ctypes.dlsym": "load native code", "ctypes.cdata": "load native code",
    "os.putenv": "change the environment", "sys.addaudithook": "install audit hooks",
    "os.setxattr": "change file attributes", "os.removexattr": "change file attributes",
}
# Functions that change files or reach other processes without raising an audit event: removed
# from the program's process before it runs.
_UNAUDITED = {"os": ("mknod", "mkfifo", "pidfd_open", "memfd_create"),
              "posix": ("mknod", "mkfifo", "pidfd_open", "memfd_create"),
              "signal": ("pidfd_send_signal",)}
# Introspection that reaches any object in the process, the hook's own state among them.
_FORBIDDEN |= {"gc.get_objects": "walk the interpreter's objects", "gc.get_referrers": "walk the interpreter's objects",
               "gc.get_referents": "walk the interpreter's objects"}
# The SDK (fixloop's package, and what the SDK itself imports from it)...
_SDK = frozenset({"bot", "bot.paths", "bot.search", "bot.search._sdk", "bot.search._symbols"})
# ...and pure standard-library modules useful for searching, with the native accelerators and private
# helpers they load. Nothing here starts processes, opens sockets or loads arbitrary native code.
_STDLIB = frozenset({
    "__future__", "_bisect", "_collections_abc", "_contextvars", "_csv", "_datetime", "_decimal", "_heapq", "_json",
    "_locale", "_markupbase", "_opcode", "_pydecimal", "_random", "_sha2", "_sha512", "_statistics", "_string",
    "_strptime", "_struct", "_weakrefset", "abc", "ast", "base64", "binascii", "bisect", "calendar", "codecs",
    "collections", "collections.abc", "colorsys", "configparser", "contextlib", "contextvars", "copy", "copyreg",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "enum", "fnmatch", "fractions", "functools",
    "genericpath", "glob", "graphlib", "heapq", "html", "html.entities", "html.parser", "inspect", "ipaddress",
    "itertools", "json", "json.decoder", "json.encoder", "json.scanner", "keyword", "linecache", "locale", "math",
    "numbers", "opcode", "operator", "pathlib", "posixpath", "pprint", "random", "re", "re._casefix", "re._compiler",
    "re._constants", "re._parser", "reprlib", "shlex", "sre_compile", "sre_constants", "sre_parse", "statistics",
    "string", "struct", "textwrap", "token", "tokenize", "tomllib", "tomllib._parser", "tomllib._re",
    "tomllib._types", "types", "typing", "unicodedata", "urllib", "urllib.parse", "warnings", "weakref",
})
_STDLIB_PACKAGES = ("encodings.",)  # codecs load their encodings on first use
# What the best-known refused modules are for, so a refusal says why.
_WHY_NOT = {"subprocess": "start processes", "_posixsubprocess": "start processes",
            "multiprocessing": "start processes", "_multiprocessing": "start processes", "pty": "start processes",
            "ctypes": "load native code",
            "_ctypes": "load native code", "socket": "open sockets (there is no network)",
            "_socket": "open sockets (there is no network)", "ssl": "open sockets (there is no network)"}
_STDLIB_DIR = os.path.realpath(sysconfig.get_paths()["stdlib"])
# The base interpreter's (a venv's own platstdlib would be the venv).
_NATIVE_DIR = os.path.realpath(os.path.join(sysconfig.get_path("platstdlib", vars={"platbase": sys.base_exec_prefix}),
                                            "lib-dynload"))
_SITE_DIR = os.path.join(_STDLIB_DIR, "site-packages")


def import_policy(sdk_root: str) -> Callable[[str, str | None], str | None]:
    """The allow-list as a function of (full dotted name, origin: a spec's origin or the file being
    loaded, None when not known yet) that says why the import is refused, or None when it may go
    ahead. Everything it consults is bound here, so a program that rebinds this module's names or
    `os.path` changes nothing."""
    realpath, basename, sep = os.path.realpath, os.path.basename, os.sep
    sdk, stdlib, packages, why_not = _SDK, _STDLIB, _STDLIB_PACKAGES, dict(_WHY_NOT)
    stdlib_dir, native_dir, site_dir = _STDLIB_DIR, _NATIVE_DIR, _SITE_DIR
    native_suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)

    def refusal(name: str, origin: str | None) -> str | None:
        real = realpath(origin) if origin and origin not in ("built-in", "frozen") else None

        def under(root: str) -> bool:
            return real is not None and (real == root or real.startswith(root + sep))

        if name in sdk:
            if real is None or under(sdk_root):
                return None
            return f"{name} must come from fixloop's search SDK, not {origin}"
        if name not in stdlib and not name.startswith(packages):
            purpose = why_not.get(name.partition(".")[0]) or why_not.get(name.rpartition(".")[2])
            return (f"search programs cannot {purpose or 'import ' + name} (import {name}): they may import the SDK "
                    "and pure standard-library modules only (re, json, ast, collections, itertools, pathlib, ...)")
        if real is None:
            return None
        if real.endswith(native_suffixes):
            # A native module is a top-level standard module, loaded from the file named after it in
            # lib-dynload, and nothing else (not `encodings._posixsubprocess` from `_posixsubprocess.so`).
            if "." not in name and under(native_dir) and basename(real).startswith(name + "."):
                return None
            return f"{name} must be the standard library's own native module, not {origin}"
        if under(stdlib_dir) and not under(site_dir):
            return None
        return f"{name} must come from the standard library, not {origin}"
    return refusal


class Refused(PermissionError):
    """An operation search programs may not perform."""


class _Gate:
    """The first finder on sys.meta_path: finds a module's spec with the others, then refuses it unless
    `allowed` lets its name and origin through, before anything of the module is loaded."""

    def __init__(self, refusal: Callable[[str, str | None], str | None]) -> None:
        self.refusal = refusal

    def find_spec(self, name: str, path: Sequence[str] | None, target: object = None) -> Any:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if why := self.refusal(name, spec.origin):
                    raise Refused(why)
                return spec
        return None


def _audit(readable: tuple[str, ...], refusal: Callable[[str, str | None], str | None],
           gate: _Gate) -> Callable[[str, tuple[Any, ...]], None]:
    # Bound here, like the policy: the hook never looks up a name the program could rebind.
    create_builtin = _imp.create_builtin  # kept here only: the program reaches it through this hook alone
    module_spec, builtin_importer = importlib.machinery.ModuleSpec, importlib.machinery.BuiltinImporter
    realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep
    forbidden, write_flags = dict(_FORBIDDEN), _WRITE_FLAGS

    def inside(path: Any) -> bool:
        real = realpath(fsdecode(path))
        return any(real == root or real.startswith(root + sep) for root in readable)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)) and not inside(args[0]):
            raise Refused(f"search programs can only list the repository: {fsdecode(args[0])!r} is outside it")
        if event == "open":
            path, mode, flags = args
            writes = ((mode is not None and any(c in str(mode) for c in "wax+"))
                      or (mode is None and flags & write_flags))
            if writes:
                raise Refused(f"search programs are read-only: cannot open {path!r} for writing")
            if not isinstance(path, int) and not inside(path):  # an int is an already open descriptor
                raise Refused(f"search programs can only read the repository: {fsdecode(path)!r} is outside it")
        elif event in forbidden:
            raise Refused(f"search programs cannot {forbidden[event]} ({event})")
        elif event == "import":
            # (name, None, sys.path, sys.meta_path, ...) before finding; (name, file, None, ...) as a native file loads.
            name, origin, meta_path = str(args[0]), args[1], args[3]
            if why := refusal(name, None if origin is None else fsdecode(origin)):
                raise Refused(why)
            if isinstance(meta_path, list) and (not meta_path or meta_path[0] is not gate):
                raise Refused("search programs cannot change how modules are found (sys.meta_path)")
        elif event == "fixloop.create_builtin":
            spec, result = args
            name = str(spec.name)  # read once: a spec of the program's could answer differently the next time
            if why := refusal(name, "built-in"):
                raise Refused(why)
            result.append(create_builtin(module_spec(name, builtin_importer)))  # type: ignore[arg-type]  # as CPython does
    return hook


def _create_builtin(spec: Any) -> Any:
    """`_imp.create_builtin` as the program finds it: loading a module compiled into the interpreter
    raises no audit event of its own, so this asks the hook, which alone holds the real function."""
    result: list[Any] = []
    sys.audit("fixloop.create_builtin", spec, result)
    return result[0]


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
    sdk_root = os.path.realpath(Path(sdk.__file__).parents[1])
    readable = tuple(dict.fromkeys(os.path.realpath(p)
                                   for p in (root, sys.prefix, sys.base_prefix, sdk_root, "/dev/null")))
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
        linecache.cache[PROGRAM_FILE] = (len(request["program"]), None, request["program"].splitlines(True),
                                         PROGRAM_FILE)
        _remove_unaudited()
        refusal = import_policy(sdk_root)
        gate = _Gate(refusal)
        sys.meta_path.insert(0, gate)
        sys.addaudithook(_audit(readable, refusal, gate))
        _imp.create_builtin = _create_builtin
        exec(code, namespace)  # running the agent's program is the point; see the hook above
    except BaseException as error:  # noqa: BLE001 - the program's failure is a result for the model, whatever it is
        answer["error"] = _trimmed_traceback(error)
    if emitted:
        answer["emitted"], answer["emitted_chars"] = _encode(emitted[0], limits["output_chars"])
    answer["printed"], answer["printed_dropped"] = printed.kept.getvalue(), printed.dropped
    real_stdout.write(json.dumps(answer, ensure_ascii=False))
    real_stdout.flush()


if __name__ == "__main__":
    main()
