"""A validation command whose failing test prints 300 MB: the run completes, the model's feedback
stays short and still names the failure, and the validating process does not hold the output.

The validation runs in a subprocess of its own so that its peak memory is its own, not the test
runner's, whose high-water mark earlier tests may already have raised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.secrets import scrubbed_environment
from bot.validation import FEEDBACK_LIMIT

ROOT = Path(__file__).resolve().parents[1]
MEGABYTES = 300
NOISY = f"""\
import sys


def test_noisy():
    chunk = "x" * (1024 * 1024 - 1) + "\\n"
    for _ in range({MEGABYTES}):
        sys.stdout.write(chunk)
    assert 41 + 1 == 43, "the answer drifted"
"""
# The repository asks for the captured output in its JUnit reports, as CI setups often do: without
# fixloop overriding that, the report pytest writes for fixloop would be as big as the output.
PYTEST_INI = "[pytest]\njunit_logging = system-out\n"
# Runs the Validator and reports, as JSON, its feedback, the output size run_shell saw (spied on,
# not changed), the process's memory before and its peak after (tests/memory.py, KiB), and pytest's.
VALIDATE = """\
import json, resource, sys
from pathlib import Path
import bot.validation as validation
from tests.memory import memory_kb

sizes = []
run_shell = validation.run_shell

def spy(*args, **kwargs):
    result = run_shell(*args, **kwargs)
    sizes.append(result.output_bytes)
    return result

validation.run_shell = spy
root = Path(sys.argv[1])
check = validation.Validator([sys.executable + " -m pytest -q"], cwd=root, env=json.loads(sys.argv[2]),
                             timeout=60, scratch=root.parent / "scratch")
before = memory_kb("VmRSS")
result = check.run()
after = memory_kb("VmHWM")
print(json.dumps({"passed": result.passed, "feedback": result.feedback(), "output_bytes": sizes,
                  "maxrss_before_kib": before, "maxrss_after_kib": after,
                  "pytest_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "failed": [t.id for t in result.failed_tests]}))
"""


def test_hundreds_of_megabytes_of_test_output_give_short_feedback_in_bounded_memory(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_noisy.py").write_text(NOISY)
    (root / "pytest.ini").write_text(PYTEST_INI)
    env = scrubbed_environment(os.environ) | {"PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", VALIDATE, str(root), json.dumps(env)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert min(report["output_bytes"]) >= MEGABYTES * 1024 * 1024, "the output really went through run_shell"
    assert not report["passed"] and report["failed"] == ["tests/test_noisy.py::test_noisy"]
    feedback = report["feedback"]
    assert len(feedback) <= FEEDBACK_LIMIT, len(feedback)
    assert "FAILED tests/test_noisy.py::test_noisy (tests/test_noisy.py:8)" in feedback
    assert "AssertionError: the answer drifted" in feedback
    growth_mib = (report["maxrss_after_kib"] - report["maxrss_before_kib"]) / 1024
    assert growth_mib < 100, f"validating {MEGABYTES} MB of output grew the process by {growth_mib:.0f} MiB"
    (junit,) = (tmp_path / "scratch").glob("junit-*.xml")
    assert junit.stat().st_size < 64 * 1024, "the JUnit report carries no captured output, whatever the repo asks"
    print(f"{min(report['output_bytes']) / 2**20:.0f} MiB of output, feedback {len(feedback)} characters, "
          f"validating process {report['maxrss_before_kib'] / 1024:.0f} -> "
          f"{report['maxrss_after_kib'] / 1024:.0f} MiB, "
          f"pytest itself peaked at {report['pytest_maxrss_kib'] / 1024:.0f} MiB, "
          f"JUnit report {junit.stat().st_size} bytes")
