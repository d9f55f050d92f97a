"""The read-only search SDK (bot/search) over real fixture repositories and the real standard library."""

from __future__ import annotations

import http.client
import inspect
import json
import os
import re
import socket
import sysconfig
import textwrap
from pathlib import Path

import pytest

from bot.search import (
    REFERENCE,
    configure,
    definitions,
    evidence,
    files,
    grep,
    rank,
    read,
    references,
    unique,
)
from tests.conftest import run_git

APP_PY = '''\
"""The app."""
import os
from helpers import slugify, Registry as Reg

LIMIT = 10
NAMES: list[str] = []
first, (second, *rest) = 1, (2, 3)


class Parser:
    """Parses."""

    mode = "strict"

    def parse(self, text):
        return slugify(text, limit=LIMIT)

    async def fetch(self):
        return os.getcwd()

    class Inner:
        def parse(self):
            return None


def parse(text):
    # parse is mentioned in a comment, and "parse" in a string
    def helper():
        local_only = 1
        return local_only
    parser = Parser()
    parser.parse(text)
    return parser.mode


if os.name == "nt":
    def platform_only():
        return 1
'''

HELPERS_PY = '''\
def slugify(text, limit=None):
    return text.lower()[:limit]


class Registry:
    pass
'''

APP_JS = '''\
// parse the input
function parseInput(text) {
  return text.trim();
}
const LIMIT = 10;
export const render = (node) => node;
class Widget {
  parseInput(value) {
    return parseInput(value);
  }
}
'''

SERVER_GO = '''\
package server

type Server struct {
\taddr string
}

func (s *Server) Start() error {
\treturn nil
}

func NewServer(addr string) *Server {
\treturn &Server{addr: addr}
}
'''

BROKEN_PY = '''\
def broken(:
    pass

def still_found(x):
    return broken
'''


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with Python, JS and Go files, ignored files, binary and non-UTF-8 files and a
    symlink pointing outside; some tracked, some untracked (untracked-but-not-ignored still count)."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "web").mkdir()
    (root / "build").mkdir()
    (root / "pkg" / "app.py").write_text(APP_PY)
    (root / "pkg" / "helpers.py").write_text(HELPERS_PY)
    (root / "pkg" / "broken.py").write_text(BROKEN_PY)
    (root / "web" / "app.js").write_text(APP_JS)
    (root / "server.go").write_text(SERVER_GO)
    (root / "README.md").write_text("# Demo\n\nCall parse() to parse text.\n")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "debug.log").write_text("parse failed\n")
    (root / "build" / "out.py").write_text("def parse():\n    pass\n")
    (root / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00parse\x00")
    (root / "latin1.txt").write_bytes("caf\xe9 parse\nna\xefve\n".encode("latin-1"))
    (root / "crlf.txt").write_bytes(b"one\r\ntwo parse\r\nthree\r\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret parse\n")
    (root / "escape.txt").symlink_to(outside)
    (root / "alias.py").symlink_to(root / "pkg" / "helpers.py")
    run_git(root, "init", "--quiet", "--initial-branch=main")
    run_git(root, "add", "pkg", "web", ".gitignore")
    run_git(root, "commit", "--quiet", "-m", "initial")
    configure(root)
    return root


@pytest.fixture(autouse=True)
def _fresh_state(tmp_path: Path) -> None:
    """No test sees another's root or caches."""
    configure(tmp_path)


# --- files ----------------------------------------------------------------------------------------

def test_files_follow_gitignore_and_skip_escaping_symlinks(repo):
    listed = files()
    assert listed == sorted(listed)
    assert listed == [".gitignore", "README.md", "alias.py", "crlf.txt", "image.bin", "latin1.txt",
                      "pkg/app.py", "pkg/broken.py", "pkg/helpers.py", "server.go", "web/app.js"]
    assert "debug.log" not in listed and "build/out.py" not in listed  # ignored
    assert "escape.txt" not in listed  # a symlink leading out of the root
    assert not any(path.startswith(".git/") for path in listed)


def test_glob_star_stays_in_one_folder_and_double_star_crosses(repo):
    assert files("*.py") == ["alias.py"]
    assert files("**/*.py") == ["alias.py", "pkg/app.py", "pkg/broken.py", "pkg/helpers.py"]
    assert files("pkg/*") == ["pkg/app.py", "pkg/broken.py", "pkg/helpers.py"]
    assert files("pkg/**") == ["pkg/app.py", "pkg/broken.py", "pkg/helpers.py"]
    assert files("./web/*.js") == ["web/app.js"]
    assert files("**/*.rs") == []
    assert files("**/*.py", limit=2) == ["alias.py", "pkg/app.py"]


def test_files_outside_git_walk_the_tree_skipping_hidden_folders_and_pycache(tmp_path):
    root = tmp_path / "plain"
    for name in ["a.py", "sub/b.py", ".hidden/c.py", "sub/__pycache__/b.cpython-311.pyc", ".env"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x = 1\n")
    (root / "linked").symlink_to(root / "sub", target_is_directory=True)
    configure(root)
    assert files() == [".env", "a.py", "sub/b.py"]  # hidden files count, hidden folders do not


def test_configure_refuses_a_missing_root(tmp_path):
    with pytest.raises(NotADirectoryError):
        configure(tmp_path / "nope")


# --- grep -----------------------------------------------------------------------------------------

def test_grep_hits_with_context_at_the_edges_of_the_file(repo):
    hits = grep(r"^def |^class ", glob="pkg/helpers.py", context=2)
    assert hits == [
        {"path": "pkg/helpers.py", "line": 1, "scope": "slugify", "text": "def slugify(text, limit=None):",
         "before": [], "after": ["    return text.lower()[:limit]", ""]},
        {"path": "pkg/helpers.py", "line": 5, "scope": "Registry", "text": "class Registry:", "before": ["", ""],
         "after": ["    pass"]},
    ]
    json.dumps(hits)  # plain data
    # without context a hit is flat (no lists), so a list of hits is shown as a table
    assert grep("^class ", glob="pkg/helpers.py") == [
        {"path": "pkg/helpers.py", "line": 5, "scope": "Registry", "text": "class Registry:"}]


def test_grep_skips_binary_and_ignored_files_and_decodes_bad_utf8(repo):
    hits = grep(r"\bparse\b", glob="*")
    assert [(hit["path"], hit["line"]) for hit in hits] == [("README.md", 3), ("crlf.txt", 2), ("latin1.txt", 1)]
    assert hits[1]["text"] == "two parse"  # CRLF line ends are not part of the text
    assert hits[2]["text"] == "caf\ufffd parse"


def test_grep_ignore_case_limit_and_line_anchors(repo):
    assert grep("PARSE", glob="README.md") == []
    assert len(grep("PARSE", glob="README.md", ignore_case=True)) == 1
    assert len(grep("parse", limit=3)) == 3
    assert grep("parse", limit=0) == []
    # `\Z` and lookarounds see line edges: such patterns are searched line by line in every file
    assert [hit["line"] for hit in grep(r"\(\):\Z", glob="pkg/app.py")] == [28, 37]
    assert [hit["line"] for hit in grep(r"(?<!\w)three$", glob="crlf.txt")] == [3]


TRICKY = "alpha beta\n\nbeta\n  gamma alpha\r\nend alpha\nx = 1  # alpha\nlast"


@pytest.mark.parametrize("pattern", [
    "", "alpha", r"\balpha\b", r"a\s+b", r"alpha\s*$", r"^\s*gamma", r"^$", r"\n", r"beta\n", "[^a]+",
    r"(?m)^end", r"(?s)alpha.*end", r"\Aalpha", r"alpha\Z", r"(?<=end )alpha", r"(?<!\w)beta(?!\w)",
    r"(alpha|end)\b", r"x\s=\s\d", r"(?i)ALPHA", r"^(?:x|last)$", r"\w*",
])
def test_grep_finds_exactly_the_lines_a_line_by_line_search_finds(tmp_path, pattern):
    """grep searches whole texts for speed; the lines it reports are those of a plain per-line loop."""
    (tmp_path / "t.txt").write_bytes(TRICKY.encode())
    configure(tmp_path)
    regex = re.compile(pattern)
    expected = [n for n, line in enumerate(TRICKY.replace("\r\n", "\n").split("\n"), 1) if regex.search(line)]
    assert [hit["line"] for hit in grep(pattern, limit=100)] == expected


def test_grep_bad_regex_is_a_value_error(repo):
    with pytest.raises(ValueError, match="bad regular expression '\\(unclosed'"):
        grep("(unclosed")


def test_long_lines_are_cut(repo):
    (repo / "min.js").write_text("var a=" + "x" * 5000 + ";\n")
    [hit] = grep("var a=", glob="min.js")
    assert len(hit["text"]) < 2100 and hit["text"].endswith("…[cut]")


# --- scope ----------------------------------------------------------------------------------------

def _scopes(hits: list[dict]) -> list[tuple]:
    return [(hit["line"], hit["scope"]) for hit in hits]


def test_grep_scope_of_methods_nested_functions_class_bodies_and_module_level(repo):
    assert _scopes(grep("return", glob="pkg/app.py")) == [
        (16, "Parser.parse"), (19, "Parser.fetch"), (23, "Parser.Inner.parse"), (30, "parse.helper"),
        (33, "parse"), (38, "platform_only")]  # a def under `if` is still module-level
    assert _scopes(grep("LIMIT", glob="pkg/app.py")) == [(5, "<module>"), (16, "Parser.parse")]
    assert _scopes(grep(r"^import|^class Parser|Parses|strict", glob="pkg/app.py")) == [
        (2, "<module>"), (10, "Parser"), (11, "Parser"), (13, "Parser")]  # the class line and its body
    assert _scopes(grep("local_only|# parse", glob="pkg/app.py")) == [(27, "parse"), (29, "parse.helper"),
                                                                       (30, "parse.helper")]


def test_grep_scope_of_decorated_definitions(tmp_path):
    (tmp_path / "deco.py").write_text(
        "import functools\n\n\n@functools.lru_cache(\n    maxsize=32)\ndef cached(x):\n    return x\n\n\n"
        "class Box:\n    @property\n    def size(self):\n        return 1\n\n    limit = 3\n")
    configure(tmp_path)
    assert _scopes(grep(r"functools|maxsize|def |return|@property|limit")) == [
        (1, "<module>"), (4, "cached"), (5, "cached"), (6, "cached"), (7, "cached"),  # decorators belong to it
        (11, "Box.size"), (12, "Box.size"), (13, "Box.size"), (15, "Box")]


def test_scope_outside_python_is_the_nearest_definition_above(repo):
    assert _scopes(grep(r"parse|return", glob="web/app.js")) == [
        (1, None), (2, "parseInput"), (3, "parseInput"), (8, "parseInput"), (9, "parseInput")]
    assert _scopes(grep("nil|addr:", glob="server.go")) == [(8, "Start"), (12, "NewServer")]
    assert _scopes(grep("parse", glob="README.md")) == [(3, None)]  # not code: no scope
    assert _scopes(grep("pass|return", glob="pkg/broken.py")) == [(2, "broken"), (5, "still_found")]  # no tree
    (repo / "loops.js").write_text("function outer(a) {\n  if (a) {\n    return 1;\n  }\n"
                                   "  for (const x of a) {\n    go(x);\n  }\n}\n")
    configure(repo)  # the listing is cached per program
    assert _scopes(grep(r"return|go\(", glob="loops.js")) == [(3, "outer"), (6, "outer")]  # blocks are not scopes


def test_references_carry_the_scope(repo):
    assert [(item["line"], item["kind"], item["scope"]) for item in references("slugify", glob="pkg/app.py")] == [
        (3, "import", "<module>"), (16, "call", "Parser.parse")]
    assert [(item["line"], item["scope"]) for item in references("Parser", glob="pkg/app.py")] == [(31, "parse")]
    assert [(item["path"], item["scope"]) for item in references("parseInput")] == [("web/app.js", "parseInput")]
    assert [item["scope"] for item in references("parse", glob="*.md")] == [None]
    assert list(references("slugify", glob="pkg/app.py")[0]) == ["path", "line", "kind", "scope", "text"]


# --- exclude --------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ["src/a.py", "src/test/b.py", "test/c.py", "tests/d.py", "lib/site-packages/e.py",
                 "src/gen/f_pb2.py", "g_pb2.py", "docs/test.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("def target():\n    return target\n")
    configure(tmp_path)
    return tmp_path


def test_exclude_a_bare_name_matches_that_folder_or_file_name_at_any_depth(tree):
    everything = files()
    assert len(everything) == 8
    assert files(exclude="test") == [p for p in everything if p not in ("src/test/b.py", "test/c.py")]
    assert files(exclude="./test/") == files(exclude="test")  # "./" and a trailing "/" are dropped
    assert "tests/d.py" in files(exclude="test") and "tests/d.py" not in files(exclude="test*")
    assert files(exclude="*_pb2.py") == [p for p in everything if not p.endswith("_pb2.py")]
    assert files(exclude="test.md") == [p for p in everything if p != "docs/test.md"]


def test_exclude_globs_with_a_slash_match_the_whole_path(tree):
    assert files("src/**", exclude="src/gen/**") == ["src/a.py", "src/test/b.py"]
    assert files(exclude="**/test/*.py") == [p for p in files() if p not in ("src/test/b.py", "test/c.py")]
    assert files(exclude="*/test/*") == [p for p in files() if p != "src/test/b.py"]  # `*` stays in one folder


def test_exclude_a_list_in_every_search(tree):
    library = ["docs/test.md", "g_pb2.py", "src/a.py", "src/gen/f_pb2.py"]
    skip = ["test", "tests", "site-packages"]
    assert files(exclude=skip) == library
    assert files(exclude=("test", "tests", "site-packages")) == library
    assert sorted({hit["path"] for hit in grep("target", exclude=skip)}) == library
    assert ([item["path"] for item in definitions("target", exclude=skip)]
            == ["g_pb2.py", "src/a.py", "src/gen/f_pb2.py"])
    assert [item["path"] for item in references("target", glob="**/*.py", exclude=[*skip, "gen"])] == [
        "g_pb2.py", "src/a.py"]


@pytest.mark.parametrize("exclude", [3, [""], ["./"], ["test", None], {"test": 1}])
def test_exclude_must_be_globs(tree, exclude):
    with pytest.raises((TypeError, ValueError), match="exclude"):
        files(exclude=exclude)


# --- read -----------------------------------------------------------------------------------------

def test_read_ranges(repo):
    assert read("pkg/helpers.py") == {"path": "pkg/helpers.py", "start": 1, "end": 6, "total_lines": 6,
                                      "text": HELPERS_PY.rstrip("\n")}
    part = read("pkg/helpers.py", 5, 99)
    assert (part["start"], part["end"], part["text"]) == (5, 6, "class Registry:\n    pass")
    assert "truncated" not in part
    assert read("./crlf.txt", 2, 2)["text"] == "two parse"
    assert read("debug.log")["text"] == "parse failed"  # ignored files can still be read by name
    assert read("latin1.txt", 2)["text"] == "na\ufffdve"


def test_read_caps_at_400_lines(repo):
    (repo / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    whole = read("long.txt")
    assert (whole["start"], whole["end"], whole["total_lines"], whole["truncated"]) == (1, 400, 1000, True)
    assert whole["text"].splitlines()[-1] == "line 400"
    later = read("long.txt", 900)
    assert (later["end"], later["text"].splitlines()[0]) == (1000, "line 900")
    assert "truncated" not in later
    assert read("long.txt", 10, 800)["end"] == 409


@pytest.mark.parametrize("path, message", [
    ("/etc/passwd", "absolute paths are refused"),
    ("../outside.txt", "'..'"),
    ("pkg/../../outside.txt", "'..'"),
    ("escape.txt", "outside the repository"),
    (".git/config", ".git"),
    ("", "relative to the repository root"),
])
def test_read_refuses_paths_leaving_the_root(repo, path, message):
    with pytest.raises(ValueError, match=message):
        read(path)


def test_read_errors(repo):
    with pytest.raises(FileNotFoundError, match=r"pkg/missing\.py"):
        read("pkg/missing.py")
    with pytest.raises(IsADirectoryError):
        read("pkg")
    with pytest.raises(ValueError, match="binary"):
        read("image.bin")
    with pytest.raises(ValueError, match="past the end"):
        read("pkg/helpers.py", 7)
    with pytest.raises(ValueError, match="bad line range"):
        read("pkg/helpers.py", 0)
    with pytest.raises(ValueError, match="bad line range"):
        read("pkg/helpers.py", 4, 3)
    os.mkfifo(repo / "pipe")
    with pytest.raises(ValueError, match="not a regular file"):
        read("pipe")  # opening it would block
    assert "pipe" not in files()
    (repo / "empty.txt").write_text("")
    assert read("empty.txt") == {"path": "empty.txt", "start": 1, "end": 0, "total_lines": 0, "text": ""}


# --- definitions ----------------------------------------------------------------------------------

def _where(items: list[dict]) -> list[tuple]:
    return [(item["path"], item["line"], item["kind"], item.get("qualname")) for item in items]


def test_python_definitions_of_functions_methods_and_classes(repo):
    found = definitions("parse", glob="pkg/**")
    assert _where(found) == [
        ("pkg/app.py", 15, "method", "Parser.parse"),
        ("pkg/app.py", 22, "method", "Parser.Inner.parse"),
        ("pkg/app.py", 26, "function", "parse"),
    ]
    method = found[0]
    assert (method["end_line"], method["name"], method["signature"]) == (16, "parse", "def parse(self, text):")
    assert _where(definitions("Parser.parse")) == [("pkg/app.py", 15, "method", "Parser.parse")]
    assert _where(definitions("Inner.parse")) == [("pkg/app.py", 22, "method", "Parser.Inner.parse")]
    assert _where(definitions("pkg.app.parse")) == [("pkg/app.py", 26, "function", "parse")]
    assert _where(definitions("arser.parse")) == []  # dotted names match whole parts only
    assert _where(definitions("fetch")) == [("pkg/app.py", 18, "method", "Parser.fetch")]
    assert _where(definitions("Parser")) == [("pkg/app.py", 10, "class", "Parser")]
    assert _where(definitions("helper")) == [("pkg/app.py", 28, "function", "parse.helper")]
    assert _where(definitions("platform_only")) == [("pkg/app.py", 37, "function", "platform_only")]


def test_python_definitions_of_variables(repo):
    assert _where(definitions("LIMIT", glob="**/*.py")) == [("pkg/app.py", 5, "variable", "LIMIT")]
    assert definitions("NAMES")[0]["signature"] == "NAMES: list[str] = []"
    assert _where(definitions("mode")) == [("pkg/app.py", 13, "variable", "Parser.mode")]
    assert _where(definitions("rest")) == [("pkg/app.py", 7, "variable", "rest")]
    assert definitions("local_only") == []  # a local variable is not a definition
    assert definitions("getcwd") == []  # a use is not a definition


def test_definitions_follow_symlinks_inside_and_limit(repo):
    assert [item["path"] for item in definitions("slugify")] == ["alias.py", "pkg/helpers.py"]
    assert len(definitions("parse", limit=2)) == 2


def test_heuristic_definitions_in_other_languages(repo):
    assert _where(definitions("parseInput")) == [
        ("web/app.js", 2, "heuristic", "parseInput"),
        ("web/app.js", 8, "heuristic", "parseInput"),  # the class method; the call on line 9 is not
    ]
    assert _where(definitions("render")) == [("web/app.js", 6, "heuristic", "render")]
    assert _where(definitions("LIMIT", glob="web/*")) == [("web/app.js", 5, "heuristic", "LIMIT")]
    assert _where(definitions("Server")) == [("server.go", 3, "heuristic", "Server")]
    assert _where(definitions("Start")) == [("server.go", 7, "heuristic", "Start")]
    assert definitions("NewServer")[0]["signature"] == "func NewServer(addr string) *Server {"
    assert definitions("parse", glob="*.md") == []  # prose is not searched for definitions


@pytest.mark.parametrize("source, name, lines", [
    ("int add(int a, int b) {\n  return add(a, b);\n}\n", "add", [1]),
    ("static struct node *make_node(void);\nstruct node *n = make_node();\n", "make_node", [1]),
    ("struct node {\n  int v;\n};\nstruct node *head;\n", "node", [1]),
    ("#define MAX 3\nint x = MAX;\n", "MAX", [1]),
    ("typedef unsigned long size;\nsize n;\n", "size", [1]),
    ("void Widget::draw() {\n  draw();\n}\n", "draw", [1]),
])
def test_heuristic_definitions_in_c(tmp_path, source, name, lines):
    (tmp_path / "code.c").write_text(source)
    configure(tmp_path)
    assert [item["line"] for item in definitions(name)] == lines


@pytest.mark.parametrize("filename, source, name, line", [
    ("lib.rs", "pub fn run() -> u8 { 0 }\nfn main() { run(); }\n", "run", 1),
    ("lib.rs", "pub struct Point<T> { x: T }\n", "Point", 1),
    ("lib.rs", "static mut COUNT: u32 = 0;\n", "COUNT", 1),
    ("app.rb", "class Greeter\n  def self.hello\n  end\nend\n", "hello", 2),
    ("run.sh", "cleanup() {\n  rm -f x\n}\ncleanup\n", "cleanup", 1),
    ("Main.java", "public class Main {\n  public static void main(String[] args) {}\n}\n", "main", 2),
    ("t.ts", "export interface Shape {}\nexport type Id = string;\n", "Id", 2),
])
def test_heuristic_definitions_in_more_languages(tmp_path, filename, source, name, line):
    (tmp_path / filename).write_text(source)
    configure(tmp_path)
    assert [item["line"] for item in definitions(name)] == [line]


def test_python_that_does_not_parse_falls_back_to_the_heuristic(repo):
    found = definitions("still_found", glob="pkg/broken.py")
    assert _where(found) == [("pkg/broken.py", 4, "heuristic", "still_found")]
    assert [(item["line"], item["kind"]) for item in references("broken", glob="pkg/broken.py")] == [(5, "text")]


def test_empty_name_is_refused(repo):
    with pytest.raises(ValueError):
        definitions("  ")
    with pytest.raises(ValueError):
        references("Parser.")


# --- references -----------------------------------------------------------------------------------

def test_python_references_exclude_definitions_strings_and_comments(repo):
    found = references("parse", glob="pkg/*.py")
    assert [(item["line"], item["kind"], item["text"]) for item in found] == [
        (32, "call", "parser.parse(text)")]


def test_python_references_kinds(repo):
    assert [(item["path"], item["line"], item["kind"]) for item in references("slugify", glob="pkg/*")] == [
        ("pkg/app.py", 3, "import"), ("pkg/app.py", 16, "call")]
    assert [(item["line"], item["kind"]) for item in references("limit", glob="pkg/app.py")] == [(16, "keyword")]
    assert [(item["line"], item["kind"]) for item in references("LIMIT", glob="pkg/app.py")] == [(16, "name")]
    assert [(item["line"], item["kind"]) for item in references("mode", glob="pkg/app.py")] == [(33, "attribute")]
    assert [(item["line"], item["kind"]) for item in references("os", glob="pkg/app.py")] == [
        (2, "import"), (19, "name"), (36, "name")]
    assert [(item["line"], item["kind"]) for item in references("Registry", glob="pkg/app.py")] == [(3, "import")]
    assert [(item["line"], item["kind"]) for item in references("Reg", glob="pkg/app.py")] == [(3, "import")]
    assert [item["line"] for item in references("Parser.parse", glob="pkg/app.py")] == [32]


def test_text_references_in_other_files_are_whole_words_without_definitions(repo):
    found = references("parseInput")
    assert [(item["path"], item["line"], item["kind"]) for item in found] == [("web/app.js", 9, "text")]
    assert [(item["path"], item["line"]) for item in references("parse", glob="*.md")] == [("README.md", 3)]
    assert references("pars", glob="*.md") == []
    assert len(references("parse", limit=1)) == 1


# --- evidence, unique, rank -----------------------------------------------------------------------

def test_evidence_is_a_copy(tmp_path):
    assert evidence() == []
    given = [{"test": "tests/test_a.py::test_x", "path": "a.py", "line": 3, "message": "assert 1 == 2"},
             {"source": "ci log", "text": "boom"}]
    configure(tmp_path, evidence=given)
    got = evidence()
    assert got == given
    got[0]["line"] = 99
    given[1]["text"] = "changed"
    assert evidence()[0]["line"] == 3 and evidence()[1]["text"] == "boom"


def test_unique_by_path_and_line_by_key_and_by_function():
    hits = [{"path": "a.py", "line": 1, "kind": "call"}, {"path": "a.py", "line": 1, "kind": "name"},
            {"path": "b.py", "line": 1, "kind": "call"}, {"path": "a.py", "line": 2, "kind": "call"}]
    assert unique(hits) == [hits[0], hits[2], hits[3]]
    assert unique(hits, "path") == [hits[0], hits[2]]
    assert unique(hits, "kind") == [hits[0], hits[1]]
    assert unique(hits, lambda hit: hit["line"] % 2) == [hits[0], hits[3]]
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert unique([{"x": [1]}, {"x": [1]}, {"x": [2]}]) == [{"x": [1]}, {"x": [2]}]  # unhashable items
    assert unique([{"path": "a", "before": ["x"]}, {"path": "a", "before": ["x"]}]) == [{"path": "a", "before": ["x"]}]


def test_rank_prefers_a_glob_then_query_words_then_path_and_line():
    items = [
        {"path": "tests/test_a.py", "line": 5, "text": "timeout timeout"},
        {"path": "src/b.py", "line": 9, "text": "nothing here"},
        {"path": "src/a.py", "line": 7, "text": "connect with a Timeout"},
        {"path": "src/a.py", "line": 3, "signature": "def connect(timeout):"},
        {"path": "src/a.py", "line": 3, "text": "same place, no words"},
    ]
    ranked = rank(items, query="connect timeout", prefer="src/**")
    assert [(item["path"], item["line"]) for item in ranked] == [
        ("src/a.py", 3), ("src/a.py", 7), ("src/a.py", 3), ("src/b.py", 9), ("tests/test_a.py", 5)]
    assert ranked[0] is items[3] and ranked[2] is items[4]
    assert [item["line"] for item in rank(items)] == [3, 3, 7, 9, 5]  # path and line, stable
    assert rank(items, query="timeout")[0] is items[0]
    assert items[0]["line"] == 5  # the input is not reordered


# --- the reference and the real standard library --------------------------------------------------

def test_reference_documents_every_function_and_emit_and_stays_short():
    for name in ["files(", "grep(", "read(", "definitions(", "references(", "evidence(", "unique(", "rank(", "emit("]:
        assert name in REFERENCE
    for word in ["scope", "exclude", "table", "once", "discarded"]:
        assert word in REFERENCE
    assert len(REFERENCE) < 1700 and len(REFERENCE.split()) <= 220  # it is sent on every model turn
    example = REFERENCE.split("Example:\n", 1)[1].strip().splitlines()
    assert len(example) <= 4


def test_the_reference_example_runs(tmp_path):
    (tmp_path / "net.py").write_text("conn.connect()\n\n\nclass Client:\n    def open(self):\n        self.connect()\n")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text("def t():\n    c.connect()\n")
    configure(tmp_path)
    emitted = []
    program = textwrap.dedent(REFERENCE.split("Example:\n", 1)[1])
    exec(program, {**{name: globals()[name] for name in ["grep", "files", "read"]}, "emit": emitted.append})
    assert emitted == [[{"path": "net.py", "line": 6, "scope": "Client.open", "text": "        self.connect()"}]]


def test_the_standard_library():
    """Not a git repository (a Python under a git-managed ~/.pyenv is walked all the same).

    The globs stay out of site-packages, whose contents vary from machine to machine.
    """
    configure(sysconfig.get_paths()["stdlib"])
    source, first = inspect.getsourcelines(socket.create_connection)
    [found] = definitions("socket.create_connection", glob="*.py")
    assert found == {"path": "socket.py", "line": first, "end_line": first + len(source) - 1, "kind": "function",
                     "name": "create_connection", "qualname": "create_connection",
                     "signature": source[0].strip()}
    assert {(item["path"], item["qualname"]) for item in definitions("create_connection", glob="asyncio/*.py")} == {
        ("asyncio/base_events.py", "BaseEventLoop.create_connection"),
        ("asyncio/events.py", "AbstractEventLoop.create_connection")}

    used = references("_GLOBAL_DEFAULT_TIMEOUT", glob="*.py", limit=1000)
    assert {("socket.py", "name"), ("ftplib.py", "import"), ("smtplib.py", "attribute")} <= {
        (item["path"], item["kind"]) for item in used}
    socket_lines = Path(socket.__file__).read_text().splitlines()
    defined = next(n for n, line in enumerate(socket_lines, 1) if line.startswith("_GLOBAL_DEFAULT_TIMEOUT ="))
    in_socket = [item["line"] for item in used if item["path"] == "socket.py"]
    assert in_socket and defined not in in_socket
    assert all("_GLOBAL_DEFAULT_TIMEOUT" in socket_lines[line - 1] for line in in_socket)
    client_lines = Path(http.client.__file__).read_text().splitlines()
    mentioned = [n for n, line in enumerate(client_lines, 1) if "socket._GLOBAL_DEFAULT_TIMEOUT" in line]
    assert mentioned and [(item["line"], item["kind"]) for item in references(
        "_GLOBAL_DEFAULT_TIMEOUT", glob="http/client.py")] == [(n, "attribute") for n in mentioned]

    hits = grep(r"^def create_connection\(", glob="*.py")
    assert [(hit["path"], hit["line"], hit["scope"]) for hit in hits] == [("socket.py", first, "create_connection")]
    connects = grep(r"def connect\(self\)|= self\._create_connection\(", glob="http/*.py", exclude="test")
    assert {(hit["text"].strip(), hit["scope"]) for hit in connects} == {  # HTTPSConnection is under try/else
        ("def connect(self):", "HTTPConnection.connect"), ("def connect(self):", "HTTPSConnection.connect"),
        ("self.sock = self._create_connection(", "HTTPConnection.connect")}
