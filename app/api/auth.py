"""Who may read Fleet's API, dashboard and metrics.

Two ways in:

- ``FLEET_API_TOKEN`` configured: a request carrying ``Authorization: Bearer <token>`` (or the
  dashboard cookie derived from it, see ``login_cookie_value``) is *authenticated* and sees every
  repository. A request without valid credentials is refused with 401 wherever it comes from.
- No token configured: only direct loopback clients are answered, and they are
  *unauthenticated*: private repositories are left out of everything they are served. Direct
  loopback means all three of: the peer address is loopback (127.0.0.0/8, ::1), the ``Host``
  header names a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``, any port), and no proxy
  header is present.

Why each: behind a reverse proxy on the same host every client's peer address is loopback, and a
proxy that does not add ``X-Forwarded-For`` would otherwise hand the internet the API, ``/metrics``
and ``/setup``; the proxy forwards the public ``Host`` though, so that is refused. A DNS-rebinding
page (``evil.example`` resolving to 127.0.0.1) reaches the loopback peer address from the
victim's browser, but its requests carry ``Host: evil.example``. Proxy headers are never trusted
for the client address (``X-Forwarded-For`` is whatever the client wrote); they only refuse.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

from flask import Blueprint, Request, Response, current_app, g, jsonify, request

from app.settings import Settings

COOKIE_NAME = "fleet_session"
# Versioned so a future change of the derivation invalidates old cookies instead of misreading them.
_COOKIE_CONTEXT = b"fleet-dashboard-cookie-v1"
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "Via")
_LOOPBACK_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Access:
    """The outcome of the access check: allowed or not (with the status and reason), and whether
    the caller proved the token (only then is private repository data served)."""

    allowed: bool
    authenticated: bool = False
    status: int = 200
    reason: str = ""


def is_loopback(remote_addr: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped ``::ffff:127.x.y.z``)."""
    if not remote_addr:
        return False
    try:
        addr = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def is_loopback_host(host_header: str | None) -> bool:
    """True when a ``Host`` header names ``localhost``, ``127.0.0.1`` or ``[::1]``, with any port."""
    return bool(host_header) and _LOOPBACK_HOST.fullmatch(host_header.strip().lower()) is not None


def login_cookie_value(token: str) -> str:
    """The dashboard cookie for ``token``: an HMAC of it, so the cookie never holds the token itself."""
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison (both sides hashed first, so lengths leak nothing either)."""
    if given is None:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest())


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def check_access(request: Request, settings: Settings) -> Access:
    """Decide whether ``request`` may read, and whether it is authenticated (see module docstring)."""
    token = settings.api_token
    if token:
        if token_matches(bearer_token(request), token):
            return Access(True, authenticated=True)
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie is not None and token_matches(cookie, login_cookie_value(token)):
            return Access(True, authenticated=True)
        if request.headers.get("Authorization"):
            return Access(False, status=401, reason="invalid bearer token")
        return Access(False, status=401, reason="a bearer token is required (Authorization: Bearer <FLEET_API_TOKEN>)")
    if any(h in request.headers for h in _PROXY_HEADERS):
        return Access(False, status=403, reason="FLEET_API_TOKEN is not set: requests through a proxy are refused")
    if not is_loopback(request.remote_addr):
        return Access(False, status=403, reason="FLEET_API_TOKEN is not set: only loopback clients are served")
    if not is_loopback_host(request.headers.get("Host")):
        return Access(False, status=403, reason="FLEET_API_TOKEN is not set: the Host header must be localhost, 127.0.0.1 or [::1]")
    return Access(True, authenticated=False)


def deny(access: Access, as_json: bool) -> Response:
    """The 401/403 answer for a refused request (JSON for API clients, text for browsers)."""
    code = "unauthorized" if access.status == 401 else "forbidden"
    if as_json:
        response = jsonify({"error": code, "message": access.reason})
    else:
        response = Response(f"{access.status} {code}: {access.reason}\n", mimetype="text/plain")
    response.status_code = access.status
    if access.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="fleet"'
    return response


def guard(bp: Blueprint, as_json: bool = True) -> None:
    """Check access before every request of ``bp``; sets ``g.fleet_authenticated``."""

    @bp.before_request
    def _check() -> Response | None:
        if request.method == "OPTIONS":
            return None  # CORS preflights carry no credentials
        access = check_access(request, current_app.config["FLEET_SETTINGS"])
        if not access.allowed:
            return deny(access, as_json)
        g.fleet_authenticated = access.authenticated
        return None


def authenticated() -> bool:
    """Whether the current request proved the API token (set by ``guard``)."""
    return bool(g.get("fleet_authenticated", False))
