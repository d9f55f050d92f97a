"""Who is calling: static tokens, minted installation tokens and App JWTs (RS256)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .model import Caller, utcnow
from .state import GitHubState

JWT_MAX_LIFETIME = 600  # GitHub: exp at most 10 minutes after iat ...
CLOCK_DRIFT = 60  # ... with this much tolerance, and iat at most this far in the future


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_public_key(key: str | bytes | RSAPublicKey) -> RSAPublicKey:
    if isinstance(key, RSAPublicKey):
        return key
    loaded = load_pem_public_key(key.encode() if isinstance(key, str) else key)
    if not isinstance(loaded, RSAPublicKey):
        raise TypeError("the App key must be an RSA public key")
    return loaded


@dataclass
class Authenticator:
    state: GitHubState
    static_tokens: Mapping[str, str]  # token -> login it acts as
    app_key: RSAPublicKey | None

    def identify(self, header: str | None) -> Caller | None:
        """The caller for an ``Authorization`` header; None when absent; AuthError if bad."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            raise AuthError(401, "Bad credentials")
        if token in self.state.user_tokens:
            return Caller(token, "user", self.state.add_user(self.state.user_tokens[token]))
        if token in self.static_tokens:
            return Caller(token, "token", self.state.add_user(self.static_tokens[token]))
        issued = self.state.issued_token(token)
        if issued is not None:
            if issued.expires_at <= utcnow():
                raise AuthError(401, "Bad credentials")
            inst = self.state.find_installation(issued.installation_id)
            app = self.state.app
            if inst is None or app is None:
                raise AuthError(401, "Bad credentials")
            return Caller(token, "installation", self.state.add_user(f"{app.slug}[bot]"),
                          app_id=app.id, installation=inst, issued=issued)
        if token.count(".") == 2:
            self._verify_jwt(token)
            app = self.state.app
            assert app is not None
            return Caller(token, "jwt", app.owner, app_id=app.id)
        raise AuthError(401, "Bad credentials")

    def _verify_jwt(self, token: str) -> dict[str, Any]:
        app = self.state.app
        if app is None or self.app_key is None:
            raise AuthError(401, "A JSON web token could not be decoded")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.app_key, algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"], "verify_iat": False,
                         "verify_exp": False})
        except jwt.PyJWTError as exc:
            raise AuthError(401, "A JSON web token could not be decoded") from exc
        now = time.time()
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or iat > now + CLOCK_DRIFT:
            raise AuthError(401, "'Issued at' claim ('iat') must be an Integer representing the "
                                 "time that the assertion was issued")
        if not isinstance(exp, int) or exp <= now:
            raise AuthError(401, "'Expiration time' claim ('exp') must be a numeric value "
                                 "representing the future time at which the assertion expires")
        if exp - iat > JWT_MAX_LIFETIME + CLOCK_DRIFT:
            raise AuthError(401, "'Expiration time' claim ('exp') is too far in the future")
        if str(claims["iss"]) not in (str(app.id), app.client_id):
            raise AuthError(401, "A JSON web token could not be decoded")
        return claims
