"""List prices per million tokens, for the session's cost estimate and its cost limit.

Claude's prices are Anthropic's published list prices (USD per million tokens) as of 2026-11; cache
writes are the 5-minute rate. Bedrock, Vertex AI and Foundry list Claude at the same prices for their
global endpoints (their regional endpoints cost more; set `pricing:` for those), under model ids of
their own, which are brought back to Anthropic's names here. OpenAI's are its published list prices
as of 2026-11 (cached input where it has a rate). A model not listed has no price: its cost is
reported as unknown, unless `pricing:` in the config gives one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.agent.usage import Usage
from bot.config import Pricing


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / 1_000_000


# Matched by prefix, longest first, so "claude-sonnet-5-5-20261001" finds "claude-sonnet-5-5".
CLAUDE: dict[str, Price] = {
    "claude-fable-5": Price(10.0, 50.0, 12.5, 1.0),
    "claude-mythos-5": Price(10.0, 50.0, 12.5, 1.0),
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 0.2),
    "claude-opus-5": Price(5.0, 25.0, 6.25, 0.5),
    "claude-opus-4": Price(5.0, 25.0, 6.25, 0.5),
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.5, 0.2),
    "claude-sonnet-5": Price(2.0, 10.0, 2.5, 0.2),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.3),
    "claude-haiku-5": Price(0.1, 0.5, 0.125, 0.01),
    "claude-haiku-4": Price(1.0, 5.0, 1.25, 0.1),
}
OPENAI: dict[str, Price] = {
    "gpt-5-mini": Price(0.25, 2.0, 0.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.4, 0.0, 0.005),
    "gpt-5": Price(1.25, 10.0, 0.0, 0.125),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.0, 0.1),
    "gpt-4.1-nano": Price(0.1, 0.4, 0.0, 0.025),
    "gpt-4.1": Price(2.0, 8.0, 0.0, 0.5),
    "gpt-4o-mini": Price(0.15, 0.6, 0.0, 0.075),
    "gpt-4o": Price(2.5, 10.0, 0.0, 1.25),
    "o4-mini": Price(1.1, 4.4, 0.0, 0.275),
    "o3": Price(2.0, 8.0, 0.0, 0.5),
}
TABLES: dict[str, dict[str, Price]] = {
    "anthropic": CLAUDE, "bedrock": CLAUDE, "vertex": CLAUDE, "foundry": CLAUDE, "openai": OPENAI,
}
SCRIPTED = "scripted"  # the demo's and tests' scripted models, which cost nothing


def price_for(provider: str, model: str, configured: Pricing | None = None) -> Price | None:
    """The model's price: the config's, else the table's for the provider; None when unknown."""
    if configured is not None:
        return Price(configured.input, configured.output, configured.cache_write, configured.cache_read)
    if model.startswith(SCRIPTED):
        return Price(0.0, 0.0, 0.0, 0.0)
    name = _anthropic_name(model) if provider == "bedrock" else model
    table = TABLES.get(provider, {})
    for prefix in sorted(table, key=len, reverse=True):
        if name.startswith(prefix):
            return table[prefix]
    return None


def cost_text(cost_usd: float | None, *, digits: int = 2) -> str:
    """A cost as fixloop shows it everywhere: an estimate, or said to be unknown."""
    return "cost unknown" if cost_usd is None else f"est. ${cost_usd:.{digits}f}"


def _anthropic_name(bedrock_id: str) -> str:
    """Bedrock's `us.anthropic.claude-sonnet-4-5-20250929-v1:0` (an inference profile) or
    `anthropic.claude-…` (a model id) as Anthropic's `claude-sonnet-4-5-…`."""
    return bedrock_id.rpartition("anthropic.")[2]
