"""GitHub App authentication: the App's JWT, and installation tokens cached per scope.

The JWT (RS256, PyJWT) is issued 60 s in the past against clock drift and expires 9 minutes
ahead (GitHub's limit is 10). Installation tokens are narrowed to one repository and the
permissions a step needs, and reused until five minutes before they expire (GitHub: 1 hour).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from github import Auth, GithubException
from requests import RequestException

from bot.errors import GitHubError
from bot.github.client import RequestPolicy

JWT_BACKDATE = 60
JWT_LIFETIME = 540
REFRESH_MARGIN = 300


def app_jwt(app_id: str, private_key: str, now: float) -> str:
    return jwt.encode({"iat": int(now) - JWT_BACKDATE, "exp": int(now) + JWT_LIFETIME, "iss": str(app_id)},
                      private_key, algorithm="RS256")


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class InstallationTokens:
    def __init__(self, *, app_id: str, private_key: str, api_url: str, clock: Callable[[], float] = time.time,
                 policy: RequestPolicy = RequestPolicy()) -> None:
        """`clock` decides when a cached token is too old; JWTs always carry the real time. `policy`:
        the App's requests are paced, timed out and retried like every other (POSTs: see `_Retry`)."""
        self.app_id, self.private_key, self.api_url, self.clock = app_id, private_key, api_url, clock
        self.policy = policy
        self._cache: dict[tuple[int, str, tuple[tuple[str, str], ...]], _Token] = {}
        self._lock = threading.Lock()
        self.minted = 0  # tokens fetched from GitHub (the rest came from the cache)

    def token(self, installation_id: int, repository: str, permissions: Mapping[str, str]) -> str:
        key = (installation_id, repository, tuple(sorted(permissions.items())))
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached.expires_at - self.clock() > REFRESH_MARGIN:
                return cached.value
        fresh = self._mint(installation_id, repository, permissions)
        with self._lock:
            self._cache[key] = fresh
            self.minted += 1
        return fresh.value

    def _as_app(self, what: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer to one request made as the App. No usable answer (no answer, or retries used
        up) is a GitHubError here; GitHub's refusals (GithubException) are left to the caller to explain."""
        token = Auth.AppAuthToken(app_jwt(self.app_id, self.private_key, time.time()))
        github = self.policy.github(token, self.api_url)
        try:
            return github.requester.requestJsonAndCheck(method, path, input=body)[1]
        except RequestException as error:
            raise GitHubError(f"could not {what}: {type(error).__name__}: {error}") from None

    def _mint(self, installation_id: int, repository: str, permissions: Mapping[str, str]) -> _Token:
        if repository.count("/") != 1:
            raise GitHubError(f"{repository!r} is not an owner/name repository")
        try:
            data = self._as_app(
                f"get an installation token for {repository}", "POST",
                f"/app/installations/{installation_id}/access_tokens",
                {"repositories": [repository.split("/", 1)[1]], "permissions": dict(permissions)})
        except GithubException as error:
            message = error.data.get("message") if isinstance(error.data, dict) else error.data
            raise GitHubError(f"could not get an installation token for {repository} (installation {installation_id}): "
                              f"HTTP {error.status}: {message}") from None
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")).timestamp()
        return _Token(str(data["token"]), expires)

    def installation_for(self, repository: str) -> int:
        """The id of the App's installation on `repository`."""
        try:
            data = self._as_app(f"look up the App's installation on {repository}", "GET",
                                f"/repos/{repository}/installation")
        except GithubException as error:
            raise GitHubError(f"the App is not installed on {repository} (HTTP {error.status})") from None
        return int(data["id"])

    def installation_of(self, account: str) -> int:
        """The id of the App's installation on the organisation or user `account`."""
        try:
            installations = self._as_app("list the App's installations", "GET", "/app/installations?per_page=100")
        except GithubException as error:
            raise GitHubError(f"could not list the App's installations (HTTP {error.status})") from None
        for installation in installations:
            if str((installation.get("account") or {}).get("login", "")).lower() == account.lower():
                return int(installation["id"])
        raise GitHubError(f"the App is not installed on {account}")

    def repositories(self, installation_id: int) -> list[dict[str, Any]]:
        """The repositories the installation can see (their API objects: name, topics, language, archived)."""
        try:
            data = self._as_app(f"get an installation token for installation {installation_id}", "POST",
                                f"/app/installations/{installation_id}/access_tokens",
                                {"permissions": {"metadata": "read"}})
            requester = self.policy.github(Auth.Token(str(data["token"])), self.api_url).requester
            found: list[dict[str, Any]] = []
            for page in range(1, 101):  # at most 10,000 repositories
                batch = requester.requestJsonAndCheck("GET", f"/installation/repositories?per_page=100&page={page}")[1]
                found += batch.get("repositories") or []
                if len(found) >= int(batch.get("total_count") or 0) or not batch.get("repositories"):
                    return found
            return found
        except GithubException as error:
            raise GitHubError(f"could not list the repositories of installation {installation_id} "
                              f"(HTTP {error.status})") from None
        except RequestException as error:
            raise GitHubError(f"could not list the repositories of installation {installation_id}: {error}") from None

    def app_slug(self) -> str:
        """The App's own slug (GET /app)."""
        try:
            data = self._as_app("read the App's own description", "GET", "/app")
        except GithubException as error:
            raise GitHubError(f"could not read the App's own description (HTTP {error.status}); "
                              "check APP_ID and the key") from None
        return str(data["slug"])
