"""`fixloop eval report RESULTS`: what the results file says, per configuration and between them.

- Per configuration: runs, resolved, the resolve rate with its 95% Wilson interval, the cost per resolved
  task (all the runs' cost over the resolved ones; unknown when a price was), and the median tokens and
  wall time.
- Between each two configurations, on the runs they share (same task, same repeat): McNemar's exact
  test on the runs only one of them resolved. The text says when a difference is not significant.
- Per task: resolved runs of each configuration.

Written as Markdown, JSON and a PNG chart (resolve rate against cost per run).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.eval.stats import CONFIDENCE, mcnemar, wilson

SIGNIFICANCE = 0.05


def read_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The runs of results files, and of the .jsonl files in folders (a matrix's downloaded artifacts): one per
    (configuration, task, repeat), the last written (a run made again after it could not start)."""
    files = [found for path in paths for found in (sorted(path.rglob("*.jsonl")) if path.is_dir() else [path])]
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in files:
        for row in read_rows(path):
            runs[str(row["config"]), str(row["task"]), int(row["repeat"])] = row
    if not runs:
        raise ConfigError(f"{', '.join(map(str, paths))} hold no result")
    return list(runs.values())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one results file. A line that is not JSON was cut short by an interruption (runs are
    written a whole line at a time; a resumed run ends it and goes on below) and is left out: that run is
    made again on resume. A JSON line that is not a run is a ConfigError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(f"results {path} cannot be read ({error.strerror}); `fixloop eval run` writes them") \
            from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not {"config", "task", "repeat", "resolved"} <= set(row):
                raise KeyError("config, task, repeat, resolved")
        except ValueError:
            continue
        except KeyError as error:
            raise ConfigError(f"{path}, line {number}: not a result of `fixloop eval run` (it needs {error})") \
                from None
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    configs = sorted({row["config"] for row in rows})
    per_config = {}
    for name in configs:
        runs = [row for row in rows if row["config"] == name]
        resolved = sum(1 for row in runs if row["resolved"])
        low, high = wilson(resolved, len(runs))
        costs = [float(row["cost_usd"]) for row in runs if row.get("cost_usd") is not None]
        total = sum(costs) if len(costs) == len(runs) else None  # unknown when any price was
        tokens = [row["tokens"] for row in runs if row.get("tokens") is not None]
        per_config[name] = {
            "runs": len(runs), "resolved": resolved, "resolve_rate": resolved / len(runs),
            "ci95": [low, high], "cost_usd": total,
            "cost_per_resolved_usd": None if total is None or not resolved else total / resolved,
            "cost_per_run_usd": None if total is None else total / len(runs),
            "median_tokens": statistics.median(tokens) if tokens else None,
            "median_wall_s": statistics.median(float(row.get("wall_s") or 0.0) for row in runs),
            "endings": dict(Counter(row.get("status", "unknown") for row in runs)),
        }
    comparisons = []
    for a, b in combinations(configs, 2):
        outcome_a = {(row["task"], row["repeat"]): bool(row["resolved"]) for row in rows if row["config"] == a}
        outcome_b = {(row["task"], row["repeat"]): bool(row["resolved"]) for row in rows if row["config"] == b}
        shared = sorted(set(outcome_a) & set(outcome_b))
        only_a = sum(1 for key in shared if outcome_a[key] and not outcome_b[key])
        only_b = sum(1 for key in shared if outcome_b[key] and not outcome_a[key])
        p = mcnemar(only_a, only_b)
        significant = p < SIGNIFICANCE
        better = a if only_a > only_b else b
        says = (f"{better} resolves more ({max(only_a, only_b)} runs to {min(only_a, only_b)}), significant at "
                f"{SIGNIFICANCE:.0%} (McNemar's exact test, p = {p:.3g})" if significant else
                f"the difference is not significant (McNemar's exact test, p = {p:.3g}; {only_a} run(s) only {a} "
                f"resolved, {only_b} only {b})")
        comparisons.append({"a": a, "b": b, "pairs": len(shared), "only_a": only_a, "only_b": only_b, "p_value": p,
                            "significant": significant, "says": says})
    tasks: dict[str, dict[str, str]] = {}
    for task in sorted({row["task"] for row in rows}):
        tasks[task] = {}
        for name in configs:
            runs = [row for row in rows if row["task"] == task and row["config"] == name]
            tasks[task][name] = f"{sum(1 for row in runs if row['resolved'])}/{len(runs)}"
    return {"confidence": CONFIDENCE, "configs": per_config, "comparisons": comparisons, "tasks": tasks}


def markdown(summary: dict[str, Any]) -> str:
    def money(value: float | None) -> str:
        return "unknown" if value is None else f"${value:.4f}"

    lines = ["# fixloop eval report", "", "| configuration | runs | resolved | resolve rate (95% CI) | cost per "
             "resolved | median tokens | median time |", "|---|---|---|---|---|---|---|"]
    for name, c in summary["configs"].items():
        low, high = c["ci95"]
        tokens = "—" if c["median_tokens"] is None else f"{c['median_tokens']:,.0f}"
        lines.append(f"| {name} | {c['runs']} | {c['resolved']} | {c['resolve_rate']:.1%} ({low:.1%}–{high:.1%}) | "
                     f"{money(c['cost_per_resolved_usd'])} | {tokens} | {c['median_wall_s']:.1f} s |")
    if summary["comparisons"]:
        lines += ["", "## Paired comparisons", ""]
        lines += [f"- **{c['a']}** vs **{c['b']}** on {c['pairs']} shared runs: {c['says']}."
                  for c in summary["comparisons"]]
    names = list(summary["configs"])
    lines += ["", "## Per task (resolved runs)", "", "| task | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    lines += [f"| {task} | " + " | ".join(counts[name] for name in names) + " |"
              for task, counts in summary["tasks"].items()]
    return "\n".join(lines) + "\n"


def chart(summary: dict[str, Any], path: Path) -> None:
    """Resolve rate (with its interval) against the cost per run, one point per configuration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, c in summary["configs"].items():
        x = c["cost_per_run_usd"] or 0.0
        rate, (low, high) = c["resolve_rate"], c["ci95"]
        axes.errorbar([x], [rate * 100], yerr=[[(rate - low) * 100], [(high - rate) * 100]], fmt="o", capsize=4,
                      label=name)
        axes.annotate(name, (x, rate * 100), textcoords="offset points", xytext=(6, 6))
    top = max((c["cost_per_run_usd"] or 0.0 for c in summary["configs"].values()), default=0.0)
    axes.set_xlim(0, max(0.01, top * 1.25))
    axes.set_xlabel("cost per run (USD; 0 where unknown)")
    axes.set_ylabel("resolve rate (%), 95% Wilson interval")
    axes.set_ylim(-5, 105)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def write_report(results: list[Path], out: Path) -> dict[str, Any]:
    """report.md, report.json and report.png in `out`; returns the summary."""
    summary = summarize(read_results(results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    try:
        chart(summary, out / "report.png")
    except ImportError:
        raise ConfigError(f"report.md and report.json are in {out}; the chart needs matplotlib: pip install "
                          "'fixloop[eval]'") from None
    return summary
