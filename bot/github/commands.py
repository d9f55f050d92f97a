"""The `/fixloop` comment grammar.

    /fixloop [fix] [free-form instructions]
    /fixloop retry [--continue]
    /fixloop stop
    /fixloop help
    /fixloop deflake <test id>
    /fixloop campaign [start|status|pause|resume|retry-failed|cancel]

Only the first line counts, case-insensitively; the rest of the comment is context. A first
word that is not a verb starts the instructions of `fix`, unless it is the only word or looks
like a misspelt verb, which gets a reply listing the valid verbs.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from typing import Literal

Verb = Literal["fix", "retry", "stop", "help", "deflake", "campaign"]
VERBS: tuple[Verb, ...] = ("fix", "retry", "stop", "help", "deflake", "campaign")
CAMPAIGN_STEERING = ("pause", "resume", "retry-failed", "cancel")  # also the API's and the CLI's verbs
CAMPAIGN_ACTIONS = ("start", "status", *CAMPAIGN_STEERING)
CONTINUE = "--continue"  # `retry --continue`: go on from the kept work on the WIP branch
_MAX_LINE = 2_000


@dataclass(frozen=True)
class Command:
    verb: Verb
    argument: str = ""  # instructions for fix, the test id for deflake, the action for campaign
    rest: str = ""  # the comment's other lines


@dataclass(frozen=True)
class UnknownCommand:
    word: str
    suggestion: str | None


def parse_command(body: str, word: str = "/fixloop") -> Command | UnknownCommand | None:
    """The command on the first line of `body`, or None when the comment is not a command."""
    text = unicodedata.normalize("NFKC", body or "").replace("\r\n", "\n")
    first, _, rest = text.lstrip().partition("\n")
    first = first.strip()[:_MAX_LINE]
    head, _, tail = first.partition(" ")
    if head.casefold() != word.casefold():
        return None
    tail = tail.strip()
    if not tail:
        return Command("fix", "", rest.strip())
    verb_word, _, argument = tail.partition(" ")
    verb = verb_word.casefold()
    if verb in VERBS:
        return Command(verb, argument.strip(), rest.strip())
    close = difflib.get_close_matches(verb, VERBS, n=1, cutoff=0.75)
    if close or not argument.strip():
        return UnknownCommand(verb_word, close[0] if close else None)
    return Command("fix", tail, rest.strip())


def help_text(word: str = "/fixloop") -> str:
    return (
        f"**fixloop commands** (first line of a comment; people with write access only):\n\n"
        f"- `{word}` or `{word} fix [instructions]`: work on this issue or pull request\n"
        f"- `{word} retry`: run the last task again; `{word} retry --continue`: go on from the kept work of a "
        "session that did not validate\n"
        f"- `{word} stop`: stop the running session\n"
        f"- `{word} deflake <test id>`: find out whether a test is flaky and fix it\n"
        f"- `{word} campaign [start|status|pause|resume|retry-failed|cancel]`: on an issue holding a campaign file "
        "(a `yaml` block), run it through the fixloop App; then follow and steer it\n"
        f"- `{word} help`: this list"
    )


def unknown_reply(command: UnknownCommand, word: str = "/fixloop") -> str:
    hint = f" Did you mean `{word} {command.suggestion}`?" if command.suggestion else ""
    return f"`{command.word}` is not a fixloop command.{hint}\n\n{help_text(word)}"
