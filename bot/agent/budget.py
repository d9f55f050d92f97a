"""The session's spending so far, against its limits (tokens, estimated cost, wall time)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.agent.pricing import Price
from bot.agent.usage import Usage
from bot.config import Limits


class Budget:
    """`price` None: the model's price is unknown, so is the cost, and the cost limit cannot apply
    (the session refuses to start when one was asked for: see `bot.session`)."""

    def __init__(self, limits: Limits, price: Price | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.price = price
        self.clock = clock
        self.started = clock()
        self.usage = Usage()

    def charge(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    @property
    def cost_usd(self) -> float | None:
        return None if self.price is None else round(self.price.cost(self.usage), 4)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def exhausted(self) -> tuple[str, str] | None:
        """(limit name, explanation) of the first limit reached, or None."""
        if self.usage.total >= self.limits.tokens:
            return "tokens", f"token limit reached: {self.usage.total:,} of {self.limits.tokens:,} tokens used"
        cost = self.cost_usd
        if cost is not None and cost >= self.limits.cost_usd:
            return "cost", f"cost limit reached: ${cost:.2f} of ${self.limits.cost_usd:.2f} spent (estimate)"
        if self.elapsed >= self.limits.wall_time:
            return "wall_time", f"time limit reached: {self.elapsed:.0f} s of {self.limits.wall_time:.0f} s"
        return None
