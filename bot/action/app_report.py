"""The runner tells the App what its session does, as it happens (a sink of session events).

Each event goes to `POST {FIXLOOP_APP_URL}/api/runs/events` (`RUN_EVENTS_PATH`) with the session's
correlation id and its number in the session (the App records each number once, so a retry is
harmless), authenticated by a fresh GitHub Actions OIDC token whose audience is the App's URL: the
job needs `id-token: write`, and no secret is shared. Posting happens on a thread of its own: the
session never waits on the App, and a runner that cannot reach it carries on and says so once. An
event the App could not take for a passing reason (no connection, a timeout, 429 or 5xx) is sent
again, with a new token, up to `RETRIES` times, until the App has failed once for good. What is
posted went through the session's redactor; long texts are cut.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from bot._process import cap_text
from bot.agent.events import Event
from bot.secrets import Redactor
from bot.task import RUN_EVENTS_PATH

TEXT_LIMIT = 20_000  # characters of one text field (a tool's result, the model's words)
TIMEOUT = 10.0  # seconds for one request
FLUSH = 20.0  # seconds the end of a session waits for events still queued
RETRIES = 2  # more attempts for an event the App could not take for a passing reason
BACKOFF = 0.5  # seconds before the first of them, doubling


class AppReporter:
    def __init__(self, app_url: str, correlation_id: str, *, token_request_url: str, token_request_token: str,
                 redactor: Redactor, warn: Callable[[str], None]) -> None:
        self.url = app_url.rstrip("/") + RUN_EVENTS_PATH
        self.audience = app_url.rstrip("/")
        self.correlation_id = correlation_id
        joiner = "&" if "?" in token_request_url else "?"
        self._token_url = f"{token_request_url}{joiner}audience={quote(self.audience)}"
        self._token_request_token = token_request_token
        self.redactor, self.warn = redactor, warn
        self._seq = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._http = requests.Session()
        self.failed = 0
        self.warned = False
        self._thread = threading.Thread(target=self._post_all, name="fixloop-app-report", daemon=True)
        self._thread.start()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], correlation_id: str | None, *, redactor: Redactor,
                     warn: Callable[[str], None]) -> AppReporter | None:
        """A reporter when FIXLOOP_APP_URL is set and the App dispatched this run; None otherwise. A job
        without `id-token: write` gets a warning that says so."""
        app_url = environ.get("FIXLOOP_APP_URL", "").strip()
        if not app_url or not correlation_id:
            return None
        request_url, request_token = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"), environ.get(
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not request_url or not request_token:
            warn("FIXLOOP_APP_URL is set, but this job cannot mint an OIDC token to report to the App: add "
                 "`permissions: id-token: write` to the job (workflows/fixloop.yml has it). The App will read the "
                 "session's report from its artifact when the run ends.")
            return None
        return cls(app_url, correlation_id, token_request_url=request_url, token_request_token=request_token,
                   redactor=redactor, warn=warn)

    def __call__(self, event: Event) -> None:
        self.post(event.type, event.record())

    def post(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one event; numbered in the order they are queued."""
        data = self.redactor.data(_cut(data))
        self._queue.put({"correlation_id": self.correlation_id, "seq": self._seq, "type": kind, "data": data,
                         "at": time.time()})
        self._seq += 1

    def close(self, timeout: float = FLUSH) -> None:
        """Send what is queued, for at most `timeout` seconds; say how many events did not reach the App."""
        self._queue.put(None)
        self._thread.join(timeout)
        left = self._queue.qsize()
        if self.failed or left:
            self.warn(f"{self.failed + left} of {self._seq} session event(s) did not reach the App at "
                      f"{self.audience}; it reads the session's report from the run's artifact instead.")

    def _post_all(self) -> None:
        while (body := self._queue.get()) is not None:
            for attempt in range(RETRIES + 1):
                try:
                    self._post(body)
                    break
                except (requests.RequestException, ValueError, _Refused) as error:
                    passing = isinstance(error, (requests.ConnectionError, requests.Timeout)) or (
                        isinstance(error, _Refused) and error.passing)
                    if passing and attempt < RETRIES and not self.warned:  # once the App failed, each event once
                        time.sleep(BACKOFF * 2 ** attempt)
                        continue
                    self.failed += 1
                    if not self.warned:
                        self.warned = True
                        self.warn(self.redactor.text(f"the App at {self.audience} could not be told about this "
                                                     f"session ({error}); the session goes on."))
                    break

    def _post(self, body: dict[str, Any]) -> None:
        minted = self._http.get(self._token_url, headers={"Authorization": f"bearer {self._token_request_token}"},
                                timeout=TIMEOUT)
        if minted.status_code != 200:
            raise _Refused(f"GitHub did not mint an OIDC token: HTTP {minted.status_code}", minted.status_code)
        token = str(minted.json()["value"])
        answer = self._http.post(self.url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
        if answer.status_code not in (200, 201, 202, 409):  # 409: recorded before (a retry that had arrived)
            raise _Refused(f"HTTP {answer.status_code}: {answer.text[:200]}", answer.status_code)


class _Refused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.passing = status == 429 or status >= 500  # worth sending again


def _cut(value: Any, key: str = "") -> Any:
    """`value` with long texts cut to TEXT_LIMIT characters (an iteration's diff comes cut by the session)."""
    if isinstance(value, str):
        return value if key == "diff" else cap_text(value, TEXT_LIMIT)
    if isinstance(value, dict):
        return {k: _cut(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(item, key) for item in value]
    return value
