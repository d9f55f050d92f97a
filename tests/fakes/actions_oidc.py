"""GitHub Actions' OIDC side on a loopback port: the issuer (discovery document and signing keys, as
`https://token.actions.githubusercontent.com` publishes them) and a job's token request endpoint (what
`ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` point a job at when it has
`id-token: write`).

    with FakeActionsOIDC() as oidc:
        env = oidc.job_environment("octo/demo", run_id=42)  # what the runner's environment gets
        token = oidc.mint("octo/demo", 42, audience="http://127.0.0.1:8000")  # or a token directly

Tokens carry GitHub's claims (`repository`, `run_id` as a string, `jti`, ...), signed RS256 with a key
whose id is in the JWKS. `forged_key` signs with a key the issuer never published.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class FakeActionsOIDC:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)
        self._jobs: dict[str, tuple[str, int]] = {}  # request token -> (repository, run id)
        self.minted: list[dict[str, Any]] = []  # the claims of every token the endpoint gave a job
        self.requests: list[str] = []  # "METHOD path" of every request
        self.job_requests_refused = False  # a job's token requests fail (an outage of the token service)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeActionsOIDC:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def job_environment(self, repository: str, run_id: int) -> dict[str, str]:
        """The variables a job of `repository`'s workflow run `run_id` has with `id-token: write`."""
        request_token = secrets.token_urlsafe(24)
        self._jobs[request_token] = (repository, run_id)
        return {"ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/_apis/token?api-version=2.0",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token}

    def mint(self, repository: str, run_id: int, *, audience: str, key: Any = None, issuer: str | None = None,
             lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        owner = repository.split("/")[0]
        body = {"jti": str(uuid.uuid4()), "sub": f"repo:{repository}:ref:refs/heads/main", "aud": audience,
                "ref": "refs/heads/main", "repository": repository, "repository_owner": owner,
                "run_id": str(run_id), "run_number": "1", "run_attempt": "1", "actor": "octocat",
                "workflow": "fixloop", "event_name": "workflow_dispatch", "iss": issuer or self.url,
                "nbf": now - 5, "iat": now - 5, "exp": now + lifetime, **claims}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.key_id, "use": "sig", "alg": "RS256"}]}


def _handler(fake: FakeActionsOIDC) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            fake.requests.append(f"GET {parts.path}")
            if parts.path == "/.well-known/openid-configuration":
                self._json(200, {"issuer": fake.url, "jwks_uri": f"{fake.url}/.well-known/jwks",
                                 "id_token_signing_alg_values_supported": ["RS256"]})
            elif parts.path == "/.well-known/jwks":
                self._json(200, fake.jwks())
            elif parts.path == "/_apis/token":
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                job = fake._jobs.get(token) if scheme.lower() == "bearer" else None
                audience = parse_qs(parts.query).get("audience", [""])[0]
                if job is None or fake.job_requests_refused:
                    self._json(401, {"message": "the request token is not valid"})
                elif not audience:
                    self._json(400, {"message": "audience is required"})
                else:
                    value = fake.mint(*job, audience=audience)
                    fake.minted.append(jwt.decode(value, options={"verify_signature": False}))
                    self._json(200, {"value": value})
            else:
                self._json(404, {"message": "Not Found"})

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
