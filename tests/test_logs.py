"""Failure evidence from CI logs (bot.logs): vendored real logs, small synthetic ones, properties,
the CLI, and bounded memory on a large generated log."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.logs import Evidence, extract_evidence, failing_tests
from bot.logs._reader import MAX_LINE_BYTES, clean_line, clean_text, iter_blocks
from bot.logs.cli import add_parser
from bot.tokens import estimate_tokens

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "ci_logs"
LINT_REACT = FIXTURES / "logdx" / "lint-react-001"
GO_TESTS = FIXTURES / "cidiff" / "quick-checks-run131"
MAVEN_CR = FIXTURES / "cidiff" / "npefix_1847"
GH_PREFIX = FIXTURES / "cidiff" / "cidiff_11"

MARKER = re.compile(r"^\[\.\.\. (\d+) lines? omitted \.\.\.\]$")
NUMBERED = re.compile(r"^(\d+): (.*)$", re.DOTALL)


# --- helpers ---------------------------------------------------------------------------------


def kept(evidence: Evidence) -> set[int]:
    return {n for first, last in evidence.lines for n in range(first, last + 1)}


def count_lines(data: bytes) -> int:
    lines = re.split(rb"\r\n|\r|\n", data)
    return len(lines) - (1 if lines[-1] == b"" else 0)


def check_shape(evidence: Evidence, budget: int) -> None:
    """Budget, ranges and text agree with each other, whatever the log."""
    assert evidence.tokens == estimate_tokens(evidence.text)
    assert evidence.tokens <= budget
    previous_last = -1
    for first, last in evidence.lines:
        assert 1 <= first <= last <= evidence.total_lines
        assert first > previous_last + 1, f"ranges must be ordered and merged: {evidence.lines}"
        previous_last = last
    if not evidence.text:
        assert evidence.lines == []
        return
    shown: list[int] = []
    position = 0  # lines accounted for so far
    for part in evidence.text.split("\n"):
        marker = MARKER.match(part)
        if marker:
            assert int(marker.group(1)) > 0
            position += int(marker.group(1))
            continue
        numbered = NUMBERED.match(part)
        assert numbered, f"neither a numbered line nor a marker: {part!r}"
        number = int(numbered.group(1))
        assert number == position + 1, f"line {number} after {position} lines: a gap without its marker"
        shown.append(number)
        position = number
    assert position == evidence.total_lines, "the text must account for every line of the log"
    assert shown == sorted(kept(evidence))


def gha(lines: list[str], start: str = "2024-05-01T12:00:00") -> str:
    """A GitHub Actions log: a timestamp before every line."""
    return "".join(f"{start}.{i:07d}Z {line}\n" for i, line in enumerate(lines))


def filler(count: int, word: str = "step") -> list[str]:
    return [f"{word} {i}: downloading package number {i} and unpacking it" for i in range(count)]


def logdx_lines(case: Path, importance: str | None = None) -> set[int]:
    signals = json.loads((case / "ground_truth.json").read_text())["required_signals"]
    return {
        n
        for signal in signals
        if importance is None or signal["importance"] == importance
        for first, last in signal["evidence_lines"]
        for n in range(first, last + 1)
    }


def cidiff_lines(case: Path) -> set[int]:
    lines: set[int] = set()
    for row in (case / "groundtruth").read_text().splitlines()[1:]:
        kind, _, span = row.partition(" ")
        if kind == "E":
            first, _, last = span.partition("-")
            lines |= set(range(int(first), int(last or first) + 1))
    return lines


# --- vendored real logs ----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [300, 1000, 4000])
def test_real_github_actions_log_keeps_the_critical_lines(budget: int) -> None:
    log = LINT_REACT / "raw.log"
    evidence = extract_evidence(log, budget=budget)
    check_shape(evidence, budget)
    assert evidence.total_lines == count_lines(log.read_bytes()) == 292
    assert logdx_lines(LINT_REACT, "critical") <= kept(evidence)
    assert "276: ##[error]Process completed with exit code 1." in evidence.text.split("\n")
    # within the budget (all of it: the log is bigger), and clean: no timestamps, no colour codes
    assert 0.95 * budget <= evidence.tokens <= budget
    assert "\x1b" not in evidence.text
    assert not re.search(r"^\d+: \d{4}-\d\d-\d\dT", evidence.text, re.MULTILINE)


def test_real_go_test_failure_with_its_passing_log() -> None:
    evidence = extract_evidence(GO_TESTS / "fail.log", GO_TESTS / "pass.log", budget=1500)
    check_shape(evidence, 1500)
    labelled = cidiff_lines(GO_TESTS)
    assert len(kept(evidence) & labelled) >= 0.7 * len(labelled)
    assert "--- FAIL: TestCloud_applyBasic (0.01s)" in evidence.text
    assert "##[error]Process completed with exit code 1." in evidence.text
    assert failing_tests((GO_TESTS / "fail.log").read_text())[:3] == [
        "TestCloud_applyBasic",
        "TestCloud_applyNoApprove",
        "TestCloud_applyApprovedExternally",
    ]
    assert failing_tests((GO_TESTS / "pass.log").read_text()) == []


def test_real_maven_log_with_lone_carriage_returns_and_colours() -> None:
    data = (MAVEN_CR / "fail.log").read_bytes()
    assert data.count(b"\r") > data.count(b"\n")  # the point of this sample
    evidence = extract_evidence(MAVEN_CR / "fail.log", MAVEN_CR / "pass.log", budget=800)
    check_shape(evidence, 800)
    assert evidence.total_lines == count_lines(data) == 938
    assert cidiff_lines(MAVEN_CR) <= kept(evidence)
    assert ("917: [ERROR] /builds/workspace/npefix/src/main/java/fr/inria/spirals/npefix/patchTemplate/"
            "VariableFinder.java:[107,64]" in evidence.text)
    assert "\x1b" not in evidence.text and "[1;31m" not in evidence.text


def test_real_gh_run_view_log_prefixes_are_stripped() -> None:
    evidence = extract_evidence(GH_PREFIX / "fail.log", GH_PREFIX / "pass.log", budget=600)
    check_shape(evidence, 600)
    assert cidiff_lines(GH_PREFIX) <= kept(evidence)
    assert "242: LogDifferTest > testGithubParsing() FAILED" in evidence.text.split("\n")
    assert "build-test-deploy\t" not in evidence.text and "2021-12-01T" not in evidence.text
    assert failing_tests((GH_PREFIX / "fail.log").read_text()) == ["LogDifferTest.testGithubParsing"]


def test_budgets_are_respected_and_used_on_a_real_log() -> None:
    log = GO_TESTS / "fail.log"
    sizes = []
    for budget in (40, 100, 250, 600, 1500, 3000):
        evidence = extract_evidence(log, budget=budget)
        check_shape(evidence, budget)
        if 100 <= budget <= 600:  # more evidence than that in this log: the budget is used
            assert evidence.tokens >= 0.8 * budget
        sizes.append(len(kept(evidence)))
    assert sizes == sorted(sizes) and sizes[-1] > 60
    assert evidence.tokens >= 0.95 * 3000  # what the evidence leaves is filled with context


def test_blank_lines_and_rulers_never_stand_alone() -> None:
    for folder in (GO_TESTS, MAVEN_CR, GH_PREFIX):
        for budget in (30, 60, 120, 400, 2000):
            evidence = extract_evidence(folder / "fail.log", folder / "pass.log", budget=budget)
            texts = dict(NUMBERED.match(part).groups() for part in evidence.text.split("\n") if NUMBERED.match(part))  # type: ignore[union-attr]
            for first, last in evidence.lines:
                block = [texts[str(n)] for n in range(first, last + 1)]
                assert any(re.search(r"[A-Za-z0-9]", line) for line in block), (folder.name, budget, first, block)


# --- the final error summary -------------------------------------------------------------------


PYTEST_JOB = gha(
    ["##[group]Run pytest -q", *filler(3000), "E       assert 1 == 2", *filler(50, "more"),
     "FAILED tests/test_a.py::test_one - assert 1 == 2",
     "========================= 1 failed, 9 passed in 0.12s =========================",
     "##[error]Process completed with exit code 1.", "Post job cleanup.", *filler(20, "cleanup")]
)  # fmt: skip


@pytest.mark.parametrize("budget", [20, 25, 40, 80, 200])
def test_the_final_error_summary_survives_a_tiny_budget(budget: int) -> None:
    evidence = extract_evidence(PYTEST_JOB, budget=budget)
    check_shape(evidence, budget)
    assert 3055 in kept(evidence)  # the `##[error]Process completed with exit code 1.` line
    assert "\n3055: ##[error]Proces" in evidence.text
    if budget >= 40:
        assert "3055: ##[error]Process completed with exit code 1." in evidence.text.split("\n")
    if budget >= 80:
        assert "3054: ===" in evidence.text  # the test runner's result line comes next


@pytest.mark.parametrize("budget", [1, 5, 14])
def test_below_the_final_summary_nothing_else_is_shown(budget: int) -> None:
    evidence = extract_evidence(PYTEST_JOB, budget=budget)
    check_shape(evidence, budget)
    assert evidence.lines == []
    assert evidence.text in ("", "[... 3076 lines omitted ...]")


def test_a_long_final_summary_is_cut_to_fit_not_dropped() -> None:
    summary = "FAILED (failures=3, errors=1) " + "x" * 2000
    log = "\n".join([*filler(500), "Ran 40 tests in 1.234s", "", summary]) + "\n"
    evidence = extract_evidence(log, budget=60)
    check_shape(evidence, 60)
    assert kept(evidence) >= {503}
    assert "503: FAILED (failures=3, errors=1) xxx" in evidence.text
    assert evidence.text.split("\n")[1].endswith("…")


def test_the_last_failure_block_wins_over_an_earlier_one() -> None:
    earlier = ["Traceback (most recent call last):", '  File "old.py", line 3, in <module>',
               "ValueError: early problem"]
    later = ["Traceback (most recent call last):", '  File "new.py", line 9, in <module>', "KeyError: 'the real one'"]
    log = "\n".join([*filler(100), *earlier, *filler(2000, "build"), *later, *filler(5, "teardown")]) + "\n"
    evidence = extract_evidence(log, budget=60)
    check_shape(evidence, 60)
    assert "KeyError: 'the real one'" in evidence.text
    assert "ValueError: early problem" not in evidence.text
    generous = extract_evidence(log, budget=400)
    assert "ValueError: early problem" in generous.text and "KeyError: 'the real one'" in generous.text


def test_a_log_that_fits_is_shown_whole() -> None:
    log = "collecting...\nerror: it broke\nexit status 1\n"
    evidence = extract_evidence(log, budget=100)
    assert evidence == Evidence(
        lines=[(1, 3)], tokens=estimate_tokens(evidence.text), total_lines=3,
        text="1: collecting...\n2: error: it broke\n3: exit status 1",
    )  # fmt: skip


def test_a_long_log_that_fits_is_shown_whole() -> None:
    log = LINT_REACT / "raw.log"  # 292 lines, most of them far from any error
    evidence = extract_evidence(log, budget=8000)
    check_shape(evidence, 8000)
    assert evidence.lines == [(1, 292)] and "omitted" not in evidence.text
    quiet = "\n".join([*filler(500), "error: it broke", "exit status 1"]) + "\n"
    evidence = extract_evidence(quiet, budget=estimate_tokens(quiet) + 1000)
    assert evidence.lines == [(1, 502)]
    assert evidence.text.split("\n")[0] == "1: step 0: downloading package number 0 and unpacking it"


def test_unused_budget_is_filled_with_the_context_nearest_the_failure() -> None:
    log = gha(["##[group]Run make", *filler(3000), "error: the build broke", *filler(5, "after"),
               "##[error]Process completed with exit code 1.", *filler(5, "cleanup")])  # fmt: skip
    evidence = extract_evidence(log, budget=1000)
    check_shape(evidence, 1000)
    assert evidence.tokens >= 0.95 * 1000
    final = 3008  # the `##[error]` line
    assert set(range(final - 40, final + 1)) <= kept(evidence)  # the lines right above the failure
    assert not kept(evidence) & set(range(2, 2500))  # not the start of the log


SCRIPT = ["set -e", "npm run build", "du -sk dist/ > size.txt",
          './scripts/check-bundle-size.sh "$(cat size.txt)" 500', "echo bundle ok"]  # fmt: skip
STEPS = [
    "##[group]Run actions/checkout@v4", "with:", "  fetch-depth: 1", "##[endgroup]", *filler(300, "checkout"),
    "##[group]Run npm ci", "npm ci", "shell: /usr/bin/bash -e {0}", "##[endgroup]", *filler(300, "install"),
    "##[group]Run set -e", *SCRIPT, "shell: /usr/bin/bash -e {0}", "env:", "  NODE_ENV: production", "##[endgroup]",
    *filler(800, "bundle"), "bundle is 512 kB, over the 500 kB allowed",
    "##[error]Process completed with exit code 1.", "Post job cleanup.", *filler(10, "cleanup"),
]  # fmt: skip


def test_step_headers_and_the_echoed_script_of_the_failed_step_are_evidence() -> None:
    evidence = extract_evidence(gha(STEPS), budget=300)
    check_shape(evidence, 300)
    lines = evidence.text.split("\n")
    failed_step = STEPS.index("##[group]Run set -e") + 1  # then the script the runner echoes
    assert f"{failed_step}: ##[group]Run set -e" in lines
    for offset, line in enumerate(SCRIPT, start=1):
        assert f"{failed_step + offset}: {line}" in lines
    # the other steps' names orient the reader too
    assert "1: ##[group]Run actions/checkout@v4" in lines and "305: ##[group]Run npm ci" in lines
    assert f"{STEPS.index('bundle is 512 kB, over the 500 kB allowed') + 1}: bundle is 512 kB" in evidence.text


PNPM_AUDIT = [
    "┌─────────────────────┬────────────────────────────────────────────────────────┐",
    "│ high                │ Prototype Pollution in lodash                          │",
    "├─────────────────────┼────────────────────────────────────────────────────────┤",
    "│ Package             │ lodash                                                 │",
    "├─────────────────────┼────────────────────────────────────────────────────────┤",
    "│ Vulnerable versions │ <4.17.21                                               │",
    "├─────────────────────┼────────────────────────────────────────────────────────┤",
    "│ Paths               │ . > webpack-dev-server > lodash                        │",
    "└─────────────────────┴────────────────────────────────────────────────────────┘",
    "┌─────────────────────┬────────────────────────────────────────────────────────┐",
    "│ moderate            │ Regular Expression Denial of Service in trim           │",
    "├─────────────────────┼────────────────────────────────────────────────────────┤",
    "│ Package             │ trim                                                   │",
    "└─────────────────────┴────────────────────────────────────────────────────────┘",
    "2 vulnerabilities found",
    "Severity: 1 moderate | 1 high",
]
LINT_TABLE = [
    "+----------------+------+----------+---------------------------+",
    "| File           | Line | Severity | Rule                      |",
    "+----------------+------+----------+---------------------------+",
    "| src/app.ts     | 12   | error    | no-unused-vars            |",
    "| src/util.ts    | 3    | error    | @typescript-eslint/no-any |",
    "+----------------+------+----------+---------------------------+",
]


def test_audit_and_lint_table_rows_are_evidence() -> None:
    # far from the end of the log: only recognising the rows finds them
    log = ["##[group]Run pnpm audit", "pnpm audit --audit-level high", "##[endgroup]", *filler(200),
           *PNPM_AUDIT, *filler(200, "lint"), *LINT_TABLE, *filler(1500, "later"),
           "##[error]Process completed with exit code 1."]  # fmt: skip
    evidence = extract_evidence(gha(log), budget=600)
    check_shape(evidence, 600)
    lines = evidence.text.split("\n")
    audit, table = log.index(PNPM_AUDIT[0]), log.index(LINT_TABLE[0])  # 0-based: the line before each row
    for offset in (1, 3, 5, 10, 12, 14, 15):  # severity rows, the packages, the totals
        assert f"{audit + offset + 1}: {PNPM_AUDIT[offset]}" in lines
    for offset in (1, 3, 4):
        assert f"{table + offset + 1}: {LINT_TABLE[offset]}" in lines


def test_empty_and_invalid_input() -> None:
    assert extract_evidence("") == Evidence(lines=[], tokens=0, text="", total_lines=0)
    assert extract_evidence(b"\n").total_lines == 1
    with pytest.raises(ValueError):
        extract_evidence("error", budget=0)
    with pytest.raises(TypeError):
        extract_evidence(123)  # type: ignore[arg-type]


# --- GitHub Actions markup, colours, encodings, line ends ------------------------------------------


def test_github_actions_timestamps_colours_and_annotations() -> None:
    log = gha(
        ["##[group]Run npm test", "\x1b[36;1mnpm test\x1b[0m", "shell: /usr/bin/bash -e {0}", "##[endgroup]",
         *filler(400), "\x1b[31mFAIL\x1b[39m src/sum.test.js", "  \x1b[1m● sum › adds\x1b[22m",
         "    Expected: \x1b[32m3\x1b[39m", "    Received: \x1b[31m4\x1b[39m", *filler(30, "jest"),
         "::error file=src/sum.js,line=2::sum is wrong", "##[error]Process completed with exit code 1."]
    )  # fmt: skip
    evidence = extract_evidence(log, budget=150)
    check_shape(evidence, 150)
    lines = evidence.text.split("\n")
    assert "405: FAIL src/sum.test.js" in lines
    assert "406:   ● sum › adds" in lines
    assert "408:     Received: 4" in lines
    assert "439: ::error file=src/sum.js,line=2::sum is wrong" in lines
    assert "440: ##[error]Process completed with exit code 1." in lines
    assert "1: ##[group]Run npm test" in lines  # the failing step's command
    assert "\x1b" not in evidence.text and "2024-05-01T" not in evidence.text


def test_caret_escaped_colour_codes_are_stripped() -> None:
    assert clean_line("^[[31mFAILED^[[0m tests/a.py::^[[1mtest_x^[[0m - boom") == "FAILED tests/a.py::test_x - boom"
    assert clean_line("2024-05-01T12:00:00.1234567Z \x1b[1;31merror\x1b[0m: x\x07  ") == "error: x"
    assert clean_line("job\tstep name\t2024-05-01T12:00:00.0000000Z hello") == "hello"
    assert clean_line("keep\ttabs\there") == "keep\ttabs\there"


def test_non_utf8_bytes_do_not_crash() -> None:
    log = (b"build \xff\xfe started\n" + b"compiling caf\xe9\n" * 300
           + b"error: bad byte \xc3\x28 in input\nexit status 2\n")
    evidence = extract_evidence(log, budget=80)
    check_shape(evidence, 80)
    assert "302: error: bad byte \ufffd( in input" in evidence.text
    assert "303: exit status 2" in evidence.text
    latin1 = "Fehler: Datei nicht gefunden – Prüfung fehlgeschlagen\n".encode("latin-1", "replace") * 3
    check_shape(extract_evidence(latin1, budget=50), 50)


def test_every_kind_of_line_end_counts_one_line(tmp_path: Path) -> None:
    log = b"one\r\ntwo\rthree\nfour\r\n\r\nsix\rerror: seven"
    assert extract_evidence(log).total_lines == 7
    path = tmp_path / "ends.log"
    path.write_bytes(log)
    evidence = extract_evidence(path)
    assert evidence.total_lines == 7 and "7: error: seven" in evidence.text


@given(
    st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", "é".encode(), b"\xff", b"error", b" "]), max_size=40),
    st.integers(min_value=1, max_value=9),
)
def test_blocks_split_line_ends_correctly_at_any_chunk_size(pieces: list[bytes], chunk: int) -> None:
    data = b"".join(pieces)
    joined = b"\n".join(iter_blocks(io.BytesIO(data), chunk_bytes=chunk))
    expected = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert joined == (expected[:-1] if expected.endswith(b"\n") else expected)


def test_a_gigantic_line_is_cut_without_losing_count() -> None:
    data = b"x" * 300_000 + b"\rerror: after the long line\n" + b"y" * 100_000
    lines = b"\n".join(iter_blocks(io.BytesIO(data), chunk_bytes=4096)).split(b"\n")
    assert [len(line) for line in lines] == [MAX_LINE_BYTES, len(b"error: after the long line"), MAX_LINE_BYTES]
    evidence = extract_evidence(data, budget=200)
    check_shape(evidence, 200)
    assert evidence.total_lines == 3 and "2: error: after the long line" in evidence.text


_TRICKY = st.sampled_from(
    ["2024-05-01T12:00:00.1234567Z ", "2024-05-01 12:00:00,123 ", "job\tstep\t", "\x1b[31m", "\x1b[0m", "^[[1m",
     "\x1b", "^[", "[", "m", "\ufeff", "\t", " ", "\x01", "\x07", "error", "é"]
)  # fmt: skip


@given(st.lists(st.one_of(_TRICKY, st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=5)),
                max_size=12))
def test_clean_line_and_clean_text_agree(pieces: list[str]) -> None:
    line = "".join(pieces)
    assert clean_line(line) == clean_text(line)
    assert clean_text(f"{line}\nerror\n{line}") == f"{clean_line(line)}\nerror\n{clean_line(line)}"


def test_very_long_lines_are_shown_by_head_and_tail() -> None:
    long_line = "error: " + "a" * 200_000 + " THE END"
    evidence = extract_evidence("\n".join([*filler(200), long_line, "exit status 1"]) + "\n", budget=300)
    check_shape(evidence, 300)
    assert "201: error: aaa" in evidence.text and "chars ...] " in evidence.text and "THE END" in evidence.text


# --- the passing log -------------------------------------------------------------------------------


def test_lines_of_the_passing_log_are_noise() -> None:
    def run(timestamp: str, sha: str, seconds: str, tmp: str, extra: list[str]) -> str:
        return gha(
            ["##[group]Run make test", *filler(200),
             f"warning: error budget at 45% for deploy {sha} after {seconds}s in {tmp}",
             "npm ERR! deprecated request@2.88.2: request has been deprecated",
             *filler(300, "test"), *extra, "make: *** [Makefile:12: test] Error 2",
             "##[error]Process completed with exit code 2."],
            start=timestamp,
        )  # fmt: skip

    failing = run("2024-06-01T08:00:00", "3f9a1c2e7b", "12.5", "/tmp/pytest-of-runner/pytest-7",
                  ["Segfault in parser: exit status 139"])
    passing = run("2024-05-30T17:45:10", "a81e0d44c3", "9.1", "/tmp/pytest-of-runner/pytest-3", [])
    alone = extract_evidence(failing, budget=70)
    with_pass = extract_evidence(failing, passing, budget=70)
    check_shape(alone, 70)
    check_shape(with_pass, 70)
    assert "npm ERR! deprecated" in alone.text  # without the passing log it looks like an error
    assert "npm ERR! deprecated" not in with_pass.text and "error budget" not in with_pass.text
    assert "Segfault in parser: exit status 139" in with_pass.text


def test_lines_only_the_failed_log_has_are_preferred() -> None:
    def run(start: str, seconds: float, mirror: str, end: str) -> str:
        return gha(
            ["##[group]Run ./ci.sh", *(f"compiling module {i} in {seconds + i / 10:.2f}s" for i in range(60)),
             f"using registry mirror {mirror}.example.com",
             *(f"linking target {i} took {seconds * i:.1f}ms" for i in range(40)), end],
            start=start,
        )  # fmt: skip

    failing = run("2024-06-01T08:00:00", 1.5, "eu-west-3", "##[error]Process completed with exit code 1.")
    passing = run("2024-05-30T17:45:10", 0.7, "us-east-1", "Job succeeded")
    new_line = "62: using registry mirror eu-west-3.example.com"  # the one line the passing run lacks
    alone = extract_evidence(failing, budget=150)
    diffed = extract_evidence(failing, passing, budget=150)
    check_shape(alone, 150)
    check_shape(diffed, 150)
    assert new_line not in alone.text.split("\n")  # alone, the lines nearest the failure win
    assert new_line in diffed.text.split("\n")  # with the passing log, the line that differs does
    assert "103: ##[error]Process completed with exit code 1." in diffed.text.split("\n")


# --- failing tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            "tests/test_a.py::test_x FAILED                    [ 50%]\n"
            "=========================== short test summary info ============================\n"
            "FAILED tests/test_a.py::test_x - AssertionError: assert 1 == 2\n"
            "FAILED tests/test_b.py::TestK::test_y[param with space-1] - ValueError\n"
            "[gw1] [ 75%] FAILED tests/test_c.py::test_z\n"
            "ERROR tests/test_d.py - ImportError\n"
            "==================== 3 failed, 10 passed in 0.52s ====================\n",
            ["tests/test_a.py::test_x", "tests/test_b.py::TestK::test_y[param with space-1]",
             "tests/test_c.py::test_z"],
            id="pytest",
        ),
        pytest.param(
            "FAIL: test_add (test_calc.TestCalc)\n----\nERROR: test_div (test_calc.TestCalc.test_div)\n"
            "FAILED (failures=1, errors=1)\n",
            ["test_calc.TestCalc.test_add", "test_calc.TestCalc.test_div"],
            id="unittest",
        ),
        pytest.param(
            "=== RUN   TestParse\n--- FAIL: TestParse (0.00s)\n    --- FAIL: TestParse/empty (0.00s)\n"
            "        parse_test.go:12: got 1, want 2\n--- PASS: TestOther (0.00s)\nFAIL\n",
            ["TestParse", "TestParse/empty"],
            id="go",
        ),
        pytest.param(
            "FAIL src/sum.test.js\n  math\n    ✓ multiplies (2 ms)\n    ✕ adds (5 ms)\n    ✕ subtracts\n\n"
            "  ● math › adds\n\n    expect(received).toBe(expected)\n  ● math › subtracts\n  ● Console\n"
            "Tests:       2 failed, 1 passed, 3 total\n",
            ["math › adds", "math › subtracts"],
            id="jest",
        ),
        pytest.param(
            "test tests::parses ... ok\ntest tests::rejects_empty ... FAILED\n\nfailures:\n"
            "test result: FAILED. 1 passed; 1 failed; 0 ignored\n",
            ["tests::rejects_empty"],
            id="cargo",
        ),
        pytest.param(
            "[ERROR] testFoo(com.example.BarTest)  Time elapsed: 0.01 s  <<< FAILURE!\n"
            "BazTest > handlesNull() FAILED\n> Task :test FAILED\n",
            ["com.example.BarTest.testFoo", "BazTest.handlesNull"],
            id="maven-gradle",
        ),
        pytest.param(
            "[ERROR] Tests run: 2, Failures: 1, Errors: 0, Skipped: 0, Time elapsed: 0.04 s <<< FAILURE! -- in "
            "com.example.StockTest\n"
            "[ERROR] com.example.StockTest.totals -- Time elapsed: 0.012 s <<< FAILURE!\n"
            "[ERROR] parses(com.example.SkuTest) -- Time elapsed: 0.003 s <<< ERROR!\n",
            ["com.example.StockTest.totals", "com.example.SkuTest.parses"],
            id="surefire-3",
        ),
        pytest.param(
            "TAP version 13\n# Subtest: cart\n    not ok 1 - adds up prices\n    ok 2 - makes slugs\n"
            "not ok 1 - cart\nnot ok 2 - reserves payment in time\n",
            ["adds up prices", "reserves payment in time"],
            id="node-tap",
        ),
    ],
)
def test_failing_tests_for_each_runner(log: str, expected: list[str]) -> None:
    assert failing_tests(log) == expected
    assert failing_tests(gha(log.splitlines())) == expected  # timestamps make no difference


def test_failing_tests_ignore_colours_and_repeats() -> None:
    log = "\x1b[31mFAILED\x1b[0m tests/a.py::\x1b[1mtest_x\x1b[0m - boom\nFAILED tests/a.py::test_x - boom\n"
    assert failing_tests(log) == ["tests/a.py::test_x"]
    assert failing_tests("all 12 tests passed\nok\n") == []


# --- the command line ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fixloop")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("logs", "extract", str(GO_TESTS / "fail.log"), "--passing", str(GO_TESTS / "pass.log"),
                 "--budget", "500", "--json")
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"lines", "tokens", "text"}
    assert all(isinstance(span, list) and len(span) == 2 for span in printed["lines"])
    evidence = extract_evidence(GO_TESTS / "fail.log", GO_TESTS / "pass.log", budget=500)
    assert printed == {"lines": [list(span) for span in evidence.lines], "tokens": evidence.tokens,
                       "text": evidence.text}
    assert printed["tokens"] <= 500


def test_cli_prints_the_excerpt_with_the_default_budget(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("logs", "extract", str(LINT_REACT / "raw.log"))
    assert args.budget == 4000
    assert args.handler(args) == 0
    assert capsys.readouterr().out == extract_evidence(LINT_REACT / "raw.log").text + "\n"


def test_cli_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = (MAVEN_CR / "fail.log").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    args = parse("logs", "extract", "-", "--budget", "300")
    assert args.handler(args) == 0
    assert capsys.readouterr().out == extract_evidence(data, budget=300).text + "\n"


def test_cli_missing_or_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    args = parse("logs", "extract", str(tmp_path / "nope.log"))
    with pytest.raises(ConfigError, match=r"nope\.log does not exist.*gh run view"):
        args.handler(args)
    args = parse("logs", "extract", str(GO_TESTS / "fail.log"), "--pass-log", str(tmp_path))
    with pytest.raises(ConfigError, match="is a folder"):
        args.handler(args)


def test_cli_rejects_bad_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-5", "lots"):
        with pytest.raises(SystemExit) as exit_info:
            parse("logs", "extract", "x.log", "--budget", bad)
        assert exit_info.value.code == 2
    assert "--budget" in capsys.readouterr().err


# --- properties ----------------------------------------------------------------------------------

LINE = st.one_of(
    st.sampled_from([
        "", "ok", "error: it broke", "FAILED tests/a.py::test_x - boom", "E       assert 1 == 2",
        "##[error]Process completed with exit code 1.", "    at Foo.bar (foo.js:1:2)", "--- FAIL: TestX (0.0s)",
        "##[group]Run make", "##[endgroup]", "Traceback (most recent call last):", "= 1 failed in 0.1s =",
        "\x1b[31mred\x1b[0m", "2024-01-01T00:00:00.0000000Z timestamped error", "ünïcödé ✕ ● ×", "\r",
    ]),
    st.text(max_size=120),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, max_size=150), st.integers(min_value=1, max_value=400), st.booleans())
def test_any_log_any_budget(lines: list[str], budget: int, with_pass: bool) -> None:
    log = "\n".join(lines)
    evidence = extract_evidence(log, log[: len(log) // 2] if with_pass else None, budget=budget)
    check_shape(evidence, budget)
    assert evidence.total_lines == count_lines(log.encode("utf-8", "replace"))


# --- bounded memory ----------------------------------------------------------------------------

# Peak memory of the child itself (see tests/memory.py).
_MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from bot.logs import extract_evidence
    from tests.memory import memory_kb

    extract_evidence("error: warm up\\n" * 100, budget=100)
    before = memory_kb("VmRSS")
    evidence = extract_evidence(Path(sys.argv[1]), budget=2000)
    peak = memory_kb("VmHWM")
    print(json.dumps({"growth_kb": peak - before, "text": evidence.text, "total": evidence.total_lines}))
    """
)


def test_a_large_log_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    noise = [
        f"2024-05-01T12:00:00.0000000Z Downloading https://example.org/pkg_{i}.whl ({i} kB) \x1b[32mok\x1b[0m\n"
        for i in range(1000)
    ]
    chunk = "".join(noise * 10).encode()  # ~1 MB
    with path.open("wb") as out:
        for i in range(50):
            out.write(chunk)
            if i == 25:
                out.write(b"2024-05-01T12:30:00.0000000Z E       AssertionError: assert parse('1') == 2\n")
        out.write(b"2024-05-01T13:00:00.0000000Z ##[error]Process completed with exit code 1.\n")
    size = path.stat().st_size
    assert size > 45_000_000
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(ROOT)], check=True, capture_output=True, text=True, timeout=120
    )
    measured = json.loads(result.stdout)
    growth_bytes = measured["growth_kb"] * 1024
    assert growth_bytes < size / 4, f"peak RSS grew by {growth_bytes / 1e6:.1f} MB on a {size / 1e6:.0f} MB log"
    assert measured["total"] == 500_002
    assert "E       AssertionError: assert parse('1') == 2" in measured["text"]
    assert measured["text"].endswith("500002: ##[error]Process completed with exit code 1.")
