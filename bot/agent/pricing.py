"""List prices per million tokens, for the session's cost estimate and its cost limit.

Prices are Anthropic's published list prices (USD per million tokens) as of 2026-11; cache writes
are the 5-minute rate. An unknown model is priced like the most expensive one listed, so a cost
limit errs on the side of stopping early.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.agent.usage import Usage


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
PRICES: dict[str, Price] = {
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
    "scripted": Price(0.0, 0.0, 0.0, 0.0),  # the demo's and tests' scripted models cost nothing
}
_FALLBACK = max(PRICES.values(), key=lambda p: p.output)


def price_for(model: str) -> Price:
    for prefix in sorted(PRICES, key=len, reverse=True):
        if model.startswith(prefix):
            return PRICES[prefix]
    return _FALLBACK
