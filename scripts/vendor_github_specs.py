#!/usr/bin/env python3
"""Vendor the parts of GitHub's official OpenAPI descriptions that Fleet uses.

Reads three npm packages published by the Octokit project:

* ``@octokit/openapi``          -> REST operations (OpenAPI 3.0)
* ``@octokit/openapi-webhooks`` -> webhook payload schemas (OpenAPI 3.1)
* ``@octokit/webhooks-examples`` -> real example payloads

and writes small, self-contained, JSON-Schema (Draft 2020-12) compatible
subsets that the GitHub simulator validates against:

* ``app/sandbox/simulator/specs/github-rest-subset.json``
* ``app/sandbox/simulator/specs/github-webhooks-subset.json``
* ``tests/fixtures/webhook_examples/<event>.json``

Usage::

    python scripts/vendor_github_specs.py [--node-modules DIR]

Without ``--node-modules`` the pinned package versions are installed with npm
into a temporary directory first.  The output is deterministic, so re-running
against the same package versions reproduces the committed files byte-for-byte.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = REPO_ROOT / "app" / "sandbox" / "simulator" / "specs"
REST_OUT = SPECS_DIR / "github-rest-subset.json"
WEBHOOKS_OUT = SPECS_DIR / "github-webhooks-subset.json"
EXAMPLES_DIR = REPO_ROOT / "tests" / "fixtures" / "webhook_examples"

# Pinned so that the committed output is reproducible; bump deliberately.
PACKAGES = {
    "@octokit/openapi": "23.0.2",
    "@octokit/openapi-webhooks": "12.1.0",
    "@octokit/webhooks-examples": "7.6.1",
}

# (METHOD, PATH-TEMPLATE) exactly as in @octokit/openapi's api.github.com.json.
OPERATIONS: list[tuple[str, str]] = [
    # GitHub App / installation
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app"),
    ("GET", "/app/installations"),
    ("GET", "/app/installations/{installation_id}"),
    ("GET", "/installation/repositories"),
    ("GET", "/app/hook/deliveries"),
    ("GET", "/app/hook/deliveries/{delivery_id}"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"),
    # Repositories
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    # Issues
    ("GET", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/issues"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/events"),
    ("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"),
    ("GET", "/repos/{owner}/{repo}/assignees/{assignee}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/dependencies/blocked_by"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/sub_issues"),
    # Labels
    ("GET", "/repos/{owner}/{repo}/labels"),
    ("POST", "/repos/{owner}/{repo}/labels"),
    ("GET", "/repos/{owner}/{repo}/labels/{name}"),
    ("PATCH", "/repos/{owner}/{repo}/labels/{name}"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("PUT", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"),
    # Milestones
    ("GET", "/repos/{owner}/{repo}/milestones"),
    ("POST", "/repos/{owner}/{repo}/milestones"),
    ("GET", "/repos/{owner}/{repo}/milestones/{milestone_number}"),
    ("PATCH", "/repos/{owner}/{repo}/milestones/{milestone_number}"),
    # Pull requests
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/update-branch"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    # Checks and statuses
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/status"),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"),
    # Branches, refs, commits, merges
    ("GET", "/repos/{owner}/{repo}/branches"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("POST", "/repos/{owner}/{repo}/merges"),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}"),
    # Teams
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}"),
]

# GraphQL is not part of the REST description, so it gets a hand-written
# operation with the same shape as the vendored ones.  GitHub accepts a null
# `variables`/`operationName` (clients such as githubkit send them), so allow it.
GRAPHQL_OPERATION: dict[str, Any] = {
    "method": "POST",
    "path": "/graphql",
    "operationId": "graphql",
    "synthetic": True,
    "parameters": [],
    "requestBody": {
        "required": True,
        "schema": {
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string"},
                "variables": {"type": ["object", "null"]},
                "operationName": {"type": ["string", "null"]},
            },
        },
    },
    "responses": {
        "200": {
            "type": "object",
            "properties": {
                "data": {"type": ["object", "null"]},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}

ALL_ACTIONS = "*"
# event -> actions Fleet handles; None = the event has no `action`,
# ALL_ACTIONS = every action present in the webhook description.
WEBHOOK_EVENTS: dict[str, Any] = {
    "installation": ALL_ACTIONS,
    "installation_repositories": ALL_ACTIONS,
    "issues": (
        "opened", "edited", "closed", "reopened", "assigned", "unassigned",
        "labeled", "unlabeled", "milestoned", "demilestoned", "deleted",
        "transferred",
    ),
    "issue_comment": ("created", "edited", "deleted"),
    "label": ALL_ACTIONS,
    "milestone": ALL_ACTIONS,
    "create": None,
    "delete": None,
    "push": None,
    "pull_request": (
        "opened", "edited", "synchronize", "closed", "reopened",
        "ready_for_review", "converted_to_draft", "labeled", "unlabeled",
    ),
    "pull_request_review": ("submitted", "dismissed", "edited"),
    "check_run": ("created", "completed", "rerequested", "requested_action"),
    "check_suite": ("completed", "requested", "rerequested"),
    "status": None,
    "issue_dependencies": ALL_ACTIONS,
    "sub_issues": ALL_ACTIONS,
    "ping": None,
    "repository": (
        "renamed", "transferred", "deleted", "archived", "unarchived", "privatized", "publicized",
    ),
}

MAX_EXAMPLES_PER_KEY = 10

# Schema-valued keywords: the walker recurses only through these, so property
# *names* such as "description" or "type" are never mistaken for keywords.
_SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "contains",
                    "propertyNames", "if", "then", "else")
# Validation keywords kept; everything else (description, example(s), title,
# readOnly, default, discriminator, x-*) is documentation and is dropped.
_KEPT_VALUE_KEYWORDS = (
    "$ref", "type", "enum", "const", "required", "format", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties",
)

SCHEMA_REF_PREFIX = "#/components/schemas/"


class VendorError(RuntimeError):
    """The upstream description lacks something Fleet relies on."""


# --------------------------------------------------------------------------
# Schema cleaning
# --------------------------------------------------------------------------

def clean_schema(schema: Any, *, openapi30: bool) -> Any:
    """Return a documentation-free, JSON-Schema-2020-12 equivalent of `schema`.

    For OpenAPI 3.0 input, `nullable: true` becomes an explicit "null" type
    (or an anyOf with {"type": "null"}) and siblings of `$ref` are dropped,
    because 3.0 says they are ignored.  Input is never mutated.
    """
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise VendorError(f"not a schema: {schema!r}")
    if openapi30 and "$ref" in schema:
        out: dict[str, Any] = {"$ref": schema["$ref"]}
    else:
        out = {}
        for key, value in schema.items():
            if key in _KEPT_VALUE_KEYWORDS:
                out[key] = copy.deepcopy(value)
            elif key in _SCHEMA_MAP_KEYWORDS:
                out[key] = {name: clean_schema(sub, openapi30=openapi30)
                            for name, sub in value.items()}
            elif key in _SCHEMA_LIST_KEYWORDS:
                out[key] = [clean_schema(sub, openapi30=openapi30) for sub in value]
            elif key in _SCHEMA_KEYWORDS:
                out[key] = clean_schema(value, openapi30=openapi30)
    if openapi30 and schema.get("nullable") is True:
        out = _make_nullable(out)
    return out


def _make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Return `schema` widened so that JSON null is also accepted."""
    if "type" in schema and "$ref" not in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        widened = dict(schema, type=types + ["null"] if "null" not in types else types)
        if "enum" in widened and None not in widened["enum"]:
            widened["enum"] = list(widened["enum"]) + [None]
        return widened
    # No `type` to widen (e.g. allOf/anyOf/$ref): wrap instead.
    return {"anyOf": [schema, {"type": "null"}]}


def iter_refs(node: Any) -> Iterable[str]:
    """Yield every `$ref` string anywhere inside `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_refs(value)


def collect_component_schemas(roots: Iterable[Any], source: dict[str, Any], *,
                              openapi30: bool) -> dict[str, Any]:
    """Return cleaned copies of every component schema reachable from `roots`.

    Walks `$ref`s transitively (recursive schemas terminate because each name
    is visited once).  Fails if a reference points outside components/schemas
    or to a missing schema, so the output can never contain a dangling `$ref`.
    """
    available = source["components"]["schemas"]
    found: dict[str, Any] = {}
    pending = [ref for root in roots for ref in iter_refs(root)]
    while pending:
        ref = pending.pop()
        if not ref.startswith(SCHEMA_REF_PREFIX):
            raise VendorError(f"unsupported $ref {ref!r}")
        name = ref[len(SCHEMA_REF_PREFIX):]
        if name in found:
            continue
        if name not in available:
            raise VendorError(f"dangling $ref {ref!r}")
        found[name] = clean_schema(available[name], openapi30=openapi30)
        pending.extend(iter_refs(found[name]))
    return {name: found[name] for name in sorted(found)}


# --------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------

def _resolve_local(spec: dict[str, Any], obj: Any) -> Any:
    """Follow non-schema `$ref`s (parameters, responses, ...) to their target."""
    seen = set()
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise VendorError(f"cannot resolve {ref!r}")
        seen.add(ref)
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        obj = target
    return obj


def _json_schema_of(spec: dict[str, Any], content: dict[str, Any] | None) -> Any:
    """Return the application/json schema of a content map, or None."""
    if not content:
        return None
    media = content.get("application/json")
    if media is None:
        # Fall back to a vendor JSON type (e.g. application/vnd.github+json).
        json_types = sorted(t for t in content if t.endswith("json"))
        media = content[json_types[0]] if json_types else None
    if media is None or "schema" not in media:
        return None
    return clean_schema(media["schema"], openapi30=True)


def build_operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """Return the vendored form of one REST operation (refs to schemas kept)."""
    path_item = spec["paths"][path]
    op = path_item[method.lower()]
    raw_params = list(path_item.get("parameters", [])) + list(op.get("parameters", []))
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in raw_params:
        param = _resolve_local(spec, raw)
        entry = {
            "name": param["name"],
            "in": param["in"],
            "required": bool(param.get("required", param["in"] == "path")),
            "schema": clean_schema(param.get("schema", {}), openapi30=True),
        }
        if param.get("x-multi-segment"):
            # GitHub marks params whose value may contain "/" (file paths, refs).
            entry["multi_segment"] = True
        # Operation-level parameters override path-level ones of the same key.
        params[(entry["in"], entry["name"])] = entry
    if param_names := {n for (where, n) in params if where == "path"}:
        template_names = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        if param_names != template_names:
            raise VendorError(f"{method} {path}: path params {param_names} != template")

    body = None
    if "requestBody" in op:
        raw_body = _resolve_local(spec, op["requestBody"])
        schema = _json_schema_of(spec, raw_body.get("content"))
        if schema is not None:
            body = {"required": bool(raw_body.get("required", False)), "schema": schema}

    responses: dict[str, Any] = {}
    for status, raw_response in op.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        response = _resolve_local(spec, raw_response)
        responses[status] = _json_schema_of(spec, response.get("content"))

    return {
        "method": method,
        "path": path,
        "operationId": op["operationId"],
        "parameters": list(params.values()),
        "requestBody": body,
        "responses": responses,
    }


def build_rest_subset(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """Return the self-contained REST subset for OPERATIONS (+ GraphQL)."""
    missing = [f"{m} {p}" for m, p in OPERATIONS
               if m.lower() not in spec["paths"].get(p, {})]
    if missing:
        raise VendorError("operations missing from the REST description: "
                          + ", ".join(missing))
    operations = [build_operation(spec, m, p) for m, p in OPERATIONS]
    if "/graphql" in spec["paths"]:
        raise VendorError("/graphql is now in the REST description; vendor it")
    operations.append(GRAPHQL_OPERATION)
    ids = [op["operationId"] for op in operations]
    if len(ids) != len(set(ids)):
        raise VendorError("duplicate operationId in OPERATIONS")
    return {
        "source": {"package": "@octokit/openapi", "version": version,
                   "file": "generated/api.github.com.json"},
        "operations": operations,
        "components": {"schemas": collect_component_schemas(operations, spec,
                                                            openapi30=True)},
    }


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------

def _webhook_key(operation_id: str, schema: dict[str, Any]) -> tuple[str, str | None]:
    """Return (event, action) for a webhook operationId like "check-run/requested-action".

    The action is cross-checked against the payload schema's `action` enum when
    the schema has a single one, so a renaming upstream fails loudly.
    """
    event, _, action = operation_id.partition("/")
    event = event.replace("-", "_")
    if not action:
        return event, None
    action = action.replace("-", "_")
    action_enum = schema.get("properties", {}).get("action", {}).get("enum")
    if action_enum is not None and action_enum != [action]:
        raise VendorError(f"webhook {operation_id}: action enum {action_enum} "
                          f"does not match {action!r}")
    return event, action


def build_webhooks_subset(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """Return {"webhooks": {"event.action": schema}, "components": ...}.

    Fails if any explicitly listed event/action is absent upstream.
    """
    selected: dict[str, Any] = {}
    for webhook in spec["webhooks"].values():
        post = webhook["post"]
        payload_schema = post["requestBody"]["content"]["application/json"]["schema"]
        target = _resolve_local(spec, payload_schema)
        event, action = _webhook_key(post["operationId"], target)
        wanted = WEBHOOK_EVENTS.get(event, ())
        if wanted is None and action is None:
            selected[event] = clean_schema(payload_schema, openapi30=False)
        elif action is not None and (wanted == ALL_ACTIONS or
                                     (isinstance(wanted, tuple) and action in wanted)):
            selected[f"{event}.{action}"] = clean_schema(payload_schema, openapi30=False)
    expected = set()
    for event, actions in WEBHOOK_EVENTS.items():
        if actions is None:
            expected.add(event)
        elif actions == ALL_ACTIONS:
            if not any(k.startswith(event + ".") for k in selected):
                raise VendorError(f"webhook event {event!r} not found")
        else:
            expected.update(f"{event}.{a}" for a in actions)
    if missing := sorted(expected - set(selected)):
        raise VendorError("webhooks missing upstream: " + ", ".join(missing))
    ordered = {key: selected[key] for key in sorted(selected)}
    return {
        "source": {"package": "@octokit/openapi-webhooks", "version": version,
                   "file": "generated/api.github.com.json"},
        "webhooks": ordered,
        "components": {"schemas": collect_component_schemas(ordered.values(), spec,
                                                            openapi30=False)},
    }


def build_examples(index: list[dict[str, Any]], webhook_keys: Iterable[str]
                   ) -> dict[str, list[dict[str, Any]]]:
    """Return {event: [payload, ...]} for the vendored event/action keys.

    Keeps at most MAX_EXAMPLES_PER_KEY payloads per event.action, in upstream
    order; examples for actions Fleet does not handle are skipped.
    """
    keys = set(webhook_keys)
    result: dict[str, list[dict[str, Any]]] = {}
    for entry in index:
        event = entry["name"]
        if event not in WEBHOOK_EVENTS:
            continue
        counts: dict[str, int] = {}
        for payload in entry["examples"]:
            action = payload.get("action")
            key = f"{event}.{action}" if action is not None else event
            if key not in keys or counts.get(key, 0) >= MAX_EXAMPLES_PER_KEY:
                continue
            counts[key] = counts.get(key, 0) + 1
            result.setdefault(event, []).append(payload)
    return dict(sorted(result.items()))


# --------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------

def dump_json(obj: Any) -> str:
    """Serialize deterministically (sorted keys, stable whitespace)."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _package_dir(node_modules: Path, name: str) -> Path:
    """Return the package directory, failing if its version is not the pinned one."""
    pkg_dir = node_modules / name
    version = _read_json(pkg_dir / "package.json")["version"]
    if version != PACKAGES[name]:
        raise VendorError(f"{name} is {version}, expected pinned {PACKAGES[name]}")
    return pkg_dir


def npm_install(prefix: Path) -> Path:
    """Install the pinned packages under `prefix`; return its node_modules."""
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    subprocess.run(["npm", "install", "--prefix", str(prefix), *specs],
                   check=True)
    return prefix / "node_modules"


def generate(node_modules: Path) -> dict[Path, str]:
    """Return {output path: file text} built from the packages in node_modules."""
    rest_dir = _package_dir(node_modules, "@octokit/openapi")
    hooks_dir = _package_dir(node_modules, "@octokit/openapi-webhooks")
    examples_dir = _package_dir(node_modules, "@octokit/webhooks-examples")

    rest = build_rest_subset(_read_json(rest_dir / "generated" / "api.github.com.json"),
                             PACKAGES["@octokit/openapi"])
    hooks = build_webhooks_subset(
        _read_json(hooks_dir / "generated" / "api.github.com.json"),
        PACKAGES["@octokit/openapi-webhooks"])
    examples = build_examples(_read_json(examples_dir / "api.github.com" / "index.json"),
                              hooks["webhooks"])
    outputs = {REST_OUT: dump_json(rest), WEBHOOKS_OUT: dump_json(hooks)}
    for event, payloads in examples.items():
        outputs[EXAMPLES_DIR / f"{event}.json"] = dump_json(payloads)
    return outputs


def write_outputs(outputs: dict[Path, str]) -> None:
    """Write every output file, creating directories as needed."""
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO_ROOT)} ({len(text.encode()) // 1024} KiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path,
                        help="existing node_modules holding the pinned @octokit packages "
                             "(default: npm install them into a temporary directory)")
    args = parser.parse_args(argv)
    try:
        if args.node_modules:
            write_outputs(generate(args.node_modules))
        else:
            with tempfile.TemporaryDirectory(prefix="fleet-specs-") as tmp:
                write_outputs(generate(npm_install(Path(tmp))))
    except VendorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
