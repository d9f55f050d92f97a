"""unittest (`python -m unittest`): its summary of failures is read from the output."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from bot.frameworks.base import FailedTest, Framework, Results, Run, capped, relative_to, runs

_HEADER = re.compile(r"^(?:FAIL|ERROR): (?P<name>\S+) \((?P<where>[^)]*)\)(?P<rest>.*)$", re.MULTILINE)
_RULE = re.compile(r"^(?:-{70}|={70})$", re.MULTILINE)
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+)', re.MULTILINE)
_INTERPRETER = re.compile(r"(?:^|[\s;&|(`])(?P<python>\S*python[\d.]*)\s+-m\s+unittest\b")
_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)


class Unittest(Framework):
    name = "unittest"
    orders = "given"

    def recognises(self, root: Path) -> bool:
        return False  # nothing in a repository says unittest rather than pytest, which runs its tests too

    def recognises_command(self, command: str) -> bool:
        return runs(command, r"-m\s+unittest")

    def results(self, run: Run, output: str) -> Results | None:
        ran = _RAN.search(output)
        if ran is None:
            return None
        failed = []
        for header in _HEADER.finditer(output):
            # "name (module.Class.name)" since Python 3.11, "name (module.Class)" before.
            where, name = header["where"], header["name"]
            test_id = where if where.endswith("." + name) else f"{where}.{name}"
            body = output[header.end():].lstrip("\n")
            if (rule := _RULE.match(body)) is not None:
                body = body[rule.end():]
            end = _RULE.search(body)
            block = body[: end.start() if end else None].strip()
            frames = [(relative_to(m["file"], run.root), int(m["line"])) for m in _FRAME.finditer(block)]
            inside = [f for f in frames if not Path(f[0]).is_absolute() and "site-packages" not in f[0]]
            file, line = inside[-1] if inside else (None, None)
            lines = block.splitlines()
            failed.append(FailedTest(id=test_id + header["rest"].rstrip(), file=file, line=line,
                                     message=capped(lines[-1] if lines else "", 500), details=capped(block)))
        return Results(int(ran[1]), failed)

    def focus(self, command: str, ids: Sequence[str]) -> str | None:
        """The command's own interpreter running the tests `ids`."""
        interpreter = _INTERPRETER.search(command)
        if self.run is not None or interpreter is None or not ids:
            return super().focus(command, ids)
        return f"{interpreter['python']} -m unittest " + " ".join(map(shlex.quote, ids))

    def run_tests(self, ids: Sequence[str], *, shuffle: bool = False) -> str | None:
        if self.run is not None or shuffle:
            return super().run_tests(ids, shuffle=shuffle)
        if not ids:
            return None
        return "python -m unittest " + " ".join(map(shlex.quote, ids))

    def matches(self, requested: str, case: str) -> bool:
        """A test (`module.Class.test`), or a class or module that holds it."""
        return case == requested or case.startswith(requested + ".")

    def suite(self) -> str:
        return "python -m unittest"
