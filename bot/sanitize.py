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

from bot._process import cap_text

# Zero-width, bidirectional controls and other format characters a reader cannot see.
INVISIBLE = re.compile("[\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                       "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
HIDDEN_HTML = re.compile(
    r"<(?P<tag>[a-z][a-z0-9]*)\b[^>]*(?:\bhidden\b|display\s*:\s*none|visibility\s*:\s*hidden)[^>]*>.*?</(?P=tag)\s*>",
    re.IGNORECASE | re.DOTALL)
IMAGE_MARKDOWN = re.compile(r"!\[[^\]]*\]\(([^)\s]*)[^)]*\)")
IMAGE_HTML = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+.*$", re.MULTILINE)  # includes the `[//]: # (…)` idiom
MARKER = re.compile(r"<U\+([0-9A-F]{4,6})>")
UNTRUSTED_LIMIT = 40_000  # characters of one piece of untrusted text shown to the model


def sanitize(text: str, limit: int = UNTRUSTED_LIMIT) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = HTML_COMMENT.sub("", text)
    text = HIDDEN_HTML.sub("", text)
    text = IMAGE_MARKDOWN.sub(lambda m: f"[image: {m.group(1)}]", text)
    text = IMAGE_HTML.sub("[image]", text)
    text = LINK_DEFINITION.sub("", text)
    text = INVISIBLE.sub("", text)
    text = CONTROL.sub("", text)
    return cap_text(text, limit)


def reveal(text: str) -> str:
    """Invisible characters as visible `<U+XXXX>` markers (for code and command output)."""
    return INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def conceal(text: str) -> str:
    """The inverse of `reveal`, for text the model writes back into files."""
    return MARKER.sub(lambda m: chr(int(m.group(1), 16)) if INVISIBLE.match(chr(int(m.group(1), 16))) else m.group(),
                      text)
