"""provider: openai: the real `openai` SDK over real HTTP to a loopback OpenAI-compatible Chat
Completions endpoint (tests/fakes/chat_completions.py), and `fixloop run` end to end with real git and
real pytest, as tests/test_cli_run.py does for Anthropic's Messages API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.agent._openai import ARGUMENTS_PROBLEM, KEYLESS_PLACEHOLDER, UNREADABLE_ARGUMENTS, OpenAIModel, assemble
from bot.agent.model import CallResult, Message, ModelReply, Opaque, Text, ToolCall, make_model
from bot.agent.pricing import price_for
from bot.agent.tools import BASH, EDITOR, TOOL_SPECS, Toolbox, search_spec
from bot.agent.usage import Usage
from bot.cli import main
from bot.config import DEFAULT_DENY_PATHS, Config
from bot.errors import MissingAPIKey, ModelError
from tests.fakes.chat_completions import (
    NO_TOOL_SUPPORT,
    ChatCompletionsServer,
    CutStream,
    Fail,
    Reply,
    StreamError,
    bash,
    edit,
    text,
    tool_call,
)
from tests.test_cli_run import BUGGY, FIX, PYTEST, WRONG

DONE = Reply([text("add() subtracted; it now adds.")])
TOOLS = [*TOOL_SPECS, search_spec()]
TASK = Message("user", [Text("fix the bug")])
OPENAI_SETTINGS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
                   "OPENAI_CUSTOM_HEADERS")


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which of the SDK's settings it has; none leak in from the machine."""
    for name in OPENAI_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def endpoint() -> Iterator[ChatCompletionsServer]:
    with ChatCompletionsServer() as server:
        yield server
        assert server.violations == []


@pytest.fixture
def with_key(endpoint: ChatCompletionsServer, monkeypatch: pytest.MonkeyPatch) -> ChatCompletionsServer:
    """The endpoint as OPENAI_BASE_URL, with its key in OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return endpoint


def fixloop(repo: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["run", "--repo", str(repo), "--task", "Fix add()\nadd(2, 3) must be 5", "--validate", PYTEST,
                 "--json", *flags])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fixloop.yml"
    path.write_text(text)
    return str(path)


def complete(model: OpenAIModel, messages: list[Message] | None = None) -> ModelReply:
    return model.complete(system="be brief", tools=TOOLS, messages=messages or [TASK])


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [message for message in body["messages"] if message["role"] == "tool"]


# -- `fixloop run` end to end ------------------------------------------------------------------


def test_fixes_a_bug_in_two_iterations_through_an_openai_compatible_endpoint(with_key, make_repo, capsys):
    """The Done-when: feedback naming the failing test, a second iteration that passes, tokens and cost."""
    repo = make_repo(BUGGY)
    with_key.push(Reply([edit("str_replace", "calc.py", **WRONG)]), DONE,
                  Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
    code, report, _ = fixloop(repo, capsys, "--provider", "openai", "--model", "gpt-4.1")
    assert code == 0 and report is not None and report["status"] == "validated"
    assert report["provider"] == "openai" and report["model"] == "gpt-4.1"
    first, second = report["iterations"]
    assert first["validation"]["failed_tests"] == ["test_calc.py::test_add"]
    assert "FAILED test_calc.py::test_add (test_calc.py:5)" in first["feedback"]
    assert second["validation"]["passed"] and second["validation"]["failed_tests"] == []
    feedback_turn = with_key.requests[2].body["messages"][-1]
    assert feedback_turn["role"] == "user" and "FAILED test_calc.py::test_add" in feedback_turn["content"]
    assert all(request.headers["authorization"] == "Bearer test-key" for request in with_key.requests)
    usage = Usage(**report["usage"])
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert all(iteration["usage"]["output_tokens"] > 0 for iteration in report["iterations"])
    price = price_for("openai", "gpt-4.1")
    assert price is not None and report["cost_usd"] == round(price.cost(usage), 4) > 0


def test_a_local_server_needs_no_key_and_an_unknown_models_cost_is_unknown(make_repo, tmp_path, capsys):
    repo = make_repo(BUGGY)
    with ChatCompletionsServer([Reply([edit("str_replace", "calc.py", **FIX)]), DONE], api_key=None) as local:
        config = config_file(tmp_path, f"provider: openai\nmodel: qwen3-coder-30b\nbase_url: {local.url}\n")
        code, report, err = fixloop(repo, capsys, "--config", config)
    assert code == 0 and report is not None and report["status"] == "validated", err
    assert local.violations == [] and len(local.requests) == 2
    assert local.requests[0].headers["authorization"] == f"Bearer {KEYLESS_PLACEHOLDER}"
    assert report["usage"]["input_tokens"] > 0 and report["usage"]["output_tokens"] > 0
    assert report["cost_usd"] is None and "cost unknown" in err


def test_refusals_are_the_toolboxs_own_words(with_key, make_repo, capsys):
    """The same toolbox answers as behind the Anthropic adapter: only the wire format differs."""
    repo = make_repo({**BUGGY, ".github/workflows/ci.yml": "on: push\n"})
    refused = [edit("view", "../outside.txt"), edit("view", "/etc/passwd"),
               edit("create", ".github/workflows/evil.yml", file_text="on: push")]
    with_key.push(Reply(refused), Reply([edit("str_replace", "calc.py", **FIX)]), DONE)
    code, report, _ = fixloop(repo, capsys, "--provider", "openai", "--model", "gpt-4.1")
    assert code == 0 and report is not None
    toolbox = Toolbox(repo, env={}, deny=list(DEFAULT_DENY_PATHS), command_timeout=5)
    said = [toolbox.run(EDITOR, json.loads(call["arguments"])) for call in refused]
    assert all(result.is_error for result in said)
    answers = tool_messages(with_key.requests[1].body)
    assert [answer["tool_call_id"] for answer in answers] == [call["id"] for call in refused]
    assert [answer["content"] for answer in answers] == [f"Error: {result.content}" for result in said]
    assert "'..' is not allowed" in said[0].content and "Absolute paths are not allowed" in said[1].content
    assert "deny list (.github/workflows/**)" in said[2].content
    assert not (repo / ".github/workflows/evil.yml").exists()


def test_a_rejected_key_ends_the_session_in_error_naming_OPENAI_API_KEY(with_key, make_repo, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-the-right-one")
    code, report, err = fixloop(make_repo(BUGGY), capsys, "--provider", "openai", "--model", "gpt-4.1")
    assert code == 3 and report is not None and report["status"] == "error"
    assert report["reason"] == f"The model API at {with_key.url} rejected the API key (401). Check OPENAI_API_KEY."
    assert "Traceback" not in err and len(with_key.requests) == 1, "a 401 is not retried"


@pytest.mark.parametrize("flags", [[], ["--base-url", "https://api.openai.com/v1"]], ids=["default", "configured"])
def test_no_key_for_openais_own_api_is_a_usage_error(make_repo, capsys, flags):
    code, report, err = fixloop(make_repo(BUGGY), capsys, "--provider", "openai", "--model", "gpt-4.1", *flags)
    assert code == 2 and report is None
    assert "OPENAI_API_KEY is not set" in err and "base_url" in err and "Traceback" not in err


def test_an_endpoint_without_tool_calls_ends_in_error_with_the_honest_reason(make_repo, capsys):
    with ChatCompletionsServer(api_key=None, tool_support=False) as vllm:
        url = vllm.url
        code, report, err = fixloop(make_repo(BUGGY), capsys, "--provider", "openai", "--model", "llama-3-8b",
                                    "--base-url", url)
    assert code == 3 and report is not None and report["status"] == "error"
    assert report["reason"] == (
        f"The endpoint at {url} does not support tool calls (function calling) ({NO_TOOL_SUPPORT}); fixloop "
        "needs them: use a model and server with tool support (e.g. vLLM with --enable-auto-tool-choice "
        "--tool-call-parser <the model's parser>, or Ollama with a tools-capable model).")
    assert "Traceback" not in err and len(vllm.requests) == 1, "a 400 is not retried"


# -- the wire format ---------------------------------------------------------------------------


def test_the_request_offers_three_functions_and_results_go_back_as_tool_messages(with_key):
    model = OpenAIModel("gpt-4.1")
    with_key.push(Reply([text("Let me look."), bash("ls", id="call_1"), edit("view", "calc.py", id="call_2")]),
                  Reply([text("Done.")]))
    reply = complete(model)
    assert reply.stop_reason == "tool_use"
    assert reply.content == [Text("Let me look."), ToolCall("call_1", BASH, {"command": "ls"}),
                             ToolCall("call_2", EDITOR, {"command": "view", "path": "calc.py"})]
    thinking = Opaque("anthropic", {"type": "thinking", "thinking": "hm", "signature": "s"})
    complete(model, [TASK, Message("assistant", [thinking, *reply.content]),
                     Message("user", [CallResult("call_1", "calc.py"),
                                      CallResult("call_2", "calc.py does not exist.", is_error=True), Text("Go on.")])])

    first, second = (request.body for request in with_key.requests)
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["tool_choice"] == "auto" and first["tools"] == second["tools"]
    assert [tool["type"] for tool in first["tools"]] == ["function"] * 3
    editor, shell, search = (tool["function"] for tool in first["tools"])
    assert (editor["name"], shell["name"]) == (EDITOR, BASH)
    assert editor["parameters"]["required"] == ["command", "path"]
    assert editor["parameters"]["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
    assert "20,000 characters" in editor["description"], "the view limit the toolbox applies"
    assert set(shell["parameters"]["properties"]) == {"command", "restart"}
    assert search == {"name": "search_code", "description": search_spec().description,
                      "parameters": search_spec().input_schema}
    assert first["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fix the bug"}]
    assert second["messages"][2:] == [
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": BASH, "arguments": '{"command": "ls"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": EDITOR, "arguments": '{"command": "view", "path": "calc.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "calc.py"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: calc.py does not exist."},
        {"role": "user", "content": "Go on."},
    ]


def test_every_editor_command_fits_its_schema_and_runs_in_the_toolbox(with_key, tmp_path):
    """The fake checks each scripted call against the schema the request declared, as a server's tool
    parser constrains a model; the toolbox then runs the very same input."""
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    calls = [edit("view", "calc.py", view_range=[1, -1]), edit("str_replace", "calc.py", **FIX),
             edit("insert", "calc.py", insert_line=0, insert_text="# calc"), edit("create", "notes.txt", file_text="x"),
             tool_call(BASH, {"restart": True})]
    with_key.push(Reply(calls))
    reply = complete(OpenAIModel("gpt-4.1"))
    toolbox = Toolbox(tmp_path, env={}, deny=[], command_timeout=5)
    results = [toolbox.run(call.name, call.input) for call in reply.content if isinstance(call, ToolCall)]
    assert [result.is_error for result in results] == [False] * 5, results
    assert (tmp_path / "calc.py").read_text() == "# calc\ndef add(a, b):\n    return a + b\n"


def test_streamed_deltas_are_assembled_and_cached_tokens_counted_apart(with_key):
    """Two parallel calls whose arguments arrive in pieces over many chunks, interleaved with text."""
    long_file = "def add(a, b):\n    return a + b\n" * 5
    with_key.push(Reply([text("Two things at once."), edit("create", "calc.py", file_text=long_file, id="call_a"),
                         bash("python -m pytest -q test_calc.py", id="call_b")],
                        usage={"prompt_tokens": 1200, "completion_tokens": 90,
                               "prompt_tokens_details": {"cached_tokens": 1000}}))
    reply = complete(OpenAIModel("gpt-4.1"))
    create = {"command": "create", "path": "calc.py", "file_text": long_file}
    assert reply.content == [Text("Two things at once."), ToolCall("call_a", EDITOR, create),
                             ToolCall("call_b", BASH, {"command": "python -m pytest -q test_calc.py"})]
    assert reply.usage == Usage(input_tokens=200, output_tokens=90, cache_read_input_tokens=1000)


@pytest.mark.parametrize(("finish_reason", "stop_reason", "calls"), [
    ("stop", "end_turn", []),
    ("length", "max_tokens", []),
    ("content_filter", "refusal", []),
    ("stop", "tool_use", [bash("ls")]),  # servers that end a reply with calls as "stop" (older Ollama)
])
def test_finish_reasons_become_stop_reasons(with_key, finish_reason, stop_reason, calls):
    with_key.push(Reply([text("…"), *calls], finish_reason=finish_reason))
    assert complete(OpenAIModel("gpt-4.1")).stop_reason == stop_reason


def test_arguments_that_are_not_json_come_back_as_an_error_the_model_can_act_on(with_key, tmp_path):
    model = OpenAIModel("gpt-4.1")
    with_key.push(Reply([tool_call(BASH, '{"command": "ls', id="call_1")]), Reply([text("Retrying.")]))
    call = complete(model).content[0]
    assert isinstance(call, ToolCall) and call.input[UNREADABLE_ARGUMENTS] == '{"command": "ls'
    assert call.input[ARGUMENTS_PROBLEM].startswith("Unterminated string")
    result = Toolbox(tmp_path, env={}, deny=[], command_timeout=5).run(call.name, call.input)
    assert result.is_error, "nothing ran"
    complete(model, [TASK, Message("assistant", [call]), Message("user", [CallResult(call.id, result.content, True)])])
    sent_call = with_key.requests[1].body["messages"][2]["tool_calls"][0]
    assert json.loads(sent_call["function"]["arguments"]) == call.input, "valid JSON on the wire, saying what happened"
    assert tool_messages(with_key.requests[1].body)[0]["content"] == (
        f"Error: the arguments of this bash call were not a JSON object ({call.input[ARGUMENTS_PROBLEM]}), so "
        f"nothing was run; call it again with valid JSON arguments. The tool said: {result.content}")


def test_a_tool_call_written_as_text_is_the_honest_ending_too(with_key):
    """What a model writes when its server does not parse tool calls; prose about tools is not that."""
    model = OpenAIModel("qwen2.5-coder")
    with_key.push(Reply([text('I ran "bash" with {"command": "pytest"}; it passes now.')]),
                  Reply([text('<tool_call>\n{"name": "bash", "arguments": {"command": "pytest -q"}}\n</tool_call>')]))
    assert complete(model).stop_reason == "end_turn"
    with pytest.raises(ModelError) as raised:
        complete(model)
    assert str(raised.value).startswith(f"The model at {with_key.url} wrote a tool call as text instead of making "
                                        "one: the endpoint does not support tool calls (function calling) for it.")


def test_without_usage_from_the_server_tokens_are_estimated_and_that_is_said_once(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with ChatCompletionsServer([Reply([bash("ls")]), Reply([text("Done.")])], stream_usage=False) as server:
        url = server.url
        model = OpenAIModel("gpt-4.1", base_url=url)
        replies = [complete(model), complete(model)]
    assert server.violations == []
    assert all(reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0 for reply in replies)
    err = capsys.readouterr().err
    assert err.count("fixloop: warning:") == 1
    assert (f"the model API at {url} reports no token usage (it ignores stream_options.include_usage); "
            "fixloop estimates tokens") in err


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [[Fail(429)], [Fail(429), Fail(503), Fail(500)]], ids=["429", "429-503-500"])
def test_http_failures_are_retried_by_the_sdk(with_key, failures):
    with_key.push(*failures, Reply([text("Fine now.")]))
    assert complete(OpenAIModel("gpt-4.1")).content == [Text("Fine now.")]
    assert len(with_key.requests) == len(failures) + 1


@pytest.mark.parametrize("broken", [CutStream(Reply([text("partial answer"), bash("ls")]), after_chunks=4),
                                    StreamError("The model crashed.")], ids=["cut", "error-chunk"])
def test_a_stream_that_breaks_is_retried_as_a_whole(with_key, broken):
    slept: list[float] = []
    with_key.push(broken, Reply([text("The whole answer.")]))
    reply = complete(OpenAIModel("gpt-4.1", sleep=slept.append))
    assert reply.content == [Text("The whole answer.")], "nothing of the broken stream is kept"
    assert len(with_key.requests) == 2 and slept == [0.5]


def test_a_stream_that_keeps_breaking_is_a_model_error(with_key):
    slept: list[float] = []
    with_key.push(*[CutStream(Reply([text("partial answer")]), after_chunks=2)] * 3)
    with pytest.raises(ModelError, match=r"^The model API stream at \S+ broke 3 times: ") as raised:
        complete(OpenAIModel("gpt-4.1", sleep=slept.append))
    assert str(raised.value).endswith("(incomplete chunked read)"), "the transport's own reason"
    assert len(with_key.requests) == 3 and slept == [0.5, 1.0]


def test_an_unknown_model_or_a_wrong_base_url_says_which(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with ChatCompletionsServer(models={"gpt-4.1"}) as server:
        url = server.url
        with pytest.raises(ModelError) as unknown:
            complete(OpenAIModel("gpt-4.2-typo", base_url=url))
        root = url.removesuffix("/v1")
        with pytest.raises(ModelError) as unversioned:
            complete(OpenAIModel("gpt-4.1", base_url=root))
    assert str(unknown.value) == (
        f"The model API at {url} does not know the model 'gpt-4.2-typo', or the base URL is wrong (404: The "
        "model `gpt-4.2-typo` does not exist.). Check `model`, and `base_url` or OPENAI_BASE_URL: OpenAI-compatible "
        "servers answer under /v1, e.g. http://localhost:8000/v1.")
    assert str(unversioned.value).startswith(f"The model API at {root} does not know the model 'gpt-4.1', or the "
                                             "base URL is wrong (404: Not Found).")


def test_a_server_that_wants_a_key_says_so_when_none_is_set(endpoint):
    with pytest.raises(ModelError) as raised:
        complete(OpenAIModel("gpt-4.1", base_url=endpoint.url))
    assert str(raised.value) == (f"The model API at {endpoint.url} wants an API key (401) and OPENAI_API_KEY is not "
                                 "set: export the endpoint's key as OPENAI_API_KEY.")


def test_an_unreachable_endpoint_is_named(monkeypatch):
    with ChatCompletionsServer() as gone:
        url = gone.url
    model = OpenAIModel("gpt-4.1", base_url=url, max_retries=0)
    with pytest.raises(ModelError, match=f"^Could not reach the model API at {url}: .*refused"):
        complete(model)


def test_make_model_builds_the_openai_model_from_the_config(monkeypatch):
    model = make_model(Config(provider="openai", model="local-model", base_url="http://10.0.0.5:8000/v1"))
    assert isinstance(model, OpenAIModel) and model.name == "local-model"
    assert model.base_url == "http://10.0.0.5:8000/v1" and model.client.api_key == KEYLESS_PLACEHOLDER
    monkeypatch.setenv("OPENAI_BASE_URL", "http://ollama.internal:11434/v1")
    assert make_model(Config(provider="openai")).base_url == "http://ollama.internal:11434/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(MissingAPIKey, match="OPENAI_API_KEY is not set"):
        make_model(Config(provider="openai"))


# -- the fake itself ---------------------------------------------------------------------------


def test_the_fake_streams_in_pieces_what_it_serves_as_json_and_rejects_malformed_requests(endpoint):
    client = openai.OpenAI(api_key="test-key", base_url=endpoint.url, max_retries=0)
    reply = Reply([text("Looking at it now."), bash("python -m pytest -q", id="call_1")])
    endpoint.push(reply, reply)
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                               "tools": [{"type": "function", "function": {"name": BASH, "parameters": {
                                   "type": "object", "properties": {"command": {"type": "string"}}}}}]}
    whole = client.chat.completions.create(**request).choices[0]
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    deltas = [choice.delta for chunk in chunks for choice in chunk.choices]
    pieces = [call.function.arguments for delta in deltas for call in delta.tool_calls or [] if call.function]
    assert "".join(pieces) == whole.message.tool_calls[0].function.arguments == '{"command": "python -m pytest -q"}'
    assert len([piece for piece in pieces if piece]) >= 3
    assert "".join(delta.content or "" for delta in deltas) == whole.message.content == "Looking at it now."
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert whole.finish_reason == "tool_calls" and chunks[-2].choices[0].finish_reason == "tool_calls"
    orphan = {"role": "tool", "tool_call_id": "call_9", "content": "x"}
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceding message"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}, orphan])
    assert len(endpoint.violations) == 1
    endpoint.violations.clear()


def test_a_character_cut_in_two_by_the_stream_is_put_back_together():
    """JavaScript servers cut streams by UTF-16 units: 🙂 arrives as two lone surrogates."""
    from openai.types.chat import ChatCompletionChunk

    def chunk(content: str | None = None, arguments: str | None = None, finish: str | None = None) -> Any:
        delta: dict[str, Any] = {"content": content}
        if arguments is not None:
            delta["tool_calls"] = [{"index": 0, "id": "c1", "function": {"name": BASH, "arguments": arguments}}]
        return ChatCompletionChunk.model_validate({"id": "x", "object": "chat.completion.chunk", "created": 0,
                                                    "model": "m", "choices": [{"index": 0, "delta": delta,
                                                                               "finish_reason": finish}]})

    streamed = assemble([chunk("smile \ud83d"), chunk("\ude42 and half \ud83d"),
                         chunk(arguments='{"command": "echo \ud83d'), chunk(arguments='\ude42"}', finish="stop")])
    assert streamed.text == "smile \U0001f642 and half \ufffd"
    assert json.loads(streamed.calls[0].arguments) == {"command": "echo \U0001f642"}


class RawStream:
    """A loopback server that streams exactly the chunks a test gives, malformed ones included (the
    scripted fake checks its own replies, so it cannot send what a broken server sends)."""

    def __init__(self, chunks: list[Any] | None = None, *, endless: bool = False) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                try:
                    while script.endless:
                        self.wfile.write(f"data: {json.dumps(raw_chunk({'content': 'A' * 65536}))}\n\n".encode())
                    for chunk in script.chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                except OSError:
                    pass

        self.chunks, self.endless = chunks or [], endless
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> RawStream:
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def raw_chunk(delta: Any, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "usage": usage,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def complete_from(server: RawStream) -> ModelReply:
    model = OpenAIModel("m", base_url=server.url, max_retries=0, stream_retries=0, sleep=lambda _s: None)
    return model.complete(system="s", tools=TOOL_SPECS, messages=[Message("user", [Text("go")])])


def test_arguments_sent_as_an_object_and_absurd_usage_are_read_sanely():
    call = {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": BASH, "arguments": {"command": "ls"}}}]}
    usage = {"prompt_tokens": 100, "completion_tokens": -7, "total_tokens": 0,
             "prompt_tokens_details": {"cached_tokens": 50_000_000}}
    with RawStream([raw_chunk(call, "tool_calls"), {**raw_chunk({}), "choices": [], "usage": usage}]) as server:
        reply = complete_from(server)
    assert reply.content == [ToolCall("c1", BASH, {"command": "ls"})]
    assert reply.usage == Usage(input_tokens=0, output_tokens=0, cache_read_input_tokens=100), \
        "a server's counts never lower the session's spending"


@pytest.mark.parametrize("chunks", [
    [raw_chunk({"content": ["not", "text"]}, "stop")],
    [raw_chunk({"tool_calls": [{"index": None, "function": {"name": BASH, "arguments": "{}"}}]}),
     raw_chunk({"tool_calls": [{"index": 0, "function": {"name": BASH, "arguments": "{}"}}]}, "tool_calls")],
    [raw_chunk(None, "stop")],
], ids=["content-list", "none-index", "no-delta"])
def test_a_malformed_stream_is_the_servers_fault_said_plainly(chunks):
    with RawStream(chunks) as server, pytest.raises(ModelError, match=r"cannot read .*not OpenAI's Chat Completions"):
        complete_from(server)


def test_a_stream_that_never_ends_is_cut_off_before_it_fills_the_memory(monkeypatch):
    import bot.agent._openai

    monkeypatch.setattr(bot.agent._openai, "MAX_REPLY_CHARACTERS", 1_000_000)
    with RawStream(endless=True) as server, pytest.raises(ModelError, match="more than one reply can hold"):
        complete_from(server)
