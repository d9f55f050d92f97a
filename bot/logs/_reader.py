"""Reading a log as a stream of line blocks, in bounded memory.

A log is read in binary chunks; lines end at `\\n`, `\\r\\n` or a lone `\\r` (progress bars,
old Mac files, Jenkins and Travis logs), the way most CI tools and log viewers count them.
Bytes are decoded as UTF-8 with replacement, so no input makes the reader fail. Memory stays
bounded even for a single gigantic line: a line that runs past a chunk is cut at
`MAX_LINE_BYTES` (the rest of it is skipped; the line numbering stays right).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 64 * 1024

LogSource = Path | str | bytes

# ANSI escape sequences (CSI and OSC), also in the caret notation some tools print (`^[[31m`),
# and other control characters except tab.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CARET_ANSI = re.compile(r"\^\[\[[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A leading ISO timestamp (GitHub Actions writes `2024-05-01T12:00:00.1234567Z ` before every line),
# optionally after the `job<TAB>step<TAB>` prefix of `gh run view --log`.
_ISO = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?[ \t]?"
_TIMESTAMP = re.compile(r"^" + _ISO, re.MULTILINE)
_PREFIXED_TIMESTAMP = re.compile(r"^(?:[^\t\n]{1,200}\t[^\t\n]{0,200}\t(?=\d{4}-\d\d-\d\d[T ]\d))?" + _ISO,
                                 re.MULTILINE)
_PREFIX_PROBE = re.compile(r"\t\d{4}-\d\d-\d\d[T ]\d")


def clean_text(text: str) -> str:
    """Lines (separated by `\\n`) as fixloop shows and matches them: no timestamp, no colour codes,
    no control characters, no trailing spaces. Works on one line or a whole block alike."""
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")  # byte order marks
    text = (_PREFIXED_TIMESTAMP if _PREFIX_PROBE.search(text) else _TIMESTAMP).sub("", text)
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    text = _CONTROL.sub("", text)
    if "^[" in text:
        text = _CARET_ANSI.sub("", text)
    return "\n".join(line.rstrip(" \t") for line in text.split("\n"))


def clean_line(raw: str) -> str:
    """`clean_text` for one line, with fast paths for the common cases."""
    line = raw.replace("\ufeff", "") if "\ufeff" in raw else raw
    if line[:1].isdigit() or "\t" in line[:402]:
        line = _PREFIXED_TIMESTAMP.sub("", line, count=1)
    if not line.isprintable():
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        line = _CONTROL.sub("", line)
    if "^[" in line:
        line = _CARET_ANSI.sub("", line)
    return line.rstrip(" \t")


@contextmanager
def open_source(source: LogSource) -> Iterator[BinaryIO]:
    """A binary stream over a log given as a file path (`Path`), its content (`str`) or its bytes."""
    if isinstance(source, Path):
        with source.open("rb") as stream:
            yield stream
    elif isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, str):
        yield io.BytesIO(source.encode("utf-8", "replace"))
    else:
        raise TypeError(f"a log is a Path, str (its content) or bytes, not {type(source).__name__}")


def _first_terminator(data: bytes) -> int:
    positions = [p for p in (data.find(b"\n"), data.find(b"\r")) if p >= 0]
    return min(positions) if positions else -1


def iter_blocks(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines with newlines normalised to `\\n` and no final newline.

    Every block holds at least one line; joining the blocks with `\\n` gives the log with its
    newlines normalised (and lines that ran past a chunk cut to `MAX_LINE_BYTES`).
    """
    pending = b""
    skip_lf = False  # the previous chunk ended with `\r`: a `\n` starting this one is its pair
    skipping = False  # inside a line already cut at MAX_LINE_BYTES
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        if skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        skip_lf = chunk.endswith(b"\r")
        if skipping:
            cut = _first_terminator(chunk)
            if cut < 0:
                continue
            chunk = chunk[cut:]
            skipping = False
        data = pending + chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
        else:
            block, pending = data[:end], data[end + 1 :]
            yield block
        if len(pending) > MAX_LINE_BYTES:
            pending = pending[:MAX_LINE_BYTES]
            skipping = True
    if pending:
        yield pending


def decode(block: bytes) -> str:
    return block.decode("utf-8", "replace")


def iter_lines(source: LogSource) -> Iterator[str]:
    """Every line of a log, decoded (small logs and tests; the extractor works on blocks)."""
    with open_source(source) as stream:
        first = True
        for block in iter_blocks(stream):
            text = decode(block)
            if first and text.startswith("\ufeff"):
                text = text[1:]
            first = False
            yield from text.split("\n")
