"""Models the loop can talk to: the Anthropic Messages API, and a scripted model.

`Model.complete` takes the conversation and returns one assistant turn as plain content-block
dicts (the API's own shapes), so the conversation can be sent back verbatim, thinking blocks
included, and written to the trajectory as it is.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import httpx2

from bot.agent.usage import Usage
from bot.errors import MissingAPIKey, ModelError
from bot.tokens import estimate_tokens

Block = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class ModelReply:
    content: list[Block]
    stop_reason: str
    usage: Usage


class Model(Protocol):
    name: str

    def complete(self, *, system: str, tools: list[Block], messages: list[Message]) -> ModelReply: ...


def _with_cache_breakpoints(system: str, messages: list[Message]) -> tuple[list[Block], list[Message]]:
    """Mark the stable prefix (tools + system) and the conversation so far as cacheable.

    Two breakpoints: the end of the system prompt (caches tools and system, which never change in a
    session) and the last block of the newest user turn (each call reuses the previous prefix).
    """
    ephemeral = {"type": "ephemeral"}
    system_blocks = [{"type": "text", "text": system, "cache_control": ephemeral}]
    marked = copy.deepcopy(messages)
    last = marked[-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"][-1]["cache_control"] = ephemeral
    return system_blocks, marked


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

    def complete(self, *, system: str, tools: list[Block], messages: list[Message]) -> ModelReply:
        system_blocks, marked = _with_cache_breakpoints(system, messages)
        for attempt in range(self.stream_retries + 1):
            try:
                with self.client.messages.stream(
                    model=self.name,
                    max_tokens=self.max_tokens,
                    system=system_blocks,  # type: ignore[arg-type]  # plain dicts of the API's own shapes
                    tools=tools,  # type: ignore[arg-type]
                    messages=marked,  # type: ignore[arg-type]
                ) as stream:
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
            content=[block.to_dict() for block in message.content],
            stop_reason=message.stop_reason or "end_turn",
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            ),
        )


def _stream_broke(error: anthropic.APIStatusError) -> bool:
    """An `error` event inside a started stream (status 200), which the SDK does not retry."""
    return error.status_code == 200


def _explain(error: anthropic.APIStatusError) -> str:
    if isinstance(error, anthropic.AuthenticationError):
        return "The model API rejected the API key (401). Check ANTHROPIC_API_KEY."
    if isinstance(error, anthropic.NotFoundError):
        return f"The model API does not know this model or endpoint (404): {error.message}"
    return f"The model API failed with HTTP {error.status_code}: {error.message}"


Turn = list[Block]
Script = Iterable[Turn] | Callable[[list[Message]], Turn]


class ScriptedModel:
    """A model that plays back prepared turns (for the demo, tests and benchmarks).

    A script is either a sequence of turns, each a list of content blocks, or a function from the
    conversation so far to the next turn. Usage is estimated with `bot.tokens.estimate_tokens`.
    """

    def __init__(self, script: Script, *, name: str = "scripted") -> None:
        self.name = name
        self._next: Callable[[list[Message]], Turn]
        if callable(script):
            self._next = script
        else:
            turns = iter(list(script))
            self._next = lambda _messages: next(turns, [{"type": "text", "text": "(script finished)"}])

    def complete(self, *, system: str, tools: list[Block], messages: list[Message]) -> ModelReply:
        content = self._next(messages)
        stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        prompt = estimate_tokens(system) + sum(estimate_tokens(str(m["content"])) for m in messages)
        return ModelReply(content, stop, Usage(input_tokens=prompt, output_tokens=estimate_tokens(str(content))))


def tool_use(name: str, tool_input: Mapping[str, Any], *, id: str) -> Block:
    return {"type": "tool_use", "id": id, "name": name, "input": dict(tool_input)}
