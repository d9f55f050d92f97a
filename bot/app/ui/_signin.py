"""Signing in to the web UI with GitHub, through the App's own OAuth web flow, and the cookies that keep a
person signed in.

At sign-in the person's user access token is asked once which of the App's installations and
repositories they can reach (GitHub answers with those that both the installation and the person can
access); the list is kept in their server-side session and the token is dropped. Cookies carry only a
random id, signed with a key derived from the webhook secret (so every replica checks them alike).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import github
import requests
from github.PaginatedList import PaginatedList
from github.Repository import Repository

from bot.errors import GitHubError

SESSION_COOKIE = "fixloop_session"
STATE_COOKIE = "fixloop_oauth_state"
LIFETIME = 2 * 3600  # seconds a sign-in lasts, and its list of repositories (access revoked on GitHub ends with it)
STATE_LIFETIME = 600  # seconds between leaving for GitHub and coming back


@dataclass(frozen=True)
class Person:
    login: str
    repositories: tuple[str, ...]  # owner/name, as GitHub spells them
    csrf: str  # the token every form of theirs carries

    def may_see(self, repository: str) -> bool:
        return repository.lower() in {r.lower() for r in self.repositories}


class Signer:
    """Signs cookie values (HMAC-SHA256) with a key of their own, derived from `secret`."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"fixloop web UI cookies", hashlib.sha256).digest()

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str | None) -> str | None:
        value, _, mac = (signed or "").rpartition(".")
        return value if value and hmac.compare_digest(mac, self._mac(value)) else None

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class GitHubSignIn:
    def __init__(self, api_url: str, client_id: str, client_secret: str, *, timeout: int = 15) -> None:
        self.api_url, self.timeout = api_url, timeout
        self._oauth = github.Github(base_url=api_url, timeout=timeout).get_oauth_application(client_id, client_secret)

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where the browser goes to sign in and authorize the App (GitHub's pages)."""
        return self._oauth.get_login_url(redirect_uri=redirect_uri, state=state)

    def person(self, code: str) -> tuple[str, list[str]]:
        """The login of the person who came back with `code`, and the repositories they can reach through the
        App's installations. Raises GitHubError."""
        try:
            token = self._oauth.get_access_token(code).token
            user = github.Github(auth=github.Auth.Token(token), base_url=self.api_url, timeout=self.timeout)
            me = user.get_user()
            login = me.login
            repositories = [repository.full_name for installation in me.get_installations()
                            for repository in PaginatedList(Repository, user.requester,
                                                            f"/user/installations/{installation.id}/repositories",
                                                            None, list_item="repositories")]
        except github.GithubException as error:
            data = error.data if isinstance(error.data, dict) else {}
            message = data.get("error_description") or data.get("message") or f"HTTP {error.status}"
            raise GitHubError(f"GitHub did not sign you in: {message}") from None
        except requests.RequestException as error:
            raise GitHubError(f"GitHub could not be reached to sign you in: {type(error).__name__}") from None
        return login, sorted(set(repositories))
