"""`fixloop eval`: the statistics on known data, suites and configurations read (and refused with a reason),
and `eval run` on tasks of the starter suite (benchmarks/eval-starter: real bugs in CPython's, Go's and
minimist's code, graded by their own tests) with its two scripted configurations, resumed after an
interruption, and reported; the report's numbers are recomputed here from the JSONL."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.cli import main
from bot.errors import ConfigError
from bot.eval.report import summarize
from bot.eval.stats import mcnemar, wilson
from bot.eval.suite import load_config, load_suite

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "benchmarks" / "eval-starter"


def test_wilson_intervals_match_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 0/10 → 0 to 0.2775, 15/148 → 0.0624 to 0.1605.
    assert [round(v, 4) for v in wilson(0, 10)] == [0.0, 0.2775]
    assert [round(v, 4) for v in wilson(15, 148)] == [0.0624, 0.1605]
    assert [round(v, 4) for v in wilson(10, 10)] == [0.7225, 1.0]
    assert wilson(0, 0) == (0.0, 1.0)


def test_mcnemars_exact_test_on_known_tables():
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(5, 0) == 2 / 32  # 0.0625: five to none is not significant at 5%
    assert mcnemar(6, 0) == 2 / 64
    assert math.isclose(mcnemar(1, 3), 2 * (1 + 4) / 16)  # 0.625
    assert mcnemar(7, 7) == 1.0


def rows(config: str, outcomes: str, *, cost: float = 0.01) -> list[dict]:
    """One run per character of `outcomes` (task t0, t1, …; R resolved, - not)."""
    return [{"config": config, "task": f"t{n}", "repeat": 1, "resolved": mark == "R", "status": "validated" if
             mark == "R" else "not_validated", "tokens": 1000 * (n + 1), "cost_usd": cost, "wall_s": float(n + 1)}
            for n, mark in enumerate(outcomes)]


def test_the_report_on_known_data_gives_exactly_the_expected_numbers():
    summary = summarize(rows("a", "RRRRRRRR--") + rows("b", "RR--------", cost=0.02))
    a, b = summary["configs"]["a"], summary["configs"]["b"]
    assert (a["runs"], a["resolved"], a["resolve_rate"]) == (10, 8, 0.8)
    assert [round(v, 4) for v in a["ci95"]] == [round(v, 4) for v in wilson(8, 10)] == [0.4902, 0.9433]
    assert math.isclose(a["cost_per_resolved_usd"], 0.1 / 8) and math.isclose(b["cost_per_resolved_usd"], 0.2 / 2)
    assert a["median_tokens"] == 5500 and a["median_wall_s"] == 5.5
    (comparison,) = summary["comparisons"]
    assert (comparison["only_a"], comparison["only_b"], comparison["pairs"]) == (6, 0, 10)
    assert comparison["p_value"] == 2 / 64 and comparison["significant"]
    assert "a resolves more (6 runs to 0), significant" in comparison["says"]
    assert summary["tasks"]["t0"] == {"a": "1/1", "b": "1/1"} and summary["tasks"]["t5"] == {"a": "1/1", "b": "0/1"}
    close = summarize(rows("a", "RRRR------") + rows("b", "RR--------"))
    assert not close["comparisons"][0]["significant"]
    assert "not significant" in close["comparisons"][0]["says"]


def test_an_unknown_price_makes_the_cost_unknown_not_zero():
    summary = summarize([{**row, "cost_usd": None} if row["task"] == "t0" else row for row in rows("a", "RR")])
    assert summary["configs"]["a"]["cost_usd"] is None and summary["configs"]["a"]["cost_per_resolved_usd"] is None


def test_the_starter_suite_has_twenty_tasks_in_three_languages_with_their_licences():
    tasks = load_suite(STARTER / "tasks")
    assert len(tasks) >= 20
    assert {task.language for task in tasks} == {"python", "go", "javascript"}
    for task in tasks:
        assert task.origin and "licence" in task.origin, task.id
        assert task.hidden() is not None and (task.repository()).exists(), task.id
        files = subprocess.run(["git", "bundle", "list-heads", str(task.repository())], capture_output=True,
                               text=True, check=True).stdout
        assert "refs/heads/main" in files
    assert (STARTER / "LICENSES.md").exists()


def test_suite_and_configuration_mistakes_are_named(tmp_path):
    with pytest.raises(ConfigError, match="holds no task"):
        load_suite(tmp_path)
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "task.yml").write_text("repo: r\nproblem: x\ngrade: []\n")
    with pytest.raises(ConfigError) as error:
        load_suite(tmp_path)
    assert "t1/task.yml: validate" in str(error.value) and "grade" in str(error.value)
    jsonl = tmp_path / "tasks.jsonl"
    jsonl.write_text(json.dumps({"instance_id": "octo__calc-1", "repo": "octo/calc", "base_commit": "abc123",
                                 "problem_statement": "add() subtracts", "test_patch": "diff --git a/t b/t\n",
                                 "FAIL_TO_PASS": '["test_calc.py::test_add"]', "PASS_TO_PASS": "[]"}) + "\n")
    with pytest.raises(ConfigError, match="--repos"):
        load_suite(jsonl)
    (task,) = load_suite(jsonl, tmp_path / "repos")
    assert task.repository() == tmp_path / "repos" / "octo__calc" and task.commit == "abc123"
    assert task.grade == ["python -m pytest -q test_calc.py::test_add"] and task.hidden_patch
    bad = tmp_path / "bad.yml"
    bad.write_text("limits: {iterations: 0}\n")
    with pytest.raises(ConfigError, match="iterations"):
        load_config(bad)


def small_suite(tmp_path: Path, ids: list[str]) -> tuple[Path, list[Path]]:
    suite = tmp_path / "suite"
    for task in ids:
        shutil.copytree(STARTER / "tasks" / task, suite / task)
    configs = tmp_path / "configs"
    shutil.copytree(STARTER / "configs", configs)
    return suite, [configs / "fixes-all.yml", configs / "fixes-half.yml"]


def test_eval_run_grades_by_hidden_tests_resumes_and_reports(tmp_path, capsys):
    answers = json.loads(json.dumps(load_config(STARTER / "configs" / "fixes-half.yml").script))
    chosen = ["py-calendar-isleap", "py-colorsys-hls"]
    half = [task for task in chosen if task in answers]
    assert 0 < len(half) < len(chosen), "the half configuration answers some of these tasks and not others"
    suite, configs = small_suite(tmp_path, chosen)
    results = tmp_path / "results.jsonl"
    command = ["eval", "run", str(suite), "--config", str(configs[0]), "--config", str(configs[1]),
               "--jobs", "2", "--out", str(results)]
    assert main(command) == 0
    runs = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(runs) == 4
    resolved = {(run["config"], run["task"]): run["resolved"] for run in runs}
    assert all(resolved["fixes-all", task] for task in chosen), runs
    assert {task for task in chosen if resolved["fixes-half", task]} == set(half), runs
    assert all(run["status"] == "validated" for run in runs if run["resolved"])

    # Interrupted after the first line: the run resumes with what is missing.
    results.write_text(results.read_text().splitlines()[0] + "\n")
    capsys.readouterr()
    assert main(command) == 0
    assert "1 run(s) already in" in capsys.readouterr().err
    assert len(results.read_text().splitlines()) == 4

    out = tmp_path / "report"
    assert main(["eval", "report", str(results), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    # Recomputed from the JSONL, independently of bot/eval/report.py:
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    for name in ("fixes-all", "fixes-half"):
        mine = [line for line in lines if line["config"] == name]
        expected = sum(line["resolved"] for line in mine) / len(mine)
        assert report["configs"][name]["resolve_rate"] == expected
        assert report["configs"][name]["runs"] == len(mine) == 2
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "| fixes-all | 2 | 2 | 100.0%" in markdown and "not significant" in markdown


def test_the_actions_backend_writes_a_matrix_workflow_github_accepts(tmp_path, monkeypatch, capsys):
    from tests.test_action_files import check_jsonschema, zizmor_findings

    monkeypatch.chdir(ROOT)  # the suite and configurations as paths in the repository
    workflow = tmp_path / "fixloop-eval.yml"
    assert main(["eval", "run", "benchmarks/eval-starter/tasks", "--config", "benchmarks/eval-starter/configs/"
                 "fixes-all.yml", "--config", "benchmarks/eval-starter/configs/fixes-half.yml", "--repeats", "3",
                 "--backend", "actions", "--workflow-out", str(workflow)]) == 0
    assert "40 jobs" in capsys.readouterr().err
    result = check_jsonschema("vendor.github-workflows", workflow)
    assert result.returncode == 0, result.stdout + result.stderr
    assert zizmor_findings(workflow) == []
    text = workflow.read_text()
    assert '"task": ["go-base32-nopadding"' in text and "--only \"$TASK\" --repeats 3" in text
    assert "${{ matrix" not in text.split("run: >-", 1)[1].split("\n", 3)[1], "matrix values reach the shell as env"
    assert main(["eval", "run", str(ROOT / "benchmarks/eval-starter/tasks"), "--config",
                 "benchmarks/eval-starter/configs/fixes-all.yml", "--backend", "actions",
                 "--workflow-out", str(workflow)]) == 2  # an absolute suite path means nothing to a runner


def test_the_report_reads_a_folder_of_downloaded_artifacts(tmp_path):
    for n, config in enumerate(("a", "b")):
        folder = tmp_path / "results" / f"fixloop-eval-{n}"
        folder.mkdir(parents=True)
        (folder / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows(config, "R-")))
    assert main(["eval", "report", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["configs"]["a"]["runs"] == summary["configs"]["b"]["runs"] == 2


def test_grading_judges_the_fix_not_a_change_that_fools_the_tests(tmp_path):
    """Deleting the module (so the installed one is tested) or shadowing the test runner resolves nothing."""
    from bot.eval.run import run_one
    from bot.eval.suite import EvalConfig

    (task,) = load_suite(small_suite(tmp_path, ["py-calendar-isleap"])[0])
    cheat = EvalConfig(name="cheat", overlay={"limits": {"iterations": 1}}, script={task.id: [
        {"calls": [{"tool": "bash", "input": {"command": "rm calendar.py && printf 'raise SystemExit(0)\\n' > "
                                                         "unittest.py"}}]},
        {"say": "Done."}]})
    row = run_one(cheat, task, 1)
    assert row["status"] != "error" or "Error" not in row["reason"], row
    assert row["resolved"] is False and "exited" in row["grade"], row


def test_a_run_that_could_not_start_is_made_again_and_a_changed_configuration_refused(tmp_path):
    from bot.eval.run import done_keys
    from bot.eval.suite import EvalConfig

    config = EvalConfig(name="a", overlay={})
    results = tmp_path / "results.jsonl"
    lines = [{"config": "a", "fingerprint": config.fingerprint(), "task": "t1", "repeat": 1, "resolved": True},
             {"config": "a", "fingerprint": config.fingerprint(), "task": "t2", "repeat": 1, "resolved": False,
              "infrastructure": True}]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"config": "a", "ta')
    assert done_keys(results, [config]) == {"a/t1/1"}
    with pytest.raises(ConfigError, match="another configuration named 'a'"):
        done_keys(results, [EvalConfig(name="a", overlay={"model": "other"})])
    from bot.eval.report import read_results
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps({**lines[1], "resolved": True, "infrastructure": False}) + "\n")
    runs = read_results([results, again])  # the cut-short last line is skipped, the later run of t2 counts
    assert sorted((run["task"], run["resolved"]) for run in runs) == [("t1", True), ("t2", True)]
    # Resumed: the cut line was ended and runs follow it; both readers still leave it out.
    with results.open("a") as out:
        out.write("\n" + json.dumps({**lines[0], "task": "t3"}) + "\n")
    assert done_keys(results, [config]) == {"a/t1/1", "a/t3/1"}
    assert len(read_results([results])) == 3
    results.write_text(json.dumps({"config": "a", "task": "t1"}) + "\n")
    with pytest.raises(ConfigError, match="line 1: not a result of `fixloop eval run`"):
        done_keys(results, [config])


def test_a_script_that_is_not_one_is_refused_when_it_is_read(tmp_path):
    (tmp_path / "answers.yml").write_text("t1:\n  - calls: [{input: {command: ls}}]\n")
    (tmp_path / "c.yml").write_text("script: answers.yml\n")
    with pytest.raises(ConfigError, match="each turn is"):
        load_config(tmp_path / "c.yml")
