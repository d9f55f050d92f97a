"""Token usage as the Messages API reports it, summed across calls."""

from __future__ import annotations

from pydantic import BaseModel


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def _combine(self, other: Usage, sign: int) -> Usage:
        return Usage(**{name: getattr(self, name) + sign * getattr(other, name) for name in Usage.model_fields})

    def __add__(self, other: Usage) -> Usage:
        return self._combine(other, 1)

    def __sub__(self, other: Usage) -> Usage:
        return self._combine(other, -1)

    @property
    def total(self) -> int:
        """Every token the session paid for: prompt (fresh, cached, cache-written) and output."""
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
