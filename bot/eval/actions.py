"""`fixloop eval run … --backend actions`: the same runs as a GitHub Actions matrix, for suites larger than one
machine. One job per configuration and task (GitHub allows 256 a matrix); each runs `fixloop eval run` on its
task alone and uploads its results file as the artifact `fixloop-eval-<job>`. `fixloop eval report` then reads
the downloaded folder (`gh run download RUN --pattern 'fixloop-eval-*' --dir results`).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from bot.errors import ConfigError
from bot.eval.suite import EvalTask

MAX_JOBS = 256  # GitHub's limit on the jobs of one matrix
# The actions the job uses, pinned as in workflows/fixloop.yml.
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1"
SETUP_PYTHON = "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97  # v7.0.0"
UPLOAD = "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f  # v7.0.0"


def matrix_workflow(suite: Path, configs: list[Path], tasks: list[EvalTask], repeats: int) -> str:
    """The workflow's text; `suite` and `configs` as paths in the repository that holds them."""
    for path in (suite, *configs):
        if path.is_absolute():
            raise ConfigError(f"{path}: with --backend actions, give the suite and configurations as paths in the "
                              "repository the workflow runs in (relative, from its root)")
    if len(configs) * len(tasks) > MAX_JOBS:
        raise ConfigError(f"{len(configs)} configurations × {len(tasks)} tasks are {len(configs) * len(tasks)} jobs; "
                          f"a matrix takes at most {MAX_JOBS}: split the suite")
    matrix = json.dumps({"config": [str(path) for path in configs], "task": [task.id for task in tasks]})
    return f"""# fixloop eval on GitHub Actions, written by `fixloop eval run --backend actions`.
# Run it from the Actions tab (or `gh workflow run`), then:
#   gh run download RUN_ID --pattern 'fixloop-eval-*' --dir results && fixloop eval report results
name: fixloop eval

on:
  workflow_dispatch:

permissions: {{}}

# One evaluation of this suite at a time; a second waits rather than doubling the spending.
concurrency:
  group: fixloop-eval
  cancel-in-progress: false

jobs:
  run:
    name: ${{{{ matrix.config }}}} · ${{{{ matrix.task }}}}
    runs-on: ubuntu-latest
    permissions:
      contents: read
    timeout-minutes: 90
    strategy:
      fail-fast: false
      max-parallel: 20
      matrix: {matrix}
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - uses: {SETUP_PYTHON}
        with:
          python-version: '3.11'
      - name: Install fixloop and the suite's toolchains
        run: |
          sudo apt-get install -y -qq --no-install-recommends bubblewrap golang-go nodejs
          python -m pip install --quiet 'fixloop[eval]'
      - name: Run the task
        env:
          ANTHROPIC_API_KEY: ${{{{ secrets.ANTHROPIC_API_KEY }}}}  # zizmor: ignore[secrets-outside-env] the model key
          CONFIG: ${{{{ matrix.config }}}}
          TASK: ${{{{ matrix.task }}}}
        run: >-
          fixloop eval run {shlex.quote(str(suite))} --config "$CONFIG" --only "$TASK" --repeats {repeats}
          --out results.jsonl
      - name: Keep the results
        if: always()
        uses: {UPLOAD}
        with:
          name: fixloop-eval-${{{{ strategy.job-index }}}}
          path: results.jsonl
          if-no-files-found: ignore
"""
