import os
import shlex
import sys
from pathlib import Path
from xml.etree.ElementTree import ParseError

import pytest

from bot.secrets import scrubbed_environment
from bot.validation import FEEDBACK_LIMIT, Validator, parse_junit, relevant_excerpt

PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q"

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TESTS = """\
from calc import add, mul


def test_add():
    assert add(2, 3) == 5


class TestMul:
    def test_mul(self):
        assert mul(2, 3) == 6

    def test_mul_zero(self):
        assert mul(0, 3) == 0
"""


def project(tmp_path: Path, calc: str = CALC) -> Path:
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text(calc)
    (root / "tests" / "test_calc.py").write_text(TESTS)
    return root


def validator(root: Path, commands: list[str], timeout: float = 60) -> Validator:
    env = scrubbed_environment(os.environ) | {"PYTHONPATH": str(root)}
    return Validator(commands, cwd=root, env=env, timeout=timeout, scratch=root.parent / "scratch")


def test_pytest_failures_come_back_as_test_ids_with_location_and_message(tmp_path):
    result = validator(project(tmp_path), [PYTEST]).run()
    assert not result.passed
    (outcome,) = result.commands
    assert outcome.tests_run == 3 and outcome.exit_code == 1
    (failed,) = result.failed_tests
    assert failed.id == "tests/test_calc.py::test_add"
    assert (failed.file, failed.line) == ("tests/test_calc.py", 5)
    assert "assert -1 == 5" in failed.message
    feedback = result.feedback()
    assert "FAILED tests/test_calc.py::test_add (tests/test_calc.py:5)" in feedback
    assert "1 test(s) of 3 failed" in feedback


def test_class_based_test_ids(tmp_path):
    root = project(tmp_path, CALC.replace("a * b", "a + b"))
    ids = [t.id for t in validator(root, [PYTEST]).run().failed_tests]
    assert "tests/test_calc.py::TestMul::test_mul" in ids and "tests/test_calc.py::TestMul::test_mul_zero" in ids


def test_previously_failing_tests_run_first_and_stop_early(tmp_path):
    root = project(tmp_path)
    check = validator(root, [PYTEST])
    assert not check.run().passed
    second = check.run()
    (outcome,) = second.commands
    assert outcome.focused and outcome.tests_run == 1, "only the failing test should have been rerun"
    assert "only the tests that failed last time were run" in second.feedback()
    (root / "calc.py").write_text(CALC.replace("a - b", "a + b"))
    third = check.run()
    assert third.passed
    assert third.commands[0].tests_run == 3 and not third.commands[0].focused


def test_other_commands_report_exit_code_and_relevant_output(tmp_path):
    root = project(tmp_path)
    noisy = ("for i in $(seq 1 3000); do echo line $i; done; echo 'error: widget broke' >&2; "
             "for i in $(seq 1 3000); do echo more $i; done; exit 2")
    result = validator(root, ["true", noisy]).run()
    assert not result.passed
    ok, bad = result.commands
    assert ok.passed and not bad.passed and bad.exit_code == 2
    assert "error: widget broke" in bad.excerpt
    assert "more 3000" in bad.excerpt
    assert len(bad.excerpt) < 5_000


def test_timeout_is_reported(tmp_path):
    result = validator(project(tmp_path), ["sleep 10"], timeout=0.5).run()
    (outcome,) = result.commands
    assert outcome.timed_out and outcome.exit_code is None and not result.passed
    assert "timeout" in result.feedback()


def test_passing_run_has_no_failures_and_short_feedback(tmp_path):
    root = project(tmp_path, CALC.replace("a - b", "a + b"))
    result = validator(root, [PYTEST]).run()
    assert result.passed and result.failed_tests == [] and result.feedback() == "Validation passed."


def test_feedback_is_bounded_even_with_many_failures(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    body = "\n".join(f"def test_{i}():\n    assert 'x' * 500 == 'y' * 500\n" for i in range(60))
    (root / "test_many.py").write_text(body)
    result = validator(root, [PYTEST]).run()
    assert len(result.failed_tests) == 60
    feedback = result.feedback()
    assert len(feedback) <= FEEDBACK_LIMIT + 100
    assert "Also failed:" in feedback


def test_relevant_excerpt_keeps_short_output_whole():
    assert relevant_excerpt("a\nb\n") == "a\nb"


def test_parse_junit_accepts_a_bare_testsuite_and_rejects_a_truncated_report(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuite name="s"><testcase classname="pkg.test_x.TestY" name="test_z" file="pkg/test_x.py">'
        '<error message="boom">pkg/test_x.py:7: RuntimeError</error></testcase>'
        '<testcase classname="pkg.test_x" name="test_ok" file="pkg/test_x.py"/></testsuite>'
    )
    ran, (failed,) = parse_junit(report)
    assert ran == ["pkg/test_x.py::TestY::test_z", "pkg/test_x.py::test_ok"]
    assert ((failed.id, failed.file, failed.line, failed.message)
            == ("pkg/test_x.py::TestY::test_z", "pkg/test_x.py", 7, "boom"))
    report.write_text('<testsuites><testsuite name="s"><testcase name="a"><failure message="m">cut')
    with pytest.raises(ParseError):
        parse_junit(report)
