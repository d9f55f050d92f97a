"""The `search_code` tool: programs run contained, errors come back usable, and every search is
on the record (trajectory and the iteration's check run)."""

from __future__ import annotations

import json
import os
import socket
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from bot.agent.tools import Toolbox, search_spec
from bot.sandbox import INSTALL_HINT, bubblewrap, sandbox
from bot.search import (
    TOOL_NAME,
    SearchCode,
    SearchLimits,
    run_program,
    search_sandbox_paths,
)
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, tool_use
from tests.test_action_e2e import DONE, REPO, Runner, checks

SECRET = "sk-ant-api03-search-sandbox-secret-0123456789abcdef"
FAST = SearchLimits(cpu_seconds=3, wall_seconds=6, memory_mb=512)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "calc.py").write_text("TIMEOUT = 30\n\n\ndef add(a, b):\n    return a - b\n")
    (root / "pkg" / "use.py").write_text("from pkg.calc import add\n\nprint(add(2, 3))\n")
    return root


def _modes(repo_fixture: str = "repo"):
    """Each containment case runs without and, when installed, with bubblewrap."""
    confined = pytest.param(True, id="bubblewrap", marks=pytest.mark.skipif(
        bubblewrap() is None, reason=f"bubblewrap is not available here: {INSTALL_HINT}"))
    return pytest.mark.parametrize("confined", [pytest.param(False, id="no-sandbox"), confined])


def _run(repo: Path, program: str, confined: bool, **kw):
    box = (sandbox("required", environ=os.environ, network=False, readable=search_sandbox_paths(repo, []))
           if confined else None)
    return run_program(program, root=repo, limits=kw.pop("limits", FAST), sandbox=box, **kw)


def test_a_program_gets_the_sdk_and_only_what_it_emits_comes_back(repo):
    program = ("hits = grep(r'return a - b')\n"
               "d = definitions('add')[0]\n"
               "print('debugging noise')\n"
               "emit({'where': [(h['path'], h['line']) for h in hits], 'def': d['signature'], 'ev': evidence()})")
    result = run_program(program, root=repo, evidence=[{"test": "test_add", "message": "assert -1 == 5"}])
    assert not result.is_error
    value = json.loads(result.text.split("\n[the program printed")[0])
    assert value == {"where": [["pkg/calc.py", 5]], "def": "def add(a, b):",
                     "ev": [{"test": "test_add", "message": "assert -1 == 5"}]}
    assert result.text.endswith("debugging noise\n")


def test_a_string_is_emitted_as_it_is(repo):
    result = run_program("emit(read('pkg/calc.py', 4, 5)['text'])", root=repo)
    assert (result.text, result.is_error) == ("def add(a, b):\n    return a - b", False)


@_modes()
def test_writing_a_file_is_refused(repo, confined):
    result = _run(repo, "open('pkg/calc.py', 'w').write('x = 1\\n')\nemit('written')", confined)
    assert result.is_error and "read-only" in result.text and "line 1" in result.text
    assert "def add" in (repo / "pkg" / "calc.py").read_text()
    result = _run(repo, "import os\nos.remove('pkg/use.py')\nemit(1)", confined)
    assert result.is_error and "cannot delete files" in result.text and (repo / "pkg" / "use.py").exists()
    # Calls that make files without an audit event are not there at all.
    result = _run(repo, "import os\nos.mkfifo('pipe')\nemit(1)", confined)
    assert result.is_error and "has no attribute 'mkfifo'" in result.text and not (repo / "pipe").exists()


@_modes()
def test_the_environment_holds_no_secret(repo, confined, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    result = _run(repo, "import os\nemit(dict(os.environ))", confined)
    assert not result.is_error and SECRET not in result.text
    assert set(json.loads(result.text)) <= {"PATH", "LC_ALL", "PWD"}
    result = _run(repo, "emit(open('/proc/self/environ').read())", confined)
    assert result.is_error and "can only read the repository" in result.text


@_modes()
def test_reading_outside_the_repository_is_refused(repo, confined, tmp_path):
    (tmp_path / "outside.txt").write_text("private\n")
    result = _run(repo, f"emit(open({str(tmp_path / 'outside.txt')!r}).read())", confined)
    assert result.is_error and "private" not in result.text and "outside it" in result.text
    result = _run(repo, "emit(read('../outside.txt'))", confined)
    assert result.is_error and "private" not in result.text
    result = _run(repo, f"import os\nemit(os.listdir({str(tmp_path)!r}))", confined)
    assert result.is_error and "outside.txt" not in result.text and "can only list the repository" in result.text


@_modes()
def test_sockets_are_refused(repo, confined):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nemit('connected')"
        result = _run(repo, program, confined)
    assert result.is_error and "connected" not in result.text.split("\n")[0]
    assert "there is no network" in result.text


@_modes()
def test_starting_processes_and_native_code_are_refused(repo, confined):
    result = _run(repo, "import subprocess\nemit(subprocess.run(['id'], capture_output=True).stdout)", confined)
    assert result.is_error and "cannot start processes" in result.text
    result = _run(repo, "import ctypes\nemit(ctypes.CDLL(None).getpid())", confined)
    assert result.is_error and "cannot load native code" in result.text
    # Not even by the back door: the module behind subprocess is not loaded, and cannot be.
    loaded = _run(repo, "import sys\n"
                        "emit([m for m in ('subprocess', '_posixsubprocess', 'ctypes') if m in sys.modules])",
                  confined)
    assert (loaded.is_error, loaded.text) == (False, "[]")
    result = _run(repo, "import os\nemit(os.pidfd_open(os.getppid()))", confined)
    assert result.is_error and "has no attribute" in result.text
    result = _run(repo, "import signal\nsignal.pidfd_send_signal(3, signal.SIGSTOP)", confined)
    assert result.is_error and "(import signal)" in result.text
    for back_door in ("import _posixsubprocess",
                      "import importlib.util as u\nu.module_from_spec(u.find_spec('_posixsubprocess'))",
                      "import multiprocessing"):
        result = _run(repo, f"{back_door}\nemit('got in')", confined)
        assert result.is_error and "cannot start processes" in result.text and "got in" not in result.text


NATIVE = Path(sysconfig.get_path("platstdlib", vars={"platbase": sys.base_exec_prefix})) / "lib-dynload"


@_modes()
def test_imports_are_an_allow_list_by_full_name_and_origin(repo, confined):
    """The SDK and pure standard-library modules import; nothing else does, by any door."""
    ok = _run(repo, "import statistics, difflib, csv, tomllib, json\nemit(statistics.median([3, 1, 2]))", confined)
    assert (ok.is_error, ok.text) == (False, "2")
    for name in ("urllib.request", "http.client", "sqlite3", "pickle", "importlib.resources"):
        result = _run(repo, f"import {name}\nemit('got in')", confined)
        assert result.is_error and f"(import {name})" in result.text and "got in" not in result.text
    # A native module loaded from lib-dynload under another name, through a finder of the program's own.
    native = next(NATIVE.glob("_posixsubprocess.*"), None) or next(NATIVE.glob("_socket.*"))
    renamed = f"zz.{native.name.split('.')[0]}"
    program = (
        "import importlib.machinery as m, importlib.util as u, sys\n"
        "class Finder:\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name == {renamed!r}:\n"
        f"            return u.spec_from_file_location(name, {str(native)!r})\n"
        "sys.meta_path.append(Finder())\n"
        f"spec = u.spec_from_file_location({renamed!r}, {str(native)!r})\n"
        "emit(str(u.module_from_spec(spec)))")
    result = _run(repo, program, confined)
    assert result.is_error and f"(import {renamed})" in result.text and "module" not in result.text.split("\n")[0]
    # The same file straight through `_imp` (reachable from any function's globals), under a name that passes
    # for the standard library's.
    result = _run(repo, "import importlib.machinery as m\n"
                        "imp = m.BuiltinImporter.create_module.__globals__['_imp']\n"
                        f"emit(str(imp.create_dynamic(m.ModuleSpec('encodings._x', None, origin={str(native)!r}))))",
                  confined)
    assert result.is_error and "must be the standard library's own native module" in result.text
    # A module compiled into the interpreter, created directly (no import event of its own).
    builtin = next(name for name in ("pwd", "_posixsubprocess", "_socket") if name in sys.builtin_module_names)
    result = _run(repo, "import importlib.machinery as m, importlib.util as u\n"
                        f"emit(str(u.module_from_spec(m.ModuleSpec({builtin!r}, m.BuiltinImporter))))", confined)
    assert result.is_error and f"(import {builtin})" in result.text
    # An allowed name from somewhere else than the standard library.
    (repo / "graphlib.py").write_text("LOADED_FROM_THE_REPOSITORY = True\n")
    result = _run(repo, "import sys\nsys.path.insert(0, '.')\nimport graphlib\nemit('imported')", confined)
    assert result.is_error and "must come from the standard library" in result.text


@_modes()
def test_an_endless_loop_is_stopped(repo, confined):
    started = time.monotonic()
    result = _run(repo, "while True:\n    pass", confined)
    assert result.is_error and ("CPU time" in result.text or "wall-clock" in result.text)
    assert time.monotonic() - started < FAST.wall_seconds + 10


def test_a_sleeping_program_is_stopped_by_the_wall_clock(repo):
    result = run_program("import time\ntime.sleep(60)", root=repo, limits=SearchLimits(wall_seconds=1.5))
    assert result.is_error and "1.5 s (wall-clock limit)" in result.text and result.duration_s < 5


@_modes()
def test_unbounded_allocation_is_stopped(repo, confined):
    result = _run(repo, "kept = []\nwhile True:\n    kept.append(' ' * 50_000_000)", confined)
    assert result.is_error and ("memory" in result.text.lower())


@_modes()
def test_printing_gigabytes_is_stopped_and_bounded(repo, confined):
    result = _run(repo, "while True:\n    print('x' * 1_000_000)", confined)
    assert result.is_error and "printed more than" in result.text and len(result.text) < 10_000
    result = _run(repo, "import os\nwhile True:\n    os.write(1, b'x' * 1_000_000)", confined)
    assert result.is_error and "bytes of output" in result.text and len(result.text) < 1_000


def test_flat_records_come_back_as_a_table_and_anything_else_as_json(repo):
    table = run_program("emit([{'path': 'a.py', 'line': 1, 'text': 'x\\ty'}, "
                        "{'path': 'b.py', 'line': 2, 'text': None}])", root=repo)
    assert table.text == "path\tline\ttext\na.py\t1\tx\\ty\nb.py\t2\t"
    nested = run_program("emit([{'path': 'a.py', 'after': ['x']}])", root=repo)
    assert json.loads(nested.text) == [{"path": "a.py", "after": ["x"]}]
    ragged = run_program("emit([{'a': 1}, {'b': 2}])", root=repo)
    assert json.loads(ragged.text) == [{"a": 1}, {"b": 2}]


def test_a_huge_emit_is_cut_with_a_note(repo):
    result = run_program("emit('y' * 5_000_000)", root=repo)
    assert not result.is_error and len(result.text) < 11_000 and "only the first 10,000 are shown" in result.text


def test_errors_show_the_program_lines_not_the_sdk(repo):
    program = "def find():\n    return grep('(unclosed')\n\nemit(find())"
    result = run_program(program, root=repo)
    assert result.is_error
    assert ("line 4, in the program: emit(find())" in result.text
            and "line 2, in find: return grep('(unclosed')" in result.text)
    assert "bad regular expression" in result.text and "_sdk.py" not in result.text and "/bot/" not in result.text
    syntax = run_program("emit(1", root=repo)
    assert syntax.is_error and "SyntaxError" in syntax.text and "<search_code>" in syntax.text


def test_forgetting_or_repeating_emit_is_explained(repo):
    missing = run_program("x = files()", root=repo)
    assert missing.is_error and "without calling emit" in missing.text
    twice = run_program("emit(1)\nemit(2)", root=repo)
    assert twice.is_error and "already called" in twice.text and twice.text.endswith("1")


def test_the_toolbox_offers_search_code_with_the_sdk_reference(repo):
    tools = Toolbox(repo, env={}, deny=[], command_timeout=5, search=SearchCode(repo, []))
    spec = next(s for s in tools.specs if s.name == TOOL_NAME)
    assert spec == search_spec() and "emit(" in spec.description and "grep(" in spec.description
    assert spec.input_schema["required"] == ["program"]
    found = tools.run(TOOL_NAME, {"program": "emit(files('**/*.py'))"})
    assert (found.is_error, json.loads(found.content)) == (False, ["pkg/calc.py", "pkg/use.py"])
    assert tools.run(TOOL_NAME, {}).is_error
    assert TOOL_NAME not in [s.name for s in Toolbox(repo, env={}, deny=[], command_timeout=5).specs]


# ------------------------------------------------------------------------------------------ end to end
SEARCH_PROGRAM = ("hits = grep(r'def add')\n"
                  "emit([read(h['path'], h['line'], h['line'] + 1)['text'] for h in hits])")


def test_a_session_searches_by_program_and_the_search_is_on_the_record(tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch)
        api.push(Reply([tool_use(TOOL_NAME, {"program": SEARCH_PROGRAM})]),
                 Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]), DONE)
        assert runner.run("issues", runner.labeled()) == 0
        first, second = api.requests[0].body, api.requests[1].body
    assert TOOL_NAME in [t["name"] for t in first["tools"]]
    result = next(block for block in second["messages"][-1]["content"] if block["type"] == "tool_result")
    assert json.loads(_text_of(result)) == ["def add(a, b):\n    return a - b"]

    session_dir = Path(runner.outputs_map()["session-dir"])
    trajectory = [json.loads(line) for line in (session_dir / "trajectory.jsonl").read_text().splitlines()]
    (call,) = [e for e in trajectory if e["type"] == "tool_called" and e["name"] == TOOL_NAME]
    assert call["input"]["program"] == SEARCH_PROGRAM and "return a - b" in call["result"]

    iteration = checks(fake_github)["fixloop / iteration 1"]
    assert "### How the agent searched" in iteration.output_text
    assert "hits = grep(r'def add')" in iteration.output_text and "return a - b" in iteration.output_text
    assert len(fake_github.pulls(REPO)) == 1


def _text_of(block: dict) -> str:
    content = block["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)
