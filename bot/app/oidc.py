"""Who is reporting: a GitHub Actions OIDC token, verified (pure apart from fetching the issuer's keys).

A workflow job with `id-token: write` can mint a token signed by GitHub's issuer for an audience it
names. fixloop's runner names the App's URL; the App checks the signature against the issuer's
published keys, the issuer, the audience, the expiry, and then (`check_run`) that the token's
`repository` and `run_id` are those of the session it dispatched. No secret is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
LEEWAY = 60  # seconds of clock difference tolerated between GitHub and the App


class TokenRefused(Exception):
    """The token does not prove what the request claims; the message says why (no token material)."""


@dataclass(frozen=True)
class RunIdentity:
    repository: str
    run_id: int
    run_attempt: int  # a re-run of the workflow keeps its run id
    token_id: str  # `jti`: each token is taken once
    expires: float


class ActionsTokenVerifier:
    def __init__(self, issuer: str, audience: str, *, timeout: float = 10.0) -> None:
        """`issuer`: GitHub's (`GITHUB_ISSUER`), or a GitHub Enterprise Server's `https://HOST/_services/token`;
        `audience`: the App's public URL, as the runner asks for it."""
        self.issuer, self.audience = issuer.rstrip("/"), audience
        # The issuer's keys, fetched on first use and again for a key id not seen before (a rotation; PyJWT
        # 2.13 and later keep the cached keys when a fetch fails, and bind the header's algorithm to the key's).
        self._keys = jwt.PyJWKClient(f"{self.issuer}/.well-known/jwks", cache_keys=True, lifespan=3600,
                                     timeout=timeout)

    def verify(self, token: str) -> RunIdentity:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as error:
            raise TokenRefused(f"the issuer's keys could not be fetched from {self.issuer}: {error}") from None
        except jwt.PyJWTError as error:
            raise TokenRefused(f"not a token signed by {self.issuer}: {error}") from None
        try:
            claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], audience=self.audience,
                                                issuer=self.issuer, leeway=LEEWAY,
                                                options={"require": ["exp", "iat", "jti", "repository", "run_id"]})
        except jwt.PyJWTError as error:
            raise TokenRefused(f"the token is not valid for this App: {error}") from None
        run_id, attempt = str(claims["run_id"]), str(claims.get("run_attempt") or "1")
        if not run_id.isdigit() or not attempt.isdigit():
            raise TokenRefused("the token's run_id or run_attempt is not a number")
        return RunIdentity(repository=str(claims["repository"]), run_id=int(run_id), run_attempt=int(attempt),
                           token_id=str(claims["jti"]), expires=float(claims["exp"]))


def check_run(identity: RunIdentity, repository: str, run_id: int | None) -> None:
    """The token must come from the session's own workflow run."""
    if identity.repository.lower() != repository.lower():
        raise TokenRefused(f"the token is for {identity.repository}, not {repository}")
    if run_id is None:
        raise TokenRefused("the App does not know this session's workflow run yet")
    if identity.run_id != run_id:
        raise TokenRefused(f"the token is for workflow run {identity.run_id}, not this session's")
