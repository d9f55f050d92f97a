"""A GitHub App's OAuth web flow (outside the REST API, at `/login/oauth/...`), as github.com serves it:

- `GET /login/oauth/authorize?client_id&redirect_uri&state`: a page where the person names who they are
  (GitHub's sign-in, here a form: fill in a login) and authorizes the App;
- `POST /login/oauth/authorize`: redirects to `redirect_uri` with a one-time `code` and the `state`;
- `POST /login/oauth/access_token` (client id and secret, code; form or JSON): a user access token
  (`ghu_…`), answered, as GitHub does, with HTTP 200 and an `error` for a bad code.
"""

from __future__ import annotations

import html
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authorize {app}</title>
<link rel="icon" href="data:,"></head>
<body><main><h1>Authorize {app}</h1>
<form method="post" action="/login/oauth/authorize">
<input type="hidden" name="client_id" value="{client_id}"><input type="hidden" name="redirect_uri" value="{redirect}">
<input type="hidden" name="state" value="{state}">
<label>Username or email address <input name="login" autocomplete="username" required></label>
<button type="submit">Authorize {app}</button></form></main></body></html>"""


class OAuthFlow:
    def __init__(self, client_id: str, client_secret: str, app_name: str, tokens: dict[str, str],
                 codes: dict[str, str]) -> None:
        """`tokens`: user access token -> login (the state's, which authenticates them); `codes`: code -> login."""
        self.client_id, self.client_secret, self.app_name = client_id, client_secret, app_name
        self.tokens, self._codes = tokens, codes

    def handle(self, method: str, path: str, query: str, body: bytes, content_type: str
               ) -> tuple[int, bytes, dict[str, str]]:
        if path == "/login/oauth/authorize" and method == "GET":
            asked = {k: v[-1] for k, v in parse_qs(query).items()}
            if asked.get("client_id") != self.client_id:
                return 404, b"Not Found", {"Content-Type": "text/plain"}
            page = PAGE.format(app=html.escape(self.app_name), client_id=html.escape(self.client_id),
                               redirect=html.escape(asked.get("redirect_uri", "")),
                               state=html.escape(asked.get("state", "")))
            return 200, page.encode(), {"Content-Type": "text/html; charset=utf-8"}
        if path == "/login/oauth/authorize" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            code = secrets.token_hex(10)
            self._codes[code] = form.get("login", "").strip()
            target = f"{form.get('redirect_uri', '')}?{urlencode({'code': code, 'state': form.get('state', '')})}"
            return 302, b"", {"Location": target}
        if path == "/login/oauth/access_token" and method == "POST":
            sent: dict[str, Any] = (json.loads(body or b"{}") if "json" in content_type else
                                    {k: v[-1] for k, v in parse_qs(body.decode()).items()})
            login = self._codes.pop(str(sent.get("code")), None)
            if sent.get("client_id") != self.client_id or sent.get("client_secret") != self.client_secret:
                answer: dict[str, Any] = {
                    "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect."}
            elif not login:
                answer = {"error": "bad_verification_code",
                          "error_description": "The code passed is incorrect or expired."}
            else:
                token = f"ghu_{secrets.token_hex(18)}"
                self.tokens[token] = login
                answer = {"access_token": token, "token_type": "bearer", "scope": ""}
            return 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}
        return 404, b"Not Found", {"Content-Type": "text/plain"}
