"""The fake Messages API, driven by the real ``anthropic`` SDK over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.messages_api import (
    CutStream,
    Fail,
    MessagesAPIServer,
    Reply,
    Step,
    StreamError,
    bash,
    check_request,
    edit,
    text,
    tool_use,
)

MODEL = "claude-test-model"
TOOLS: list[dict[str, Any]] = [
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    {"type": "bash_20250124", "name": "bash"},
]
USER: list[dict[str, Any]] = [{"role": "user", "content": "fix the bug"}]


@pytest.fixture
def server() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer() as srv:
        yield srv


def make_client(srv: MessagesAPIServer, *, max_retries: int = 0, api_key: str = "test-key") -> anthropic.Anthropic:
    # verify=False: plain-HTTP loopback anyway, and it skips ~20 ms of CA loading per client
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=srv.url,
        max_retries=max_retries,
        http_client=anthropic.DefaultHttpxClient(verify=False),
    )


def create(client: anthropic.Anthropic, **kw: Any) -> anthropic.types.Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 1024, "messages": USER, "tools": TOOLS}
    params.update(kw)
    return client.messages.create(**params)


def raw_post(
    srv: MessagesAPIServer, body: bytes, headers: dict[str, str], path: str = "/v1/messages", method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def valid_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


def tool_round(tool_id: str = "toolu_A", result_id: str = "toolu_A") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("bash", {"command": "ls"}, id=tool_id)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": result_id, "content": "a.py"}]},
    ]


# --------------------------------------------------------------------------- helpers


def test_tool_use_helpers_build_api_shaped_blocks_with_unique_ids() -> None:
    ids = {tool_use("t", {})["id"] for _ in range(200)}
    assert len(ids) == 200 and all(i.startswith("toolu_01") for i in ids)
    assert edit("str_replace", "/a.py", old_str="x", new_str="y", id="toolu_X") == {
        "type": "tool_use",
        "id": "toolu_X",
        "name": "str_replace_based_edit_tool",
        "input": {"command": "str_replace", "path": "/a.py", "old_str": "x", "new_str": "y"},
    }
    b = bash("pytest -q")
    assert (b["name"], b["input"]) == ("bash", {"command": "pytest -q"})


def test_reply_stop_reason_defaults_from_content() -> None:
    assert Reply([text("done")]).stop_reason == "end_turn"
    assert Reply([text("run"), bash("ls")]).stop_reason == "tool_use"
    assert Reply([text("cut")], stop_reason="max_tokens").stop_reason == "max_tokens"
    block = Reply([{"type": "tool_use", "name": "bash", "input": {}}]).content[0]
    assert block["id"].startswith("toolu_01")


# --------------------------------------------------------------------------- non-streaming


def test_non_streaming_text_and_tool_use(server: MessagesAPIServer) -> None:
    call = edit("create", "/w/a.py", file_text="x = 1\n")
    server.push(Reply([text("I'll create it."), call], usage={"cache_read_input_tokens": 7}))
    with make_client(server) as client:
        msg = create(client, system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])

    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_") and msg.model == MODEL
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[0].text == "I'll create it."
    block = msg.content[1]
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert (block.id, block.name, block.input) == (call["id"], call["name"], call["input"])
    (req,) = server.requests
    assert req.stream is False and req.body["tools"] == TOOLS
    assert msg.usage.input_tokens == len(json.dumps(req.body)) // 4
    assert msg.usage.output_tokens > 0
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (7, 0)
    assert req.headers["anthropic-version"]
    assert server.violations == [] and server.remaining == 0


def test_sdk_sends_api_key_as_bearer_token(server: MessagesAPIServer) -> None:
    """anthropic 2.x sends api_key as ``Authorization: Bearer``, not ``x-api-key``."""
    server.push(Reply([text("ok")]))
    with make_client(server) as client:
        create(client)
    headers = server.requests[0].headers
    assert headers["authorization"] == "Bearer test-key"
    assert "x-api-key" not in headers


def test_x_api_key_header_is_accepted_too(server: MessagesAPIServer) -> None:
    server.push(Reply([text("ok")]))
    status, payload = raw_post(
        server,
        json.dumps(valid_body()).encode(),
        {"x-api-key": "test-key", "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert status == 200 and payload["content"] == [{"type": "text", "text": "ok"}]
    assert payload["model"] == MODEL and payload["stop_reason"] == "end_turn"
    assert server.violations == []


def test_callable_script_sees_the_request_and_drives_a_tool_loop(server: MessagesAPIServer) -> None:
    call = bash("cat a.py")

    def script(body: dict[str, Any]) -> Step:
        last = body["messages"][-1]["content"]
        if isinstance(last, str):
            return Reply([call])
        result = last[0]
        return Reply([text(f"saw {result['tool_use_id']}: {result['content']}")])

    with MessagesAPIServer(script) as srv, make_client(srv) as client:
        first = create(client)
        tool_block = first.content[0]
        assert isinstance(tool_block, anthropic.types.ToolUseBlock) and tool_block.input == {"command": "cat a.py"}
        history = [
            *USER,
            {"role": "assistant", "content": [b.to_dict() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_block.id, "content": "x = 1"}]},
        ]
        second = create(client, messages=history)
        assert second.content[0].text == f"saw {call['id']}: x = 1"
        assert second.stop_reason == "end_turn"
        assert srv.violations == []


# --------------------------------------------------------------------------- streaming


def test_stream_get_final_message_rebuilds_thinking_text_and_tool_use(server: MessagesAPIServer) -> None:
    call = edit("str_replace", "/w/a.py", old_str="x = 1\n" * 10, new_str="x = 2  # é ✓\n" * 10)
    thinking = {"type": "thinking", "thinking": "The bug is on line 1, clearly.", "signature": "c2lnbmF0dXJl"}
    server.push(Reply([thinking, text("Fixing the assignment now."), call]))
    with make_client(server) as client, client.messages.stream(
        model=MODEL,
        max_tokens=4096,
        messages=USER,
        tools=TOOLS,
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()

    assert server.requests[0].stream is True
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == thinking["thinking"]
    assert final.content[0].signature == thinking["signature"]
    assert final.content[1].text == "Fixing the assignment now."
    assert (final.content[2].id, final.content[2].input) == (call["id"], call["input"])
    assert final.stop_reason == "tool_use" and final.model == MODEL and final.id.startswith("msg_")
    json_chunks = [e for e in events if e.type == "input_json"]
    assert len(json_chunks) >= 3, "tool input must arrive as several input_json_delta pieces"
    assert "".join(e.partial_json for e in json_chunks) == json.dumps(call["input"])
    assert len([e for e in events if e.type == "text"]) >= 2
    assert server.violations == []


def test_raw_stream_event_sequence(server: MessagesAPIServer) -> None:
    server.push(Reply([text("hello world"), bash("ls")], usage={"output_tokens": 42}))
    with make_client(server) as client:
        stream = create(client, stream=True)
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.stop_reason is None and events[0].message.content == []
    assert [(e.type, e.index) for e in events if e.type in ("content_block_start", "content_block_stop")] == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
    ]
    tool_start = events[kinds.index("content_block_start", 2)].content_block
    assert tool_start.type == "tool_use" and tool_start.input == {}
    delta = events[-2]
    assert delta.delta.stop_reason == "tool_use" and delta.usage.output_tokens == 42
    assert "ping" not in kinds  # sent on the wire, dropped by the SDK


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.text(min_size=1, max_size=150), min_size=1, max_size=3),
    tool_input=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**53), 2**53)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=30),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
        max_size=4,
    ),
)
def test_streamed_and_plain_replies_agree(
    server: MessagesAPIServer, texts: list[str], tool_input: dict[str, Any]
) -> None:
    content = [*[text(t) for t in texts], tool_use("lookup", tool_input)]
    server.push(Reply(content), Reply(content))
    tools = [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}]
    with make_client(server) as client:
        plain = create(client, tools=tools)
        with client.messages.stream(model=MODEL, max_tokens=100, messages=USER, tools=tools) as stream:
            streamed = stream.get_final_message()
    expected = [{"type": "text", "text": t} for t in texts] + [content[-1]]
    assert [b.model_dump(exclude_none=True) for b in plain.content] == expected
    assert [b.model_dump(exclude_none=True, exclude={"parsed_output"}) for b in streamed.content] == expected
    assert streamed.stop_reason == plain.stop_reason == "tool_use"
    assert server.violations == []


# --------------------------------------------------------------------------- errors and retries


def _retried(server: MessagesAPIServer) -> float:
    server.push(Fail(429, message="slow down"), Fail(529), Reply([text("finally")]))
    started = time.monotonic()
    with make_client(server, max_retries=2) as client:
        msg = create(client)
    elapsed = time.monotonic() - started
    assert msg.content[0].text == "finally"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]
    assert server.violations == []
    return elapsed


def test_429_then_529_then_success_is_retried(server: MessagesAPIServer) -> None:
    _retried(server)


@pytest.mark.timing
def test_429_then_529_then_success_is_retried_quickly(server: MessagesAPIServer) -> None:
    # without retry-after-ms the SDK's backoff would sleep >= 1.1 s for two retries
    assert _retried(server) < 1.0


def test_error_before_a_stream_starts_is_retried_by_the_sdk(server: MessagesAPIServer) -> None:
    server.push(Fail(529), Reply([text("streamed")]))
    with (make_client(server, max_retries=1) as client,
          client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream):
        assert stream.get_final_text() == "streamed"
    assert [r.stream for r in server.requests] == [True, True]
    assert server.violations == []


def test_async_client_streams_too(server: MessagesAPIServer) -> None:
    server.push(Reply([text("async hello"), bash("ls")]))

    async def run() -> anthropic.types.Message:
        async with (anthropic.AsyncAnthropic(api_key="test-key", base_url=server.url, max_retries=0) as client,
                    client.messages.stream(model=MODEL, max_tokens=100, messages=USER, tools=TOOLS) as stream):
            return await stream.get_final_message()

    final = asyncio.run(run())
    assert final.content[0].text == "async hello"
    assert final.content[1].input == {"command": "ls"}
    assert server.violations == []


def test_429_surfaces_as_rate_limit_error_when_retries_run_out(server: MessagesAPIServer) -> None:
    server.push(Fail(429, message="slow down"), Fail(429, message="slow down"))
    with make_client(server, max_retries=1) as client, pytest.raises(anthropic.RateLimitError) as info:
        create(client)
    assert info.value.type == "rate_limit_error" and info.value.api_message == "slow down"
    assert len(server.requests) == 2


def test_500_without_retries_is_internal_server_error(server: MessagesAPIServer) -> None:
    server.push(Fail(500, message="boom"), Reply([text("never sent")]))
    with make_client(server, max_retries=0) as client, pytest.raises(anthropic.InternalServerError) as info:
        create(client)
    assert info.value.status_code == 500 and info.value.type == "api_error"
    assert info.value.api_message == "boom"
    assert info.value.request_id and info.value.request_id.startswith("req_")
    assert len(server.requests) == 1 and server.remaining == 1


def test_529_is_overloaded_error(server: MessagesAPIServer) -> None:
    server.push(Fail(529))
    with make_client(server) as client, pytest.raises(anthropic.OverloadedError) as info:
        create(client)
    assert info.value.type == "overloaded_error"


def test_cut_stream_raises_httpx_remote_protocol_error_mid_iteration(server: MessagesAPIServer) -> None:
    # events: message_start, content_block_start, ping, delta, delta | cut
    server.push(CutStream(Reply([text("abcdefghijkl")]), after_events=5))
    received: list[str] = []
    with (make_client(server, max_retries=2) as client, pytest.raises(httpx2.RemoteProtocolError),
          client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream):
        for chunk in stream.text_stream:
            received.append(chunk)
    assert "".join(received) == "abcdefgh"
    assert not issubclass(httpx2.RemoteProtocolError, anthropic.APIError)  # callers must catch httpx2 errors
    assert len(server.requests) == 1  # mid-stream failures are never retried by the SDK


def test_cut_non_stream_request_is_api_connection_error_and_retried(server: MessagesAPIServer) -> None:
    server.push(CutStream(Reply([text("lost")])))
    with make_client(server, max_retries=0) as client, pytest.raises(anthropic.APIConnectionError):
        create(client)
    server.push(CutStream(Reply([text("lost")])), Reply([text("second try")]))
    with make_client(server, max_retries=1) as client:
        assert create(client).content[0].text == "second try"
    assert len(server.requests) == 3 and server.violations == []


def test_stream_error_event_raises_plain_api_status_error(server: MessagesAPIServer) -> None:
    server.push(StreamError())
    seen: list[str] = []
    with (make_client(server, max_retries=2) as client, pytest.raises(anthropic.APIStatusError) as info,
          client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream):
        for event in stream:
            seen.append(event.type)
    err = info.value
    assert seen == ["message_start"]
    # the HTTP status was 200, so the SDK cannot map it to OverloadedError / InternalServerError
    assert type(err) is anthropic.APIStatusError
    assert err.status_code == 200 and err.type == "overloaded_error"
    assert len(server.requests) == 1


def test_stream_error_on_non_stream_request_is_http_error(server: MessagesAPIServer) -> None:
    server.push(StreamError("rate_limit_error"))
    with make_client(server) as client, pytest.raises(anthropic.RateLimitError):
        create(client)


# --------------------------------------------------------------------------- request checks over the wire


def test_unpaired_tool_result_is_rejected_with_400(server: MessagesAPIServer) -> None:
    server.push(Reply([text("ok")]))
    with make_client(server) as client, pytest.raises(anthropic.BadRequestError) as info:
        create(client, messages=tool_round("toolu_A", "toolu_B"))
    assert info.value.type == "invalid_request_error"
    assert "toolu_B" in str(info.value.api_message)
    assert len(server.violations) == 1 and "toolu_B" in server.violations[0]
    assert server.remaining == 1  # rejected before the "model" ran


def test_wrong_api_key_is_authentication_error(server: MessagesAPIServer) -> None:
    server.push(Reply([text("ok")]))
    with (make_client(server, api_key="wrong-key", max_retries=2) as client,
          pytest.raises(anthropic.AuthenticationError) as info):
        create(client)
    assert info.value.type == "authentication_error"
    assert len(server.requests) == 1 and server.remaining == 1
    assert len(server.violations) == 1 and "API key" in server.violations[0]


def test_script_exhausted_is_a_violation_and_not_retried(server: MessagesAPIServer) -> None:
    with make_client(server, max_retries=2) as client, pytest.raises(anthropic.InternalServerError) as info:
        create(client)
    assert "script exhausted" in str(info.value.api_message)
    assert len(server.requests) == 1  # x-should-retry: false
    assert len(server.violations) == 1 and "script exhausted" in server.violations[0]


def test_reply_calling_undeclared_tool_is_a_violation(server: MessagesAPIServer) -> None:
    server.push(Reply([bash("ls")]))
    with make_client(server) as client:
        msg = create(client, tools=[TOOLS[0]])
    assert msg.content[0].name == "bash"  # still served
    assert len(server.violations) == 1 and "'bash'" in server.violations[0]


def test_too_many_cache_breakpoints_is_rejected(server: MessagesAPIServer) -> None:
    cached = {"type": "ephemeral"}
    tools = [{**t, "cache_control": cached} for t in TOOLS]
    system = [{"type": "text", "text": f"s{i}", "cache_control": cached} for i in range(3)]
    server.push(Reply([text("ok")]))
    with make_client(server) as client, pytest.raises(anthropic.BadRequestError):
        create(client, tools=tools, system=system)
    assert "maximum of 4" in server.violations[0]
    with make_client(server) as client:
        create(client, tools=tools, system=system[:2])  # exactly 4 is fine
    assert len(server.violations) == 1


GOOD_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("path", "method", "headers", "body", "status", "error_type"),
    [
        ("/v1/complete", "POST", GOOD_HEADERS, b"{}", 404, "not_found_error"),
        ("/v1/messages", "GET", GOOD_HEADERS, b"", 405, "invalid_request_error"),
        ("/v1/messages", "POST", {"x-api-key": "test-key"}, b"{}", 400, "invalid_request_error"),
        ("/v1/messages", "POST", GOOD_HEADERS, b"{nope", 400, "invalid_request_error"),
        ("/v1/messages", "POST", GOOD_HEADERS, b'{"model": "m"}', 400, "invalid_request_error"),
        ("/v1/messages", "POST", {"anthropic-version": "v"}, b"{}", 401, "authentication_error"),
    ],
)
def test_protocol_errors_over_raw_http(
    server: MessagesAPIServer,
    path: str,
    method: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error_type: str,
) -> None:
    server.push(Reply([text("unused")]))
    got_status, payload = raw_post(server, body, headers, path=path, method=method)
    assert got_status == status
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    assert len(server.violations) == 1 and server.remaining == 1


# --------------------------------------------------------------------------- check_request (pure)


def test_check_request_accepts_a_full_agent_request() -> None:
    cached = {"type": "ephemeral", "ttl": "1h"}
    body = valid_body(
        max_tokens=8000,
        system=[{"type": "text", "text": "You are an agent.", "cache_control": cached}],
        tools=[*TOOLS, {"name": "finish", "description": "done", "input_schema": {"type": "object"}}],
        thinking={"type": "enabled", "budget_tokens": 4000},
        tool_choice={"type": "auto"},
        messages=[
            *tool_round(),
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, text("ok")]},
            {"role": "user", "content": [{"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}}]},
        ],
    )
    assert check_request(body) == []


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"model": ""}, "model"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "alternate"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "alternate"),
        ({"messages": [{"role": "user", "content": [{"type": "bogus"}]}]}, "unknown content block type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
        ({"messages": [{"role": "user", "content": ""}]}, "non-empty"),
        ({"messages": tool_round("toolu_A", "toolu_B"), "tools": TOOLS}, "unexpected `tool_use_id`"),
        (
            {"messages": [*tool_round()[:2], {"role": "user", "content": "next"}], "tools": TOOLS},
            "without `tool_result`",
        ),
        ({"messages": tool_round()}, "must define tools"),
        (
            {
                "messages": [
                    *tool_round()[:2],
                    {"role": "user", "content": [text("first"), {"type": "tool_result", "tool_use_id": "toolu_A"}]},
                ],
                "tools": TOOLS,
            },
            "must come first",
        ),
        (
            {
                "messages": [
                    *tool_round(),
                    {"role": "assistant", "content": [bash("pwd", id="toolu_A")]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_A"}]},
                ],
                "tools": TOOLS,
            },
            "unique",
        ),
        ({"messages": [{"role": "user", "content": [bash("ls")]}], "tools": TOOLS}, "only allowed in assistant"),
        ({"system": [{"type": "image"}]}, "system"),
        ({"system": 5}, "system"),
        ({"tools": [{"type": "text_editor_20250728", "name": "editor"}]}, "str_replace_based_edit_tool"),
        ({"tools": [{"type": "bash_20250124", "name": "shell"}]}, "requires name 'bash'"),
        ({"tools": [{"name": "x"}]}, "input_schema"),
        ({"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}, "tools.0.name"),
        ({"tools": [{"type": "made_up_2099"}]}, "unknown tool type"),
        ({"tools": [TOOLS[1], TOOLS[1]]}, "unique"),
        ({"tools": {"bash": 1}}, "tools"),
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "persistent"}}]}, "ephemeral"),
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}, "ttl"),
        ({"thinking": {"type": "enabled", "budget_tokens": 5000}}, "budget_tokens"),
        ({"tool_choice": {"type": "tool", "name": "nope"}, "tools": TOOLS}, "tool_choice"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_check_request_rejects(changes: dict[str, Any], needle: str) -> None:
    problems = check_request(valid_body(**changes))
    assert problems, f"expected a problem mentioning {needle!r}"
    assert any(needle in p for p in problems), problems


# --------------------------------------------------------------------------- server mechanics


def test_concurrent_requests_each_consume_one_step(server: MessagesAPIServer) -> None:
    n = 8
    server.push(*[Reply([text(f"reply {i}")]) for i in range(n)])
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with make_client(server) as client:
            got = create(client).content[0].text
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == sorted(f"reply {i}" for i in range(n))
    assert len(server.requests) == n and server.remaining == 0 and server.violations == []


def _start_stop_ten_times() -> float:
    started = time.monotonic()
    for _ in range(10):
        srv = MessagesAPIServer([Reply([text("hi")])]).start()
        with make_client(srv) as client:
            create(client)  # leaves a pooled keep-alive connection open
            srv.stop()
    with pytest.raises(RuntimeError):
        _ = srv.url
    return time.monotonic() - started


def test_start_stop_with_open_keep_alive_connections() -> None:
    _start_stop_ten_times()


@pytest.mark.timing
def test_start_stop_is_fast_even_with_open_keep_alive_connections() -> None:
    assert _start_stop_ten_times() < 1.0


def test_stop_drops_keep_alive_connections(server: MessagesAPIServer) -> None:
    server.push(Reply([text("one")]), Reply([text("two")]))
    with make_client(server) as client:
        create(client)
        server.stop()
        # the pooled connection must not still reach a live handler thread
        with pytest.raises(anthropic.APIConnectionError):
            create(client)
    assert len(server.requests) == 1 and server.remaining == 1


@pytest.mark.timing
def test_round_trips_do_not_stall(server: MessagesAPIServer) -> None:
    """Each SSE event is its own small write; without TCP_NODELAY, Nagle + delayed
    ACK would add ~40 ms per request."""
    n = 10
    server.push(*[Reply([text("some streamed text"), bash("ls")]) for _ in range(n)])
    with make_client(server) as client:
        started = time.monotonic()
        for _ in range(n):
            with client.messages.stream(model=MODEL, max_tokens=100, messages=USER, tools=TOOLS) as stream:
                stream.until_done()
        elapsed = time.monotonic() - started
    assert elapsed < 0.3, f"{n} streamed requests took {elapsed:.3f} s"


def test_push_requires_a_list_script() -> None:
    srv = MessagesAPIServer(lambda body: Reply([text("x")]))
    with pytest.raises(TypeError):
        srv.push(Reply([text("y")]))
