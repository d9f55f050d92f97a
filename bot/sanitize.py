"""Untrusted text, made safe to show the model: what a person reading it would not see is removed.

GitHub renders markdown, so instructions can hide in it: HTML comments, zero-width and
bidirectional control characters, hidden HTML, markdown link definitions (`[//]: # (…)`), and
image alt text. `sanitize` removes them from issue and comment text, CI evidence and test output
before they are fenced for the model. Code is different: a file must stay byte-exact for edits,
so `reveal` shows invisible characters as `<U+202E>` markers in what the model reads, and
`conceal` turns such markers back into the characters in what it writes. (A file that literally
contains the text `<U+202E>` is the one thing this cannot tell apart; such files are rare.)
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left

from bot._process import cap_text

# Zero-width, bidirectional controls and other format characters a reader cannot see.
INVISIBLE = re.compile("[\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                       "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)  # the first unclosed one takes the rest: linear
# Hidden HTML, images and link definitions are found by code, not by one regex each: a pattern such as
# `!\[[^\]]*\]\(…[^)]*\)` scans to the end of the text from every start when nothing closes it, and
# untrusted text (an issue, a committed AGENTS.md) can hold thousands of starts. Each step below is linear.
OPENING_TAG = re.compile(r"<([a-z][a-z0-9]*)\b", re.IGNORECASE)
CLOSING_TAG = re.compile(r"</([a-z][a-z0-9]*)\s*>", re.IGNORECASE)
# Every place a hiding attribute starts (overlapping ones too: a lookahead matches no characters).
HIDING = re.compile(r"(?=\bhidden\b|display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)
IMAGE_START = re.compile(r"!\[")
IMAGE_HTML_START = re.compile(r"<img\b", re.IGNORECASE)
WHITESPACE = re.compile(r"\s")
# A label has no unescaped bracket (CommonMark), so a scan from one line's `[` stops before the next line's.
LINK_DEFINITION = re.compile(r"^ {0,3}\[(?:[^\\\[\]]|\\[\s\S])+\]:\s*\S+.*$", re.MULTILINE)  # and `[//]: # (…)`
MARKER = re.compile(r"<U\+([0-9A-F]{4,6})>")
UNTRUSTED_LIMIT = 40_000  # characters of one piece of untrusted text shown to the model


def sanitize(text: str, limit: int = UNTRUSTED_LIMIT) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = HTML_COMMENT.sub("", text)
    text = _without_hidden_html(text)
    text = _without_images(text)
    text = LINK_DEFINITION.sub("", text)
    text = INVISIBLE.sub("", text)
    text = CONTROL.sub("", text)
    return cap_text(text, limit)


class _Next:
    """Where `char` next occurs in `text` at or after a position, for positions that only grow: each character
    is looked at once in all (-1: nowhere)."""

    def __init__(self, text: str, char: str) -> None:
        self._text, self._char, self._found = text, char, -2

    def at(self, position: int) -> int:
        if self._found != -1 and self._found < position:
            self._found = self._text.find(self._char, position)
        return self._found


def _without_hidden_html(text: str) -> str:
    """`text` without the elements a hiding attribute (`hidden`, `display: none`, `visibility: hidden`) keeps out
    of sight, from the opening tag to the first closing tag of the same name."""
    closings: dict[str, list[int]] = {}
    ends: dict[int, int] = {}
    for closing in CLOSING_TAG.finditer(text):
        closings.setdefault(closing.group(1).lower(), []).append(closing.start())
        ends[closing.start()] = closing.end()
    hiding = [found.start() for found in HIDING.finditer(text)]
    tag_end = _Next(text, ">")
    kept: list[str] = []
    done = 0
    for opening in OPENING_TAG.finditer(text):
        if opening.start() < done:
            continue
        end = tag_end.at(opening.end())
        if end == -1:
            break
        first = bisect_left(hiding, opening.end())
        if first == len(hiding) or hiding[first] >= end:
            continue
        starts = closings.get(opening.group(1).lower(), [])
        if (which := bisect_left(starts, end + 1)) == len(starts):
            continue
        kept.append(text[done:opening.start()])
        done = ends[starts[which]]
    return "".join(kept) + text[done:]


def _without_images(text: str) -> str:
    """Images without their alt text: `![alt](url …)` becomes `[image: url]`, `<img …>` becomes `[image]`."""
    kept: list[str] = []
    done = 0
    alt_end, url_end = _Next(text, "]"), _Next(text, ")")
    for image in IMAGE_START.finditer(text):
        if image.start() < done:
            continue
        close = alt_end.at(image.end())
        if close == -1:
            break
        if not text.startswith("(", close + 1) or (end := url_end.at(close + 2)) == -1:
            continue
        url = WHITESPACE.split(text[close + 2:end], maxsplit=1)[0]
        kept += [text[done:image.start()], f"[image: {url}]"]
        done = end + 1
    text = "".join(kept) + text[done:]
    kept, done = [], 0
    tag_end = _Next(text, ">")
    for image in IMAGE_HTML_START.finditer(text):
        if image.start() < done:
            continue
        if (end := tag_end.at(image.end())) == -1:
            break
        kept += [text[done:image.start()], "[image]"]
        done = end + 1
    return "".join(kept) + text[done:]


def reveal(text: str) -> str:
    """Invisible characters as visible `<U+XXXX>` markers (for code and command output)."""
    return INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def conceal(text: str) -> str:
    """The inverse of `reveal`, for text the model writes back into files."""
    return MARKER.sub(lambda m: chr(int(m.group(1), 16)) if INVISIBLE.match(chr(int(m.group(1), 16))) else m.group(),
                      text)
