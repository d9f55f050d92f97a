"""The App's metrics, rendered in the Prometheus text exposition format (version 0.0.4).

A tiny thread-safe registry with exactly the series fixloop serves on `GET /metrics`:

| metric | type | labels |
|---|---|---|
| `fixloop_webhook_deliveries_total` | counter | `event`, `outcome` |
| `fixloop_webhook_response_seconds` | histogram | |
| `fixloop_dispatches_total` | counter | `result` (`ok` / `failed`) |
| `fixloop_dispatch_seconds` | histogram | |
| `fixloop_errors_total` | counter | `stage` |
| `fixloop_runner_events_total` | counter | `result` (`recorded` / `refused`) |
| `fixloop_session_endings` | gauge | `ending` (from the database) |
| `fixloop_session_escalations` | gauge | `reason` (`not_validated` / `limit` / `error`; from the database) |

Label values can come from requests (the `X-GitHub-Event` header of a delivery that failed
verification, say), so each counter keeps at most `MAX_SERIES` label sets; later new ones are
counted under the value `other`, and long values are cut to `MAX_LABEL_LENGTH` characters.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)
MAX_SERIES = 500
MAX_LABEL_LENGTH = 100
OVERFLOW = "other"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in pairs) + "}"


class _Counter:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str) -> None:
        key = tuple(value[:MAX_LABEL_LENGTH] for value in label_values)
        if key not in self.values and len(self.values) >= MAX_SERIES:
            key = (OVERFLOW,) * len(key)
        self.values[key] = self.values.get(key, 0.0) + 1.0

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} counter"]
        for key in sorted(self.values):
            labels = _labels(list(zip(self.label_names, key, strict=True)))
            out.append(f"{self.name}{labels} {_number(self.values[key])}")
        return out


class _Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)  # per bucket, not cumulative; rendered cumulatively
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if math.isnan(value):  # would fall in no bucket and poison the sum
            return
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        out.append(f"{self.name}_sum {_number(self.sum)}")
        out.append(f"{self.name}_count {self.count}")
        return out


class Metrics:
    """The App's counters and histograms; every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries = _Counter(
            "fixloop_webhook_deliveries_total",
            "Webhook deliveries received, by event and outcome.",
            ("event", "outcome"),
        )
        self._webhook_seconds = _Histogram(
            "fixloop_webhook_response_seconds", "Time taken to answer POST /webhook, in seconds."
        )
        self._dispatches = _Counter(
            "fixloop_dispatches_total", "workflow_dispatch requests sent, by result.", ("result",)
        )
        self._dispatch_seconds = _Histogram(
            "fixloop_dispatch_seconds", "Duration of workflow_dispatch requests to GitHub, in seconds."
        )
        self._errors = _Counter("fixloop_errors_total", "Errors, by the stage where they happened.", ("stage",))
        self._runner_events = _Counter("fixloop_runner_events_total",
                                       "Session events posted by runners, recorded or refused.", ("result",))

    def delivery(self, event: str, outcome: str) -> None:
        """Count one webhook delivery (`outcome`: e.g. dispatched, ignored, duplicate, bad_signature)."""
        with self._lock:
            self._deliveries.inc(event, outcome)

    def dispatch(self, seconds: float, ok: bool) -> None:
        """Record one workflow_dispatch request: its duration and whether GitHub accepted it."""
        with self._lock:
            self._dispatch_seconds.observe(seconds)
            self._dispatches.inc("ok" if ok else "failed")

    def error(self, stage: str) -> None:
        """Count one error at `stage` (e.g. verify, rules, dispatch, store)."""
        with self._lock:
            self._errors.inc(stage)

    def runner_event(self, result: str) -> None:
        """Count one session event a runner posted (`result`: recorded or refused)."""
        with self._lock:
            self._runner_events.inc(result)

    def webhook_latency(self, seconds: float) -> None:
        """Record how long POST /webhook took to answer."""
        with self._lock:
            self._webhook_seconds.observe(seconds)

    def render(self, campaign_targets: Mapping[tuple[str, str], int] | None = None,
               session_endings: Mapping[str, int] | None = None,
               session_escalations: Mapping[str, int] | None = None) -> str:
        """Every metric in the text exposition format, ending with a newline; `campaign_targets`, the
        targets per (campaign, state) now, `session_endings`, the sessions per fixloop ending, and
        `session_escalations`, the sessions that called a person per reason, as gauges (read from the
        database, shared by the replicas)."""
        with self._lock:
            families = (
                self._deliveries,
                self._webhook_seconds,
                self._dispatches,
                self._dispatch_seconds,
                self._errors,
                self._runner_events,
            )
            lines = [line for family in families for line in family.lines()]
        if campaign_targets is not None:
            lines += ["# HELP fixloop_campaign_targets Targets of each campaign in each state.",
                      "# TYPE fixloop_campaign_targets gauge"]
            lines += [f"fixloop_campaign_targets{_labels((('campaign', name), ('state', state)))} {count}"
                      for (name, state), count in sorted(campaign_targets.items())]
        if session_endings is not None:
            lines += ["# HELP fixloop_session_endings Sessions by fixloop's own ending (their runners' reports).",
                      "# TYPE fixloop_session_endings gauge"]
            lines += [f"fixloop_session_endings{_labels((('ending', ending),))} {count}"
                      for ending, count in sorted(session_endings.items())]
        if session_escalations is not None:
            lines += ["# HELP fixloop_session_escalations Sessions that called a person, by why they failed.",
                      "# TYPE fixloop_session_escalations gauge"]
            lines += [f"fixloop_session_escalations{_labels((('reason', reason),))} {count}"
                      for reason, count in sorted(session_escalations.items())]
        return "\n".join(lines) + "\n"
