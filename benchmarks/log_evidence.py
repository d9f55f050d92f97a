"""How much of a failed CI log's labelled evidence fixloop's excerpt keeps, and at what cost.

Data (read-only, not in the repository; see its README.md):
- LogDx-CI dev cases (`logdx/dev/*`, `logdx/v2-dev/*`): `raw.log` and `ground_truth.json`, whose
  `required_signals[].evidence_lines` are the labelled lines. "critical" counts the signals
  marked critical, "all" every signal.
- CiDiff pairs (`cidiff/breakages*/*`, `cidiff/other_cases/*`): `fail.log`, `pass.log` and the
  `E a-b` lines of `groundtruth`. fixloop gets the passing log too.

For each budget (tokens, bot.tokens.estimate_tokens): line recall (labelled lines kept, averaged
over cases), case recall (cases whose labelled lines are ALL kept) and the excerpt's tokens as a
fraction of the raw log's. Baselines in the same run: the last 200 lines of the log (one budget-
free row: its recall as is and what it costs) and a plain grep for `error|fail|exception|fatal`
(case-insensitive, `grep -n` lines, capped to the budget by keeping the last matches). An upper
bound for case recall: the cases whose labelled lines alone, shown like fixloop shows them, fit
the budget at all.
Throughput is fixloop's MB/s over the data; `--big-mb` also streams a generated log of that
size in a subprocess and reports its MB/s and peak RSS (the child's own high-water mark).

    python benchmarks/log_evidence.py [--data DIR] [--budgets 1000,2000,4000,8000] [--big-mb 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.logs import extract_evidence
from bot.logs._reader import clean_line
from bot.logs._scan import shown
from bot.logs._select import Layout
from bot.tokens import estimate_tokens

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ci-logs"
BUDGETS = (1000, 2000, 4000, 8000)
TAIL_LINES = 200
GREP = re.compile(r"error|fail|exception|fatal", re.IGNORECASE)
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class Case:
    name: str
    suite: str  # "logdx" or "cidiff"
    fail_log: Path
    pass_log: Path | None
    labels: dict[str, set[int]]  # label set name -> 1-based line numbers of the failed log


def _expand(ranges: Iterable[tuple[int, int]]) -> set[int]:
    return {n for first, last in ranges for n in range(first, last + 1)}


def load_cases(data: Path) -> list[Case]:
    cases: list[Case] = []
    for split in ("dev", "v2-dev"):
        for folder in sorted((data / "logdx" / split).glob("*/")):
            truth_file = folder / "ground_truth.json"
            if not truth_file.exists():
                continue
            signals = json.loads(truth_file.read_text())["required_signals"]
            labels = {
                "critical": _expand(r for s in signals if s.get("importance") == "critical"
                                    for r in s["evidence_lines"]),
                "all": _expand(r for s in signals for r in s["evidence_lines"]),
            }
            cases.append(Case(f"{split}/{folder.name}", "logdx", folder / "raw.log", None, labels))
    cidiff = data / "cidiff"
    for truth_file in sorted(cidiff.glob("*/*/groundtruth")) + sorted(cidiff.glob("*/*/*/groundtruth")):
        folder = truth_file.parent
        error_lines: set[int] = set()
        for line in truth_file.read_text().splitlines()[1:]:
            kind, _, span = line.strip().partition(" ")
            if kind == "E":
                first, _, last = span.partition("-")
                error_lines |= set(range(int(first), int(last or first) + 1))
        name = str(folder.relative_to(data / "cidiff"))
        cases.append(Case(name, "cidiff", folder / "fail.log", folder / "pass.log", {"E": error_lines}))
    return cases


def read_lines(path: Path) -> list[str]:
    lines = LINE_BREAK.split(path.read_bytes().decode("utf-8", "replace"))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def tail_baseline(lines: list[str]) -> tuple[set[int], int]:
    first = max(len(lines) - TAIL_LINES, 0)
    return set(range(first + 1, len(lines) + 1)), estimate_tokens("\n".join(lines[first:]))


def grep_baseline(lines: list[str], budget: int) -> tuple[set[int], int]:
    kept: list[str] = []
    numbers: set[int] = set()
    size = -1
    for index in range(len(lines) - 1, -1, -1):
        if GREP.search(lines[index]):
            part = f"{index + 1}:{lines[index]}"
            cost = len(part.encode("utf-8", "replace")) + 1
            if size + cost > budget * 4:
                break
            size += cost
            kept.append(part)
            numbers.add(index + 1)
    return numbers, estimate_tokens("\n".join(reversed(kept)))


def labels_fit(lines: list[str], labels: set[int], budget: int) -> bool:
    """Whether the labelled lines alone, shown as fixloop shows lines, fit the budget."""
    layout = Layout(len(lines))
    for number in sorted(labels):
        if number <= len(lines):
            layout.add(number, shown(clean_line(lines[number - 1])))
    return layout.bytes() <= budget * 4


@dataclass
class Score:
    line_recall: list[float]
    case_hits: list[bool]
    token_fraction: list[float]

    @classmethod
    def empty(cls) -> Score:
        return cls([], [], [])

    def add(self, kept: set[int], labels: set[int], tokens: int, raw_tokens: int) -> None:
        if not labels:
            return
        self.line_recall.append(len(kept & labels) / len(labels))
        self.case_hits.append(labels <= kept)
        self.token_fraction.append(tokens / max(raw_tokens, 1))

    def summary(self) -> dict[str, float | int]:
        n = len(self.line_recall)
        return {
            "cases": n,
            "line_recall": round(sum(self.line_recall) / n, 4) if n else 0.0,
            "case_recall": round(sum(self.case_hits) / n, 4) if n else 0.0,
            "token_fraction": round(sum(self.token_fraction) / n, 4) if n else 0.0,
        }


def run(data: Path, budgets: tuple[int, ...]) -> dict[str, object]:
    cases = load_cases(data)
    if not cases:
        raise SystemExit(f"no cases under {data} (pass --data)")
    label_sets = [("logdx", "critical"), ("logdx", "all"), ("cidiff", "E")]
    results: dict[str, dict[str, Score]] = {}

    def score(method: str, label_set: str) -> Score:
        return results.setdefault(method, {}).setdefault(label_set, Score.empty())

    fixloop_bytes = 0
    fixloop_seconds = 0.0
    per_case: list[dict[str, object]] = []
    for case in cases:
        lines = read_lines(case.fail_log)
        raw_tokens = estimate_tokens("\n".join(lines))
        case_sets = [ls for suite, ls in label_sets if suite == case.suite]
        tail_kept, tail_tokens = tail_baseline(lines)
        for label_set in case_sets:
            score("tail-200", label_set).add(tail_kept, case.labels[label_set], tail_tokens, raw_tokens)
        row: dict[str, object] = {"case": case.name, "suite": case.suite, "lines": len(lines)}
        for budget in budgets:
            started = time.perf_counter()
            evidence = extract_evidence(case.fail_log, case.pass_log, budget=budget)
            fixloop_seconds += time.perf_counter() - started
            fixloop_bytes += case.fail_log.stat().st_size + (case.pass_log.stat().st_size if case.pass_log else 0)
            if evidence.tokens > budget or evidence.total_lines != len(lines):
                raise SystemExit(f"{case.name}: {evidence.tokens} tokens for budget {budget}, "
                                 f"{evidence.total_lines} lines counted for {len(lines)}")
            kept = {n for first, last in evidence.lines for n in range(first, last + 1)}
            grep_kept, grep_tokens = grep_baseline(lines, budget)
            for label_set in case_sets:
                labels = case.labels[label_set]
                score(f"fixloop@{budget}", label_set).add(kept, labels, evidence.tokens, raw_tokens)
                score(f"grep@{budget}", label_set).add(grep_kept, labels, grep_tokens, raw_tokens)
            for label_set in case_sets:  # the upper bound: do the labelled lines alone fit?
                labels = case.labels[label_set]
                fits = labels_fit(lines, labels, budget)
                score(f"labels-fit@{budget}", label_set).add(labels if fits else set(), labels, 0, raw_tokens)
            first_set = case.labels[case_sets[0]]
            row[f"recall@{budget}"] = round(len(kept & first_set) / len(first_set), 3) if first_set else None
        per_case.append(row)
    return {
        "data": str(data),
        "cases": {"logdx": sum(c.suite == "logdx" for c in cases), "cidiff": sum(c.suite == "cidiff" for c in cases)},
        "budgets": list(budgets),
        "results": {method: {ls: s.summary() for ls, s in sets.items()} for method, sets in results.items()},
        "throughput_mb_s": round(fixloop_bytes / 1e6 / fixloop_seconds, 1) if fixloop_seconds else None,
        "per_case": per_case,
    }


# --- the big generated log ----------------------------------------------------------------

_NOISE = [
    "Downloading https://files.pythonhosted.org/packages/{h}/pkg_{n}-1.{n}.0-py3-none-any.whl ({n} kB)",
    "\x1b[32;1m  PASS\x1b[0m tests/unit/test_module_{n}.py::test_case_{n}",
    "Compiling crate_{n} v0.{n}.1",
    "  adding: build/lib/module_{n}.py (deflated {n}%)",
    "[INFO] Building jar: /home/runner/work/app/target/app-{n}.jar",
    "tests/test_suite_{n}.py::test_behaviour_{n} PASSED [ {p}%]",
    "npm WARN deprecated package-{n}@1.0.{n}: this version is no longer supported",
    "ok   github.com/example/project/pkg/module{n}\t0.{n}s",
    "Processing line {n} of the input with value {h}",
]


def generate_big_log(path: Path, megabytes: int) -> int:
    """A GitHub Actions-like log of about `megabytes` MB with a failure in the middle and at the end."""
    rng = random.Random(7)
    target = megabytes * 1_000_000
    written = 0
    line_number = 0
    failure_block = [
        "=================================== FAILURES ===================================",
        "_________________________________ test_parse __________________________________",
        "    def test_parse():",
        ">       assert parse('1') == 2",
        "E       AssertionError: assert 1 == 2",
        "tests/test_parse.py:3: AssertionError",
    ]
    ending = [
        "=========================== short test summary info ============================",
        "FAILED tests/test_parse.py::test_parse - AssertionError: assert 1 == 2",
        "========================= 1 failed, 999 passed in 12.34s =========================",
        "##[error]Process completed with exit code 1.",
    ]
    with path.open("w", encoding="utf-8") as out:
        middle_done = False
        while written < target:
            lines = []
            for _ in range(5000):
                line_number += 1
                template = _NOISE[rng.randrange(len(_NOISE))]
                text = template.format(n=rng.randrange(1000), h=f"{rng.getrandbits(64):016x}", p=rng.randrange(100))
                lines.append(f"2024-05-01T12:{line_number // 60000 % 60:02d}:{line_number // 1000 % 60:02d}"
                             f".{line_number % 10_000_000:07d}Z {text}")
            lines.append(f"2024-05-01T12:00:00.0000000Z ##[group]Run ./scripts/step_{line_number}.sh")
            lines.append("2024-05-01T12:00:00.0000000Z ##[endgroup]")
            if not middle_done and written > target // 2:
                lines.extend(f"2024-05-01T13:00:00.0000000Z {line}" for line in failure_block)
                middle_done = True
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk.encode())
        for line in ending:
            out.write(f"2024-05-01T13:59:59.0000000Z {line}\n")
    return path.stat().st_size


# Peak memory of the child itself (see tests/memory.py).
_MEASURE = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from bot.logs import extract_evidence
from tests.memory import memory_kb

before = memory_kb("VmRSS")
started = time.perf_counter()
evidence = extract_evidence(Path({path!r}), budget=4000)
seconds = time.perf_counter() - started
peak = memory_kb("VmHWM")
print(json.dumps({{"seconds": seconds, "rss_before_kb": before, "rss_peak_kb": peak,
                  "tokens": evidence.tokens, "lines": evidence.lines, "total_lines": evidence.total_lines}}))
"""


def big_log(megabytes: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.log"
        size = generate_big_log(path, megabytes)
        code = _MEASURE.format(root=str(ROOT), path=str(path))
        output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        measured = json.loads(output)
    kb = 1024
    return {
        "megabytes": round(size / 1e6, 1),
        "seconds": round(measured["seconds"], 2),
        "mb_s": round(size / 1e6 / measured["seconds"], 1),
        "peak_rss_mb": round(measured["rss_peak_kb"] * kb / 1e6, 1),
        "rss_growth_mb": round((measured["rss_peak_kb"] - measured["rss_before_kb"]) * kb / 1e6, 1),
        "tokens": measured["tokens"],
        "kept_last_line": measured["lines"][-1][-1] == measured["total_lines"] if measured["lines"] else False,
    }


def print_table(report: dict[str, object]) -> None:
    results = report["results"]
    assert isinstance(results, dict)
    budgets = report["budgets"]
    assert isinstance(budgets, list)
    print(f"data: {report['data']}  cases: {report['cases']}")
    print("cells: line recall / case recall / tokens as a fraction of the raw log")
    columns = (("critical", "LogDx-CI critical"), ("all", "LogDx-CI all signals"), ("E", "CiDiff E (+ pass log)"))
    print(f"{'method':<14}" + "".join(f" | {title:<24}" for _, title in columns))
    print("-" * (14 + 27 * len(columns)))
    methods = ["tail-200"] + [f"{m}@{b}" for b in budgets for m in ("grep", "fixloop")]
    for method in methods:
        cells = []
        for label_set, _ in columns:
            s = results.get(method, {}).get(label_set)
            cells.append(
                f" | {s['line_recall']:>6.1%} / {s['case_recall']:>6.1%} / {s['token_fraction']:>6.2%}" if s
                else " | -".ljust(27)
            )
        print(f"{method:<14}" + "".join(cells))
    bounds = []
    for budget in budgets:
        fits = [results.get(f"labels-fit@{budget}", {}).get(label_set) for label_set, _ in columns]
        bounds.append(f"{budget}: " + " / ".join(f"{s['case_recall']:.1%}" if s else "-" for s in fits))
    print("upper bound on case recall (the labelled lines alone fit the budget): " + ", ".join(bounds))
    print(f"fixloop throughput over the data (fail + pass logs): {report['throughput_mb_s']} MB/s")
    if report.get("big"):
        big = report["big"]
        assert isinstance(big, dict)
        print(
            f"generated log: {big['megabytes']} MB in {big['seconds']} s ({big['mb_s']} MB/s), "
            f"peak RSS {big['peak_rss_mb']} MB (+{big['rss_growth_mb']} MB while extracting), "
            f"final summary kept: {big['kept_last_line']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the ci-logs folder (default: {DEFAULT_DATA})")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="token budgets, comma-separated")
    parser.add_argument("--big-mb", type=int, default=300, help="size of the generated log (0: skip)")
    parser.add_argument("--per-case", action="store_true", help="print each case's recall at each budget")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    report = run(args.data, budgets)
    if args.big_mb:
        report["big"] = big_log(args.big_mb)
    if not args.per_case:
        report.pop("per_case")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        rows = report.get("per_case", [])
        assert isinstance(rows, list)
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
