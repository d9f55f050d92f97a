"""`fixloop app register` end to end: the real command as a subprocess, its one-shot page fetched over HTTP, GitHub's
redirect simulated, and the code exchanged with the OpenAPI-checked fake GitHub, which creates the App with a real
RSA key. The .env file it writes is then read the three ways users read it: `fixloop serve --env-file`, a POSIX
shell, and `AppSettings.from_environ`."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.app.manifest import app_manifest
from bot.app.register import (
    EXPIRED,
    Registration,
    code_from_callback,
    env_file_text,
    exchange_code,
    github_target,
    next_steps,
    read_env_file,
    registration_page,
    write_env_file,
)
from bot.app.settings import AppSettings
from bot.cli import main
from bot.errors import ConfigError
from tests.fakes.github import FakeGitHub
from tests.fakes.github.fixture import AppKey
from tests.fakes.live_server import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
URL = "https://fixloop.example.com"
CONVERSION = "POST /app-manifests/{code}/conversions"


class Form(HTMLParser):
    """The page's form: its action, method and fields, attribute values unescaped as a browser does."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action = self.method = ""
        self.fields: dict[str, str] = {}
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.action, self.method = values["action"], values["method"]
        elif tag == "input":
            self.fields[values["name"]] = values["value"]


class Register:
    """`fixloop app register --no-browser ...` as a subprocess; stderr is read as it comes."""

    def __init__(self, cwd: Path, *args: str, api_url: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("GITHUB_API_URL", None)
        if api_url:
            env["GITHUB_API_URL"] = api_url
        self.process = subprocess.Popen([sys.executable, "-m", "bot", "app", "register", "--no-browser", *args],
                                        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            self._lines.put(line)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        while True:
            try:
                line = self._lines.get(timeout=30)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.stderr_lines}") from None
            if found := re.search(pattern, line):
                return found

    def page_url(self) -> str:
        return self.wait_for_line(r"(http://127\.0\.0\.1:\d+/[\w-]+/) in a browser")[1]

    def finish(self) -> tuple[int, str, str]:
        """(exit code, stdout, stderr)."""
        code = self.process.wait(timeout=60)
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self.process.stdout.close()
        return code, stdout, "".join(self.stderr_lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def run_register(tmp_path: Path) -> Iterator[Callable[..., Register]]:
    started: list[Register] = []

    def start(*args: str, api_url: str | None = None) -> Register:
        started.append(Register(tmp_path, *args, api_url=api_url))
        return started[-1]

    yield start
    for command in started:
        command.stop()


def origin(url: str) -> str:
    return f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"


def get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def read_form(page_url: str) -> tuple[Form, str]:
    """The registration page's form, and the state its action carries."""
    status, page, headers = get(page_url)
    assert status == 200 and headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "same-origin"
    form = Form(page)
    return form, parse_qs(urlsplit(form.action).query)["state"][0]


def conversions(github: FakeGitHub) -> list[str]:
    return [request.path for request in github.requests if request.operation == CONVERSION]


def registration(key: AppKey) -> Registration:
    return Registration(app_id=123456, slug="fixloop-acme", name="fixloop-acme", owner="acme",
                        client_id="Iv23liAbCdEfGhIjKlMn", html_url="https://github.com/apps/fixloop-acme",
                        private_key=key.private_pem, webhook_secret="0f" * 20, client_secret="c1" * 20)


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("fixloop: ") and "Traceback" not in err, err
    return err


# -- the whole flow ----------------------------------------------------------------------------------


def test_registration_writes_a_private_env_file_that_fixloop_serve_accepts(
        fake_github: FakeGitHub, run_register: Callable[..., Register], tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    command = run_register("--url", URL, "--org", "acme", "--name", "fixloop-acme", "--env-file", str(env_file),
                           api_url=fake_github.url)
    page_url = command.page_url()
    form, state = read_form(page_url)

    assert form.method == "post" and set(form.fields) == {"manifest"}
    assert form.action == f"https://github.com/organizations/acme/settings/apps/new?state={state}"
    assert len(state) >= 32
    manifest = json.loads(form.fields["manifest"])
    assert manifest == {**app_manifest(URL, name="fixloop-acme"), "redirect_url": f"{origin(page_url)}/callback"}

    fake_github.add_manifest_code("a180b1a3d263c81bc6441d7b", manifest, owner="acme", owner_type="Organization")
    status, done_page, _ = get(f"{origin(page_url)}/callback?code=a180b1a3d263c81bc6441d7b&state={state}")
    code, stdout, stderr = command.finish()

    assert status == 200 and code == 0, stderr
    [created] = fake_github.manifest_apps()
    install_url = f"{fake_github.root_url}/apps/fixloop-acme/installations/new"
    assert "fixloop-acme is registered" in done_page and f'href="{install_url}"' in done_page
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    assert values == {"APP_ID": str(created.app.id), "APP_SLUG": "fixloop-acme", "GITHUB_API_URL": fake_github.url,
                      "WEBHOOK_SECRET": created.webhook_secret, "PRIVATE_KEY": created.pem.replace("\n", "\\n"),
                      "FIXLOOP_PUBLIC_URL": URL, "GITHUB_CLIENT_ID": created.app.client_id,
                      "GITHUB_CLIENT_SECRET": created.client_secret}
    settings = AppSettings.from_environ(values)
    assert (settings.app_id, settings.app_slug, settings.api_url) == (str(created.app.id), "fixloop-acme",
                                                                       fake_github.url)
    assert settings.private_key == created.pem and settings.webhook_secret == created.webhook_secret
    assert settings.ui and settings.client_secret == created.client_secret and settings.public_url == URL

    for secret in (created.pem.splitlines()[1], created.webhook_secret, created.client_secret):
        assert secret and secret not in stdout + stderr + done_page
    assert f"(App ID {created.app.id}, Client ID {created.app.client_id}, owner acme)" in stdout
    assert install_url in stdout and f"fixloop serve --env-file {env_file}" in stdout
    assert f"FIXLOOP_APP_ID --repo OWNER/REPO --body {created.app.client_id}" in stdout
    assert "FIXLOOP_USE_APP" in stdout and "FIXLOOP_APP_PRIVATE_KEY" in stdout and "ANTHROPIC_API_KEY" in stdout
    [conversion] = [r for r in fake_github.requests if r.operation == CONVERSION]
    assert conversion.path == "/app-manifests/a180b1a3d263c81bc6441d7b/conversions"
    assert "authorization" not in conversion.headers


def test_a_callback_that_is_not_githubs_answer_exchanges_nothing_and_the_command_keeps_waiting(
        fake_github: FakeGitHub, run_register: Callable[..., Register], tmp_path: Path) -> None:
    command = run_register("--url", URL, "--env-file", str(tmp_path / ".env"), api_url=fake_github.url)
    page_url = command.page_url()
    form, state = read_form(page_url)
    assert form.action == f"https://github.com/settings/apps/new?state={state}"
    fake_github.add_manifest_code("c0de", json.loads(form.fields["manifest"]))

    for query in ("code=c0de&state=guessed", "code=c0de", f"state={state}"):
        status, page, _ = get(f"{origin(page_url)}/callback?{query}")
        assert status == 400 and "Nothing was exchanged" in page, query
        command.wait_for_line(r"^fixloop: warning: refused a request to /callback: .*still waiting")
    port = urlsplit(page_url).port
    assert get(page_url, Host=f"rebound.example:{port}")[0] == 403, "a page under another name is refused"
    # Another local user, who was not told the page's random address, cannot read the state from it.
    status, page, _ = get(f"{origin(page_url)}/")
    assert status == 404 and state not in page
    _, _, headers = get(page_url)
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "same-origin"
    assert conversions(fake_github) == [] and command.process.poll() is None, "still waiting"

    status, _, _ = get(f"{origin(page_url)}/callback?code=c0de&state={state}")
    code, _, stderr = command.finish()
    assert status == 200 and code == 0, stderr
    assert len(conversions(fake_github)) == 1


def test_an_expired_or_used_code_is_exit_2_in_one_line_and_writes_nothing(
        fake_github: FakeGitHub, run_register: Callable[..., Register], tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    command = run_register("--url", URL, "--env-file", str(env_file), api_url=fake_github.url)
    page_url = command.page_url()
    _, state = read_form(page_url)

    status, page, _ = get(f"{origin(page_url)}/callback?code=never-issued&state={state}")
    code, stdout, stderr = command.finish()

    assert status == 400 and "expired or was already used" in page
    assert code == 2 and stdout == "" and stderr.splitlines()[-1] == f"fixloop: {EXPIRED}"
    assert "Traceback" not in stderr and not env_file.exists()
    assert conversions(fake_github) == ["/app-manifests/never-issued/conversions"]


def test_github_enterprise_server_with_force_replaces_the_env_file_privately(
        make_fake_github: Callable[..., FakeGitHub], run_register: Callable[..., Register], tmp_path: Path) -> None:
    ghes = make_fake_github(prefix="/api/v3")
    env_file = tmp_path / ".env"
    env_file.write_text("FIXLOOP_OLD_SETTING=1\n")
    env_file.chmod(0o644)
    command = run_register("--url", URL, "--ghes-url", ghes.root_url, "--env-file", str(env_file), "--force")
    page_url = command.page_url()
    form, state = read_form(page_url)
    assert form.action == f"{ghes.root_url}/settings/apps/new?state={state}"
    ghes.add_manifest_code("c0de", json.loads(form.fields["manifest"]))

    assert get(f"{origin(page_url)}/callback?code=c0de&state={state}")[0] == 200
    code, _, stderr = command.finish()

    assert code == 0, stderr
    assert f"exchanged at {ghes.root_url}/api/v3." in stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and "FIXLOOP_OLD_SETTING" not in env_file.read_text()
    assert read_env_file(env_file)["GITHUB_API_URL"] == f"{ghes.root_url}/api/v3" == ghes.url
    assert sorted(path.name for path in tmp_path.iterdir()) == [".env"], "no temporary file left behind"


def test_a_code_is_exchanged_once(fake_github: FakeGitHub) -> None:
    fake_github.add_manifest_code("once", app_manifest(URL, name="fixloop-acme"))
    registered = exchange_code(fake_github.url, "once")
    [created] = fake_github.manifest_apps()
    assert (registered.app_id, registered.slug, registered.private_key) == (created.app.id, "fixloop-acme",
                                                                            created.pem)
    assert created.pem.startswith("-----BEGIN RSA PRIVATE KEY-----") and created.pem not in repr(registered)
    with pytest.raises(ConfigError, match="expired or was already used"):
        exchange_code(fake_github.url, "once")


# -- the .env file -------------------------------------------------------------------------------------


def test_the_env_file_reads_the_same_in_a_shell_and_the_printed_key_command_gives_the_pem(
        github_app_key: AppKey, tmp_path: Path) -> None:
    registered = registration(github_app_key)
    (tmp_path / ".env").write_text(env_file_text(registered, "https://api.github.com", "https://fixloop.example.com"))
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    shell = subprocess.run(["sh", "-c", 'set -a; . ./.env; set +a; exec "$0" -c "$1"', sys.executable, dump],
                           cwd=tmp_path, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    from_shell = json.loads(shell.stdout)
    from_file = read_env_file(tmp_path / ".env")

    assert from_file == {name: from_shell[name] for name in from_file}
    settings = AppSettings.from_environ(from_shell)
    assert settings.private_key == github_app_key.private_pem and settings.app_id == "123456"

    [key_line] = [line for line in next_steps(registered, Path(".env")).splitlines() if "printf" in line]
    key_only = key_line.strip().replace(" | gh secret set FIXLOOP_APP_PRIVATE_KEY --repo OWNER/REPO)", ")")
    printed = subprocess.run(["sh", "-c", key_only], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert printed.stdout == github_app_key.private_pem


def test_read_env_file_takes_what_a_shell_takes_literally_and_refuses_the_rest(tmp_path: Path) -> None:
    good = tmp_path / "good.env"
    good.write_text("# comment\n\nA=plain\nexport B='two words $HOME'\nC=\"x\\ny\"\nD=\n")
    assert read_env_file(good) == {"A": "plain", "B": "two words $HOME", "C": "x\\ny", "D": ""}
    for line in ("E=two words", 'E="$HOME"', "E='it's'", "not a line"):
        bad = tmp_path / "bad.env"
        bad.write_text(f"A=1\n{line}\n")
        with pytest.raises(ConfigError, match=f"{re.escape(str(bad))}, line 2: not a NAME=value line"):
            read_env_file(bad)


def test_serve_starts_from_the_env_file(fake_github: FakeGitHub, github_app_key: AppKey, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(env_file_text(registration(github_app_key), fake_github.url,
                                                 "https://fixloop.example.com"))
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if name not in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "GITHUB_API_URL")}
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--env-file", ".env", "--port", str(port)],
                                  cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_env_file_problems_are_exit_2_and_the_environment_takes_precedence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--env-file", str(tmp_path / "missing.env")]) == 2
    assert "missing.env cannot be read: No such file or directory" in one_error_line(capsys.readouterr().err)

    (tmp_path / ".env").write_text("APP_ID=not-a-number\nWEBHOOK_SECRET=from-the-file\n")
    monkeypatch.setenv("APP_ID", "12")
    assert main(["serve", "--env-file", str(tmp_path / ".env")]) == 2
    err = capsys.readouterr().err
    assert "PRIVATE_KEY (the PEM text) or PRIVATE_KEY_PATH" in err
    assert "APP_ID" not in err and "WEBHOOK_SECRET" not in err, "APP_ID from the environment, the secret from the file"


# -- mistakes, before anything is registered ---------------------------------------------------------


def test_an_existing_env_file_without_force_is_exit_2_before_any_server_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KEEP=1\n")
    assert main(["app", "register", "--url", URL, "--no-browser", "--env-file", str(env_file)]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err == f"fixloop: {env_file} exists; pass --force to replace it, or --env-file PATH to write elsewhere\n"
    assert env_file.read_text() == "KEEP=1\n"


@pytest.mark.parametrize(("extra", "message"), [
    (["--org", "a b"], "--org 'a b' is not an organization name"),
    (["--org=-acme"], "--org '-acme' is not an organization name"),
    (["--org", "a" * 40], "is not an organization name"),
    (["--ghes-url", "ghe.example.com"], "--ghes-url must be the web address"),
    (["--ghes-url", "https://ghe.example.com/api/v3"], "--ghes-url must be the web address"),
    (["--ghes-url", "https://github.com"], "--ghes-url is for GitHub Enterprise Server"),
    (["--url", "ftp://fixloop.example.com"], "the App's URL must be an http(s) URL"),
    (["--name", "n" * 35], "the App's name must have 1 to 34 characters"),
])
def test_user_mistakes_are_one_line_and_exit_2(extra: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["app", "register", "--url", URL, "--no-browser", "--env-file", str(tmp_path / ".env"), *extra]
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_a_port_in_use_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        argv = ["app", "register", "--url", URL, "--no-browser", "--env-file", str(tmp_path / ".env"),
                "--port", str(port)]
        assert main(argv) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in one_error_line(capsys.readouterr().err)


def test_no_redirect_within_the_timeout_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["app", "register", "--url", URL, "--no-browser", "--env-file", str(tmp_path / ".env"), "--timeout", "0.2"]
    assert main(argv) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(r"fixloop: no redirect from GitHub reached http://127\.0\.0\.1:\d+/callback within 0\.2 s; "
                        r"run fixloop app register again", last), last
    assert not (tmp_path / ".env").exists()


# -- the pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("org", "ghes_url", "form", "api"), [
    (None, None, "https://github.com/settings/apps/new?state=S", "https://api.github.com"),
    ("acme", None, "https://github.com/organizations/acme/settings/apps/new?state=S", "https://api.github.com"),
    (None, "https://ghe.example.com/", "https://ghe.example.com/settings/apps/new?state=S",
     "https://ghe.example.com/api/v3"),
    ("acme", "https://ghe.example.com", "https://ghe.example.com/organizations/acme/settings/apps/new?state=S",
     "https://ghe.example.com/api/v3"),
])
def test_where_the_form_posts_and_where_the_code_is_exchanged(org: str | None, ghes_url: str | None, form: str,
                                                              api: str) -> None:
    target = github_target(org=org, ghes_url=ghes_url, environ={})
    assert (target.new_app_url("S"), target.api_url) == (form, api)


def test_ghes_url_wins_over_github_api_url() -> None:
    environ = {"GITHUB_API_URL": "http://127.0.0.1:9/"}
    assert github_target(org=None, ghes_url=None, environ=environ).api_url == "http://127.0.0.1:9"
    assert github_target(org=None, ghes_url="https://ghe.example.com", environ=environ).api_url == \
        "https://ghe.example.com/api/v3"


def test_the_page_escapes_everything_and_carries_the_manifest_intact() -> None:
    manifest = app_manifest(URL, name="<b>\"Q&A's\"</b>")
    page = registration_page(manifest, 'https://github.com/settings/apps/new?state=a"b&c', "your personal account")
    form = Form(page)
    assert "<b>" not in page and "&lt;b&gt;&quot;Q&amp;A&#x27;s&quot;&lt;/b&gt;" in page
    assert json.loads(form.fields["manifest"]) == manifest
    assert form.action == 'https://github.com/settings/apps/new?state=a"b&c'


def test_code_from_callback_needs_the_state_and_a_code() -> None:
    assert code_from_callback("code=abc&state=S1", "S1") == "abc"
    for query in ("code=abc&state=S2", "code=abc", "state=S1", "state=S1&code="):
        with pytest.raises(ConfigError):
            code_from_callback(query, "S1")


def test_the_env_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_env_file(env_file, "APP_ID=1\n", force=False)
    with pytest.raises(FileExistsError):
        write_env_file(env_file, "APP_ID=2\n", force=False)
    write_env_file(env_file, "APP_ID=3\n", force=True)
    assert env_file.read_text() == "APP_ID=3\n" and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"], "no temporary file is left"


def test_a_timeout_beyond_a_day_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["app", "register", "--url", URL, "--timeout", "1e10"])
    assert exit_.value.code == 2 and "--timeout: must be at most 86400 (a day), not '1e10'" in capsys.readouterr().err
