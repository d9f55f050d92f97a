"""Any OpenAI-compatible Chat Completions endpoint through the official SDK: the OpenAI side of the
model seam (see bot.agent.model).

OpenAI's API, vLLM, Ollama, llama.cpp's server and others speak `POST /v1/chat/completions`.
fixloop's types become that API's messages here and nowhere else: the system prompt is a `system`
message, tool calls are an assistant message's `tool_calls` (arguments as a JSON string), tool results
are `tool` messages. Anthropic's editor and bash client tools have no counterpart there, so they are
offered as functions with JSON schemas describing the same commands; the toolbox behind them is the
same, only the wire format differs. `Opaque` blocks (another provider's thinking) are dropped.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from openai.types.completion_usage import CompletionUsage

from bot.agent.model import Block, CallResult, Message, ModelReply, StopReason, Text, ToolCall, ToolSpec
from bot.agent.usage import Usage
from bot.errors import MissingAPIKey, ModelError
from bot.secrets import public_url
from bot.tokens import estimate_tokens

OPENAI_API_URL = "https://api.openai.com/v1"
# The SDK sends a key with every request; a server of one's own (vLLM, Ollama) without one ignores it.
KEYLESS_PLACEHOLDER = "no-key-set"
# A tool call whose arguments are not a JSON object reaches the toolbox as {UNREADABLE_ARGUMENTS: the raw
# text, ARGUMENTS_PROBLEM: why}: no tool reads these keys, so nothing runs, and the trajectory shows it.
UNREADABLE_ARGUMENTS = "unreadable_arguments"
ARGUMENTS_PROBLEM = "arguments_problem"

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use", "length": "max_tokens",
    "content_filter": "refusal",
}
# How servers without tool calling turn a request with `tools` away (vLLM without --enable-auto-tool-choice,
# Ollama with a model that has none, llama.cpp without --jinja, TGI).
_NO_TOOL_SUPPORT = re.compile(
    r"tool.choice|support\S*\s+(?:for\s+)?(?:tools|tool.call|tool.use|function)|function.calling"
    r"|tools?\s+param\S*\s+(?:is\s+|are\s+)?(?:not|requires|unsupported)|tool.calls?\s+(?:is|are)\s+not\s+supported",
    re.IGNORECASE,
)
_TOOL_SUPPORT_NEEDED = (
    "fixloop needs them: use a model and server with tool support (e.g. vLLM with --enable-auto-tool-choice "
    "--tool-call-parser <the model's parser>, or Ollama with a tools-capable model)."
)

EDITOR_DESCRIPTION = (
    "View, create and edit text files of the repository. Paths are relative to the repository root "
    "(e.g. 'src/app.py'; '.' is the root); absolute paths, '..' and protected paths are refused.\n"
    "- view: a file with line numbers (at most {limit:,} characters; `view_range` [start, end] shows "
    "part of it, end -1 meaning the last line), or a folder's files two levels deep.\n"
    "- create: write `file_text` as the whole file (folders are created; an existing file is replaced).\n"
    "- str_replace: replace `old_str`, copied exactly from the file and occurring exactly once, with "
    "`new_str`.\n"
    "- insert: insert `insert_text` after line `insert_line` (0: at the top)."
)
EDITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert"],
                    "description": "What to do."},
        "path": {"type": "string", "description": "A file or folder, relative to the repository root."},
        "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                       "description": "view: first and last line to show, 1-based; -1 as the last means the end."},
        "file_text": {"type": "string", "description": "create: the whole content of the file."},
        "old_str": {"type": "string", "description": "str_replace: the exact text to replace, whitespace included; "
                                                     "it must occur exactly once in the file."},
        "new_str": {"type": "string", "description": "str_replace: the text that replaces old_str (empty deletes "
                                                     "it)."},
        "insert_line": {"type": "integer", "minimum": 0,
                        "description": "insert: the line after which the text goes; 0 inserts at the top."},
        "insert_text": {"type": "string", "description": "insert: the text to insert."},
    },
    "required": ["command", "path"],
}
BASH_DESCRIPTION = (
    "Run a shell command at the repository root and read its output (stdout and stderr together; long "
    "output is shortened) and its exit code. Each command starts afresh at the repository root: nothing "
    "(current folder, variables) carries over from the previous one. A command that runs too long is "
    "killed. Nothing is interactive: no command may wait for input."
)
BASH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The shell command to run."},
        "restart": {"type": "boolean", "description": "true restarts the shell instead of running a command."},
    },
}


def _say_to_stderr(warning: str) -> None:
    print(f"fixloop: warning: {warning}", file=sys.stderr, flush=True)


class OpenAIModel:
    """A model behind an OpenAI-compatible Chat Completions endpoint, through the official SDK.

    The endpoint is `base_url` (the config's), else OPENAI_BASE_URL, else OpenAI's API; the key is
    OPENAI_API_KEY, which only OpenAI's own API requires here (a server of one's own may need none).
    HTTP-level failures (429, 5xx, connection errors) are retried by the SDK with exponential backoff
    that honours `retry-after`; a stream that breaks after it started is not, so `complete` repeats
    the whole call up to `stream_retries` times. `max_tokens` None leaves a reply's length to the
    server: a fixed cap would make a local server with a small context reject a long conversation.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        max_tokens: int | None = None,
        max_retries: int = 4,
        stream_retries: int = 2,
        timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] = _say_to_stderr,
    ) -> None:
        if client is None:
            client = _client(base_url, max_retries=max_retries, timeout=timeout)
        self.name = name
        self.client = client
        self.base_url = public_url(str(client.base_url))  # shown in messages: no password or query
        self.max_tokens = max_tokens
        self.stream_retries = stream_retries
        self._sleep = sleep
        self._warn = warn
        self._said_usage_is_estimated = False

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        wire_messages = chat_messages(system, messages)
        wire_tools = [tool_param(spec) for spec in tools]
        for attempt in range(self.stream_retries + 1):
            try:
                chunks = self.client.chat.completions.create(
                    model=self.name, messages=wire_messages, tools=wire_tools or openai.omit,
                    # Explicit, so that a server which would silently ignore the tools says it cannot use them.
                    tool_choice="auto" if wire_tools else openai.omit,
                    stream=True, stream_options={"include_usage": True},
                    max_completion_tokens=openai.omit if self.max_tokens is None else self.max_tokens,
                )
            except openai.APIStatusError as error:  # already retried by the SDK where retrying can help
                raise ModelError(self._explain(error)) from None
            except openai.APIConnectionError as error:
                raise ModelError(f"Could not reach the model API at {self.base_url}: {_cause(error)}") from None
            try:
                with chunks:
                    streamed = assemble(chunks)
                break
            except (openai.APIError, IncompleteStream) as error:  # a cut connection, an error chunk
                if attempt == self.stream_retries:
                    raise ModelError(f"The model API stream at {self.base_url} broke {attempt + 1} times: "
                                     f"{_cause(error)}") from None
            except ReplyTooLong as error:
                raise ModelError(f"The model API at {self.base_url} sent more than one reply can hold ({error}); "
                                 "fixloop stopped reading it") from None
            except _MALFORMED as error:
                raise ModelError(f"The model API at {self.base_url} sent a stream fixloop cannot read "
                                 f"({type(error).__name__}): it is not OpenAI's Chat Completions format") from None
            self._sleep(0.5 * 2**attempt)
        try:
            return self._reply(streamed, [spec.name for spec in tools], wire_messages, wire_tools)
        except _MALFORMED as error:
            raise ModelError(f"The model API at {self.base_url} sent a reply fixloop cannot read "
                             f"({type(error).__name__}): it is not OpenAI's Chat Completions format") from None

    def _reply(self, streamed: Streamed, tool_names: list[str], wire_messages: list[ChatCompletionMessageParam],
               wire_tools: list[ChatCompletionFunctionToolParam]) -> ModelReply:
        calls = [call.as_tool_call() for _, call in sorted(streamed.calls.items())]
        if not calls and _written_tool_call(streamed.text, tool_names):
            raise ModelError(f"The model at {self.base_url} wrote a tool call as text instead of making one: the "
                             f"endpoint does not support tool calls (function calling) for it. {_TOOL_SUPPORT_NEEDED}")
        content: list[Text | ToolCall] = [Text(streamed.text)] if streamed.text else []
        # Some servers end a reply with tool calls as "stop"; the calls are what counts.
        finish = "tool_calls" if calls and streamed.finish_reason != "length" else streamed.finish_reason
        if streamed.usage is not None:
            usage = _usage(streamed.usage)
        else:
            if not self._said_usage_is_estimated:
                self._said_usage_is_estimated = True
                self._warn(f"the model API at {self.base_url} reports no token usage (it ignores "
                           "stream_options.include_usage); fixloop estimates tokens at about 4 bytes each, so "
                           "token counts, limits and costs are approximate")
            written = streamed.text + "".join(call.arguments for call in streamed.calls.values())
            usage = Usage(input_tokens=estimate_tokens(json.dumps([wire_messages, wire_tools])),
                          output_tokens=estimate_tokens(written))
        return ModelReply([*content, *calls], _STOP_REASONS.get(finish or "", "end_turn"), usage)

    def _explain(self, error: openai.APIStatusError) -> str:
        said = _server_said(error)
        if isinstance(error, openai.AuthenticationError):
            if self.client.api_key == KEYLESS_PLACEHOLDER:
                return (f"The model API at {self.base_url} wants an API key (401) and OPENAI_API_KEY is not set: "
                        "export the endpoint's key as OPENAI_API_KEY.")
            return f"The model API at {self.base_url} rejected the API key (401). Check OPENAI_API_KEY."
        if isinstance(error, openai.NotFoundError):
            return (f"The model API at {self.base_url} does not know the model {self.name!r}, or the base URL is "
                    f"wrong (404: {said}). Check `model`, and `base_url` or OPENAI_BASE_URL: OpenAI-compatible "
                    "servers answer under /v1, e.g. http://localhost:8000/v1.")
        if error.status_code in (400, 422) and _NO_TOOL_SUPPORT.search(said):
            return (f"The endpoint at {self.base_url} does not support tool calls (function calling) ({said}); "
                    f"{_TOOL_SUPPORT_NEEDED}")
        return f"The model API at {self.base_url} failed with HTTP {error.status_code}: {said}"


def _client(base_url: str | None, *, max_retries: int, timeout: float) -> openai.OpenAI:
    """The SDK's client for the endpoint; raises MissingAPIKey when OpenAI's own API has no key."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_API_URL
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        host = urlsplit(url).hostname or ""
        if host == "openai.com" or host.endswith(".openai.com"):
            raise MissingAPIKey(
                "OPENAI_API_KEY is not set. Export your OpenAI API key (export OPENAI_API_KEY=sk-...), or point "
                "`base_url` in .github/fixloop.yml (or OPENAI_BASE_URL) at an OpenAI-compatible server of your "
                "own, which may need no key."
            )
        key = KEYLESS_PLACEHOLDER
    return openai.OpenAI(api_key=key, base_url=url, max_retries=max_retries, timeout=timeout)


# -- the request ---------------------------------------------------------------------------------

def tool_param(spec: ToolSpec) -> ChatCompletionFunctionToolParam:
    """A tool as a function: fixloop's own with its schema, Anthropic's client tools described by ours."""
    if spec.kind == "text_editor":
        limit = spec.max_characters or 0
        description, schema = EDITOR_DESCRIPTION.format(limit=limit), EDITOR_SCHEMA
    elif spec.kind == "bash":
        description, schema = BASH_DESCRIPTION, BASH_SCHEMA
    else:
        description, schema = spec.description, spec.input_schema
    return {"type": "function", "function": {"name": spec.name, "description": description, "parameters": schema}}


def chat_messages(system: str, messages: list[Message]) -> list[ChatCompletionMessageParam]:
    """The conversation as Chat Completions messages. A user turn's tool results come first, as `tool`
    messages (the API wants them right after the assistant's calls), then its text as one user message."""
    wire: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}]
    calls: dict[str, ToolCall] = {}
    for message in messages:
        if message.role == "assistant":
            wire.append(_assistant_message(message.content))
            calls |= {block.id: block for block in message.content if isinstance(block, ToolCall)}
            continue
        for block in message.content:
            if isinstance(block, CallResult):
                wire.append({"role": "tool", "tool_call_id": block.call_id,
                             "content": _result_text(block, calls.get(block.call_id))})
        said = "\n\n".join(block.text for block in message.content if isinstance(block, Text))
        if said:
            wire.append({"role": "user", "content": said})
    return wire


def _assistant_message(blocks: list[Block]) -> ChatCompletionAssistantMessageParam:
    said = "\n".join(block.text for block in blocks if isinstance(block, Text))
    calls: list[ChatCompletionMessageFunctionToolCallParam] = [
        {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": json.dumps(block.input)}}
        for block in blocks if isinstance(block, ToolCall)
    ]
    if not calls:
        return {"role": "assistant", "content": said}
    return {"role": "assistant", "content": said or None, "tool_calls": calls}


def _result_text(result: CallResult, call: ToolCall | None) -> str:
    """A tool result as the model reads it: a `tool` message has no error flag, so the text says it."""
    if call is not None and ARGUMENTS_PROBLEM in call.input:
        return (f"Error: the arguments of this {call.name} call were not a JSON object "
                f"({call.input[ARGUMENTS_PROBLEM]}), so nothing was run; call it again with valid JSON "
                f"arguments. The tool said: {result.content}")
    return f"Error: {result.content}" if result.is_error else result.content


# -- the reply -----------------------------------------------------------------------------------

class IncompleteStream(Exception):
    """The stream ended (the server closed it) before a choice said how the reply finished."""


class ReplyTooLong(Exception):
    """More text than any one reply has: a server that never ends its stream must not fill the memory."""


# What a server's malformed chunks raise while they are read (a list where text belongs, a None index,
# JSON nested beyond Python's recursion limit): the server's fault, said as such, never fixloop's.
_MALFORMED = (TypeError, AttributeError, ValueError, RecursionError)
# About 500,000 tokens: far beyond any model's output in one reply.
MAX_REPLY_CHARACTERS = 2_000_000


@dataclass
class PartialCall:
    """One tool call as its deltas arrive: the id and name once, the arguments in pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def as_tool_call(self) -> ToolCall:
        call_id = self.id or f"call_{uuid.uuid4().hex[:24]}"  # a server that sends no id still pairs its results
        try:
            parsed = json.loads(self.arguments or "{}")  # no arguments at all: an empty object
        except ValueError as error:
            return ToolCall(call_id, self.name, {UNREADABLE_ARGUMENTS: self.arguments, ARGUMENTS_PROBLEM: str(error)})
        if not isinstance(parsed, dict):
            problem = f"a JSON {type(parsed).__name__}, not an object"
            return ToolCall(call_id, self.name, {UNREADABLE_ARGUMENTS: self.arguments, ARGUMENTS_PROBLEM: problem})
        return ToolCall(call_id, self.name, parsed)


@dataclass
class Streamed:
    text: str = ""
    calls: dict[int, PartialCall] = field(default_factory=dict)  # by the deltas' index
    finish_reason: str | None = None
    usage: CompletionUsage | None = None


def assemble(chunks: Iterable[ChatCompletionChunk]) -> Streamed:
    """One reply from its chunks: text pieces joined, tool-call deltas gathered by index, the finish
    reason, and the usage (in a last chunk without choices, when the server honours include_usage)."""
    streamed = Streamed()
    pieces: list[str] = []
    received = 0
    for chunk in chunks:
        if chunk.usage is not None:
            streamed.usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            pieces += [piece for piece in (delta.content, delta.refusal) if piece]
            received += sum(len(piece) for piece in (delta.content, delta.refusal) if piece)
            if received > MAX_REPLY_CHARACTERS:
                raise ReplyTooLong(f"the reply went past {MAX_REPLY_CHARACTERS:,} characters")
            for part in delta.tool_calls or []:
                call = streamed.calls.setdefault(part.index, PartialCall())
                call.id = call.id or part.id or ""
                if part.function is not None:
                    call.name = call.name or part.function.name or ""
                    arguments = part.function.arguments or ""
                    # Some servers send the arguments as a JSON object rather than its text.
                    piece = arguments if isinstance(arguments, str) else json.dumps(arguments)
                    call.arguments += piece
                    received += len(piece)
            if choice.finish_reason is not None:
                streamed.finish_reason = choice.finish_reason
    if streamed.finish_reason is None:
        raise IncompleteStream("the stream ended before the reply did")
    streamed.text = _whole_characters("".join(pieces))
    for call in streamed.calls.values():
        call.arguments = _whole_characters(call.arguments)
    return streamed


def _whole_characters(text: str) -> str:
    """`text` with the halves of a character outside the BMP put back together: a server that cuts its
    stream by UTF-16 units (JavaScript ones do) sends 🙂 as two chunks, each a lone surrogate, which no
    file or log can hold. A half without its other half becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _usage(reported: CompletionUsage) -> Usage:
    """OpenAI counts cached prompt tokens within prompt_tokens; fixloop counts them apart, as Anthropic does."""
    details = reported.prompt_tokens_details
    # A server's counts are not trusted to be sane: a negative count, or more cached than prompt tokens,
    # would lower the session's spending below what it is and let it run past its limits.
    prompt = _count(reported.prompt_tokens)
    cached = min(_count(details.cached_tokens if details is not None else 0), prompt)
    return Usage(input_tokens=prompt - cached, output_tokens=_count(reported.completion_tokens),
                 cache_read_input_tokens=cached)


def _count(value: object) -> int:
    return max(int(value), 0) if isinstance(value, int | float) and value == value else 0  # NaN counts 0


def _written_tool_call(text: str, tool_names: list[str]) -> bool:
    """Whether `text` holds a tool call written out ({"name": "bash", "arguments": {...}}, as Hermes-,
    Llama- and Mistral-style templates write them): what a model says when its server does not parse calls."""
    if not any(f'"{name}"' in text for name in tool_names):
        return False
    decoder = json.JSONDecoder()
    for opening in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, opening.start())
        except ValueError:
            continue
        if (isinstance(value, dict) and value.get("name") in tool_names
                and isinstance(value.get("arguments", value.get("parameters")), dict | str)):
            return True
    return False


def _server_said(error: openai.APIStatusError) -> str:
    """The server's own message: OpenAI's and vLLM's `message`, FastAPI's `detail`, else the body."""
    body = error.body
    if isinstance(body, dict):
        for key in ("message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return str(body)[:500] if body else error.message


def _cause(error: Exception) -> str:
    """What went wrong underneath: the SDK's "Connection error." wraps the transport's own reason."""
    return str(error.__cause__ or error)
