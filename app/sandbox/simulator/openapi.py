"""Validate simulated GitHub traffic against GitHub's official OpenAPI description.

The schemas come from the vendored, self-contained subsets in ``specs/``
(produced by ``scripts/vendor_github_specs.py``); this module never touches
the network or the npm packages.

* :class:`RequestValidator` checks an incoming REST/GraphQL request (path,
  method, path/query parameters, JSON body) and checks the simulator's own
  2xx responses (:meth:`RequestValidator.validate_response`).
* :class:`WebhookValidator` checks a webhook payload for an event/action.

Both are loaded once per process (``load()`` is cached) and compile their
JSON-Schema validators once, so a typical request validates in microseconds.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, unquote

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

SPECS_DIR = Path(__file__).resolve().parent / "specs"
REST_SPEC_FILE = SPECS_DIR / "github-rest-subset.json"
WEBHOOKS_SPEC_FILE = SPECS_DIR / "github-webhooks-subset.json"


# Long instance reprs (whole payloads) make error lists unreadable.
_MAX_MESSAGE = 300
_INTEGER_RE = re.compile(r"[+-]?\d+")
_JSON_MEDIA_RE = re.compile(r"^application/([\w.+-]+\+)?json$")


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------

def _compiler(document: dict[str, Any]):
    """Return f(schema) -> compiled Draft 2020-12 validator for a sub-schema of document.

    The document's `components` are attached to each compiled root (shared,
    not copied) so `#/components/schemas/...` references resolve without an
    extra registry hop; unknown keywords like `components` are ignored by
    JSON Schema, so this does not change what the schema accepts.
    """
    components = document.get("components", {})

    def compile_schema(schema: Any) -> jsonschema.Draft202012Validator:
        root = dict(schema, components=components) if isinstance(schema, dict) else schema
        return jsonschema.Draft202012Validator(root)

    return compile_schema


def _location(prefix: str, error: ValidationError) -> str:
    """Return a readable location like ``body.labels[0]`` for an error."""
    out = prefix
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _schema_errors(validator: jsonschema.Draft202012Validator, instance: Any,
                   prefix: str) -> list[str]:
    """Return one readable message per schema violation, each naming its location.

    For anyOf/oneOf failures the closest sub-error is appended, because the
    top-level message alone ("... is not valid under any of the given
    schemas") does not say which field is wrong.
    """
    messages = []
    # Sort by location for stable output; str() because paths mix ints and keys.
    for error in sorted(validator.iter_errors(instance),
                        key=lambda e: [str(part) for part in e.path]):
        message = f"{_location(prefix, error)}: {_shorten(error.message)}"
        if error.context:
            closest = best_match(error.context)
            message += (f" (closest match failed at {_location(prefix, closest)}: "
                        f"{_shorten(closest.message)})")
        messages.append(message)
    return messages


# --------------------------------------------------------------------------
# REST requests
# --------------------------------------------------------------------------

@dataclass
class ValidationResult:
    """Outcome of validating one request; `errors` empty means valid.

    `kind` classifies the first problem ("unknown_path", "method_not_allowed",
    "invalid_parameter", "invalid_json", "invalid_body") so the simulator can
    choose a status (see `status`); `query_params` holds query values coerced to their schema types and `body`
    the parsed JSON body (None when absent).
    """

    operation_id: str | None
    path_params: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    kind: str | None = None
    template: str | None = None
    query_params: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def status(self) -> int | None:
        """The HTTP status GitHub would answer with for this problem (None if ok)."""
        return {"unknown_path": 404, "method_not_allowed": 405,
                "invalid_parameter": 422, "invalid_json": 400,
                "invalid_body": 422}.get(self.kind or "")

    def _fail(self, kind: str, messages: Iterable[str]) -> None:
        messages = list(messages)
        if messages:
            self.errors.extend(messages)
            self.kind = self.kind or kind


@dataclass
class _Param:
    name: str
    location: str
    required: bool
    schema: dict[str, Any]
    validator: jsonschema.Draft202012Validator | None
    multi_segment: bool = False


@dataclass
class _Operation:
    operation_id: str
    method: str
    template: str
    params: list[_Param]
    body_required: bool
    body_validator: jsonschema.Draft202012Validator | None
    response_validators: dict[str, jsonschema.Draft202012Validator | None]


@dataclass
class _Route:
    """One path template and the operations (by method) it serves."""

    template: str
    regex: re.Pattern[str]
    specificity: tuple[int, ...]
    operations: dict[str, _Operation] = field(default_factory=dict)


def _route_regex(template: str, multi_segment: set[str]) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """Compile a path template; return (regex, specificity key).

    Params match one segment unless GitHub flags them multi-segment (file
    paths, git refs), in which case they may span slashes.  The specificity key
    ranks literal segments above single-segment params above multi-segment
    ones, left to right, so /issues/comments/{id} beats /issues/{number}.
    """
    parts, rank = [], []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if name in multi_segment:
                parts.append(f"(?P<{name}>.+)")
                rank.append(0)
            else:
                parts.append(f"(?P<{name}>[^/]+)")
                rank.append(1)
        else:
            parts.append(re.escape(segment))
            rank.append(2)
    return re.compile("/" + "/".join(parts)), tuple(rank)


def _coerce(raw: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Convert a query/path string to the type its schema declares.

    Returns (value, None) on success or (raw, reason) when the string cannot
    be the declared type.  Schemas without a type accept the raw string.
    """
    declared = schema.get("type", "string")
    types = declared if isinstance(declared, list) else [declared]
    if "integer" in types and _INTEGER_RE.fullmatch(raw):
        return int(raw), None
    if "number" in types:
        try:
            return float(raw), None
        except ValueError:
            pass
    if "boolean" in types and raw in ("true", "false"):
        return raw == "true", None
    if "string" in types:
        return raw, None
    wanted = " or ".join(t for t in types if t != "null")
    return raw, f"{raw!r} is not a valid {wanted}"


def _normalize_query(query: Any) -> dict[str, list[str]]:
    """Return `query` as {name: [values]} whatever its shape.

    Accepts dict[str, str], dict[str, list[str]] and werkzeug's MultiDict
    (whose plain indexing would hide repeated values).
    """
    if not query:
        return {}
    if hasattr(query, "getlist"):
        return {key: [str(v) for v in query.getlist(key)] for key in query.keys()}
    return {key: [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            for key, value in query.items()}


def _query_values(query: dict[str, list[str]], name: str) -> list[str]:
    """Return every value given for `name`, including the `name[]` spelling."""
    return query.get(name, []) + query.get(name + "[]", [])


class RequestValidator:
    """Validates requests against the vendored GitHub REST subset."""

    def __init__(self, document: dict[str, Any]):
        """Build routes and compile every schema of `document` once."""
        compile_schema = _compiler(document)
        self._operations: dict[str, _Operation] = {}
        routes: dict[str, _Route] = {}
        for raw in document["operations"]:
            op = self._build_operation(raw, compile_schema)
            self._operations[op.operation_id] = op
            if raw["path"] not in routes:
                multi = {p.name for p in op.params if p.location == "path" and p.multi_segment}
                regex, rank = _route_regex(raw["path"], multi)
                routes[raw["path"]] = _Route(raw["path"], regex, rank)
            routes[raw["path"]].operations[op.method] = op
        # Most specific first; the first matching route that serves the method wins.
        ordered = sorted(routes.values(), key=lambda r: r.specificity, reverse=True)
        # Index by first segment so a request only scans plausible templates.
        self._routes_by_head: dict[str, list[_Route]] = {}
        for route in ordered:
            head = route.template.strip("/").split("/")[0]
            self._routes_by_head.setdefault(head, []).append(route)

    @staticmethod
    def _build_operation(raw: dict[str, Any], compile_schema) -> _Operation:
        """Compile the validators of one vendored operation."""
        params = [
            _Param(name=p["name"], location=p["in"], required=p["required"],
                   schema=p["schema"],
                   # Type-only schemas are fully enforced by _coerce already.
                   validator=(None if set(p["schema"]) <= {"type", "format"}
                              else compile_schema(p["schema"])),
                   multi_segment=p.get("multi_segment", False))
            for p in raw["parameters"]
        ]
        body = raw.get("requestBody")
        responses = {
            status: None if schema is None else compile_schema(schema)
            for status, schema in raw["responses"].items()
        }
        return _Operation(
            operation_id=raw["operationId"], method=raw["method"].upper(),
            template=raw["path"], params=params,
            body_required=bool(body and body["required"]),
            body_validator=compile_schema(body["schema"]) if body else None,
            response_validators=responses,
        )

    @classmethod
    def load(cls) -> "RequestValidator":
        """Return the process-wide validator for the committed REST subset."""
        return _load_request_validator()

    @property
    def operation_ids(self) -> list[str]:
        """Every operationId this validator knows."""
        return list(self._operations)

    def validate(self, method: str, path: str,
                 query: Mapping[str, list[str]] | Mapping[str, str] | None = None,
                 body: bytes | None = None,
                 content_type: str | None = None) -> ValidationResult:
        """Validate one request; never raises for bad input, reports it instead.

        `path` is the raw (still percent-encoded) URL path; a ``?query`` suffix
        is parsed and merged into `query`.  Unknown query parameters are
        ignored, as GitHub ignores them.
        """
        method = method.upper()
        query = _normalize_query(query)
        if "?" in path:
            path, _, raw_query = path.partition("?")
            for key, values in parse_qs(raw_query, keep_blank_values=True).items():
                query.setdefault(key, values)

        result = ValidationResult(operation_id=None)
        operation, match = self._route(method, path, result)
        if operation is None:
            return result
        result.operation_id = operation.operation_id
        result.template = operation.template
        result.path_params = {k: unquote(v) for k, v in match.groupdict().items()}
        self._check_params(operation, result, query)
        self._check_body(operation, result, body, content_type)
        return result

    def _route(self, method: str, path: str, result: ValidationResult):
        """Return (operation, match) for the request, or record why there is none."""
        head = path.strip("/").split("/")[0]
        allowed_at: _Route | None = None
        for route in self._routes_by_head.get(head, ()):
            match = route.regex.fullmatch(path)
            if match is None:
                continue
            if method in route.operations:
                return route.operations[method], match
            allowed_at = allowed_at or route
        if allowed_at is not None:
            allowed = ", ".join(sorted(allowed_at.operations))
            result._fail("method_not_allowed",
                         [f"method {method} not allowed for {allowed_at.template} "
                          f"(allowed: {allowed})"])
        else:
            result._fail("unknown_path", [f"no GitHub operation matches path {path!r}"])
        return None, None

    def _check_params(self, operation: _Operation, result: ValidationResult,
                      query: dict[str, list[str]]) -> None:
        """Check path and query parameters: presence, type, enum and bounds."""
        for param in operation.params:
            if param.location == "path":
                raws = [result.path_params[param.name]]
            elif param.location == "query":
                raws = _query_values(query, param.name)
            else:
                continue  # header params: none in the vendored subset need checks
            label = f"{param.location} parameter {param.name!r}"
            if not raws:
                if param.required:
                    result._fail("invalid_parameter", [f"{label} is required"])
                continue
            if param.schema.get("type") == "array":
                items = param.schema.get("items", {})
                coerced = [_coerce(raw, items) for raw in raws]
                value: Any = [v for v, _ in coerced]
                problems = [problem for _, problem in coerced if problem]
            else:
                value, problem = _coerce(raws[0], param.schema)
                problems = [problem] if problem else []
            if problems:
                result._fail("invalid_parameter", [f"{label}: {p}" for p in problems])
                continue
            if param.validator is not None:
                result._fail("invalid_parameter",
                             _schema_errors(param.validator, value, label))
            if param.location == "query":
                result.query_params[param.name] = value

    def _check_body(self, operation: _Operation, result: ValidationResult,
                    body: bytes | None, content_type: str | None) -> None:
        """Check the JSON request body (presence, media type, syntax, schema)."""
        if operation.body_validator is None:
            return  # GitHub ignores bodies on operations that take none
        if body is None or not body.strip():
            if operation.body_required:
                result._fail("invalid_body", ["request body is required"])
            return
        media = (content_type or "").split(";")[0].strip().lower()
        if media and not _JSON_MEDIA_RE.match(media):
            result._fail("invalid_body",
                         [f"unsupported content type {media!r}; expected application/json"])
            return
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            result._fail("invalid_json", [f"request body is not valid JSON: {exc}"])
            return
        result.body = parsed
        result._fail("invalid_body", _schema_errors(operation.body_validator, parsed, "body"))

    def validate_response(self, operation_id: str, status: int, payload: Any) -> list[str]:
        """Check a success response of `operation_id` against the vendored schema.

        `payload` is the parsed JSON (or raw bytes, which are parsed; None or
        b"" for an empty body).  Non-2xx statuses are not vendored and always
        pass; an undocumented 2xx status is an error.
        """
        operation = self._operations.get(operation_id)
        if operation is None:
            return [f"unknown operationId {operation_id!r}"]
        if not 200 <= int(status) < 300:
            return []
        key = str(int(status))
        if key not in operation.response_validators:
            documented = ", ".join(sorted(operation.response_validators)) or "none"
            return [f"status {key} is not a documented success status of "
                    f"{operation_id} (documented: {documented})"]
        if isinstance(payload, (bytes, bytearray)):
            if not payload.strip():
                payload = None
            else:
                try:
                    payload = json.loads(payload)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    return [f"response body is not valid JSON: {exc}"]
        validator = operation.response_validators[key]
        if validator is None:
            return [] if payload is None else [
                f"status {key} of {operation_id} has no body, got {type(payload).__name__}"]
        if payload is None:
            return [f"status {key} of {operation_id} requires a JSON body"]
        return _schema_errors(validator, payload, "response")


@functools.cache
def _load_request_validator() -> RequestValidator:
    with REST_SPEC_FILE.open(encoding="utf-8") as handle:
        return RequestValidator(json.load(handle))


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------

class WebhookValidator:
    """Validates webhook payloads against the vendored webhook subset."""

    def __init__(self, document: dict[str, Any]):
        """Compile one validator per "event.action" (or "event") key."""
        compile_schema = _compiler(document)
        self._validators = {key: compile_schema(schema)
                            for key, schema in document["webhooks"].items()}

    @classmethod
    def load(cls) -> "WebhookValidator":
        """Return the process-wide validator for the committed webhook subset."""
        return _load_webhook_validator()

    @property
    def keys(self) -> list[str]:
        """Every supported "event.action" / "event" key."""
        return list(self._validators)

    @staticmethod
    def key_for(event: str, payload: Mapping[str, Any]) -> str:
        """Return the schema key for a delivery: "event.action" or just "event"."""
        action = payload.get("action") if isinstance(payload, Mapping) else None
        return f"{event}.{action}" if action is not None else event

    def validate(self, event: str, payload: dict[str, Any]) -> list[str]:
        """Return schema violations of `payload` for `event` (empty = valid).

        The payload's `action` picks the schema; an event/action Fleet did
        not vendor is reported as an error, not silently accepted.
        """
        key = self.key_for(event, payload)
        validator = self._validators.get(key)
        if validator is None:
            return [f"unknown webhook event/action {key!r}"]
        return _schema_errors(validator, payload, "payload")


@functools.cache
def _load_webhook_validator() -> WebhookValidator:
    with WEBHOOKS_SPEC_FILE.open(encoding="utf-8") as handle:
        return WebhookValidator(json.load(handle))
