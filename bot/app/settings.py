"""The App server's settings, from the environment (Probot's names), checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bot.app._database import is_postgres_url
from bot.app.oidc import GITHUB_ISSUER
from bot.errors import ConfigError
from bot.task import WORKFLOW_FILE

HOW_TO = ("Register the App with `fixloop app register`, which writes these settings to .env for "
          "`fixloop serve --env-file .env`; see 'Operating the GitHub App' in fixloop's documentation.")


@dataclass(frozen=True)
class AppSettings:
    app_id: str
    private_key: str  # PEM
    webhook_secret: str
    api_url: str = "https://api.github.com"
    database: Path | str = Path("fixloop.sqlite3")  # an SQLite file, or a PostgreSQL URL
    api_token: str | None = None  # bearer token for /api/sessions; the API is off without it
    workflow_file: str = WORKFLOW_FILE
    app_slug: str | None = None  # the App's own slug, to ignore its own check suites and buttons
    campaign_pace: float = 1.0  # seconds between two campaign dispatches in one installation (GitHub's write limits)
    public_url: str | None = None  # where people and runners reach the App: the OIDC audience, OAuth's callback
    oidc_issuer: str = GITHUB_ISSUER  # who signs the runners' tokens (GHES: https://HOST/_services/token)
    client_id: str | None = None  # the App's OAuth client, for signing in to the web UI
    client_secret: str | None = None
    ui: bool = False  # the web UI at /ui (needs public_url, client_id and client_secret)
    metrics: bool = True  # /metrics

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values nothing the App writes (comments, logs, pages) may carry."""
        return (self.private_key, self.webhook_secret, self.api_token or "", self.client_secret or "")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AppSettings:
        problems = []
        app_id = environ.get("APP_ID", "").strip()
        if not app_id.isdigit():
            problems.append("APP_ID must be the App's numeric id (GitHub shows it on the App's settings page)"
                            + (f", not {app_id!r}" if app_id else ""))
        key = environ.get("PRIVATE_KEY", "")
        key_path = environ.get("PRIVATE_KEY_PATH", "")
        if not key and key_path:
            try:
                key = Path(key_path).read_text(encoding="utf-8")
            except OSError as error:
                problems.append(f"PRIVATE_KEY_PATH {key_path!r} cannot be read: {error.strerror}")
        if not key and not key_path:
            problems.append("PRIVATE_KEY (the PEM text) or PRIVATE_KEY_PATH (its file) must be set: "
                            "GitHub offers the key as a .pem download on the App's settings page")
        elif key:
            key = key.replace("\\n", "\n")  # keys passed through single-line env files
            problems += _check_key(key)
        secret = environ.get("WEBHOOK_SECRET", "")
        if not secret:
            problems.append("WEBHOOK_SECRET must be set to the App's webhook secret (without it no delivery "
                            "can be verified, and every one is rejected)")
        api_url = (environ.get("GITHUB_API_URL") or cls.api_url).rstrip("/")
        if not api_url.startswith(("https://", "http://")):
            problems.append(f"GITHUB_API_URL must be a URL such as https://api.github.com or https://HOST/api/v3, "
                            f"not {api_url!r}")
        pace = environ.get("FIXLOOP_CAMPAIGN_PACE", "").strip()
        try:
            campaign_pace = float(pace) if pace else cls.campaign_pace
            if not 0 <= campaign_pace <= 3600:
                raise ValueError(pace)
        except ValueError:
            problems.append(f"FIXLOOP_CAMPAIGN_PACE must be the seconds between two campaign dispatches in one "
                            f"installation, from 0 to 3600, not {pace!r}")
            campaign_pace = cls.campaign_pace
        public_url = environ.get("FIXLOOP_PUBLIC_URL", "").strip().rstrip("/") or None
        if public_url is not None and not _web_address(public_url):
            problems.append(f"FIXLOOP_PUBLIC_URL must be the App's address as people and runners reach it, such as "
                            f"https://fixloop.example.com, not {public_url!r}")
        issuer = environ.get("FIXLOOP_OIDC_ISSUER", "").strip().rstrip("/") or GITHUB_ISSUER
        if not _web_address(issuer):
            problems.append(f"FIXLOOP_OIDC_ISSUER must be a URL such as {GITHUB_ISSUER}, not {issuer!r}")
        client_id = environ.get("GITHUB_CLIENT_ID", "").strip() or None
        client_secret = environ.get("GITHUB_CLIENT_SECRET", "").strip() or None
        switches = {}
        for name, default in (("FIXLOOP_UI", bool(client_id and public_url)), ("FIXLOOP_METRICS", True)):
            value = environ.get(name, "").strip().lower()
            if value not in ("", "on", "off"):
                problems.append(f"{name} must be on or off, not {value!r}")
            switches[name] = default if value == "" else value == "on"
        if switches["FIXLOOP_UI"] and public_url and not _safe_for_cookies(public_url):
            problems.append(f"the web UI's FIXLOOP_PUBLIC_URL must be https:// (its sign-in cookies must not travel "
                            f"in clear), or http:// on this machine (localhost) for a try-out, not {public_url!r}")
        if switches["FIXLOOP_UI"]:
            needs = [name for name, value in (("GITHUB_CLIENT_ID", client_id), ("GITHUB_CLIENT_SECRET", client_secret),
                                              ("FIXLOOP_PUBLIC_URL", public_url)) if not value]
            if needs:
                problems.append(f"the web UI (FIXLOOP_UI=on) needs {', '.join(needs)}: the client id and secret are "
                                "on the App's settings page (`fixloop app register` writes them), the public URL is "
                                "where people reach this server; or set FIXLOOP_UI=off")
        if problems:
            raise ConfigError("fixloop serve cannot start:\n" + "\n".join(f"  - {p}" for p in problems) + f"\n{HOW_TO}")
        return cls(app_id=app_id, private_key=key, webhook_secret=secret, api_url=api_url,
                   database=_database(environ.get("FIXLOOP_DB", "")) or cls.database,
                   api_token=environ.get("FIXLOOP_API_TOKEN") or None,
                   workflow_file=environ.get("FIXLOOP_WORKFLOW") or cls.workflow_file,
                   app_slug=environ.get("APP_SLUG") or None, campaign_pace=campaign_pace, public_url=public_url,
                   oidc_issuer=issuer, client_id=client_id, client_secret=client_secret,
                   ui=switches["FIXLOOP_UI"], metrics=switches["FIXLOOP_METRICS"])


def _web_address(value: str) -> bool:
    return value.startswith(("https://", "http://")) and " " not in value


def _safe_for_cookies(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or parts.hostname in ("localhost", "127.0.0.1", "::1")


def _database(value: str) -> Path | str | None:
    """FIXLOOP_DB: a PostgreSQL URL as it is, else an SQLite file's path; None when unset."""
    if not value:
        return None
    return value if is_postgres_url(value) else Path(value)


def _check_key(pem: str) -> list[str]:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        return [f"the private key is not a readable PEM private key ({error}); use the .pem file GitHub gave you"]
    if not isinstance(key, RSAPrivateKey):
        return ["the private key must be an RSA key (GitHub Apps sign their JWTs with RS256)"]
    return []
