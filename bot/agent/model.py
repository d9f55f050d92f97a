"""fixloop's side of the model seam: its own conversation types, the `Model` protocol, `make_model`
and a scripted model.

The loop speaks only these types; a provider's adapter (bot.agent._anthropic) translates them to and
from its API at the edge. Blocks a provider needs back verbatim but fixloop does not read (Anthropic's
thinking blocks) travel as `Opaque`. This module does not import a provider's SDK (`make_model` does,
when a model is needed), so commands that never call a model start quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bot.agent.usage import Usage
from bot.tokens import estimate_tokens

if TYPE_CHECKING:
    from bot.config import Config


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asks to run tool `name` with `input`; `id` pairs the call with its `CallResult`."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class CallResult:
    """What a `ToolCall` gave, as the model reads it in the next user turn (the tool itself returns a
    `bot.agent.tools.ToolResult`)."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Opaque:
    """A provider's block that fixloop does not read but must send back verbatim (a thinking block)."""

    provider: str
    data: dict[str, Any]


Block = Text | ToolCall | CallResult | Opaque


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: list[Block]


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: one of fixloop's own (`kind="custom"`, described by `description`
    and the JSON schema `input_schema`), or a client tool Anthropic defines itself, which its API
    takes by kind alone (another provider's adapter would describe it with a schema)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    kind: Literal["custom", "text_editor", "bash"] = "custom"
    max_characters: int | None = None  # text_editor: the most of a file one view returns


# Why a reply ended. The loop acts on tool_use, max_tokens and refusal; the others end the turn and
# are recorded as the provider said them (Anthropic's names).
StopReason = Literal[
    "end_turn", "tool_use", "max_tokens", "refusal", "stop_sequence", "pause_turn", "model_context_window_exceeded"
]


@dataclass(frozen=True)
class ModelReply:
    content: list[Block]
    stop_reason: StopReason
    usage: Usage


class Model(Protocol):
    name: str

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply: ...


def make_model(config: Config) -> Model:
    """The model `config.model` names, through `config.provider`'s SDK (imported here, on first need):
    Claude through Anthropic's SDK and its clients for Bedrock, Vertex AI and Foundry, or any
    OpenAI-compatible endpoint through OpenAI's.

    Raises MissingAPIKey, naming what the chosen provider needs, when its credentials are missing."""
    if config.provider == "openai":
        from bot.agent._openai import OpenAIModel

        return OpenAIModel(config.model, base_url=config.base_url)
    from bot.agent._anthropic import AnthropicModel

    return AnthropicModel(config.model, provider=config.provider, base_url=config.base_url)


Turn = list[Block]
Script = Iterable[Turn] | Callable[[list[Message]], Turn]


class ScriptedModel:
    """A model that plays back prepared turns (for the demo, tests and benchmarks).

    A script is either a sequence of turns, each a list of blocks, or a function from the
    conversation so far to the next turn. Usage is estimated with `bot.tokens.estimate_tokens`.
    """

    def __init__(self, script: Script, *, name: str = "scripted") -> None:
        self.name = name
        self._next: Callable[[list[Message]], Turn]
        if callable(script):
            self._next = script
        else:
            turns = iter(list(script))
            self._next = lambda _messages: next(turns, [Text("(script finished)")])

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        content = self._next(messages)
        stop: StopReason = "tool_use" if any(isinstance(block, ToolCall) for block in content) else "end_turn"
        prompt = estimate_tokens(system) + sum(estimate_tokens(str(m.content)) for m in messages)
        return ModelReply(content, stop, Usage(input_tokens=prompt, output_tokens=estimate_tokens(str(content))))


def tool_use(name: str, tool_input: Mapping[str, Any], *, id: str) -> ToolCall:
    """A scripted turn's tool call."""
    return ToolCall(id, name, dict(tool_input))
