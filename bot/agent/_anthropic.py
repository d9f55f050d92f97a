"""Claude through the official SDK: the Anthropic side of the model seam (see bot.agent.model).

fixloop's types become the Messages API's dicts here and nowhere else. A reply's text and tool_use
blocks come back as `Text` and `ToolCall`; any other block (thinking, redacted thinking) as `Opaque`,
which goes back to the API verbatim, as the API requires of thinking blocks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2

from bot.agent.model import Block, CallResult, Message, ModelReply, Opaque, Text, ToolCall, ToolSpec
from bot.agent.usage import Usage
from bot.errors import MissingAPIKey, ModelError

PROVIDER = "anthropic"
_CLIENT_TOOL_TYPES = {"text_editor": "text_editor_20250728", "bash": "bash_20250124"}


class AnthropicModel:
    """Claude through the official SDK.

    HTTP-level failures (429, 5xx, 529 overloaded, connection errors) are retried by the SDK with
    exponential backoff that honours `retry-after`. A stream that breaks after it started (a cut
    connection, an `error` event) is not something the SDK retries, so `complete` repeats the whole
    call up to `stream_retries` times.
    """

    def __init__(
        self,
        name: str,
        *,
        client: anthropic.Anthropic | None = None,
        max_tokens: int = 16_000,
        max_retries: int = 4,
        stream_retries: int = 2,
        timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None:
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise MissingAPIKey()
            client = anthropic.Anthropic(max_retries=max_retries, timeout=timeout)
        self.name = name
        self.client = client
        self.max_tokens = max_tokens
        self.stream_retries = stream_retries
        self._sleep = sleep

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        request = request_params(system, tools, messages)
        for attempt in range(self.stream_retries + 1):
            try:
                with self.client.messages.stream(model=self.name, max_tokens=self.max_tokens, **request) as stream:
                    message = stream.get_final_message()
                break
            except anthropic.APIStatusError as error:
                if not _stream_broke(error) or attempt == self.stream_retries:
                    raise ModelError(_explain(error)) from None
            except anthropic.APIConnectionError as error:  # already retried by the SDK
                raise ModelError(f"Could not reach the model API at {self.client.base_url}: {error}") from None
            except httpx2.TransportError as error:  # the stream broke after it started
                if attempt == self.stream_retries:
                    raise ModelError(f"The model API stream broke {attempt + 1} times: {error}") from None
            self._sleep(0.5 * 2**attempt)
        usage = message.usage
        return ModelReply(
            content=[_from_api(block) for block in message.content],
            stop_reason=message.stop_reason or "end_turn",
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            ),
        )


def request_params(system: str, tools: list[ToolSpec], messages: list[Message]) -> dict[str, Any]:
    """The request's `system`, `tools` and `messages`, in the API's shapes, marked as cacheable.

    Two breakpoints: the end of the system prompt (caches tools and system, which never change in a
    session) and the last block of the newest user turn (each call reuses the previous prefix).
    """
    ephemeral = {"type": "ephemeral"}
    contents = [[_to_api(block) for block in message.content] for message in messages]
    contents[-1][-1]["cache_control"] = ephemeral
    return {
        "system": [{"type": "text", "text": system, "cache_control": ephemeral}],
        "tools": [tool_param(spec) for spec in tools],
        "messages": [{"role": m.role, "content": content} for m, content in zip(messages, contents, strict=True)],
    }


def tool_param(spec: ToolSpec) -> dict[str, Any]:
    """A tool as the API takes it: fixloop's own with its schema, Anthropic's client tools by type."""
    if spec.kind == "custom":
        return {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema}
    options = {} if spec.max_characters is None else {"max_characters": spec.max_characters}
    return {"type": _CLIENT_TOOL_TYPES[spec.kind], "name": spec.name, **options}


def _to_api(block: Block) -> dict[str, Any]:
    match block:
        case Text():
            return {"type": "text", "text": block.text}
        case ToolCall():
            return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
        case CallResult():
            return {"type": "tool_result", "tool_use_id": block.call_id, "content": block.content,
                    "is_error": block.is_error}
        case Opaque():
            return dict(block.data)  # a copy: a cache breakpoint must not mark the conversation's own block


def _from_api(block: anthropic.types.ContentBlock) -> Block:
    """A reply's block as fixloop's (text has no citations to keep: fixloop sends no documents)."""
    if isinstance(block, anthropic.types.TextBlock):
        return Text(block.text)
    if isinstance(block, anthropic.types.ToolUseBlock):
        return ToolCall(block.id, block.name, dict(block.input))
    return Opaque(PROVIDER, block.to_dict())


def _stream_broke(error: anthropic.APIStatusError) -> bool:
    """An `error` event inside a started stream (status 200), which the SDK does not retry."""
    return error.status_code == 200


def _explain(error: anthropic.APIStatusError) -> str:
    if isinstance(error, anthropic.AuthenticationError):
        return "The model API rejected the API key (401). Check ANTHROPIC_API_KEY."
    if isinstance(error, anthropic.NotFoundError):
        return f"The model API does not know this model or endpoint (404): {error.message}"
    return f"The model API failed with HTTP {error.status_code}: {error.message}"
