"""The OpenAPI 3.1 document for the read API, served at ``/api/openapi.json``.

Built from small schema helpers so the shapes stay in one place; tests/test_api_schema.py runs
schemathesis against the live app with it, so a drift between this and ``app/api/views.py`` fails CI.
"""
from __future__ import annotations

import functools
from typing import Any

from app.api.params import MAX_PAGE, MAX_PER_PAGE, PG_INT_MAX, REPO_RE, TASK_STATES
from app.api.readers import EVIDENCE_COUNT_CAP
from app.deliveries import STATUSES as DELIVERY_STATUSES

Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [kind, "null"]}


def _obj(required: bool = True, **props: Schema) -> Schema:
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = sorted(props)
    return out


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
N_STR, N_INT, N_NUM, N_TIME, N_BOOL = (_nullable(s) for s in (STR, INT, NUM, TIME, BOOL))
STRS: Schema = {"type": "array", "items": STR}
TASK_STATE: Schema = {"type": "string", "enum": list(TASK_STATES)}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def _page_of(item: Schema, total: Schema = INT) -> Schema:
    return _obj(items=_array(item), page=INT, per_page=INT, total=total, next=N_STR)


EVIDENCE_TOTAL: Schema = {
    "type": "integer", "minimum": 0,
    "description": f"Items in the feed, counted up to {EVIDENCE_COUNT_CAP:,}; a larger feed reports at least "
                   "that many (`next` is exact either way). Rows older than FLEET_RETENTION_DAYS are deleted.",
}


FORECAST: dict[str, Schema] = {
    "hours_remaining": NUM,
    "velocity": _ref("Velocity"),
    "eta": N_TIME,
    "days_left": N_NUM,
    "eta_reason": N_STR,
}
TOTALS: dict[str, Schema] = {
    "tasks_total": INT, "tasks_done": INT, "hours_total": NUM, "hours_done": NUM,
    "by_state": _obj(**{s: INT for s in TASK_STATES}),
}

TASK_PROPS: dict[str, Schema] = {
    "repo": STR, "number": INT, "title": STR, "state": TASK_STATE,
    "issue_state": {"type": "string", "enum": ["open", "closed"]},
    "url": STR, "labels": STRS, "assignees": STRS, "holder": N_STR,
    "epic": _nullable(_obj(number=INT, title=N_STR)),
    "estimate_hours": N_NUM, "priority": INT, "progress": N_INT,
    "blocked_by": STRS, "pull_requests": _array(INT),
    "created_at": N_TIME, "updated_at": N_TIME, "closed_at": N_TIME,
}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(error=STR, message=STR),
    "Repo": _obj(
        full_name=STR, private=BOOL, default_branch=STR, installation_id=N_INT, account=N_STR,
        config={"type": "string", "enum": ["ok", "default", "error"]}, config_error=N_STR,
        tasks_total=INT, tasks_done=INT, synced_at=N_TIME,
    ),
    "Task": _obj(**TASK_PROPS),
    "TaskDetail": _obj(
        **{**TASK_PROPS, "pull_requests": _array(_ref("PullRequest"))},
        dependencies=_array(_obj(ref=STR, repo=N_STR, number=N_INT, title=N_STR,
                                 issue_state={"type": "string", "enum": ["open", "closed", "unknown"]},
                                 state=_nullable(TASK_STATE), source=STR)),
        dependents=_array(_obj(ref=STR, repo=STR, number=INT, title=STR, issue_state=STR)),
        claims=_array(_obj(
            agent=STR, login=STR, claimed_by=N_STR, open=BOOL, claimed_at=TIME, last_activity_at=TIME,
            lease_expires_at=TIME, warned_at=N_TIME, released_at=N_TIME, release_reason=N_STR,
            branch=N_STR, head_sha=N_STR, pr_number=N_INT, progress=N_INT, progress_note=N_STR,
        )),
        branches=_array(_obj(name=STR, head_sha=N_STR, agent=N_STR, pushed_by=N_STR, pushed_at=N_TIME,
                             deleted=BOOL)),
        evidence=_array(_ref("Action")),
    ),
    "PullRequest": _obj(
        number=INT, title=STR, url=STR, state=STR, draft=BOOL, merged=BOOL, merged_at=N_TIME, author=N_STR,
        head_ref=N_STR, head_sha=N_STR, base_ref=N_STR, mergeable=N_BOOL, mergeable_state=N_STR,
        checks=_array(_obj(name=STR, status=STR, conclusion=N_STR, app=N_STR, url=N_STR,
                           started_at=N_TIME, completed_at=N_TIME)),
        statuses=_array(_obj(context=STR, state=STR, target_url=N_STR, updated_at=N_TIME)),
        reviews=_array(_obj(reviewer=STR, state=STR, commit_id=N_STR, submitted_at=N_TIME)),
        created_at=N_TIME, updated_at=N_TIME, closed_at=N_TIME,
    ),
    "OpenClaim": _obj(
        repo=STR, number=INT, title=STR, url=STR, claimed_at=TIME, last_activity_at=TIME, lease_expires_at=TIME,
        warned=BOOL, branch=N_STR, pr_number=N_INT, progress=N_INT, progress_note=N_STR,
    ),
    "Agent": _obj(
        id=STR, login=STR, name=N_STR, type=STR, first_seen_at=TIME, last_seen_at=TIME, last_activity_at=N_TIME,
        claims_total=INT, claims_completed=INT, open_claims=_array(_ref("OpenClaim")),
    ),
    "Velocity": _obj(hours_per_day=NUM, ok=BOOL, basis=STR, snapshots=INT, **{"from": N_TIME, "to": N_TIME}),
    "RepoProgress": _obj(
        repo=STR, **TOTALS, **FORECAST,
        epics=_array(_obj(number=INT, title=STR, **TOTALS, **FORECAST)),
        burndown=_array(_obj(date={"type": "string", "format": "date"}, hours_done=NUM, hours_total=NUM,
                             hours_remaining=NUM)),
    ),
    "ProgressSummary": _obj(generated_at=TIME, totals=_obj(**TOTALS), repos=_array(_ref("RepoProgress"))),
    "AgentProgress": _obj(
        agent=STR, login=STR, name=N_STR, tasks_done=INT, hours_done=NUM, open_claims=INT,
        hours_in_progress=NUM, last_activity_at=N_TIME, **FORECAST,
    ),
    "MergeQueue": _obj(
        repo=STR, base=STR, in_flight=N_INT,
        entries=_array(_obj(
            position=INT, pr=INT, title=N_STR, author=N_STR, url=STR, tasks=_array(INT), state=STR,
            in_flight=BOOL, priority=STR, queued_by=N_STR, queued_at=TIME, started_at=N_TIME, head_sha=N_STR,
            attempts=INT, wait_seconds=INT,
        )),
    ),
    "Action": _obj(
        kind={"const": "action"}, id=STR, at=TIME, repo=N_STR, action=STR, target=N_STR, outcome=STR,
        status_code=N_INT, delivery_id=N_STR, job_id=N_STR, detail={"type": "object"},
    ),
    "Delivery": _obj(
        kind={"const": "delivery"}, id=STR, at=TIME, repo=N_STR, event=STR, action=N_STR, outcome=STR,
        attempts=INT, error=N_STR, started_at=N_TIME, processed_at=N_TIME,
    ),
    "StoredDelivery": _obj(
        id=STR, repo=N_STR, event=STR, action=N_STR, status={"type": "string", "enum": list(DELIVERY_STATUSES)},
        attempts=INT, error=N_STR, received_at=TIME, started_at=N_TIME, processed_at=N_TIME, parked_at=N_TIME,
    ),
}

REPO_PARAM = {
    "name": "repo", "in": "query", "required": False, "description": "OWNER/NAME",
    "schema": {"type": "string", "pattern": REPO_RE.pattern, "maxLength": 140},
}
PAGE_PARAMS = [
    {"name": "page", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
    {"name": "per_page", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 30}},
]


def _text_param(name: str, description: str, max_len: int = 200) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": r"^[^\x00-\x1f]+$"}}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _ref("Error")
AUTH_ERRORS = {
    "401": _json(ERROR, "FLEET_API_TOKEN is set and the bearer token is missing or wrong"),
    "403": _json(ERROR, "No FLEET_API_TOKEN is set and the request is not direct loopback "
                        "(loopback peer, Host localhost/127.0.0.1/[::1], no proxy header)"),
}
BAD_REQUEST = {"400": _json(ERROR, "Unknown, repeated or malformed query parameter")}
NOT_FOUND = {"404": _json(ERROR, "Unknown (or, unauthenticated, private) repository or task")}


def _get(summary: str, ok: Schema, params: list[dict[str, Any]] | None = None,
         not_found: bool = False, op_id: str = "") -> dict[str, Any]:
    responses = {"200": _json(ok, "OK"), **BAD_REQUEST, **AUTH_ERRORS}
    if not_found:
        responses.update(NOT_FOUND)
    return {"get": {"operationId": op_id, "summary": summary, "parameters": params or [],
                    "responses": responses, "security": [{"bearer": []}, {}]}}


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The whole document (built once per process)."""
    task_filters = [
        REPO_PARAM,
        {"name": "state", "in": "query", "required": False, "schema": TASK_STATE},
        _text_param("epic", "milestone title or number"),
        _text_param("holder", "agent id (login or login:name) or login holding the claim", 80),
        _text_param("label", "a label the task carries (case-insensitive)"),
        *PAGE_PARAMS,
    ]
    paths = {
        "/api/repos": _get("Repositories Fleet serves", _obj(repos=_array(_ref("Repo"))), op_id="listRepos"),
        "/api/tasks": _get("Tasks with their Fleet state", _page_of(_ref("Task")), task_filters, True, "listTasks"),
        "/api/tasks/ready": _get(
            "Ready tasks in hand-out order", _page_of(_ref("Task")),
            [REPO_PARAM, task_filters[2], task_filters[4], *PAGE_PARAMS], True, "listReadyTasks"),
        "/api/tasks/{owner}/{name}/{number}": _get(
            "One task with dependencies, claims, branches, pull requests, checks and evidence",
            _ref("TaskDetail"),
            [
                {"name": "owner", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 39}},
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}},
                {"name": "number", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": PG_INT_MAX}},
            ],
            True, "getTask"),
        "/api/agents": _get("Agents, open claims and last activity", _obj(agents=_array(_ref("Agent"))),
                            op_id="listAgents"),
        "/api/progress/summary": _get("Hours, velocity, ETA and burndown per repository and epic",
                                      _ref("ProgressSummary"), [REPO_PARAM], True, "progressSummary"),
        "/api/progress/agents": _get("Hours, velocity and ETA per agent",
                                     _obj(generated_at=TIME, agents=_array(_ref("AgentProgress"))),
                                     op_id="progressAgents"),
        "/api/merge-queue": _get("Merge queues per repository and base branch, in merge order",
                                 _obj(queues=_array(_ref("MergeQueue"))),
                                 [REPO_PARAM, _text_param("base", "base branch", 255)], True, "mergeQueue"),
        "/api/evidence": _get(
            "Webhook deliveries and Fleet's actions on GitHub, newest first",
            _page_of({"oneOf": [_ref("Action"), _ref("Delivery")]}, EVIDENCE_TOTAL),
            [REPO_PARAM, {"name": "kind", "in": "query", "required": False,
                          "schema": {"type": "string", "enum": ["delivery", "action"]}}, *PAGE_PARAMS],
            True, "listEvidence"),
        "/api/deliveries": _get(
            "Stored webhook deliveries, newest first; `status=parked` lists the ones Fleet gave up on",
            _page_of(_ref("StoredDelivery")),
            [REPO_PARAM, {"name": "status", "in": "query", "required": False,
                          "schema": {"type": "string", "enum": list(DELIVERY_STATUSES)}}, *PAGE_PARAMS],
            True, "listDeliveries"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fleet read API",
            "version": "1",
            "description": "Read-only view of Fleet's state. Times are ISO-8601 UTC. Send "
                           "`Authorization: Bearer $FLEET_API_TOKEN`; without a configured token only "
                           "loopback clients are served and private repositories are left out.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
