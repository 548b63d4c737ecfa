"""The read-only JSON API under ``/api`` (described by ``/api/openapi.json``).

Agents and people change things through GitHub; this API only shows Fleet's view of it. Every
response is JSON with ISO-8601 UTC times (``2026-01-02T03:04:05Z``); errors are
``{"error": CODE, "message": TEXT}`` with a 4xx status, never a 500 for bad input.

The response bodies come from ``readers.py`` (shared with the dashboard), the parameters from
``params.py``; the views here only check access and wire the two together.
"""
from __future__ import annotations

import psycopg
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from app import deliveries
from app.api.auth import authenticated, guard
from app.api.params import (
    ApiError, PAGING, PG_INT_MAX, REPO_RE, TASK_STATES, _choice, _repo_param, _text,
    error_response, paginate, parse_params,
)
from app.api.readers import (
    load_tasks, read_agents, read_deliveries, read_evidence, read_merge_queue,
    read_progress_agents, read_progress_summary, read_repos, read_task_detail, ready_order,
    require_repo,
)


bp = Blueprint("api", __name__, url_prefix="/api")


# --- access and connections ----------------------------------------------------------------------


guard(bp)


def _conn():
    return current_app.config["FLEET_POOL"].connection(timeout=5)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


@bp.errorhandler(psycopg.OperationalError)
def _db_unavailable(exc: Exception) -> Response:
    return error_response(503, "unavailable", "the database is unavailable; try again shortly")


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response | HTTPException:
    """JSON instead of HTML for errors under /api (unknown paths, wrong methods)."""
    if not request.path.startswith("/api/") and request.path != "/api":
        return exc
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 500, "http_error")
    response = error_response(exc.code or 500, code, exc.description or code)
    if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


# --- views ---------------------------------------------------------------------------------------


def _auth() -> bool:
    return authenticated()


@bp.get("/repos")
def repos() -> Response:
    """Repositories Fleet serves (private ones only to authenticated callers)."""
    parse_params({})
    with _conn() as conn:
        return jsonify({"repos": read_repos(conn, _auth())})


TASK_FILTERS = {
    "repo": _repo_param, "state": _choice(*TASK_STATES), "epic": _text(), "holder": _text(80),
    "label": _text(), **PAGING,
}


@bp.get("/tasks")
def tasks() -> Response:
    """Tasks with their Fleet state, filtered and paginated."""
    params = parse_params(TASK_FILTERS)
    filters = {k: params[k] for k in ("repo", "state", "epic", "holder", "label") if k in params}
    with _conn() as conn:
        if "repo" in filters:
            filters["repo"] = require_repo(conn, _auth(), filters["repo"])
        return jsonify(paginate(load_tasks(conn, _auth(), **filters), params))


@bp.get("/tasks/ready")
def ready_tasks() -> Response:
    """Ready tasks in the order ``/next`` hands them out."""
    params = parse_params({"repo": _repo_param, "epic": _text(), "label": _text(), **PAGING})
    filters = {k: params[k] for k in ("repo", "epic", "label") if k in params}
    with _conn() as conn:
        if "repo" in filters:
            filters["repo"] = require_repo(conn, _auth(), filters["repo"])
        return jsonify(paginate(ready_order(load_tasks(conn, _auth(), state="ready", **filters)), params))


@bp.get("/tasks/<owner>/<name>/<int:number>")
def task_detail(owner: str, name: str, number: int) -> Response:
    """One task: dependencies, claims history, branches, pull requests with checks, evidence."""
    parse_params({})
    repo = f"{owner}/{name}"
    if not REPO_RE.match(repo) or not 1 <= number <= PG_INT_MAX:
        raise ApiError(404, "not_found", f"no task {repo}#{number} is known to Fleet")
    with _conn() as conn:
        return jsonify(read_task_detail(conn, _auth(), repo, number))


@bp.get("/agents")
def agents() -> Response:
    """Agents with their open claims and last activity."""
    parse_params({})
    with _conn() as conn:
        return jsonify({"agents": read_agents(conn, _auth())})


@bp.get("/progress/summary")
def progress_summary() -> Response:
    """Hours done/total, velocity and ETA per repository and epic, and a 30-day burndown."""
    params = parse_params({"repo": _repo_param})
    with _conn() as conn:
        repo = require_repo(conn, _auth(), params["repo"]) if "repo" in params else None
        return jsonify(read_progress_summary(conn, _auth(), repo))


@bp.get("/progress/agents")
def progress_agents() -> Response:
    """Per-agent hours done and in progress, velocity and ETA."""
    parse_params({})
    with _conn() as conn:
        return jsonify(read_progress_agents(conn, _auth()))


@bp.get("/merge-queue")
def merge_queue() -> Response:
    """Merge queues per repository and base branch, entries in merge order."""
    params = parse_params({"repo": _repo_param, "base": _text(255)})
    with _conn() as conn:
        repo = require_repo(conn, _auth(), params["repo"]) if "repo" in params else None
        return jsonify({"queues": read_merge_queue(conn, _auth(), repo, params.get("base"))})


@bp.get("/evidence")
def evidence() -> Response:
    """Webhook deliveries and actions Fleet took on GitHub, newest first, paginated."""
    params = parse_params({"repo": _repo_param, "kind": _choice("delivery", "action"), **PAGING})
    with _conn() as conn:
        if "repo" in params:
            params["repo"] = require_repo(conn, _auth(), params["repo"])
        return jsonify(read_evidence(conn, _auth(), params))


@bp.get("/deliveries")
def stored_deliveries() -> Response:
    """Stored webhook deliveries by status (``?status=parked``: the ones Fleet gave up on)."""
    params = parse_params({"repo": _repo_param, "status": _choice(*deliveries.STATUSES), **PAGING})
    with _conn() as conn:
        if "repo" in params:
            params["repo"] = require_repo(conn, _auth(), params["repo"])
        return jsonify(read_deliveries(conn, _auth(), params))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    from app.api.openapi import openapi_document

    return jsonify(openapi_document())
