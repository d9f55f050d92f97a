"""The GitHub App manifest for registering fixloop's App through GitHub's manifest flow.

See "Registering a GitHub App from a manifest" in GitHub's documentation: the manifest is POSTed
as the form field `manifest` to `https://github.com/settings/apps/new` (or
`/organizations/ORG/settings/apps/new`); GitHub then redirects to `redirect_url` with a one-hour
`code`, which `POST /app-manifests/{code}/conversions` exchanges for the App ID, the private key
(`pem`) and the webhook secret.

People sign in to fixloop's web UI through the App's OAuth web flow, which comes back to
`callback_urls` (`/ui/callback`); the user token only tells which repositories the person can reach
and is then dropped: fixloop never acts on behalf of a user (no `setup_url`, no
`request_oauth_on_install`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from bot.errors import ConfigError
from bot.github.events import EVENT_NAMES

# Permission -> (access, why). The workflow mints its own installation token from the same App,
# so this is also everything the session in Actions needs.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "actions": ("write", "dispatch the fixloop workflow; cancel its runs on /fixloop stop; read failed runs' logs"),
    "checks": ("write", "create and update fixloop's check runs; receive check_suite and check_run events"),
    "contents": ("write", "push fixloop's branch (with the workflow's App token); read .github/fixloop.yml"),
    "issues": ("write", "comment on issues and pull requests; react to /fixloop commands"),
    "pull_requests": ("write", "open and update draft pull requests; comment on pull requests and review threads"),
    "metadata": ("read", "read repositories (mandatory for every GitHub App)"),
}

# Webhook events the App subscribes to: those fixloop acts on, but `installation` and
# `installation_repositories` (GitHub delivers them to every App) and `workflow_dispatch` (the Action's
# hand-over from the App, never a webhook of its own).
UNSUBSCRIBED = frozenset({"installation", "installation_repositories", "workflow_dispatch"})
EVENTS: tuple[str, ...] = tuple(sorted(EVENT_NAMES - UNSUBSCRIBED))

HOMEPAGE = "https://github.com/fixloop-dev/fixloop"
PLACEHOLDER_URL = "https://REPLACE-WITH-YOUR-FIXLOOP-HOST.invalid"
DESCRIPTION = (
    "CI-native coding agent: label an issue, comment /fixloop, or let CI fail, and fixloop runs an "
    "agent in GitHub Actions that proposes, validates and iterates until your tests pass, then "
    "opens a draft pull request."
)
MAX_NAME_LENGTH = 34  # GitHub's limit for App names


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"the App's URL must be an http(s) URL without query or fragment, got {url!r} "
                          "(for example --url https://fixloop.example.com)")
    return url.rstrip("/")


def app_manifest(url: str | None = None, *, name: str = "fixloop") -> dict[str, Any]:
    """The manifest for an App whose `fixloop serve` is reachable at `url`.

    Without `url`, the webhook and redirect URLs are `PLACEHOLDER_URL`, to be replaced before use.
    GitHub sends the registering browser back to `redirect_url` (the server's base URL) with
    `?code=...`; the server need not be running then: the code is read from the address bar.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"the App's name must have 1 to {MAX_NAME_LENGTH} characters, got {name!r}")
    base = PLACEHOLDER_URL if url is None else base_url(url)
    return {
        "name": name,
        "url": HOMEPAGE,
        "description": DESCRIPTION,
        "hook_attributes": {"url": f"{base}/webhook", "active": True},
        "redirect_url": f"{base}/",
        "callback_urls": [f"{base}/ui/callback"],
        "public": False,
        "default_permissions": {permission: access for permission, (access, _) in PERMISSIONS.items()},
        "default_events": list(EVENTS),
    }


def render_manifest(url: str | None = None, *, name: str = "fixloop") -> str:
    """`app_manifest` as pretty JSON, ending with a newline."""
    return json.dumps(app_manifest(url, name=name), indent=2) + "\n"
