"""Triage and deflake validation beyond pytest: real `go test` and `node --test` runs on the small
projects in tests/fixtures/projects (each with a regression, a flaky test and an order-dependent
pair, in separate packages or files), the tests named as CI logs name them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot._process import CommandResult
from bot.cli import main
from bot.deflake import papering_over
from bot.errors import ConfigError
from bot.frameworks import NAMES, framework
from bot.logs import failing_tests
from bot.secrets import scrubbed_environment
from bot.triage import confirm_fixed, diagnose, triage
from bot.triage._runner import Run
from tests.conftest import run_git
from tests.test_frameworks import needs_go, needs_node

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
GO_MODULE = "example.com/inventory"
# One Go build cache for the tests (a cold one costs seconds a test).
pytestmark = pytest.mark.usefixtures("one_go_build_cache")


def copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(PROJECTS / name, tmp_path / name))


@needs_go
def test_go_triage_from_the_command_line_takes_tests_as_ci_logs_name_them(tmp_path):
    """The Done-when: a Go project's regression, ~30% flaky test and passing test, each told apart in fewer
    than 30 runs; ids bare (`TestTotal`), with part of their package path, or with all of it. (The
    order-dependent test is triaged below, from the suite's run.)"""
    repo = copy(tmp_path, "go-inventory")
    tests = ["TestTotal", "reserve.TestReserveAnswersInTime", f"{GO_MODULE}/stock.TestParseSKU"]
    done = subprocess.run([sys.executable, "-m", "bot", "triage", "--json", "--jobs=1", "--repo", str(repo),
                           *(f"--test={t}" for t in tests)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    verdicts = {t["test"]: t for t in json.loads(done.stdout)["tests"]}
    assert {test: v["verdict"] for test, v in verdicts.items()} == {
        "TestTotal": "regression", "reserve.TestReserveAnswersInTime": "flaky",
        f"{GO_MODULE}/stock.TestParseSKU": "passes"}
    assert verdicts["TestTotal"]["runs"] == 5 and verdicts["TestTotal"]["failures"] == 5
    assert all(v["runs"] < 30 for v in verdicts.values()), verdicts


@needs_go
def test_go_triage_runs_the_suite_to_find_the_failures_and_checks_coverage_of_the_change(tmp_path):
    """Without test ids the suite runs once; DeFlaker's check reads `go test -coverprofile`: the regression
    executes the changed line (3 failures decide), the order-dependent test does not. One run at a time: the
    flaky test fails by a count of its runs, and runs side by side would take their numbers in any order."""
    repo = copy(tmp_path, "go-inventory")
    total_loop = next(n for n, line in enumerate((repo / "stock/stock.go").read_text().splitlines(), 1)
                      if "i := 1" in line)
    report = triage(repo, changed_lines={"stock/stock.go": {total_loop}}, jobs=1)
    by_test = {t.test: t for t in report.tests}
    assert {test: t.verdict for test, t in by_test.items()} == {
        f"{GO_MODULE}/stock.TestTotal": "regression", f"{GO_MODULE}/reserve.TestReserveAnswersInTime": "flaky",
        f"{GO_MODULE}/warehouse.TestStartsEmpty": "order_dependent"}
    assert by_test[f"{GO_MODULE}/warehouse.TestStartsEmpty"].polluter == f"{GO_MODULE}/warehouse.TestRegisterWarehouse"
    regression = by_test[f"{GO_MODULE}/stock.TestTotal"]
    assert regression.runs == 3 and f"executes changed lines (stock/stock.go:{total_loop})" in regression.evidence
    assert "executes none of the changed lines" in by_test[f"{GO_MODULE}/warehouse.TestStartsEmpty"].evidence


@needs_node
def test_node_triage_finds_the_regression_the_flaky_test_and_the_polluter(tmp_path):
    repo = copy(tmp_path, "node-cart")
    report = triage(repo, changed_lines={"cart.js": {17}})
    by_test = {t.test: t for t in report.tests}
    assert {test: t.verdict for test, t in by_test.items()} == {
        "cart.test.js > cart > adds up prices": "regression", "payment.test.js > reserves payment in time": "flaky",
        "coupons.test.js > coupons > starts with no coupons": "order_dependent"}
    assert by_test["coupons.test.js > coupons > starts with no coupons"].polluter == "coupons > registers a coupon"
    assert "differential coverage not used: fixloop knows no coverage tool for node" in (
        by_test["cart.test.js > cart > adds up prices"].evidence)
    assert all(t.runs < 30 for t in report.tests)


@needs_go
def test_go_deflake_validation_shuffles_and_keeps_the_polluter_first(tmp_path):
    repo = copy(tmp_path, "go-inventory")
    flaky = confirm_fixed(repo, "TestReserveAnswersInTime", confidence=0.9, max_failure_rate=0.3,
                          neighbours=["TestTotal"], framework=framework("go"))
    assert not flaky.passed and flaky.failures >= 1
    assert "in random orders (go shuffling them)" in flaky.statement and "not fixed" in flaky.statement
    test = repo / "warehouse" / "warehouse_test.go"
    polluted = confirm_fixed(repo, "TestStartsEmpty", polluter=f"{GO_MODULE}/warehouse.TestRegisterWarehouse",
                             confidence=0.9, max_failure_rate=0.3, framework=framework("go"))
    assert not polluted.passed and polluted.failures == polluted.runs, "every run, after the polluter, fails"
    assert "warehouse_test.go:18: 1 warehouses registered before" in (polluted.first_failure or "")
    # The fix: the test registers into a clean registry of its own.
    test.write_text(test.read_text().replace("func TestStartsEmpty(t *testing.T) {",
                                             "func TestStartsEmpty(t *testing.T) {\n\twarehouses = map[string]int{}"))
    fixed = confirm_fixed(repo, "TestStartsEmpty", polluter=f"{GO_MODULE}/warehouse.TestRegisterWarehouse",
                          confidence=0.9, max_failure_rate=0.3, framework=framework("go"))
    assert fixed.passed and fixed.runs == 7
    assert f"in go's own order, always after {GO_MODULE}/warehouse.TestRegisterWarehouse" in fixed.statement


def test_a_language_fixloop_does_not_know_gets_a_fix_session_that_says_triage_was_skipped(tmp_path):
    diagnosis = diagnose(tmp_path, "HEAD", ["spec/cart_spec.rb:12"], framework=None, setup=[], env={}, timeout=60,
                         confidence=0.95, changed=None, sandbox="off", environ=os.environ)
    assert diagnosis.kind == "fix" and diagnosis.report is None and diagnosis.deflake is None
    assert diagnosis.summary().startswith("Triage skipped: fixloop does not know this repository's test framework")
    assert "treated as a regression, from the log's evidence" in diagnosis.summary()


@needs_go
def test_a_test_the_framework_cannot_find_skips_triage_instead_of_failing(tmp_path):
    repo = copy(tmp_path, "go-inventory")
    run_git(repo, "init", "-q")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "inventory")
    diagnosis = diagnose(repo, "HEAD", ["TestRenamedSinceTheLog"], framework=framework("go"), setup=[],
                         env=scrubbed_environment(os.environ), timeout=120, confidence=0.95, changed=None,
                         sandbox="off", environ=os.environ)
    assert diagnosis.kind == "fix" and diagnosis.report is None
    assert "the failing tests could not be rerun:\ngo ran no test named TestRenamedSinceTheLog" in diagnosis.summary()


@pytest.mark.parametrize(("path", "added", "hidden"), [
    ("calc_test.go", '\tt.Skip("flaky on CI")', True),
    ("calc_test.go", "\ttime.Sleep(50 * time.Millisecond)", True),
    ("calc_test.go", "\tt.Skipf(\"later: %d\", n)", True),
    ("calc.go", "\treturn total + value", False),
    ("sum.test.js", "jest.retryTimes(3);", True),
    ("sum.test.ts", "it.skip('adds', () => {});", True),
    ("sum.test.js", "await new Promise((resolve) => setTimeout(resolve, 100));", True),
    ("vitest.config.ts", "  test: { retry: 2 },", True),
    ("sum.test.js", "it('adds', () => { expect(sum(1, 2)).toBe(3); });", False),
    ("CalcTest.java", "    @Disabled(\"flaky\")", True),
    ("CalcTest.kt", "    @Flaky", True),
    ("CalcTest.java", "        Thread.sleep(200);", True),
    ("pom.xml", "<rerunFailingTestsCount>2</rerunFailingTestsCount>", True),
    ("build.gradle", "    retry { maxRetries = 3 }", True),
    ("src/lib.rs", "#[ignore]", True),
    ("src/lib.rs", "    std::thread::sleep(Duration::from_millis(5));", True),
    ("src/lib.rs", "    assert_eq!(sum(1, 2), 3);", False),
    ("pytest.ini", "addopts = --reruns 3", True),
    ("README.md", "We sleep well: time.sleep( is not code here.", False),
])
def test_papering_over_is_recognised_in_each_language(path, added, hidden):
    patch = f"--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,2 @@\n context\n+{added}\n"
    assert papering_over(patch) == ([f"{path}:2: {added.strip()}"] if hidden else [])


@needs_go
def test_go_ids_that_name_no_test_or_read_as_options_are_refused(tmp_path):
    repo = copy(tmp_path, "go-inventory")
    with pytest.raises(ConfigError, match=r"^go ran no test named example.com/nope.TestTotal"):
        triage(repo, ["example.com/nope.TestTotal"])
    with pytest.raises(ConfigError, match="starts with '-': a test command would read it as an option"):
        triage(repo, ["-exec=./pwn.sh.TestTotal"])
    with pytest.raises(ConfigError, match="starts with '-'"):
        confirm_fixed(repo, "TestTotal", neighbours=["-run=."])


@needs_node
def test_node_logs_name_the_failing_tests_not_their_describe_blocks(tmp_path):
    """Real `node --test` output, TAP (its default where output is no terminal, as in CI) and spec."""
    for reporter in ("tap", "spec"):
        repo = copy(tmp_path / reporter, "node-cart")
        log = subprocess.run(["node", "--test", f"--test-reporter={reporter}"], cwd=repo, capture_output=True,
                             text=True, timeout=120, check=False).stdout
        assert failing_tests(log) == ["adds up prices", "starts with no coupons", "reserves payment in time"] or \
            failing_tests(log) == ["adds up prices", "reserves payment in time", "starts with no coupons"], log


def test_what_a_run_says_of_a_test_depends_on_what_its_results_name():
    def run(name: str, exit_code: int, ran: tuple[str, ...] = (), failed: dict[str, str] | None = None,
            reported: bool = True) -> Run:
        return Run(("x",), CommandResult(exit_code, "", False, 0.1, 0), framework(name), ran, failed or {}, reported)

    assert run("jest", 0).failed_test("sum › adds"), "results that list no run of it: it did not run"
    assert not run("jest", 0, ran=("sum.test.js > sum > adds",)).failed_test("sum › adds")
    assert not run("go", 0, ran=("example.com/calc.TestSplit",)).failed_test("TestSplit/two_spaces"), \
        "a passing subtest shows as its parent's pass"
    assert not run("unittest", 1, failed={"m.T.test_other": "boom"}).failed_test("m.T.test_x"), \
        "unittest names its failures only: another one failed"
    assert run("unittest", 1).failed_test("m.T.test_x") and not run("unittest", 0).failed_test("m.T.test_x")
    assert run("go", 1, reported=False).failed_test("TestX") and not run("go", 0, reported=False).failed_test("TestX")


def test_the_triage_command_names_every_framework_and_refuses_others(capsys):
    with pytest.raises(SystemExit):
        main(["triage", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert [name for name in NAMES if name not in shown] == [], shown
    assert main(["triage", "--framework", "rspec", "--test", "x"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"fixloop: --framework must be one of {', '.join(NAMES)}; got 'rspec'"]
