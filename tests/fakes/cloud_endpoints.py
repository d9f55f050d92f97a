"""Loopback fakes of the clouds' Claude endpoints, each speaking its real protocol, for the anthropic
SDK's own cloud clients (AnthropicBedrock, AnthropicVertex, AnthropicFoundry) over real HTTP.

    FakeAWS       Bedrock's `POST /model/{modelId}/invoke-with-response-stream`, which checks each request's
                  SigV4 signature (recomputed with botocore's own signer) and answers in AWS's binary
                  event-stream format; and STS's `AssumeRoleWithWebIdentity`, whose temporary credentials
                  it then accepts.
    FakeGoogle    Vertex AI's `:streamRawPredict`, which takes only access tokens its OAuth token endpoint
                  issued, and that token endpoint, which checks a service account's signed JWT (RS256).
    FakeFoundry   Foundry's `/anthropic/v1/messages`, with an API key or a Microsoft Entra ID token from
                  its App Service managed identity endpoint.

Each serves scripted `Reply`s (tests.fakes.messages_api) as Anthropic's stream events, after the same
request checks as the fake Messages API. Requests it rejects are answered as the cloud answers them
and recorded in `rejections`; `violations` lists what no real endpoint would have accepted either.
Standard library, botocore, PyJWT and cryptography.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import re
import secrets
import socketserver
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.messages_api import Reply, check_request
from tests.fakes.messages_api import _sse_events as sse_events  # the event sequence the real API streams
from tests.fakes.messages_api import _usage as usage_of

__all__ = ["FakeAWS", "FakeFoundry", "FakeGoogle", "Received", "event_stream_frame", "new_rsa_key"]


@dataclass
class Received:
    """One request as the fake received it."""

    method: str
    path: str  # as sent, percent-encoding and query included
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes | Iterable[bytes]  # an iterable: sent chunked, piece by piece, as a stream is


def _json(status: int, payload: Any, **headers: str) -> _Answer:
    return _Answer(status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: _Loopback) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks its name up in DNS (getfqdn), which can take seconds; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                           self.rfile.read(length))
        answer = self.server.fake.receive(request)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if isinstance(answer.body, bytes):
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in answer.body:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST


class _Loopback:
    """A scripted fake on 127.0.0.1, served from a thread between `with` and its end."""

    def __init__(self, script: Iterable[Reply]) -> None:
        self.requests: list[Received] = []
        self.rejections: list[str] = []
        self.violations: list[str] = []
        self._script = deque(script)
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, request: Received) -> _Answer:
        with self._lock:
            self.requests.append(request)
            return self.route(request)

    def route(self, request: Received) -> _Answer:
        raise NotImplementedError

    def reject(self, why: str, answer: _Answer) -> _Answer:
        self.rejections.append(why)
        return answer

    def violation(self, why: str, answer: _Answer) -> _Answer:
        self.violations.append(why)
        return self.reject(why, answer)

    def next_reply(self, body: dict[str, Any], model: str) -> tuple[Reply, dict[str, Any]] | str:
        """The next scripted reply and its usage, or why the Messages API would refuse the body."""
        problems = check_request({**body, "model": model})
        if problems:
            return "; ".join(problems)
        if not self._script:
            return "the script has no reply left"
        reply = self._script.popleft()
        declared = {tool.get("name") for tool in body.get("tools", [])}
        unknown = [b["name"] for b in reply.content if b["type"] == "tool_use" and b["name"] not in declared]
        if unknown:
            return f"the scripted reply calls tools the request did not declare: {unknown}"
        return reply, usage_of(reply, body)


def _sse(reply: Reply, model: str, usage: dict[str, Any]) -> Iterator[bytes]:
    for name, data in sse_events(reply, model, usage):
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# --------------------------------------------------------------------------- Amazon Bedrock and STS

_SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})")
_INVOKE = re.compile(r"/model/(?P<model>[^/]+)/invoke-with-response-stream")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SKEW = datetime.timedelta(minutes=5)  # how far a signature's time may be from the server's, as AWS allows


def event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding (application/vnd.amazon.eventstream): a prelude (total
    length, headers length, their CRC32), string-valued headers (type 7), the payload, the message's CRC32."""
    encoded = b"".join(
        len(name.encode()).to_bytes(1, "big") + name.encode() + b"\x07" + len(value.encode()).to_bytes(2, "big")
        + value.encode() for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _chunk(event: dict[str, Any]) -> bytes:
    """A stream event as Bedrock sends it: a `chunk` event whose JSON payload carries the event's JSON,
    base64-encoded, in `bytes` (and random-length padding in `p`, as Bedrock adds)."""
    payload = {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "x" * secrets.randbelow(32)}
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return event_stream_frame(headers, json.dumps(payload).encode())


def _aws_error(status: int, kind: str, message: str) -> _Answer:
    return _json(status, {"message": message}, **{"x-amzn-ErrorType": kind, "x-amzn-RequestId": _request_id()})


def _request_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class _AWSKey:
    secret: str
    token: str | None


class FakeAWS(_Loopback):
    """Bedrock's runtime in `region`, accepting what `allow` registers (an IAM user's keys), the
    temporary credentials its STS issues for `role_arn` to a caller presenting `web_identity_token`, and
    Bedrock API keys (`api_keys`) as bearer tokens.

    Use `url` as the client's `base_url` and as AWS_ENDPOINT_URL_STS."""

    def __init__(self, script: Iterable[Reply] = (), *, region: str, role_arn: str = "",
                 web_identity_token: str = "", api_keys: Iterable[str] = ()) -> None:
        super().__init__(script)
        self.region = region
        self.api_keys = set(api_keys)
        self.role_arn = role_arn
        self.web_identity_token = web_identity_token
        self.models: list[str] = []  # the model id of each request Bedrock served
        self.sts_calls = 0
        self._keys: dict[str, _AWSKey] = {}

    def allow(self, access_key: str, secret_key: str, session_token: str | None = None) -> None:
        self._keys[access_key] = _AWSKey(secret_key, session_token)

    def route(self, request: Received) -> _Answer:
        if request.method == "POST" and urlsplit(request.path).path == "/":
            return self._sts(request)
        match = _INVOKE.fullmatch(urlsplit(request.path).path)
        if request.method != "POST" or match is None:
            return self.violation(f"no such operation: {request.method} {request.path}",
                                  _aws_error(404, "UnknownOperationException", "Unknown operation"))
        refused = self._check_signature(request)
        if refused is not None:
            return refused
        model = unquote(match["model"])
        body = json.loads(request.body)
        if "model" in body or "stream" in body or not body.get("anthropic_version"):
            return self.violation(f"not a Bedrock body: {sorted(body)}",
                                  _aws_error(400, "ValidationException", "Malformed input request"))
        reply = self.next_reply(body, model)
        if isinstance(reply, str):
            return self.violation(reply, _aws_error(400, "ValidationException", reply))
        self.models.append(model)
        events = [data for _, data in sse_events(reply[0], model, reply[1])]
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": reply[1]["input_tokens"], "outputTokenCount": reply[1]["output_tokens"],
            "invocationLatency": 120, "firstByteLatency": 40}
        return _Answer(200, {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": _request_id(),
                             "X-Amzn-Bedrock-Content-Type": "application/json"}, [_chunk(e) for e in events])

    def _check_signature(self, request: Received) -> _Answer | None:
        """None if the request carries a Bedrock API key or a valid SigV4 signature of a known key for
        bedrock in this region, else Bedrock's 403."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer":
            return None if bearer in self.api_keys else self.reject("unknown API key", _aws_error(
                403, "AccessDeniedException", "Authentication failed: Invalid API Key format or the key is unknown."))
        auth = _SIGV4.fullmatch(request.headers.get("authorization", ""))
        if auth is None:
            return self.reject("no SigV4 Authorization header", _aws_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"))
        key = self._keys.get(auth["key"])
        if key is None:
            return self.reject(f"unknown access key {auth['key']}", _aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."))
        if (auth["service"], auth["region"]) != ("bedrock", self.region):
            return self.reject(f"scoped to {auth['service']} in {auth['region']}", _aws_error(
                403, "InvalidSignatureException",
                f"Credential should be scoped to a valid region and service: bedrock in {self.region}."))
        amz_date = request.headers.get("x-amz-date", "")
        signed = auth["signed"].split(";")
        try:
            when = datetime.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=datetime.UTC)
        except ValueError:
            when = None
        if when is None or abs(datetime.datetime.now(datetime.UTC) - when) > _SKEW or amz_date[:8] != auth["day"]:
            return self.reject(f"x-amz-date {amz_date!r}", _aws_error(
                403, "InvalidSignatureException", "Signature expired or not yet valid."))
        if not {"host", "x-amz-date"} <= set(signed) or (key.token and "x-amz-security-token" not in signed):
            return self.reject(f"signed headers {signed}", _aws_error(
                403, "InvalidSignatureException", "The request signature does not sign the required headers."))
        if key.token is not None and request.headers.get("x-amz-security-token") != key.token:
            return self.reject("wrong session token", _aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."))
        signing = AWSRequest(method=request.method, url=f"http://{request.headers.get('host')}{request.path}",
                             headers={name: request.headers.get(name, "") for name in signed}, data=request.body)
        signing.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(auth["key"], key.secret, key.token), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(signing, signer.canonical_request(signing)), signing)
        if not hmac.compare_digest(expected, auth["signature"]):
            return self.reject("signature mismatch", _aws_error(
                403, "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details."))
        return None

    def _sts(self, request: Received) -> _Answer:
        """STS's AssumeRoleWithWebIdentity (an unsigned call): temporary credentials for the role, to the
        holder of the identity token, which Bedrock then accepts."""
        self.sts_calls += 1
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if form.get("Action") != "AssumeRoleWithWebIdentity" or not form.get("RoleSessionName"):
            return self.violation(f"not an AssumeRoleWithWebIdentity call: {form}", _sts_error(
                400, "InvalidAction", "Could not find operation"))
        if form.get("RoleArn") != self.role_arn or form.get("WebIdentityToken") != self.web_identity_token:
            return self.reject("STS refused the web identity", _sts_error(
                403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"))
        access = f"ASIA{secrets.token_hex(8).upper()}"
        secret, token = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
        self.allow(access, secret, token)
        expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials>"
            f"<AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<SubjectFromWebIdentityToken>repo:octo/app:ref:refs/heads/main</SubjectFromWebIdentityToken>"
            f"<AssumedRoleUser><Arn>{self.role_arn}/{form['RoleSessionName']}</Arn>"
            f"<AssumedRoleId>AROA{secrets.token_hex(8).upper()}:{form['RoleSessionName']}</AssumedRoleId>"
            "</AssumedRoleUser></AssumeRoleWithWebIdentityResult>"
            f"<ResponseMetadata><RequestId>{_request_id()}</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>")
        return _Answer(200, {"Content-Type": "text/xml"}, xml.encode())


def _sts_error(status: int, code: str, message: str) -> _Answer:
    xml = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
           f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{_request_id()}</RequestId>"
           "</ErrorResponse>")
    return _Answer(status, {"Content-Type": "text/xml"}, xml.encode())


# --------------------------------------------------------------------------- Google Vertex AI and OAuth


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_PREDICT = re.compile(r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/"
                      r"(?P<model>[^/:]+):streamRawPredict")
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# The audience of a service account's assertion: Google's token endpoint, wherever the key file's
# token_uri sends it (google-auth signs this audience; Google's endpoint requires it).
_ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"


def _google_error(status: int, state: str, message: str) -> _Answer:
    return _json(status, {"error": {"code": status, "message": message, "status": state}})


class FakeGoogle(_Loopback):
    """Vertex AI (`url` + "/v1" is the client's base_url) serving `project` in `region`, and Google's
    OAuth token endpoint (`url` + "/token"), which trades a JWT signed by the service account's key for
    an access token; Vertex takes only those."""

    def __init__(self, script: Iterable[Reply] = (), *, project: str, region: str) -> None:
        super().__init__(script)
        self.project = project
        self.region = region
        self.email = f"fixloop@{project}.iam.gserviceaccount.com"
        self.key = new_rsa_key()
        self.key_id = secrets.token_hex(20)
        self.models: list[str] = []
        self.tokens_issued: list[str] = []

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def credentials_file(self, folder: Path, *, project_id: str | None = None,
                         key: rsa.RSAPrivateKey | None = None) -> Path:
        """A service account key file, as GOOGLE_APPLICATION_CREDENTIALS names it: this account's (or one
        signed by `key`, which the token endpoint does not know)."""
        pem = (key or self.key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
        info = {"type": "service_account", "project_id": project_id, "private_key_id": self.key_id,
                "private_key": pem, "client_email": self.email, "client_id": "1" * 21, "token_uri": self.token_uri}
        path = folder / "service-account.json"
        path.write_text(json.dumps({k: v for k, v in info.items() if v is not None}))
        return path

    def route(self, request: Received) -> _Answer:
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/token":
            return self._token(request)
        match = _PREDICT.fullmatch(path)
        if request.method != "POST" or match is None:
            return self.violation(f"no such method: {request.method} {request.path}",
                                  _google_error(404, "NOT_FOUND", "The requested URL was not found."))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens_issued:
            return self.reject("no access token it issued", _google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential."))
        if (match["project"], match["region"]) != (self.project, self.region):
            return self.reject(f"project {match['project']} in {match['region']}", _google_error(
                403, "PERMISSION_DENIED", f"Permission denied on resource project {match['project']}."))
        model = unquote(match["model"])
        body = json.loads(request.body)
        if "model" in body or body.get("stream") is not True or not body.get("anthropic_version"):
            return self.violation(f"not a Vertex streamRawPredict body: {sorted(body)}",
                                  _google_error(400, "INVALID_ARGUMENT", "Invalid request body."))
        reply = self.next_reply(body, model)
        if isinstance(reply, str):
            return self.violation(reply, _google_error(400, "INVALID_ARGUMENT", reply))
        self.models.append(model)
        return _Answer(200, {"Content-Type": "text/event-stream; charset=utf-8"}, _sse(reply[0], model, reply[1]))

    def _token(self, request: Received) -> _Answer:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != _JWT_BEARER:
            return self.violation(f"grant_type {form.get('grant_type')!r}", _json(
                400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}))
        assertion = form.get("assertion", "")
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            claims = jwt.decode(assertion, self.key.public_key(), algorithms=["RS256"], audience=_ASSERTION_AUDIENCE,
                                issuer=self.email, options={"require": ["iat", "exp", "aud", "iss"]})
        except jwt.InvalidTokenError as error:
            return self.reject(f"assertion refused: {error}", _json(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}))
        if kid != self.key_id or _CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return self.violation(f"assertion kid {kid!r}, scope {claims.get('scope')!r}", _json(
                400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience."}))
        token = "ya29." + secrets.token_urlsafe(40)
        self.tokens_issued.append(token)
        return _json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


# --------------------------------------------------------------------------- Microsoft Foundry and Entra ID

_FOUNDRY_RESOURCE = "https://ai.azure.com"  # the token audience; the scope is "https://ai.azure.com/.default"


class FakeFoundry(_Loopback):
    """Foundry's Claude endpoint (`url` + "/anthropic/" is the client's base_url), taking `api_key` in
    `x-api-key`, or a bearer token from its App Service managed identity endpoint (`identity_endpoint`,
    with IDENTITY_HEADER `identity_header`) issued for Foundry's audience.

    `identity_refuses`: the identity endpoint answers as it does for an app without an identity;
    `token_lifetime`: seconds the tokens it issues last."""

    def __init__(self, script: Iterable[Reply] = (), *, api_key: str = "", identity_header: str = "",
                 token_lifetime: int = 3600) -> None:
        super().__init__(script)
        self.api_key = api_key
        self.identity_header = identity_header
        self.token_lifetime = token_lifetime
        self.identity_refuses = False
        self.tokens_issued: list[str] = []
        self.models: list[str] = []

    @property
    def identity_endpoint(self) -> str:
        return f"{self.url}/msi/token"

    def route(self, request: Received) -> _Answer:
        path = urlsplit(request.path).path
        if request.method == "GET" and path == "/msi/token":
            return self._identity(request)
        if request.method != "POST" or path != "/anthropic/v1/messages":
            return self.violation(f"no such route: {request.method} {request.path}",
                                  _foundry_error(404, "not_found_error", "Resource not found"))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        by_key = bool(self.api_key) and request.headers.get("x-api-key") == self.api_key
        by_token = scheme == "Bearer" and token in self.tokens_issued
        if not (by_key or by_token):
            return self.reject("neither the resource's key nor a token for it", _foundry_error(
                401, "authentication_error", "Access denied due to invalid subscription key or wrong API endpoint."))
        if not request.headers.get("anthropic-version"):
            return self.violation("no anthropic-version header",
                                  _foundry_error(400, "invalid_request_error", "anthropic-version: header is required"))
        body = json.loads(request.body)
        if body.get("stream") is not True:
            return self.violation("not a stream request", _foundry_error(400, "invalid_request_error", "stream"))
        model = str(body.pop("model", ""))
        reply = self.next_reply(body, model)
        if isinstance(reply, str):
            return self.violation(reply, _foundry_error(400, "invalid_request_error", reply))
        self.models.append(model)
        return _Answer(200, {"Content-Type": "text/event-stream; charset=utf-8"}, _sse(reply[0], model, reply[1]))

    def _identity(self, request: Received) -> _Answer:
        """App Service's managed identity endpoint (api-version 2019-08-01)."""
        query = {name: values[0] for name, values in parse_qs(urlsplit(request.path).query).items()}
        if request.headers.get("x-identity-header") != self.identity_header or query.get("api-version") != "2019-08-01":
            return self.violation(f"identity request {query}, header {request.headers.get('x-identity-header')!r}",
                                  _json(401, {"statusCode": 401, "message": "Unauthorized"}))
        if self.identity_refuses:
            return self.reject("the app has no managed identity", _json(
                400, {"statusCode": 400, "message": "No managed identity found for the app."}))
        if query.get("resource") != _FOUNDRY_RESOURCE:
            return self.violation(f"token asked for {query.get('resource')!r}", _json(
                400, {"statusCode": 400, "message": "Invalid resource."}))
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(40)
        self.tokens_issued.append(token)
        return _json(200, {"access_token": token, "expires_on": str(int(time.time()) + self.token_lifetime),
                           "resource": _FOUNDRY_RESOURCE, "token_type": "Bearer", "client_id": "0" * 8})


def _foundry_error(status: int, kind: str, message: str) -> _Answer:
    return _json(status, {"type": "error", "error": {"type": kind, "message": message}})
