"""A scripted, loopback fake of an OpenAI-compatible Chat Completions endpoint
(``POST /v1/chat/completions``), as OpenAI, vLLM or Ollama serve it.

Tests point the real ``openai`` SDK at it over real HTTP::

    with ChatCompletionsServer([Reply([text("hi")])]) as server:
        client = openai.OpenAI(api_key="test-key", base_url=server.url)   # server.url ends in /v1
        client.chat.completions.create(model="m", messages=[...])
        assert server.violations == []

The scripting mirrors tests/fakes/messages_api.py: each request consumes one step (``Reply``,
``Fail``, ``CutStream``, ``StreamError``), served as JSON, or as SSE chunks (``data: {...}``, then
``data: [DONE]``) when the body has ``"stream": true``. Text and tool-call arguments are split over
several chunks, tool calls keyed by ``index``; usage comes in a last chunk without choices when the
request asks for it with ``stream_options.include_usage``.

What the server does on its own, like the real ones, without consuming a step: 401 for a missing or
wrong ``Authorization: Bearer`` key (``api_key=None``: no key needed, like vLLM without --api-key), 404
for a model it does not serve (``models``), and with ``tool_support=False`` a 400 for any request with
``tools``, in vLLM's words. A request the real API would reject as malformed (:func:`check_request`)
gets a 400 and is recorded in ``violations``. Standard library, and jsonschema for the tools' schemas.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import socketserver
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jsonschema

__all__ = [
    "NO_TOOL_SUPPORT",
    "ChatCompletionsServer",
    "CutStream",
    "Fail",
    "RecordedRequest",
    "Reply",
    "Step",
    "StreamError",
    "bash",
    "check_request",
    "edit",
    "text",
    "tool_call",
]

# vLLM's answer to `tools` when it runs without --enable-auto-tool-choice / --tool-call-parser.
NO_TOOL_SUPPORT = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'

# --------------------------------------------------------------------------- script steps


@dataclass
class Reply:
    """One assistant message: ``text(...)`` and ``tool_call(...)`` blocks, in order.

    ``finish_reason=None`` means "tool_calls" when there are tool calls, else "stop". ``usage`` entries
    override the plausible usage computed per request (e.g. ``prompt_tokens_details``)."""

    content: list[dict[str, Any]]
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for block in self.content:
            if block.get("type") not in ("text", "tool_call"):
                raise TypeError(f"Reply blocks are text(...) or tool_call(...), not {block!r}")
        if self.finish_reason is None:
            self.finish_reason = "tool_calls" if self.tool_calls else "stop"

    @property
    def text(self) -> str:
        return "".join(block["text"] for block in self.content if block["type"] == "text")

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block["type"] == "tool_call"]


@dataclass
class Fail:
    """An HTTP error in OpenAI's error format; ``retry_after_ms`` is sent as ``retry-after-ms``."""

    status: int
    retry_after_ms: int | None = 1
    message: str = ""


@dataclass
class CutStream:
    """A 200 SSE response whose connection drops after ``after_chunks`` chunks, without ending the body."""

    reply: Reply
    after_chunks: int = 3


@dataclass
class StreamError:
    """A 200 SSE stream that sends one chunk, then an ``{"error": ...}`` chunk (as vLLM and OpenAI do
    when the model fails mid-reply), then ``[DONE]``."""

    message: str = "The server had an error while processing your request."


Step = Reply | Fail | CutStream | StreamError
Script = Sequence[Step] | Callable[[dict[str, Any]], Step]

# --------------------------------------------------------------------------- block helpers

_ID_ALPHABET = string.ascii_letters + string.digits


def _random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def text(s: str) -> dict[str, Any]:
    return {"type": "text", "text": s}


def tool_call(name: str, arguments: dict[str, Any] | str, id: str | None = None) -> dict[str, Any]:
    """A function tool call; ``arguments`` as a dict (sent as JSON) or a str sent verbatim (even broken)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"type": "tool_call", "id": id or _random_id("call_"), "name": name, "arguments": raw}


def edit(command: str, path: str, *, id: str | None = None, **kw: Any) -> dict[str, Any]:
    """A call of fixloop's editor (``str_replace_based_edit_tool``); ``kw``: file_text, old_str, new_str,
    insert_line, insert_text, view_range."""
    return tool_call("str_replace_based_edit_tool", {"command": command, "path": path, **kw}, id=id)


def bash(command: str, *, id: str | None = None) -> dict[str, Any]:
    return tool_call("bash", {"command": command}, id=id)


# --------------------------------------------------------------------------- request checks

_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = ("system", "developer", "user", "assistant", "tool")


def check_request(body: Any) -> list[str]:
    """Problems the real API would reject a ``POST /v1/chat/completions`` body for (400)."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    errors: list[str] = []
    if not isinstance(body.get("model"), str) or not body["model"]:
        errors.append("model: must be a non-empty string")
    if "stream" in body and not isinstance(body["stream"], bool):
        errors.append("stream: must be a boolean")
    if "stream_options" in body and body.get("stream") is not True:
        errors.append("stream_options: The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if key in body and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            errors.append(f"{key}: must be a positive integer, got {value!r}")
    names = _check_tools(errors, body.get("tools"))
    _check_tool_choice(errors, body.get("tool_choice"), names, has_tools="tools" in body)
    _check_messages(errors, body.get("messages"))
    return errors


def _check_tools(errors: list[str], tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        errors.append("tools: must be a list")
        return names
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            errors.append(f"{where}: must be {{'type': 'function', 'function': {{...}}}}")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            errors.append(f"{where}.function.name: must match {_FUNCTION_NAME.pattern}, got {name!r}")
        elif name in names:
            errors.append(f"{where}.function.name: tool names must be unique; {name!r} is repeated")
        else:
            names.add(name)
        if "description" in function and not isinstance(function["description"], str):
            errors.append(f"{where}.function.description: must be a string")
        schema = function.get("parameters")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            errors.append(f"{where}.function.parameters: Invalid schema for function {name!r}: must be a JSON "
                          "schema of type 'object'")
            continue
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            errors.append(f"{where}.function.parameters: Invalid schema for function {name!r}: {error.message}")
    return names


def _check_tool_choice(errors: list[str], choice: Any, names: set[str], *, has_tools: bool) -> None:
    if choice is None:
        return
    if not has_tools:
        errors.append("tool_choice: 'tool_choice' is only allowed when 'tools' are specified")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            errors.append(f"tool_choice: must be none, auto or required, got {choice!r}")
    elif not isinstance(choice, dict) or (choice.get("function") or {}).get("name") not in names:
        errors.append(f"tool_choice: {choice!r} names no tool of the request")


def _check_messages(errors: list[str], messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        errors.append("messages: must be a non-empty list")
        return
    unanswered: list[str] = []  # tool_call ids of the last assistant message without a tool message yet
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            errors.append(f"{where}.role: must be one of {', '.join(_ROLES)}, got {role!r}")
            continue
        if role != "tool" and unanswered:
            errors.append(f"{where}: An assistant message with 'tool_calls' must be followed by tool messages "
                          f"responding to each 'tool_call_id'. The following tool_call_ids did not have response "
                          f"messages: {', '.join(unanswered)}")
            unanswered = []
        content = message.get("content")
        if role == "tool":
            if message.get("tool_call_id") not in unanswered:
                errors.append(f"{where}: Invalid parameter: messages with role 'tool' must be a response to a "
                              f"preceding message with 'tool_calls' (tool_call_id {message.get('tool_call_id')!r})")
            else:
                unanswered.remove(message["tool_call_id"])
            if not isinstance(content, str | list):
                errors.append(f"{where}.content: must be a string or a list of text parts")
        elif role == "assistant":
            unanswered = _check_assistant(errors, where, message)
        elif not isinstance(content, str | list) or not content:
            errors.append(f"{where}.content: must be a non-empty string or list of parts")
    if unanswered:
        errors.append(f"messages: tool_call_ids without a tool message: {', '.join(unanswered)}")


def _check_assistant(errors: list[str], where: str, message: dict[str, Any]) -> list[str]:
    content, calls = message.get("content"), message.get("tool_calls")
    if content is not None and not isinstance(content, str | list):
        errors.append(f"{where}.content: must be a string, a list of parts or null")
    if calls is None:
        if content is None:
            errors.append(f"{where}: an assistant message needs content or tool_calls")
        return []
    if not isinstance(calls, list) or not calls:
        errors.append(f"{where}.tool_calls: must be a non-empty list")
        return []
    ids = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(call, dict) or call.get("type") != "function" or not isinstance(call.get("id"), str)
                or not isinstance(function, dict) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)):
            errors.append(f"{where}.tool_calls.{j}: must be {{id, type: 'function', function: {{name, arguments: "
                          f"a JSON string}}}}, got {call!r}")
            continue
        ids.append(call["id"])
    return ids


# --------------------------------------------------------------------------- responses


def _pieces(s: str) -> list[str]:
    """``s`` in at least three pieces when it is long enough (at most 24 characters each), so that
    tokens and JSON values are split across chunks as a real server splits them."""
    size = max(1, min(24, -(-len(s) // 3)))
    return [s[k : k + size] for k in range(0, len(s), size)]


def _usage(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    written = reply.text + "".join(call["arguments"] for call in reply.tool_calls)
    prompt, completion = max(1, len(json.dumps(body)) // 4), max(1, len(written) // 4)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": 0}}
    usage.update(reply.usage or {})
    return usage


def _wire_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def _completion(reply: Reply, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [_wire_call(call) for call in reply.tool_calls]
    return {"id": _random_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": usage}


def _chunks(reply: Reply, model: str, usage: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """The chunks of ``reply`` as OpenAI streams them; ``usage`` None: the request did not ask for it."""
    base = {"id": _random_id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": None}
    if usage is not None:
        base["usage"] = None  # every chunk says "no usage yet" when usage was asked for

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": ""})
    index = 0
    for block in reply.content:
        if block["type"] == "text":
            yield from (chunk({"content": piece}) for piece in _pieces(block["text"]))
            continue
        opening = {"index": index, "id": block["id"], "type": "function",
                   "function": {"name": block["name"], "arguments": ""}}
        yield chunk({"tool_calls": [opening]})
        for piece in _pieces(block["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        index += 1
    yield chunk({}, reply.finish_reason)
    if usage is not None:
        yield {**base, "choices": [], "usage": usage}


# --------------------------------------------------------------------------- server


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    body: Any  # parsed JSON, or None when the body was not JSON
    stream: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # idle keep-alive connections are dropped after this

    def setup(self) -> None:
        super().setup()
        # One small write per SSE chunk would otherwise meet Nagle + delayed ACK and stall ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    do_GET = do_POST


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: ChatCompletionsServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can take seconds; not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class ChatCompletionsServer:
    """Loopback fake of ``POST /v1/chat/completions``, scripted per test (see the module's docstring).

    ``script``: steps consumed one per accepted request, or a callable given the parsed body that returns
    the step. ``stream_usage=False``: ignore ``stream_options.include_usage`` (a server that never reports
    usage while streaming). An exhausted script answers 500 with ``x-should-retry: false``.
    ``check_tool_calls``: record a violation when a reply calls a tool the request did not declare, or
    with arguments its schema rejects.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        api_key: str | None = "test-key",
        tool_support: bool = True,
        stream_usage: bool = True,
        models: Collection[str] | None = None,
        check_tool_calls: bool = True,
    ) -> None:
        self.api_key = api_key
        self.tool_support = tool_support
        self.stream_usage = stream_usage
        self.models = models
        self.check_tool_calls = check_tool_calls
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._lock = threading.RLock()
        self._steps: deque[Step] = deque()
        self._script_fn: Callable[[dict[str, Any]], Step] | None = None
        if callable(script):
            self._script_fn = script
        else:
            self._steps.extend(script)
        self._serving: tuple[_HTTPServer, threading.Thread] | None = None

    # -- public API

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the base URL for the SDK, OPENAI_BASE_URL or `base_url`."""
        if self._serving is None:
            raise RuntimeError("ChatCompletionsServer is not started")
        return f"http://127.0.0.1:{self._serving[0].server_port}/v1"

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._steps)

    def push(self, *steps: Step) -> None:
        if self._script_fn is not None:
            raise TypeError("push() needs a list script, not a callable one")
        with self._lock:
            self._steps.extend(steps)

    def start(self) -> ChatCompletionsServer:
        if self._serving is None:
            httpd = _HTTPServer(self)
            thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                      name="fake-chat-completions", daemon=True)
            thread.start()
            self._serving = (httpd, thread)
        return self

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving[0].shutdown()
            serving[0].server_close()
            serving[1].join(timeout=5)

    def __enter__(self) -> ChatCompletionsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals

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
        with self._lock:
            self.requests.append(RecordedRequest(h.command, h.path, headers, body, stream))
            index = len(self.requests) - 1

        def violation(status: int, message: str) -> None:
            with self._lock:
                self.violations.append(f"request {index}: {message}")
            _send_json(h, status, _error(message, "invalid_request_error", status), {"x-should-retry": "false"})

        if urlsplit(h.path).path != "/v1/chat/completions" or h.command != "POST":
            return _send_json(h, 404, {"detail": "Not Found"})  # vLLM's (FastAPI's) answer to any other path
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            presented = headers.get("authorization", "(none)")
            return _send_json(h, 401, _error(f"Incorrect API key provided: {presented[-6:]!r}.",
                                             "invalid_request_error", "invalid_api_key"))
        if body is None:
            return violation(400, "body: must be JSON with a Content-Length")
        if problems := check_request(body):
            return violation(400, "; ".join(problems))
        if self.models is not None and body["model"] not in self.models:
            return _send_json(h, 404, _error(f"The model `{body['model']}` does not exist.", "NotFoundError", 404))
        if body.get("tools") and not self.tool_support:
            return _send_json(h, 400, {"object": "error", "message": NO_TOOL_SUPPORT, "type": "BadRequestError",
                                       "param": None, "code": 400})

        try:
            step = self._next_step(body)
        except Exception as exc:  # noqa: BLE001 - the test's callable script is broken: answer 500
            return violation(500, f"script callable raised {exc!r}")
        if step is None:
            return violation(500, "script exhausted: no step left for this request")
        if isinstance(step, Fail):
            extra = {} if step.retry_after_ms is None else {"retry-after-ms": str(step.retry_after_ms)}
            kind = "rate_limit_exceeded" if step.status == 429 else "server_error"
            return _send_json(h, step.status, _error(step.message or f"fake {step.status} error", kind, None), extra)
        model = body["model"]
        if isinstance(step, StreamError):
            opening = next(_chunks(Reply([]), model, None))
            failure = {"error": {"message": step.message, "type": "server_error", "param": None, "code": None}}
            return _send_sse(h, [opening, failure])
        reply = step.reply if isinstance(step, CutStream) else step
        self._check_reply(index, reply, body)
        usage = _usage(reply, body)
        if not stream:
            return _send_json(h, 200, _completion(reply, model, usage))
        asked = (body.get("stream_options") or {}).get("include_usage") is True
        chunks = list(_chunks(reply, model, usage if asked and self.stream_usage else None))
        if isinstance(step, CutStream):
            return _send_sse(h, chunks[: step.after_chunks], cut=True)
        return _send_sse(h, chunks)

    def _check_reply(self, index: int, reply: Reply, body: dict[str, Any]) -> None:
        """A scripted call must fit the request's tools, as a real server's tool parser would make it."""
        if not self.check_tool_calls:
            return
        schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in body.get("tools") or []}
        for call in reply.tool_calls:
            if call["name"] not in schemas:
                problem = f"calls tool {call['name']!r}, which the request did not declare ({sorted(schemas)})"
            else:
                try:
                    arguments = json.loads(call["arguments"])
                except ValueError:
                    continue  # deliberately broken arguments: nothing to check
                found = jsonschema.validators.validator_for(schemas[call["name"]])(schemas[call["name"]])
                errors = [error.message for error in found.iter_errors(arguments)]
                if not errors:
                    continue
                problem = f"calls {call['name']} with arguments its schema rejects: {'; '.join(errors)}"
            with self._lock:
                self.violations.append(f"request {index}: scripted reply {problem}")


def _error(message: str, kind: str, code: str | int | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _send_json(h: _Handler, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    data = json.dumps(payload).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for key, value in (extra or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()


def _send_sse(h: _Handler, chunks: list[dict[str, Any]], *, cut: bool = False) -> None:
    """Chunks as `data:` events, then `data: [DONE]`; ``cut``: the connection closes mid-body instead."""
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream; charset=utf-8")
    h.send_header("Cache-Control", "no-cache")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ([] if cut else ["data: [DONE]\n\n"])
    try:
        for event in events:
            data = event.encode()
            h.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()
        if cut:
            h.close_connection = True  # closed without the terminating chunk
            return
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
    except OSError:  # the client went away
        h.close_connection = True
