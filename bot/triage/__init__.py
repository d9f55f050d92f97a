"""Flaky or regression? Triage of failing tests by sequential reruns, and validation of a deflake fix.

`triage()` reruns each failing test and stops as soon as the evidence decides, with C the
confidence (default 0.95) and runs "alone" meaning the test by itself in a fresh process:

- **flaky**: one failure and one pass alone at the same commit. That is proof, no statistics
  needed; the failure rate is then estimated with an exact (Clopper-Pearson) interval.
- **regression**: k consecutive failures alone and no pass. A flaky test failing with
  probability at most θ fails k times in a row with probability at most θ^k; stop when
  θ^k <= 1-C, so k = ceil(ln(1-C) / ln θ). θ = 0.5 by default (k = 5 at 95%). Differential
  coverage moves θ: 0.25 when the failing run executes a changed line (k = 3), 0.75 when it
  executes none (k = 11), since a test that never runs the change cannot have been broken by it.
- **order_dependent**: after the first pass alone, the test runs once after the tests that ran
  before it (in the failing suite run, else in collection order), and if that passes, after all
  other tests in a seeded random order. If it fails there, the polluter is found by delta
  debugging like `detect-test-pollution`: run the first half of the candidate prefix before the
  victim; keep that half if the victim still fails, else the other half; repeat down to one test.
  Bisection always yields some candidate, so it proves nothing by itself: the pair
  polluter -> victim and the victim alone then run side by side. "Fails at random, whatever the
  order" with rate q explains r failures of the pair and s passes alone with probability
  q^r (1-q)^s, at most (r/(r+s))^r (s/(r+s))^s; stop when that is <= 1-C (e.g. r = 2, s = 4:
  2.2%). Only pair runs made after the polluter was named count in r. If the pair passes, the
  whole reproducing order is confirmed the same way (several tests together pollute: polluter
  None); if that order passes once, the test is flaky.
- **passes**: n consecutive passes alone (and the order checks passed): a test failing with
  probability at least p passes n times in a row with probability at most (1-p)^n; stop when
  (1-p)^n <= 1-C, so n = ceil(ln(1-C) / ln(1-p)) = `runs_for_confidence(C, p)`. p = 0.10
  (n = 29 at 95%); 0.20 (n = 14) when the failing run executes none of the changed lines.
- `max_runs` caps the runs alone per test; when it runs out first, the likelier verdict is
  returned and the evidence says "not decisive".

Reruns of one test run `jobs` at a time in separate processes (own JUnit file, no pytest cache);
several failing tests are triaged concurrently within the same `jobs` limit. `confirm_fixed()`
validates a fix: `runs_for_confidence(C, p)` consecutive passes (29 for 95% and 10%) in random
orders with the test's neighbours, always after the polluter when there is one, stopping at the
first failure.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.triage._diagnose import Diagnosis, changed_lines, diagnose
    from bot.triage._repeat import RepeatResult, confirm_fixed
    from bot.triage._stats import clopper_pearson, runs_for_confidence
    from bot.triage._triage import TestTriage, TriageReport, Verdict, triage

# Loaded on first use, so that `fixloop` registers its `triage` command without loading the runners.
_HOMES = {"Diagnosis": "_diagnose", "changed_lines": "_diagnose", "diagnose": "_diagnose",
          "RepeatResult": "_repeat", "confirm_fixed": "_repeat", "clopper_pearson": "_stats",
          "runs_for_confidence": "_stats", "TestTriage": "_triage", "TriageReport": "_triage", "Verdict": "_triage",
          "triage": "_triage"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bot.triage' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bot.triage.{_HOMES[name]}"), name)


__all__ = [
    "Diagnosis",
    "RepeatResult",
    "TestTriage",
    "TriageReport",
    "Verdict",
    "changed_lines",
    "clopper_pearson",
    "confirm_fixed",
    "diagnose",
    "runs_for_confidence",
    "triage",
]
