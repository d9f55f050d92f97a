import os
import time
from pathlib import Path

import pytest

from bot.agent.tools import BASH, EDITOR, Toolbox
from bot.secrets import scrubbed_environment


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 1\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    return Toolbox(root, env=scrubbed_environment(os.environ), deny=[".git/**", ".github/workflows/**"],
                   command_timeout=5)


def edit(box: Toolbox, **args):
    return box.run(EDITOR, args)


def test_view_numbers_lines_and_honours_a_range(box):
    result = edit(box, command="view", path="src/app.py", view_range=[2, 3])
    assert not result.is_error
    assert result.content.splitlines() == ["     2\t    return 1", "     3\t"]


def test_view_of_a_directory_lists_files(box):
    result = edit(box, command="view", path=".")
    assert "src/app.py" in result.content and "src/" in result.content
    assert ".github" not in result.content


def test_str_replace_edits_exactly_once_and_explains_ambiguity(box):
    ambiguous = edit(box, command="str_replace", path="src/app.py", old_str="    return 1", new_str="    return 2")
    assert ambiguous.is_error and "2 times" in ambiguous.content and "[2, 6]" in ambiguous.content
    missing = edit(box, command="str_replace", path="src/app.py", old_str="return 3", new_str="x")
    assert missing.is_error and "did not appear verbatim" in missing.content
    ok = edit(box, command="str_replace", path="src/app.py", old_str="def g():\n    return 1",
              new_str="def g():\n    return 2")
    assert not ok.is_error
    assert (box.root / "src/app.py").read_text().endswith("def g():\n    return 2\n")


def test_create_and_insert(box):
    assert not edit(box, command="create", path="pkg/new.py", file_text="a = 1\n").is_error
    assert not edit(box, command="insert", path="pkg/new.py", insert_line=0, insert_text="# header").is_error
    assert (box.root / "pkg/new.py").read_text() == "# header\na = 1\n"
    bad = edit(box, command="insert", path="pkg/new.py", insert_line=9, insert_text="x")
    assert bad.is_error and "outside 0..2" in bad.content


@pytest.mark.parametrize(
    "path, phrase",
    [
        ("/etc/passwd", "Absolute paths are not allowed"),
        ("../outside.txt", "'..' is not allowed"),
        ("src/../../outside.txt", "'..' is not allowed"),
        (".git/config", "protected by the deny list (.git/**)"),
        (".github/workflows/ci.yml", "protected by the deny list (.github/workflows/**)"),
        ("", "`path` parameter is required"),
    ],
)
def test_paths_outside_or_denied_are_refused_with_a_usable_message(box, path, phrase):
    for command in ("view", "create", "str_replace"):
        result = edit(box, command=command, path=path, file_text="x", old_str="a", new_str="b")
        assert result.is_error and phrase in result.content
    assert (box.root / ".github/workflows/ci.yml").read_text() == "on: push\n"


def test_symlink_leading_out_of_the_worktree_is_refused(box, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (box.root / "link").symlink_to(secret)
    (box.root / "linkdir").symlink_to(tmp_path)
    for path in ("link", "linkdir/secret.txt"):
        result = edit(box, command="view", path=path)
        assert result.is_error and "leads outside the repository" in result.content
    assert "top secret" not in edit(box, command="create", path="link", file_text="x").content
    assert secret.read_text() == "top secret"


def test_unknown_editor_command_and_binary_file(box):
    assert "Unknown command" in edit(box, command="undo_edit", path="src/app.py").content
    (box.root / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")
    result = edit(box, command="view", path="blob.bin")
    assert result.is_error and "not a UTF-8 text file" in result.content


def test_bash_runs_at_the_root_and_reports_exit_codes(box):
    result = box.run(BASH, {"command": "pwd; ls src; exit 3"})
    assert result.content.splitlines()[:2] == [str(box.root), "app.py"]
    assert result.content.endswith("[exit code 3]")


def test_bash_environment_has_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_verysecretvalue123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-shouldnotleak")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "runtime-token-value")
    box = Toolbox(tmp_path, env=scrubbed_environment(os.environ), deny=[], command_timeout=5)
    output = box.run(BASH, {"command": "env"}).content
    assert "PATH=" in output
    for value in ("ghs_verysecretvalue123", "sk-ant-shouldnotleak", "runtime-token-value"):
        assert value not in output


def test_bash_timeout_kills_the_whole_process_group(tmp_path):
    box = Toolbox(tmp_path, env=dict(os.environ), deny=[], command_timeout=0.5)
    marker = tmp_path / "survived"
    result = box.run(BASH, {"command": f"(sleep 2; touch {marker}) & sleep 30"})
    assert result.is_error and "killed after 0.5 s" in result.content
    time.sleep(2.5)
    assert not marker.exists(), "a background child outlived the timeout"


def test_bash_huge_output_keeps_head_and_tail(tmp_path):
    box = Toolbox(tmp_path, env=dict(os.environ), deny=[], command_timeout=20, output_limit=2_000)
    result = box.run(BASH, {"command": "echo FIRST; seq 1 2000000; echo LAST"})
    assert result.content.startswith("FIRST")
    assert "LAST" in result.content
    assert "bytes elided" in result.content
    assert len(result.content) < 2_200


def test_bash_requires_a_command_and_restart_is_acknowledged(box):
    assert box.run(BASH, {}).is_error
    assert "restarted" in box.run(BASH, {"restart": True}).content
    assert box.run("web_search", {}).is_error


@pytest.mark.parametrize("args", [
    {"command": "create", "path": "src/app.py", "file_text": "x = '\ud83d'\n"},
    {"command": "str_replace", "path": "src/app.py", "old_str": "def f", "new_str": "def \ud83d"},
    {"command": "insert", "path": "src/app.py", "insert_line": 0, "new_str": "\ude42\n"},
])
def test_half_a_character_is_refused_and_the_file_is_left_as_it_was(box, args):
    """A lone surrogate (half of a character outside the BMP) cannot be written as UTF-8; the file
    must not be truncated first, as `write_text` would."""
    before = (box.root / "src/app.py").read_bytes()
    result = box.run(EDITOR, args)
    assert result.is_error and "not valid Unicode" in result.content
    assert (box.root / "src/app.py").read_bytes() == before
