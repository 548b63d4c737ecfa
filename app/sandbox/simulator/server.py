"""Flask app factory: request pipeline (faults, auth, OpenAPI validation, rate limits, logging)."""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass

from flask import Flask, g, request

from .auth import Identity, identify
from .errors import ApiError
from .http import SIM_KEY, respond

RATE_WINDOW = 3600


@dataclass
class RequestRecord:
    """One REST call as seen by the simulator (``sim.requests``)."""

    method: str
    path: str
    status: int
    identity: str
    timestamp: float
    operation_id: str | None = None
    query: str = ""


@dataclass
class Violation:
    """A request (or response) that broke the official OpenAPI description."""

    method: str
    path: str
    errors: list
    operation_id: str | None = None


def create_app(sim):
    """A WSGI app serving ``sim`` (GitHub REST + GraphQL + /_sim control endpoints).

    One Flask app is shared by every simulator in the process (building its URL map
    costs ~0.1 s); each simulator's wrapper tells it which state to use.
    """
    flask_app = _flask_app()

    def wsgi(environ, start_response):
        environ[SIM_KEY] = sim
        return flask_app(environ, start_response)
    return wsgi


@functools.lru_cache(maxsize=1)
def _flask_app() -> Flask:
    from . import (routes_app, routes_compare, routes_control, routes_graphql, routes_issues, routes_pulls,
                   routes_repo)
    app = Flask("github-simulator")
    for module in (routes_app, routes_issues, routes_pulls, routes_repo, routes_compare, routes_graphql,
                   routes_control):
        app.register_blueprint(module.bp)
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(ApiError, lambda e: respond(e.body(), e.status, e.headers))
    not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
    app.register_error_handler(404, lambda e: respond(not_found, 404))
    app.register_error_handler(405, lambda e: respond(not_found, 404))
    return app


def _is_control() -> bool:
    return request.path.startswith("/_sim")


def _before():
    g.start = time.time()
    g.identity = Identity("anonymous")
    g.operation_id = None
    g.rate = None
    if _is_control():
        return None
    sim = _sim()
    for fault in sim.faults.take_rest(request.method, request.path):
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault.kind == "fail":
            raise ApiError(fault.status, "Server Error" if fault.status >= 500 else "Injected fault")
        elif fault.kind == "rate_limit":
            reset = int(time.time()) + fault.retry_after
            raise ApiError(403, "API rate limit exceeded (simulated).", headers={
                "retry-after": str(fault.retry_after), "x-ratelimit-limit": str(sim.rate_limit),
                "x-ratelimit-remaining": "0", "x-ratelimit-used": str(sim.rate_limit),
                "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"})
    app_path = request.path == "/app" or request.path.startswith("/app/")
    try:
        with sim.world.lock:
            g.identity = identify(sim.world, request.headers.get("Authorization"), sim.public_key,
                                  app_only=app_path)
        if app_path and g.identity.kind != "app":
            raise ApiError(401, "A JSON web token could not be decoded")
    except ApiError:
        g.identity = Identity("anonymous")
        _count_rate(sim)  # failed authentication spends the caller's unauthenticated budget
        raise
    _validate(sim)
    _count_rate(sim)
    return None


def _sim():
    return request.environ[SIM_KEY]


def _validate(sim) -> None:
    validator = sim.request_validator
    if validator is None:
        return
    raw_path = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
    raw_path = raw_path.split("?", 1)[0]
    result = validator.validate(request.method, raw_path, request.args.to_dict(flat=False),
                                request.get_data() or None, request.content_type)
    g.operation_id = result.operation_id
    if result.errors:
        sim.violations.append(Violation(request.method, request.full_path.rstrip("?"), list(result.errors),
                                        result.operation_id))
        status = result.status or 422
        message = "Not Found" if status == 404 else "Invalid request.\n\n" + "\n".join(result.errors)
        raise ApiError(status, message)


def _rate_key() -> tuple:
    ident = g.identity
    resource = "graphql" if request.path == "/graphql" else "core"
    if ident.kind == "installation":
        return resource, f"installation:{ident.installation.id}"
    if ident.kind == "user":
        return resource, f"user:{ident.user.login}"
    return resource, ident.kind if ident.kind == "app" else f"ip:{request.remote_addr}"


def _count_rate(sim) -> None:
    """Spend one request from the caller's hourly budget; 403 when it is exhausted."""
    resource, key = _rate_key()
    limit = 60 if key.startswith("ip:") else sim.rate_limit  # GitHub's unauthenticated budget
    with sim.world.lock:
        reset, used = sim.rate_state.get((resource, key), (0, 0))
        now = time.time()
        if now >= reset:
            reset, used = int(now) + RATE_WINDOW, 0
        used += 1
        sim.rate_state[(resource, key)] = (reset, used)
    g.rate = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - used)),
              "x-ratelimit-reset": str(reset), "x-ratelimit-used": str(used), "x-ratelimit-resource": resource}
    if used > limit:
        raise ApiError(403, f"API rate limit exceeded for {key}.", headers=dict(g.rate))
    if request.method != "GET" and not request.path.startswith("/app/"):
        _count_write(sim, key)


SECONDARY = ((60, 80), (3600, 500))  # GitHub's content-creating requests per minute / per hour


def _count_write(sim, key: str) -> None:
    """Track writes per caller; over ``sim.secondary_limits`` (GitHub's 80/min, 500/h unless a run
    shrinks them) is a secondary-limit hit (403 when enforced)."""
    now = time.time()
    with sim.world.lock:
        stamps = [t for t in sim.write_log.get(key, []) if now - t < 3600]
        stamps.append(now)
        sim.write_log[key] = stamps
        over = any(sum(1 for t in stamps if now - t < window) > cap for window, cap in sim.secondary_limits)
        if over:
            sim.secondary_limit_hits.append((key, request.method, request.path, now))
    if over and sim.enforce_secondary_limits:
        raise ApiError(403, "You have exceeded a secondary rate limit. Please wait a few minutes before "
                            "you try again.", headers={"retry-after": "60", **g.rate})


def _after(resp):
    if _is_control():
        return resp
    sim = _sim()
    if g.get("rate"):
        for k, v in g.rate.items():
            resp.headers.setdefault(k, v)
    _conditional(sim, resp)
    resp.headers.setdefault("X-GitHub-Request-Id", f"SIM:{len(sim.requests) + 1}")
    resp.headers.setdefault("X-GitHub-Api-Version-Selected", "2022-11-28")
    ident = g.get("identity")
    sim.requests.append(RequestRecord(request.method, request.path, resp.status_code,
                                      ident.label if ident else "anonymous", g.get("start", time.time()),
                                      g.get("operation_id"), request.query_string.decode()))
    _check_response(sim, resp)
    return resp


def _conditional(sim, resp) -> None:
    """ETag on successful GETs; a matching If-None-Match gets 304, which (as on GitHub)
    does not count against the rate limit."""
    if request.method != "GET" or resp.status_code != 200 or not g.get("rate"):
        return
    etag = '"' + hashlib.sha1(resp.get_data()).hexdigest() + '"'
    resp.headers["ETag"] = etag
    if etag not in request.headers.get("If-None-Match", ""):
        return
    resp.status_code = 304
    resp.set_data(b"")
    with sim.world.lock:
        key = (g.rate["x-ratelimit-resource"], _rate_key()[1])
        reset, used = sim.rate_state[key]
        sim.rate_state[key] = (reset, used - 1)
    limit = int(g.rate["x-ratelimit-limit"])
    g.rate.update({"x-ratelimit-used": str(used - 1), "x-ratelimit-remaining": str(max(0, limit - used + 1))})
    for k, v in g.rate.items():
        resp.headers[k] = v


def _check_response(sim, resp) -> None:
    """Optionally check our own 2xx bodies against the official response schemas."""
    if not sim.validate_responses or not g.get("operation_id") or not 200 <= resp.status_code < 300:
        return
    if g.operation_id == "graphql":
        return
    errors = sim.request_validator.validate_response(g.operation_id, resp.status_code, resp.get_data())
    if errors:
        sim.response_violations.append(Violation(request.method, request.path, errors, g.operation_id))
