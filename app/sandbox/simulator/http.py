"""Small helpers shared by the route modules: JSON, pagination, request context."""
from __future__ import annotations

import functools
import json
from urllib.parse import urlencode

from flask import Response, g, request

from .errors import ApiError, validation
from .state import Repo, User

SIM_KEY = "github_simulator.sim"  # WSGI environ key holding the Simulator of a request
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def sim():
    """The Simulator serving the current request."""
    return request.environ[SIM_KEY]


def world():
    """The World behind the current request."""
    return sim().world


def respond(data, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response (``data`` None gives an empty body, e.g. for 204)."""
    body = "" if data is None else json.dumps(data)
    resp = Response(body, status=status, mimetype="application/json" if data is not None else None)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def body() -> dict:
    """The request's JSON body (an empty dict when absent); 400 on malformed JSON."""
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Problems parsing JSON")
    if not isinstance(data, (dict, list)):
        raise ApiError(400, "Problems parsing JSON")
    return data


def actor() -> User:
    """The user the caller acts as; 401 when unauthenticated."""
    ident = g.identity
    if ident.user is None:
        raise ApiError(401, "Requires authentication")
    return ident.user


def require(r: Repo, role: str = "read") -> None:
    """Check the caller's role on ``r``; 404 for unseen private repos, 403 otherwise."""
    ident = g.identity
    order = ["none", "read", "triage", "write", "maintain", "admin"]
    if ident.kind == "installation":
        if r.full_name not in ident.installation.repos:
            raise ApiError(404, "Not Found")
        perm = "write"
    elif ident.user is None:
        perm = "none" if r.private else "read"
    else:
        perm = world().permission(r, ident.user.login)
    if order.index(perm) < order.index("read"):
        raise ApiError(404, "Not Found")
    if r.archived and request.method not in ("GET", "HEAD"):
        # An archived repository is read-only for everyone, Apps included.
        raise ApiError(403, "Repository was archived so is read-only.")
    if order.index(perm) < order.index(role):
        if ident.user is None:
            raise ApiError(401, "Requires authentication")
        msg = "Resource not accessible by integration" if ident.kind == "installation" else \
            "Must have push access to repository"
        raise ApiError(403, msg)


def locked(fn):
    """Run a view under the world lock, so each request is atomic."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with world().lock:
            return fn(*args, **kwargs)
    return wrapper


def int_arg(name: str, default: int) -> int:
    """An integer query parameter; 422 on junk."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise validation("Request", name, "invalid")


def page_of(items: list) -> tuple[list, dict]:
    """Slice ``items`` by ``page``/``per_page``; returns (chunk, headers with GitHub's Link)."""
    per_page = max(1, min(int_arg("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE))
    page = max(1, int_arg("page", 1))
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    links = []
    if page > 1:
        links += [(page - 1, "prev"), (1, "first")]
    if page < last:
        links += [(page + 1, "next"), (last, "last")]
    headers = {"Link": ", ".join(f'<{page_url(n)}>; rel="{rel}"' for n, rel in links)} if links else {}
    return chunk, headers


def paginate(items: list, transform=lambda x: x) -> Response:
    """A JSON array response of one page of ``items`` with the Link header."""
    chunk, headers = page_of(items)
    return respond([transform(x) for x in chunk], 200, headers)


def page_url(page: int) -> str:
    """The current URL with ``page`` replaced."""
    return url_with(page=page)


def url_with(**params) -> str:
    """The current URL with query ``params`` replaced (None removes one)."""
    args = request.args.to_dict(flat=True)
    for k, v in params.items():
        if v is None:
            args.pop(k, None)
        else:
            args[k] = str(v)
    return f"{sim().url}{request.path}?{urlencode(args)}"
