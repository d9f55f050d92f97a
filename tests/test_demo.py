import json
from datetime import datetime, timedelta
from pathlib import Path

from bot.cli import main
from tests.conftest import run_git


def test_demo_without_a_key_uses_the_scripted_model_says_so_and_fixes_the_sample(capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["demo", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "scripted model" in err and "ANTHROPIC_API_KEY is not set" in err
    assert report["status"] == "validated" and report["model"] == "scripted-demo"
    first, second = report["iterations"]
    assert first["validation"]["failed_tests"] == ["test_stats.py::test_median_of_nothing_is_an_error"]
    assert second["validation"]["passed"]
    assert report["baseline"]["failed_tests"] == [
        "test_stats.py::test_median_even_length",
        "test_stats.py::test_median_of_nothing_is_an_error",
    ]
    repo = report["repo"]
    fixed = run_git(repo, "show", f"{report['branch']}:stats.py")
    assert "raise ValueError" in fixed and "/ 2" in fixed
    assert report["cost_usd"] == 0
    started, finished = (datetime.fromisoformat(report[key]) for key in ("started_at", "finished_at"))
    assert started.utcoffset() == timedelta(0) and started <= finished, "ISO 8601 times, in UTC"
    assert report["schema_version"] == 3


def test_demo_scripted_flag_wins_over_a_key(capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-used")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a real call would fail
    assert main(["demo", "--scripted"]) == 0
    err = capsys.readouterr().err
    assert "--scripted was given" in err and "validated" in err


def test_the_result_goes_to_stdout_and_progress_to_stderr(capsys, monkeypatch):
    """`fixloop demo > result.txt` keeps the result."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("validated: validation passed\nBranch fixloop/") and "Session record: " in out
    assert "iteration 1" in err and "iteration 1" not in out


def test_show_renders_a_session_as_markdown_html_and_json(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    session = Path(report["trajectory"]).parent
    assert main(["show", str(session)]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("# fixloop: Validated in 2 iteration(s)\n")
    assert "| 1 | ❌ failed | `test_stats.py::test_median_of_nothing_is_an_error`" in markdown
    assert f"Branch `{report['branch']}`" in markdown and report["summary"] in markdown
    assert main(["show", str(session), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == report
    stored = json.loads((session / "report.json").read_text())
    stored["summary"] = "<script>alert(1)</script> & more"
    (session / "report.json").write_text(json.dumps(stored))
    assert main(["show", str(session), "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_show_explains_a_folder_that_is_not_a_session(capsys, tmp_path):
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a session folder" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"status": "validated"}')
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a report this fixloop can read" in capsys.readouterr().err
