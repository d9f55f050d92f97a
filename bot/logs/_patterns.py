"""What failure evidence looks like: the line classes of common CI tools and test runners.

Three layers, from cheap to precise:

- `KEYWORDS`: lowercase byte strings; a line containing none of them is never an anchor. The
  scanner searches whole blocks for them with `bytes.find`, which is what makes hundreds of
  megabytes affordable.
- `classify`: the score of a line that has a keyword, from the regular expressions below, and
  its summary rank (the lines that close a failure: a test runner's result line, an error
  annotation, the exit code).
- `is_frame`, `is_command` and `is_separator`: the shape of lines around an anchor (stack frames,
  code excerpts, diffs, the command that ran, blank lines and rulers), which keep a block together.

`normalise`, `loose` and `skeleton` decide which lines of a passing log are "the same" line, and
`shape` which lines of one log repeat one another.

Scores are relative weights (about 0-100). The rules are about tools, never about a particular
project, so they carry over to logs fixloop has not seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

KEYWORDS: tuple[bytes, ...] = (
    b"error", b"err!", b"err_", b"fail", b"fatal", b"panic", b"exception", b"traceback", b"exit",
    b"not found", b"no such file", b"denied", b"abort", b"killed", b"timed out", b"segmentation",
    b"assert", b"cannot", b"could", b"unable to", b"refused", b"unauthorized", b"forbidden",
    b"unavailable", b"bad gateway", b"out of memory", b"no space left", b"conflict", b"rate limit", b"##[",
    b"::error", b"e   ", b"not ok",
    "✕".encode()[:2],  # also ✖ ✗ (and ✓ ✔, which classify as success)
    "●".encode(), "×".encode(), "❌".encode(),
    b"vulnerab", b"severity", b"|", "│".encode(), "┃".encode(),  # audit reports and tables
)  # fmt: skip

# Summary ranks: 3 a test runner's or build tool's result line, 2 an error annotation,
# 1 an exit status. The last line with a rank is the "final error summary".
RESULT, ANNOTATION, EXIT = 3, 2, 1


@dataclass(frozen=True)
class Kind:
    score: float
    rank: int = 0  # summary rank, 0 when the line is no summary
    name: str = ""


NONE = Kind(0.0)


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_I = re.IGNORECASE
_NONZERO = r"(?:[1-9]\d*)"

@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    score: float
    rank: int
    name: str
    hints: tuple[str, ...]  # lowercase; the rule is tried only if the lowercased line holds one


def _rule(pattern: str, score: float, rank: int, name: str, hints: str, flags: int = 0) -> _Rule:
    return _Rule(re.compile(pattern, flags), score, rank, name, tuple(hints.split("|")))


# The highest score of all matching rules wins, and the highest rank. Lines are cleaned first
# (no timestamps, no colour codes).
_RULES: list[_Rule] = [
    # --- result lines of test runners and build tools ---------------------------------------
    _rule(rf"^(?:=+ )?[^=]*\b{_NONZERO} (?:failed|errors?)\b.*\bin [\d.]+ ?s\b", 85, RESULT, "pytest-result",
          "failed|error"),
    _rule(rf"^FAILED \((?:failures|errors)={_NONZERO}", 85, RESULT, "unittest-result", "failed ("),
    _rule(rf"^Tests?:\s.*\b{_NONZERO} failed", 85, RESULT, "jest-result", "test"),
    _rule(rf"^Test Suites:\s.*\b{_NONZERO} failed", 80, RESULT, "jest-suites", "test suites"),
    _rule(r"^FAIL(?:\s*$|\t\S|\s+\S+\s+[\d.]+s\s*$)", 80, RESULT, "go-result", "fail"),
    _rule(r"test result: FAILED", 85, RESULT, "cargo-result", "test result"),
    _rule(r"^error: (?:could not compile|test failed|\d+ targets? failed|test run failed)", 80, RESULT, "cargo-error",
          "error: "),
    _rule(r"BUILD FAILURE|^BUILD FAILED|^FAILURE: Build failed", 80, RESULT, "build-failure",
          "build fail|failure: build"),
    _rule(r"^\[ERROR\] Failed to execute goal", 85, RESULT, "maven-goal", "execute goal"),
    _rule(rf"Tests run: \d+, Failures: (?:{_NONZERO}, Errors: \d+|\d+, Errors: {_NONZERO})", 75, RESULT, "junit-result",
          "tests run"),
    _rule(r"^\* What went wrong:", 80, RESULT, "gradle-what", "what went wrong"),
    _rule(rf"^Found {_NONZERO} errors?\b", 85, RESULT, "tsc-mypy-result", "found "),
    _rule(rf"^\S*\s*✖ {_NONZERO} problems?", 85, RESULT, "eslint-result", "✖"),
    _rule(rf"^{_NONZERO} errors? generated", 75, RESULT, "clang-result", "generated"),
    _rule(r"\.{4,}\s*Failed$", 80, RESULT, "pre-commit-hook", "...."),
    _rule(rf"\b{_NONZERO} (?:failed|failing|failures?|errors?)\b.*\b\d+ (?:passed|passing|succeeded|ok)\b"
          rf"|\b\d+ (?:passed|passing|succeeded|ok)\b.*\b{_NONZERO} (?:failed|failing|failures?|errors?)\b"
          rf"|\b\d+ tests?(?: run)?:.*\b{_NONZERO} (?:failed|failures?)\b|\b{_NONZERO} of \d+ tests? failed",
          80, RESULT, "counts-result", "pass|succeeded|ok|test", re.IGNORECASE),
    _rule(rf"\b{_NONZERO} (?:(?:critical|high|moderate|low|info) )?(?:severity )?vulnerabilit(?:y|ies)\b", 80, RESULT,
          "audit-result", "vulnerabilit", re.IGNORECASE),
    # --- annotations and exit statuses -----------------------------------------------------
    _rule(r"^##\[error\](?!Process completed with exit code)", 80, ANNOTATION, "gha-error", "##[error]"),
    _rule(r"^::error\b", 80, ANNOTATION, "gha-error-command", "::error"),
    _rule(rf"Process completed with exit code {_NONZERO}", 60, EXIT, "gha-exit", "process completed"),
    _rule(rf"\bexit(?:ed)?(?: with)? (?:code|status):? {_NONZERO}\b|exiting with code {_NONZERO}"
          r"|returned non-zero exit status",
          55, EXIT, "exit-code", "exit", re.IGNORECASE),
    _rule(r"make(?:\[\d+\])?: \*\*\* .*Error \d+", 60, EXIT, "make", "***"),
    _rule(r"^Finished: (?:FAILURE|UNSTABLE|ABORTED)|marked build as failure", 55, EXIT, "jenkins",
          "finished: |marked build"),
    _rule(r"did not complete successfully", 60, EXIT, "process-failed", "did not complete"),
    _rule(r"^npm ERR! code|\bELIFECYCLE\b|ERR_PNPM_\w+", 50, EXIT, "npm-exit", "npm err! code|elifecycle|err_pnpm"),
    # --- failure shapes --------------------------------------------------------------------
    _rule(r"^E {2,}\S", 70, 0, "pytest-E", "e  "),
    _rule(r"^(?:\[gw\d+\] \[\s*\d+%\] )?(?:FAILED|ERROR) \S+(?:::|\.py\b)", 70, 0, "pytest-failed", "failed |error "),
    _rule(r"^\S+::\S+.*\s(?:FAILED|ERROR)\b", 60, 0, "pytest-verbose", "::"),
    _rule(r"^=+ (?:FAILURES|ERRORS|short test summary info) =+$", 50, 0, "pytest-section", "=="),
    _rule(r"^_{3,} .*(?:test|ERROR|Error|error).* _{3,}$", 50, 0, "pytest-test-header", "___"),
    _rule(r"^\S+\.py:\d+: (?:in \S|[A-Z]\w*(?:Error|Exception|Warning)\b)", 40, 0, "pytest-location", ".py:"),
    _rule(r"^Traceback \(most recent call last\)", 55, 0, "traceback", "traceback"),
    _rule(r"^\s*(?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure|Fault)\b(?::|$)", 65, 0,
          "exception", "error|exception|exit|interrupt|failure|fault"),
    _rule(r"^\s*Caused by:", 55, 0, "caused-by", "caused by"),
    _rule(r"^(?:FAIL|ERROR): \w+ \(", 70, 0, "unittest-fail", "fail: |error: "),
    _rule(r"^\s*● (?!Console\b)\S", 70, 0, "jest-bullet", "●"),
    _rule(r"^\s*(?:✕|×|✗|❌)\s", 60, 0, "jest-cross", "✕|×|✗|❌"),
    _rule(r"^\s*FAIL\s+\S", 65, 0, "fail-line", "fail"),
    _rule(r"^\s*--- FAIL:", 70, 0, "go-fail", "--- fail"),
    _rule(r"^\s*not ok \d+", 65, 0, "tap-not-ok", "not ok"),
    _rule(r"^panic:|^fatal error:|^\s*thread '.*' panicked at", 75, 0, "panic", "panic|fatal error"),
    _rule(r"^\s*error(?:\[E\d+\])?:", 70, 0, "rust-error", "error"),
    _rule(r"^---- \S+ stdout ----$", 50, 0, "rust-test-stdout", "stdout"),
    _rule(r"^test \S+ \.\.\. FAILED", 65, 0, "rust-test", "... failed"),
    _rule(r"<<< (?:FAILURE|ERROR)!", 65, 0, "surefire", "<<<"),
    _rule(r"COMPILATION ERROR", 60, 0, "maven-compilation", "compilation error"),
    _rule(r"^\[ERROR\] .*\.java:\[\d+,\d+\]", 70, 0, "javac", ".java:["),
    _rule(r"^\[ERROR\]", 50, 0, "maven-error", "[error]"),
    _rule(r"\bFAILED$", 55, 0, "gradle-failed", "failed"),
    _rule(r"\berror TS\d+:|\(\d+,\d+\): error\b", 70, 0, "tsc", "error"),
    _rule(r"^\S+:\d+(?::\d+)?:\s*(?:fatal )?error\b", 70, 0, "compiler-error", "error"),
    _rule(r"^\s*\S+:\d+:\d+ - error\b", 70, 0, "pyright-error", "error"),
    _rule(r"undefined reference to|ld returned \d+ exit status", 65, 0, "linker", "undefined reference|ld returned"),
    _rule(r"^\s+\d+:\d+\s+error\s", 60, 0, "eslint-error", "error"),
    _rule(r"command not found|: not found$", 70, 0, "command-not-found", "not found"),
    _rule(r"No such file or directory|Permission denied", 50, 0, "os-error", "no such file|denied", re.IGNORECASE),
    _rule(r"Segmentation fault|core dumped|\bKilled\b|out of memory|No space left on device", 70, 0, "crash",
          "segmentation|core dumped|killed|out of memory|no space left", re.IGNORECASE),
    _rule(r"^\s*(?:\S+ )?(?:error|ERROR|Error)\b\s*[:!\]]|^\s*(?:\S+ )?error\s", 55, 0, "error-prefix", "error"),
    _rule(r"\bfatal:|^\s*FATAL\b|^\s*\[?fatal\]?\b", 60, 0, "fatal", "fatal", re.IGNORECASE),
    _rule(r"npm ERR!", 45, 0, "npm-err", "npm err!"),
    _rule(r"^\s*Severity:\s*(?:critical|high|moderate)\b", 50, 0, "audit-severity", "severity", re.IGNORECASE),
    _rule(r"\b(?:denied|refused|unauthorized|forbidden|timed out|unavailable|bad gateway|rate limit)", 40, 0, "service",
          "denied|refused|unauthorized|forbidden|timed out|unavailable|bad gateway|rate limit", re.IGNORECASE),
    # a failure word in prose, not inside a path, option or identifier (`errors/`, `fail-fast`)
    _rule(r"(?<![\w./-])(?:fail(?:ed|ure|ing|s)?|errors?|exception|fatal|panic(?:ked)?|abort(?:ed)?"
          r"|cannot|could not|couldn't|unable to)(?![\w/-]|\.\w)",
          15, 0, "word", "fail|error|exception|fatal|panic|abort|cannot|could|unable", re.IGNORECASE),
    _rule(r"^##\[warning\]|^::warning\b|^\s*warning:", 8, 0, "warning", "warning", re.IGNORECASE),
]  # fmt: skip

# "Nothing failed" phrasing: a line whose only failure words are zero counts is no evidence.
_ZERO_ONLY = _rx(
    r"\b(?:0|no) (?:failed|failures?|errors?|problems?)\b|\b(?:failed|failures?|errors?)[:=] ?0\b"
    r"|\bwithout errors?\b|\berror[-_ ]?(?:free|handling|reporting|prone)\b",
    _I,
)
_REAL_FAILURE_WORD = _rx(rf"\b{_NONZERO} (?:failed|failures?|errors?)\b|\b(?:failed|failures?|errors?)[:=] ?{_NONZERO}",
                         _I)

# Lines that open one failure's block of details (one test's, one crate's): the context of an
# earlier failure stops there.
BLOCK_HEADERS = frozenset({"pytest-test-header", "rust-test-stdout", "jest-bullet", "go-fail", "unittest-fail"})

# A row of a table drawn with box-drawing or ASCII bars (`│ high │ Prototype Pollution │`,
# `| file.ts | 3 | error |`), and what makes one evidence: a severity or a failure in it. The
# other rows and the borders are frames (`is_frame`): they stay with that row as its block.
_TABLE_ROW = _rx(r"^\s*[│┃|].*[│┃|]\s*$")
_TABLE_ALARM = _rx(r"\b(?:critical|high|moderate|errors?|fail(?:ed|ures?|ing)?|vulnerabl\w*|denied)\b", _I)
TABLE_ROW_SCORE = 45.0

STEP_START = _rx(r"^##\[group\]Run (.*)")
_GROUP_MARKER = _rx(r"^##\[(?:group|endgroup)\]")


# Lines that report success: a passing test whose name says "fails", `0 errors`, ...
_SUCCESS = _rx(r"^\s*(?:✓|✔|√|PASS\b|PASSED\b|ok\b|\[\s*OK\s*\]|SUCCESS\b)|\sPASSED\b|\.\.\. ok$|\bBUILD SUCCESS")


_HINTS: tuple[str, ...] = tuple(sorted({hint for rule in _RULES for hint in rule.hints}))
_RULES_OF_HINT: dict[str, tuple[int, ...]] = {
    hint: tuple(i for i, rule in enumerate(_RULES) if hint in rule.hints) for hint in _HINTS
}


# An explicit, quiet log level: `level=debug`, `[INFO]`, ` DEBUG `, `I0501 12:00:00` (glog), ...
_QUIET_LEVEL = _rx(r"\blevel=(?:debug|info|trace)\b|^\s*\[?(?:DEBUG|INFO|TRACE)\]?[\s:]|\s\[?(?:DEBUG|TRACE)\]?\s"
                   r"|^[DI]\d{4} \d\d:")


# Rules only tell a zero from other numbers, so lines that differ in their nonzero digits
# classify alike: the cache key maps 1-9 to 1 (repeated errors then cost one lookup).
_NONZERO_TO_ONE = str.maketrans("23456789", "11111111")


def classify(line: str) -> Kind:
    """Score and summary rank of a cleaned line (`NONE` when it shows no failure)."""
    return _classify(line.translate(_NONZERO_TO_ONE))


@lru_cache(maxsize=4096)
def _classify(line: str) -> Kind:
    if _GROUP_MARKER.match(line):
        return NONE
    low = line.lower()
    candidates: set[int] = set()
    for hint in _HINTS:
        if hint in low:
            candidates.update(_RULES_OF_HINT[hint])
    score, rank, name = 0.0, 0, ""
    for index in sorted(candidates):
        rule = _RULES[index]
        if (rule.score > score or rule.rank > rank) and rule.pattern.search(line):
            if rule.score > score:
                score, name = rule.score, rule.name
            rank = max(rank, rule.rank)
    if score < TABLE_ROW_SCORE and _TABLE_ROW.match(line) and _TABLE_ALARM.search(line):
        score, name = TABLE_ROW_SCORE, "table-row"
    if score and rank == 0 and score <= 55:
        if _SUCCESS.search(line) or (_ZERO_ONLY.search(line) and not _REAL_FAILURE_WORD.search(line)):
            return Kind(2.0, 0, "no-failure")
        if _QUIET_LEVEL.search(line):  # a debug or info message that mentions an error
            return Kind(score * 0.2, 0, name)
    return Kind(score, rank, name) if score else NONE


_FRAME = _rx(
    r"^\s+at\s"  # JavaScript, Java, C#
    r"|^\s+File \".*\", line \d+"  # Python traceback
    r"|^\S+\.\w+:\d+: in "  # pytest location
    r"|^\s*-->\s*\S+:\d+"  # rustc
    r"|^\s*\d*\s*\|"  # compiler and jest code excerpts
    r"|^\s*>\s*\d+\s*\|"  # jest current line
    r"|^\s*\^[\^~\s]*$"  # carets under code
    r"|^\s+(?:Expected|Received|expected|received|actual|Actual|left|right)\b"
    r"|^\s*[-+] "  # diffs
    r"|^\s*\.\.\. \d+ more"  # Java
    r"|^\s+\S+\.(?:go|rs|py|js|ts|java|kt|cs|c|cc|cpp|h|rb):\d+"  # indented locations (go test)
    r"|^\s*>\s"  # pytest's current source line
    r"|^\t"
    r"|^\s*[│┃┌┏├┣└┗╭╰╞╘╒]|^\s*\+[-=+]{2,}"  # table rows and borders
)
_COMMAND = _rx(r"^\s*(?:#\d+ \[[^\]]*\] )?RUN\s|^\s*[$+] \S|^\[command\]|^Run \S")
_SEPARATOR = _rx(r"^[\s\-=_*#~.:+|<>─━│┃┌┐└┘├┤┬┴┼═╔╗╚╝╠╣╦╩╬╭╮╯╰╞╡╪╘╛╒╕]*$")


def is_frame(line: str) -> bool:
    """A stack frame, code excerpt, diff or indented continuation: part of the block above it."""
    return bool(_FRAME.match(line))


def is_command(line: str) -> bool:
    """A command being run (shell trace, Dockerfile RUN step, GitHub Actions `Run`)."""
    return bool(_COMMAND.match(line))


def is_separator(line: str) -> bool:
    """Blank lines and rulers: they cost tokens and say nothing."""
    return bool(_SEPARATOR.match(line))


# --- normalisation: what makes two lines of two runs of one job "the same" ------------------

_UNITS = (
    r"(?:[kKMGT]i?B|[kKMG]b|B|bytes?|ms|µs|us|ns|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?"
    r"|items?|files?|packages?|modules?|objects?|deltas?|chunks?|lines?|tests?|steps?)\b"
)
_NORMALISE: list[tuple[re.Pattern[str], str]] = [
    # hex ids, SHAs, UUIDs (and long numbers, which are ids far more often than counts)
    (_rx(r"\b[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{4,})+\b|\b[0-9a-fA-F]{7,}\b"), "<id>"),
    # timestamps, clock times and durations, sizes, percentages, progress (3/10), counted things
    (_rx(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?|\d+(?::\d\d){1,2}(?:\.\d+)?"
         r"|\d+/\d+|\d+(?:\.\d+)?(?:%|[ \t]?" + _UNITS + ")"), "<n>"),
    # temporary files and folders
    (_rx(r"/(?:tmp|var/folders|private/var/folders|home/runner/work/_temp)\b[^\s'\"]*|\btmp[\w-]{5,}"), "<tmp>"),
    (_rx(r"[A-Za-z]:\\Users\\[^\\\s]+\\AppData\\Local\\Temp[^\s'\"]*"), "<tmp>"),
]
_DIGITS = _rx(r"\d+")
_HAS_DIGIT = _rx(r"\d")
# What `normalise` can change, deleted: lines equal after `normalise` have equal skeletons, up to
# units and temporary names (a cheap first test before the real one).
_SKELETON_DELETE = b"0123456789abcdefABCDEF.:-/_%#<>, \t"


def skeleton(text: str) -> str:
    """`text` without the characters normalisation may change (line by line, newlines kept)."""
    return text.encode("utf-8", "replace").translate(None, _SKELETON_DELETE).decode("utf-8", "replace")


def normalise(text: str) -> str:
    """Timestamps, durations, hex ids and SHAs, temporary paths, sizes and counts made neutral.

    Works on single lines and on whole blocks (no pattern crosses a newline). Other numbers are
    kept: `Failures: 1` and `Failures: 0` stay different.
    """
    if not _HAS_DIGIT.search(text) and "tmp" not in text and "Temp" not in text:
        return text  # nothing to normalise but the rare all-letter hex word: fine, both sides skip it
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def loose(normalised: str) -> str:
    """A normalised line with every number neutral, for lines that are not failure evidence."""
    return _DIGITS.sub("0", normalised)


_LOCATION = _rx(r"^\S+?:\d+(?::\d+)?:?")
_QUOTED = _rx(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_DIGIT_TO_ZERO = str.maketrans("123456789", "000000000")


def shape(line: str) -> str:
    """What repeats across a run of similar lines (the same error in many files or tests)."""
    return _shape(line.translate(_DIGIT_TO_ZERO))


@lru_cache(maxsize=4096)
def _shape(line: str) -> str:
    text = _LOCATION.sub("<loc>", line.strip()[:300], count=1)
    if "'" in text or '"' in text or "`" in text:
        text = _QUOTED.sub("<q>", text)
    words = ["<path>" if "/" in word or "\\" in word else word.strip("-=_*~") for word in text.split()]
    return " ".join(words).translate(_DIGIT_TO_ZERO)[:60].lower()
