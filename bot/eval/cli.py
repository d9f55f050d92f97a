"""`fixloop eval run SUITE --config A --config B [--repeats N] [--jobs J] [--out FILE]` and
`fixloop eval report RESULTS [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `eval` on the `fixloop` subcommands."""
    parser = commands.add_parser("eval", help="compare agent configurations on a suite of tasks", description=(
        "Run configurations of the agent on the same tasks, grade each run by the task's hidden tests, and report "
        "resolve rates with 95% intervals, cost and time, and whether the differences are significant."))
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", help="run every configuration on every task", description=(
        "Every configuration on every task, --repeats times, each run in its own clone and sandbox, --jobs at once. "
        "Each run is a line of the results file as soon as it ends; running again resumes."))
    run.add_argument("suite", type=Path, metavar="SUITE", help="a suite folder, or a SWE-bench-style JSONL file")
    run.add_argument("--config", action="append", type=Path, required=True, dest="configs", metavar="FILE",
                     help="a configuration (a .github/fixloop.yml overlay); repeat to compare")
    run.add_argument("--repeats", type=_positive, default=1, metavar="N", help="runs of each pair (default 1)")
    run.add_argument("--jobs", type=_positive, default=1, metavar="J", help="runs at once (default 1)")
    run.add_argument("--out", type=Path, default=Path("eval-results.jsonl"), metavar="FILE",
                     help="the results file (default eval-results.jsonl)")
    run.add_argument("--repos", type=Path, metavar="DIR", help="for a JSONL suite: a copy of each repository, "
                     "DIR/owner__name")
    run.add_argument("--only", metavar="ID,...", help="these tasks of the suite alone")
    run.add_argument("--backend", choices=("local", "actions"), default="local", help="local: run here (default); "
                     "actions: write a GitHub Actions workflow that runs the same as a matrix, a job per "
                     "configuration and task")
    run.add_argument("--workflow-out", type=Path, default=Path(".github/workflows/fixloop-eval.yml"),
                     metavar="FILE", help="with --backend actions: where the workflow goes "
                                          "(default .github/workflows/fixloop-eval.yml)")
    run.set_defaults(handler=_run)
    report = verbs.add_parser("report", help="summarize a results file", description=(
        "Per configuration: resolve rate with its 95% Wilson interval, cost per resolved task, median tokens and "
        "time; McNemar's exact test between configurations on the same runs; a per-task table; report.md, "
        "report.json and report.png."))
    report.add_argument("results", type=Path, nargs="+", metavar="RESULTS",
                        help="results files of `fixloop eval run`, or folders of them (a matrix's artifacts)")
    report.add_argument("--out", type=Path, default=Path("eval-report"), metavar="DIR",
                        help="where report.md, report.json and report.png go (default eval-report/)")
    report.set_defaults(handler=_report)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def _run(args: argparse.Namespace) -> int:
    from bot.errors import ConfigError
    from bot.eval.run import run_suite
    from bot.eval.suite import load_config, load_suite

    tasks = load_suite(args.suite, args.repos)
    if args.only:
        wanted = set(args.only.split(","))
        if unknown := wanted - {task.id for task in tasks}:
            raise ConfigError(f"the suite has no task {', '.join(sorted(unknown))}")
        tasks = [task for task in tasks if task.id in wanted]
    configs = [load_config(path) for path in args.configs]
    if len({config.name for config in configs}) < len(configs):
        raise ConfigError("two configurations have the same name: give each a `name:`")
    if args.backend == "actions":
        from bot.eval.actions import matrix_workflow

        text = matrix_workflow(args.suite, args.configs, tasks, args.repeats)
        args.workflow_out.parent.mkdir(parents=True, exist_ok=True)
        args.workflow_out.write_text(text, encoding="utf-8")
        print(f"wrote {args.workflow_out}: {len(configs) * len(tasks)} jobs. Commit it, run it from the Actions tab "
              "(with the ANTHROPIC_API_KEY secret), then: gh run download RUN_ID --pattern 'fixloop-eval-*' --dir "
              "results && fixloop eval report results", file=sys.stderr)
        return 0
    made = run_suite(tasks, configs, args.out, repeats=args.repeats, jobs=args.jobs,
                     say=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{made} run(s) made; results in {args.out}; next: fixloop eval report {args.out}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from bot.eval.report import markdown, write_report

    summary = write_report(args.results, args.out)
    sys.stdout.write(markdown(summary))
    print(f"report.md, report.json and report.png in {args.out}", file=sys.stderr)
    return 0
