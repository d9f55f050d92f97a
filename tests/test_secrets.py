import pytest

from bot.secrets import REDACTED, Redactor, is_secret_name, public_url, scrubbed_environment


def test_scrubbed_environment_removes_credentials_and_keeps_the_rest():
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "GITHUB_TOKEN": "ghs_abcdefghijklmnopqrstuvwxyz0123",
        "ANTHROPIC_API_KEY": "sk-ant-api03-secret-value",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "ACTIONS_RUNTIME_TOKEN": "runtime",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://x",
        "INPUT_GITHUB-TOKEN": "ghs_x",
        "DB_PASSWORD": "hunter22",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "MY_DEPLOY_THING": "custom",
        "LANG": "C.UTF-8",
    }
    env = scrubbed_environment(environ, extra_patterns=["MY_DEPLOY_*"])
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/u" and env["LANG"] == "C.UTF-8"
    for name in environ.keys() - {"PATH", "HOME", "LANG"}:
        assert name not in env, name
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_secret_names_are_matched_case_insensitively():
    assert is_secret_name("github_token")
    assert is_secret_name("Npm_Token")
    assert not is_secret_name("PATH")


def test_redactor_removes_known_values_and_secret_shapes():
    redactor = Redactor(["correct-horse-battery", "short"])
    text = (
        "value correct-horse-battery here; short stays; "
        "gh token ghp_0123456789abcdefghijABCDEFGHIJ; "
        "key sk-ant-api03-AbCdEf0123456789; "
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl; "
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"
    )
    out = redactor.text(text)
    for secret in ("correct-horse-battery", "ghp_0123", "sk-ant-api03", "eyJhbGci", "MIIEow"):
        assert secret not in out
    assert "short stays" in out
    assert out.count(REDACTED) == 5


def test_redactor_walks_nested_data_and_prefers_the_longest_secret():
    redactor = Redactor(["abcdefgh", "abcdefgh-longer"])
    data = {"a": ["x abcdefgh-longer y", {"b": "abcdefgh"}], "n": 3}
    assert redactor.data(data) == {"a": [f"x {REDACTED} y", {"b": REDACTED}], "n": 3}


def test_redactor_from_environment_knows_the_secret_values():
    redactor = Redactor.from_environment({"GITHUB_TOKEN": "plain-looking-value", "PATH": "/usr/local/bin"})
    assert redactor.text("t=plain-looking-value p=/usr/local/bin") == f"t={REDACTED} p=/usr/local/bin"


def test_an_endpoint_url_is_no_secret_but_a_url_carrying_one_is():
    """ANTHROPIC_BASE_URL matches the secret names, but the model API's address must stay readable in
    its error messages; a URL with a password, a token in its query, or a fragment stays hidden."""
    redactor = Redactor.from_environment({
        "ANTHROPIC_BASE_URL": "https://llm-gateway.example.com/anthropic",
        "OTHER_SECRET_URL": "https://user:hunter2-pass@gateway.example.com",
        "WEBHOOK_TOKEN_URL": "https://hooks.example.com/x?token=abc123def456",
    })
    said = redactor.text("Could not reach https://llm-gateway.example.com/anthropic; "
                         "https://user:hunter2-pass@gateway.example.com https://hooks.example.com/x?token=abc123def456")
    assert "https://llm-gateway.example.com/anthropic" in said
    assert "hunter2-pass" not in said and "abc123def456" not in said


@pytest.mark.parametrize("secret", [
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "sk-AbCdEfGhIjKlMnOpQrStUvWx", "AKIAIOSFODNN7EXAMPLE",
    "ASIAXYZXYZXYZXYZXYZ1", "ABSKQmVkcm9ja0FQSUtleS1hYmNkZWZnaGlqa2xtbm9w", "ya29.a0AfH6SMBx-examplEtoken_12345",
    "AIzaSyA-1234567890abcdefghijklmnopqrstu",
])
def test_the_new_providers_key_shapes_are_redacted_wherever_they_appear(secret):
    assert Redactor().text(f"the key is {secret}.") == "the key is [REDACTED]."


def test_a_urls_password_is_redacted_and_public_url_drops_it_with_the_query():
    assert Redactor().text("at http://alice:Pa55word-xyz@127.0.0.1:9/v1") == "at http://[REDACTED]@127.0.0.1:9/v1"
    assert public_url("https://bob:pw@LLM.Example.com:8443/v1/?key=abc#x") == "https://llm.example.com:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
