"""Claude through the official SDK: the Anthropic side of the model seam (see bot.agent.model).

fixloop's types become the Messages API's dicts here and nowhere else. A reply's text and tool_use
blocks come back as `Text` and `ToolCall`; any other block (thinking, redacted thinking) as `Opaque`,
which goes back to the API verbatim, as the API requires of thinking blocks.

The same Messages API is reached four ways, each through the SDK's own client: Anthropic's API with
ANTHROPIC_API_KEY, or Amazon Bedrock, Google Vertex AI and Microsoft Foundry with the credentials the
cloud's own tools leave in the environment (a CI job's OIDC role, a service account, a managed identity),
so fixloop needs no secret of its own there. Each cloud's credentials are looked for when the model is
made, so that missing ones stop the run before it starts rather than as a 403 in its middle.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2

from bot.agent.model import Block, CallResult, Message, ModelReply, Opaque, Text, ToolCall, ToolSpec
from bot.agent.usage import Usage
from bot.errors import ConfigError, MissingAPIKey, ModelError
from bot.secrets import public_url

PROVIDER = "anthropic"  # the format of Opaque blocks: the Messages API's, whichever cloud serves it
_CLIENT_TOOL_TYPES = {"text_editor": "text_editor_20250728", "bash": "bash_20250124"}

ClaudeProvider = Literal["anthropic", "bedrock", "vertex", "foundry"]
# AnthropicFoundry is an Anthropic; Bedrock's and Vertex's clients share only the SDK's base client.
Client = anthropic.Anthropic | anthropic.AnthropicBedrock | anthropic.AnthropicVertex
CredentialErrors = tuple[type[Exception], ...]  # what a client's credential library raises

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
FOUNDRY_SCOPE = "https://ai.azure.com/.default"  # the scope the SDK's Foundry guide asks tokens for

BEDROCK_NO_REGION = (
    "provider bedrock needs an AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the "
    "AWS_PROFILE's config). In GitHub Actions, aws-actions/configure-aws-credentials with `aws-region` and "
    "`role-to-assume` sets the region and the credentials.")
BEDROCK_NO_CREDENTIALS = (
    "provider bedrock found no AWS credentials. In GitHub Actions, use aws-actions/configure-aws-credentials "
    "with `role-to-assume` (the job needs `permissions: id-token: write`); elsewhere set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE, AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, "
    "or a Bedrock API key in AWS_BEARER_TOKEN_BEDROCK.")
VERTEX_NO_REGION = (
    "provider vertex needs the Vertex AI region in CLOUD_ML_REGION (e.g. us-east5, europe-west1 or global).")
VERTEX_NO_CREDENTIALS = (
    "provider vertex found no Google Cloud credentials (Application Default Credentials). In GitHub Actions, "
    "use google-github-actions/auth with `workload_identity_provider` and `service_account`, which sets "
    "GOOGLE_APPLICATION_CREDENTIALS; elsewhere set GOOGLE_APPLICATION_CREDENTIALS to a credentials file or run "
    "`gcloud auth application-default login`.")
VERTEX_NO_PROJECT = (
    "provider vertex needs the Google Cloud project: set ANTHROPIC_VERTEX_PROJECT_ID or GOOGLE_CLOUD_PROJECT "
    "(google-github-actions/auth sets GOOGLE_CLOUD_PROJECT when it knows the project).")
FOUNDRY_NO_RESOURCE = (
    "provider foundry needs the Foundry resource: set ANTHROPIC_FOUNDRY_RESOURCE (NAME in "
    "https://NAME.services.ai.azure.com), ANTHROPIC_FOUNDRY_BASE_URL, or `base_url` in the configuration.")
FOUNDRY_NO_CREDENTIALS = (
    "provider foundry found neither ANTHROPIC_FOUNDRY_API_KEY nor a Microsoft Entra ID credential. In GitHub "
    "Actions, use azure/login with `client-id`, `tenant-id` and `subscription-id` (OIDC); elsewhere set "
    "ANTHROPIC_FOUNDRY_API_KEY, AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET, or use a managed "
    "identity or `az login`.")


@dataclass(frozen=True)
class _Provider:
    label: str  # how messages name the provider's API
    credentials: str  # what to check when it rejects the request (401, 403) or gives no token


_PROVIDERS: dict[ClaudeProvider, _Provider] = {
    "anthropic": _Provider("The model API", "ANTHROPIC_API_KEY"),
    "bedrock": _Provider(
        "Amazon Bedrock", "the AWS credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, "
        "AWS_PROFILE, the role aws-actions/configure-aws-credentials assumed, or AWS_BEARER_TOKEN_BEDROCK) and that "
        "their IAM policy allows bedrock:InvokeModelWithResponseStream on this model or inference profile"),
    "vertex": _Provider(
        "Vertex AI", "the Google Cloud credentials (Application Default Credentials, e.g. "
        "GOOGLE_APPLICATION_CREDENTIALS from google-github-actions/auth) and that they have roles/aiplatform.user "
        "in the project, with the model enabled in Model Garden"),
    "foundry": _Provider(
        "Microsoft Foundry", "ANTHROPIC_FOUNDRY_API_KEY, or the Microsoft Entra ID identity (e.g. from azure/login) "
        "and its role on the Foundry resource (e.g. Azure AI User)"),
}


class AnthropicModel:
    """Claude through the official SDK.

    HTTP-level failures (429, 5xx, 529 overloaded, connection errors) are retried by the SDK with
    exponential backoff that honours `retry-after`. A stream that breaks after it started (a cut
    connection, an `error` event) is not something the SDK retries, so `complete` repeats the whole
    call up to `stream_retries` times.
    """

    def __init__(
        self,
        name: str,
        *,
        provider: ClaudeProvider = "anthropic",
        base_url: str | None = None,
        client: Client | None = None,
        max_tokens: int = 16_000,
        max_retries: int = 4,
        stream_retries: int = 2,
        timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`name` as the provider knows the model (Bedrock's and Vertex's own ids are passed as given);
        `base_url` instead of the provider's own endpoint. Raises MissingAPIKey when the provider's
        credentials (or its region, project or resource) are missing, ConfigError when its SDK extra is
        not installed."""
        # What the client's credential library raises when a request's token or signature cannot be had
        # (a role that cannot be assumed again, a refused token exchange); a given client handles its own.
        self._credential_errors: CredentialErrors = ()
        if client is None:
            client, self._credential_errors = _connect(provider, base_url, max_retries=max_retries, timeout=timeout)
        self.name = name
        self.client = client
        self._provider = provider
        self.max_tokens = max_tokens
        self.stream_retries = stream_retries
        self._sleep = sleep

    def complete(self, *, system: str, tools: list[ToolSpec], messages: list[Message]) -> ModelReply:
        request = request_params(system, tools, messages)
        for attempt in range(self.stream_retries + 1):
            try:
                with self.client.messages.stream(model=self.name, max_tokens=self.max_tokens, **request) as stream:
                    message = stream.get_final_message()
                break
            except anthropic.APIStatusError as error:
                if not _stream_broke(error) or attempt == self.stream_retries:
                    raise ModelError(_explain(error, provider=self._provider)) from None
            except anthropic.APIConnectionError as error:  # already retried by the SDK
                raise ModelError(f"Could not reach the model API at {public_url(str(self.client.base_url))}: "
                                 f"{error}") from None
            except self._credential_errors as error:  # a cloud's token could not be had for this request
                about = _PROVIDERS[self._provider]
                raise ModelError(f"Could not get credentials for {about.label}. Check {about.credentials}. "
                                 f"{error}") from None
            except httpx2.TransportError as error:  # the stream broke after it started
                if attempt == self.stream_retries:
                    raise ModelError(f"The model API stream broke {attempt + 1} times: {error}") from None
            self._sleep(0.5 * 2**attempt)
        usage = message.usage
        return ModelReply(
            content=[_from_api(block) for block in message.content],
            stop_reason=message.stop_reason or "end_turn",
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            ),
        )


def request_params(system: str, tools: list[ToolSpec], messages: list[Message]) -> dict[str, Any]:
    """The request's `system`, `tools` and `messages`, in the API's shapes, marked as cacheable.

    Two breakpoints: the end of the system prompt (caches tools and system, which never change in a
    session) and the last block of the newest user turn (each call reuses the previous prefix).
    """
    ephemeral = {"type": "ephemeral"}
    contents = [[_to_api(block) for block in message.content] for message in messages]
    contents[-1][-1]["cache_control"] = ephemeral
    return {
        "system": [{"type": "text", "text": system, "cache_control": ephemeral}],
        "tools": [tool_param(spec) for spec in tools],
        "messages": [{"role": m.role, "content": content} for m, content in zip(messages, contents, strict=True)],
    }


def tool_param(spec: ToolSpec) -> dict[str, Any]:
    """A tool as the API takes it: fixloop's own with its schema, Anthropic's client tools by type."""
    if spec.kind == "custom":
        return {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema}
    options = {} if spec.max_characters is None else {"max_characters": spec.max_characters}
    return {"type": _CLIENT_TOOL_TYPES[spec.kind], "name": spec.name, **options}


def _to_api(block: Block) -> dict[str, Any]:
    match block:
        case Text():
            return {"type": "text", "text": block.text}
        case ToolCall():
            return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
        case CallResult():
            return {"type": "tool_result", "tool_use_id": block.call_id, "content": block.content,
                    "is_error": block.is_error}
        case Opaque():
            return dict(block.data)  # a copy: a cache breakpoint must not mark the conversation's own block


def _from_api(block: anthropic.types.ContentBlock) -> Block:
    """A reply's block as fixloop's (text has no citations to keep: fixloop sends no documents)."""
    if isinstance(block, anthropic.types.TextBlock):
        return Text(block.text)
    if isinstance(block, anthropic.types.ToolUseBlock):
        return ToolCall(block.id, block.name, dict(block.input))
    return Opaque(PROVIDER, block.to_dict())


def _stream_broke(error: anthropic.APIStatusError) -> bool:
    """An `error` event inside a started stream (status 200), which the SDK does not retry."""
    return error.status_code == 200


def _explain(error: anthropic.APIStatusError, *, provider: ClaudeProvider) -> str:
    about = _PROVIDERS[provider]
    if provider == "anthropic":
        if isinstance(error, anthropic.AuthenticationError):
            return "The model API rejected the API key (401). Check ANTHROPIC_API_KEY."
    elif isinstance(error, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return (f"{about.label} rejected the request's credentials (HTTP {error.status_code}). "
                f"Check {about.credentials}. {error.message}")
    if isinstance(error, anthropic.NotFoundError):
        return f"{about.label} does not know this model or endpoint (404): {error.message}"
    return f"{about.label} failed with HTTP {error.status_code}: {error.message}"


# --------------------------------------------------------------------------- the provider's client


def _connect(
    provider: ClaudeProvider, base_url: str | None, *, max_retries: int, timeout: float
) -> tuple[Client, CredentialErrors]:
    """The provider's client, and the errors its credential library raises for a request."""
    match provider:
        case "anthropic":
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise MissingAPIKey()
            return anthropic.Anthropic(base_url=base_url, max_retries=max_retries, timeout=timeout), ()
        case "bedrock":
            return _bedrock(base_url, max_retries=max_retries, timeout=timeout)
        case "vertex":
            return _vertex(base_url, max_retries=max_retries, timeout=timeout)
        case "foundry":
            return _foundry(base_url, max_retries=max_retries, timeout=timeout)


def _require(provider: ClaudeProvider, *modules: str) -> None:
    """Import what the provider's client needs beyond the SDK, so that a missing package is a usage
    error that says which extra installs it (the SDK would say so only at the first request)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"provider {provider} needs `pip install 'fixloop[{provider}]'` "
                              f"({module} is not installed).") from None


def _bedrock(base_url: str | None, *, max_retries: int, timeout: float) -> tuple[Client, CredentialErrors]:
    """Bedrock with botocore's default credential chain (the environment's keys, AWS_PROFILE, a web
    identity role, the instance's role), as the SDK signs each request; or a Bedrock API key."""
    _require("bedrock", "boto3")
    import botocore.exceptions
    import botocore.session

    session = botocore.session.get_session()
    try:
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
        found = bool(os.environ.get("AWS_BEARER_TOKEN_BEDROCK")) or session.get_credentials() is not None
    except botocore.exceptions.BotoCoreError as error:  # AWS_PROFILE names no profile; a config file is broken
        raise MissingAPIKey(f"{BEDROCK_NO_CREDENTIALS} ({error})") from None
    if not region:
        raise MissingAPIKey(BEDROCK_NO_REGION)
    if not found:
        raise MissingAPIKey(BEDROCK_NO_CREDENTIALS)
    client = anthropic.AnthropicBedrock(aws_region=region, base_url=base_url, max_retries=max_retries, timeout=timeout)
    return client, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _vertex(base_url: str | None, *, max_retries: int, timeout: float) -> tuple[Client, CredentialErrors]:
    """Vertex AI with Google's Application Default Credentials, in the region CLOUD_ML_REGION names and
    the project ANTHROPIC_VERTEX_PROJECT_ID names (else the one the credentials resolve to), as the SDK
    would find them itself."""
    _require("vertex", "google.auth")
    import google.auth
    import google.auth.exceptions

    region = os.environ.get("CLOUD_ML_REGION")
    if not region:
        raise MissingAPIKey(VERTEX_NO_REGION)
    try:
        credentials, project = google.auth.default(scopes=[GOOGLE_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise MissingAPIKey(f"{VERTEX_NO_CREDENTIALS} ({error})") from None
    project = os.environ.get("ANTHROPIC_VERTEX_PROJECT_ID") or project
    if not project:
        raise MissingAPIKey(VERTEX_NO_PROJECT)
    client = anthropic.AnthropicVertex(region=region, project_id=project, credentials=credentials, base_url=base_url,
                                       max_retries=max_retries, timeout=timeout)
    return client, (google.auth.exceptions.GoogleAuthError,)


def _foundry(base_url: str | None, *, max_retries: int, timeout: float) -> tuple[Client, CredentialErrors]:
    """Foundry at `base_url`, ANTHROPIC_FOUNDRY_BASE_URL or ANTHROPIC_FOUNDRY_RESOURCE, with the key in
    ANTHROPIC_FOUNDRY_API_KEY or else a Microsoft Entra ID token from azure-identity's default chain."""
    base_url = base_url or os.environ.get("ANTHROPIC_FOUNDRY_BASE_URL")
    resource = os.environ.get("ANTHROPIC_FOUNDRY_RESOURCE")
    if not base_url and not resource:
        raise MissingAPIKey(FOUNDRY_NO_RESOURCE)
    api_key = os.environ.get("ANTHROPIC_FOUNDRY_API_KEY") or None
    tokens, errors = (None, ()) if api_key else _entra_tokens()
    if base_url:
        client = anthropic.AnthropicFoundry(base_url=base_url, api_key=api_key, azure_ad_token_provider=tokens,
                                            max_retries=max_retries, timeout=timeout)
    else:
        client = anthropic.AnthropicFoundry(resource=resource, api_key=api_key, azure_ad_token_provider=tokens,
                                            max_retries=max_retries, timeout=timeout)
    return client, errors


def _entra_tokens() -> tuple[Callable[[], str], CredentialErrors]:
    """Bearer tokens for Foundry from DefaultAzureCredential, the first one fetched now: there is no
    other way to learn whether the environment holds a credential. (The provider keeps a token until
    shortly before it expires.)"""
    _require("foundry", "azure.identity")
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    tokens = get_bearer_token_provider(DefaultAzureCredential(), FOUNDRY_SCOPE)
    try:
        tokens()
    except ClientAuthenticationError as error:
        raise MissingAPIKey(f"{FOUNDRY_NO_CREDENTIALS} ({error.message})") from None
    return tokens, (ClientAuthenticationError,)
