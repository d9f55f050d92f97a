"""`fixloop replay`: a recorded session run again with its model's recorded answers, and the tools,
validation and git for real; the same change byte for byte (exit 0), or the first step where the
environment answered differently (exit 1). Sessions of `fixloop demo`, `fixloop run` (the real SDK over
loopback HTTP) and `fixloop action`; the model server sees no request during a replay."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.cli import main
from tests.conftest import run_git
from tests.fakes.messages_api import Reply, bash, edit
from tests.test_action_e2e import DONE as ACTION_DONE
from tests.test_action_e2e import RIGHT_AT_ONCE, Runner
from tests.test_cli_run import BUGGY, DONE, PYTEST, WRONG, api, fixloop  # noqa: F401 - `api` is a fixture


def replay(capsys, session_dir: Path, *flags: str) -> tuple[int, dict, str]:
    code = main(["replay", str(session_dir), "--json", *flags])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_a_demo_session_is_reproduced_byte_for_byte(capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["demo"]) == 0
    out, _ = capsys.readouterr()
    session_dir = Path(re.search(r"Session record: (\S+)/ ", out).group(1))
    recorded = (session_dir / "changes.patch").read_text()
    code, outcome, said = replay(capsys, session_dir)
    assert code == 0, said
    assert outcome == {**outcome, "reproduced": True, "recorded_status": "validated", "replayed_status": "validated",
                       "first_difference": None}
    assert "byte for byte" in said and f"({len(recorded):,} bytes)" in said
    repo = session_dir.parents[2]
    assert "fixloop/replay" not in run_git(repo, "branch", "--list"), "the replay leaves the repository as it was"


def test_a_run_session_with_two_iterations_replays_without_calling_the_model(api, make_repo, capsys):  # noqa: F811
    repo = make_repo(BUGGY)
    api.push(Reply([edit("str_replace", "calc.py", **WRONG)]), DONE,
             Reply([bash(PYTEST), edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0 and len(report["iterations"]) == 2
    session_dir = Path(report["trajectory"]).parent
    calls = len(api.requests)
    code, outcome, said = replay(capsys, session_dir)
    assert code == 0 and outcome["reproduced"], said
    assert len(api.requests) == calls, "the model was not asked"


def test_a_not_validated_session_replays_to_the_same_ending_and_kept_patch(api, make_repo, capsys):  # noqa: F811
    repo = make_repo(BUGGY)
    for old, new in (("a - b", "a * b"), ("a * b", "a ** b")):
        api.push(Reply([edit("str_replace", "calc.py", old_str=old, new_str=new)]), DONE)
    code, report, _ = fixloop(repo, "--max-iterations", "2", capsys=capsys)
    assert code == 1 and report["status"] == "not_validated"
    code, outcome, said = replay(capsys, Path(report["trajectory"]).parent)
    assert code == 0 and outcome["replayed_status"] == "not_validated", said


def test_a_replay_where_the_code_differs_names_the_first_step_that_answered_differently(api, make_repo, capsys,  # noqa: F811
                                                                                      tmp_path):
    repo = make_repo(BUGGY)
    api.push(Reply([edit("str_replace", "calc.py", **WRONG)]), DONE,
             Reply([edit("str_replace", "calc.py", old_str="a * b", new_str="a + b")]), DONE)
    code, report, _ = fixloop(repo, capsys=capsys)
    assert code == 0
    session_dir = Path(report["trajectory"]).parent
    # The same history, but at the session's base the code reads differently: an edited copy of the recording.
    (repo / "calc.py").write_text("def add(a, b):\n    return b - a\n\n\ndef double(a):\n    return add(a, a)\n")
    run_git(repo, "commit", "-qam", "reorder")
    changed = run_git(repo, "rev-parse", "HEAD").strip()
    copy = tmp_path / "recording"
    copy.mkdir()
    lines = (session_dir / "trajectory.jsonl").read_text().splitlines()
    copy.joinpath("trajectory.jsonl").write_text("\n".join(
        line.replace(report["base_commit"], changed) for line in lines) + "\n")
    (copy / "changes.patch").write_text((session_dir / "changes.patch").read_text())
    code, outcome, said = replay(capsys, copy, "--repo", str(repo))
    assert code == 1 and not outcome["reproduced"], said
    first = outcome["first_difference"]
    assert (first["iteration"], first["turn"], first["what"]) == (1, 1, "the result of str_replace_based_edit_tool")
    assert "first difference: iteration 1, turn 1" in said


def test_an_action_session_from_its_artifact_replays_in_a_checkout(fake_github, tmp_path, monkeypatch, capsys):
    from tests.fakes.messages_api import MessagesAPIServer
    from tests.fixtures import load_payload

    with MessagesAPIServer() as messages:
        runner = Runner(tmp_path, fake_github, messages, monkeypatch)
        messages.push(RIGHT_AT_ONCE, ACTION_DONE)
        payload = load_payload("issues.labeled", label__name="fixloop")
        payload["issue"].update(number=runner.issue, title="add() subtracts", body="add(2, 3) returns -1.")
        payload["sender"]["login"] = "maintainer"
        assert runner.run("issues", payload) == 0
        capsys.readouterr()
        session_dir = Path(runner.outputs_map()["session-dir"])
        artifact = tmp_path / "artifact"  # what a person downloads: the session folder alone
        artifact.mkdir()
        for name in ("trajectory.jsonl", "report.json", "changes.patch"):
            (artifact / name).write_bytes((session_dir / name).read_bytes())
        calls = len(messages.requests)
        code, outcome, said = replay(capsys, artifact, "--repo", str(runner.origin.workspace))
        assert code == 0 and outcome["reproduced"], said
        assert len(messages.requests) == calls


def test_a_folder_that_is_not_a_recording_is_a_usage_error(tmp_path, capsys):
    assert main(["replay", str(tmp_path)]) == 2
    assert "is not a session folder" in capsys.readouterr().err
    (tmp_path / "trajectory.jsonl").write_text('{"type": "session_started", "base_commit": "abc"}\n')
    assert main(["replay", str(tmp_path)]) == 2
    assert "did not record what replay needs" in capsys.readouterr().err


def test_a_folder_outside_a_repository_needs_repo(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["demo"]) == 0
    out, _ = capsys.readouterr()
    session_dir = Path(re.search(r"Session record: (\S+)/ ", out).group(1))
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "trajectory.jsonl").write_bytes((session_dir / "trajectory.jsonl").read_bytes())
    assert main(["replay", str(copy)]) == 2
    assert "give --repo" in capsys.readouterr().err
