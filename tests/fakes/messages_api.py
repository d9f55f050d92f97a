"""A scripted, loopback fake of Anthropic's Messages API (``POST /v1/messages``).

Tests point the real ``anthropic`` SDK at it over real HTTP::

    with MessagesAPIServer([Reply([text("hi")])]) as server:
        client = anthropic.Anthropic(api_key="test-key", base_url=server.url)
        client.messages.create(model="m", max_tokens=100, messages=[...])
        assert server.violations == []

Each request consumes one script step (unless it is rejected by the request
checks, as the real API would reject it before running the model).  Replies are
served as JSON, or as SSE when the request body has ``"stream": true``.
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import selectors
import socket
import socketserver
import string
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CLIENT_TOOL_NAMES",
    "CutStream",
    "Fail",
    "MessagesAPIServer",
    "RecordedRequest",
    "Reply",
    "Step",
    "StreamError",
    "bash",
    "check_request",
    "edit",
    "text",
    "tool_use",
]

# --------------------------------------------------------------------------- script steps


@dataclass
class Reply:
    """One successful assistant message.

    ``stop_reason=None`` (the default) means "tool_use" if ``content`` has a
    tool_use block, else "end_turn"; it is resolved at construction.
    ``usage`` entries override plausible defaults computed per request.
    """

    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        blocks: list[dict[str, Any]] = []
        for block in self.content:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise TypeError(f"Reply content blocks must be dicts with a 'type': {block!r}")
            block = dict(block)
            if block["type"] == "tool_use":
                block.setdefault("id", _new_tool_id())
                if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                    raise TypeError(f"tool_use block needs a str 'name' and a dict 'input': {block!r}")
            blocks.append(block)
        self.content = blocks
        if self.stop_reason is None:
            has_tool_use = any(b["type"] == "tool_use" for b in blocks)
            self.stop_reason = "tool_use" if has_tool_use else "end_turn"


@dataclass
class Fail:
    """An HTTP error response in the API's error format.

    ``retry_after_ms`` is sent as the ``retry-after-ms`` header (None: no header,
    so the SDK falls back to its 0.5 s+ exponential backoff).
    """

    status: int
    retry_after_ms: int | None = 1
    message: str = ""
    error_type: str | None = None  # overrides the type derived from ``status``


@dataclass
class CutStream:
    """For stream requests: a 200 SSE response whose connection is dropped after
    ``after_events`` SSE events (ping included), without ending the chunked body.
    For non-stream requests: the connection is closed without any response."""

    reply: Reply
    after_events: int = 3


@dataclass
class StreamError:
    """A 200 SSE stream that sends message_start, ping, then ``event: error``.
    For a non-stream request: the matching HTTP error status instead."""

    error_type: str = "overloaded_error"
    message: str = ""


Step = Reply | Fail | CutStream | StreamError
Script = Sequence[Step] | Callable[[dict[str, Any]], Step]

# --------------------------------------------------------------------------- block helpers

_ID_ALPHABET = string.ascii_letters + string.digits
_issued_ids: set[str] = set()
_ids_lock = threading.Lock()


def _random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def _new_tool_id() -> str:
    with _ids_lock:
        while True:
            new = _random_id("toolu_01")
            if new not in _issued_ids:
                _issued_ids.add(new)
                return new


def text(s: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": s}


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    """A tool_use content block; ``id`` defaults to a fresh unique ``toolu_01...``."""
    return {"type": "tool_use", "id": id or _new_tool_id(), "name": name, "input": dict(input)}


def edit(command: str, path: str, *, id: str | None = None, **kw: Any) -> dict[str, Any]:
    """A tool_use of the text editor client tool (``str_replace_based_edit_tool``).

    ``kw`` are the other input fields: file_text, old_str, new_str, insert_line,
    insert_text, view_range."""
    return tool_use("str_replace_based_edit_tool", {"command": command, "path": path, **kw}, id=id)


def bash(command: str, *, id: str | None = None) -> dict[str, Any]:
    """A tool_use of the bash client tool."""
    return tool_use("bash", {"command": command}, id=id)


# --------------------------------------------------------------------------- request checks

CLIENT_TOOL_NAMES: dict[str, str] = {
    "text_editor_20250728": "str_replace_based_edit_tool",
    "text_editor_20250429": "str_replace_based_edit_tool",
    "text_editor_20250124": "str_replace_editor",
    "bash_20250124": "bash",
    "memory_20250818": "memory",
}
_SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_", "tool_search_tool_")
_MESSAGE_BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
_TOOL_RESULT_BLOCK_TYPES = frozenset({"text", "image", "document", "search_result", "tool_reference"})
_ASSISTANT_ONLY = frozenset({"tool_use", "thinking", "redacted_thinking", "server_tool_use"})
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_CACHE_BREAKPOINTS = 4


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.cache_breakpoints = 0

    def err(self, where: str, what: str) -> None:
        self.errors.append(f"{where}: {what}")

    def cache_control(self, where: str, holder: dict[str, Any]) -> None:
        cc = holder.get("cache_control")
        if cc is None:
            return
        self.cache_breakpoints += 1
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
            self.err(f"{where}.cache_control", f"must be {{'type': 'ephemeral'}}, got {cc!r}")
            return
        if set(cc) - {"type", "ttl"}:
            self.err(f"{where}.cache_control", f"unexpected keys {sorted(set(cc) - {'type', 'ttl'})}")
        if "ttl" in cc and cc["ttl"] not in ("5m", "1h"):
            self.err(f"{where}.cache_control.ttl", f"must be '5m' or '1h', got {cc['ttl']!r}")


def check_request(body: Any) -> list[str]:
    """Problems the real API would reject a ``POST /v1/messages`` body for (400)."""
    c = _Checker()
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    model = body.get("model")
    if not isinstance(model, str) or not model:
        c.err("model", "must be a non-empty string")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        c.err("max_tokens", f"must be a positive integer, got {max_tokens!r}")
    if "stream" in body and not isinstance(body["stream"], bool):
        c.err("stream", "must be a boolean")
    c.cache_control("body", body)
    _check_system(c, body.get("system"))
    tool_names = _check_tools(c, body.get("tools"))
    _check_messages(c, body.get("messages"), has_tools="tools" in body and bool(body["tools"]))
    _check_thinking(c, body.get("thinking"), max_tokens)
    _check_tool_choice(c, body.get("tool_choice"), tool_names)
    if c.cache_breakpoints > MAX_CACHE_BREAKPOINTS:
        c.err(
            "cache_control",
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {c.cache_breakpoints}.",
        )
    return c.errors


def _check_system(c: _Checker, system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        c.err("system", "must be a string or a list of text blocks")
        return
    for i, block in enumerate(system):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            c.err(where, "system blocks must be text blocks")
            continue
        if not isinstance(block.get("text"), str) or not block["text"]:
            c.err(where, "text content blocks must be non-empty")
        c.cache_control(where, block)


def _check_tools(c: _Checker, tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        c.err("tools", "must be a list")
        return names
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            c.err(where, "must be an object")
            continue
        kind = tool.get("type")
        name = tool.get("name")
        if kind in CLIENT_TOOL_NAMES:
            if name != CLIENT_TOOL_NAMES[kind]:
                c.err(f"{where}.name", f"{kind} requires name {CLIENT_TOOL_NAMES[kind]!r}, got {name!r}")
        elif kind is None or kind == "custom":
            if not isinstance(name, str) or not _TOOL_NAME_RE.match(name):
                c.err(f"{where}.name", f"must match {_TOOL_NAME_RE.pattern}, got {name!r}")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                c.err(f"{where}.input_schema", "must be a JSON schema object with type 'object'")
            if "description" in tool and not isinstance(tool["description"], str):
                c.err(f"{where}.description", "must be a string")
        elif isinstance(kind, str) and kind.startswith(_SERVER_TOOL_PREFIXES):
            pass
        else:
            c.err(f"{where}.type", f"unknown tool type {kind!r}")
        if isinstance(name, str):
            if name in names:
                c.err(where, f"Tool names must be unique; {name!r} is repeated")
            names.add(name)
        c.cache_control(where, tool)
    return names


def _check_messages(c: _Checker, messages: Any, *, has_tools: bool) -> None:
    if not isinstance(messages, list) or not messages:
        c.err("messages", "must be a non-empty list")
        return
    pending_tool_ids: list[str] = []  # tool_use ids of the immediately preceding assistant message
    seen_tool_ids: set[str] = set()
    uses_tools = False
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        is_last = i == len(messages) - 1
        if not isinstance(msg, dict):
            c.err(where, "must be an object")
            pending_tool_ids = []
            continue
        role = msg.get("role")
        expected = "user" if i % 2 == 0 else "assistant"
        if role not in ("user", "assistant"):
            c.err(f"{where}.role", f"must be 'user' or 'assistant', got {role!r}")
        elif role != expected:
            c.err(f"{where}.role", f"roles must alternate starting with 'user'; expected {expected!r}, got {role!r}")
        content = msg.get("content")
        may_be_empty = is_last and role == "assistant"
        blocks: list[tuple[int, dict[str, Any]]] = []  # (index in content, block) of well-formed blocks
        if isinstance(content, str):
            if not content and not may_be_empty:
                c.err(f"{where}.content", "all messages must have non-empty content")
        elif isinstance(content, list):
            if not content and not may_be_empty:
                c.err(f"{where}.content", "all messages must have non-empty content")
            for j, block in enumerate(content):
                if _check_block(c, f"{where}.content.{j}", block, role):
                    blocks.append((j, block))
        else:
            c.err(f"{where}.content", "must be a string or a list of content blocks")

        kinds = [b["type"] for _, b in blocks]
        uses_tools = uses_tools or "tool_use" in kinds or "tool_result" in kinds
        if role == "user":
            _check_tool_results(c, where, blocks, pending_tool_ids)
            pending_tool_ids = []
        elif role == "assistant":
            pending_tool_ids = []
            for j, block in blocks:
                if block["type"] != "tool_use":
                    continue
                tid = block.get("id")
                if tid in seen_tool_ids:
                    c.err(f"{where}.content.{j}.id", f"tool_use ids must be unique; {tid!r} is repeated")
                seen_tool_ids.add(tid)
                pending_tool_ids.append(tid)
        else:
            pending_tool_ids = []
    if uses_tools and not has_tools:
        c.err("tools", "Requests which include `tool_use` or `tool_result` blocks must define tools.")


def _check_tool_results(
    c: _Checker, where: str, blocks: list[tuple[int, dict[str, Any]]], pending: list[str]
) -> None:
    result_ids: list[str] = []
    seen_other = False
    for j, block in blocks:
        if block["type"] != "tool_result":
            seen_other = True
            continue
        if seen_other:
            c.err(f"{where}.content.{j}", "tool_result blocks must come first in the content array")
        tid = block.get("tool_use_id")
        if tid not in pending:
            c.err(
                f"{where}.content.{j}",
                f"unexpected `tool_use_id` found in `tool_result` blocks: {tid!r}. Each `tool_result` block "
                "must have a corresponding `tool_use` block in the previous message.",
            )
        elif tid in result_ids:
            c.err(f"{where}.content.{j}", f"duplicate tool_result for tool_use id {tid!r}")
        result_ids.append(tid)
    missing = [tid for tid in pending if tid not in result_ids]
    if missing:
        c.err(
            where,
            f"`tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(missing)}. "
            "Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
        )


def _check_block(c: _Checker, where: str, block: Any, role: Any) -> bool:
    """Checks one message content block; True if it is a dict with a known type."""
    if not isinstance(block, dict):
        c.err(where, "content blocks must be objects")
        return False
    kind = block.get("type")
    if kind not in _MESSAGE_BLOCK_TYPES:
        c.err(f"{where}.type", f"unknown content block type {kind!r}")
        return False
    if role == "user" and kind in _ASSISTANT_ONLY:
        c.err(where, f"{kind} blocks are only allowed in assistant messages")
    if role == "assistant" and kind == "tool_result":
        c.err(where, "tool_result blocks are only allowed in user messages")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            c.err(where, "text content blocks must be non-empty")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not block["id"]:
            c.err(f"{where}.id", "must be a non-empty string")
        if not isinstance(block.get("name"), str):
            c.err(f"{where}.name", "must be a string")
        if not isinstance(block.get("input"), dict):
            c.err(f"{where}.input", "must be an object")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            c.err(f"{where}.tool_use_id", "must be a string")
        if "is_error" in block and not isinstance(block["is_error"], bool):
            c.err(f"{where}.is_error", "must be a boolean")
        inner = block.get("content")
        if isinstance(inner, list):
            for k, sub in enumerate(inner):
                sub_where = f"{where}.content.{k}"
                if not isinstance(sub, dict) or sub.get("type") not in _TOOL_RESULT_BLOCK_TYPES:
                    c.err(sub_where, f"invalid tool_result content block {sub!r}")
                    continue
                if sub["type"] == "text" and (not isinstance(sub.get("text"), str) or not sub["text"]):
                    c.err(sub_where, "text content blocks must be non-empty")
                c.cache_control(sub_where, sub)
        elif inner is not None and not isinstance(inner, str):
            c.err(f"{where}.content", "must be a string or a list of content blocks")
    elif kind == "thinking":  # noqa: SIM102 - one branch per block kind, like those above
        if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
            c.err(where, "thinking blocks need str 'thinking' and 'signature'")
    if kind not in ("thinking", "redacted_thinking"):
        c.cache_control(where, block)
    elif block.get("cache_control") is not None:
        c.err(f"{where}.cache_control", "thinking blocks cannot have cache_control")
    return True


def _check_thinking(c: _Checker, thinking: Any, max_tokens: Any) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        c.err("thinking", f"type must be 'enabled', 'disabled' or 'adaptive', got {thinking!r}")
        return
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            c.err("thinking.budget_tokens", "must be an integer >= 1024")
        elif isinstance(max_tokens, int) and budget >= max_tokens:
            c.err("thinking.budget_tokens", "`max_tokens` must be greater than `thinking.budget_tokens`")


def _check_tool_choice(c: _Checker, choice: Any, tool_names: set[str]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        c.err("tool_choice", f"type must be auto, any, tool or none, got {choice!r}")
        return
    if choice["type"] == "tool" and choice.get("name") not in tool_names:
        c.err("tool_choice.name", f"{choice.get('name')!r} is not one of the request's tools")


# --------------------------------------------------------------------------- responses

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _presented_keys(headers: dict[str, str]) -> list[str]:
    """API keys in the request: ``x-api-key`` and/or ``Authorization: Bearer``
    (anthropic SDK 2.x sends ``api_key`` as a bearer token)."""
    keys = [headers["x-api-key"]] if "x-api-key" in headers else []
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        keys.append(token.strip())
    return keys


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


def _usage(reply: Reply, body: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": max(1, len(json.dumps(body)) // 4),
        "output_tokens": max(1, len(json.dumps(reply.content)) // 4),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    usage.update(reply.usage or {})
    return usage


def _message(reply: Reply, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _random_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": json.loads(json.dumps(reply.content)),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _pieces(s: str) -> list[str]:
    """Splits ``s`` into at least 3 pieces when it is long enough (64 chars max each)."""
    if not s:
        return []
    size = max(1, min(64, -(-len(s) // 3)))
    return [s[k : k + size] for k in range(0, len(s), size)]


def _sse_events(reply: Reply, model: str, usage: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE event sequence of ``reply`` as the real API streams it."""
    start = _message(Reply([], stop_reason=None), model, {**usage, "output_tokens": 1})
    start["stop_reason"] = None
    yield "message_start", {"type": "message_start", "message": start}
    pinged = False
    for index, block in enumerate(reply.content):
        kind = block["type"]
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        elif kind == "tool_use":
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *_pieces(raw)]]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block.get("thinking", ""))]
            deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
        else:  # redacted_thinking, server tool results, ...: sent whole
            opening = json.loads(json.dumps(block))
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}
        if not pinged:
            pinged = True
            yield "ping", {"type": "ping"}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    if not pinged:
        yield "ping", {"type": "ping"}
    yield "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": usage,
    }
    yield "message_stop", {"type": "message_stop"}


# --------------------------------------------------------------------------- server


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    body: Any  # parsed JSON, or None when the body was not JSON
    stream: bool = False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: MessagesAPIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked here, in the accept loop, so stop() (which joins that loop first) sees every connection.
        self.owner._track(request, add=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client hung up; nothing to report
            return
        self.owner._record_crash(exc)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]


def _serve(httpd: _HTTPServer, wake: socket.socket) -> None:
    """Like ``serve_forever()``, but stopped at once by a byte on ``wake`` instead of polling."""
    with selectors.DefaultSelector() as selector:
        selector.register(httpd, selectors.EVENT_READ, "accept")
        selector.register(wake, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in selector.select():
                if key.data == "wake":
                    return
                httpd.handle_request()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # idle keep-alive connections are dropped after this

    def setup(self) -> None:
        super().setup()
        # Small writes (headers, then body; one SSE event at a time) would otherwise meet
        # Nagle + delayed ACK and stall ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST


class MessagesAPIServer:
    """Loopback fake of ``POST /v1/messages``, scripted per test.

    ``script`` is a list of steps consumed one per accepted request, or a callable
    given the parsed request body that returns the step.  Requests failing the
    checks (path, API key in ``x-api-key`` or ``Authorization: Bearer``,
    ``anthropic-version``, :func:`check_request`) get the real API's 4xx error,
    consume no step and are recorded in ``violations``.  An exhausted script
    answers 500 with ``x-should-retry: false`` (so the SDK does not retry).
    ``check_tool_names``: record a violation when a Reply uses a tool the request
    did not declare.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        api_key: str = "test-key",
        check_tool_names: bool = True,
    ) -> None:
        self.api_key = api_key
        self.check_tool_names = check_tool_names
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._lock = threading.RLock()
        self._steps: deque[Step] = deque()
        self._script_fn: Callable[[dict[str, Any]], Step] | None = None
        if callable(script):
            self._script_fn = script
        else:
            self._steps.extend(script)
        self._serving: tuple[_HTTPServer, threading.Thread, socket.socket, socket.socket] | None = None
        self._connections: set[socket.socket] = set()

    # -- public API

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; the base_url for the SDK."""
        if self._serving is None:
            raise RuntimeError("MessagesAPIServer is not started")
        return f"http://127.0.0.1:{self._serving[0].server_address[1]}"

    @property
    def remaining(self) -> int:
        """Steps not consumed yet (0 for a callable script)."""
        with self._lock:
            return len(self._steps)

    def push(self, *steps: Step) -> None:
        """Appends steps to a list script."""
        if self._script_fn is not None:
            raise TypeError("push() needs a list script, not a callable one")
        with self._lock:
            self._steps.extend(steps)

    def start(self) -> MessagesAPIServer:
        """Binds 127.0.0.1:0 and serves in a daemon thread."""
        if self._serving is not None:
            return self
        httpd = _HTTPServer(self)
        httpd.timeout = 0  # handle_request() must not block: the selector said "ready"
        wake_r, wake_w = socket.socketpair()
        thread = threading.Thread(target=_serve, args=(httpd, wake_r), name="fake-messages-api", daemon=True)
        thread.start()
        self._serving = (httpd, thread, wake_r, wake_w)
        return self

    def stop(self) -> None:
        """Stops serving and drops open connections (idempotent)."""
        serving, self._serving = self._serving, None
        if serving is None:
            return
        httpd, thread, wake_r, wake_w = serving
        wake_w.send(b"x")
        thread.join(timeout=5)
        httpd.server_close()
        wake_r.close()
        wake_w.close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # wakes handler threads blocked on idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> MessagesAPIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _violation(self, index: int, message: str) -> None:
        with self._lock:
            self.violations.append(f"request {index}: {message}")

    def _record_crash(self, exc: BaseException | None) -> None:
        with self._lock:
            self.violations.append(f"fake server crashed: {exc!r}")

    def _next_step(self, body: dict[str, Any]) -> Step | None:
        with self._lock:
            if self._script_fn is not None:
                return self._script_fn(body)
            return self._steps.popleft() if self._steps else None

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        stream = isinstance(body, dict) and body.get("stream") is True
        record = RecordedRequest(method=h.command, path=h.path, headers=headers, body=body, stream=stream)
        with self._lock:
            self.requests.append(record)
            index = len(self.requests) - 1
        request_id = _random_id("req_01")

        def reject(status: int, message: str, extra: dict[str, str] | None = None) -> None:
            self._violation(index, message)
            payload = _error_body(_error_type(status), message, request_id)
            self._send_json(h, status, payload, request_id, extra)

        path = urlsplit(h.path).path
        if path != "/v1/messages":
            return reject(404, f"not_found: {h.command} {h.path}")
        if h.command != "POST":
            return reject(405, f"method {h.command} not allowed on /v1/messages")
        if self.api_key not in _presented_keys(headers):
            keys = f"x-api-key={headers.get('x-api-key')!r}, authorization={headers.get('authorization')!r}"
            return reject(401, f"invalid API key: {keys}")
        if not headers.get("anthropic-version"):
            return reject(400, "anthropic-version: header is required")
        if "transfer-encoding" in headers or body is None:
            h.close_connection = True  # a chunked body was not read: the connection is unusable
            return reject(400, "body: must be JSON with a Content-Length")
        problems = check_request(body)
        if problems:
            return reject(400, "; ".join(problems))

        try:
            step = self._next_step(body)
        except Exception as exc:  # noqa: BLE001 - the test's callable script is broken: answer 500
            return reject(500, f"script callable raised {exc!r}", {"x-should-retry": "false"})
        if step is None:
            return reject(500, "script exhausted: no step left for this request", {"x-should-retry": "false"})
        if not isinstance(step, (Reply, Fail, CutStream, StreamError)):
            return reject(500, f"script returned {step!r}, not a step", {"x-should-retry": "false"})

        model = body["model"]
        if isinstance(step, Fail):
            extra = {} if step.retry_after_ms is None else {"retry-after-ms": str(step.retry_after_ms)}
            message = step.message or f"fake {step.status} error"
            payload = _error_body(step.error_type or _error_type(step.status), message, request_id)
            return self._send_json(h, step.status, payload, request_id, extra)
        if isinstance(step, StreamError):
            message = step.message or ("Overloaded" if step.error_type == "overloaded_error" else step.error_type)
            payload = _error_body(step.error_type, message, request_id)
            if not stream:
                return self._send_json(h, _ERROR_STATUS.get(step.error_type, 500), payload, request_id)
            empty = Reply([])
            events = list(_sse_events(empty, model, _usage(empty, body)))[:2]  # message_start, ping
            return self._send_sse(h, [*events, ("error", payload)], request_id)

        reply = step.reply if isinstance(step, CutStream) else step
        self._check_reply(index, reply, body)
        usage = _usage(reply, body)
        if isinstance(step, CutStream):
            if not stream:
                h.close_connection = True  # no response at all
                return None
            events = list(_sse_events(reply, model, usage))
            return self._send_sse(h, events[: max(0, step.after_events)], request_id, cut=True)
        if stream:
            return self._send_sse(h, list(_sse_events(reply, model, usage)), request_id)
        return self._send_json(h, 200, _message(reply, model, usage), request_id)

    def _check_reply(self, index: int, reply: Reply, body: dict[str, Any]) -> None:
        if not self.check_tool_names:
            return
        declared = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        for block in reply.content:
            if block["type"] == "tool_use" and block["name"] not in declared:
                self._violation(
                    index,
                    f"scripted reply calls tool {block['name']!r} that the request did not declare "
                    f"(declared: {sorted(n for n in declared if isinstance(n, str))})",
                )

    @staticmethod
    def _send_json(
        h: _Handler, status: int, payload: dict[str, Any], request_id: str, extra: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("request-id", request_id)
        for key, value in (extra or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    @staticmethod
    def _send_sse(
        h: _Handler, events: list[tuple[str, dict[str, Any]]], request_id: str, *, cut: bool = False
    ) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("request-id", request_id)
        h.end_headers()
        try:
            for name, data in events:
                chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                h.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
            if cut:
                h.close_connection = True  # closed without the terminating chunk
                return
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:  # the client went away
            h.close_connection = True
