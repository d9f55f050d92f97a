"""How much of a failed CI log's labelled evidence fixloop's excerpt keeps, against plain baselines.

Data (read-only, not in the repository; see its README.md), reported per split:
- LogDx-CI (`logdx/dev/*`, `logdx/v2-dev/*`): `raw.log` and `ground_truth.json`, whose
  `required_signals[].evidence_lines` are the labelled lines; the critical lines are those of the
  signals marked critical. Only development splits are in the data: there is no held-out split.
- CiDiff pairs (`cidiff/breakages/*`, `cidiff/breakages_dump/*/*`, `cidiff/other_cases/*`):
  `fail.log`, `pass.log` and the `E a-b` lines of `groundtruth` (counted as critical). fixloop
  gets the passing log too.

For each split and budget (tokens, bot.tokens.estimate_tokens): critical-line recall (labelled
lines kept, averaged over cases) and whole cases (cases with every labelled line kept). Baselines
in the same run and at the same budget, shown the way fixloop shows lines (cleaned, numbered,
gaps marked): the tail (the last lines that fit) and grep+tail (the last lines up to half the
budget, then the last lines matching `error|fail|exception|fatal`, case-insensitive, with the
rest). An upper bound for whole cases: the cases whose labelled lines alone fit the budget.
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
GREP = re.compile(r"error|fail|exception|fatal", re.IGNORECASE)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
METHODS = ("fixloop", "tail", "grep+tail")


@dataclass
class Case:
    name: str
    split: str  # "logdx/dev", "cidiff/breakages", ...
    fail_log: Path
    pass_log: Path | None
    critical: set[int]  # 1-based line numbers of the failed log


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
            critical = _expand(r for s in signals if s.get("importance") == "critical" for r in s["evidence_lines"])
            cases.append(Case(f"{split}/{folder.name}", f"logdx/{split}", folder / "raw.log", None, critical))
    cidiff = data / "cidiff"
    for truth_file in sorted(cidiff.glob("*/*/groundtruth")) + sorted(cidiff.glob("*/*/*/groundtruth")):
        folder = truth_file.parent
        error_lines: set[int] = set()
        for line in truth_file.read_text().splitlines()[1:]:
            kind, _, span = line.strip().partition(" ")
            if kind == "E":
                first, _, last = span.partition("-")
                error_lines |= set(range(int(first), int(last or first) + 1))
        name = str(folder.relative_to(cidiff))
        split = "cidiff/" + name.split("/")[0]
        cases.append(Case(name, split, folder / "fail.log", folder / "pass.log", error_lines))
    return cases


def read_lines(path: Path) -> list[str]:
    lines = LINE_BREAK.split(path.read_bytes().decode("utf-8", "replace"))
    if lines and lines[-1] == "":
        lines.pop()
    return [shown(clean_line(line)) for line in lines]


def _take(layout: Layout, numbers: Iterable[int], lines: list[str], limit: int) -> None:
    """Add lines in the given order while they fit, stopping at the first that does not."""
    for number in numbers:
        text = lines[number - 1]
        if layout.size + layout.delta(number, text) - 1 > limit:
            return
        layout.add(number, text)


def tail_baseline(lines: list[str], budget: int) -> set[int]:
    layout = Layout(len(lines))
    _take(layout, range(len(lines), 0, -1), lines, budget * 4)
    return set(layout.kept)


def grep_tail_baseline(lines: list[str], budget: int) -> set[int]:
    layout = Layout(len(lines))
    _take(layout, range(len(lines), 0, -1), lines, budget * 2)
    first_kept = min(layout.kept, default=len(lines) + 1)
    matches = [n for n in range(first_kept - 1, 0, -1) if GREP.search(lines[n - 1])]
    _take(layout, matches, lines, budget * 4)
    return set(layout.kept)


def labels_fit(lines: list[str], labels: set[int], budget: int) -> bool:
    """Whether the labelled lines alone, shown as fixloop shows lines, fit the budget."""
    layout = Layout(len(lines))
    for number in sorted(labels):
        if number <= len(lines):
            layout.add(number, lines[number - 1])
    return layout.bytes() <= budget * 4


@dataclass
class Score:
    recall: list[float]
    whole: list[bool]

    def add(self, kept: set[int], labels: set[int]) -> None:
        self.recall.append(len(kept & labels) / len(labels))
        self.whole.append(labels <= kept)

    def summary(self) -> dict[str, float | int]:
        n = len(self.recall)
        return {
            "cases": n,
            "critical_line_recall": round(sum(self.recall) / n, 4) if n else 0.0,
            "whole_cases": round(sum(self.whole) / n, 4) if n else 0.0,
        }


def run(data: Path, budgets: tuple[int, ...]) -> dict[str, object]:
    cases = [case for case in load_cases(data) if case.critical]
    if not cases:
        raise SystemExit(f"no cases under {data} (pass --data)")
    results: dict[str, dict[str, dict[int, Score]]] = {}  # split -> method -> budget -> score
    fits: dict[str, dict[int, Score]] = {}

    def score(split: str, method: str, budget: int) -> Score:
        return results.setdefault(split, {}).setdefault(method, {}).setdefault(budget, Score([], []))

    fixloop_bytes = 0
    fixloop_seconds = 0.0
    per_case: list[dict[str, object]] = []
    for case in cases:
        lines = read_lines(case.fail_log)
        row: dict[str, object] = {"case": case.name, "split": case.split, "lines": len(lines),
                                  "tokens": estimate_tokens("\n".join(lines))}
        for budget in budgets:
            started = time.perf_counter()
            evidence = extract_evidence(case.fail_log, case.pass_log, budget=budget)
            fixloop_seconds += time.perf_counter() - started
            fixloop_bytes += case.fail_log.stat().st_size + (case.pass_log.stat().st_size if case.pass_log else 0)
            if evidence.tokens > budget or evidence.total_lines != len(lines):
                raise SystemExit(f"{case.name}: {evidence.tokens} tokens for budget {budget}, "
                                 f"{evidence.total_lines} lines counted for {len(lines)}")
            kept = {n for first, last in evidence.lines for n in range(first, last + 1)}
            score(case.split, "fixloop", budget).add(kept, case.critical)
            score(case.split, "tail", budget).add(tail_baseline(lines, budget), case.critical)
            score(case.split, "grep+tail", budget).add(grep_tail_baseline(lines, budget), case.critical)
            fit = labels_fit(lines, case.critical, budget)
            fits.setdefault(case.split, {}).setdefault(budget, Score([], [])).add(
                case.critical if fit else set(), case.critical)
            row[f"recall@{budget}"] = round(len(kept & case.critical) / len(case.critical), 3)
        per_case.append(row)
    return {
        "data": str(data),
        "budgets": list(budgets),
        "results": {split: {method: {str(b): s.summary() for b, s in by_budget.items()}
                            for method, by_budget in methods.items()} for split, methods in results.items()},
        "whole_cases_upper_bound": {split: {str(b): s.summary()["whole_cases"] for b, s in by_budget.items()}
                                    for split, by_budget in fits.items()},
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
    bounds = report["whole_cases_upper_bound"]
    assert isinstance(results, dict) and isinstance(bounds, dict)
    budgets = report["budgets"]
    assert isinstance(budgets, list)
    print(f"data: {report['data']}")
    print("cells: critical-line recall / whole cases (every critical line kept)")
    print(f"{'split (cases)':<28}{'budget':>7}" + "".join(f" | {method:<15}" for method in METHODS)
          + " | whole cases bound")
    for split, methods in results.items():
        cases = methods["fixloop"][str(budgets[0])]["cases"]
        for budget in budgets:
            cells = []
            for method in METHODS:
                s = methods[method][str(budget)]
                cells.append(f" | {s['critical_line_recall']:>6.1%} / {s['whole_cases']:>6.1%}")
            print(f"{f'{split} ({cases})':<28}{budget:>7}" + "".join(cells) + f" | {bounds[split][str(budget)]:.1%}")
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
