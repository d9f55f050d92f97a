"""The `fixloop` command line.

Exit codes: see `bot.errors` (0 validated, 1 not validated, 2 usage or configuration error, 3 error,
130 cancelled).

Each subcommand imports what it uses when it runs, so that `fixloop --help` or `fixloop logs extract`
do not pay for the model SDK, PyGithub or the web server (tests/test_cli_run.py checks this).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from bot.campaign import cli as campaign_cli
from bot.errors import EXIT_CODES, EXIT_USAGE, ConfigError, FixloopError, WorkspaceError
from bot.eval import cli as eval_cli
from bot.logs import cli as logs_cli
from bot.secrets import protect_this_process
from bot.triage import cli as triage_cli

if TYPE_CHECKING:
    from bot.agent.model import Model
    from bot.config import Config
    from bot.github.client import RequestPolicy
    from bot.task import Task
    from bot.trajectory import Report



def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _provider(text: str) -> str:
    from bot.config import PROVIDERS  # here, not at the top: `fixloop --help` does not load pydantic

    if text not in PROVIDERS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(PROVIDERS)}, not {text!r}"
                                         f"{_nearest(text, list(PROVIDERS))}")
    return text


def _wait_seconds(text: str) -> float:
    value = _positive_float(text)
    if value > 86_400:
        raise argparse.ArgumentTypeError(f"must be at most 86400 (a day), not {text!r}")
    return value


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return int(text)


class _Parser(argparse.ArgumentParser):
    """argparse, with the nearest valid subcommand or flag suggested for a typo."""

    def error(self, message: str) -> NoReturn:
        if choice := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
            message += _nearest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        elif message.startswith("unrecognized arguments:"):
            flags = [flag for action in self._all_actions() for flag in action.option_strings]
            for word in message.removeprefix("unrecognized arguments:").split():
                if word.startswith("-"):
                    message += _nearest(word.split("=", 1)[0], flags)
        super().error(message)

    def _all_actions(self) -> list[argparse.Action]:
        found = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [a for parser in action.choices.values() for a in _Parser._all_actions(parser)]
        return found


def _nearest(word: str, known: list[str]) -> str:
    near = difflib.get_close_matches(word, known, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fixloop")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fixloop", description="A CI-native coding agent: propose a change, validate it, iterate."
    )
    parser.add_argument("--version", action="version", version=f"fixloop {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a session on a local checkout", description=(
        "Run the agent on a local git checkout. The agent works in its own worktree; your checkout is "
        "never modified. A validated change becomes one commit on a new branch fixloop/<slug>-<id>."))
    run.add_argument("--repo", type=Path, default=Path("."), help="the git checkout to work on (default: .)")
    run.add_argument("--task", required=True, help="what to do, in words (first line is the title)")
    run.add_argument("--validate", action="append", metavar="CMD",
                     help="a command that must pass; repeat for several (default: `validate` in .github/fixloop.yml)")
    run.add_argument("--max-iterations", type=_positive_int, metavar="N", help="propose→validate rounds")
    run.add_argument("--max-tokens", type=_positive_int, metavar="N", help="total tokens for the session")
    run.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="wall time for the session")
    run.add_argument("--max-cost", type=_positive_float, metavar="USD", help="estimated cost ceiling (list prices)")
    run.add_argument("--config", type=Path, metavar="PATH",
                     help="a config file to use as it is (default: .github/fixloop.yml as committed at HEAD)")
    run.add_argument("--model", help="model name (default: config, else a current Claude Sonnet)")
    run.add_argument("--provider", type=_provider, metavar="NAME", help="where the model is called: anthropic, "
                     "bedrock, vertex, foundry or openai (any OpenAI-compatible endpoint; default: config, else "
                     "anthropic)")
    run.add_argument("--base-url", metavar="URL", help="the model API's URL (default: config, else the provider's own)")
    run.add_argument("--out", type=Path, metavar="DIR", help="session folder (default: <repo>/.fixloop/sessions/<id>)")
    run.add_argument("--json", action="store_true", help="print report.json to stdout")
    run.set_defaults(handler=_run)

    demo_parser = commands.add_parser("demo", help="fix a bug in a bundled sample project", description=(
        "Copy a sample project with a failing test into a temporary folder and run the whole loop on it. "
        "Uses Claude when ANTHROPIC_API_KEY is set, otherwise a scripted model."))
    demo_parser.add_argument("--scripted", action="store_true", help="use the scripted model even if a key is set")
    demo_parser.add_argument("--json", action="store_true", help="print report.json to stdout")
    demo_parser.set_defaults(handler=_demo)

    action = commands.add_parser("action", help="run inside GitHub Actions (the fixloop action calls this)",
                                 description=(
        "Read the workflow's event and environment (GITHUB_*; GITHUB_TOKEN; the provider's credentials, such as "
        "ANTHROPIC_API_KEY or OPENAI_API_KEY; optional FIXLOOP_PROVIDER, FIXLOOP_MODEL, FIXLOOP_MAX_ITERATIONS, "
        "FIXLOOP_CONFIG), decide what to do, run a session, report check "
        "runs and open a draft pull request. With --event FILE: rehearse a saved webhook payload against a local "
        "checkout, printing the decision, the plan and every comment and check run instead of sending them; the "
        "session runs locally (a local branch, no push), or not at all with --dry-run."))
    action.add_argument("--event", type=Path, metavar="FILE", help="a saved webhook payload to rehearse")
    action.add_argument("--event-name", metavar="NAME", help="its event (default: told by the payload's keys)")
    action.add_argument("--repo", type=Path, default=Path("."), help="the checkout standing in for GitHub (default .)")
    action.add_argument("--dry-run", action="store_true", help="with --event: decide and plan only, call no model")
    action.set_defaults(handler=_action)

    serve = commands.add_parser("serve", help="run the GitHub App's webhook server", description=(
        "Receive GitHub webhooks, decide, and dispatch the fixloop workflow in the target repository. Settings come "
        "from the environment (and --env-file): APP_ID, PRIVATE_KEY or PRIVATE_KEY_PATH, WEBHOOK_SECRET, "
        "GITHUB_API_URL, FIXLOOP_DB, FIXLOOP_API_TOKEN."))
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    serve.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this NAME=value file too, "
                       "e.g. the .env of `fixloop app register`; variables set in the environment take precedence")
    serve.set_defaults(handler=_serve)

    show = commands.add_parser("show", help="show a finished session", description=(
        "Render a session folder (report.json) the way its check runs and pull request show it."))
    show.add_argument("session_dir", type=Path, metavar="SESSION_DIR", help="the session folder")
    show.add_argument("--format", choices=("md", "html", "json"), default="md", help="output format (default md)")
    show.set_defaults(handler=_show)

    replay = commands.add_parser("replay", help="run a recorded session again and compare its change", description=(
        "Re-run a session from its trajectory.jsonl: the model's recorded answers in place of the model, the tools "
        "and validation for real, in a throwaway clone at the session's base commit. Exit 0 when the change is the "
        "recorded one byte for byte; 1, naming the first step where the environment answered differently, when "
        "not."))
    replay.add_argument("session_dir", type=Path, metavar="SESSION_DIR",
                        help="the session folder (<repo>/.fixloop/sessions/<id>, or a workflow run's artifact)")
    replay.add_argument("--repo", type=Path, metavar="PATH", help="a clone holding the session's base commit "
                        "(default: the repository the session folder is in)")
    replay.add_argument("--json", action="store_true", help="the outcome as JSON on stdout")
    replay.set_defaults(handler=_replay)

    init = commands.add_parser("init", help="set up fixloop in a repository", description=(
        "Tell the repository's language, package manager and test command from its files, and write "
        ".github/fixloop.yml (setup, validate) and .github/workflows/fixloop.yml (fixloop's workflow with the "
        "toolchain steps and the CI workflow names filled in), explaining each choice. Existing files are "
        "never replaced without --force."))
    init.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: .)")
    init.add_argument("--validate", action="append", metavar="CMD",
                      help="the test command instead of the one detected; repeat for several")
    init.add_argument("--setup", action="append", metavar="CMD",
                      help="a setup command instead of those detected; repeat for several")
    init.add_argument("--dry-run", action="store_true", help="print what would be written; write nothing")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(handler=_init)

    logs_cli.add_parser(commands)
    triage_cli.add_parser(commands)
    campaign_cli.add_parser(commands)
    eval_cli.add_parser(commands)

    app = commands.add_parser("app", help="GitHub App helpers")
    app_commands = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    manifest = app_commands.add_parser("manifest", help="print the App manifest for GitHub's registration flow")
    manifest.add_argument("--url", help="the public base URL of your fixloop server (the webhook is URL/webhook)")
    manifest.set_defaults(handler=_manifest)
    register = app_commands.add_parser("register", help="register the App on GitHub from a local page (manifest flow)",
                                       description=(
        "Serve a one-shot page on 127.0.0.1 whose Register button sends the App's manifest to GitHub; when GitHub "
        "redirects back, exchange its code for the App's credentials and write them to a .env file (mode 0600) for "
        "`fixloop serve --env-file`. The API is https://api.github.com (or GITHUB_API_URL), or with --ghes-url "
        "URL/api/v3."))
    register.add_argument("--url", required=True,
                          help="the public base URL of your fixloop server (the webhook is URL/webhook)")
    register.add_argument("--name", default="fixloop", help="the App's name (default fixloop; GitHub's page lets "
                          "you change it, names are unique)")
    register.add_argument("--org", metavar="ORG", help="register it for this organization (default: your account)")
    register.add_argument("--ghes-url", metavar="URL", help="your GitHub Enterprise Server, e.g. https://ghe.example.com")
    register.add_argument("--port", type=_port, help="local port of the page and of GitHub's redirect (default: any)")
    register.add_argument("--env-file", type=Path, default=Path(".env"), metavar="PATH",
                          help="where to write the settings (default .env)")
    register.add_argument("--force", action="store_true", help="replace an existing --env-file")
    register.add_argument("--no-browser", action="store_true", help="print the page's address only, open no browser")
    register.add_argument("--timeout", type=_wait_seconds, default=3600.0, metavar="SECONDS",
                          help="give up after this long (default 3600: GitHub's code is valid for an hour)")
    register.set_defaults(handler=_register)
    return parser


def _config_file(path: Path) -> Config:
    from bot.config import parse_config

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config {path} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    return parse_config(text, source=str(path))


def _uncommitted(repo: Path, *, config_given: bool) -> list[str]:
    """What a session, which starts from HEAD, will not see: said, so that nobody wonders why."""
    from bot.config import CONFIG_PATH
    from bot.workspace import git

    status = git("status", "--porcelain", "-z", "--untracked-files=all", cwd=repo)
    changed = [entry[3:] for entry in status.split("\0") if entry[2:3] == " "]
    warnings = []
    if not config_given and CONFIG_PATH in changed:
        warnings.append(f"{CONFIG_PATH} has changes that are not committed; the session reads it as committed at "
                        f"HEAD (commit it, or pass --config {CONFIG_PATH} to use it as it is)")
    others = [path for path in changed if path != CONFIG_PATH]
    if others:
        warnings.append(f"{len(others)} uncommitted change(s) (e.g. {others[0]}) are not part of the session, "
                        "which starts from HEAD")
    return warnings


def _load_config(repo: Path) -> Config:
    """`.github/fixloop.yml` as committed at HEAD (uncommitted edits do not count)."""
    from bot.config import CONFIG_PATH, Config, parse_config
    from bot.workspace import read_file_at, resolve_commit

    text = read_file_at(repo, resolve_commit(repo, "HEAD"), CONFIG_PATH)
    return Config() if text is None else parse_config(text)


def _task_from_text(text: str) -> Task:
    from bot.task import Task

    title = text.strip().partition("\n")[0]
    if not title.strip():
        raise ConfigError("--task is empty: say what the agent should do.")
    return Task(kind="local", title=title.strip()[:120], instructions=text.strip(), source="the command line")


def _run(args: argparse.Namespace) -> int:
    from bot.agent.model import make_model
    from bot.workspace import repository_root

    repo = repository_root(args.repo)
    config = _config_file(args.config) if args.config else _load_config(repo)
    config = config.with_overrides(**{
        "model": args.model,
        "provider": args.provider,
        "base_url": args.base_url,
        "validate": args.validate,
        "limits.iterations": args.max_iterations,
        "limits.tokens": args.max_tokens,
        "limits.wall_time": args.timeout,
        "limits.cost_usd": args.max_cost,
    })
    for warning in _uncommitted(repo, config_given=args.config is not None):
        print(f"fixloop: warning: {warning}", file=sys.stderr)
    if not config.validation:
        raise ConfigError(
            "No validation commands. Pass --validate CMD (repeatable), or commit a .github/fixloop.yml "
            "with e.g. `validate: [python -m pytest -q]`."
        )
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder; name a folder for the session record.")
    task = _task_from_text(args.task)
    return _session(repo, task, config, make_model(config), out=args.out, as_json=args.json)


def _action(args: argparse.Namespace) -> int:
    if args.event is not None or args.dry_run:
        if args.event is None:
            raise ConfigError("--dry-run rehearses a saved event: pass --event FILE (a webhook payload)")
        from bot.action.rehearsal import rehearse

        return rehearse(args.event, event_name=args.event_name, repo=args.repo, out=sys.stdout, dry_run=args.dry_run)
    from bot.action.runner import run_action
    from bot.github.client import RequestPolicy

    return run_action(policy=args.policy or RequestPolicy())


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import logs
    from bot.app.register import read_env_file
    from bot.app.server import Service, create_app
    from bot.app.settings import AppSettings
    from bot.github.client import RequestPolicy
    from bot.secrets import Redactor
    from bot.telemetry.app_spans import AppTracing

    environ = {**read_env_file(args.env_file), **os.environ} if args.env_file else os.environ
    settings = AppSettings.from_environ(environ)
    redactor = Redactor(settings.secrets)
    logs.configure(redact=redactor.text)
    _check_free(args.host, args.port)
    service = Service(settings, policy=args.policy or RequestPolicy(),
                      tracing=AppTracing.from_environ(environ, warn=logs.logger.warning, redactor=redactor))
    app = create_app(settings, service)
    print(f"fixloop serve: listening on http://{args.host}:{args.port} (webhooks: POST /webhook, health: GET "
          "/healthz); Ctrl-C stops it", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _show(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bot.action.render import session_html, session_markdown
    from bot.trajectory import Report

    path = args.session_dir / "report.json"
    try:
        report = Report.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ConfigError(f"{args.session_dir} is not a session folder: {path} cannot be read "
                          f"({error.strerror}). Sessions are in <repo>/.fixloop/sessions/.") from None
    except ValidationError as error:
        raise ConfigError(f"{path} is not a report this fixloop can read ({error.error_count()} problem(s); "
                          "it may come from another version)") from None
    if args.format == "json":
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(session_html(report) if args.format == "html" else session_markdown(report))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from bot.replay import print_outcome, replay

    outcome = replay(args.session_dir, args.repo, environ=os.environ)
    if args.json:
        difference = outcome.first_difference
        print(json.dumps({"reproduced": outcome.reproduced, "recorded_status": outcome.recorded_status,
                          "replayed_status": outcome.replayed_status, "notes": outcome.notes,
                          "first_difference": None if difference is None else {
                              "iteration": difference.iteration, "turn": difference.turn, "what": difference.what,
                              "recorded": difference.recorded, "replayed": difference.replayed}}, indent=2))
    print_outcome(outcome, sys.stdout if not args.json else sys.stderr)
    return outcome.exit_code


def _init(args: argparse.Namespace) -> int:
    from bot.config import CONFIG_PATH
    from bot.init import in_the_way, plan_init, write
    from bot.workspace import repository_root

    plan = plan_init(repository_root(args.repo), validate=args.validate, setup=args.setup)
    below = "" if plan.root == args.repo.resolve() else f" (the root of the repository {args.repo} is in)"
    print(f"fixloop init in {plan.root}{below}")
    print("\n".join(plan.explanation()))
    if args.dry_run:
        existing = in_the_way(plan)
        for path, text in plan.files.items():
            state = "exists: a real run needs --force" if path in existing else "would be written"
            print(f"\n--- {path} ({state}) ---\n{text}", end="")
        return 0
    for path in write(plan, force=args.force):
        print(f"wrote {path}")
    print(f"Next: review both files, commit them and push them to the default branch (fixloop reads "
          f"{CONFIG_PATH} from there); add the repository secret ANTHROPIC_API_KEY; then label an issue "
          "`fixloop`. To try it here first: fixloop run --task \"...\"")
    return 0


def _check_free(host: str, port: int) -> None:
    """A port that cannot be listened on is the user's to fix: one line, before the server starts."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"cannot listen on {host}:{port}: {why} (another server on that port, "
                          "or an address this machine does not have? Choose --host and --port)") from None


def _manifest(args: argparse.Namespace) -> int:
    from bot.app.manifest import render_manifest

    print(render_manifest(args.url))
    return 0


def _register(args: argparse.Namespace) -> int:
    from bot.app.register import RegisterOptions, next_steps, register

    options = RegisterOptions(url=args.url, name=args.name, org=args.org, ghes_url=args.ghes_url, port=args.port or 0,
                              env_file=args.env_file, force=args.force, open_browser=not args.no_browser,
                              timeout=args.timeout)
    print(next_steps(register(options, os.environ, err=sys.stderr), args.env_file), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bot import demo
    from bot.agent.model import make_model
    from bot.config import Config
    from bot.task import Task

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    model: Model
    if args.scripted or not demo.has_api_key():
        model = demo.scripted_model()
        why = "--scripted was given" if args.scripted else "ANTHROPIC_API_KEY is not set"
        console.print(f"[bold]Demo with a scripted model[/] ({why}): it replays a prepared fix, so you can watch "
                      "the loop, the real validation runs and the outcome without calling Claude.")
    else:
        model = make_model(Config())
        console.print(f"[bold]Demo with {model.name}[/] (ANTHROPIC_API_KEY is set).")
    repo = demo.prepare_sample(demo.make_temp_parent())
    console.print(f"Sample project: {repo}")
    config = Config(validation=[demo.validation_command()])
    task = Task(kind="local", title=demo.TASK_TITLE, instructions=demo.TASK_BODY, source="the fixloop demo")
    return _session(repo, task, config, model, out=None, as_json=args.json)


def _session(repo: Path, task: Task, config: Config, model: Model, *, out: Path | None, as_json: bool) -> int:
    from bot.reporting.terminal import TerminalReporter
    from bot.secrets import Redactor
    from bot.session import SessionSpec, run_session

    reporter = TerminalReporter(Redactor.from_environment(os.environ, config.secrets.scrub))
    report = run_session(SessionSpec(repo=repo, task=task, config=config, model=model, out_dir=out, sinks=[reporter]))
    session_dir = Path(report.trajectory).parent
    if as_json:
        sys.stdout.write((session_dir / "report.json").read_text(encoding="utf-8"))
    else:
        sys.stdout.write(reporter.redactor.text(_outcome(report, session_dir)))
    return report.exit_code


def _outcome(report: Report, session_dir: Path) -> str:
    """The result, for stdout (progress went to stderr): `fixloop demo > result.txt` keeps it."""
    lines = [f"{report.status}: {report.reason}"]
    if report.branch:
        lines += [f"Branch {report.branch} at {report.commit}:", report.diff_stat,
                  f"See the change: git -C {report.repo} show {report.branch}"]
    elif report.patch:
        lines.append(f"Nothing committed; the partial change is saved as {report.patch}")
    lines.append(f"Session record: {session_dir}/ (report.json, trajectory.jsonl)")
    return "\n".join(line for line in lines if line) + "\n"


def main(argv: Sequence[str] | None = None, *, policy: RequestPolicy | None = None) -> int:
    """`policy`: how `action` and `serve` pace and retry their GitHub requests (None: `RequestPolicy()`;
    tests against the loopback fake turn pacing off). It rides along in the parsed arguments."""
    args = build_parser().parse_args(argv, namespace=argparse.Namespace(policy=policy))
    protect_this_process()
    try:
        return int(args.handler(args))
    except (ConfigError, WorkspaceError) as error:
        print(f"fixloop: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FixloopError as error:  # GitHub, a model API or the App failed: said in one line
        print(f"fixloop: {error}", file=sys.stderr)
        return EXIT_CODES["error"]
    except KeyboardInterrupt:
        print("fixloop: cancelled", file=sys.stderr)
        return EXIT_CODES["cancelled"]
    except BrokenPipeError:  # the reader went away (`fixloop app manifest | head`): not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception:  # noqa: BLE001 - the command line's outer edge: a bug gets its trace and exit 3
        traceback.print_exc()
        print("fixloop: internal error (a bug in fixloop; please report it with the trace above)", file=sys.stderr)
        return EXIT_CODES["error"]


if __name__ == "__main__":
    sys.exit(main())
