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
    # node --test's TAP reporter (the default where output is no terminal, as in CI)
    re.compile(r"^(?P<indent>\s*)not ok \d+ - (?P<tap>.+?)(?:\s+#.*)?$"),
    # cargo test
    re.compile(r"^test (?P<id>\S+) \.\.\. FAILED$"),
    # Gradle (`Class > test() FAILED`) and Maven Surefire (`test(Class)  Time elapsed: ... <<< FAILURE!`)
    re.compile(r"^(?P<where>[\w.$]+) > (?P<name>[^\s(]+)(?:\(\))?(?: .*)? FAILED$"),
    # (Surefire 3 puts ` -- ` before `Time elapsed`)
    re.compile(r"^(?:\[ERROR\]\s+)?(?P<name>\w+)\((?P<where>[\w.$]+)\)(?:\s+--)?\s+Time elapsed:.*"
               r"<<< (?:FAILURE|ERROR)!"),
    re.compile(r"^(?:\[ERROR\]\s+)?(?P<id>[\w.$\[\]]+)(?:\s+--)?\s+Time elapsed:.*<<< (?:FAILURE|ERROR)!"),
]


def failing_tests(text: str) -> list[str]:
    """Ids of the failing tests a log reports, in order of first mention, without repeats.

    pytest `FAILED path::test` and `path::test FAILED`; unittest `FAIL: test_x (module.Class)`
    (as `module.Class.test_x`); go `--- FAIL: TestX`; Jest `✕ test` and `● Suite › test`; node `✖ test`
    and `not ok 1 - test` (not its describe blocks);
    cargo `test path ... FAILED`; Gradle `Class > test() FAILED` and Maven Surefire
    `test(Class) ... <<< FAILURE!` (as `Class.test`). Timestamps and colour codes are ignored.
    """
    found: dict[str, None] = {}
    crossed: set[str] = set()  # Jest titles from ✕ lines, dropped when a ● line names them in full
    suites: set[str] = set()  # node's describe blocks: `▶ name` opens one; TAP ends one after its tests
    last_tap = -1  # the indentation of the last TAP result line
    for line in clean_text(text).split("\n"):
        if line.lstrip().startswith("▶ "):
            suites.add(re.sub(r" \(\d+(?:\.\d+)? ?m?s\)$", "", line.strip()[2:]))
            continue
        if tap := re.match(r"^(\s*)(?:not )?ok \d+ - ", line):
            parent, last_tap = len(tap[1]) < last_tap, len(tap[1])  # a suite's line comes after its tests
            if parent:
                continue
        if not line or not any(mark in line for mark in ("FAIL", "ERROR", "✕", "×", "✖", "●", "not ok")):
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
                if test_id in suites or test_id == "failing tests:":  # a describe block, node's summary heading
                    break
                crossed.add(test_id)
            elif groups.get("tap"):
                test_id = groups["tap"].strip()
            else:
                test_id = groups["id"].strip()
            found.setdefault(test_id, None)
            break
    named = {test_id.rsplit(" › ", 1)[-1] for test_id in found if " › " in test_id}
    return [test_id for test_id in found if not (test_id in crossed and test_id in named)]
