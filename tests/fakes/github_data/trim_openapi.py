#!/usr/bin/env python3
"""Trim GitHub's OpenAPI description to the operations the fake GitHub server serves.

Reads the full description (13 MB, ~800 paths; openapi-core needs ~20 s to load it) and writes
a copy that keeps only the operations in ``OPERATIONS`` plus every component they reference,
transitively.  Documentation-only material is dropped to keep the result small and quick to load:
``examples``/``example`` values (and the example components only they reference),
``externalDocs``, ``x-*`` vendor extensions and tags.  Descriptions are kept: they explain
constraints (e.g. "Required if you provide completed_at") that show up in validation errors.

Usage::

    python tests/fakes/github_data/trim_openapi.py [--source PATH] [--out PATH] [--no-validate]

By default it reads ``/work/shared/data/github/openapi/api.github.com.json`` (or
``$GITHUB_OPENAPI``) and writes ``tests/fakes/github_data/openapi.trimmed.json`` plus the
upstream ``LICENSE`` next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
# ../shared beside the project checkout holds GitHub's full description.
DEFAULT_SOURCE = Path(
    os.environ.get("GITHUB_OPENAPI",
                   REPO_ROOT.parent / "shared" / "data" / "github" / "openapi" / "api.github.com.json")
)
DEFAULT_OUT = REPO_ROOT / "tests" / "fakes" / "github_data" / "openapi.trimmed.json"

# (METHOD, path template exactly as in the description)
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("POST", "/repos/{owner}/{repo}/issues"),
    ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("GET", "/installation/repositories"),
    ("GET", "/orgs/{org}/repos"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    # Escalation: tracking issues found among the open ones, people assigned.
    ("GET", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}"),
    ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"),
    ("GET", "/repos/{owner}/{repo}/actions/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel"),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"),
    ("GET", "/app"),
    ("GET", "/app/installations"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}"),
    ("GET", "/rate_limit"),
    # A person signed in to the App's web UI, with the user token of its OAuth flow.
    ("GET", "/user"),
    ("GET", "/user/installations"),
    ("GET", "/user/installations/{installation_id}/repositories"),
)

# Components kept even when no kept operation references them: the fake uses them to check the
# shape of error bodies it sends for status codes an operation does not document.
EXTRA_COMPONENTS: tuple[str, ...] = (
    "#/components/schemas/basic-error",
    "#/components/schemas/validation-error",
    "#/components/schemas/validation-error-simple",
)

DROPPED_KEYS = frozenset({"externalDocs", "example", "examples", "tags"})
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Keys whose values are maps from user-chosen names to objects (a property called "description"
# or "example" must survive there).
NAME_MAPS = frozenset({"properties", "patternProperties", "headers", "content", "responses",
                       "schemas", "parameters", "examples", "requestBodies", "links",
                       "callbacks", "securitySchemes", "variables", "encoding", "mapping"})


def _strip(node: Any, *, in_name_map: bool = False) -> Any:
    """Drop documentation-only keys (examples, vendor extensions, ...) from a spec fragment."""
    if isinstance(node, list):
        return [_strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_name_map:  # keys are user-chosen names (a property may well be called "example")
        return {key: _strip(value) for key, value in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in DROPPED_KEYS:
            continue
        out[key] = _strip(value, in_name_map=key in NAME_MAPS and isinstance(value, dict))
    return out


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"external $ref not supported: {ref}")
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _collect_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _collect_refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _collect_refs(item, found)


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    """Return a new description containing only OPERATIONS and what they reference."""
    paths: dict[str, dict[str, Any]] = {}
    for method, template in OPERATIONS:
        path_item = spec["paths"].get(template)
        if path_item is None or method.lower() not in path_item:
            raise KeyError(f"{method} {template} is not in the source description")
        kept = paths.setdefault(template, {
            key: value for key, value in path_item.items() if key not in HTTP_METHODS
        })
        kept[method.lower()] = path_item[method.lower()]
    paths = {template: _strip(item) for template, item in paths.items()}

    # Transitive closure over $refs, on the stripped fragments (so refs that only appear inside
    # dropped examples are not pulled in).
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set(EXTRA_COMPONENTS)
    _collect_refs(paths, pending)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)
        fragment = _strip(_resolve(spec, ref))
        components.setdefault(section, {})[name] = fragment
        _collect_refs(fragment, pending)

    return {
        "openapi": spec["openapi"],
        "info": {
            "title": spec["info"]["title"] + " (trimmed for the fixloop fake GitHub server)",
            "version": spec["info"]["version"],
            "license": spec["info"].get("license", {"name": "MIT"}),
        },
        "servers": spec.get("servers", [{"url": "https://api.github.com"}]),
        "paths": dict(sorted(paths.items())),
        "components": {
            section: dict(sorted(entries.items()))
            for section, entries in sorted(components.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-validate", action="store_true",
                        help="skip checking the result with openapi-spec-validator / openapi-core")
    args = parser.parse_args(argv)

    spec = json.loads(args.source.read_text(encoding="utf-8"))
    trimmed = trim(spec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(trimmed, indent=None, separators=(",", ":"), sort_keys=False) + "\n"
    args.out.write_text(text, encoding="utf-8")
    license_src = args.source.parent / "LICENSE"
    if license_src.exists():
        shutil.copyfile(license_src, args.out.parent / "LICENSE")

    n_ops = sum(1 for item in trimmed["paths"].values() for key in item if key in HTTP_METHODS)
    n_components = sum(len(v) for v in trimmed["components"].values())
    print(f"wrote {args.out} ({len(text.encode()) / 1024:.0f} KiB, {len(trimmed['paths'])} paths, "
          f"{n_ops} operations, {n_components} components)")

    if not args.no_validate:
        from openapi_core import OpenAPI  # imported lazily: only needed for the check

        started = time.perf_counter()
        OpenAPI.from_dict(json.loads(text))  # runs openapi-spec-validator on the whole document
        print(f"openapi-core loaded and validated it in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
