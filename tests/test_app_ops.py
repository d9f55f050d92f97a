"""The App's operations side: metrics, JSON logs, the App manifest and the Docker image."""

from __future__ import annotations

import ast
import io
import json
import logging
import math
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.app import logs, manifest
from bot.app.metrics import BUCKETS, CONTENT_TYPE, MAX_LABEL_LENGTH, MAX_SERIES, Metrics
from bot.errors import ConfigError
from bot.secrets import REDACTED, Redactor

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "bot" / "app" / "Dockerfile"

FAMILIES = {
    "fixloop_webhook_deliveries_total": "counter",
    "fixloop_webhook_response_seconds": "histogram",
    "fixloop_dispatches_total": "counter",
    "fixloop_dispatch_seconds": "histogram",
    "fixloop_errors_total": "counter",
    "fixloop_runner_events_total": "counter",
}

# ---------------------------------------------------------------------------------------------
# A small parser for the Prometheus text format 0.0.4, strict enough to reject malformed output.

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)$")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}

Sample = tuple[str, dict[str, str], float]


def _parse_labels(text: str) -> dict[str, str]:
    """`{a="x",b="y\\"z"}` -> {"a": "x", "b": 'y"z'}; raises ValueError when malformed."""
    assert text[0] == "{" and text[-1] == "}"
    body, labels, i = text[1:-1], {}, 0
    while i < len(body):
        match = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(body, i)
        if not match or body[match.end() : match.end() + 2] != '="':
            raise ValueError(f"bad label at {body[i:]!r}")
        name, i, value = match.group(), match.end() + 2, []
        while body[i] != '"':
            if body[i] == "\\":
                if body[i + 1] not in _UNESCAPE:
                    raise ValueError(f"bad escape in {body!r}")
                value.append(_UNESCAPE[body[i + 1]])
                i += 2
            elif body[i] == "\n":
                raise ValueError("raw newline in a label value")
            else:
                value.append(body[i])
                i += 1
        labels[name] = "".join(value)
        i += 1
        if i < len(body):
            if body[i] != ",":
                raise ValueError(f"expected ',' at {body[i:]!r}")
            i += 1
    return labels


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, str], list[Sample]]:
    """(help by family, type by family, samples); every sample belongs to a declared family."""
    assert text.endswith("\n")
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert name not in helps, f"HELP twice for {name}"
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            assert name in helps and name not in types, f"TYPE out of place: {line}"
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"sample {name} before its TYPE"
            samples.append((name, _parse_labels(labels) if labels else {}, float(value)))
    return helps, types, samples


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(labels.items())): value for sample_name, labels, value in samples if sample_name == name}


# ---------------------------------------------------------------------------------------------
# Metrics


def test_empty_registry_declares_every_family_and_zero_histograms() -> None:
    helps, types, samples = parse_exposition(Metrics().render())
    assert types == FAMILIES
    assert all(helps[name] for name in FAMILIES)
    assert not [s for s in samples if s[0].endswith("_total")], "counters without samples have no lines"
    for histogram in ("fixloop_webhook_response_seconds", "fixloop_dispatch_seconds"):
        buckets = values(samples, f"{histogram}_bucket")
        assert sorted(float(dict(key)["le"]) for key in buckets) == list(BUCKETS)
        assert set(buckets.values()) == {0.0}
        assert values(samples, f"{histogram}_count") == {(): 0.0}
        assert values(samples, f"{histogram}_sum") == {(): 0.0}
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_counters_count_by_label() -> None:
    metrics = Metrics()
    metrics.delivery("issues", "dispatched")
    metrics.delivery("issues", "dispatched")
    metrics.delivery("issue_comment", "ignored")
    metrics.dispatch(0.2, ok=True)
    metrics.dispatch(0.3, ok=False)
    metrics.dispatch(0.4, ok=False)
    metrics.error("dispatch")
    _, _, samples = parse_exposition(metrics.render())
    assert values(samples, "fixloop_webhook_deliveries_total") == {
        (("event", "issues"), ("outcome", "dispatched")): 2.0,
        (("event", "issue_comment"), ("outcome", "ignored")): 1.0,
    }
    assert values(samples, "fixloop_dispatches_total") == {(("result", "ok"),): 1.0, (("result", "failed"),): 2.0}
    assert values(samples, "fixloop_errors_total") == {(("stage", "dispatch"),): 1.0}
    assert values(samples, "fixloop_dispatch_seconds_count") == {(): 3.0}
    assert values(samples, "fixloop_dispatch_seconds_sum") == {(): pytest.approx(0.9)}


def test_histogram_buckets_are_cumulative_and_upper_bounds_inclusive() -> None:
    metrics = Metrics()
    observed = [0.01, 0.05, 0.3, 0.5, 3.0, 29.9, 100.0]
    for seconds in observed:
        metrics.webhook_latency(seconds)
    metrics.webhook_latency(math.nan)  # ignored: it would belong to no bucket
    text = metrics.render()
    _, _, samples = parse_exposition(text)
    buckets = {dict(key)["le"]: value
               for key, value in values(samples, "fixloop_webhook_response_seconds_bucket").items()}
    expected = {bound: sum(1 for v in observed if v <= bound) for bound in BUCKETS}
    assert {float(le): count for le, count in buckets.items()} == expected
    assert buckets["0.05"] == 2 and buckets["+Inf"] == len(observed)
    ordered = [buckets[le] for le in sorted(buckets, key=float)]
    assert ordered == sorted(ordered)
    assert values(samples, "fixloop_webhook_response_seconds_count") == {(): float(len(observed))}
    assert values(samples, "fixloop_webhook_response_seconds_sum") == {(): pytest.approx(sum(observed))}
    # Buckets are rendered in increasing order, +Inf last.
    les = re.findall(r'fixloop_webhook_response_seconds_bucket\{le="([^"]+)"\}', text)
    assert les[-1] == "+Inf" and [float(le) for le in les] == sorted(float(le) for le in les)


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    nasty = 'a\\b"c\nd'
    metrics.delivery(nasty, "bad_signature")
    text = metrics.render()
    assert 'event="a\\\\b\\"c\\nd"' in text
    assert len([line for line in text.splitlines() if "bad_signature" in line]) == 1
    _, _, samples = parse_exposition(text)
    assert values(samples, "fixloop_webhook_deliveries_total") == {
        (("event", nasty), ("outcome", "bad_signature")): 1.0
    }


def test_series_per_counter_are_capped_and_long_values_cut() -> None:
    metrics = Metrics()
    for i in range(MAX_SERIES + 10):
        metrics.delivery(f"event-{i}", "bad_signature")
    metrics.error("x" * (MAX_LABEL_LENGTH + 50))
    _, _, samples = parse_exposition(metrics.render())
    deliveries = values(samples, "fixloop_webhook_deliveries_total")
    assert len(deliveries) == MAX_SERIES + 1
    assert deliveries[(("event", "other"), ("outcome", "other"))] == 10
    assert values(samples, "fixloop_errors_total") == {(("stage", "x" * MAX_LABEL_LENGTH),): 1.0}


def test_concurrent_updates_are_all_counted() -> None:
    metrics, threads_n, per_thread = Metrics(), 8, 2_000
    start = threading.Barrier(threads_n)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            metrics.delivery("issues", "dispatched")
            metrics.dispatch(0.1, ok=True)
            metrics.webhook_latency(1.0)
            metrics.error("store")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to expose races
    try:
        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    total = float(threads_n * per_thread)
    _, _, samples = parse_exposition(metrics.render())
    assert values(samples, "fixloop_webhook_deliveries_total") == {
        (("event", "issues"), ("outcome", "dispatched")): total
    }
    assert values(samples, "fixloop_dispatches_total") == {(("result", "ok"),): total}
    assert values(samples, "fixloop_errors_total") == {(("stage", "store"),): total}
    assert values(samples, "fixloop_dispatch_seconds_count") == {(): total}
    assert values(samples, "fixloop_webhook_response_seconds_count") == {(): total}
    le_1 = values(samples, "fixloop_webhook_response_seconds_bucket")[(("le", "1.0"),)]
    assert le_1 == total


# ---------------------------------------------------------------------------------------------
# Logs

TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SECRET = "webhook-secret-value-42"


@pytest.fixture
def restore_fixloop_logger() -> Iterator[None]:
    root = logging.getLogger("fixloop")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


@pytest.fixture
def log_stream(restore_fixloop_logger: None) -> io.StringIO:
    stream = io.StringIO()
    logs.configure("INFO", stream=stream, redact=Redactor([SECRET]).text)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_its_extras(log_stream: io.StringIO) -> None:
    before = datetime.now(UTC)
    logs.logger.info(
        "dispatched %s",
        "fixloop.yml",
        extra={"delivery": "d-1", "event": "issues", "repository": "o/r", "outcome": "dispatched", "n": 3},
    )
    logs.logger.debug("not shown at INFO")
    logging.getLogger("fixloop.app.store").warning("line\nbreak")
    first, second = lines(log_stream)
    ts = datetime.fromisoformat(first.pop("ts"))
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before.replace(microsecond=0) <= ts <= datetime.now(UTC)
    assert first == {
        "level": "INFO",
        "logger": "fixloop.app",
        "message": "dispatched fixloop.yml",
        "delivery": "d-1",
        "event": "issues",
        "repository": "o/r",
        "outcome": "dispatched",
        "n": 3,
    }
    assert second["level"] == "WARNING" and second["logger"] == "fixloop.app.store"
    assert second["message"] == "line\nbreak" and len(log_stream.getvalue().splitlines()) == 2


def test_secrets_are_redacted_everywhere(log_stream: io.StringIO) -> None:
    logs.logger.info(
        f"token {TOKEN} and {SECRET}",
        extra={"delivery": SECRET, "headers": {"authorization": f"token {TOKEN}", SECRET: [TOKEN]}},
    )
    raw = log_stream.getvalue()
    assert TOKEN not in raw and SECRET not in raw and TOKEN[:12] not in raw
    (line,) = lines(log_stream)
    assert line["message"] == f"token {REDACTED} and {REDACTED}"
    assert line["delivery"] == REDACTED
    assert line["headers"] == {"authorization": f"token {REDACTED}", REDACTED: [REDACTED]}


def test_values_json_cannot_hold_become_strings(log_stream: io.StringIO) -> None:
    logs.logger.info(
        "odd values",
        extra={"path": Path("/data/x.db"), "ids": (1, 2), "ratio": math.inf, "obj": object(), "ts": "mine"},
    )
    (line,) = lines(log_stream)
    assert line["path"] == "/data/x.db" and line["ids"] == [1, 2] and line["ratio"] == "inf"
    assert line["obj"].startswith("<object object at")
    assert line["extra_ts"] == "mine" and line["ts"] != "mine"  # an extra never overwrites a core key


def test_exceptions_are_logged_with_their_traceback(log_stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"GitHub said no to {TOKEN}")
    except RuntimeError:
        logs.logger.exception("dispatch failed", extra={"delivery": "d-2"})
    (line,) = lines(log_stream)
    assert line["level"] == "ERROR" and line["message"] == "dispatch failed" and line["delivery"] == "d-2"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert "test_exceptions_are_logged_with_their_traceback" in line["exc"]
    assert line["exc"].rstrip().endswith(f"RuntimeError: GitHub said no to {REDACTED}")
    assert TOKEN not in log_stream.getvalue()


def test_configure_is_idempotent_and_does_not_duplicate_lines(restore_fixloop_logger: None) -> None:
    root_records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            root_records.append(record)

    collector = Collect()
    logging.getLogger().addHandler(collector)
    try:
        first, second = io.StringIO(), io.StringIO()
        logs.configure("INFO", stream=first)
        logs.configure("warning", stream=second)
        logs.logger.info("below the level")
        logs.logger.warning("once")
    finally:
        logging.getLogger().removeHandler(collector)
    ours = [h for h in logging.getLogger("fixloop").handlers if isinstance(h.formatter, logs.JsonFormatter)]
    assert len(ours) == 1
    assert first.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["once"]
    assert root_records == [], "records must not reach the root logger's handlers too"
    with pytest.raises(ConfigError, match="unknown log level"):
        logs.configure("LOUD")


# ---------------------------------------------------------------------------------------------
# The App manifest

# The parameters documented in "Registering a GitHub App from a manifest" (docs.github.com).
MANIFEST_PARAMETERS = {
    "name", "url", "hook_attributes", "redirect_url", "callback_urls", "setup_url", "description",
    "public", "default_events", "default_permissions", "request_oauth_on_install", "setup_on_update",
}  # fmt: skip
EXPECTED_PERMISSIONS = {
    "actions": "write",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
}
EXPECTED_EVENTS = {
    "issues", "issue_comment", "pull_request_review_comment", "pull_request",
    "workflow_run", "check_suite", "check_run",
}  # fmt: skip
# The permission without which GitHub will not deliver an event to the App.
EVENT_PERMISSION = {
    "issues": "issues",
    "issue_comment": "issues",
    "pull_request": "pull_requests",
    "pull_request_review_comment": "pull_requests",
    "workflow_run": "actions",
    "check_suite": "checks",
    "check_run": "checks",
}


def test_manifest_has_the_documented_fields_permissions_and_events() -> None:
    app = manifest.app_manifest("https://fixloop.example.com/", name="fixloop-acme")
    assert set(app) <= MANIFEST_PARAMETERS
    assert app["name"] == "fixloop-acme" and app["public"] is False
    assert app["url"].startswith("https://") and app["description"]
    assert app["hook_attributes"] == {"url": "https://fixloop.example.com/webhook", "active": True}
    assert app["redirect_url"] == "https://fixloop.example.com/"
    assert app["default_permissions"] == EXPECTED_PERMISSIONS
    assert set(app["default_events"]) == EXPECTED_EVENTS and len(app["default_events"]) == len(EXPECTED_EVENTS)
    for event in app["default_events"]:
        assert EVENT_PERMISSION[event] in app["default_permissions"], event
    assert not {"installation", "installation_repositories"} & set(app["default_events"])  # always delivered
    assert {name: access for name, (access, _) in manifest.PERMISSIONS.items()} == EXPECTED_PERMISSIONS
    assert all(len(why) > 15 for _, why in manifest.PERMISSIONS.values())


def test_render_manifest_is_pretty_json_of_the_manifest() -> None:
    text = manifest.render_manifest("https://fixloop.example.com")
    assert text.endswith("}\n") and '\n  "hook_attributes": {\n' in text
    assert json.loads(text) == manifest.app_manifest("https://fixloop.example.com")


def test_manifest_without_url_has_an_obvious_placeholder() -> None:
    app = manifest.app_manifest()
    assert app["hook_attributes"]["url"] == f"{manifest.PLACEHOLDER_URL}/webhook"
    assert "REPLACE" in app["hook_attributes"]["url"] and "REPLACE" in app["redirect_url"]
    assert "REPLACE" in manifest.render_manifest()


@pytest.mark.parametrize(
    "url", ["fixloop.example.com", "ftp://fixloop.example.com", "https://", "https://h/?x=1", "https://h/#f"]
)
def test_manifest_refuses_urls_github_cannot_deliver_to(url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        manifest.app_manifest(url)


def test_manifest_refuses_names_github_refuses() -> None:
    assert manifest.app_manifest(name="x" * 34)["name"] == "x" * 34
    for name in ("", "   ", "x" * 35):
        with pytest.raises(ConfigError, match="name"):
            manifest.app_manifest(name=name)


# ---------------------------------------------------------------------------------------------
# The Dockerfile, checked statically (no Docker engine here)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        keyword, _, args = logical.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, grouped by build stage (each starting with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            result.append([])
        assert result, f"{keyword} before the first FROM"
        result[-1].append((keyword, args))
    return result


def _args(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def _without_flags(args: str) -> tuple[dict[str, str], list[str]]:
    flags, rest = {}, []
    for word in shlex.split(args):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            flags[name] = value
        else:
            rest.append(word)
    return flags, rest


def test_dockerfile_parser_sees_what_docker_sees() -> None:
    parsed = dockerfile_instructions("# c\nFROM a AS b\nRUN x \\\n  # inside\n  && y\n\nCMD [\"z\"]\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "x && y"), ("CMD", '["z"]')]


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python(stages: list[list[tuple[str, str]]]) -> None:
    assert len(stages) >= 2
    images = [stage[0][1].split()[0] for stage in stages]
    for image in images:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?", image), image
    assert len(set(images)) == 1, "build and runtime stages use the same Python"
    names = [stage[0][1].split()[-1] for stage in stages if " AS " in stage[0][1].upper()]
    runtime = stages[-1]
    mounts = [arg for arg in _args(runtime, "RUN") if "--mount=" in arg]
    copies_from = [arg for arg in _args(runtime, "COPY") if "--from=" in arg]
    sources = re.findall(r"from=([\w.-]+)", " ".join(mounts + copies_from))
    assert sources and set(sources) <= set(names[:-1]), "the runtime installs what an earlier stage built"
    assert not _args(runtime, "COPY") or copies_from == _args(runtime, "COPY"), "no sources in the runtime"


def test_dockerfile_runtime_runs_fixloop_serve_as_a_non_root_user(stages: list[list[tuple[str, str]]]) -> None:
    runtime = stages[-1]
    users = _args(runtime, "USER")
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    if user.isdigit():
        assert any(f"--uid {user}" in run for run in _args(runtime, "RUN")), "the uid is created"
    assert any("8080" in args.split() for args in _args(runtime, "EXPOSE"))
    env: dict[str, str] = {}
    for args in _args(runtime, "ENV"):
        env.update(tuple(word.split("=", 1)) for word in shlex.split(args))  # type: ignore[misc]
    assert env["FIXLOOP_DB"] == "/data/fixloop.sqlite3"
    assert any("/data" in args.replace('"', " ").replace("[", " ").split() for args in _args(runtime, "VOLUME"))
    (cmd,) = _args(runtime, "CMD")
    command = json.loads(cmd)  # exec form: fixloop is PID 1 and receives SIGTERM
    assert command[:2] == ["fixloop", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0" and command[command.index("--port") + 1] == "8080"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fixloop"] == "bot.cli:main"
    for run in _args(runtime, "RUN"):
        assert not re.search(r"\b(apt-get|apt|apk)\b.*\binstall\b", run), f"no system packages: {run}"


def test_dockerfile_copies_only_what_the_wheel_needs(stages: list[list[tuple[str, str]]]) -> None:
    copied = []
    for stage in stages:
        for args in _args(stage, "COPY") + _args(stage, "ADD"):
            flags, words = _without_flags(args)
            if "from" not in flags:
                copied += words[:-1]
    assert sorted(copied) == ["README.md", "bot", "pyproject.toml", "workflows/fixloop.yml"]
    for source in copied:
        assert (ROOT / source).exists(), source
    first_comments = DOCKERFILE.read_text().split("\nFROM", 1)[0]
    assert "docker build -f bot/app/Dockerfile -t fixloop-app ." in first_comments


def test_the_copied_files_build_the_wheel(tmp_path: Path) -> None:
    """What the build stage does, offline: a wheel from pyproject.toml, README.md, bot/ and the workflow
    template alone; the template ships inside it for `fixloop init`."""
    pytest.importorskip("hatchling")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "bot"), str(source / "bot")], check=True)
    (source / "workflows").mkdir()
    (source / "workflows" / "fixloop.yml").write_bytes((ROOT / "workflows" / "fixloop.yml").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("fixloop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "fixloop = bot.cli:main" in archive.read(entry_points).decode()
        template = archive.read("bot/_data/fixloop-workflow.yml")
    assert {"bot/app/__init__.py", "bot/app/metrics.py", "bot/cli.py"} <= set(names)
    assert template == (ROOT / "workflows" / "fixloop.yml").read_bytes()
    assert not [n for n in names if n.endswith(".pyc")]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_passes_only_on_a_healthy_server(
    stages: list[list[tuple[str, str]]], status: int, healthy: bool
) -> None:
    (healthcheck,) = _args(stages[-1], "HEALTHCHECK")
    _, _, cmd = healthcheck.partition("CMD ")
    command = json.loads(cmd)
    assert command[:2] == ["python", "-c"] and "curl" not in healthcheck
    script = command[2]
    ast.parse(script)
    assert "urllib" in script and "127.0.0.1:8080/healthz" in script
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Health", (_Health,), {"status": status}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = subprocess.run(
            [sys.executable, "-c", script.replace(":8080/", f":{port}/")], check=False, capture_output=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def test_a_bad_manifest_url_on_the_command_line_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    assert main(["app", "manifest", "--url", "ftp://x"]) == 2
    err = capsys.readouterr().err
    assert (err.count("\n") == 1 and err.startswith("fixloop: the App's URL must be an http(s) URL")
            and "Traceback" not in err)
