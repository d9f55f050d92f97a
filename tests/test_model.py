"""The model seam: fixloop's own conversation types, `make_model`, and the Anthropic adapter's
translation at the edge, seen through the fake Messages API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

import bot
from bot.agent._anthropic import AnthropicModel
from bot.agent.model import CallResult, Message, Opaque, Text, ToolCall, make_model
from bot.agent.tools import TOOL_SPECS, search_spec
from bot.config import Config
from bot.errors import MissingAPIKey
from tests.fakes.messages_api import MessagesAPIServer, Reply, bash, text

ROOT = Path(__file__).resolve().parents[1]
THINKING = {"type": "thinking", "thinking": "The sign is wrong.", "signature": "sig-1"}
REDACTED = {"type": "redacted_thinking", "data": "opaque-bytes"}
CACHED = {"type": "ephemeral"}


@pytest.fixture
def server() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer() as srv:
        yield srv


def claude(srv: MessagesAPIServer) -> AnthropicModel:
    client = anthropic.Anthropic(api_key="test-key", base_url=srv.url, max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(verify=False))
    return AnthropicModel("claude-test-model", client=client)


def test_thinking_round_trips_verbatim_and_the_request_keeps_its_shapes(server: MessagesAPIServer) -> None:
    model, tools = claude(server), [*TOOL_SPECS, search_spec()]
    server.push(Reply([THINKING, REDACTED, text("Let me look."), bash("ls", id="toolu_1")]), Reply([text("Done.")]))
    task = Message("user", [Text("fix the bug")])
    reply = model.complete(system="be brief", tools=tools, messages=[task])
    assert reply.stop_reason == "tool_use"
    assert reply.content == [Opaque("anthropic", THINKING), Opaque("anthropic", REDACTED), Text("Let me look."),
                             ToolCall("toolu_1", "bash", {"command": "ls"})]
    conversation = [task, Message("assistant", reply.content),
                    Message("user", [CallResult("toolu_1", "calc.py"), Text("Go on.")])]
    model.complete(system="be brief", tools=tools, messages=conversation)

    first, second = (request.body for request in server.requests)
    assert first["tools"] == second["tools"] == [
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 20_000},
        {"type": "bash_20250124", "name": "bash"},
        {"name": "search_code", "description": search_spec().description, "input_schema": search_spec().input_schema},
    ]
    # Two cache breakpoints: the system prompt and the last block of the newest user turn.
    assert first["system"] == second["system"] == [{"type": "text", "text": "be brief", "cache_control": CACHED}]
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "fix the bug", "cache_control": CACHED}]}]
    assert second["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "fix the bug"}]},
        {"role": "assistant", "content": [THINKING, REDACTED, {"type": "text", "text": "Let me look."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "bash",
                                           "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "calc.py",
                                      "is_error": False},
                                     {"type": "text", "text": "Go on.", "cache_control": CACHED}]},
    ]
    assert json.dumps(second).count("cache_control") == 2
    assert conversation[0] == task == Message("user", [Text("fix the bug")]), "the breakpoint marks the request only"
    assert server.violations == []


def test_make_model_builds_claude_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    model = make_model(Config(model="claude-test-model"))
    assert isinstance(model, AnthropicModel) and model.name == "claude-test-model"
    assert bot.make_model is make_model and bot.AnthropicModel is AnthropicModel


def test_make_model_without_an_api_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="fixloop demo"):
        make_model(Config())


def test_the_model_seam_does_not_load_the_sdk() -> None:
    """The SDK takes seconds to import; only `make_model` (a real model) pays for it."""
    probe = "import bot.agent.model, sys; print('anthropic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
