import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.github.commands import (
    Command,
    UnknownCommand,
    help_text,
    parse_command,
    unknown_reply,
)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("/fixloop", Command("fix")),
        ("/fixloop fix", Command("fix")),
        ("/fixloop fix handle None input", Command("fix", "handle None input")),
        ("/fixloop please handle None input", Command("fix", "please handle None input")),
        ("/FixLoop RETRY", Command("retry")),
        ("  /fixloop stop  ", Command("stop")),
        ("/fixloop help", Command("help")),
        ("/fixloop deflake tests/test_x.py::test_y[1]", Command("deflake", "tests/test_x.py::test_y[1]")),
        ("/fixloop fix\r\nmore context\nhere", Command("fix", "", "more context\nhere")),
    ],
)
def test_commands(body, expected):
    assert parse_command(body) == expected


@pytest.mark.parametrize("body", ["fixloop fix", "please /fixloop fix", "/fixloopy", "", "hello\n/fixloop fix", "/fix"])
def test_not_commands(body):
    assert parse_command(body) is None


def test_misspelt_or_lone_unknown_verbs_get_a_reply_with_the_valid_ones():
    assert parse_command("/fixloop retyr") == UnknownCommand("retyr", "retry")
    assert parse_command("/fixloop deploy") == UnknownCommand("deploy", None)
    reply = unknown_reply(parse_command("/fixloop stpo"))
    assert "Did you mean `/fixloop stop`?" in reply
    for verb in ("fix", "retry", "stop", "help", "deflake"):
        assert f"/fixloop {verb}" in reply or f"`/fixloop` or `/fixloop {verb}" in reply


def test_custom_command_word():
    assert parse_command("/bot retry", "/bot") == Command("retry")
    assert parse_command("/fixloop retry", "/bot") is None
    assert "/bot deflake" in help_text("/bot")


def test_fullwidth_forms_normalise():
    assert parse_command("／ｆｉｘｌｏｏｐ ｓｔｏｐ") == Command("stop")


@given(st.text(max_size=300), st.text(max_size=300), st.booleans())
def test_a_comment_is_a_command_exactly_when_its_first_line_starts_with_the_word(first, rest, prefixed):
    first = first.replace("\n", " ").replace("\r", " ")
    body = (f"/fixloop {first}" if prefixed else first) + "\n" + rest
    head = unicodedata.normalize("NFKC", body).lstrip().split("\n", 1)[0].strip().split(" ", 1)[0]
    assert (parse_command(body) is not None) == (head.casefold() == "/fixloop")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_instructions_roundtrip(instructions):
    text = " ".join(instructions.split())
    result = parse_command(f"/fixloop fix {text}")
    assert isinstance(result, Command) and result.verb == "fix"
