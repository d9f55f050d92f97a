"""OpenTelemetry traces, end to end: real `fixloop run` sessions (real git, real pytest, the anthropic
SDK against the loopback Messages API) and the real App, exporting over OTLP/HTTP to a loopback
collector that decodes what it receives."""

from __future__ import annotations

import importlib
import json
import pkgutil
import shlex
import socket
import sys
from pathlib import Path

import pytest
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GenAiProviderNameValues, GenAiSystemValues

from bot.agent.events import (
    Event,
    IterationEnded,
    IterationStarted,
    LimitReached,
    SessionEnded,
    SessionStarted,
    ToolCalled,
)
from bot.agent.usage import Usage
from bot.cli import main
from bot.config import PROVIDERS, Telemetry
from bot.secrets import Redactor, scrubbed_environment
from bot.telemetry import session_tracing, traces_endpoint
from bot.telemetry.app_spans import AppTracing
from bot.telemetry.session_spans import GENAI_PROVIDERS
from tests.fakes.messages_api import MessagesAPIServer, Reply, bash, edit, text
from tests.fakes.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.test_app_server import (  # noqa: F401 - pytest fixtures used by name
    REPO,
    labeled,
    make_app,
    seeded,
    with_installation,
)

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q"
TASK_MARKER, CODE_MARKER, REPLY_MARKER = "task-marker-5b1e", "code-marker-9c2d", "reply-marker-77af"
TASK = f"Fix add()\nadd(2, 3) must be 5 ({TASK_MARKER})"
BUGGY = {
    "calc.py": f"# {CODE_MARKER}\ndef add(a, b):\n    return a - b\n",
    "test_calc.py": f"from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5, '{CODE_MARKER}'\n",
}
WRONG = {"old_str": "a - b", "new_str": "a * b"}
FIX = {"old_str": "a * b", "new_str": "a + b"}
CACHED = {"cache_read_input_tokens": 40, "cache_creation_input_tokens": 9}
API_KEY = "sk-ant-api03-TelemetryTestKey-0000"
CONTENT_KEYS = {"fixloop.task", "gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
                "fixloop.validation.feedback", "fixloop.reason.detail", "fixloop.limit.detail"}
PROMPT_MARKER = "SECRETPROJECTNAME-3f1a"
# A model server's HTTP 422 that echoes the request (FastAPI's `detail[].input`): the session's reason quotes it.
ECHOED = (f"the model server answered HTTP 422: {{'detail': [{{'type': 'string_too_long', 'input': 'Task: "
          f"{PROMPT_MARKER} fix add'}}]}}")
GITHUB_APP_TOKEN = "ghs_" + "A" * 36
STARTED = SessionStarted(session_id="s-1", task=f"Task: {PROMPT_MARKER}", task_kind="local", model="m",
                         provider="anthropic", repo="/r", base_commit="c" * 40, limits={"iterations": 2},
                         confinement="none", confined=False)


@pytest.fixture
def api(monkeypatch) -> MessagesAPIServer:
    with MessagesAPIServer(api_key=API_KEY) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        yield server
        assert server.violations == []


@pytest.fixture
def collector(monkeypatch) -> OTLPReceiver:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "GITHUB_RUN_ID",
                 "GITHUB_WORKFLOW", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        yield receiver
        assert receiver.violations == []


def fixloop(repo: Path, capsys) -> tuple[int, dict, str]:
    code = main(["run", "--repo", str(repo), "--task", TASK, "--validate", PYTEST, "--json"])
    out, err = capsys.readouterr()
    assert out.strip(), err  # no report: fixloop failed before it could write one
    return code, json.loads(out), err


def two_iterations(api: MessagesAPIServer) -> None:
    """The model reads calc.py and breaks it differently (validation fails), then fixes it."""
    api.push(Reply([edit("view", "calc.py", id="toolu_view"),
                    edit("str_replace", "calc.py", id="toolu_wrong", **WRONG)]),
             Reply([text(f"add() now multiplies. {REPLY_MARKER}")], usage=CACHED),
             Reply([edit("str_replace", "calc.py", id="toolu_fix", **FIX)]),
             Reply([text("add() adds.")]))


def within(child: ReceivedSpan, parent: ReceivedSpan) -> bool:
    slack = 50_000_000  # ns: a span's start is its end less a duration rounded to the millisecond
    return parent.start_ns - slack <= child.start_ns <= child.end_ns <= parent.end_ns


def semantic_convention_names() -> set[str]:
    """Every attribute name the installed opentelemetry-semantic-conventions defines."""
    import opentelemetry.semconv._incubating.attributes as incubating
    import opentelemetry.semconv.attributes as stable

    names: set[str] = set()
    for package in (stable, incubating):
        for module in pkgutil.iter_modules(package.__path__):
            found = vars(importlib.import_module(f"{package.__name__}.{module.name}"))
            names |= {value for key, value in found.items() if key.isupper() and isinstance(value, str)}
    return names


def test_a_session_is_one_trace_of_iterations_model_calls_tool_calls_and_validations(
        api, collector, make_repo, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("GITHUB_WORKFLOW", "CI")
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/calc")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    two_iterations(api)
    code, report, err = fixloop(make_repo(BUGGY), capsys)
    assert code == 0, report["reason"]
    assert "OpenTelemetry" not in err

    (session,) = collector.named("fixloop session")
    assert session.parent_id == "" and {span.trace_id for span in collector.spans} == {session.trace_id}
    assert session.resource["service.name"] == "fixloop" and session.scope == "fixloop"
    usage = report["usage"]
    assert session.attributes == {
        "fixloop.session.id": report["session_id"], "fixloop.task.kind": "local", "fixloop.model": report["model"],
        "fixloop.provider": "anthropic", "fixloop.repository": report["repo"],
        "vcs.ref.base.revision": report["base_commit"], "fixloop.confined": report["confined"],
        "cicd.pipeline.run.id": "4242", "cicd.pipeline.name": "CI",
        "vcs.repository.url.full": "https://github.example/octo/calc",
        "cicd.pipeline.run.url.full": "https://github.example/octo/calc/actions/runs/4242",
        "fixloop.status": "validated", "fixloop.reason": "validation passed", "fixloop.user_error": False,
        **{f"fixloop.usage.{name}": value for name, value in usage.items()},
        **({} if report["cost_usd"] is None else {"fixloop.cost_usd": pytest.approx(report["cost_usd"])}),
    }

    baseline, first, second = collector.children(session)
    assert baseline.name == "fixloop validation" and baseline.attributes == {
        "fixloop.iteration": 0, "fixloop.validation.passed": False, "fixloop.validation.commands": 1,
        "fixloop.validation.failed_commands": 1, "fixloop.validation.failed_tests": 1}
    model = report["model"]
    chat = f"chat {model}"
    for n, (iteration, reported) in enumerate(zip((first, second), report["iterations"], strict=True), start=1):
        assert iteration.name == "fixloop iteration" and within(iteration, session)
        assert iteration.attributes == {
            "fixloop.iteration": n, "fixloop.iteration.turns": 2, "fixloop.iteration.passed": n == 2,
            "fixloop.changes.files": 1, **{f"fixloop.usage.{k}": v for k, v in reported["usage"].items()}}
        assert all(within(child, iteration) for child in collector.children(iteration))
    assert [span.name for span in collector.children(first)] == [
        chat, "execute_tool str_replace_based_edit_tool", "execute_tool str_replace_based_edit_tool", chat,
        "fixloop validation"]
    assert [span.name for span in collector.children(second)] == [
        chat, "execute_tool str_replace_based_edit_tool", chat, "fixloop validation"]
    validations = [collector.children(iteration)[-1].attributes for iteration in (first, second)]
    assert [(v["fixloop.validation.passed"], v["fixloop.validation.failed_tests"]) for v in validations] == [
        (False, 1), (True, 0)]

    tools = [span for span in collector.spans if span.name.startswith("execute_tool ")]
    assert sorted(span.attributes["gen_ai.tool.call.id"] for span in tools) == [
        "toolu_fix", "toolu_view", "toolu_wrong"]
    assert all(span.attributes["gen_ai.operation.name"] == "execute_tool" and span.status == "STATUS_CODE_UNSET"
               and span.attributes["gen_ai.tool.name"] == "str_replace_based_edit_tool" for span in tools)

    chats = sorted(collector.named(chat), key=lambda span: span.start_ns)
    assert len(chats) == len(api.requests) == 4
    assert all(span.kind == "SPAN_KIND_CLIENT" and span.attributes == {
        **span.attributes, "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic", "gen_ai.request.model": model,
        "gen_ai.conversation.id": report["session_id"]} for span in chats)
    assert [span.attributes["gen_ai.response.finish_reasons"] for span in chats] == [
        ["tool_use"], ["end_turn"], ["tool_use"], ["end_turn"]]
    assert [span.attributes["fixloop.turn"] for span in chats] == [1, 2, 1, 2]

    def total(name: str) -> int:
        return sum(span.attributes[name] for span in chats)

    assert total("gen_ai.usage.output_tokens") == usage["output_tokens"] > 0
    assert total("gen_ai.usage.cache_read.input_tokens") == usage["cache_read_input_tokens"] == 40
    assert total("gen_ai.usage.cache_creation.input_tokens") == usage["cache_creation_input_tokens"] == 9
    # The GenAI conventions count cached prompt tokens among the input tokens.
    assert total("gen_ai.usage.input_tokens") == usage["input_tokens"] + 40 + 9

    standard = semantic_convention_names()
    sent = {name for span in collector.spans for name in span.attributes}
    assert {name for name in sent if not name.startswith("fixloop.")} <= standard


def test_the_provider_names_are_the_conventions_values():
    assert set(GENAI_PROVIDERS) == set(PROVIDERS)
    assert {provider for provider, _ in GENAI_PROVIDERS.values()} <= {v.value for v in GenAiProviderNameValues}
    assert {system for _, system in GENAI_PROVIDERS.values()} <= {v.value for v in GenAiSystemValues}


def test_no_prompt_reply_or_code_is_sent_by_default(api, collector, make_repo, capsys):
    two_iterations(api)
    code, report, _ = fixloop(make_repo(BUGGY), capsys)
    assert code == 0, report["reason"]
    trajectory = Path(report["trajectory"]).read_text()
    assert all(marker in trajectory for marker in (TASK_MARKER, CODE_MARKER, REPLY_MARKER)), "the session saw them"
    # The session, the baseline's validation, 2 iterations, 4 model calls, 3 tool calls, 2 validations.
    assert len(collector.spans) == 13
    sent = [string for span in collector.spans for string in span.strings()]
    assert not [string for string in sent for marker in (TASK_MARKER, CODE_MARKER, REPLY_MARKER) if marker in string]
    assert not {name for span in collector.spans for name in span.attributes} & CONTENT_KEYS


def test_content_when_asked_for_is_sent_redacted(api, collector, make_repo, capsys, monkeypatch):
    deploy_token = "d3ploy-T0ken-value-4411"
    github_token = "ghp_" + "TelemetryLeak0123456789" * 2
    monkeypatch.setenv("DEPLOY_TOKEN", deploy_token)
    repo = make_repo({**BUGGY, ".github/fixloop.yml": "telemetry: {content: true}\n",
                      "notes.txt": f"the bot's token: {github_token}\n"})
    api.push(Reply([edit("view", "calc.py"), edit("view", "notes.txt"), bash(f"echo {deploy_token}"),
                    edit("str_replace", "calc.py", **WRONG)]),
             Reply([text(f"Done; I used the key {API_KEY}. {REPLY_MARKER}")]),
             Reply([edit("str_replace", "calc.py", **FIX)]),
             Reply([text("add() adds.")]))
    code, report, _ = fixloop(repo, capsys)
    assert code == 0, report["reason"]

    sent = [string for span in collector.spans for string in span.strings()]
    assert not [string for string in sent for secret in (API_KEY, deploy_token, github_token) if secret in string]
    (session,) = collector.named("fixloop session")
    assert TASK_MARKER in session.attributes["fixloop.task"]
    view_calc, view_notes, echo, _ = sorted((span for span in collector.spans if span.name.startswith("execute_tool")),
                                            key=lambda span: span.start_ns)[:4]
    assert json.loads(view_calc.attributes["gen_ai.tool.call.arguments"]) == {"command": "view", "path": "calc.py"}
    assert CODE_MARKER in view_calc.attributes["gen_ai.tool.call.result"]
    assert "[REDACTED]" in view_notes.attributes["gen_ai.tool.call.result"]
    assert json.loads(echo.attributes["gen_ai.tool.call.arguments"]) == {"command": "echo [REDACTED]"}
    replies = [json.loads(span.attributes["gen_ai.output.messages"]) for span in collector.spans
               if span.name.startswith("chat ")]
    said = [part["content"] for reply in replies for message in reply for part in message["parts"]]
    assert f"Done; I used the key [REDACTED]. {REPLY_MARKER}" in said
    first = next(span for span in collector.named("fixloop iteration") if span.attributes["fixloop.iteration"] == 1)
    assert "test_add" in first.attributes["fixloop.validation.feedback"]


@pytest.mark.parametrize("collector_is", ["refusing connections", "silent"])
def test_an_unreachable_collector_costs_one_warning_line_and_nothing_else(collector_is, api, make_repo, capsys,
                                                                         monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        if collector_is == "refusing connections":
            silent.close()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "1000")  # how long the end waits for the last spans (ms)
        api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]), Reply([text("Fixed.")]))
        code, report, err = fixloop(make_repo(BUGGY), capsys)
    assert code == 0 and report["status"] == "validated", report["reason"]
    (warning,) = [line for line in err.splitlines() if "OpenTelemetry" in line]
    assert warning.startswith(f"fixloop: warning: OpenTelemetry spans cannot be sent to http://127.0.0.1:{port} (")


def test_the_endpoint_comes_from_the_config_else_the_standard_variables():
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert traces_endpoint({}) is None
    assert traces_endpoint(base) == "http://collector:4318/v1/traces"
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}) == "http://collector:4318/v1/traces"
    assert traces_endpoint({**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces/in"}) == "http://traces/in"
    assert traces_endpoint(base, configured="https://otel.example/otlp") == "https://otel.example/otlp/v1/traces"
    assert traces_endpoint({**base, "OTEL_SDK_DISABLED": "true"}, configured="https://otel.example") is None
    with session_tracing(Telemetry(enabled=False), base, Redactor()) as sinks:
        assert sinks == []


def test_a_session_cut_short_still_ends_and_sends_its_spans(collector):
    """An exception out of the session (after it started) ends the spans it left open, as errors."""
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    with pytest.raises(KeyboardInterrupt), session_tracing(Telemetry(), environ, Redactor()) as (tracer,):
        tracer(SessionStarted(session_id="s-1", task="t", task_kind="local", model="m", provider="anthropic",
                              repo="/r", base_commit="c" * 40, limits={}, confinement="none", confined=False))
        tracer(IterationStarted(n=1))
        raise KeyboardInterrupt
    (session,) = collector.named("fixloop session")
    (iteration,) = collector.children(session)
    assert [(span.status, span.status_message) for span in (session, iteration)] == [
        ("STATUS_CODE_ERROR", "the session stopped before its end")] * 2


def test_the_collectors_credentials_stay_out_of_the_agents_commands():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
               "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer collector-credential-1",
               "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=collector-credential-2"}
    assert {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}.isdisjoint(scrubbed_environment(environ))
    assert "collector-credential" not in Redactor.from_environment(environ).text(str(environ))


def test_the_app_traces_each_delivery_and_its_dispatch(collector, make_app):  # noqa: F811 - the fixture
    app = make_app(supports_run_details=True)
    assert app.deliver("issues", with_installation(labeled(), app.github), delivery="traced-1").status_code == 202
    assert app.deliver("issues", with_installation(labeled(sender="visitor"), app.github),
                       delivery="traced-2").status_code == 202
    app.settle()
    app.stop()  # sends the last spans
    (run,) = app.github.dispatches(REPO)

    dispatched, refused = sorted(collector.named("fixloop delivery"), key=lambda span: span.attributes[
        "fixloop.delivery.id"])
    assert dispatched.kind == "SPAN_KIND_CONSUMER" and dispatched.attributes == {
        **dispatched.attributes, "fixloop.delivery.id": "traced-1", "fixloop.delivery.event": "issues",
        "fixloop.delivery.action": "labeled", "fixloop.repository": REPO, "fixloop.delivery.decision": "dispatched"}
    assert dispatched.attributes["fixloop.delivery.outcome"].startswith("dispatched session ")
    assert refused.attributes["fixloop.delivery.id"] == "traced-2"
    assert refused.attributes["fixloop.delivery.decision"] != "dispatched"

    (dispatch,) = collector.named("fixloop dispatch")
    assert (dispatch.trace_id, dispatch.parent_id) == (dispatched.trace_id, dispatched.span_id)
    assert dispatch.kind == "SPAN_KIND_CLIENT" and dispatch.attributes == {
        **dispatch.attributes, "fixloop.repository": REPO, "fixloop.task.kind": "issue",
        "fixloop.dispatch.result": "ok", "cicd.pipeline.run.id": str(run.run_id)}
    assert dispatch.attributes["fixloop.session.id"]
    assert dispatched.resource["service.name"] == "fixloop"


def traced(collector: OTLPReceiver, events: list[Event], *, content: bool = False) -> list[str]:
    """Every string the spans of `events` carry, once sent."""
    with session_tracing(Telemetry(content=content), {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url},
                         Redactor()) as (tracer,):
        for event in [STARTED, *events]:
            tracer(event)
    return [string for span in collector.spans for string in span.strings()]


@pytest.mark.parametrize("status", ["error", "not_validated"])
def test_an_ending_reason_that_quotes_the_prompt_is_sent_only_as_a_category(status, collector):
    """A model server's 422 echoing the request made the prompt the reason: without content, spans carry the
    status and a fixed category (a limit's name), never the reason's or a limit's text."""
    limit = [LimitReached(limit="cost_usd", detail=f"cost limit reached ({PROMPT_MARKER})")] \
        if status == "not_validated" else []
    sent = traced(collector, [*limit, SessionEnded(status=status, reason=ECHOED, usage=Usage(), cost_usd=None)])
    assert not [string for string in sent if PROMPT_MARKER in string]
    (session,) = collector.named("fixloop session")
    if status == "error":
        assert (session.attributes["fixloop.reason"], session.status_message) == ("error", "error")
    else:
        assert session.attributes["fixloop.reason"] == "limit reached: cost_usd"
        assert session.events == [("fixloop.limit_reached", {"fixloop.limit": "cost_usd"})]


def test_with_content_the_reason_and_a_limits_detail_are_sent_redacted(collector):
    sent = traced(collector, [LimitReached(limit="turns", detail=f"{PROMPT_MARKER} {GITHUB_APP_TOKEN}"),
                              SessionEnded(status="not_validated", reason=ECHOED + GITHUB_APP_TOKEN, usage=Usage(),
                                           cost_usd=None)], content=True)
    assert not [string for string in sent if GITHUB_APP_TOKEN in string]
    (session,) = collector.named("fixloop session")
    assert session.attributes["fixloop.reason.detail"] == ECHOED + "[REDACTED]"
    assert session.events[0][1]["fixloop.limit.detail"] == f"{PROMPT_MARKER} [REDACTED]"


def test_the_categories_come_from_the_events(collector):
    failed = IterationEnded(n=1, turns=1, usage=Usage(), passed=False, feedback="test_add failed")
    ended = SessionEnded(status="not_validated", reason=ECHOED, usage=Usage(), cost_usd=None)
    traced(collector, [IterationStarted(n=1), failed, IterationStarted(n=2), failed.model_copy(update={"n": 2}), ended])
    passed = IterationEnded(n=1, turns=1, usage=Usage(), passed=True, feedback=None)
    traced(collector, [IterationStarted(n=1), passed, ended])
    traced(collector, [ended.model_copy(update={"status": "error", "user_error": True})])
    assert [span.attributes["fixloop.reason"] for span in collector.named("fixloop session")] == [
        "limit reached: iterations", "the change was refused", "user error"]


def test_a_tool_the_model_made_up_and_an_odd_call_id_are_not_sent_without_content(collector):
    call = ToolCalled(iteration=1, turn=1, call_id=f"id {PROMPT_MARKER}", name=PROMPT_MARKER, input={}, result="",
                      is_error=True, duration_s=0.1)
    sent = traced(collector, [IterationStarted(n=1), call])
    assert not [string for string in sent if PROMPT_MARKER in string]
    (tool,) = [span for span in collector.spans if span.name.startswith("execute_tool")]
    assert tool.name == "execute_tool unknown" and "gen_ai.tool.call.id" not in tool.attributes


@pytest.mark.parametrize("setting", [("OTEL_BSP_SCHEDULE_DELAY", "-5"), ("OTEL_BSP_EXPORT_TIMEOUT", "1e20"),
                                     ("OTEL_BSP_MAX_QUEUE_SIZE", "0")])
def test_an_otel_setting_the_sdk_refuses_costs_one_warning_line_and_nothing_else(setting, api, collector, make_repo,
                                                                                 capsys, monkeypatch):
    """OTEL_BSP_SCHEDULE_DELAY=-5 ended the run with exit 3 ("internal error"); OTEL_BSP_EXPORT_TIMEOUT=1e20 with
    an OverflowError."""
    monkeypatch.setenv(*setting)
    api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]), Reply([text("Fixed.")]))
    code, report, err = fixloop(make_repo(BUGGY), capsys)
    assert code == 0 and report["status"] == "validated", report["reason"]
    assert len([line for line in err.splitlines() if "OpenTelemetry" in line]) <= 1, err


def test_an_endpoint_that_is_not_an_http_url_costs_one_warning_line(capsys):
    with session_tracing(Telemetry(endpoint="collector:4318"), {}, Redactor()) as sinks:
        assert sinks == []
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning == ("fixloop: warning: OpenTelemetry tracing is off (the endpoint is not an http(s) URL with a "
                       "host); nothing else is affected")


def test_the_collectors_credentials_are_never_printed_and_are_redacted(collector, capsys, caplog):
    """The SDK logged `Header format invalid! ...: Authorization=Bearer otlpTOPSECRET123` for a header that is not
    URL-encoded; the values, as written and URL-decoded, are now the session's secrets too."""
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
               "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer otlpTOPSECRET123,x-team=team%2Bcredential42"}
    redactor = Redactor()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTEL_EXPORTER_OTLP_HEADERS", environ["OTEL_EXPORTER_OTLP_HEADERS"])  # what the SDK reads
        with session_tracing(Telemetry(), environ, redactor) as (tracer,):
            tracer(STARTED)
    assert "otlpTOPSECRET123" not in capsys.readouterr().err + caplog.text
    assert redactor.text("Bearer otlpTOPSECRET123 and team+credential42") == "[REDACTED] and [REDACTED]"


def test_the_apps_spans_are_redacted(collector, capsys):
    """An installation token in a delivery's outcome or a dispatch's error was sent as it was."""
    warnings: list[str] = []
    tracing = AppTracing(f"{collector.url}/v1/traces", environ={}, warn=warnings.append, redactor=Redactor())
    with tracing.delivery("d-1", "issues", {"action": GITHUB_APP_TOKEN}) as decided:
        decided(f"refused: the token {GITHUB_APP_TOKEN} cannot dispatch")
        with pytest.raises(RuntimeError), tracing.dispatch("octo/calc", "issue", "s-1"):
            raise RuntimeError(f"403 for {GITHUB_APP_TOKEN}")
    tracing.close()
    sent = [string for span in collector.spans for string in span.strings()]
    assert len(collector.spans) == 2 and not [string for string in sent if GITHUB_APP_TOKEN in string]
    (dispatch,) = collector.named("fixloop dispatch")
    assert dispatch.status_message == "403 for [REDACTED]"
    assert warnings == []


def test_the_app_without_usable_tracing_warns_once_and_goes_on():
    warnings: list[str] = []
    redactor = Redactor()
    tracing = AppTracing("ftp://collector", environ={"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=app-credential-7"},
                         warn=warnings.append, redactor=redactor)
    with tracing.delivery("d-1", "issues", {}) as decided:
        decided("ignored")
    tracing.close()
    assert [line.split(" (")[0] for line in warnings] == ["OpenTelemetry tracing is off"]
    assert redactor.text("app-credential-7") == "[REDACTED]"
