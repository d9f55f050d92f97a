"""The test framework adapters (bot/frameworks) on real output: Go, node's runner, unittest and cargo
run here for real when installed; Jest, Vitest, Maven and Gradle reports are small files written
like the tools write them (those tools are not installed by .ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import pytest

from bot import config  # its class Tests, imported by name, would be collected as tests
from bot.config import TestFramework
from bot.frameworks import NAMES, Results, Run, choose, framework
from bot.secrets import scrubbed_environment
from bot.validation import Validator

GO_CALC = Path(__file__).parent / "fixtures" / "projects" / "go-calc"
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (.ci/run installs golang-go)")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (.ci/run installs nodejs)")
# One Go build cache for the tests (a cold one costs seconds a test).
pytestmark = pytest.mark.usefixtures("one_go_build_cache")
CARGO = shutil.which("cargo") or shutil.which(str(Path.home() / ".cargo" / "bin" / "cargo"))
needs_cargo = pytest.mark.skipif(CARGO is None, reason="cargo is not installed (.ci/run does not install Rust)")

WORDS = """\
package words

import "strings"

// Split returns the words of text.
func Split(text string) []string {
	return strings.Split(text, " ")
}
"""
WORDS_TEST = """\
package words

import "testing"

func TestSplit(t *testing.T) {
	for name, text := range map[string]string{"one": "a", "two spaces": "a  b"} {
		t.Run(name, func(t *testing.T) {
			if got := Split(text); len(got) > 2 {
				t.Errorf("Split(%q) = %q,\\n\\twant at most 2 words", text, got)
			}
		})
	}
}
"""


def go_project(tmp_path: Path, *, words: bool = True) -> Path:
    root = tmp_path / "go-calc"
    shutil.copytree(GO_CALC, root)
    if not words:
        return root
    (root / "internal" / "words").mkdir(parents=True)
    (root / "internal" / "words" / "words.go").write_text(WORDS)
    (root / "internal" / "words" / "words_test.go").write_text(WORDS_TEST)
    return root


def validate(root: Path, command: str, **tests: str) -> Validator:
    env = scrubbed_environment(os.environ) | {"HOME": str(root.parent / "home"), "PYTHONPATH": str(root)}
    return Validator([command], cwd=root, env=env, timeout=120, scratch=root.parent / "scratch",
                     tests=config.Tests.model_validate(tests))


def run_at(tmp_path: Path, root: Path, started: float | None = None) -> Run:
    return Run(report=tmp_path / "scratch" / "junit-1.xml", root=root, started=time.time() if started is None
               else started)


@needs_go
@pytest.mark.parametrize("command", ["go test ./...", "sh ./test.sh"], ids=["json", "plain"])
def test_go_failures_are_named_with_package_subtest_and_file_line(tmp_path, command):
    """`go test` run directly gives its event stream (-json); through a script, its plain output."""
    root = go_project(tmp_path)
    (root / "test.sh").write_text("go test ./...\n")
    result = validate(root, command).run()
    (outcome,) = result.commands
    assert not outcome.passed and outcome.exit_code == 1
    by_id = {t.id: t for t in outcome.failed_tests}
    assert set(by_id) == {"example.com/calc.TestParse", "example.com/calc/internal/words.TestSplit/two_spaces"}
    parse, split = by_id["example.com/calc.TestParse"], by_id["example.com/calc/internal/words.TestSplit/two_spaces"]
    assert (parse.file, parse.line, parse.message) == ("calc_test.go", 11, 'Parse("1+2+3") = -6, want 6')
    assert (split.file, split.line) == ("internal/words/words_test.go", 9)
    assert split.message == 'Split("a  b") = ["a" "" "b"],'
    assert split.details == 'words_test.go:9: Split("a  b") = ["a" "" "b"],\n    \twant at most 2 words'
    # All tests and subtests, passed or failed (-json only: the plain output names failures alone).
    assert outcome.tests_run == (5 if command.startswith("go") else None)
    assert "FAILED example.com/calc.TestParse (calc_test.go:11)" in result.feedback()


@needs_go
@pytest.mark.parametrize("command", ["go test ./...", "sh ./test.sh"], ids=["json", "plain"])
def test_a_panicking_go_test_points_at_the_innermost_frame_in_the_repository(tmp_path, command):
    root = go_project(tmp_path, words=False)
    (root / "test.sh").write_text("go test ./...\n")
    (root / "first_test.go").write_text(
        "package calc\n\nimport \"testing\"\n\nfunc first(values []int) int {\n\treturn values[0]\n}\n\n"
        "func TestFirst(t *testing.T) {\n\tif first(nil) != 0 {\n\t\tt.Fail()\n\t}\n}\n")
    (outcome,) = validate(root, command).run().commands
    first = next(t for t in outcome.failed_tests if t.id == "example.com/calc.TestFirst")
    assert (first.file, first.line) == ("first_test.go", 6)
    assert first.message == "panic: runtime error: index out of range [0] with length 0 [recovered]"
    assert "goroutine" in first.details


@needs_go
def test_go_tests_that_failed_last_time_run_first(tmp_path):
    root = go_project(tmp_path)
    validator = validate(root, "go test ./...")
    assert validator.run().commands[0].tests_run == 5
    again = validator.run()
    (outcome,) = again.commands
    assert outcome.focused and outcome.tests_run == 3, "TestParse, TestSplit and TestSplit/two_spaces only"
    assert {t.id for t in outcome.failed_tests} == {"example.com/calc.TestParse",
                                                    "example.com/calc/internal/words.TestSplit/two_spaces"}
    assert "(only the tests that failed last time were run; they still fail)" in again.feedback()
    (root / "calc.go").write_text((root / "calc.go").read_text().replace("total -= value", "total += value"))
    (outcome,) = validator.run().commands
    assert outcome.focused and [t.id for t in outcome.failed_tests] == [
        "example.com/calc/internal/words.TestSplit/two_spaces"]
    words = root / "internal" / "words" / "words.go"
    words.write_text(words.read_text().replace('strings.Split(text, " ")', "strings.Fields(text)"))
    (outcome,) = validator.run().commands
    assert outcome.passed and not outcome.focused and outcome.tests_run == 5, "they pass: then the whole command ran"


@needs_go
def test_a_go_command_in_another_folder_is_not_focused_from_the_root(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(GO_CALC, root / "calc")
    validator = validate(root, "cd calc && go test ./...")
    validator.run()
    (outcome,) = validator.run().commands
    assert not outcome.focused and [t.id for t in outcome.failed_tests] == ["example.com/calc.TestParse"]


@needs_go
def test_a_go_build_failure_reads_as_go_prints_it_not_as_events(tmp_path):
    root = go_project(tmp_path, words=False)
    (root / "calc.go").write_text((root / "calc.go").read_text().replace("total := 0", "total := zero"))
    (outcome,) = validate(root, "go test ./...").run().commands
    assert not outcome.passed and outcome.failed_tests == []
    assert "undefined: zero" in outcome.excerpt and "FAIL\texample.com/calc [build failed]" in outcome.excerpt
    assert '"Action"' not in outcome.excerpt


@needs_go
def test_go_runs_chosen_tests_again_and_names_them_as_its_log_does(tmp_path):
    root = go_project(tmp_path)
    go = framework("go")
    ids = ["example.com/calc.TestParse", "example.com/calc/internal/words.TestSplit/two_spaces",
           "example.com/calc.TestParseRejectsWords"]
    assert [go.test_id_as_in_ci_logs(i) for i in ids] == ["TestParse", "TestSplit/two_spaces", "TestParseRejectsWords"]
    command = go.run_tests(ids, shuffle=True)
    assert command == ("s=0; go test -count=1 -shuffle=on -run '^(TestParse|TestParseRejectsWords)$' example.com/calc"
                       " || s=$?; go test -count=1 -shuffle=on -run '^TestSplit$/^two_spaces$' "
                       "example.com/calc/internal/words || s=$?; (exit $s)")
    ran = subprocess.run(command.replace("go test", "go test -v"), shell=True, cwd=root, capture_output=True,
                         text=True, env=os.environ | {"HOME": str(tmp_path / "home")}, check=False)
    assert ran.returncode == 1, "a failure of the first go test is the status, though the second ran"
    assert ran.stdout.count("--- FAIL: TestParse ") == 1 and ran.stdout.count("--- FAIL: TestSplit/two_spaces") == 1
    assert ran.stdout.count("--- PASS: TestParseRejectsWords") == 1 and "TestSplit/one" not in ran.stdout
    assert "-test.shuffle" in ran.stdout, "go says which shuffle seed it used"
    assert go.run_tests(ids[:1]) == "go test -count=1 -run '^(TestParse)$' example.com/calc"


@needs_node
def test_node_test_runner_junit_report(tmp_path):
    root = tmp_path / "js"
    root.mkdir()
    (root / "sum.test.js").write_text(
        "const test = require('node:test');\nconst assert = require('node:assert');\n"
        "const sum = (a, b) => a - b;\n"
        "test.describe('sum', () => {\n"
        "  test.it('adds', () => { assert.strictEqual(sum(1, 2), 3); });\n"
        "  test.it('zero', () => { assert.strictEqual(sum(0, 0), 0); });\n"
        "});\n"
        "test('top', () => { assert.ok(true); });\n")
    result = validate(root, "node --test").run()
    (outcome,) = result.commands
    (failed,) = outcome.failed_tests
    assert outcome.tests_run == 3
    assert (failed.id, failed.file, failed.line) == ("sum.test.js > sum > adds", "sum.test.js", 5)
    assert "-1 !== 3" in failed.message


@pytest.mark.parametrize("through", ["command", "config"])
def test_unittest_failures_and_errors(tmp_path, through):
    """Named by the command, or (a script nothing recognises) by the config's `tests.framework`."""
    root = tmp_path / "py"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_calc.py").write_text(
        "import unittest\n\n\nclass TestCalc(unittest.TestCase):\n    def test_add(self):\n"
        "        self.assertEqual(2 - 3, 5)\n\n    def test_boom(self):\n        raise KeyError('x')\n\n"
        "    def test_ok(self):\n        pass\n")
    (root / "check.sh").write_text(f"{sys.executable} -m unittest\n")
    validator = validate(root, "sh ./check.sh", framework="unittest") if through == "config" else validate(
        root, f"{sys.executable} -m unittest")
    (outcome,) = validator.run().commands
    assert outcome.tests_run == 3
    boom, add = outcome.failed_tests  # unittest lists errors before failures
    assert (add.id, add.file, add.line, add.message) == ("tests.test_calc.TestCalc.test_add", "tests/test_calc.py", 6,
                                                         "AssertionError: -1 != 5")
    assert (boom.id, boom.line, boom.message) == ("tests.test_calc.TestCalc.test_boom", 9, "KeyError: 'x'")
    assert framework("unittest").run_tests([add.id]) == "python -m unittest tests.test_calc.TestCalc.test_add"
    # Run again, the failing tests first, with the command's own interpreter (a script's is not known).
    (again,) = validator.run().commands
    assert (again.focused, again.tests_run) == ((True, 2) if through == "command" else (False, 3))
    assert {t.id for t in again.failed_tests} == {add.id, boom.id}


@needs_cargo
def test_cargo_test_failures_with_the_panic_location(tmp_path):
    root = tmp_path / "rs"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n')
    (root / "src" / "lib.rs").write_text(
        "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n"
        "    #[test]\n    fn adds() {\n        assert_eq!(add(2, 3), 5);\n    }\n\n"
        "    #[test]\n    fn adds_zero() {\n        assert_eq!(add(0, 0), 0);\n    }\n}\n")
    env_path = f"{Path(str(CARGO)).parent}:{os.environ['PATH']}"
    env = scrubbed_environment(os.environ) | {"PATH": env_path, "CARGO_TARGET_DIR": str(tmp_path / "target")}
    validator = Validator(["cargo test --offline"], cwd=root, env=env, timeout=300, scratch=tmp_path / "scratch")
    (outcome,) = validator.run().commands
    (failed,) = outcome.failed_tests
    assert outcome.tests_run == 2
    assert (failed.id, failed.file, failed.line) == ("tests::adds", "src/lib.rs", 11)
    assert failed.message == "assertion `left == right` failed"


JEST_REPORT = {
    "numTotalTests": 3, "numFailedTests": 1,
    "testResults": [
        {"name": "{root}/src/sum.test.js", "status": "failed", "message": "",
         "assertionResults": [
             {"ancestorTitles": ["sum"], "title": "adds", "fullName": "sum adds", "status": "failed",
              "location": None,
              "failureMessages": ["Error: \u001b[2mexpect(\u001b[22mreceived\u001b[2m).toBe(expected)\n\nExpected: 3\n"
                                  "Received: -1\n    at Object.<anonymous> ({root}/src/sum.test.js:4:17)\n"
                                  "    at Promise.then.completed "
                                  "({root}/node_modules/jest-circus/build/utils.js:298:28)"]},
             {"ancestorTitles": ["sum"], "title": "zero", "fullName": "sum zero", "status": "passed",
              "failureMessages": []}]},
        {"name": "{root}/src/broken.test.js", "status": "failed", "assertionResults": [],
         "message": "  ● Test suite failed to run\n\n    SyntaxError: Unexpected token (3:4)\n"
                    "      at ({root}/src/broken.test.js:3:4)"}]}


@pytest.mark.parametrize("name", ["jest", "vitest"])
def test_jest_and_vitest_json_reports(tmp_path, name):
    """The report is written by hand in the tools' format (Vitest's JSON reporter has Jest's)."""
    root = tmp_path / "js"
    root.mkdir()
    adapter = framework(name)
    run = run_at(tmp_path, root)
    command, _ = adapter.prepare("npx " + name + (" run" if name == "vitest" else "") + " src", {}, run)
    report = run.report.with_suffix(".json")
    assert command == {
        "jest": f"npx jest --json --outputFile={report} src",
        "vitest": f"npx vitest run --reporter=default --reporter=json --outputFile.json={report} src"}[name]
    report.parent.mkdir()
    report.write_text(json.dumps(JEST_REPORT).replace("{root}", str(root)))
    results = adapter.results(run, "")
    assert results is not None and results.tests_run == 3
    adds, broken = results.failed
    assert (adds.id, adds.file, adds.line) == ("src/sum.test.js > sum > adds", "src/sum.test.js", 4)
    assert adds.message == "Error: expect(received).toBe(expected)"
    assert (broken.id, broken.file, broken.line) == ("src/broken.test.js", "src/broken.test.js", 3)
    assert adapter.test_id_as_in_ci_logs(adds.id) == {"jest": "sum › adds", "vitest": adds.id}[name]


SUREFIRE = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.CalcTest" tests="2" failures="1" errors="0" skipped="0">
  <testcase name="parses" classname="com.example.CalcTest" time="0.01">
    <failure message="expected: &lt;6&gt; but was: &lt;-6&gt;" type="org.opentest4j.AssertionFailedError">\
org.opentest4j.AssertionFailedError: expected: &lt;6&gt; but was: &lt;-6&gt;
	at org.junit.jupiter.api.AssertionUtils.fail(AssertionUtils.java:55)
	at com.example.CalcTest.parses(CalcTest.java:12)
</failure>
  </testcase>
  <testcase name="rejectsWords" classname="com.example.CalcTest" time="0.001"/>
</testsuite>
"""


@pytest.mark.parametrize(("name", "report", "in_ci_logs"), [
    ("maven", "target/surefire-reports/TEST-com.example.CalcTest.xml", "CalcTest.parses"),
    ("gradle", "build/test-results/test/TEST-com.example.CalcTest.xml", "CalcTest > parses"),
])
def test_jvm_junit_reports_written_during_the_run(tmp_path, name, report, in_ci_logs):
    """Surefire's and Gradle's reports (by hand, in their format); one left from an earlier run is ignored."""
    root = tmp_path / "jvm"
    (root / "src/test/java/com/example").mkdir(parents=True)
    (root / "src/test/java/com/example/CalcTest.java").write_text("class CalcTest {}\n")
    stale = root / report.replace("CalcTest", "OldTest")
    stale.parent.mkdir(parents=True)
    stale.write_text(SUREFIRE.replace("CalcTest", "OldTest"))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    adapter = framework(name)
    run = run_at(tmp_path, root)
    assert adapter.results(run, "") is None, "only an earlier run's report"
    (root / report).write_text(SUREFIRE)
    results = adapter.results(run, "")
    assert results is not None and results.tests_run == 2
    (failed,) = results.failed
    assert (failed.id, failed.file, failed.line) == ("com.example.CalcTest.parses",
                                                     "src/test/java/com/example/CalcTest.java", 12)
    assert failed.message == "expected: <6> but was: <-6>"
    assert adapter.test_id_as_in_ci_logs(failed.id) == in_ci_logs


def test_the_framework_comes_from_the_command_then_the_config_then_the_repository(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    assert choose("make test", root).name == "pytest", "nothing says: pytest, as before adapters"
    (root / "go.mod").write_text("module example.com/x\n")
    assert choose("make test", root).name == "go"
    assert choose("make test", root, "cargo").name == "cargo"
    assert choose("cd web && npx vitest run", root, "cargo").name == "vitest"
    assert choose("python -m pytest -q", root).name == "pytest"
    assert choose("python -m unittest discover", root).name == "unittest"
    assert choose("./mvnw -q verify", root).name == "maven"
    assert choose("node --experimental-vm-modules --test", root).name == "node"
    (root / "package.json").write_text('{"devDependencies": {"jest": "^29"}}')
    (root / "go.mod").unlink()
    assert choose("npm test", root).name == "jest"


def test_the_config_names_every_framework_there_is():
    assert set(get_args(TestFramework)) == {"auto", *NAMES}


def test_a_run_template_from_the_config_runs_chosen_tests(tmp_path):
    adapter = framework("go", run="make test TESTS={tests}")
    assert adapter.run_tests(["pkg.TestA", "pkg.TestB/x y"]) == "make test TESTS=pkg.TestA 'pkg.TestB/x y'"
    assert adapter.run_tests(["pkg.TestA"], shuffle=True) is None, "a template cannot shuffle"


def test_commands_for_chosen_tests_where_the_framework_allows():
    ids = ["tests/test_calc.py::test_add", "tests/test_x.py::TestX::test_y[a b]"]
    assert framework("pytest").run_tests(ids) == (
        "python -m pytest -p no:cacheprovider -p no:randomly -q --tb=short --maxfail=0 --continue-on-collection-errors "
        "--rootdir=. tests/test_calc.py::test_add 'tests/test_x.py::TestX::test_y[a b]'")
    assert framework("cargo").run_tests(["tests::adds"]) == "cargo test -- --exact tests::adds"
    assert framework("jest").run_tests(["src/sum.test.js > sum > adds", "sum › subtracts"]) == (
        "npx jest --runInBand -t '^(?:sum adds|sum subtracts)$' src/sum.test.js")
    assert framework("vitest").run_tests(["src/sum.test.ts > sum > adds"]) == (
        "npx vitest run --no-file-parallelism -t '^(?:sum adds)$' src/sum.test.ts")
    assert framework("node").run_tests(["sum.test.js > sum > adds"]) == (
        "node --test --test-name-pattern='^(?:adds)$' sum.test.js")
    by_name = ("mvn --batch-mode --offline test -Dsurefire.failIfNoSpecifiedTests=false -DfailIfNoTests=false "
               "-Dsurefire.runOrder=alphabetical "
               "-Djunit.jupiter.testmethod.order.default='org.junit.jupiter.api.MethodOrderer$MethodName'")
    assert framework("maven").run_tests(["pkg.CalcTest.parse", "CalcTest > adds()", "pkg.CalcTest.sums(int)[2]",
                                         "pkg.Other$Inner.works", "pkg.FibTest.test[1: fib(1.5)=2.0]"]) == (
        f"{by_name} -Dtest='pkg.CalcTest#parse+sums,CalcTest#adds,pkg.Other$Inner#works,pkg.FibTest#test'")
    assert "-Dsurefire.runOrder=random" in (framework("maven").run_tests(["pkg.A.b"], shuffle=True) or "")
    assert framework("gradle").run_tests(["pkg.CalcTest.parse"]) is None, "no way known without tests.run: none"
    assert framework("go").run_tests([]) is None


def test_maven_runs_read_their_own_reports_only_and_leave_none_behind(tmp_path):
    """fixloop names each run's reports (Surefire adds the name to the class too); another run's reports
    written at the same moment are not read, and a build that fails before any test ran no test."""
    root = tmp_path / "jvm"
    reports = root / "target" / "surefire-reports"
    reports.mkdir(parents=True)
    adapter = framework("maven")
    run = run_at(tmp_path, root)
    command, env = adapter.prepare("mvn -q test", {"MAVEN_OPTS": "-Xmx1g"}, run)
    suffix = env["MAVEN_OPTS"].split("-Dsurefire.reportNameSuffix=")[1]
    assert command == "mvn -q test" and env["MAVEN_OPTS"].startswith("-Xmx1g ")
    (reports / "TEST-com.example.CalcTest.xml").write_text(SUREFIRE.replace("CalcTest", "OtherRunTest"))
    (reports / f"TEST-com.example.CalcTest-{suffix}.xml").write_text(
        SUREFIRE.replace('classname="com.example.CalcTest"', f'classname="com.example.CalcTest({suffix})"'))
    (reports / f"com.example.CalcTest-{suffix}.txt").write_text("summary\n")
    (reports / f"com.example.CalcTest-{suffix}-output.txt").write_text("printed\n")
    results = adapter.results(run, "")
    assert results is not None and results.ran == ("com.example.CalcTest.parses", "com.example.CalcTest.rejectsWords")
    assert [f.id for f in results.failed] == ["com.example.CalcTest.parses"]
    assert sorted(p.name for p in reports.iterdir()) == ["TEST-com.example.CalcTest.xml"]
    later = run_at(tmp_path, root)
    os.utime(reports / "TEST-com.example.CalcTest.xml", (time.time() - 3600, time.time() - 3600))
    assert adapter.results(later, "[ERROR] No tests matching pattern \"X#y\" were executed!") == Results(0)
    assert adapter.results(later, "[INFO] BUILD SUCCESS") == Results(0), "another module had them, none here"
    assert adapter.results(later, "some script's output") is None, "not Maven's output: nothing to read"


def test_each_framework_knows_its_tests_by_the_names_ci_logs_give_them():
    go, jest, pytest_, maven = framework("go"), framework("jest"), framework("pytest"), framework("maven")
    case = "example.com/calc/parser.TestParse/empty_input"
    assert go.matches("TestParse", case) and go.matches("example.com/calc/parser.TestParse", case)
    assert go.matches("parser.TestParse", case) and go.matches("TestParse/empty_input", case)
    assert not go.matches("TestPar", case) and not go.matches("other.TestParse", case)
    assert not go.matches("TestParse/empty", case) and not go.matches("empty_input", case)
    jest_case = "src/sum.test.js > sum > adds"
    assert jest.matches("sum › adds", jest_case) and jest.matches("adds", jest_case)
    assert jest.matches("src/sum.test.js", jest_case) and jest.matches("./src/sum.test.js > sum", jest_case)
    assert not jest.matches("sum › subtracts", jest_case) and not jest.matches("other.test.js > sum > adds", jest_case)
    assert pytest_.matches("./tests/test_x.py::TestX", "tests/test_x.py::TestX::test_y[a]")
    assert not pytest_.matches("tests/test_x.py::test_y", "tests/test_x.py::test_y2")
    assert maven.matches("CalcTest.parse", "com.example.CalcTest.parse")
    assert maven.matches("CalcTest > parse()", "com.example.CalcTest.parse")
    assert not maven.matches("CalcTest.parse", "com.example.OtherCalcTest.parse")


@pytest.mark.parametrize(("script", "command", "expected"), [
    ("jest --coverage", "npm test", "npm test -- --json --outputFile={report}"),
    ("eslint . && jest", "npm run test", "npm run test -- --json --outputFile={report}"),
    ("jest", "yarn test", "yarn test --json --outputFile={report}"),
    ("jest && eslint .", "npm test", "npm test"),  # the flags would go to eslint
    ("mocha", "npm test", "npm test"),
])
def test_npm_test_gets_jests_reporter_flags_when_its_script_ends_in_jest(tmp_path, script, command, expected):
    (tmp_path / "package.json").write_text(json.dumps({"scripts": {"test": script}, "devDependencies": {"jest": "29"}}))
    run = run_at(tmp_path, tmp_path)
    prepared, _ = framework("jest").prepare(command, {}, run)
    assert prepared == expected.format(report=run.report.with_suffix(".json"))
