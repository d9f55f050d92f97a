"""The one token estimate used everywhere in fixloop (log budgets, benchmarks, scripted usage).

Claude's tokenizer is not public, so fixloop estimates: one token per four bytes of UTF-8,
rounded up. For English prose and code this is within about 15% of the real count, and it is
cheap, deterministic and the same in every measurement, which is what budgets and comparisons
need. Real usage always comes from the API's own `usage` numbers.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8", "replace")) // BYTES_PER_TOKEN)
