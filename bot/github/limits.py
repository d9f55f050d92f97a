"""GitHub's limits on what fixloop writes, and fitting text into them: a check run's summary and
text at most 65,535 characters, annotations sent 50 per request, a job summary at most 1 MiB."""

from __future__ import annotations

from typing import Any

CHECK_TEXT_LIMIT = 65_535
ANNOTATIONS_PER_REQUEST = 50
SUMMARY_FILE_LIMIT = 1024 * 1024


def fit(text: str, limit: int = CHECK_TEXT_LIMIT, *, where: str = "the session artifact") -> str:
    """`text` within `limit` characters, cut at the end with a note saying where the rest is."""
    if len(text) <= limit:
        return text
    note = f"\n\n… truncated: {len(text) - limit + 200:,} more characters are in {where}."
    return text[: limit - len(note) - 200] + note


def batches(items: list[dict[str, Any]], size: int = ANNOTATIONS_PER_REQUEST) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]
