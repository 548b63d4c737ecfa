"""The read API's query parameters and errors: every parameter parsed and bounded, a clear 4xx
``{"error": CODE, "message": TEXT}`` for anything else, and paging.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request


TASK_STATES = ("ready", "blocked", "claimed", "review", "queued", "done")
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
MAX_PAGE = 100_000
PG_INT_MAX = 2**31 - 1
REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


class ApiError(Exception):
    """A 4xx answer with a machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


# --- query parameters ----------------------------------------------------------------------------


def _repo_param(value: str) -> str:
    if not REPO_RE.match(value):
        raise ValueError("expected OWNER/NAME, e.g. octo-org/widgets")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _text(max_len: int = 200) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if not value or len(value) > max_len or any(ord(ch) < 32 for ch in value):
            raise ValueError(f"expected 1-{max_len} printable characters")
        return value

    return parse


def _positive_int(maximum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
            raise ValueError(f"expected a whole number from 1 to {maximum}")
        return int(value)

    return parse


PAGING = {"page": _positive_int(MAX_PAGE), "per_page": _positive_int(MAX_PER_PAGE)}


def parse_params(spec: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Parse ``request.args`` against ``spec`` (name → parser); anything else is a 400.

    Unknown names, repeated names and values the parser rejects each get their own message.
    """
    out: dict[str, Any] = {}
    for name in request.args:
        if name not in spec:
            allowed = ", ".join(sorted(spec)) or "none"
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {name!r} (allowed: {allowed})")
        values = request.args.getlist(name)
        if len(values) > 1:
            raise ApiError(400, "repeated_parameter", f"query parameter {name!r} given more than once")
        try:
            out[name] = spec[name](values[0])
        except ValueError as exc:
            raise ApiError(400, "invalid_parameter", f"query parameter {name!r}: {exc}") from None
    return out


def paginate(items: list[Any], params: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    """``items`` is already the requested page when ``total`` is given, else the whole list."""
    page = params.get("page", 1)
    per_page = params.get("per_page", DEFAULT_PER_PAGE)
    if total is None:
        total = len(items)
        items = items[(page - 1) * per_page: page * per_page]
    has_next = page * per_page < total
    next_url = None
    if has_next:
        args = {k: v for k, v in request.args.items() if k != "page"}
        args["page"] = str(page + 1)
        next_url = f"{request.base_url}?{urlencode(args)}"
    return {"items": items, "page": page, "per_page": per_page, "total": total, "next": next_url}


def page_window(params: dict[str, Any]) -> tuple[int, int]:
    per_page = params.get("per_page", DEFAULT_PER_PAGE)
    return per_page, (params.get("page", 1) - 1) * per_page
