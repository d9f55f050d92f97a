"""Sessions from CI failures, end to end through `fixloop action`: evidence from the failed job's log
(compared with the last green run's), triage of the failing tests with real reruns, and the right
session: a fix for a regression, a deflake validated by repeated runs for a flaky test, and only
a comment for a failure that does not reproduce."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from bot.cli import main
from bot.deflake import papering_over
from tests.conftest import run_git
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, text
from tests.fixtures import load_payload
from tests.test_action_e2e import REPO, Runner, checks

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"
FLAKY_TEST = '''import os
import tempfile
from pathlib import Path


def test_sometimes():
    # Each run claims the next free number with an exclusive create, so parallel reruns never share one.
    # The numbers live in the temporary folder, which runs of one session share (fixloop gives them their own).
    folder = Path(tempfile.gettempdir()) / "flaky-counter"
    folder.mkdir(exist_ok=True)
    runs = 0
    while True:
        try:
            os.close(os.open(folder / str(runs), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            runs += 1
    assert runs % 2 == 1, "fails on every other run"
'''
FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "test_flaky.py": FLAKY_TEST,
    ".github/fixloop.yml": f"validate: [{PYTEST}]\nci: {{auto: true}}\nlimits: {{iterations: 2}}\n",
}


# The fix a careful engineer makes: no state shared between runs.
STABLE_TEST = "def test_sometimes():\n    assert sum(range(4)) == 6\n"


def actions_log(lines: list[str]) -> str:
    stamp = "2026-11-20T10:00:{:02d}.1234567Z"
    body = ["##[group]Run python -m pytest", *[f"collected line {i}" for i in range(3000)], *lines]
    return "\n".join(stamp.format(i % 60) + " " + line for i, line in enumerate(body)) + "\n"


GREEN_LOG = actions_log(["test_calc.py .", "test_flaky.py .", "2 passed in 0.03s", "##[endgroup]"])


def failing_log(test: str, message: str) -> str:
    return actions_log([
        "test_calc.py F", "=================================== FAILURES ===================================",
        f"E       {message}", "=========================== short test summary info ============================",
        f"FAILED {test} - {message}", "1 failed, 1 passed in 0.05s", "##[endgroup]",
        "##[error]Process completed with exit code 1.",
    ])


@pytest.fixture
def ci(request, tmp_path, fake_github, monkeypatch):
    """A repository with FILES (a test may add config lines with @pytest.mark.config("...")."""
    extra = request.node.get_closest_marker("config")
    files = {**FILES, ".github/fixloop.yml": FILES[".github/fixloop.yml"] + (extra.args[0] if extra else "")}
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=files)
        fake_github.add_workflow(REPO, "ci.yml", name="CI")
        yield runner
        assert api.violations == []


def commit_and_push(runner: Runner, path: str, content: str) -> str:
    workspace = runner.origin.workspace
    (workspace / path).write_text(content)
    run_git(workspace, "commit", "-qam", f"change {path}")
    run_git(workspace, "push", "-q", "origin", "main")
    return run_git(workspace, "rev-parse", "HEAD").strip()


def failed_run(runner: Runner, sha: str, log: str) -> dict:
    github = runner.github
    green = github.add_workflow_run(REPO, "ci.yml", conclusion="success", head_branch="main",
                                    head_sha=runner.origin.head)
    github.add_job(green, "tests", conclusion="success", log_text=GREEN_LOG)
    failed = github.add_workflow_run(REPO, "ci.yml", conclusion="failure", head_branch="main", head_sha=sha)
    github.add_job(failed, "lint", conclusion="success", log_text="all good\n")
    github.add_job(failed, "tests", conclusion="failure", log_text=log,
                   steps=[{"name": "Run tests", "status": "completed", "conclusion": "failure", "number": 1}])
    payload = load_payload("workflow_run.completed")
    payload["workflow_run"].update(id=failed, conclusion="failure", name="CI", path=".github/workflows/ci.yml",
                                   head_branch="main", head_sha=sha, head_repository={"full_name": REPO})
    payload["sender"]["login"] = "maintainer"
    return payload


def test_a_regression_gets_a_fix_built_on_the_evidence(ci):
    sha = commit_and_push(ci, "calc.py", "def add(a, b):\n    return a - b\n")
    ci.api.push(Reply([edit("str_replace", "calc.py", old_str="a - b", new_str="a + b")]),
                Reply([text("Restored addition.")]))
    assert ci.run("workflow_run", failed_run(ci, sha, failing_log("test_calc.py::test_add", "assert -1 == 5"))) == 0
    prompt = ci.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "FAILED test_calc.py::test_add - assert -1 == 5" in prompt, "the evidence reached the model"
    assert "collected line 1500" not in prompt, "the raw log did not"
    assert "`test_calc.py::test_add`: regression" in prompt
    (pull,) = ci.github.pulls(REPO)
    assert "### The CI failure" in pull.body and "regression" in pull.body
    assert "Process completed with exit code 1" in checks(ci.github)["fixloop"].output_text


@pytest.mark.config("deflake: {confidence: 0.8, max_failure_rate: 0.2}\n")
def test_a_flaky_test_gets_a_deflake_validated_by_repeated_runs(ci):
    ci.api.push(Reply([edit("create", "test_flaky.py", file_text=STABLE_TEST)]),
                Reply([text("The assertion depended on the run count.")]))
    payload = failed_run(ci, ci.origin.head,
                         failing_log("test_flaky.py::test_sometimes", "AssertionError: fails on every other run"))
    assert ci.run("workflow_run", payload) == 0
    prompt = ci.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "`test_flaky.py::test_sometimes`: flaky" in prompt and "Do not add retries, sleeps or skip markers" in prompt
    (pull,) = ci.github.pulls(REPO)
    assert "8 consecutive passes" in pull.body and "80% confidence" in pull.body
    assert "fixloop repeat test_flaky.py::test_sometimes" in pull.body


@pytest.mark.config("deflake: {confidence: 0.75}\n")  # 14 passes decide, not 29
def test_a_failure_that_does_not_reproduce_gets_evidence_not_a_change(ci):
    payload = failed_run(ci, ci.origin.head, failing_log("test_calc.py::test_add", "ConnectionResetError: [Errno 104]"))
    assert ci.run("workflow_run", payload) == 0
    assert ci.api.requests == [], "no model call"
    assert ci.github.pulls(REPO) == []
    run = checks(ci.github)["fixloop"]
    assert run.conclusion == "neutral" and run.output_title.startswith("Could not reproduce")
    assert "ConnectionResetError" in run.output_summary and "passes" in run.output_summary


@pytest.mark.config("deflake: {confidence: 0.9, max_failure_rate: 0.3}\n")
def test_the_deflake_command_triages_then_deflakes_to_the_configured_confidence(ci):
    ci.api.push(Reply([edit("create", "test_flaky.py", file_text=STABLE_TEST)]), Reply([text("Deterministic now.")]))
    assert ci.run("issue_comment", ci.comment("/fixloop deflake test_flaky.py::test_sometimes", ci.issue)) == 0
    (pull,) = ci.github.pulls(REPO)
    assert "7 consecutive passes" in pull.body and "90% confidence" in pull.body and "below 30%" in pull.body
    # The deflake session replays (fixloop replay): its repeated runs again, its change byte for byte.
    calls = len(ci.api.requests)
    assert main(["replay", ci.outputs_map()["session-dir"], "--repo", str(ci.origin.workspace)]) == 0
    assert len(ci.api.requests) == calls


def test_a_deflake_that_papers_over_is_refused_with_a_reason(ci):
    hidden = "import pytest\n\n\n@pytest.mark.flaky(reruns=3)\n" + STABLE_TEST
    ci.api.push(Reply([edit("create", "test_flaky.py", file_text=hidden)]), Reply([text("Added a retry.")]),
                Reply([text("I give up.")]))
    assert ci.run("issue_comment", ci.comment("/fixloop deflake test_flaky.py::test_sometimes", ci.issue),
                  FIXLOOP_MAX_ITERATIONS="2") == 1
    feedback = ci.api.requests[2].body["messages"][-1]["content"]
    said = " ".join(block.get("text", "") for block in feedback if block["type"] == "text")
    assert "no retries, sleeps or skip markers" in said and "@pytest.mark.flaky(reruns=3)" in said
    assert ci.github.pulls(REPO) == []


def test_papering_over_finds_added_retries_sleeps_and_skips_only():
    patch = "\n".join([
        "--- a/tests/test_x.py", "+++ b/tests/test_x.py", "@@ -10,3 +10,5 @@",
        " def helper():", "-    time.sleep(1)", "+    time.sleep(2)", "+    value = compute()", "     return value",
        "+@pytest.mark.skip(reason='flaky')", "--- a/src/app.py", "+++ b/src/app.py", "@@ -1,1 +1,2 @@",
        " import os", "+from tenacity import retry",
    ])
    assert papering_over(patch) == [
        "tests/test_x.py:11: time.sleep(2)",
        "tests/test_x.py:14: @pytest.mark.skip(reason='flaky')",
        "src/app.py:2: from tenacity import retry",
    ]
    assert papering_over("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-time.sleep(1)\n+pass\n") == []


# ------------------------------------------------------------------ beyond pytest: Go and node --test
PROJECTS = Path(__file__).parent / "fixtures" / "projects"
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (.ci/run installs golang-go)")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (.ci/run installs nodejs)")
# What jvm-stock's pom.xml builds with, offline: Maven resolves nothing without a network.
M2 = Path.home() / ".m2" / "repository"
MAVEN_OFFLINE = [M2 / "org/apache/maven/plugins" / plugin / version / f"{plugin}-{version}.jar" for plugin, version in (
    ("maven-resources-plugin", "3.3.1"), ("maven-compiler-plugin", "3.13.0"), ("maven-surefire-plugin", "3.2.5"))]
MAVEN_OFFLINE.append(M2 / "org/junit/jupiter/junit-jupiter-engine/5.10.2/junit-jupiter-engine-5.10.2.jar")
needs_maven = pytest.mark.skipif(
    shutil.which("mvn") is None or shutil.which("javac") is None or not all(p.is_file() for p in MAVEN_OFFLINE),
    reason="Maven and a JDK (.ci/run installs them) and, in ~/.m2, the plugins of the fixture's pom.xml (there is no "
           "network to fetch them) are needed")


def project_files(name: str, config: str) -> dict[str, str]:
    root = PROJECTS / name
    files = {path.relative_to(root).as_posix(): path.read_text() for path in root.rglob("*") if path.is_file()}
    return files | {".github/fixloop.yml": config}


@pytest.fixture
def polyglot(tmp_path, fake_github, monkeypatch):
    """A repository made of one of the fixture projects (`polyglot(name, config, changes)`: files replaced,
    or removed where None)."""
    with MessagesAPIServer() as api:
        def make(name: str, config: str, changes: Mapping[str, str | None] | None = None) -> Runner:
            files = project_files(name, config) | dict(changes or {})
            runner = Runner(tmp_path, fake_github, api, monkeypatch,
                            files={path: text for path, text in files.items() if text is not None})
            fake_github.add_workflow(REPO, "ci.yml", name="CI")
            return runner
        yield make
        assert api.violations == []


@needs_go
def test_a_go_regression_from_ci_gets_a_fix_validated_by_go_test(polyglot):
    ci = polyglot("go-inventory", "validate: [go test ./stock/...]\nci: {auto: true}\nlimits: {iterations: 2}\n")
    log = actions_log(["=== RUN   TestTotal", "    stock_test.go:7: Total([2 3 4]) = 7, want 9",
                       "--- FAIL: TestTotal (0.00s)", "FAIL", "FAIL\texample.com/inventory/stock\t0.004s", "FAIL",
                       "##[endgroup]", "##[error]Process completed with exit code 1."])
    ci.api.push(Reply([edit("str_replace", "stock/stock.go", old_str="i := 1", new_str="i := 0")]),
                Reply([text("The loop skipped the first count.")]))
    assert ci.run("workflow_run", failed_run(ci, ci.origin.head, log)) == 0
    prompt = ci.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "--- FAIL: TestTotal" in prompt and "`TestTotal`: regression (5/5 runs failed)" in prompt
    (pull,) = ci.github.pulls(REPO)
    assert "regression" in pull.body and "i := 0" in ci.origin.show(pull.pull.head_ref, "stock/stock.go")


@needs_go
def test_a_go_order_dependent_test_from_ci_gets_a_deflake_run_after_its_polluter(polyglot):
    ci = polyglot("go-inventory", "validate: [go test ./warehouse/...]\nci: {auto: true}\nlimits: {iterations: 2}\n"
                                  "deflake: {confidence: 0.9, max_failure_rate: 0.3}\n")
    log = actions_log(["--- FAIL: TestStartsEmpty (0.00s)",
                       "    warehouse_test.go:18: 1 warehouses registered before any test registered one",
                       "FAIL\texample.com/inventory/warehouse\t0.003s", "##[error]Process completed with exit code 1."])
    start = "func TestStartsEmpty(t *testing.T) {"
    ci.api.push(Reply([edit("str_replace", "warehouse/warehouse_test.go", old_str=start,
                            new_str=start + "\n\twarehouses = map[string]int{}")]),
                Reply([text("The test now starts from an empty registry.")]))
    assert ci.run("workflow_run", failed_run(ci, ci.origin.head, log)) == 0
    prompt = ci.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "`TestStartsEmpty`: order_dependent" in prompt
    assert "polluter `example.com/inventory/warehouse.TestRegisterWarehouse`" in prompt
    (pull,) = ci.github.pulls(REPO)
    polluter = "example.com/inventory/warehouse.TestRegisterWarehouse"
    assert f"7 consecutive passes in go's own order, always after {polluter}" in pull.body


@needs_node
def test_a_flaky_node_test_from_ci_gets_a_deflake_validated_by_repeated_runs(polyglot):
    ci = polyglot("node-cart", "validate: [node --test payment.test.js]\nci: {auto: true}\nlimits: {iterations: 2}\n"
                               "deflake: {confidence: 0.9, max_failure_rate: 0.3}\n")
    # The log as CI has it: node's own output (TAP, as where no terminal is attached), from a copy.
    copy = shutil.copytree(PROJECTS / "node-cart", ci.origin.workspace.parent / "node-cart-ci")
    output = subprocess.run(["node", "--test", "payment.test.js"], cwd=copy, capture_output=True, text=True,
                            timeout=120, check=False).stdout
    assert "not ok 1 - reserves payment in time" in output
    log = actions_log([*output.splitlines(), "##[error]Process completed with exit code 1."])
    stable = "const test = require('node:test');\nconst assert = require('node:assert');\n\n" \
             "test('reserves payment in time', () => {\n  assert.ok(true);\n});\n"
    ci.api.push(Reply([edit("create", "payment.test.js", file_text=stable)]), Reply([text("No shared counter now.")]))
    assert ci.run("workflow_run", failed_run(ci, ci.origin.head, log)) == 0
    prompt = ci.api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "`reserves payment in time`: flaky" in prompt and "Do not add retries, sleeps or skip markers" in prompt
    (pull,) = ci.github.pulls(REPO)
    assert "7 consecutive passes" in pull.body and "90% confidence" in pull.body


def test_a_failure_whose_tests_fixloop_cannot_rerun_gets_a_fix_session_that_says_triage_was_skipped(polyglot):
    """A Gradle project without `tests.run`: fixloop cannot run one Gradle test by itself. The failure (named
    from Gradle's log) still gets a fix session built on the log's evidence, and the triage note says plainly
    that triage was skipped and why; nothing crashes."""
    ci = polyglot("jvm-stock", "validate: [\"grep -q 'int i = 0' src/main/java/com/example/inventory/Stock.java\"]\n"
                               "ci: {auto: true}\nlimits: {iterations: 2}\n",
                  {"pom.xml": None, ".mvn/jvm.config": None,
                   "build.gradle": "plugins { id 'java' }\nrepositories { mavenCentral() }\n"
                                   "dependencies { testImplementation 'org.junit.jupiter:junit-jupiter:5.10.2' }\n"
                                   "test { useJUnitPlatform() }\n"})
    log = actions_log([
        "> Task :test", "", "StockTest > totals() FAILED",
        "    org.opentest4j.AssertionFailedError: expected: <9> but was: <7>",
        "        at app//com.example.inventory.StockTest.totals(StockTest.java:10)", "",
        "1 test completed, 1 failed", "", "> Task :test FAILED", "", "FAILURE: Build failed with an exception.",
        "##[error]Process completed with exit code 1."])
    prompt = fix_stock_from_ci(ci, log)
    assert "Triage skipped: the failing tests could not be rerun:" in prompt
    assert "fixloop cannot run chosen gradle tests by itself; set `tests.run`" in prompt
    assert "expected: <9> but was: <7>" in prompt, "the log's evidence reached the model"
    (pull,) = ci.github.pulls(REPO)
    assert "Triage skipped" in pull.body and "int i = 0" in ci.origin.show(pull.pull.head_ref, STOCK)


@needs_maven
def test_a_maven_failure_is_triaged_by_rerunning_junit_tests_and_its_regression_fixed(polyglot):
    """Surefire's log names three failing tests; fixloop reruns them with Maven, offline and confined: one
    fails every time (a regression), one fails only after the test that changes a shared currency (order
    dependent, its polluter found by bisection), one fails every other run (flaky). The regression gets a
    fix session. (Maven runs cost seconds each: a low confidence, and a validation that needs no build.)"""
    ci = polyglot("jvm-stock", f"validate: [\"grep -q 'int i = 0' {STOCK}\"]\ntests: {{framework: maven}}\n"
                               "ci: {auto: true}\nlimits: {iterations: 2}\ndeflake: {confidence: 0.8}\n")
    log = actions_log([
        "[INFO] Running com.example.inventory.PriceTest",
        "[ERROR] Tests run: 1, Failures: 1, Errors: 0, Skipped: 0, Time elapsed: 0.049 s <<< FAILURE! -- in "
        "com.example.inventory.PriceTest",
        "[ERROR] com.example.inventory.PriceTest.formatsInDollars -- Time elapsed: 0.031 s <<< FAILURE!",
        "org.opentest4j.AssertionFailedError: prices are in dollars unless a test chose otherwise ==> "
        "expected: <$2.50> but was: <EUR 2.50>",
        "\tat com.example.inventory.PriceTest.formatsInDollars(PriceTest.java:10)",
        "[INFO] Running com.example.inventory.ReservationTest",
        "[ERROR] com.example.inventory.ReservationTest.reservesInTime -- Time elapsed: 0.034 s <<< FAILURE!",
        "org.opentest4j.AssertionFailedError: reservation service did not answer within 50ms ==> "
        "expected: <true> but was: <false>",
        "[INFO] Running com.example.inventory.StockTest",
        "[ERROR] com.example.inventory.StockTest.totals -- Time elapsed: 0.025 s <<< FAILURE!",
        "org.opentest4j.AssertionFailedError: expected: <9> but was: <7>",
        "\tat com.example.inventory.StockTest.totals(StockTest.java:10)",
        "[ERROR] Tests run: 8, Failures: 3, Errors: 0, Skipped: 0", "[INFO] BUILD FAILURE",
        "##[error]Process completed with exit code 1."])
    prompt = fix_stock_from_ci(ci, log)
    assert "`com.example.inventory.StockTest.totals`: regression (3/3 runs failed)" in prompt
    assert "`com.example.inventory.PriceTest.formatsInDollars`: order_dependent" in prompt
    assert "polluter `com.example.inventory.LedgerTest.recordsInEuros`" in prompt
    assert "`com.example.inventory.ReservationTest.reservesInTime`: flaky" in prompt
    (pull,) = ci.github.pulls(REPO)
    assert "regression" in pull.body and "int i = 0" in ci.origin.show(pull.pull.head_ref, STOCK)
    assert "target/" not in run_git(ci.origin.bare, "show", "--stat", "--format=", pull.pull.head_ref)


STOCK = "src/main/java/com/example/inventory/Stock.java"


def fix_stock_from_ci(ci: Runner, log: str) -> str:
    """A CI failure with `log` on jvm-stock, whose session fixes Stock.total's loop; the first prompt."""
    ci.api.push(Reply([edit("str_replace", STOCK, old_str="int i = 1", new_str="int i = 0")]),
                Reply([text("The loop skipped the first count.")]))
    assert ci.run("workflow_run", failed_run(ci, ci.origin.head, log)) == 0
    return ci.api.requests[0].body["messages"][0]["content"][0]["text"]
