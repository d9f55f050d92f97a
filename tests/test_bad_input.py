# ruff: noqa: F811  (the harness fixtures of tests/test_app_server.py are imported, then used as arguments)
"""Bad input everywhere fixloop takes it from outside: property-based tests (hypothesis) of the
parsers, and example tests plus a small fuzz against a running `fixloop serve`.

The bugs this suite found (5xx for non-ASCII signatures, deep nesting and huge integers; a worker
killed by a lone surrogate; config errors escaping as other exceptions) are fixed; their tests stay
as regression tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.config import Config, parse_config
from bot.errors import ConfigError, MalformedEvent
from bot.github.commands import VERBS, Command, UnknownCommand, parse_command
from bot.github.events import (
    parse_event,
    signature_for,
    verify_signature,
)
from bot.logs import extract_evidence
from bot.tokens import estimate_tokens
from tests.fixtures import WEBHOOKS, load_payload
from tests.test_app_server import (  # noqa: F401 - pytest fixtures used by name
    REPO,
    SECRET,
    labeled,
    make_app,
    seeded,
    with_installation,
)

_spec = importlib.util.spec_from_file_location("webhook_fuzz",
                                               Path(__file__).parents[1] / "benchmarks" / "webhook_fuzz.py")
webhook_fuzz = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules.setdefault("webhook_fuzz", webhook_fuzz)
_spec.loader.exec_module(webhook_fuzz)  # type: ignore[union-attr]

MAX_BODY = 25 * 1024 * 1024
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
no_surrogates = st.characters(blacklist_categories=("Cs",))
any_chars = st.characters(blacklist_categories=())  # lone surrogates included
FIXTURES = sorted(p.stem for p in WEBHOOKS.glob("*.json"))


# -- signature verification -----------------------------------------------------------------------
@PROPERTY
@given(secret=st.text(no_surrogates, min_size=1), body=st.binary(max_size=2000))
def test_any_body_verifies_with_its_own_signature(secret, body):
    assert verify_signature(secret, body, signature_for(secret, body))
    padded = "  " + signature_for(secret, body) + "\n"
    assert verify_signature(secret, body, padded), "surrounding whitespace is ignored"


@PROPERTY
@given(secret=st.text(no_surrogates, min_size=1), body=st.binary(min_size=1, max_size=2000), data=st.data())
def test_any_single_byte_change_of_the_body_fails(secret, body, data):
    index = data.draw(st.integers(0, len(body) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([new]) + body[index + 1:]
    assert not verify_signature(secret, changed, signature_for(secret, body))


@PROPERTY
@given(secret=st.text(no_surrogates, min_size=1), body=st.binary(max_size=500), data=st.data())
def test_any_single_character_change_of_the_signature_fails(secret, body, data):
    signature = signature_for(secret, body)
    index = data.draw(st.integers(0, len(signature) - 1))
    new = data.draw(st.characters(min_codepoint=33, max_codepoint=126).filter(lambda c: c != signature[index]))
    assert not verify_signature(secret, body, signature[:index] + new + signature[index + 1:])
    assert not verify_signature(secret, body, signature[:index] + signature[index + 1:])  # a character dropped


@PROPERTY
@given(secret=st.text(no_surrogates, max_size=20), body=st.binary(max_size=200))
def test_a_missing_or_empty_header_or_secret_never_verifies(secret, body):
    assert not verify_signature(secret, body, None)
    assert not verify_signature(secret, body, "")
    assert not verify_signature("", body, signature_for("", body))


@PROPERTY
@given(header=st.text(any_chars, max_size=80), body=st.binary(max_size=100))
def test_any_ascii_header_is_answered_without_raising(header, body):
    ascii_header = header.encode("ascii", "ignore").decode()
    assert verify_signature(SECRET, body, ascii_header) is (ascii_header.strip() == signature_for(SECRET, body))


@PROPERTY
@given(header=st.text(any_chars, min_size=1, max_size=80).filter(lambda h: any(ord(c) > 127 for c in h)))
@example(header="sha256=ü")
def test_a_non_ascii_header_does_not_raise(header):
    assert verify_signature(SECRET, b"{}", header) is False


# -- the command parser ---------------------------------------------------------------------------
@PROPERTY
@given(body=st.text(any_chars, max_size=300), word=st.sampled_from(["/fixloop", "/FixLoop", "/x", "/fix-loop_2"]))
def test_the_command_parser_never_raises_and_knows_only_its_verbs(body, word):
    parsed = parse_command(body, word)
    assert parsed is None or isinstance(parsed, (Command, UnknownCommand))
    if isinstance(parsed, Command):
        assert parsed.verb in VERBS


commands = st.builds(
    lambda lead, word, verb, arg, sep, rest: f"{lead}{word} {verb} {arg}{sep}{rest}",
    st.sampled_from(["", " ", "\n\n", "\t", "\r\n", "\x00", "\u200b", "\ufeff"]),
    st.sampled_from(["/fixloop", "/FIXLOOP", "／ｆｉｘｌｏｏｐ", "/fix loop", "fixloop", "/fixloop\u0301"]),
    st.sampled_from(["", *VERBS, "FIX", "Retry", "retyr", "stpo", "delfake", "ｆｉｘ", "fix\x00", "🙂"]),
    st.text(any_chars, max_size=50),
    st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\x1c", "\u2028", " "]),
    st.text(any_chars, max_size=50),
)


@PROPERTY
@given(body=commands)
def test_odd_command_syntax_never_raises(body):
    parsed = parse_command(body)
    if isinstance(parsed, Command):
        assert parsed.verb in VERBS
        assert len(parsed.argument) <= 2_000, "the first line is capped"
    elif isinstance(parsed, UnknownCommand):
        assert parsed.suggestion is None or parsed.suggestion in VERBS


HUGE_COMMENTS = [
    "/fixloop " + "fix " * 2_500_000,                # 10 MB first line
    "/fixloop " + "x" * 10_000_000,                  # one 10 MB word
    "/fixloop\n" + "/fixloop stop\n" * 500_000,      # many commands: only the first line counts
    "\n" * 5_000_000 + "/fixloop retry",
    "/fixloop " + "ﬁ" * 3_000_000,                   # NFKC expands it
    "/fixloop " + ("retyr" * 400) + " x",            # a long misspelt verb goes through difflib
]


@pytest.mark.parametrize("body", HUGE_COMMENTS)
def test_huge_comments_are_parsed(body):
    parsed = parse_command(body)
    assert parsed is None or isinstance(parsed, (Command, UnknownCommand))


@pytest.mark.timing
@pytest.mark.parametrize("body", HUGE_COMMENTS)
def test_huge_comments_are_parsed_in_bounded_time(body):
    started = time.perf_counter()
    parse_command(body)
    assert time.perf_counter() - started < 5


# -- configuration --------------------------------------------------------------------------------
def _config_error_is_useful(text: str) -> None:
    try:
        assert isinstance(parse_config(text), Config)
    except ConfigError as error:
        assert str(error).strip(), "a ConfigError must say what is wrong"


@PROPERTY
@given(text=st.text(any_chars, max_size=300))
@example("validate: [\n")
@example("limits: {iterations: 0}\nunknown: 1\n")
@example("a: &a [*a]\nvalidate: *a\n")
@example("? [a, b]\n: c\n")
@example("validate: !!python/object/apply:os.system [true]\n")
@example("--- 1\n--- 2\n")
@example("\ufeffmodel: x\n")
def test_any_yaml_text_parses_or_raises_a_config_error(text):
    _config_error_is_useful(text)


KEYS = ["model", "validate", "setup", "limits", "iterations", "turns", "tokens", "cost_usd", "wall_time", "trigger",
        "label", "command", "ci", "auto", "workflows", "branches", "max_sessions_per_branch", "paths", "deny",
        "branch_prefix", "pull_request", "labels", "reviewers", "deflake", "quarantine", "confidence", "secrets",
        "scrub", "max_failure_rate", "command_timeout", "tool_timeout"]
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(no_surrogates, max_size=20)
           | st.sampled_from(["/fixloop", "fixloop/", "python -m pytest", "  ", "", "1e400", ".nan"]))
structures = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(KEYS) | st.text(no_surrogates, max_size=8) | st.integers(), inner, max_size=4), max_leaves=25)


@PROPERTY
@given(data=st.dictionaries(st.sampled_from(KEYS), structures, max_size=6) | structures)
def test_any_yaml_structure_parses_or_raises_a_config_error(data):
    _config_error_is_useful(yaml.safe_dump(data, allow_unicode=True))


def check(condition: bool, message: str) -> None:
    """Fail without a traceback: after a RecursionError in another thread, CPython 3.11 sometimes raises
    SystemError ('AST constructor recursion depth mismatch') while pytest parses source for a traceback."""
    if not condition:
        pytest.fail(message, pytrace=False)


def outcome_in_a_thread(function, *args) -> Any:
    """`function(*args)` or the exception it raised, computed in a fresh thread: a RecursionError in the
    main thread can leave CPython 3.11's recursion counter skewed, which then breaks pytest's reporting."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(function(*args))
        except BaseException as error:  # noqa: BLE001 - the test judges it
            box.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    return box[0]


def test_deeply_nested_yaml_is_a_config_error():
    error = outcome_in_a_thread(parse_config, "validate: " + "[" * 5000)
    check(isinstance(error, ConfigError), repr(error)[:200])


def test_a_huge_integer_in_yaml_is_a_config_error():
    error = outcome_in_a_thread(parse_config, "limits: {iterations: " + "9" * 5000 + "}\n")
    check(isinstance(error, ConfigError), repr(error)[:200])


# -- log extraction -------------------------------------------------------------------------------
log_pieces = st.sampled_from([b"\n", b"\r", b"\r\n", b"\x00", b"\xff\xfe", b"\xc3", b"\xe2\x82", b" ", b"\t",
                              b"error: boom", b"FAILED tests/test_x.py::test_y - AssertionError",
                              b"##[error]Process completed with exit code 1.",
                              b"Traceback (most recent call last):", b"  File \"x.py\", line 1",
                              b"=== 1 failed in 0.1s ===", b"2026-01-01T00:00:00.0000000Z ", b"\x1b[31m",
                              b"\xf0\x9f\x99\x82", b"x" * 5000]) | st.binary(max_size=40)
logs = st.lists(log_pieces, max_size=60).map(b"".join)


@PROPERTY
@given(fail_log=logs, pass_log=st.none() | logs, budget=st.integers(1, 3000))
def test_evidence_stays_within_budget_with_valid_ranges(fail_log, pass_log, budget):
    evidence = extract_evidence(fail_log, pass_log, budget=budget)
    assert evidence.tokens <= budget
    assert evidence.tokens == estimate_tokens(evidence.text)
    previous = 0
    for first, last in evidence.lines:
        assert 1 <= first <= last <= evidence.total_lines
        assert first > previous, "ranges are in order and do not overlap"
        previous = last


@PROPERTY
@given(text=st.text(any_chars, max_size=500), budget=st.integers(1, 200))
def test_evidence_from_any_str_never_raises(text, budget):
    evidence = extract_evidence(text, budget=budget)
    assert evidence.tokens <= budget


HUGE_LOGS = [
    b"x" * 5_000_000 + b"\nerror: it broke\n",
    b"\r".join([b"progress 10%"] * 200_000) + b"\rFAILED test_a\r",
    b"\x00" * 3_000_000,
    (b"\xff" * 1000 + b"\n") * 3000,
]


@pytest.mark.parametrize("log", HUGE_LOGS)
@pytest.mark.parametrize("budget", [1, 5, 20, 4000])
def test_huge_lines_are_handled(log, budget):
    evidence = extract_evidence(log, budget=budget)
    assert evidence.tokens <= budget and all(1 <= a <= b <= evidence.total_lines for a, b in evidence.lines)


@pytest.mark.timing
@pytest.mark.parametrize("log", HUGE_LOGS)
def test_huge_lines_are_handled_in_bounded_time(log):
    started = time.perf_counter()
    extract_evidence(log, budget=4000)
    assert time.perf_counter() - started < 20


def test_a_budget_below_one_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 1 token"):
        extract_evidence("boom", budget=0)


# -- event parsing --------------------------------------------------------------------------------
EVENT_NAMES = ["issues", "issue_comment", "pull_request_review_comment", "pull_request", "workflow_run",
               "check_suite", "check_run", "installation", "installation_repositories", "workflow_dispatch", "star", ""]


@PROPERTY
@given(fixture=st.sampled_from(FIXTURES), rounds=st.integers(0, 6), rng=st.randoms(use_true_random=False),
       wrong_event=st.none() | st.sampled_from(EVENT_NAMES))
def test_parse_event_on_mutated_real_payloads_returns_an_event_none_or_malformed(fixture, rounds, rng, wrong_event):
    payload = load_payload(fixture)
    for _ in range(rounds):
        webhook_fuzz.mutate(rng, payload)
    name = wrong_event if wrong_event is not None else fixture.split(".", 1)[0]
    try:
        event = parse_event(name, payload)
    except MalformedEvent as error:
        assert str(error)
    else:
        assert event is None or hasattr(event, "sender")


@PROPERTY
@given(payload=st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20),
       name=st.sampled_from(EVENT_NAMES))
def test_parse_event_on_arbitrary_json_returns_an_event_none_or_malformed(payload, name):
    with contextlib.suppress(MalformedEvent):
        parse_event(name, payload)


# -- a running server -----------------------------------------------------------------------------
def post(app, body: bytes, event: str = "issues", *, signed: bool = True, delivery: str | None = None,
         **headers: str) -> requests.Response:
    sent = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json", **headers}
    if signed:
        sent["X-Hub-Signature-256"] = signature_for(SECRET, body)
    return requests.post(f"{app.url}/webhook", data=body, headers=sent, timeout=60)


def healthy(app) -> None:
    response = requests.get(f"{app.url}/healthz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def settle(app, timeout: float = 60) -> None:
    """Wait for the workers (`Service.drain` without its own deadline)."""
    deadline = time.monotonic() + timeout
    while app.service.store.unfinished_deliveries():
        assert time.monotonic() < deadline, "the delivery queue did not drain"
        time.sleep(0.02)


def outcome(app, delivery: str) -> tuple[str, str | None] | None:
    return app.service.store.delivery_outcome(delivery)


@pytest.mark.parametrize("body", [
    b"{not json", b'{"action": "labeled", "issue": {"number": 1', b"", b"\xff\xfe\x00", b"[]", b"null", b"1",
    b'"a string"', b"true", b"[{}]", b"{\"a\": 1}garbage",
], ids=["malformed", "truncated", "empty", "invalid-utf8", "list", "null", "number", "string", "bool",
        "list-of-objects", "trailing-garbage"])
def test_bodies_that_are_not_a_json_object_get_a_400(make_app, body):
    app = make_app()
    response = post(app, body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    healthy(app)


def test_wrong_types_in_known_fields_are_accepted_and_rejected_when_processed(make_app):
    app = make_app()
    cases = {}
    number_as_string = with_installation(labeled(), app.github)
    number_as_string["issue"]["number"] = "one"
    cases["number-as-word"] = number_as_string
    sender_as_list = with_installation(labeled(), app.github)
    sender_as_list["sender"] = [sender_as_list["sender"]]
    cases["sender-as-list"] = sender_as_list
    repository_as_string = with_installation(labeled(), app.github)
    repository_as_string["repository"] = REPO
    cases["repository-as-string"] = repository_as_string
    installation_as_string = with_installation(labeled(), app.github)
    installation_as_string["installation"] = "1"
    cases["installation-as-string"] = installation_as_string
    label_null = with_installation(labeled(), app.github)
    label_null["label"] = None
    cases["label-null"] = label_null
    for delivery, payload in cases.items():
        response = post(app, json.dumps(payload).encode(), delivery=delivery)
        assert response.status_code == 202, (delivery, response.text)
    settle(app)
    for delivery in cases:
        status, said = outcome(app, delivery)
        assert status == "done" and said.startswith("rejected: issues.labeled payload: "), (delivery, said)
    assert app.github.dispatches(REPO) == []
    healthy(app)


def test_a_number_given_as_a_numeric_string_is_coerced(make_app):
    app = make_app()
    payload = with_installation(labeled(), app.github)
    payload["issue"]["number"] = "1"
    assert post(app, json.dumps(payload).encode()).status_code == 202
    settle(app)
    assert len(app.github.dispatches(REPO)) == 1


def test_bodies_over_25_mb_get_a_413_whether_declared_or_streamed(make_app):
    app = make_app()
    headers = "\r\n".join(["POST /webhook HTTP/1.1", f"Host: 127.0.0.1:{app.live.port}", "X-GitHub-Event: issues",
                           "X-GitHub-Delivery: big-declared", "X-Hub-Signature-256: sha256=00",
                           f"Content-Length: {MAX_BODY + 1}", "Connection: close"])
    with socket.create_connection(("127.0.0.1", app.live.port), timeout=10) as sock:
        sock.sendall(headers.encode() + b"\r\n\r\n{}")  # the body is never sent: the answer must not wait for it
        assert sock.recv(100).split(b" ", 2)[1] == b"413"

    def chunks():
        for _ in range(26):
            yield b"x" * (1024 * 1024)

    try:
        streamed = requests.post(f"{app.url}/webhook", data=chunks(), timeout=60, headers={
            "X-GitHub-Event": "issues", "X-GitHub-Delivery": "big-chunked", "X-Hub-Signature-256": "sha256=00"})
        assert streamed.status_code == 413
    except requests.ConnectionError:
        pass  # the server answered 413 and closed while the client was still sending
    exact = post(app, b" " * MAX_BODY, delivery="exactly-25-mb")  # at the limit: read, then judged on its content
    assert exact.status_code == 400
    healthy(app)
    metrics = requests.get(f"{app.url}/metrics", timeout=5).text
    assert 'fixloop_webhook_deliveries_total{event="issues",outcome="too_large"} 2' in metrics


@pytest.mark.parametrize("event,action,answer", [
    ("star", "created", 202), ("fork", None, 202), ("x" * 200, "created", 202), ("ISSUES", "labeled", 202),
    ("issues", "transferred", 202), ("issues", None, 202), ("issue_comment", "deleted", 202),
    ("workflow_run", "requested", 202), ("check_run", "rerequested", 202), ("pull_request", "closed", 202),
])
def test_unknown_events_and_actions_are_ignored(make_app, event, action, answer):
    app = make_app()
    payload = with_installation(labeled(), app.github)
    if action is None:
        payload.pop("action")
    else:
        payload["action"] = action
    response = post(app, json.dumps(payload).encode(), event=event, delivery="d")
    assert response.status_code == answer, response.text
    settle(app)
    got = outcome(app, "d")  # None: answered without being recorded
    assert got is None or (got[0] == "done" and got[1].startswith("ignored")), got
    assert app.github.dispatches(REPO) == []
    healthy(app)


def comment_payload(app, body: str) -> dict[str, Any]:
    payload = load_payload("issue_comment.created", comment__body=body)
    payload["repository"] = labeled()["repository"]
    payload["issue"].update(number=1, pull_request=None)
    payload["issue"].pop("pull_request")
    payload["sender"].update(login="maintainer", type="User")
    payload["comment"]["user"].update(login="maintainer", type="User")
    payload["comment"]["id"] = app.github.add_issue_comment(REPO, 1, body, user="maintainer")
    return with_installation(payload, app.github)


@pytest.mark.parametrize("body", [
    "/fixloop fix " + "make it work " * 80_000,            # ~1 MB first line
    "/fixloop\n" + "context " * 130_000,                   # ~1 MB of context after the command
    "/fixloop frobnicate\n" + "/fixloop stop\n" * 70_000,  # ~1 MB of commands; only the first line counts
    "just talking " * 80_000,                              # ~1 MB, no command at all
], ids=["long-first-line", "long-context", "many-commands", "no-command"])
def test_a_comment_of_1_mb_is_handled(make_app, body):
    app = make_app()
    response = post(app, json.dumps(comment_payload(app, body)).encode(), event="issue_comment", delivery="big-comment")
    assert response.status_code == 202
    settle(app)
    status, said = outcome(app, "big-comment")
    assert status == "done" and not said.startswith("error"), said
    for dispatch in app.github.dispatches(REPO):
        assert len(dispatch.inputs["instructions"]) <= 65_535
    healthy(app)


def test_a_5_mb_issue_body_is_handled(make_app):
    app = make_app()
    payload = with_installation(labeled(), app.github)
    payload["issue"]["body"] = "add(2, 3) returns -1. " * 240_000
    response = post(app, json.dumps(payload).encode(), delivery="big-issue")
    assert response.status_code == 202
    settle(app)
    status, said = outcome(app, "big-issue")
    assert status == "done" and said.startswith("dispatched"), said
    healthy(app)


def test_an_invalid_config_in_the_repository_gets_a_polite_comment(make_app, seeded):
    github = seeded()
    github.add_file(REPO, ".github/fixloop.yml", "limits: {iterations: 0}\nvalidate: [\n")
    app = make_app(github)
    body = json.dumps(with_installation(labeled(), github)).encode()
    assert post(app, body, delivery="bad-config").status_code == 202
    settle(app)
    assert outcome(app, "bad-config") == ("done", "refused: invalid .github/fixloop.yml")
    (comment,) = github.comments(REPO, 1)
    assert comment.body.startswith("fixloop cannot start: .github/fixloop.yml on main is invalid")
    assert "not valid YAML" in comment.body
    assert github.dispatches(REPO) == []
    github.add_file(REPO, ".github/fixloop.yml", "limits: {iterations: 0}\nunknown_key: 1\n")
    assert post(app, json.dumps(with_installation(labeled(), github)).encode(), delivery="bad-keys").status_code == 202
    settle(app)
    body = github.comments(REPO, 1)[-1].body
    assert "limits.iterations" in body and "unknown_key" in body
    healthy(app)


def test_a_deeply_nested_config_gets_a_polite_comment(make_app, seeded):
    github = seeded()
    github.add_file(REPO, ".github/fixloop.yml", "validate: " + "[" * 5000 + "]" * 5000 + "\n")
    app = make_app(github)
    post(app, json.dumps(with_installation(labeled(), github)).encode(), delivery="deep-config")
    settle(app)
    got = outcome(app, "deep-config")
    check(got == ("done", "refused: invalid .github/fixloop.yml"), repr(got))


def test_duplicate_delivery_ids_of_different_payloads_are_answered_once(make_app):
    app = make_app()
    first = post(app, json.dumps(with_installation(labeled(), app.github)).encode(), delivery="same")
    second = post(app, b'{"zen": "different"}', delivery="same")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"duplicate": "same"}
    settle(app)
    healthy(app)


@pytest.mark.parametrize("headers", [
    {"X-GitHub-Event": ""}, {"X-GitHub-Delivery": ""}, {"X-GitHub-Delivery": "x" * 8000},
    {"X-GitHub-Delivery": "'; DROP TABLE deliveries; --"}, {"Content-Type": "text/plain"},
    {"X-GitHub-Delivery": "é".encode().decode("latin-1")},
])
def test_odd_headers_get_a_2xx_or_4xx(make_app, headers):
    app = make_app()
    response = post(app, json.dumps(with_installation(labeled(sender="visitor"), app.github)).encode(), **headers)
    assert 200 <= response.status_code < 500, response.text
    settle(app)
    healthy(app)


# -- known server bugs ----------------------------------------------------------------------------
def test_a_non_ascii_signature_header_gets_a_401(make_app):
    app = make_app()
    response = post(app, b"{}", signed=False, **{"X-Hub-Signature-256": "sha256=ü".encode().decode("latin-1")})
    assert response.status_code == 401


def test_a_deeply_nested_body_gets_a_400(make_app):
    app = make_app()
    status = post(app, b"[" * 100_000 + b"]" * 100_000).status_code
    check(status == 400, f"answered {status}")


def test_a_huge_integer_in_the_body_gets_a_400(make_app):
    app = make_app()
    status = post(app, b'{"action": "labeled", "n": ' + b"9" * 5000 + b"}").status_code
    check(status == 400, f"answered {status}")


def test_a_lone_surrogate_in_the_action_does_not_kill_a_worker(make_app):
    app = make_app()
    workers = len(app.service.workers)
    body = b'{"action": "\\ud800", "sender": {"login": "x"}, "repository": {"full_name": "octo/calc"}}'
    assert post(app, body, delivery="surrogate").status_code == 202
    deadline = time.monotonic() + 3
    while outcome(app, "surrogate")[0] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcome(app, "surrogate")[0] == "done"
    assert sum(w.is_alive() for w in app.service.workers) == workers


# -- a small fuzz ---------------------------------------------------------------------------------
SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")


def known_bug(request) -> bool:
    """A request that may trigger one of the xfailed server bugs above."""
    signature = request.headers.get("X-Hub-Signature-256", "")
    body = request.body if isinstance(request.body, bytes) else b""
    return (any(ord(c) > 127 for c in signature) or body.startswith(b"[" * 1000)
            or b"9" * 4301 in body or SURROGATE.search(body) is not None)


def fuzz(app, count: int, seed: int, *, skip_known_bugs: bool) -> dict[str, Any]:
    batch = webhook_fuzz.build_requests(seed, count, app.github.installation_id("octo"), oversized=0,
                                        secret=SECRET)
    statuses: dict[int, int] = {}
    server_errors: list[str] = []
    skipped = 0
    session = requests.Session()
    for request in batch:
        if skip_known_bugs and known_bug(request):
            skipped += 1
            continue
        response = session.post(f"{app.url}/webhook", data=request.body, headers=request.headers, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            session.close()
            session = requests.Session()
            server_errors.append(f"{response.status_code} {request.kind} {request.headers} {request.body[:200]!r}")
    return {"statuses": statuses, "server_errors": server_errors, "skipped": skipped}


def test_a_small_fuzz_gets_no_5xx_and_leaves_the_server_healthy(make_app):
    """300 random requests from benchmarks/webhook_fuzz.py, less those that hit the xfailed bugs."""
    app = make_app()
    result = fuzz(app, 300, seed=7, skip_known_bugs=True)
    assert result["server_errors"] == [], result
    assert result["skipped"] < 60 and sum(result["statuses"].values()) == 300 - result["skipped"]
    assert set(result["statuses"]) <= {200, 202, 400, 401}, result["statuses"]
    healthy(app)
    settle(app, timeout=60)
    assert app.service.store.unfinished_deliveries() == 0
    assert all(w.is_alive() for w in app.service.workers)


def test_a_small_fuzz_with_everything_gets_no_5xx_and_keeps_its_workers(make_app):
    app = make_app()
    result = fuzz(app, 300, seed=7, skip_known_bugs=False)
    check(result["server_errors"] == [], f"5xx: {result['statuses']}")
    settle(app, timeout=30)
    check(all(w.is_alive() for w in app.service.workers), "a worker died")


# -- the command line: a user's mistake is one line and exit 2 ------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--task", "x", "--validate", "true", "--out", "{file}"], "exists and is not a folder"),
    (["run", "--task", "x", "--max-iterations", "abc"], "must be a positive whole number, not 'abc'"),
    (["run", "--task", "x", "--timeout", "nan"], "must be a positive number, not 'nan'"),
    (["serve", "--port", "99999"], "must be a port number from 1 to 65535"),
    (["app", "manifest", "--url", "notaurl"], "must be an http(s) URL"),
    (["rn"], "did you mean 'run'?"),
    (["logs", "extrct"], "did you mean 'extract'?"),
    (["run", "--task", "x", "--valdate", "true"], "did you mean '--validate'?"),
])
def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, argv, says):
    stray = tmp_path / "a-file"
    stray.write_text("")
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key"}
    result = subprocess.run([sys.executable, "-m", "bot", *(a.format(file=stray) for a in argv)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=env, check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("fixloop"), "the last line says what is wrong"


def test_a_reader_that_goes_away_is_not_a_bug():
    """`fixloop app manifest | head -c 1`: the pipe closes before fixloop writes."""
    proc = subprocess.Popen([sys.executable, "-m", "bot", "app", "manifest"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "internal error" not in err


def test_version():
    result = subprocess.run([sys.executable, "-m", "bot", "--version"], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("fixloop ")
