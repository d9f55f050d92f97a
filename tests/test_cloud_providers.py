"""providers bedrock, vertex and foundry: Claude through the anthropic SDK's own cloud clients, with the
credentials the clouds' tools leave in the environment, over real HTTP to loopback endpoints that speak
each cloud's protocol (tests/fakes/cloud_endpoints.py): SigV4 signatures checked with botocore's signer
and AWS's binary event stream; a service account's signed JWT traded for a Google access token; an API
key or a managed identity's token for Foundry.

Each Bedrock test that signs requests uses a region of its own: the SDK keeps one boto3 session, and
the credentials it resolved, per region for the life of the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.agent._anthropic import (
    BEDROCK_NO_CREDENTIALS,
    BEDROCK_NO_REGION,
    FOUNDRY_NO_CREDENTIALS,
    FOUNDRY_NO_RESOURCE,
    VERTEX_NO_CREDENTIALS,
    VERTEX_NO_PROJECT,
    VERTEX_NO_REGION,
    AnthropicModel,
)
from bot.agent.model import CallResult, Message, ModelReply, Text, ToolCall, ToolSpec
from bot.cli import main
from bot.errors import ModelError
from tests.fakes.cloud_endpoints import FakeAWS, FakeFoundry, FakeGoogle, new_rsa_key
from tests.fakes.live_server import free_port
from tests.fakes.messages_api import Reply, text, tool_use

BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # a cross-region inference profile's id
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
FOUNDRY_MODEL = "claude-sonnet-4-5"  # the deployment's name
ROLE = "arn:aws:iam::123456789012:role/fixloop"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.github-actions-oidc.sig"
SEARCH = ToolSpec("search_code", "Search the code.", {"type": "object", "properties": {"query": {"type": "string"}}})
TASK = Message("user", [Text("Where is add() defined?")])
LOOKED = Reply([text("Let me search."), tool_use("search_code", {"query": "def add"}, id="toolu_01")])
FOUND = Reply([text("calc.py defines it.")])
AMBIENT_PREFIXES = ("AWS_", "ANTHROPIC_BEDROCK_", "ANTHROPIC_VERTEX_", "ANTHROPIC_FOUNDRY_", "CLOUD_ML_", "GOOGLE_",
                    "CLOUDSDK_", "GCLOUD_", "GCP_", "GCE_", "AZURE_", "IDENTITY_", "MSI_", "IMDS_")


@pytest.fixture(autouse=True)
def no_ambient_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cloud credentials but each test's own: none from this machine's environment, config files,
    gcloud or az logins, or an instance's metadata service."""
    for name in [n for n in os.environ if n.startswith(AMBIENT_PREFIXES)]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws/config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws/credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / ".config/gcloud"))
    closed = f"127.0.0.1:{free_port()}"  # the GCE metadata server: nobody listens there
    monkeypatch.setenv("GCE_METADATA_HOST", closed)
    monkeypatch.setenv("GCE_METADATA_IP", closed)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(home / ".azure"))


def converse(model: AnthropicModel) -> tuple[ModelReply, ModelReply]:
    """Two turns: the model asks for a search, then answers from its result."""
    first = model.complete(system="Be brief.", tools=[SEARCH], messages=[TASK])
    second = model.complete(system="Be brief.", tools=[SEARCH], messages=[
        TASK, Message("assistant", first.content), Message("user", [CallResult("toolu_01", "calc.py:1: def add")])])
    return first, second


def assert_conversed(first: ModelReply, second: ModelReply) -> None:
    assert first.content == [Text("Let me search."), ToolCall("toolu_01", "search_code", {"query": "def add"})]
    assert first.stop_reason == "tool_use" and first.usage.input_tokens > 0
    assert second.content == [Text("calc.py defines it.")] and second.stop_reason == "end_turn"


def fixloop(repo: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str, str]:
    code = main(["run", "--repo", str(repo), "--task", "Fix add()", "--validate", "false", *flags])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- Amazon Bedrock


def test_bedrock_signs_with_the_environments_aws_keys_and_reads_the_event_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What aws-actions/configure-aws-credentials exports after it assumed the workflow's role.
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "example-session-token")
    with FakeAWS([LOOKED, FOUND], region="us-east-2") as aws:
        aws.allow("ASIAEXAMPLEKEY", "example-secret", "example-session-token")
        assert_conversed(*converse(AnthropicModel(BEDROCK_MODEL, provider="bedrock", base_url=aws.url)))
    assert aws.models == [BEDROCK_MODEL, BEDROCK_MODEL] and aws.rejections == [] and aws.violations == []
    request = aws.requests[0]
    assert request.path == f"/model/{BEDROCK_MODEL}/invoke-with-response-stream"
    assert "/us-east-2/bedrock/aws4_request" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "example-session-token"


def test_bedrock_assumes_the_web_identity_role_through_sts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "oidc-token"
    token_file.write_text(OIDC_TOKEN)
    with FakeAWS([LOOKED, FOUND], region="us-west-2", role_arn=ROLE, web_identity_token=OIDC_TOKEN) as aws:
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
        monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.url)
        model = AnthropicModel(BEDROCK_MODEL, provider="bedrock", base_url=aws.url)
        assert aws.sts_calls == 0, "the role is assumed when the first request is signed"
        assert_conversed(*converse(model))
    assert aws.sts_calls == 1 and aws.models == [BEDROCK_MODEL, BEDROCK_MODEL]
    assert aws.rejections == [] and aws.violations == []
    assert aws.requests[1].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA")


def test_a_signature_with_the_wrong_secret_is_refused_and_the_session_error_names_the_aws_credentials(
        monkeypatch: pytest.MonkeyPatch, make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with FakeAWS([FOUND], region="eu-west-1") as aws:
        aws.allow("AKIAEXAMPLEKEY", "the-secret")
        code, out, _ = fixloop(make_repo({"calc.py": "x = 1\n"}), capsys, "--provider", "bedrock",
                               "--base-url", aws.url, "--model", BEDROCK_MODEL, "--json")
    assert aws.rejections == ["signature mismatch"] and len(aws.requests) == 1, "a 403 is not retried"
    report = json.loads(out)
    assert code == 3 and report["status"] == "error"
    assert report["reason"].startswith("Amazon Bedrock rejected the request's credentials (HTTP 403). Check the AWS "
                                       "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")
    assert "The request signature we calculated does not match" in report["reason"]


def test_a_bedrock_api_key_is_sent_as_a_bearer_token_instead_of_a_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKexample-bedrock-api-key")
    with FakeAWS([FOUND], region="ca-central-1", api_keys=["ABSKexample-bedrock-api-key"]) as aws:
        reply = AnthropicModel(BEDROCK_MODEL, provider="bedrock", base_url=aws.url).complete(
            system="Be brief.", tools=[SEARCH], messages=[TASK])
    assert reply.content == [Text("calc.py defines it.")] and aws.rejections == [] and aws.violations == []
    assert aws.requests[0].headers["authorization"] == "Bearer ABSKexample-bedrock-api-key"


def test_a_role_sts_will_not_grant_is_a_model_error_naming_the_aws_credentials(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "oidc-token"
    token_file.write_text("a token for another repository")
    with FakeAWS([FOUND], region="ap-southeast-2", role_arn=ROLE, web_identity_token=OIDC_TOKEN) as aws:
        monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
        monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.url)
        model = AnthropicModel(BEDROCK_MODEL, provider="bedrock", base_url=aws.url)
        with pytest.raises(ModelError) as refused:
            model.complete(system="Be brief.", tools=[SEARCH], messages=[TASK])
    assert str(refused.value).startswith("Could not get credentials for Amazon Bedrock. Check the AWS credentials")
    assert "(AccessDenied) when calling the AssumeRoleWithWebIdentity operation" in str(refused.value)
    assert aws.rejections == ["STS refused the web identity"] and aws.models == []


# --------------------------------------------------------------------------- Google Vertex AI


@pytest.mark.parametrize("where", ["GOOGLE_CLOUD_PROJECT", "ANTHROPIC_VERTEX_PROJECT_ID", "the key file"])
def test_vertex_trades_the_service_accounts_signed_jwt_for_a_token_and_calls_the_models_path(
        where: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeGoogle([LOOKED, FOUND], project="acme-ml", region="us-east5") as google:
        key_file = google.credentials_file(tmp_path, project_id="acme-ml" if where == "the key file" else None)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))  # as google-github-actions/auth sets it
        monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
        if where != "the key file":
            monkeypatch.setenv(where, "acme-ml")
        if where == "ANTHROPIC_VERTEX_PROJECT_ID":
            monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "another-project")  # the SDK's own variable comes first
        assert_conversed(*converse(AnthropicModel(VERTEX_MODEL, provider="vertex", base_url=f"{google.url}/v1")))
    assert len(google.tokens_issued) == 1, "one token serves both calls"
    predict = f"/v1/projects/acme-ml/locations/us-east5/publishers/anthropic/models/{VERTEX_MODEL}:streamRawPredict"
    assert [request.path for request in google.requests] == ["/token", predict, predict]
    assert google.requests[1].headers["authorization"] == f"Bearer {google.tokens_issued[0]}"
    assert google.rejections == [] and google.violations == []


def test_a_key_google_does_not_know_is_a_model_error_naming_the_google_credentials(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeGoogle([FOUND], project="acme-ml", region="us-east5") as google:
        key_file = google.credentials_file(tmp_path, project_id="acme-ml", key=new_rsa_key())
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
        model = AnthropicModel(VERTEX_MODEL, provider="vertex", base_url=f"{google.url}/v1")
        with pytest.raises(ModelError) as refused:
            model.complete(system="Be brief.", tools=[SEARCH], messages=[TASK])
    assert str(refused.value).startswith("Could not get credentials for Vertex AI. Check the Google Cloud credentials")
    assert "invalid_grant" in str(refused.value)
    assert google.rejections == ["assertion refused: Signature verification failed"] and google.models == []


# --------------------------------------------------------------------------- Microsoft Foundry


def test_foundry_sends_its_own_key_and_never_the_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_API_KEY", "foundry-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-anthropic-only")
    with FakeFoundry([LOOKED, FOUND], api_key="foundry-key") as foundry:
        assert_conversed(*converse(AnthropicModel(FOUNDRY_MODEL, provider="foundry",
                                                  base_url=f"{foundry.url}/anthropic/")))
    assert foundry.models == [FOUNDRY_MODEL, FOUNDRY_MODEL] and foundry.rejections == [] and foundry.violations == []
    for request in foundry.requests:
        assert request.path == "/anthropic/v1/messages" and request.headers["x-api-key"] == "foundry-key"
        assert "sk-ant-for-anthropic-only" not in json.dumps(request.headers)


def test_foundry_without_a_key_takes_a_managed_identity_token_before_the_first_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeFoundry([LOOKED, FOUND], identity_header="app-service-secret") as foundry:
        monkeypatch.setenv("IDENTITY_ENDPOINT", foundry.identity_endpoint)  # as App Service sets them
        monkeypatch.setenv("IDENTITY_HEADER", "app-service-secret")
        model = AnthropicModel(FOUNDRY_MODEL, provider="foundry", base_url=f"{foundry.url}/anthropic/")
        assert [request.path for request in foundry.requests] == [
            "/msi/token?api-version=2019-08-01&resource=https://ai.azure.com"]
        assert_conversed(*converse(model))
    assert len(foundry.tokens_issued) == 1, "the token is kept until shortly before it expires"
    assert [request.headers.get("authorization") for request in foundry.requests[1:]] == [
        f"Bearer {foundry.tokens_issued[0]}"] * 2
    assert foundry.rejections == [] and foundry.violations == []


def test_an_entra_token_that_cannot_be_renewed_is_a_model_error_naming_the_foundry_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeFoundry([FOUND], identity_header="app-service-secret", token_lifetime=60) as foundry:
        monkeypatch.setenv("IDENTITY_ENDPOINT", foundry.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", "app-service-secret")
        model = AnthropicModel(FOUNDRY_MODEL, provider="foundry", base_url=f"{foundry.url}/anthropic/")
        foundry.identity_refuses = True  # the token about to expire cannot be replaced
        with pytest.raises(ModelError) as refused:
            model.complete(system="Be brief.", tools=[SEARCH], messages=[TASK])
    assert str(refused.value).startswith("Could not get credentials for Microsoft Foundry. Check "
                                         "ANTHROPIC_FOUNDRY_API_KEY, or the Microsoft Entra ID identity")
    assert "No managed identity found for the app." in str(refused.value)
    assert foundry.models == []


def test_foundry_resource_names_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_RESOURCE", "acme-ai")
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_API_KEY", "foundry-key")
    model = AnthropicModel(FOUNDRY_MODEL, provider="foundry")
    assert str(model.client.base_url) == "https://acme-ai.services.ai.azure.com/anthropic/"


# --------------------------------------------------------------------------- missing credentials and extras


def _vertex_key_without_project(stack: contextlib.ExitStack, tmp_path: Path) -> dict[str, str]:
    google = stack.enter_context(FakeGoogle(project="acme-ml", region="us-east5"))
    return {"CLOUD_ML_REGION": "us-east5", "GOOGLE_APPLICATION_CREDENTIALS": str(google.credentials_file(tmp_path))}


def _app_without_identity(stack: contextlib.ExitStack, tmp_path: Path) -> dict[str, str]:
    foundry = stack.enter_context(FakeFoundry(identity_header="app-service-secret"))
    foundry.identity_refuses = True
    return {"ANTHROPIC_FOUNDRY_RESOURCE": "acme-ai", "IDENTITY_ENDPOINT": foundry.identity_endpoint,
            "IDENTITY_HEADER": "app-service-secret"}


Setup = Callable[[contextlib.ExitStack, Path], dict[str, str]]
MISSING: dict[str, tuple[str, Setup, str]] = {
    "bedrock without a region": (
        "bedrock", lambda _stack, _tmp: {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY": "secret"},
        BEDROCK_NO_REGION),
    "bedrock without credentials": ("bedrock", lambda _stack, _tmp: {"AWS_REGION": "us-east-1"},
                                    BEDROCK_NO_CREDENTIALS),
    "bedrock with a profile that does not exist": (
        "bedrock", lambda _stack, _tmp: {"AWS_REGION": "us-east-1", "AWS_PROFILE": "ci"},
        f"{BEDROCK_NO_CREDENTIALS} (The config profile (ci) could not be found)"),
    "vertex without a region": ("vertex", lambda _stack, _tmp: {}, VERTEX_NO_REGION),
    "vertex without credentials": ("vertex", lambda _stack, _tmp: {"CLOUD_ML_REGION": "us-east5"},
                                   f"{VERTEX_NO_CREDENTIALS} (Your default credentials were not found."),
    "vertex without a project": ("vertex", _vertex_key_without_project, VERTEX_NO_PROJECT),
    "foundry without a resource": ("foundry", lambda _stack, _tmp: {"ANTHROPIC_FOUNDRY_API_KEY": "foundry-key"},
                                   FOUNDRY_NO_RESOURCE),
    "foundry without credentials": (
        "foundry", _app_without_identity,
        f"{FOUNDRY_NO_CREDENTIALS} (DefaultAzureCredential failed to retrieve a token from the included credentials."),
}


@pytest.mark.parametrize("case", MISSING)
def test_missing_cloud_settings_are_a_usage_error_before_any_model_call(
        case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_repo: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    provider, setup, message = MISSING[case]
    repo = make_repo({"calc.py": "x = 1\n"})
    with contextlib.ExitStack() as stack:
        for name, value in setup(stack, tmp_path).items():
            monkeypatch.setenv(name, value)
        code, out, err = fixloop(repo, capsys, "--provider", provider)
    assert code == 2 and out == ""
    assert err.startswith(f"fixloop: {message}"), err
    assert not (repo / ".fixloop").exists(), "no session started"


@pytest.mark.parametrize(("provider", "module", "settings"), [
    ("bedrock", "boto3", {"AWS_REGION": "us-east-1"}),
    ("vertex", "google.auth", {"CLOUD_ML_REGION": "us-east5"}),
    ("foundry", "azure.identity", {"ANTHROPIC_FOUNDRY_RESOURCE": "acme-ai"}),
])
def test_a_provider_without_its_sdk_extra_says_which_to_install(
        provider: str, module: str, settings: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import` finds where the package is not installed
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    code, _, err = fixloop(make_repo({"calc.py": "x = 1\n"}), capsys, "--provider", provider)
    assert code == 2
    assert err == f"fixloop: provider {provider} needs `pip install 'fixloop[{provider}]'` ({module} is not " \
                  "installed).\n"


def test_a_foundry_key_needs_no_azure_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_API_KEY", "foundry-key")
    with FakeFoundry([FOUND], api_key="foundry-key") as foundry:
        model = AnthropicModel(FOUNDRY_MODEL, provider="foundry", base_url=f"{foundry.url}/anthropic/")
        reply = model.complete(system="Be brief.", tools=[SEARCH], messages=[TASK])
    assert reply.content == [Text("calc.py defines it.")]
