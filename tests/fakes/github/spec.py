"""Load the trimmed GitHub OpenAPI description once and validate traffic against it.

openapi-core does the validation.  The fake routes requests itself, so the adapters below hand
openapi-core the matched *path template* and the decoded path parameters (the
``SupportsPathPattern`` protocol): openapi-core's own path matcher only accepts ``[^/]*`` for a
template variable, while GitHub's ``{path}``, ``{ref}`` and ``{branch}`` may contain slashes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from jsonschema_path import SchemaPath
from openapi_core import V30RequestValidator, V30ResponseValidator
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30ReadValidator
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parent.parent / "github_data" / "openapi.trimmed.json"

# openapi-core matches the request URL against the description's `servers` entry.
SPEC_HOST_URL = "https://api.github.com"


def _label_body_accepts_bare_array(spec: dict[str, Any]) -> None:
    """POST .../issues/{n}/labels: also accept a bare JSON array of label names.

    GitHub documents it ("You can also pass an array of labels directly") and PyGithub's
    ``Issue.add_to_labels`` / ``PullRequest.add_to_labels`` send exactly that, but the published
    schema's ``oneOf`` only lists the ``{"labels": [...]}`` object form.
    """
    body = spec["paths"]["/repos/{owner}/{repo}/issues/{issue_number}/labels"]["post"]
    schema = body["requestBody"]["content"]["application/json"]["schema"]
    schema["oneOf"].append({"type": "array", "minItems": 1, "items": {"type": "string"}})


def _nullable_enums_accept_null(spec: dict[str, Any]) -> None:
    """``nullable: true`` next to an ``enum`` without ``null`` (e.g. check-run ``conclusion``).

    OpenAPI 3.0.3 says ``nullable`` does not override ``enum``, so a strict validator rejects
    the ``null`` GitHub really sends (an in-progress check run has ``"conclusion": null``).
    GitHub's description means "null or one of these": add ``None`` to such enums.
    """
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            enum = node.get("enum")
            if node.get("nullable") is True and isinstance(enum, list) and None not in enum:
                enum.append(None)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _contents_oneof_without_discriminator(spec: dict[str, Any]) -> None:
    """GET .../contents/{path}: drop the ``discriminator`` of the response ``oneOf``.

    It maps ``type: "array"`` to ``content-directory``, but a directory listing is a JSON array,
    which has no ``type`` property to discriminate on, so openapi-core rejects every listing.
    The ``oneOf`` alone tells the alternatives apart (array vs. ``type`` enums).
    """
    op = spec["paths"]["/repos/{owner}/{repo}/contents/{path}"]["get"]
    op["responses"]["200"]["content"]["application/json"]["schema"].pop("discriminator", None)


def _installation_list_account_is_any_of(spec: dict[str, Any]) -> None:
    """GET /app/installations: the inlined ``account`` says ``allOf`` [Simple User, Enterprise].

    That demands one object be both a user and an enterprise.  The ``installation`` component
    (same object, other endpoints) says ``anyOf``, which is what GitHub sends: use that.
    """
    op = spec["paths"]["/app/installations"]["get"]
    account = op["responses"]["200"]["content"]["application/json"]["schema"]["items"][
        "properties"]["account"]
    if "allOf" in account:
        account["anyOf"] = account.pop("allOf")


# Deliberate, documented departures from the published description, applied in memory at load
# time (the vendored file stays a faithful trim of upstream).  Keep this list short.
SPEC_PATCHES = (
    _label_body_accepts_bare_array,
    _nullable_enums_accept_null,
    _contents_oneof_without_discriminator,
    _installation_list_account_is_any_of,
)


@dataclass(frozen=True)
class LoadedSpec:
    """The parsed description plus ready-to-use openapi-core validators."""

    raw: dict[str, Any]
    schema_path: SchemaPath
    request_validator: V30RequestValidator  # unknown body properties are errors
    lenient_request_validator: V30RequestValidator  # unknown body properties are allowed
    response_validator: V30ResponseValidator
    load_seconds: float
    # openapi-core caches lazily and is not documented as thread-safe: serialise its use.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        item = self.raw["paths"].get(template)
        return None if item is None else item.get(method.lower())

    def documented_statuses(self, method: str, template: str) -> set[str]:
        op = self.operation(method, template)
        return set(op["responses"]) if op else set()


@lru_cache(maxsize=1)
def load_spec() -> LoadedSpec:
    """Parse the vendored description (once per process) and build the validators."""
    started = time.perf_counter()
    raw = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    for patch in SPEC_PATCHES:
        patch(raw)
    schema_path = SchemaPath.from_dict(raw)
    # No openapi-spec-validator pass here: tests/fakes/github_data/trim_openapi.py validates the file when it
    # writes it, and skipping the check keeps loading fast.
    return LoadedSpec(
        raw, schema_path,
        V30RequestValidator(schema_path, forbid_unspecified_additional_properties=True),
        V30RequestValidator(schema_path),
        # Responses may carry properties the description does not list (GitHub's do, too).
        V30ResponseValidator(schema_path),
        time.perf_counter() - started)


# --------------------------------------------------------------------------------------------
# openapi-core adapters


@dataclass
class SpecRequest:
    """A request as openapi-core's ``Request`` + ``SupportsPathPattern`` protocols want it."""

    method_upper: str
    path_pattern: str
    path_params: Mapping[str, str]
    query_pairs: Iterable[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(self.query_pairs)),
            header=Headers(list(self.headers.items())),
            path=dict(self.path_params),
        )

    @property
    def host_url(self) -> str:
        return SPEC_HOST_URL

    @property
    def path(self) -> str:
        return self.path_pattern

    @property
    def method(self) -> str:
        return self.method_upper.lower()


@dataclass
class SpecResponse:
    """A response as openapi-core's ``Response`` protocol wants it."""

    status_code: int
    data: bytes | None
    content_type: str
    headers: Headers


# --------------------------------------------------------------------------------------------
# error formatting


def _clip(text: str, limit: int = 300) -> str:
    """Keep messages readable when they quote a huge value (a 70 kB summary, say)."""
    return text if len(text) <= limit else f"{text[:limit // 2]} ... {text[-limit // 3:]}"


def _where(err: ValidationError) -> str:
    return "/".join(str(p) for p in err.absolute_path) or "<root>"


def _explain(err: ValidationError) -> str:
    line = f"at '{_where(err)}': {_clip(err.message)}"
    if err.context:  # oneOf/anyOf: why each alternative failed
        by_alternative: dict[Any, list[ValidationError]] = {}
        for sub in err.context:
            by_alternative.setdefault(sub.schema_path[0], []).append(sub)
        reasons = []
        for index, errors in by_alternative.items():
            closest = best_match(errors)
            if closest is not None:
                reasons.append(f"[{index}] at '{_where(closest)}': {_clip(closest.message)}")
        line += f" ({'; '.join(reasons)})"
    return line


def _describe(exc: BaseException) -> str:
    """One line for an openapi-core error: its type and message, then the jsonschema errors
    it wraps with their locations (not the wrapper messages that repeat the whole value)."""
    # openapi-core repeats the whole offending value in its wrapper messages: cut that off.
    parts = [f"{type(exc).__name__}: {str(exc).split(': Value ', 1)[0]}"]
    seen: set[int] = {id(exc)}
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        nested: list[BaseException] = []
        cause = current.__cause__ or current.__context__
        if cause is not None:
            nested.append(cause)
        nested.extend(getattr(current, "schema_errors", None) or [])
        for err in nested:
            if id(err) in seen:
                continue
            seen.add(id(err))
            if isinstance(err, ValidationError):
                parts.append(_explain(err))
            elif not getattr(err, "schema_errors", None):
                parts.append(_clip(f"{type(err).__name__}: {err}"))
            pending.append(err)
    return " | ".join(parts)


def request_errors(spec: LoadedSpec, request: SpecRequest, *, strict: bool = True) -> list[str]:
    """Problems with a request; ``strict`` also rejects body properties the schema lacks
    (GitHub silently ignores those, which hides typos such as ``summery``)."""
    validator = spec.request_validator if strict else spec.lenient_request_validator
    with spec.lock:
        return [_describe(err) for err in validator.iter_errors(request)]


def response_errors(spec: LoadedSpec, request: SpecRequest, response: SpecResponse) -> list[str]:
    with spec.lock:
        return [_describe(err) for err in spec.response_validator.iter_errors(request, response)]


@cache
def _component_validator(component: str) -> OAS30ReadValidator:
    raw = load_spec().raw
    # The "components" sibling makes the description's local "#/components/..." refs resolve.
    return OAS30ReadValidator({"$ref": f"#/components/schemas/{component}",
                               "components": raw["components"]})


def schema_errors(component: str, value: Any) -> list[str]:
    """Validate ``value`` against ``#/components/schemas/<component>`` (response context)."""
    return [
        f"at '{_where(err)}': {_clip(err.message)}"
        for err in _component_validator(component).iter_errors(value)
    ]
