"""What a `search_code` program saves over tool-call ping-pong, in tokens sent to the model.

Corpus: the Python standard library source installed on this machine (`sysconfig`'s "stdlib"
path, read in place; `--root` points at another copy). The known answers below were read from
CPython 3.11's source by hand; another version may differ, and then the run fails loudly.

Each task is a retrieval question with a known answer that takes a careful agent several searches
(callers of a function with the function each call sits in, a transitive subclass tree, a default
that is defined two hops away, ...). Two scripted strategies reach it:

- ping-pong (the baseline): the grep / view calls a careful agent with only fixloop's bash and
  text-editor tools makes, run for real through `bot.agent.tools.Toolbox`, so every result is
  exactly what the model would see. Greps are narrow: `grep -rn` with `--include=*.py` and the
  test and third-party folders excluded, or `grep -n` in one file when the question names the
  module (no other file name is known before a result shows it). Independent calls of a turn are
  batched. Which calls come next is decided from earlier results only (line numbers are read off
  grep output), by one mechanical policy, the same in every task:
  - to see the function or class a grep hit sits in, view [line-15, line+5]; if the enclosing
    def/class line is not in what has been seen, scroll up in the next turn with the 30 lines
    above what is already seen; after two such scrolls, list the file's def/class lines instead
    (`grep -n` of them), as a careful agent would in a long function, and view from the nearest
    def/class above that is indented less than the hit down to what is seen (the lines between
    show whether it encloses the hit or ended before it; if it ended, the same with the next one
    out). Overlapping windows of one file are merged, lines already seen are not viewed again, and
    all the calls of one turn go in one turn;
  - to read a function whose def line a grep showed, view it 40 lines at a time from the def
    line until a line at or left of the def's indentation shows it has ended.
- program: one or two `search_code` programs, run for real through `bot.search.run_program`, as
  an agent writes them from `REFERENCE`: `grep` / `references` hits carry their `scope` (the
  enclosing def/class), `exclude=` leaves the same folders out, and what comes back is a table of
  flat records (the runner shows a list of flat dicts with the same keys as one header line and
  one tab-separated row each) or a short string.

"Answered" is decided from the tool results alone: each task's check extracts the answer from the
source lines, enclosing functions and records the strategy's results actually showed and compares
it with the known answer. A line's function counts as known only when its `def`/`class` line and
every line down to it were shown (ping-pong), or a program reported its `scope` (the last part of
the qualname; for a def or class line itself, the part before). Program results are read back as
the model reads them: JSON, or the table format parsed from its text (a record with a `start`
line has its `\\n`-shown text split back into lines, unless it gives an `end` the count does not
match), or a plain string (nothing checkable).

Tokens (bot.tokens.estimate_tokens): the model is called once per turn, and each request carries
what fixloop really sends every time: its system prompt, the tool definitions, the task prompt,
every earlier tool call (as JSON) and every earlier tool result. Tool definitions: both strategies
have Anthropic's bash and text-editor client tools, whose definitions the API expands on its side
(Anthropic's documented overhead: 346 tokens of tool-use system prompt, 245 for bash, 700 for the
text editor); the program strategy also sends `search_spec()` (the search_code description with the
SDK reference) on every turn. A strategy's tokens are the sum of its requests, the last one being
the turn in which the model reads the final result and answers. The model's own words between
tool calls are left out (they would add to the strategy with more turns: ping-pong).

    python benchmarks/search_as_code.py [--root DIR] [--only NAME,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.agent._anthropic import tool_param
from bot.agent.prompts import SYSTEM_PROMPT
from bot.agent.tools import BASH, EDITOR, Toolbox, search_spec
from bot.sandbox import Confinement
from bot.search import run_program
from bot.secrets import scrubbed_environment
from bot.tokens import BYTES_PER_TOKEN, estimate_tokens

SEARCH = "search_code"
# Stands in for what the API adds for the client tools both strategies have (see the docstring):
# 346 + 245 + 700 tokens, as text of that estimated size.
CLIENT_TOOLS_OVERHEAD = "x" * (BYTES_PER_TOKEN * (346 + 245 + 700))
CONTEXT = (
    "\n\nThe repository is the Python standard library source. site-packages/ holds third-party "
    "packages and test/, tests/ and idle_test/ folders hold test suites: leave them out. "
    "Answer with file paths, line numbers and the functions or classes involved."
)
# What a careful agent adds to every recursive grep here.
GREP_R = ("grep -rn --include=*.py --exclude-dir=site-packages --exclude-dir=test --exclude-dir=tests "
          "--exclude-dir=idle_test")
# The ping-pong policy (see the docstring).
ABOVE, BELOW, SCROLL, CHUNK, SCROLLS_BEFORE_OUTLINE = 15, 5, 30, 40, 2
DEFINITION = re.compile(r"^(\s*)(?:async\s+)?(?:def|class)\s+(\w+)")
GREP_LINE = re.compile(r"^(?:\./)?(.+?\.py)([:-])(\d+)\2(.*)$")
GREP_FILE_LINE = re.compile(r"^(\d+)[:-](.*)$")
VIEW_LINE = re.compile(r"^\s*(\d+)\t(.*)$")
TABLE_KEY = re.compile(r"^[A-Za-z_]\w*$")
INT_COLUMNS = {"line", "start", "end", "end_line", "total_lines"}


# --- what the model saw --------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One tool call. `file` names the file a single-file grep searched (its output has no paths)."""

    name: str
    input: dict[str, Any]
    file: str | None = None
    outline: bool = False  # a complete list of the file's def/class lines


def bash(command: str, *, file: str | None = None) -> Call:
    return Call(BASH, {"command": command}, file)


def outline(path: str) -> Call:
    return Call(BASH, {"command": f"grep -nE '^[[:space:]]*(async +)?(def|class) ' {path}"}, path, outline=True)


def view(path: str, start: int, end: int) -> Call:
    return Call(EDITOR, {"command": "view", "path": path, "view_range": [max(1, start), end]})


def program(source: str) -> Call:
    return Call(SEARCH, {"program": source})


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def parse_table(text: str) -> list[dict[str, Any]] | None:
    """The records of a table as the runner shows them (a header line of keys, one tab-separated
    row per record), or None when `text` is not one. Rows that do not fit the header (a capped
    last row, the runner's notes) are dropped; line-number columns become ints, empty cells None."""
    lines = text.split("\n")
    keys = lines[0].split("\t")
    if len(keys) < 2 or not all(TABLE_KEY.match(key) for key in keys):
        return None
    records = []
    for raw in lines[1:]:
        cells = raw.split("\t")
        if len(cells) != len(keys):
            continue
        record: dict[str, Any] = {}
        for key, cell in zip(keys, cells, strict=True):
            record[key] = int(cell) if key in INT_COLUMNS and cell.isdigit() else (cell or None)
        if isinstance(record.get("start"), int) and isinstance(record.get("text"), str):
            record["text"] = record["text"].replace("\\n", "\n")  # a read: its lines, as shown
        records.append(record)
    return records


def owner_from_scope(scope: str, text: str) -> str:
    """The def/class a line sits in, from its `scope` qualname: the last part, or for the def or
    class line itself (whose scope is its own name) the part before."""
    parts = scope.split(".")
    match = DEFINITION.match(text)
    if match and match[2] == parts[-1]:
        return parts[-2] if len(parts) > 1 else "<module>"
    return parts[-1]


@dataclass
class Seen:
    """Everything the tool results showed: source lines, and what programs said about them."""

    lines: dict[tuple[str, int], str] = field(default_factory=dict)
    owners: dict[tuple[str, int], str] = field(default_factory=dict)  # from a program's "scope"
    spans: list[tuple[str, int, int, str]] = field(default_factory=list)  # definitions() records
    outlined: set[str] = field(default_factory=set)  # files whose every def/class line was listed

    def add(self, call: Call, result: str) -> None:
        if call.outline and call.file is not None:
            self.outlined.add(call.file)
        if call.name == EDITOR:
            for raw in result.splitlines():
                if match := VIEW_LINE.match(raw):
                    self.lines[(call.input["path"], int(match[1]))] = match[2]
        elif call.name == BASH:
            for raw in result.splitlines():
                if call.file is not None and (match := GREP_FILE_LINE.match(raw)):
                    self.lines[(call.file, int(match[1]))] = match[2]
                elif call.file is None and (match := GREP_LINE.match(raw)):
                    self.lines[(match[1], int(match[3]))] = match[4]
        elif call.name == SEARCH:
            try:
                value: Any = json.loads(result)
            except json.JSONDecodeError:
                value = parse_table(result)  # None for a plain string: nothing checkable
            self._collect(value)

    def _collect(self, value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                self._collect(item)
        if not isinstance(value, dict):
            return
        path, line, text, scope = value.get("path"), value.get("line"), value.get("text"), value.get("scope")
        start = value.get("start")
        if isinstance(path, str) and isinstance(text, str) and isinstance(line, int):
            before, after = value.get("before") or [], value.get("after") or []
            for number, shown in enumerate([*before, text, *after], line - len(before)):
                self.lines[(path, number)] = shown
            if isinstance(scope, str):
                self.owners[(path, line)] = owner_from_scope(scope, text)
        if isinstance(path, str) and isinstance(text, str) and isinstance(start, int):
            shown = text.split("\n")
            end = value.get("end")
            if not isinstance(end, int) or end - start + 1 == len(shown):
                for number, piece in enumerate(shown, start):
                    self.lines[(path, number)] = piece
                if isinstance(scope, str):
                    self.owners[(path, start)] = owner_from_scope(scope, shown[0])
        if isinstance(path, str) and isinstance(line, int) and isinstance(value.get("end_line"), int):
            self.spans.append((path, line, value["end_line"], str(value.get("name", "")).split(".")[-1]))
        for item in value.values():
            self._collect(item)

    def find(self, pattern: str, path: str | None = None) -> list[tuple[str, int, str]]:
        regex = re.compile(pattern)
        return sorted((p, n, t) for (p, n), t in self.lines.items() if (path is None or p == path) and regex.search(t))

    def has(self, path: str, pattern: str) -> bool:
        return bool(self.find(pattern, path))

    def owner(self, path: str, line: int) -> str | None:
        """The def/class `line` is in, if what was shown establishes it."""
        if (path, line) in self.owners:
            return self.owners[(path, line)]
        covering = [s for s in self.spans if s[0] == path and s[1] < line <= s[2]]
        if covering:
            return max(covering, key=lambda s: s[1])[3]
        text = self.lines.get((path, line))
        if text is None:
            return None
        return self._walk_up(path, line, _indent(text))

    def top(self, path: str, line: int) -> int:
        """The first line of the stretch of shown lines that reaches down to `line`."""
        while (path, line - 1) in self.lines:
            line -= 1
        return line

    def candidate(self, path: str, line: int) -> int:
        """From the file's outline: the nearest def/class above the shown stretch around `line`
        that is indented less than that stretch reaches (the first line if there is none)."""
        top, indent = self.top(path, line), _indent(self.lines[(path, line)])
        for number in range(line, top - 1, -1):
            text = self.lines[(path, number)]
            if text.strip():
                indent = min(indent, _indent(text))
        for number in range(top - 1, 0, -1):
            above = self.lines.get((path, number))
            if above is not None and DEFINITION.match(above) and _indent(above) < indent:
                return number
        return 1

    def _walk_up(self, path: str, line: int, indent: int) -> str | None:
        """Through contiguous shown lines, up to the first less-indented def or class."""
        for number in range(line, 0, -1):
            if indent == 0:
                return "<module>"
            text = self.lines.get((path, number - 1))
            if text is None:
                return None
            if text.strip() and _indent(text) < indent:
                if match := DEFINITION.match(text):
                    return match[2]
                indent = _indent(text)
        return None

    def ended(self, path: str, line: int) -> bool | None:
        """Whether the shown lines after the def on `line` reach the end of its body (None: not
        shown far enough yet)."""
        indent = _indent(self.lines[(path, line)])
        number = line + 1
        while (path, number) in self.lines:
            text = self.lines[(path, number)]
            if text.strip() and _indent(text) <= indent and not text.strip().startswith(")"):
                return True
            number += 1
        return None


def library(path: str) -> bool:
    parts = path.split("/")
    return parts[0] != "site-packages" and not {"test", "tests", "idle_test"} & set(parts[:-1])


def grep_hits(result: str) -> list[tuple[str, int, str]]:
    """(path, line, text) of `grep -rn` matches, as the model reads them off the output."""
    return [(m[1], int(m[3]), m[4]) for raw in result.splitlines() if (m := GREP_LINE.match(raw)) and m[2] == ":"]


def file_hits(result: str) -> list[tuple[int, str]]:
    """(line, text) of a single-file `grep -n`'s matches."""
    return [(int(m[1]), m[2]) for raw in result.splitlines() if (m := re.match(r"^(\d+):(.*)$", raw))]


def views(seen: Seen, ranges: list[tuple[str, int, int]]) -> list[Call]:
    """One view per file and stretch of `ranges` (overlapping or touching ones merged), trimmed of
    lines already seen at either end; stretches seen entirely are left out."""
    merged: dict[str, list[list[int]]] = {}
    for path, start, end in sorted((p, max(1, s), e) for p, s, e in ranges):
        spans = merged.setdefault(path, [])
        if spans and start <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    calls = []
    for path, spans in merged.items():
        for start, end in spans:
            while start <= end and (path, start) in seen.lines:
                start += 1
            while end >= start and (path, end) in seen.lines:
                end -= 1
            if start <= end:
                calls.append(view(path, start, end))
    return calls


# --- conversations and token accounting ----------------------------------------------------------

class Conversation:
    """One strategy's dialogue: every model request is the prompt, the tool definitions and all
    earlier calls and results; `turn` runs calls made in one model turn."""

    def __init__(self, prompt: str, tools: str, execute: Callable[[Call], str]) -> None:
        self.parts = ([SYSTEM_PROMPT, CLIENT_TOOLS_OVERHEAD, tools, prompt] if tools
                      else [SYSTEM_PROMPT, CLIENT_TOOLS_OVERHEAD, prompt])
        self.execute = execute
        self.requests: list[int] = []
        self.seen = Seen()

    def turn(self, *calls: Call) -> list[str]:
        self.requests.append(estimate_tokens("\n".join(self.parts)))
        turn = len(self.requests)
        for index, call in enumerate(calls):
            block = {"type": "tool_use", "id": f"toolu_{turn:02d}_{index:02d}", "name": call.name, "input": call.input}
            self.parts.append(json.dumps(block))
        results = []
        for call in calls:
            result = self.execute(call)
            self.parts.append(result)
            self.seen.add(call, result)
            results.append(result)
        return results

    def finish(self) -> None:
        """The last request: the model reads the final results and answers."""
        self.requests.append(estimate_tokens("\n".join(self.parts)))


# --- the ping-pong policy ------------------------------------------------------------------------

def enclosing(c: Conversation, sites: list[tuple[str, int]], *extra: Call) -> None:
    """Find the def/class each grep hit in `sites` sits in: view [line-15, line+5] around each,
    scroll up 30 lines at a time above what is seen, twice at most, then list the file's def/class
    lines and view down from the nearest candidate until the enclosing one is established. `extra`
    calls (independent of the views) go into the first turn."""
    pending = sorted({site for site in sites if c.seen.owner(*site) is None})
    calls = [*extra, *views(c.seen, [(p, n - ABOVE, n + BELOW) for p, n in pending])]
    scrolls = 0
    while calls:
        c.turn(*calls)
        pending = [site for site in pending if c.seen.owner(*site) is None]
        if scrolls < SCROLLS_BEFORE_OUTLINE:
            scrolls += 1
            calls = views(c.seen, [(p, top - SCROLL, top - 1) for p, n in pending if (top := c.seen.top(p, n)) > 1])
        elif unlisted := sorted({p for p, _ in pending} - c.seen.outlined):
            calls = [outline(path) for path in unlisted]
        else:
            calls = views(c.seen, [(p, c.seen.candidate(p, n), c.seen.top(p, n) - 1) for p, n in pending])


def read_functions(c: Conversation, defs: list[tuple[str, int]], *extra: Call) -> None:
    """Read each function whose def line is in `defs`, 40 lines at a time, until it has ended."""
    nxt = {site: site[1] for site in defs}
    calls = [*extra, *views(c.seen, [(p, n, n + CHUNK - 1) for (p, _), n in nxt.items()])]
    while calls:
        c.turn(*calls)
        ranges = []
        for (path, line), start in list(nxt.items()):
            shown_to = start
            while (path, shown_to) in c.seen.lines:
                shown_to += 1
            if c.seen.ended(path, line) or shown_to == start:  # ended, or past the end of the file
                del nxt[(path, line)]
            else:
                nxt[(path, line)] = shown_to
                ranges.append((path, shown_to, shown_to + CHUNK - 1))
        calls = views(c.seen, ranges)


# --- the tasks -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    name: str
    question: str
    ping_pong: Callable[[Conversation], None]
    programs: list[str]
    check: Callable[[Seen], bool]


def _owners(seen: Seen, pattern: str, *,
            skip: Callable[[str, str], bool] = lambda path, text: False) -> set[tuple[str, str | None]]:
    return {(p, seen.owner(p, n)) for p, n, t in seen.find(pattern) if library(p) and not skip(p, t)}


def _mention(text: str) -> bool:
    """A comment, docstring or definition line: it names a function without calling it."""
    return text.lstrip().startswith(("#", '"', "'", "def "))


# 1. socket.create_connection: its default timeout, and the callers that pass their own.
CREATE_CONNECTION_CALLERS = {
    ("ftplib.py", "connect"), ("ftplib.py", "ntransfercmd"), ("http/client.py", "connect"),
    ("imaplib.py", "_create_socket"), ("logging/handlers.py", "makeSocket"), ("nntplib.py", "_create_socket"),
    ("poplib.py", "_create_socket"), ("smtplib.py", "_get_socket"), ("ssl.py", "get_server_certificate"),
    ("telnetlib.py", "open"),
}


def _not_a_call(path: str, text: str) -> bool:
    return path == "socket.py" or path.startswith("asyncio/") or _mention(text)


def pp_create_connection(c: Conversation) -> None:
    _, callers = c.turn(bash("grep -n '_GLOBAL_DEFAULT_TIMEOUT\\|def create_connection' socket.py", file="socket.py"),
                        bash(f"{GREP_R} 'create_connection' . | grep -v '^./asyncio/'"))
    enclosing(c, [(p, n) for p, n, t in grep_hits(callers) if "create_connection(" in t and not _not_a_call(p, t)])


def check_create_connection(seen: Seen) -> bool:
    return (seen.has("socket.py", r"^_GLOBAL_DEFAULT_TIMEOUT = object\(\)")
            and seen.has("socket.py", r"^def create_connection\(address, timeout=_GLOBAL_DEFAULT_TIMEOUT")
            and _owners(seen, r"create_connection\(", skip=_not_a_call) == CREATE_CONNECTION_CALLERS)


PROGRAM_CREATE_CONNECTION = '''
calls = [h for h in grep(r"create_connection\\(", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages", "asyncio", "socket.py"])
         if not h["text"].lstrip().startswith(("#", "def "))]
emit(grep(r"^_GLOBAL_DEFAULT_TIMEOUT =|^def create_connection", glob="socket.py") + calls)
'''  # noqa: E501 - the program as an agent would write it: its size is what is measured

# 2. The transitive subclasses of socketserver.BaseRequestHandler.
REQUEST_HANDLERS = {
    ("socketserver.py", "StreamRequestHandler"), ("socketserver.py", "DatagramRequestHandler"),
    ("idlelib/rpc.py", "RPCHandler"), ("idlelib/run.py", "MyHandler"), ("logging/config.py", "ConfigStreamHandler"),
    ("http/server.py", "BaseHTTPRequestHandler"), ("http/server.py", "SimpleHTTPRequestHandler"),
    ("http/server.py", "CGIHTTPRequestHandler"), ("pydoc.py", "DocHandler"),
    ("xmlrpc/server.py", "SimpleXMLRPCRequestHandler"), ("xmlrpc/server.py", "DocXMLRPCRequestHandler"),
    ("wsgiref/simple_server.py", "WSGIRequestHandler"),
}
CLASS_LINE = re.compile(r"^\s*class (\w+)\((.*)\)")


def pp_request_handlers(c: Conversation) -> None:
    frontier = ["BaseRequestHandler"]
    while frontier:
        (result,) = c.turn(bash(f"{GREP_R} -E '^\\s*class \\w+\\(.*\\b({'|'.join(frontier)})\\b' ."))
        frontier = [m[1] for _, _, t in grep_hits(result) if (m := CLASS_LINE.match(t))]


def _subclasses(seen: Seen, root: str) -> set[tuple[str, str]]:
    """(path, class) of every shown class line that derives from `root` through shown class lines."""
    classes = [(p, m[1], {b.split(".")[-1] for b in re.findall(r"[\w.]+", m[2])})
               for p, _, t in seen.find(CLASS_LINE.pattern) if library(p) and (m := CLASS_LINE.match(t))]
    found: set[tuple[str, str]] = set()
    names = {root}
    while grown := {(p, name) for p, name, bases in classes if bases & names} - found:
        found |= grown
        names |= {name for _, name in grown}
    return found


def check_request_handlers(seen: Seen) -> bool:
    return _subclasses(seen, "BaseRequestHandler") == REQUEST_HANDLERS


PROGRAM_REQUEST_HANDLERS = '''
found, frontier = [], ["BaseRequestHandler"]
while frontier:
    hits = grep(r"^\\s*class \\w+\\(.*\\b(" + "|".join(frontier) + r")\\b", glob="**/*.py",
                exclude=["test", "tests", "idle_test", "site-packages"])
    found += hits
    frontier = [h["text"].split("class ")[1].split("(")[0] for h in hits]
emit(found)
'''

# 3. http.client's default ports and who in the http package reads them.
PORT_READERS = {("http/client.py", "HTTPConnection"), ("http/client.py", "HTTPSConnection"),
                ("http/client.py", "_get_hostport"), ("http/client.py", "putrequest"),
                ("http/cookiejar.py", "<module>")}
PORT_USE = r"\bHTTPS?_PORT\b|\bself\.default_port\b|^\s*default_port = "


def pp_http_ports(c: Conversation) -> None:
    (result,) = c.turn(bash(f"{GREP_R} -E 'HTTPS?_PORT|default_port' http/"))
    enclosing(c, [(p, n) for p, n, _ in grep_hits(result)])


def check_http_ports(seen: Seen) -> bool:
    return (seen.has("http/client.py", r"^HTTP_PORT = 80$") and seen.has("http/client.py", r"^HTTPS_PORT = 443$")
            and _owners(seen, PORT_USE,
                        skip=lambda p, t: not p.startswith("http/") or bool(re.match(r"HTTPS?_PORT =", t)))
            == PORT_READERS)


PROGRAM_HTTP_PORTS = '''
emit(grep(r"HTTPS?_PORT|default_port", glob="http/**"))
'''

# 4. What subprocess.run raises itself, and where those exceptions are defined.


def pp_subprocess_run(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n '^def run(\\|^class .*Error\\|^class TimeoutExpired' subprocess.py",
                            file="subprocess.py"))
    read_functions(c, [("subprocess.py", n) for n, t in file_hits(result) if t.startswith("def run(")])


def check_subprocess_run(seen: Seen) -> bool:
    in_run = {t.strip() for p, n, t in seen.find(r"raise|except", "subprocess.py") if seen.owner(p, n) == "run"}
    return ({"except TimeoutExpired as exc:", "raise CalledProcessError(retcode, process.args,"} <= in_run
            and any(t.startswith("raise ValueError(") for t in in_run)
            and seen.has("subprocess.py", r"^class SubprocessError\(Exception\)")
            and seen.has("subprocess.py", r"^class CalledProcessError\(SubprocessError\)")
            and seen.has("subprocess.py", r"^class TimeoutExpired\(SubprocessError\)"))


PROGRAM_SUBPROCESS_RUN = '''
hits = grep(r"\\b(raise|except)\\b|^class \\w+\\(", glob="subprocess.py")
emit([h for h in hits if h["scope"] == "run" or h["text"].startswith("class ")])
'''

# 5. The callers of copyfileobj in shutil.py.
COPYFILEOBJ_CALL = r"\bcopyfileobj\("


def pp_copyfileobj(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n 'copyfileobj(' shutil.py", file="shutil.py"))
    enclosing(c, [("shutil.py", n) for n, t in file_hits(result) if re.search(COPYFILEOBJ_CALL, t) and not _mention(t)])


def check_copyfileobj(seen: Seen) -> bool:
    return _owners(seen, COPYFILEOBJ_CALL, skip=lambda p, t: p != "shutil.py" or _mention(t)) == {
        ("shutil.py", "copyfile"), ("shutil.py", "_unpack_zipfile")}


PROGRAM_COPYFILEOBJ = '''
emit([r for r in references("copyfileobj", glob="shutil.py") if r["kind"] == "call"])
'''

# 6. logging.basicConfig's default format string.


def pp_basic_config(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n 'def basicConfig' logging/__init__.py", file="logging/__init__.py"))
    read_functions(c, [("logging/__init__.py", n) for n, _ in file_hits(result)])
    c.turn(bash("grep -n '^_STYLES\\|BASIC_FORMAT' logging/__init__.py", file="logging/__init__.py"))


def check_basic_config(seen: Seen) -> bool:
    pops = [(p, n) for p, n, _ in seen.find(r'fs = kwargs\.pop\("format", _STYLES\[style\]\[1\]\)',
                                            "logging/__init__.py")]
    return (any(seen.owner(p, n) == "basicConfig" for p, n in pops)
            and seen.has("logging/__init__.py", r"^BASIC_FORMAT = \"%\(levelname\)s:%\(name\)s:%\(message\)s\"$")
            and seen.has("logging/__init__.py", r"^\s*'%': \(PercentStyle, BASIC_FORMAT\)"))


PROGRAM_BASIC_CONFIG_1 = '''
emit([h for h in grep(r"format", glob="logging/__init__.py") if h["scope"] == "basicConfig"])
'''
PROGRAM_BASIC_CONFIG_2 = '''
emit(grep(r"^_STYLES|BASIC_FORMAT", glob="logging/__init__.py"))
'''

# 7. The directories tempfile.gettempdir() tries, in order.
TEMPDIR_CHAIN = {("gettempdir", "_gettempdir()"), ("_gettempdir", "_get_default_tempdir()"),
                 ("_get_default_tempdir", "_candidate_tempdir_list()")}


def pp_tempdir(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n 'tempdir\\w*()\\|TMPDIR\\|/tmp\\|getcwd' tempfile.py", file="tempfile.py"))
    enclosing(c, [("tempfile.py", n) for n, _ in file_hits(result)])


def check_tempdir(seen: Seen) -> bool:
    chain = {(seen.owner(p, n), callee) for p, n, t in seen.find(r"\w*tempdir\w*\(\)", "tempfile.py")
             for callee in re.findall(r"\w*tempdir\w*\(\)", t)}
    candidates = [seen.owner(p, n) for p, n, _ in seen.find(r"for envname in 'TMPDIR', 'TEMP', 'TMP':|"
                                                        r"\[ '/tmp', '/var/tmp', '/usr/tmp' \]|_os\.getcwd\(\)",
                                                        "tempfile.py")]
    return TEMPDIR_CHAIN.issubset(chain) and candidates.count("_candidate_tempdir_list") == 3


PROGRAM_TEMPDIR = '''
emit(grep(r"tempdir\\w*\\(\\)|TMPDIR|/tmp|getcwd", glob="tempfile.py"))
'''

# 8. How many threads asyncio's default executor gets.


def pp_asyncio_executor(c: Conversation) -> None:
    (found,) = c.turn(bash(f"{GREP_R} 'def run_in_executor' asyncio/"))
    read_functions(c, [(p, n) for p, n, _ in grep_hits(found) if p == "asyncio/base_events.py"])  # not the abstract one
    (result,) = c.turn(bash(f"{GREP_R} 'max_workers = ' concurrent/futures/"))
    enclosing(c, [(p, n) for p, n, t in grep_hits(result) if t.strip().startswith("max_workers = ")])


def check_asyncio_executor(seen: Seen) -> bool:
    created = [(p, n) for p, n, _ in seen.find(r"executor = concurrent\.futures\.ThreadPoolExecutor\($",
                                               "asyncio/base_events.py")]
    return (any(seen.owner(p, n) == "run_in_executor"
                and seen.lines.get((p, n + 1), "").strip() == "thread_name_prefix='asyncio'"
                and seen.lines.get((p, n + 2), "").strip() == ")" for p, n in created)
            and any(seen.owner(p, n) == "__init__" for p, n, _ in
                    seen.find(r"max_workers = min\(32, \(os\.cpu_count\(\) or 1\) \+ 4\)",
                              "concurrent/futures/thread.py")))


PROGRAM_ASYNCIO_EXECUTOR = '''
(init,) = definitions("ThreadPoolExecutor.__init__", glob="concurrent/**")
rows = [{"path": h["path"], "start": h["line"], "scope": h["scope"], "text": read(h["path"], h["line"], h["line"] + 4)["text"]}
        for h in grep(r"ThreadPoolExecutor\\(", glob="asyncio/*.py")]
rows += [{"path": h["path"], "start": h["line"], "scope": h["scope"], "text": h["text"]}
         for h in grep(r"max_workers", glob=init["path"]) if h["scope"] == "ThreadPoolExecutor.__init__"]
emit(rows)
'''  # noqa: E501 - the program as an agent would write it: its size is what is measured

# 9. pickle's default protocol and who falls back to it.


def pp_pickle_protocol(c: Conversation) -> None:
    (result,) = c.turn(bash(f"{GREP_R} 'DEFAULT_PROTOCOL' ."))
    enclosing(c, [(p, n) for p, n, t in grep_hits(result) if re.search(r"protocol = DEFAULT_PROTOCOL", t)])


def check_pickle_protocol(seen: Seen) -> bool:
    return (seen.has("pickle.py", r"^DEFAULT_PROTOCOL = 4$")
            and _owners(seen, r"^\s*protocol = DEFAULT_PROTOCOL$")
            == {("pickle.py", "__init__"), ("shelve.py", "__init__")})


PROGRAM_PICKLE_PROTOCOL = '''
emit(grep(r"\\bDEFAULT_PROTOCOL\\b", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"]))
'''

# 10. The request handlers that set server_version, and to what.
SERVER_VERSIONS = {("http/server.py", "BaseHTTPRequestHandler", "BaseHTTP/0.6"),
                   ("http/server.py", "SimpleHTTPRequestHandler", "SimpleHTTP/0.6"),
                   ("wsgiref/simple_server.py", "WSGIRequestHandler", "WSGIServer/0.2"),
                   ("wsgiref/simple_server.py", "<module>", "WSGIServer/0.2")}


def pp_server_version(c: Conversation) -> None:
    (result,) = c.turn(bash(f"{GREP_R} 'server_version *=' ."))
    hits = grep_hits(result)
    paths = sorted({p for p, _, _ in hits})
    enclosing(c, [(p, n) for p, n, _ in hits], bash(f"grep -n '^__version__' {' '.join(paths)}"))


def check_server_version(seen: Seen) -> bool:
    versions = {p: m[1] for p, _, t in seen.find(r"^__version__ = ") if (m := re.match(r'__version__ = "(.*)"', t))}
    found = {(p, seen.owner(p, n), m[1] + versions.get(p, "?"))
             for p, n, t in seen.find(r"server_version = ")
             if library(p) and (m := re.search(r'"(.*)" \+ __version__', t))}
    return found == SERVER_VERSIONS


PROGRAM_SERVER_VERSION = '''
hits = grep(r"server_version *=", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"])
emit(hits + [v for path in sorted({h["path"] for h in hits}) for v in grep(r"^__version__ =", glob=path)])
'''

# 11. What the stdlib registers with atexit.
ATEXIT = {("logging/__init__.py", "shutdown"), ("multiprocessing/util.py", "_exit_function"),
          ("rlcompleter.py", "lambda"), ("site.py", "write_history"), ("weakref.py", "self._exitfunc")}


def pp_atexit(c: Conversation) -> None:
    c.turn(bash(f"{GREP_R} -w 'atexit' . | grep -v '^[^:]*:[0-9]*: *#'"))


def check_atexit(seen: Seen) -> bool:
    registered = {(p, m[1]) for p, _, t in seen.find(r"atexit\.register\(") if library(p)
                  and (m := re.search(r"atexit\.register\((lambda|[\w.]+)", t))}
    imports = {p for p, _, t in seen.find(r"^\s*(import atexit|from atexit import)") if library(p)}
    return registered == ATEXIT and {p for p, _ in ATEXIT} <= imports


PROGRAM_ATEXIT = '''
hits = grep(r"\\batexit\\b", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"])
emit([h for h in hits if not h["text"].lstrip().startswith("#")])
'''

# 12. How argparse reports missing required arguments, and its exit status.


def pp_argparse(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n 'the following arguments are required\\|exit(' argparse.py", file="argparse.py"))
    # `parser.exit()` with no status is --help/--version, not the error path; a def line is its own function
    enclosing(c, [("argparse.py", n) for n, t in file_hits(result) if t.strip() != "parser.exit()" and not _mention(t)])


def check_argparse(seen: Seen) -> bool:
    def owners(pattern: str) -> set[str | None]:
        return {seen.owner(p, n) for p, n, _ in seen.find(pattern, "argparse.py")}
    return ("_parse_known_args" in owners(r"self\.error\(_\('the following arguments are required: %s'\)")
            and "error" in owners(r"self\.exit\(2, ") and "exit" in owners(r"_sys\.exit\(status\)"))


PROGRAM_ARGPARSE = '''
emit(grep(r"the following arguments are required|exit\\(", glob="argparse.py"))
'''

# 13. shutil.SameFileError: its base classes and who raises it.


def pp_samefile(c: Conversation) -> None:
    (result,) = c.turn(bash("grep -n 'SameFileError\\|^class Error' shutil.py", file="shutil.py"))
    enclosing(c, [("shutil.py", n) for n, t in file_hits(result) if "raise SameFileError(" in t])


def check_samefile(seen: Seen) -> bool:
    return (seen.has("shutil.py", r"^class SameFileError\(Error\):")
            and seen.has("shutil.py", r"^class Error\(OSError\):")
            and _owners(seen, r"raise SameFileError\(") == {("shutil.py", "copyfile")})


PROGRAM_SAMEFILE = '''
emit(grep(r"SameFileError|^class Error\\b", glob="shutil.py"))
'''

# 14. Functions memoised with functools.lru_cache, and each cache's maxsize.
LRU_CACHED = {("fnmatch.py", "_compile_pattern", "32768"), ("importlib/metadata/__init__.py", "__new__", "128"),
              ("ipaddress.py", "is_global", "128"), ("ipaddress.py", "is_private", "128"),
              ("re/__init__.py", "_compile_repl", "512"), ("tokenize.py", "_compile", "128"),
              ("tomllib/_re.py", "cached_tz", "None"), ("urllib/parse.py", "_byte_quoter_factory", "128"),
              ("urllib/parse.py", "urlsplit", "128"), ("zoneinfo/_zoneinfo.py", "_load_timedelta", "512")}
LRU_DECORATOR = re.compile(r"^\s*@(?:functools\.)?lru_cache(?:\((.*)\))?")


def pp_lru_cache(c: Conversation) -> None:
    c.turn(bash(f"{GREP_R} -A1 '@\\(functools\\.\\)\\?lru_cache' ."),
           bash("grep -n 'def lru_cache' functools.py", file="functools.py"))
    c.turn(bash("grep -n '^_MAXCACHE' re/__init__.py", file="re/__init__.py"))


def check_lru_cache(seen: Seen) -> bool:
    default = next((m[1] for _, _, t in seen.find(r"^def lru_cache\(", "functools.py")
                    if (m := re.search(r"maxsize=(\w+)", t))), "?")
    found = set()
    for path, line, text in seen.find(LRU_DECORATOR.pattern):
        # the decorated def: the next line shown (grep -A1), or the scope a program reported for the decorator line
        below = DEFINITION.match(seen.lines.get((path, line + 1), ""))
        decorated = below[2] if below else seen.owners.get((path, line))
        arguments = (LRU_DECORATOR.match(text) or [None, None])[1] or ""
        size = next((a.split("=")[-1] for a in arguments.split(",") if "typed" not in a), "") or default
        if re.fullmatch(r"[A-Z_]+", size):
            size = next((t.split("=")[1].strip() for _, _, t in seen.find(rf"^{size} = ", path)), "?")
        if library(path) and decorated:
            found.add((path, decorated, size))
    return found == LRU_CACHED


PROGRAM_LRU_CACHE_1 = '''
emit(grep(r"@(functools\\.)?lru_cache", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"])
     + grep(r"^def lru_cache", glob="functools.py"))
'''
PROGRAM_LRU_CACHE_2 = '''
emit(grep(r"^_MAXCACHE =", glob="re/__init__.py"))
'''

# 15. urllib.request.urlopen's default timeout, and who calls urlopen (none passes a timeout).
URLOPEN_CALL = r"(?:=\s*|closing\()(?:urllib\.request\.)?urlopen\("
URLOPEN_CALLERS = {("distutils/command/register.py", "classifiers", False),
                   ("distutils/command/upload.py", "upload_file", False),
                   ("urllib/request.py", "urlretrieve", False), ("urllib/robotparser.py", "read", False),
                   ("xml/dom/xmlbuilder.py", "parse", False), ("xml/sax/saxutils.py", "prepare_input_source", False)}


def pp_urlopen_timeout(c: Conversation) -> None:
    _, callers = c.turn(bash("grep -n 'def urlopen' urllib/request.py", file="urllib/request.py"),
                        bash(f"{GREP_R} 'urlopen(' ."))
    enclosing(c, [(p, n) for p, n, t in grep_hits(callers) if re.search(URLOPEN_CALL, t)],
              bash("grep -n '^_GLOBAL_DEFAULT_TIMEOUT' socket.py", file="socket.py"))


def check_urlopen_timeout(seen: Seen) -> bool:
    callers = {(p, owner, "timeout" in t) for p, n, t in seen.find(URLOPEN_CALL)
               if library(p) and (owner := seen.owner(p, n)) != "<module>"}
    return (seen.has("urllib/request.py", r"^def urlopen\(url, data=None, timeout=socket\._GLOBAL_DEFAULT_TIMEOUT,")
            and seen.has("socket.py", r"^_GLOBAL_DEFAULT_TIMEOUT = object\(\)") and callers == URLOPEN_CALLERS)


PROGRAM_URLOPEN_TIMEOUT_1 = '''
calls = [h for h in grep(r"urlopen\\(", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"])
         if h["scope"] != "<module>" and not h["text"].lstrip().startswith("def ")]
emit(grep(r"^def urlopen\\(", glob="urllib/request.py") + calls)
'''
PROGRAM_URLOPEN_TIMEOUT_2 = '''
emit(grep(r"^_GLOBAL_DEFAULT_TIMEOUT =", glob="socket.py"))
'''

# 16. http.server's default protocol_version, and what changes it (no subclass does; test() does).
PROTOCOL_VERSIONS = {("http/server.py", "BaseHTTPRequestHandler", '"HTTP/1.0"'), ("http/server.py", "test", "protocol")}


def pp_protocol_version(c: Conversation) -> None:
    (result,) = c.turn(bash(f"{GREP_R} 'protocol_version *=' ."))
    enclosing(c, [(p, n) for p, n, _ in grep_hits(result)])


def check_protocol_version(seen: Seen) -> bool:
    assigned = {(p, seen.owner(p, n), m[1]) for p, n, t in seen.find(r"protocol_version\s*=")
                if library(p) and (m := re.search(r"protocol_version\s*=\s*(.+)$", t))}
    return (assigned == PROTOCOL_VERSIONS
            and any(seen.owner(p, n) == "test" for p, n, _ in seen.find(r'\bprotocol="HTTP/1\.0"', "http/server.py")))


PROGRAM_PROTOCOL_VERSION_1 = '''
emit(grep(r"protocol_version\\s*=", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages"]))
'''
PROGRAM_PROTOCOL_VERSION_2 = '''
emit([h for h in grep(r"\\bprotocol\\b", glob="http/server.py") if h["scope"] == "test"])
'''

# 17. The classes that override socketserver.BaseServer.handle_error, and how they derive from it.
HANDLE_ERROR = r"^\s*def handle_error\(self, request, client_address\)"
HANDLE_ERROR_OVERRIDES = {("socketserver.py", "BaseServer"), ("idlelib/rpc.py", "RPCServer"),
                          ("idlelib/run.py", "MyRPCServer")}


def pp_handle_error(c: Conversation) -> None:
    found, _ = c.turn(bash(f"{GREP_R} 'def handle_error' ."),
                      bash("grep -n '^class ' socketserver.py", file="socketserver.py"))
    # socketserver's own is BaseServer's (the question's); other signatures are other protocols (asyncore, wsgiref)
    enclosing(c, [(p, n) for p, n, t in grep_hits(found) if re.search(HANDLE_ERROR, t) and p != "socketserver.py"])


def check_handle_error(seen: Seen) -> bool:
    overrides = {(p, seen.owner(p, n)) for p, n, _ in seen.find(HANDLE_ERROR) if library(p)}
    derived = _subclasses(seen, "BaseServer") | {("socketserver.py", "BaseServer")}
    return (overrides - {("socketserver.py", None)} | {("socketserver.py", "BaseServer")} == HANDLE_ERROR_OVERRIDES
            and HANDLE_ERROR_OVERRIDES.issubset(derived))


PROGRAM_HANDLE_ERROR = '''
ex = ["test", "tests", "idle_test", "site-packages"]
hits = grep(r"def handle_error\\(self, request, client_address\\)", glob="**/*.py", exclude=ex)
classes = {h["scope"].split(".")[0] for h in hits} | {"TCPServer"}
emit(hits + grep(r"^\\s*class (" + "|".join(sorted(classes)) + r")\\b", glob="**/*.py", exclude=ex))
'''

# 18. json.dumps' default separators, and the stdlib code that passes its own separators or indent.
SEPARATOR_SITE = r"^\s*(self\.)?(item|key)_separator\b.* = |separators=separators|\['separators'\]"
JSON_DUMP_CALL = r"\bjson\.dumps?\("


def pp_json_separators(c: Conversation) -> None:
    separators, callers = c.turn(bash("grep -rn --include=*.py 'separator' json/"),
                                 bash(f"{GREP_R} 'json\\.dumps\\?(' ."))
    sites = [(p, n) for p, n, t in grep_hits(separators) if re.search(SEPARATOR_SITE, t)]
    sites += [(p, n) for p, n, t in grep_hits(callers) if ">>>" not in t and not _mention(t)]
    enclosing(c, sites)


def check_json_separators(seen: Seen) -> bool:
    def owned(path: str, pattern: str, owner: str) -> bool:
        return any(seen.owner(p, n) == owner for p, n, _ in seen.find(pattern, path))
    callers = {(p, seen.owner(p, n)) for p, n, t in seen.find(JSON_DUMP_CALL)
               if library(p) and p != "json/__init__.py" and ">>>" not in t and not _mention(t)}
    return (owned("json/encoder.py", r"^    item_separator = ', '$", "JSONEncoder")
            and owned("json/encoder.py", r"^    key_separator = ': '$", "JSONEncoder")
            and owned("json/encoder.py", r"^\s*self\.item_separator = ','$", "__init__")
            and owned("json/__init__.py", r"^\s*cls = JSONEncoder$", "dumps")
            and owned("json/__init__.py", r"^\s*separators=separators,", "dumps")
            and callers == {("json/tool.py", "main")}
            and owned("json/tool.py", r"dump_args\['separators'\] = ',', ':'$", "main")
            and seen.has("json/tool.py", r"^\s*'indent': options\.indent,$"))


PROGRAM_JSON_SEPARATORS_1 = '''
defaults = [h for h in grep(r"separator|= JSONEncoder\\b", glob="json/*.py") if h["scope"] != "<module>"]
calls = grep(r"json\\.dumps?\\(", glob="**/*.py", exclude=["test", "tests", "idle_test", "site-packages", "json/__init__.py"])
emit(defaults + calls)
'''  # noqa: E501 - the program as an agent would write it: its size is what is measured
PROGRAM_JSON_SEPARATORS_2 = '''
uses = grep(r"dump_args", glob="json/tool.py")
emit([read("json/tool.py", uses[0]["line"], uses[-1]["line"])])
'''

TASKS = [
    Task("create_connection", "Where is socket.create_connection's default timeout set, and which functions pass their "
         "own timeout to it?", pp_create_connection, [PROGRAM_CREATE_CONNECTION], check_create_connection),
    Task("request_handlers", "Which classes subclass socketserver.BaseRequestHandler, directly or indirectly?",
         pp_request_handlers, [PROGRAM_REQUEST_HANDLERS], check_request_handlers),
    Task("http_ports", "Where does http.client define the default HTTP and HTTPS ports, and which code in the http "
         "package reads them (directly or through default_port)?", pp_http_ports, [PROGRAM_HTTP_PORTS],
         check_http_ports),
    Task("subprocess_run", "Which exceptions does subprocess.run raise itself, and where are they defined?",
         pp_subprocess_run, [PROGRAM_SUBPROCESS_RUN], check_subprocess_run),
    Task("copyfileobj", "Which functions in shutil.py call shutil.copyfileobj?", pp_copyfileobj, [PROGRAM_COPYFILEOBJ],
         check_copyfileobj),
    Task("basic_config", "What format string does logging.basicConfig use when no format is given, and where is it "
         "defined?", pp_basic_config, [PROGRAM_BASIC_CONFIG_1, PROGRAM_BASIC_CONFIG_2], check_basic_config),
    Task("tempdir", "Which directories does tempfile.gettempdir() try, in which order, and through which functions?",
         pp_tempdir, [PROGRAM_TEMPDIR], check_tempdir),
    Task("asyncio_executor", "How many worker threads does asyncio's default executor (run_in_executor(None, ...)) "
         "get, and where is that decided?", pp_asyncio_executor, [PROGRAM_ASYNCIO_EXECUTOR], check_asyncio_executor),
    Task("pickle_protocol", "What protocol does pickle use when none is given, where is it defined, and which code "
         "falls back to it?", pp_pickle_protocol, [PROGRAM_PICKLE_PROTOCOL], check_pickle_protocol),
    Task("server_version", "Which HTTP request handlers set server_version, and to what value?", pp_server_version,
         [PROGRAM_SERVER_VERSION], check_server_version),
    Task("atexit", "Which functions does the standard library register with atexit, and in which modules?", pp_atexit,
         [PROGRAM_ATEXIT], check_atexit),
    Task("argparse_required", "When argparse finds required arguments missing, which method reports it and with "
         "which exit status does the program end?", pp_argparse, [PROGRAM_ARGPARSE], check_argparse),
    Task("samefile_error", "What are shutil.SameFileError's base classes, and which shutil function raises it?",
         pp_samefile, [PROGRAM_SAMEFILE], check_samefile),
    Task("lru_cache", "Which functions and methods are decorated with functools.lru_cache, and with what maxsize?",
         pp_lru_cache, [PROGRAM_LRU_CACHE_1, PROGRAM_LRU_CACHE_2], check_lru_cache),
    Task("urlopen_timeout", "What is urllib.request.urlopen's default timeout and where is that value defined, and "
         "which functions in the standard library call urlopen, passing their own timeout or not?",
         pp_urlopen_timeout, [PROGRAM_URLOPEN_TIMEOUT_1, PROGRAM_URLOPEN_TIMEOUT_2], check_urlopen_timeout),
    Task("protocol_version", "Where is http.server's default protocol_version set, and which classes or functions in "
         "the standard library override or change it?", pp_protocol_version,
         [PROGRAM_PROTOCOL_VERSION_1, PROGRAM_PROTOCOL_VERSION_2], check_protocol_version),
    Task("handle_error", "Which classes override socketserver.BaseServer.handle_error, and through which base "
         "classes does each derive from BaseServer?", pp_handle_error, [PROGRAM_HANDLE_ERROR], check_handle_error),
    Task("json_separators", "Where are json.dumps' default item and key separators set (with and without indent), "
         "and which standard-library code calls json.dump or json.dumps with its own separators or indent?",
         pp_json_separators, [PROGRAM_JSON_SEPARATORS_1, PROGRAM_JSON_SEPARATORS_2], check_json_separators),
]


# --- running -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    turns: int
    tokens: int
    answered: bool


def run_ping_pong(task: Task, toolbox: Toolbox) -> Outcome:
    conversation = Conversation(task.question + CONTEXT, "", lambda call: toolbox.run(call.name, call.input).content)
    task.ping_pong(conversation)
    conversation.finish()
    return Outcome(len(conversation.requests), sum(conversation.requests), task.check(conversation.seen))


def run_programs(task: Task, root: Path) -> Outcome:
    conversation = Conversation(task.question + CONTEXT, json.dumps(tool_param(search_spec())),
                                lambda call: run_program(call.input["program"], root=root).text)
    for source in task.programs:
        conversation.turn(program(source))
    conversation.finish()
    return Outcome(len(conversation.requests), sum(conversation.requests), task.check(conversation.seen))


def measure(root: Path, tasks: list[Task]) -> dict[str, Any]:
    with Confinement("off", environ=os.environ) as confinement:  # a private home, as the agent's shell has
        toolbox = Toolbox(root, env=scrubbed_environment(os.environ), deny=[], command_timeout=30,
                          confinement=confinement)
        rows = []
        for task in tasks:
            pp, pr = run_ping_pong(task, toolbox), run_programs(task, root)
            rows.append({"name": task.name, "answered_ping_pong": pp.answered, "answered_program": pr.answered,
                         "tokens_ping_pong": pp.tokens, "tokens_program": pr.tokens,
                         "turns_ping_pong": pp.turns, "turns_program": pr.turns})
    return {"tasks": rows, "total_ping_pong": sum(r["tokens_ping_pong"] for r in rows),
            "total_program": sum(r["tokens_program"] for r in rows)}


def print_table(result: dict[str, Any], seconds: float) -> None:
    def mark(flag: bool) -> str:
        return "yes" if flag else "NO"
    print(f"{'task':<20} {'ping-pong turns':>15} {'tokens':>8} {'ok':>3}   "
          f"{'program turns':>13} {'tokens':>8} {'ok':>3}")
    for r in result["tasks"]:
        print(f"{r['name']:<20} {r['turns_ping_pong']:>15} {r['tokens_ping_pong']:>8} "
              f"{mark(r['answered_ping_pong']):>3}"
              f"   {r['turns_program']:>13} {r['tokens_program']:>8} {mark(r['answered_program']):>3}")
    pp, pr = result["total_ping_pong"], result["total_program"]
    print(f"{'total':<20} {'':>15} {pp:>8} {'':>3}   {'':>13} {pr:>8}")
    print(f"programs send {_change(pp, pr)} tokens than ping-pong ({seconds:.1f} s)")
    # The same without what every request carries whatever the strategy (system prompt, client tools).
    fixed = estimate_tokens(f"{SYSTEM_PROMPT}\n{CLIENT_TOOLS_OVERHEAD}")
    pp_own = pp - fixed * sum(r["turns_ping_pong"] for r in result["tasks"])
    pr_own = pr - fixed * sum(r["turns_program"] for r in result["tasks"])
    print(f"without the system prompt and client tools ({fixed:,} tokens a request): {pp_own:,} vs {pr_own:,}, "
          f"programs send {_change(pp_own, pr_own)}")


def _change(baseline: int, other: int) -> str:
    change = 100 * (other / baseline - 1)
    return f"{abs(change):.0f}% {'fewer' if change < 0 else 'more'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="the standard library source to search (default: this Python's)")
    parser.add_argument("--only", help="comma-separated task names (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else {task.name for task in TASKS}
    unknown = wanted - {task.name for task in TASKS}
    if unknown:
        parser.error(f"unknown task(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    result = measure(args.root.resolve(), [task for task in TASKS if task.name in wanted])
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, time.perf_counter() - started)
    complete = all(r["answered_ping_pong"] and r["answered_program"] for r in result["tasks"])
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
