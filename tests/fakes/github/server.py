"""``FakeGitHub``: GitHub's REST API on a loopback port, validated against the OpenAPI spec.

Request pipeline (``FakeGitHub.handle``): record -> identify the token -> injected fault or
replica lag? -> route -> parse JSON -> validate the request against the description (violations recorded) ->
enforce auth -> 422 if invalid -> installation-token scope and permissions -> handler ->
validate the response (violations recorded) -> send.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug.datastructures import Headers

from . import api_actions, api_apps, api_issues, api_repos, api_users, render, spec
from .auth import Authenticator, AuthError, load_public_key
from .model import Caller, Fault, RecordedRequest, ReplicaLag, utcnow
from .oauth import OAuthFlow
from .routes import RATE_LIMIT, ApiError, Ctx, Options, Reply, Route, match
from .state import GitHubState

JSON_TYPE = "application/json; charset=utf-8"
ROUTE_MODULES = (api_actions, api_apps, api_issues, api_repos, api_users)  # imported to register routes
GIT_RECEIVE = "/_fake/git-receive"  # a post-receive hook reports real pushes here (see tests/fakes/git_origin.py)
LOG_DOWNLOAD = re.compile(r"^/_fake/job-logs/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<job>\d+)$")
ARTIFACT_DOWNLOAD = re.compile(r"^/_fake/artifacts/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<artifact>\d+)$")


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeGitHub(GitHubState):
    """A stateful fake of api.github.com (or a GHES ``/api/v3``) for end-to-end tests.

    Use as a context manager (``with FakeGitHub(...) as gh:``) or call ``start()``/``stop()``.
    Seeding and introspection methods come from ``GitHubState``.
    """

    def __init__(
        self,
        *,
        tokens: Iterable[str] | Mapping[str, str] = ("test-token",),
        default_login: str = "github-actions[bot]",
        app_id: int | None = None,
        app_public_key: str | bytes | RSAPublicKey | None = None,
        app_slug: str = "fixloop",
        prefix: str = "",
        supports_run_details: bool = False,
        require_known_shas: bool = True,
        strict_request_bodies: bool = True,
        dispatch_creates_runs: bool = True,
        git_base_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        installation_write_interval: float = 0.0,
    ) -> None:
        """
        tokens: accepted static tokens; a mapping gives the login each one acts as
            (``default_login`` otherwise).
        app_id / app_public_key: enable GitHub App auth (JWTs verified against the key).
        prefix: serve the API under this path (e.g. "/api/v3", as GitHub Enterprise does).
        supports_run_details: honour ``return_run_details: true`` on workflow dispatches with
            200 + run id (github.com does); otherwise dispatches always answer 204 (older GHES).
        require_known_shas: 422 for check runs on commits the fake does not know (as GitHub).
        strict_request_bodies: treat body properties the description does not declare as
            violations (GitHub ignores them silently; a typo like "summery" then goes unseen).
        dispatch_creates_runs: a dispatch creates a queued workflow run.
        git_base_url: root of the repositories' ``clone_url`` (e.g. a file:// directory).
        installation_write_interval: the fewest seconds between two writes (POST, PATCH, PUT, DELETE)
            made with the tokens of one installation; a faster write gets GitHub's 403 for its
            secondary rate limit (with ``retry-after``), counted in ``rate_limited``.
        """
        if app_public_key is not None and app_id is None:
            app_id = 12345
        super().__init__(app_id=app_id, app_slug=app_slug)
        token_map = dict(tokens) if isinstance(tokens, Mapping) else dict.fromkeys(tokens, default_login)
        self._auth = Authenticator(self, token_map,
                                   load_public_key(app_public_key) if app_public_key else None)
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError("prefix must look like '/api/v3'")
        self.prefix = prefix
        self._options = Options(supports_run_details, require_known_shas, dispatch_creates_runs,
                                api_root="")
        self._strict_bodies = strict_request_bodies
        self._faults: list[Fault] = []
        self._lags: list[ReplicaLag] = []
        self._lagging: dict[str, int] = {}  # API path of a created object -> 404s still to answer
        self._rate_used: dict[str, int] = {}
        self._write_interval = installation_write_interval
        self._last_write: dict[int, float] = {}  # installation id -> monotonic time of its last accepted write
        self.rate_limited = 0
        self._spec = spec.load_spec()
        self._httpd = _Server((host, port), _RequestHandler, self)
        self._thread: threading.Thread | None = None
        self.root_url = f"http://{host}:{self._httpd.server_address[1]}"
        self._options.api_root = self.root_url
        self._urls = render.Urls(api=self.url, web=self.root_url,
                                 git=(git_base_url or self.root_url).rstrip("/"))

    # ----------------------------------------------------------------------------------------
    # lifecycle

    @property
    def url(self) -> str:
        """Base URL of the API (pass it as PyGithub's ``base_url``)."""
        return self.root_url + self.prefix

    def start(self) -> FakeGitHub:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"fake-github-{self.root_url}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------
    # configuration at run time

    def add_token(self, token: str, login: str = "github-actions[bot]") -> None:
        """Accept another static token (acting as ``login``)."""
        with self.lock:
            self._auth.static_tokens = {**self._auth.static_tokens, token: login}

    def inject(self, method: str, path_regex: str, status: int, times: int = 1,
               headers: Mapping[str, str] | None = None, body: Any = None, *,
               apply: bool = False) -> None:
        """Make the next ``times`` requests matching ``method`` and ``path_regex`` (searched in
        the API path, without prefix or query) fail with ``status``.  ``body`` defaults to
        GitHub's error shape; ``headers`` e.g. ``{"Retry-After": "1"}``.  ``apply``: carry
        the request out before failing (GitHub made the comment, then answered 500)."""
        with self.lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, times,
                                      dict(headers or {}), body, apply))

    def inject_reset(self, method: str, path_regex: str, times: int = 1, *,
                     apply: bool = False) -> None:
        """Make the next matching requests see the connection closed without an answer
        (``apply``: after carrying them out)."""
        with self.lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), None, times, {},
                                      None, apply))

    def inject_timeout(self, method: str, path_regex: str, seconds: float, times: int = 1, *,
                       apply: bool = False) -> None:
        """Make the next matching requests wait ``seconds`` (more than the client's timeout)
        before a 504 (``apply``: after carrying them out, so the write happened)."""
        with self.lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), 504, times, {},
                                      None, apply, seconds))

    def inject_replica_lag(self, path_regex: str, times: int = 1) -> None:
        """From now on, every object created by a POST matching ``path_regex`` answers 404 to
        the first ``times`` requests that name it (``GET``/``PATCH`` of its URL, or below it;
        for a pull request also its issue URL), as GitHub's replicas do right after a create."""
        with self.lock:
            self._lags.append(ReplicaLag(re.compile(path_regex), times))

    # ----------------------------------------------------------------------------------------
    # request handling (transport independent; None means "reset the connection")

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               raw_body: bytes) -> Answer | None:
        method = method.upper()
        parts = urlsplit(target)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for key, value in pairs:
            query.setdefault(key, []).append(value)
        lower_headers = {k.lower(): v for k, v in headers.items()}
        body, body_error = _parse_json(raw_body)

        log = LOG_DOWNLOAD.match(parts.path)
        if log and method == "GET":
            return self._serve_log(parts.path, query, lower_headers, log)
        archive = ARTIFACT_DOWNLOAD.match(parts.path)
        if archive and method == "GET":
            return self._serve_artifact(archive)
        if parts.path == GIT_RECEIVE and method == "POST":
            return self._git_receive(body)
        if parts.path.startswith("/login/oauth/") and self.app is not None:
            self.record_request(RecordedRequest(method, parts.path, query, None, None, None, lower_headers, None,
                                                f"{method} (OAuth web flow)"))
            status, page, page_headers = OAuthFlow(self.app.client_id, self.app_client_secret, self.app.name,
                                                   self.user_tokens, self._oauth_codes).handle(
                method, parts.path, parts.query, raw_body, lower_headers.get("content-type", ""))
            return Answer(status, page, page_headers)

        api_path = parts.path
        in_prefix = not self.prefix or api_path == self.prefix or api_path.startswith(
            self.prefix + "/")
        api_path = api_path[len(self.prefix):] if in_prefix else api_path
        record = RecordedRequest(method, api_path, query, body, None, None, lower_headers)
        self.record_request(record)
        answer = self._process(method, api_path, in_prefix, pairs, query, lower_headers,
                               raw_body, body, body_error, record)
        record.status = answer.status if answer else None
        return answer

    def _process(self, method: str, api_path: str, in_prefix: bool,
                 pairs: list[tuple[str, str]], query: dict[str, list[str]],
                 headers: dict[str, str], raw_body: bytes, body: Any, body_error: str | None,
                 record: RecordedRequest) -> Answer | None:
        with self.lock:
            caller: Caller | None = None
            auth_error: AuthError | None = None
            try:
                caller = self._auth.identify(headers.get("authorization"))
            except AuthError as exc:
                auth_error = exc
            if caller is not None:
                record.token, record.auth_kind = caller.token, caller.kind
                self._rate_used[caller.token] = self._rate_used.get(caller.token, 0) + 1
            elif headers.get("authorization"):
                record.token = headers["authorization"].partition(" ")[2].strip() or None

            fault = self._take_fault(method, api_path)
            lagging = (fault is None or fault.apply) and self._take_lag(api_path)
        if fault is not None and not fault.apply:
            return self._fail(fault, caller)
        if self._too_fast(method, caller):
            return self._answer(Reply(403, ApiError(403, "You have exceeded a secondary rate limit. Please wait a few "
                                                         "minutes before you try again.").body(),
                                      {"retry-after": "1"}), caller)
        if lagging:
            return self._answer(Reply(404, ApiError(404, "Not Found").body()), caller)
        answer = self._route(method, api_path, in_prefix, pairs, query, headers, raw_body, body,
                             body_error, record, caller, auth_error)
        if method == "POST" and answer.status == 201:
            self._remember_lag(api_path, answer)
        return answer if fault is None else self._fail(fault, caller)

    def _too_fast(self, method: str, caller: Caller | None) -> bool:
        """A write by an installation sooner than `installation_write_interval` after its last one."""
        if not self._write_interval or method not in ("POST", "PATCH", "PUT", "DELETE") or caller is None \
                or caller.installation is None:
            return False
        with self.lock:
            now = time.monotonic()
            last = self._last_write.get(caller.installation.id)
            if last is not None and now - last < self._write_interval:
                self.rate_limited += 1
                return True
            self._last_write[caller.installation.id] = now
            return False

    def _route(self, method: str, api_path: str, in_prefix: bool, pairs: list[tuple[str, str]],
               query: dict[str, list[str]], headers: dict[str, str], raw_body: bytes, body: Any,
               body_error: str | None, record: RecordedRequest, caller: Caller | None,
               auth_error: AuthError | None) -> Answer:
        where = f"{method} {api_path}"
        matched, params, path_known = match(method, api_path) if in_prefix else (None, {}, False)
        if matched is None:
            why = ("outside the API prefix" if not in_prefix else
                   "method not allowed for this path" if path_known else
                   "no such operation in the trimmed OpenAPI description")
            self.record_violation(f"{where}: request: {why}")
            return self._answer(Reply(404, ApiError(404, "Not Found").body()), caller)
        record.operation = matched.operation

        spec_request = spec.SpecRequest(
            method, matched.template, params, pairs, headers, raw_body or None,
            "application/json" if raw_body else headers.get("content-type", ""))
        problems: list[str] = []
        if body_error is not None:
            problems.append(f"body is not JSON: {body_error}")
        else:
            problems.extend(spec.request_errors(self._spec, spec_request,
                                                strict=self._strict_bodies))
        for problem in problems:
            self.record_violation(f"{where}: request: {problem}")

        try:
            self._authorize(matched, caller, auth_error, params)
            if body_error is not None:
                raise ApiError(400, "Problems parsing JSON")
            if problems:
                raise ApiError(422, "Invalid request.\n\n" + "\n".join(problems))
            with self.lock:
                ctx = Ctx(self, self._urls, self._options, caller, params, query, body, api_path,
                          self._rate_used.get(caller.token, 0) if caller else 0)
                reply = matched.handler(ctx)
        except ApiError as err:
            reply = Reply(err.status, err.body(), err.headers)
        except Exception:  # noqa: BLE001 - a bug in the fake: answer 500 and make the test fail
            self.record_violation(f"{where}: fake crashed: {traceback.format_exc(limit=6)}")
            reply = Reply(500, ApiError(500, "Server Error").body())

        answer = self._answer(reply, caller)
        self._check_response(where, matched, spec_request, answer)
        return answer

    def _authorize(self, matched: Route, caller: Caller | None, auth_error: AuthError | None,
                   params: Mapping[str, str]) -> None:
        if auth_error is not None:
            raise ApiError(auth_error.status, auth_error.message)
        if matched.auth == "optional":
            return
        if caller is None:
            raise ApiError(401, "Requires authentication")
        if matched.auth == "jwt":
            if caller.kind != "jwt":
                raise ApiError(401, "A JSON web token could not be decoded")
            return
        if caller.kind == "jwt":
            raise ApiError(403, "Resource not accessible by integration")
        if caller.kind != "installation":
            return
        assert caller.installation is not None and caller.issued is not None
        if "owner" in params and "repo" in params:
            reachable = {r.name.lower() for r in self.installation_repos(caller.installation)
                         if r.owner.login.lower() == params["owner"].lower()}
            if caller.issued.repositories is not None:
                reachable &= {name.lower() for name in caller.issued.repositories}
            if params["repo"].lower() not in reachable:
                raise ApiError(404, "Not Found")
        granted = {"metadata": "read", **caller.issued.permissions}  # metadata is implicit
        if matched.permissions and not any(
                render.permission_allows(granted, name, level)
                for name, level in matched.permissions):
            wanted = ", ".join(f"{n}={lvl}" for n, lvl in matched.permissions)
            raise ApiError(403, "Resource not accessible by integration",
                           headers={"X-Accepted-GitHub-Permissions": wanted})

    def _fail(self, fault: Fault, caller: Caller | None) -> Answer | None:
        """The injected failure's answer (None: reset), after its delay (lock not held)."""
        time.sleep(fault.delay)
        if fault.status is None:
            return None
        payload = fault.body if fault.body is not None else ApiError(
            fault.status, _reason(fault.status)).body()
        return self._answer(Reply(fault.status, payload, dict(fault.headers)), caller)

    def _take_lag(self, api_path: str) -> bool:
        for path, remaining in self._lagging.items():
            if remaining > 0 and (api_path == path or api_path.startswith(path + "/")):
                self._lagging[path] = remaining - 1
                return True
        return False

    def _remember_lag(self, api_path: str, answer: Answer) -> None:
        """Start the replica lag of what a POST created (named by the URLs in its answer)."""
        with self.lock:
            times = next((lag.times for lag in self._lags if lag.path_regex.search(api_path)), 0)
            if not times:
                return
            created = json.loads(answer.body)
            for key in ("url", "issue_url"):
                if isinstance(url := created.get(key), str) and url.startswith(self.url):
                    self._lagging[url[len(self.url):]] = times

    def _take_fault(self, method: str, api_path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method in (method, "*") and fault.path_regex.search(api_path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _answer(self, reply: Reply, caller: Caller | None) -> Answer:
        headers = {
            "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
        }
        if caller is not None:
            used = self._rate_used.get(caller.token, 0)
            headers.update({
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": str(max(RATE_LIMIT - used, 0)),
                "X-RateLimit-Used": str(used),
                "X-RateLimit-Reset": str(int(utcnow().timestamp()) + 3600),
                "X-RateLimit-Resource": "core",
            })
        headers.update(reply.headers)
        if reply.body is None:
            return Answer(reply.status, b"", headers)
        if isinstance(reply.body, (bytes, str)):
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return Answer(reply.status, data, headers)
        headers["Content-Type"] = JSON_TYPE
        return Answer(reply.status, json.dumps(reply.body).encode(), headers)

    def _check_response(self, where: str, matched: Route, spec_request: spec.SpecRequest,
                        answer: Answer) -> None:
        """Validate what the fake sends.  Statuses the operation documents are checked in
        full; undocumented error statuses (GitHub sends those too) only for the error shape."""
        documented = self._spec.documented_statuses(matched.method, matched.template)
        status = answer.status
        if str(status) in documented:
            header_map = Headers(list(answer.headers.items()))
            response = spec.SpecResponse(status, answer.body or None,
                                         answer.headers.get("Content-Type", ""), header_map)
            errors = spec.response_errors(self._spec, spec_request, response)
        elif status >= 400:
            try:
                payload = json.loads(answer.body)
            except ValueError:
                payload = None
            errors = spec.schema_errors("validation-error" if status == 422 else "basic-error",
                                        payload)
        else:
            errors = [f"status {status} is not documented for this operation"]
        for error in errors:
            self.record_violation(f"{where}: response {status}: {error}")

    def _git_receive(self, body: Any) -> Answer:
        """Mirror a real `git push` to a bare origin: branch updates, as GitHub learns of pushes."""
        zero = "0" * 40
        with self.lock:
            for update in body["updates"]:
                if not update["ref"].startswith("refs/heads/"):
                    continue
                branch = update["ref"].removeprefix("refs/heads/")
                repo = self.get_repo(body["repo"])
                if update["new"] == zero:
                    repo.branches.pop(branch, None)
                elif update["new"] in repo.commits:
                    repo.branches[branch] = update["new"]
                else:
                    self.add_commit(body["repo"], branch, None, message="pushed", sha=update["new"])
        return Answer(204)

    def _serve_log(self, path: str, query: dict[str, list[str]], headers: dict[str, str],
                   m: re.Match[str]) -> Answer:
        self.record_request(RecordedRequest("GET", path, query, None, None, None, headers, 200,
                                            "GET (job log download)"))
        with self.lock:
            repo = self.find_repo(unquote(m["owner"]), unquote(m["repo"]))
            job_id = int(m["job"])
            for run in (repo.runs.values() if repo else []):
                for job in run.jobs:
                    if job.id == job_id and job.log_text is not None:
                        return Answer(200, job.log_text.encode(),
                                      {"Content-Type": "text/plain; charset=utf-8"})
        return Answer(404, b"Not Found", {"Content-Type": "text/plain"})


    def _serve_artifact(self, m: re.Match[str]) -> Answer:
        with self.lock:
            repo = self.find_repo(unquote(m["owner"]), unquote(m["repo"]))
            for run in (repo.runs.values() if repo else []):
                for artifact in run.artifacts:
                    if artifact.id == int(m["artifact"]):
                        return Answer(200, artifact.data, {"Content-Type": "application/zip"})
        return Answer(404, b"Not Found", {"Content-Type": "text/plain"})


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, str(exc)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ------------------------------------------------------------------------------------------------
# HTTP transport


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of connects (1 s SYN retry)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 fake: FakeGitHub) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away mid-request (a killed App replica) is no error of the fake's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's requests session expects
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    timeout = 30
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        answer = self.server.fake.handle(self.command, self.path, dict(self.headers.items()),
                                         body)
        if answer is None:  # injected reset: RST the connection, send nothing
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        try:
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client gave up waiting (an injected timeout): nobody to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
