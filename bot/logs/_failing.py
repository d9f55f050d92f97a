"""Failing test ids in a log, for every runner fixloop knows (used to triage the failing tests)."""

from __future__ import annotations

import re

from bot.logs._reader import clean_text

_RUNNERS: list[re.Pattern[str]] = [
    # pytest: short test summary (`FAILED path::test - message`, also under xdist) and -v lines
    re.compile(r"^(?:\[gw\d+\] \[\s*\d+%\] )?FAILED (?P<id>\S+?::.+?)(?: - .*)?$"),
    re.compile(r"^(?P<id>\S+?::\S.*?) FAILED(?:\s+\[\s*\d+%\])?$"),
    # unittest: `FAIL: test_x (module.Class)` and, since Python 3.11, `(module.Class.test_x)`
    re.compile(r"^(?:FAIL|ERROR): (?P<name>\w+) \((?P<where>[\w.]+)\)"),
    # go test (subtests too)
    re.compile(r"^\s*--- FAIL: (?P<id>\S+)"),
    # Jest / Vitest / node --test: the ✕ (×, ✖) line of a test and Jest's ● heading of its failure details
    re.compile(r"^\s*(?:✕|×|✖) (?P<cross>.+?)(?: \(\d+(?:\.\d+)? ?m?s\))?$"),
    re.compile(r"^\s*● (?P<id>(?!Console$|Test suite failed to run$)[^:]+?|.+ › .+)$"),
    # cargo test
    re.compile(r"^test (?P<id>\S+) \.\.\. FAILED$"),
    # Gradle (`Class > test() FAILED`) and Maven Surefire (`test(Class)  Time elapsed: ... <<< FAILURE!`)
    re.compile(r"^(?P<where>[\w.$]+) > (?P<name>[^\s(]+)(?:\(\))?(?: .*)? FAILED$"),
    re.compile(r"^(?:\[ERROR\]\s+)?(?P<name>\w+)\((?P<where>[\w.$]+)\)\s+Time elapsed:.*<<< (?:FAILURE|ERROR)!"),
    re.compile(r"^(?:\[ERROR\]\s+)?(?P<id>[\w.$\[\]]+)\s+Time elapsed:.*<<< (?:FAILURE|ERROR)!"),
]


def failing_tests(text: str) -> list[str]:
    """Ids of the failing tests a log reports, in order of first mention, without repeats.

    pytest `FAILED path::test` and `path::test FAILED`; unittest `FAIL: test_x (module.Class)`
    (as `module.Class.test_x`); go `--- FAIL: TestX`; Jest `✕ test` and `● Suite › test`; node `✖ test`;
    cargo `test path ... FAILED`; Gradle `Class > test() FAILED` and Maven Surefire
    `test(Class) ... <<< FAILURE!` (as `Class.test`). Timestamps and colour codes are ignored.
    """
    found: dict[str, None] = {}
    crossed: set[str] = set()  # Jest titles from ✕ lines, dropped when a ● line names them in full
    for line in clean_text(text).split("\n"):
        if not line or not any(mark in line for mark in ("FAIL", "ERROR", "✕", "×", "✖", "●")):
            continue
        for pattern in _RUNNERS:
            match = pattern.match(line)
            if not match:
                continue
            groups = match.groupdict()
            if groups.get("name"):
                name, where = groups["name"], groups["where"]
                test_id = where if where.endswith(f".{name}") else f"{where}.{name}"
            elif groups.get("cross"):
                test_id = groups["cross"].strip()
                crossed.add(test_id)
            else:
                test_id = groups["id"].strip()
            found.setdefault(test_id, None)
            break
    named = {test_id.rsplit(" › ", 1)[-1] for test_id in found if " › " in test_id}
    return [test_id for test_id in found if not (test_id in crossed and test_id in named)]
