"""fixloop triage: real pytest runs on small generated projects, with outcomes made deterministic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.triage import clopper_pearson, confirm_fixed, runs_for_confidence, triage
from bot.triage.cli import add_parser

# The projects need no plugin; skipping plugin autoload makes each pytest process ~5x faster here.
# Our own interpreter first on PATH, so the tests' `python` has pytest and coverage.
ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
       "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

# The n-th run of the test in any process: an exclusive create cannot be won twice, even in parallel.
RUN_NUMBER = '''
import os

def run_number():
    os.makedirs("runs", exist_ok=True)
    n = 1
    while True:
        try:
            os.close(os.open(f"runs/{n}", os.O_CREAT | os.O_EXCL))
            return n
        except FileExistsError:
            n += 1
'''

ORDER_PROJECT = {
    "state.py": "items = []\n",
    "test_aaa.py": "def test_one():\n    pass\n\ndef test_two():\n    pass\n",
    "test_order.py": (
        "import state\n\n"
        "def test_fill_a():\n    pass\n\n"
        "def test_pollutes():\n    state.items.append('left over')\n\n"
        "def test_fill_b():\n    pass\n\n"
        "def test_fill_c():\n    pass\n\n"
        "def test_fill_d():\n    pass\n\n"
        "def test_victim():\n    assert state.items == [], 'leaked state'\n"
    ),
}


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_runs_for_confidence() -> None:
    assert runs_for_confidence(0.95, 0.10) == 29
    assert runs_for_confidence(0.95, 0.5) == 5
    assert runs_for_confidence(0.99, 0.01) == 459
    assert runs_for_confidence(0.9, 0.2) == 11
    with pytest.raises(ValueError):
        runs_for_confidence(1.0, 0.1)
    with pytest.raises(ValueError):
        runs_for_confidence(0.95, 0.0)


def test_clopper_pearson_interval() -> None:
    low, high = clopper_pearson(0, 29, 0.95)
    assert low == 0.0 and high == pytest.approx(0.1194, abs=1e-4)
    low, high = clopper_pearson(5, 5, 0.95)
    assert low == pytest.approx(0.4782, abs=1e-4) and high == 1.0
    low, high = clopper_pearson(3, 10, 0.95)
    assert low == pytest.approx(0.0667, abs=1e-4) and high == pytest.approx(0.6525, abs=1e-4)


def test_regression_stops_after_five_failures(tmp_path: Path) -> None:
    repo = project(tmp_path / "p",
                   {"test_math.py": "def test_ok():\n    pass\n\ndef test_broken():\n    assert 1 + 1 == 3\n"})
    report = triage(repo, env=ENV)
    (result,) = report.tests
    assert ((result.test, result.verdict, result.runs, result.failures)
            == ("test_math.py::test_broken", "regression", 5, 5))
    assert result.failure_rate == 1.0 and result.interval[0] == pytest.approx(0.478, abs=1e-3)
    assert result.polluter is None and "failed all 5 runs alone" in result.evidence
    assert report.runs_total == 6  # the suite run that found it, then five reruns


def test_flaky_stops_at_the_first_failure_and_pass(tmp_path: Path) -> None:
    # Fails on the 1st run (the suite run) and the 3rd; the first two reruns are the 2nd and 3rd.
    test = RUN_NUMBER + "\ndef test_sometimes():\n    assert run_number() not in (1, 3)\n"
    repo = project(tmp_path / "p", {"test_flaky.py": test})
    (result,) = triage(repo, env=ENV, jobs=2).tests
    assert (result.verdict, result.runs, result.failures) == ("flaky", 2, 1)
    assert result.failure_rate == 0.5 and result.interval == clopper_pearson(1, 2, 0.95)
    assert "prove it flaky" in result.evidence
    assert sorted(p.name for p in (repo / "runs").iterdir()) == ["1", "2", "3"]  # no run wasted


def test_order_dependent_names_the_polluter(tmp_path: Path) -> None:
    repo = project(tmp_path / "p", ORDER_PROJECT)
    report = triage(repo, env=ENV)
    (result,) = report.tests
    assert result.test == "test_order.py::test_victim"
    assert result.verdict == "order_dependent"
    assert result.polluter == "test_order.py::test_pollutes"
    assert "passes alone" in result.evidence and "test_order.py::test_pollutes" in result.evidence
    assert result.runs <= 10


def test_order_dependent_when_the_test_is_named(tmp_path: Path) -> None:
    repo = project(tmp_path / "p", ORDER_PROJECT)
    (result,) = triage(repo, ["./test_order.py::test_victim"], env=ENV).tests
    assert (result.verdict, result.polluter) == ("order_dependent", "test_order.py::test_pollutes")
    assert "in collection order" in result.evidence


def test_infrastructure_failure_passes(tmp_path: Path) -> None:
    test = ("import os\n\ndef test_download():\n    if os.path.exists('outage'):\n        os.remove('outage')\n"
            "        raise ConnectionError('mirror unreachable')\n\ndef test_other():\n    pass\n")
    repo = project(tmp_path / "p", {"test_net.py": test, "outage": ""})
    (result,) = triage(repo, env=ENV, confidence=0.75).tests  # 14 passes decide (29 at 95%)
    assert ((result.test, result.verdict, result.failures, result.polluter)
            == ("test_net.py::test_download", "passes", 0, None))
    assert result.runs == runs_for_confidence(0.75, 0.10) == 14
    assert "did not reproduce" in result.evidence and "after all 1 other tests in a random order" in result.evidence
    assert result.interval[1] < 0.15


def test_differential_coverage(tmp_path: Path) -> None:
    files = {
        "calc.py": "def double(x):\n    return x + 2\n\n\ndef today():\n    return 'Monday'\n",
        "test_calc.py": ("from calc import double\n\ndef test_double():\n    assert double(3) == 6\n\n"
                         "def test_clock():\n    assert 'Sunday' == 'Monday', 'wrong day'\n"),
    }
    repo = project(tmp_path / "p", files)
    report = triage(repo, env=ENV, changed_lines={"calc.py": {2}})
    results = {t.test: t for t in report.tests}
    touched, untouched = results["test_calc.py::test_double"], results["test_calc.py::test_clock"]
    assert touched.verdict == "regression" and touched.runs == 3
    assert "executes changed lines (calc.py:2)" in touched.evidence
    # Failing without running the change needs more evidence to be called a regression.
    assert untouched.verdict == "regression" and untouched.runs == 11
    assert "executes none of the changed lines" in untouched.evidence


def test_command_template_for_other_runners(tmp_path: Path) -> None:
    repo = project(tmp_path / "p", {"README": ""})
    report = triage(repo, ["good", "bad"], command='test "{test}" = good', env=ENV)
    good, bad = report.tests
    assert (bad.verdict, bad.runs, bad.failures) == ("regression", 5, 5)
    assert (good.verdict, good.runs, good.failures) == ("passes", 29, 0)
    assert report.runs_total == 34


def test_confirm_fixed_passes_after_the_required_runs(tmp_path: Path) -> None:
    files = dict(ORDER_PROJECT)
    files["test_order.py"] = files["test_order.py"].replace("def test_victim():\n",
                                                            "def test_victim():\n    state.items.clear()\n")
    repo = project(tmp_path / "p", files)
    victim, polluter = "test_order.py::test_victim", "test_order.py::test_pollutes"
    neighbours = [f"test_order.py::test_fill_{x}" for x in "abcd"]
    result = confirm_fixed(repo, victim, confidence=0.9, max_failure_rate=0.2, polluter=polluter,
                           neighbours=neighbours, env=ENV, seed=7)
    assert result.passed and result.runs == 11 and result.failures == 0 and result.first_failure is None
    assert result.orders[0] == [polluter, victim]
    assert all(order.index(polluter) < order.index(victim) for order in result.orders)
    assert len({tuple(order) for order in result.orders[1:]}) > 5  # random orders, not one order repeated
    assert result.statement.startswith("11 consecutive passes in random orders, "
                                       "always after test_order.py::test_pollutes")
    again = confirm_fixed(repo, victim, confidence=0.8, max_failure_rate=0.3, neighbours=neighbours, env=ENV, seed=7)
    assert again.passed and again.runs == 5
    assert again.statement == ("5 consecutive passes in random orders: "
                               "80% confidence that the failure rate is below 30%")


def test_confirm_fixed_stops_at_the_first_failure(tmp_path: Path) -> None:
    repo = project(tmp_path / "p", ORDER_PROJECT)
    result = confirm_fixed(repo, "test_order.py::test_victim", polluter="test_order.py::test_pollutes",
                           neighbours=["test_order.py::test_fill_a"], env=ENV, jobs=2)
    assert not result.passed and result.failures >= 1 and result.runs == 2  # one batch of two, then stop
    assert result.first_failure is not None and "leaked state" in result.first_failure
    assert result.statement.startswith("failed on run 1 of the 29 consecutive passes needed")


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fixloop")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_json_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PATH", ENV["PATH"])
    repo = project(tmp_path / "p", {"test_x.py": "def test_bad():\n    assert False\n"})
    args = _cli(["triage", "--repo", str(repo), "--json"])
    assert args.handler(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"tests", "runs_total"} and data["runs_total"] == 6
    assert data["tests"] == [{"test": "test_x.py::test_bad", "verdict": "regression", "runs": 5, "failures": 5,
                              "failure_rate": 1.0, "polluter": None}]
    args = _cli(["triage", "--repo", str(repo), "--test", "test_x.py::test_bad", "--max-runs", "3"])
    assert args.handler(args) == 0
    table = capsys.readouterr().out
    assert "test_x.py::test_bad" in table and "regression" in table and "not decisive" in table


def test_config_errors(tmp_path: Path) -> None:
    repo = project(tmp_path / "p", {"test_ok.py": "def test_fine():\n    pass\n"})
    with pytest.raises(ConfigError, match="not a directory"):
        triage(repo / "test_ok.py", env=ENV)
    for bad in (1.5, 0.0, float("nan")):
        with pytest.raises(ConfigError, match="--confidence"):
            triage(repo, confidence=bad, env=ENV)
    with pytest.raises(ConfigError, match="no failing tests found"):
        triage(repo, env=ENV)
    with pytest.raises(ConfigError, match=r"test_ok\.py::test_missing"):
        triage(repo, ["test_ok.py::test_missing"], env=ENV)
    with pytest.raises(ConfigError, match="--command needs"):
        triage(repo, command="go test -run {test}", env=ENV)
    with pytest.raises(ConfigError, match="metacharacters"):
        triage(repo, ["x; rm -rf ~"], command="go test -run {test}", env=ENV)
    with pytest.raises(ConfigError, match="--max-runs"):
        triage(repo, ["test_ok.py::test_fine"], max_runs=0, env=ENV)
    args = _cli(["triage", "--repo", str(repo), "--confidence", "2"])
    with pytest.raises(ConfigError, match="--confidence"):
        args.handler(args)
    with pytest.raises(ConfigError, match="max_failure_rate"):
        confirm_fixed(repo, "test_ok.py::test_fine", max_failure_rate=1.0, env=ENV)


def test_a_chance_failure_in_order_is_not_order_dependence(tmp_path: Path) -> None:
    # Fails on its 1st run (the suite) and 3rd (the first run after the earlier tests), nowhere else:
    # bisection names a suspect, but the suspect -> test pair passes, and so does the same order again.
    test = RUN_NUMBER + "\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n\n" \
        "def test_sometimes():\n    assert run_number() not in (1, 3)\n"
    repo = project(tmp_path / "p", {"test_mixed.py": test})
    (result,) = triage(repo, env=ENV, jobs=1).tests
    assert (result.verdict, result.polluter, result.failures) == ("flaky", None, 1)
    assert ("passed right after it" in result.evidence
            and "failed and passed after the 3 tests that ran before it" in result.evidence)


def test_an_earlier_failure_does_not_stop_the_runs(tmp_path: Path) -> None:
    # The project's own `-x` would end every run at test_broken, before the victim runs.
    files = dict(ORDER_PROJECT, **{"pytest.ini": "[pytest]\naddopts = -x\n",
                                   "test_aaa.py": "def test_broken():\n    assert 0, 'always'\n"})
    repo = project(tmp_path / "p", files)
    results = {t.test: t for t in triage(repo, env=ENV).tests}
    assert results["test_aaa.py::test_broken"].verdict == "regression"
    victim = results["test_order.py::test_victim"]
    assert (victim.verdict, victim.polluter) == ("order_dependent", "test_order.py::test_pollutes")
