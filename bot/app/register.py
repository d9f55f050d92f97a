"""`fixloop app register`: GitHub's manifest flow run from the terminal, the way Probot's setup runs it.

1. A one-shot page on 127.0.0.1 holds the manifest of `bot.app.manifest` (its `redirect_url` pointed at
   the page's own /callback) in a form with a Register button, which POSTs it as the field `manifest`
   to GitHub's `/settings/apps/new?state=TOKEN` (or `/organizations/ORG/settings/apps/new?state=TOKEN`).
2. GitHub shows the App, the user confirms (and may rename it), and GitHub creates it and sends the
   browser to /callback?code=...&state=TOKEN. A callback without that state is not GitHub's answer to
   this page (another page may have made the browser ask): it is refused, nothing is exchanged, and the
   command keeps waiting for the real one.
3. `POST /app-manifests/{code}/conversions` (unauthenticated: the code, valid once and for one hour,
   is the proof) answers the App's id, private key and webhook secret. They go to a .env file for
   `fixloop serve`, created with mode 0600; nothing secret is ever printed or shown on the page.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shlex
import sys
import threading
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests

from bot.app.manifest import app_manifest, base_url
from bot.errors import ConfigError, FixloopError, GitHubError

GITHUB_WEB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
CALLBACK_PATH = "/callback"
EXCHANGE_TIMEOUT = 30  # seconds for GitHub's answer to the code exchange
EXPIRED = "the code expired or was already used; run fixloop app register again"
# GitHub's account names: letters, digits and single hyphens, neither first nor last, at most 39 characters.
ACCOUNT_NAME = re.compile(r"(?=.{1,39}$)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")

# .env values: written bare (words without shell syntax) or in single quotes (nothing is special inside),
# which a POSIX shell (`set -a; . ./.env`), python-dotenv and Docker Compose all read literally. Read back
# also in double quotes, without what a shell would expand or unescape there ($, `, a backslash before $ ` " \).
BARE_VALUE = re.compile(r"[^\s'\"$`\\;&|<>()]*")
SINGLE_QUOTED = re.compile(r"'([^']*)'")
DOUBLE_QUOTED = re.compile(r'"((?:[^"$`\\]|\\[^"$`\\])*)"')
ENV_LINE = re.compile(r"(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)")
ENV_HEADER = """\
# fixloop serve's settings for a GitHub App, written by `fixloop app register`. Load them with
# `fixloop serve --env-file FILE`, or in a shell with `set -a; . ./FILE; set +a`.
# Secret: this file holds the App's private key and webhook secret. Keep it out of git.
"""


@dataclass(frozen=True)
class GitHubTarget:
    """Where the App is registered: GitHub's web pages (the form posts there) and its API."""

    web_url: str
    api_url: str
    org: str | None = None

    @property
    def _owner_path(self) -> str:
        return f"/organizations/{self.org}" if self.org else ""

    def new_app_url(self, state: str) -> str:
        """The address the page's form posts the manifest to."""
        return f"{self.web_url}{self._owner_path}/settings/apps/new?{urlencode({'state': state})}"

    def app_settings_url(self, slug: str = "") -> str:
        """An App's settings page, or (no slug) the list of the account's Apps."""
        return f"{self.web_url}{self._owner_path}/settings/apps/{slug}".rstrip("/")

    @property
    def account(self) -> str:
        host = urlsplit(self.web_url).netloc
        return f"the organization {self.org} on {host}" if self.org else f"your personal account on {host}"


@dataclass(frozen=True)
class Registration:
    """GitHub's one answer about the new App; the secret fields stay out of reprs and of everything printed."""

    app_id: int
    slug: str
    name: str
    owner: str
    client_id: str
    html_url: str
    private_key: str = field(repr=False)  # PEM
    webhook_secret: str = field(repr=False)
    client_secret: str = field(repr=False)  # the App's OAuth client: signing in to the web UI

    @property
    def install_url(self) -> str:
        return f"{self.html_url}/installations/new"


@dataclass(frozen=True)
class RegisterOptions:
    url: str  # the public base URL of `fixloop serve` (its webhook is URL/webhook)
    name: str
    org: str | None
    ghes_url: str | None
    port: int  # 0: any free port
    env_file: Path
    force: bool
    open_browser: bool
    timeout: float  # seconds to wait for GitHub's redirect


def github_target(*, org: str | None, ghes_url: str | None, environ: Mapping[str, str]) -> GitHubTarget:
    """github.com (its API overridable with GITHUB_API_URL, as for `fixloop serve`), or the GitHub
    Enterprise Server at `ghes_url`, whose API is URL/api/v3."""
    if org is not None and not ACCOUNT_NAME.fullmatch(org):
        raise ConfigError(f"--org {org!r} is not an organization name (letters, digits and single hyphens, "
                          "at most 39 characters)")
    if ghes_url is not None:
        web_url = _ghes_web_url(ghes_url)
        return GitHubTarget(web_url, f"{web_url}/api/v3", org)
    api_url = (environ.get("GITHUB_API_URL") or GITHUB_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise ConfigError(f"GITHUB_API_URL must be a URL such as {GITHUB_API_URL}, not {api_url!r}")
    return GitHubTarget(GITHUB_WEB_URL, api_url, org)


def _ghes_web_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if (not host or parts.scheme not in ("https", "http") or parts.path.strip("/") or parts.query
            or parts.fragment or "@" in parts.netloc):
        raise ConfigError(f"--ghes-url must be the web address of your GitHub Enterprise Server, such as "
                          f"https://ghe.example.com (no path: the API is that URL + /api/v3), not {url!r}")
    if host in ("github.com", "www.github.com", "api.github.com"):
        raise ConfigError("--ghes-url is for GitHub Enterprise Server; for github.com, leave it out")
    return f"{parts.scheme}://{parts.netloc}"


# -- the page ----------------------------------------------------------------------------------------


def _html(title: str, body: str) -> str:
    """A whole page; `title` is escaped here, `body` must already be."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5 }}
pre {{ background: #f6f8fa; padding: 1rem; overflow: auto; font-size: .85rem }}
button {{ font-size: 1.1rem; padding: .5rem 1.5rem; cursor: pointer }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{body}
</body>
</html>
"""


def registration_page(manifest: Mapping[str, Any], form_action: str, account: str) -> str:
    """The page with the Register button: a form that POSTs `manifest` (JSON, in a hidden field) to
    `form_action` (GitHub's new-App address, carrying the state)."""
    esc = html.escape
    return _html("Register the fixloop GitHub App", f"""\
<p>This registers the GitHub App <strong>{esc(manifest["name"])}</strong> for {esc(account)}. Its webhooks go
to <code>{esc(manifest["hook_attributes"]["url"])}</code>; its permissions and events are in the manifest below.</p>
<p>GitHub shows the App and asks you to confirm (you can change its name there: App names are unique).
Then it sends you back here, and <code>fixloop app register</code> saves the App's credentials for
<code>fixloop serve</code>.</p>
<form action="{esc(form_action)}" method="post">
<input type="hidden" name="manifest" value="{esc(json.dumps(manifest))}">
<button type="submit">Register</button>
</form>
<details><summary>The manifest</summary><pre>{esc(json.dumps(manifest, indent=2))}</pre></details>
""")


def _message_page(title: str, *paragraphs: str, link: tuple[str, str] | None = None) -> str:
    body = "".join(f"<p>{html.escape(text)}</p>\n" for text in paragraphs)
    if link:
        body += f'<p><a href="{html.escape(link[1])}">{html.escape(link[0])}</a></p>\n'
    return _html(title, body)


def code_from_callback(query: str, expected_state: str) -> str:
    """The `code` of GitHub's redirect, if its `state` is this registration's (ConfigError says why not)."""
    params = parse_qs(query)
    state, code = params.get("state", [""])[-1], params.get("code", [""])[-1]
    if not secrets.compare_digest(state.encode(), expected_state.encode()):
        raise ConfigError("its state is not this registration's, so it is not GitHub's answer to this page")
    if not code:
        raise ConfigError("it has no code (GitHub adds one once you click Create GitHub App)")
    return code


# -- the exchange and the .env file ------------------------------------------------------------------


def exchange_code(api_url: str, code: str) -> Registration:
    """`POST /app-manifests/{code}/conversions`: the new App's credentials. PyGithub has no call for it;
    it needs no authentication, and it is never retried: a code works once."""
    url = f"{api_url}/app-manifests/{quote(code, safe='')}/conversions"
    try:
        response = requests.post(url, timeout=EXCHANGE_TIMEOUT, headers={
            "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
    except requests.RequestException as error:  # its text names the URL, which holds the code: left out
        raise GitHubError(f"could not reach {api_url} to exchange GitHub's code ({type(error).__name__}); "
                          "run fixloop app register again") from None
    if response.status_code == 404:
        raise ConfigError(EXPIRED)
    if response.status_code != 201:
        raise GitHubError(f"GitHub refused to create the App from the manifest: HTTP {response.status_code}: "
                          f"{_error_message(response)}")
    return _registration(response)


def _error_message(response: requests.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return message if isinstance(message, str) else response.reason


def _registration(response: requests.Response) -> Registration:
    def text(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise TypeError("not a non-empty string")
        return value

    try:
        data = response.json()
        return Registration(
            app_id=int(data["id"]), slug=text(data["slug"]), name=text(data["name"]),
            owner=text(data["owner"]["login"]), client_id=text(data["client_id"]),
            html_url=text(data["html_url"]).rstrip("/"), private_key=text(data["pem"]),
            # null for an App without a webhook; written empty, `fixloop serve` then says what is missing
            webhook_secret="" if data["webhook_secret"] is None else text(data["webhook_secret"]),
            client_secret=text(data["client_secret"]))
    except (ValueError, KeyError, TypeError):
        raise GitHubError("GitHub's answer to the code exchange lacks the App's id, slug, owner or private key; "
                          "the App may have been created all the same: see GitHub's Developer settings") from None


def env_file_text(registration: Registration, api_url: str, public_url: str) -> str:
    """The .env file for `fixloop serve`: exactly the variables `AppSettings.from_environ` reads (the web UI is
    on with these: people sign in through the App's OAuth client)."""
    values = {
        "APP_ID": str(registration.app_id),
        "APP_SLUG": registration.slug,
        "GITHUB_API_URL": api_url,
        "WEBHOOK_SECRET": registration.webhook_secret,
        # On one line, so every .env reader takes it: AppSettings turns the \n back into line breaks.
        "PRIVATE_KEY": registration.private_key.replace("\n", "\\n"),
        "FIXLOOP_PUBLIC_URL": public_url,
        "GITHUB_CLIENT_ID": registration.client_id,
        "GITHUB_CLIENT_SECRET": registration.client_secret,
    }
    return ENV_HEADER + "".join(f"{name}={_env_value(name, value)}\n" for name, value in values.items())


def _env_value(name: str, value: str) -> str:
    if BARE_VALUE.fullmatch(value):
        return value
    if "'" not in value and value.isprintable():
        return f"'{value}'"
    # GitHub's values never look like this; one that did could smuggle a second variable into the file.
    raise GitHubError(f"{name} from GitHub holds characters a .env file cannot carry safely; nothing was written")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a .env file, as a POSIX shell sourcing it would set them (NAME=value lines, blank
    lines and # comments). A line whose value a shell would expand or split is refused, not guessed at."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--env-file {path} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = ENV_LINE.fullmatch(line)
        value = _literal(assignment["value"]) if assignment else None
        if assignment is None or value is None:
            raise ConfigError(f"{path}, line {number}: not a NAME=value line fixloop can read (put a value "
                              "with spaces, quotes or $ in single quotes)")
        values[assignment["name"]] = value
    return values


def _literal(value: str) -> str | None:
    if BARE_VALUE.fullmatch(value):
        return value
    quoted = SINGLE_QUOTED.fullmatch(value) or DOUBLE_QUOTED.fullmatch(value)
    return quoted[1] if quoted else None


def check_env_file(path: Path, *, force: bool) -> None:
    """Refuse, before anything is registered, a .env file that could not be written afterwards."""
    if path.is_dir():
        raise ConfigError(f"--env-file {path} is a folder; name the file to write, e.g. {path / '.env'}")
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it, or --env-file PATH to write elsewhere")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--env-file {path}: cannot create files in {folder} (missing, or not writable)")


def write_env_file(path: Path, text: str, *, force: bool) -> None:
    """`text` in a file that is mode 0600 from its creation (O_EXCL: never someone else's file or link, and
    never readable by others, not even for a moment), written beside `path` and then put in its place, so
    an interruption leaves no half-written file: renamed over the old one with `force`, else linked (which
    fails, as O_EXCL would, when something appeared at `path` meanwhile)."""
    new = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    descriptor = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)  # exactly 0600, whatever the umask
            file.write(text)
        if force:
            os.replace(new, path)
        else:
            os.link(new, path)
    finally:
        new.unlink(missing_ok=True)


# -- the one-shot server -----------------------------------------------------------------------------


@dataclass
class _Flow:
    """One registration, shared by the page's request threads and the waiting command."""

    state: str  # the random token GitHub's redirect must carry back
    page_path: str  # the page's random address, printed in the terminal only
    page: str
    target: GitHubTarget
    env_file: Path
    force: bool
    warn: Callable[[str], None]
    public_url: str  # where `fixloop serve` will be reached (its web UI's address)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a callback is answered
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: Registration | FixloopError | None = None

    def callback(self, query: str) -> tuple[int, str]:
        """The status and page answering a request to /callback (the caller holds `lock`). GitHub's
        redirect sets `outcome`; any other request leaves the command waiting."""
        if self.outcome is not None:
            return 409, _message_page("Already done", "This registration has finished: see the terminal.")
        try:
            code = code_from_callback(query, self.state)
        except ConfigError as refused:
            self.warn(f"refused a request to {CALLBACK_PATH}: {refused}; nothing was exchanged, still waiting")
            return 400, _message_page("Not GitHub's answer to this registration", f"This request was refused: "
                                      f"{refused}. Nothing was exchanged; fixloop app register is still waiting.")
        try:
            registration = exchange_code(self.target.api_url, code)
            self._save(registration)
        except FixloopError as error:
            self.outcome = error
            status = 400 if isinstance(error, ConfigError) else 502
            return status, _message_page("The App's credentials were not saved", f"{error}.", "See the terminal.")
        self.outcome = registration
        return 200, _message_page(
            f"{registration.name} is registered",
            f"Its settings for fixloop serve are in {self.env_file}. Next, install the App on the repositories "
            "fixloop should serve; the terminal lists the rest. You can close this page.",
            link=("Install the App", registration.install_url))

    def _save(self, registration: Registration) -> None:
        try:
            write_env_file(self.env_file, env_file_text(registration, self.target.api_url, self.public_url),
                           force=self.force)
        except OSError as error:
            raise ConfigError(
                f"could not write {self.env_file} ({error.strerror}); the App {registration.slug} exists: on its "
                f"settings page, {self.target.app_settings_url(registration.slug)}, generate a private key and "
                "set a webhook secret") from None


class _PageServer(ThreadingHTTPServer):
    flow: _Flow

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a browser that went away is no error
            super().handle_error(request, client_address)


class _PageHandler(BaseHTTPRequestHandler):
    server: _PageServer
    timeout = 30  # seconds an idle connection may hold its thread

    def do_GET(self) -> None:
        flow = self.server.flow
        path, _, query = self.path.partition("?")
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            # Another site's name pointed at 127.0.0.1 (DNS rebinding) must not read the page and its state.
            self._send(403, _message_page("Forbidden", "Open the address fixloop app register printed, "
                                          f"which starts with http://127.0.0.1:{port}/."))
        elif path == flow.page_path:
            self._send(200, flow.page)
        elif path == CALLBACK_PATH:
            with flow.lock:
                try:
                    self._send(*flow.callback(query))
                finally:
                    if flow.outcome is not None:
                        flow.finished.set()
        else:
            # Only who was told the page's address (the terminal) may read it, and the state in it: another
            # local user who knew the state could have their own App's code exchanged instead.
            self._send(404, _message_page("Not found", "Open the address fixloop app register printed."))

    def _send(self, status: int, page: str) -> None:
        body = page.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # The page's and the callback's addresses hold secrets (the page's path, the code): no Referer leaves
        # for another site. (`no-referrer` would also send the form's Origin as null to GitHub.)
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would show the callback's code."""


def _listen(port: int) -> _PageServer:
    try:
        return _PageServer(("127.0.0.1", port), _PageHandler)
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {why} (another program on that port? Choose "
                          "another --port, or leave it out for any free port)") from None


def _open_in_browser(url: str, environ: Mapping[str, str]) -> bool:
    # Without a display, webbrowser falls back to text browsers (lynx, w3m) that would take over this terminal.
    if sys.platform == "linux" and not any(environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")):
        return False
    try:
        return webbrowser.open(url)
    except (webbrowser.Error, OSError):
        return False


def register(options: RegisterOptions, environ: Mapping[str, str], *, err: TextIO) -> Registration:
    """Run the flow: check what the user gave, serve the page until GitHub's redirect arrives (or
    `options.timeout` passes), exchange the code and write the .env file. Progress goes to `err`."""
    target = github_target(org=options.org, ghes_url=options.ghes_url, environ=environ)
    check_env_file(options.env_file, force=options.force)
    manifest = app_manifest(options.url, name=options.name)
    with _listen(options.port) as server:
        port = server.server_address[1]
        page_path = f"/{secrets.token_urlsafe(16)}/"
        page_url = f"http://127.0.0.1:{port}{page_path}"
        manifest["redirect_url"] = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        state = secrets.token_urlsafe(24)
        page = registration_page(manifest, target.new_app_url(state), target.account)
        server.flow = _Flow(state, page_path, page, target, options.env_file, options.force,
                            warn=lambda line: print(f"fixloop: warning: {line}", file=err, flush=True),
                            public_url=base_url(options.url))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        try:
            host = urlsplit(target.web_url).netloc
            if options.open_browser and _open_in_browser(page_url, environ):
                print(f"Opened {page_url} in your browser: click Register there (signed in to {host}).", file=err)
            else:
                print(f"Open {page_url} in a browser signed in to {host}, and click Register.", file=err)
            print(f"The App will belong to {target.account}; GitHub's code is exchanged at {target.api_url}. "
                  f"Waiting up to {options.timeout:g} s for GitHub's redirect (Ctrl-C stops).", file=err, flush=True)
            try:
                server.flow.finished.wait(options.timeout)
            except KeyboardInterrupt:
                if server.flow.lock.locked():
                    print("fixloop: stopped while GitHub's answer was being handled: the App may exist already; "
                          f"see {target.app_settings_url()}", file=err, flush=True)
                raise
            with server.flow.lock:  # a callback being answered right now is waited for
                outcome = server.flow.outcome
        finally:
            server.shutdown()
    if outcome is None:
        raise ConfigError(f"no redirect from GitHub reached {manifest['redirect_url']} within {options.timeout:g} s; "
                          "run fixloop app register again")
    if isinstance(outcome, FixloopError):
        raise outcome
    return outcome


def next_steps(registration: Registration, env_file: Path) -> str:
    """What to do once the App exists (for stdout; it names secrets, never shows them)."""
    sourced = shlex.quote(str(env_file) if "/" in str(env_file) else f"./{env_file}")  # `. FILE` searches PATH
    client_id = registration.client_id
    return f"""\
Registered the GitHub App {registration.name} (App ID {registration.app_id}, Client ID {client_id}, owner \
{registration.owner}).
Its settings for fixloop serve (APP_ID, APP_SLUG, GITHUB_API_URL, WEBHOOK_SECRET, PRIVATE_KEY) are in {env_file},
readable by you alone: it holds the private key and the webhook secret. Keep it out of git.

Next:
1. Install the App on the repositories fixloop should serve:
     {registration.install_url}
2. Start the server where GitHub can reach the webhook URL you registered:
     fixloop serve --env-file {shlex.quote(str(env_file))}
3. In each repository, run `fixloop init` and commit what it writes to the default branch; set under
   Settings → Secrets and variables → Actions (or once for the organization):
     variable FIXLOOP_APP_ID           {client_id}  (the App's Client ID)
     variable FIXLOOP_USE_APP          true
     secret   FIXLOOP_APP_PRIVATE_KEY  the private key: PRIVATE_KEY in {env_file}, with its \\n as line breaks
     secret   ANTHROPIC_API_KEY        your Anthropic API key
   With the GitHub CLI, for a repository OWNER/REPO, from this folder:
     gh variable set FIXLOOP_APP_ID --repo OWNER/REPO --body {client_id}
     gh variable set FIXLOOP_USE_APP --repo OWNER/REPO --body true
     (. {sourced} && printf '%b' "$PRIVATE_KEY" | gh secret set FIXLOOP_APP_PRIVATE_KEY --repo OWNER/REPO)
     gh secret set ANTHROPIC_API_KEY --repo OWNER/REPO
"""
