"""The live dashboard: one server-rendered page, refreshed in place when the event stream says
something changed.

``/dashboard`` renders the page; ``/dashboard/panels`` renders just the panels, which
``static/dashboard.js`` fetches after each event from ``/api/stream``. Both read through the
API's ``read_*`` functions, so the dashboard never shows what the API would not. The burndown
chart is an SVG drawn here (no script or inline style: the CSP allows neither).

With ``FLEET_API_TOKEN`` set, open ``/dashboard?token=…`` once: the token is exchanged for an
HttpOnly cookie and the address bar is cleaned.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, redirect, render_template, request
from markupsafe import Markup, escape

from app.api import readers as api_readers
from app.api.auth import COOKIE_NAME, authenticated, check_access, deny, login_cookie_value, token_matches

bp = Blueprint("dashboard", __name__)

READY_LIMIT = 20
EVIDENCE_LIMIT = 20
CHART_W, CHART_H, CHART_PAD = 640, 180, 32


@bp.before_request
def _check() -> Response | None:
    settings = current_app.config["FLEET_SETTINGS"]
    given = request.args.get("token")
    if given is not None and settings.api_token and token_matches(given, settings.api_token):
        response = redirect(request.path, code=303)
        response.set_cookie(COOKIE_NAME, login_cookie_value(settings.api_token), httponly=True,
                            samesite="Strict", secure=request.is_secure, max_age=30 * 86400)
        return response
    access = check_access(request, settings)
    if not access.allowed:
        return deny(access, as_json=False)
    g.fleet_authenticated = access.authenticated
    return None


def burndown_svg(points: list[dict[str, Any]]) -> Markup:
    """Remaining and total estimated hours per day as an SVG line chart (empty note without data)."""
    if len(points) < 2:
        return Markup('<p class="muted chart-empty">No progress snapshots yet: the burndown appears after two days of history.</p>')
    top = max(max(p["hours_total"] for p in points), 1.0)
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    step = inner_w / (len(points) - 1)

    def xy(i: int, value: float) -> str:
        return f"{CHART_PAD + i * step:.1f},{CHART_PAD + inner_h * (1 - value / top):.1f}"

    remaining = " ".join(xy(i, p["hours_remaining"]) for i, p in enumerate(points))
    total = " ".join(xy(i, p["hours_total"]) for i, p in enumerate(points))
    ideal = f"{xy(0, points[0]['hours_remaining'])} {xy(len(points) - 1, 0)}"
    first, last = escape(points[0]["date"]), escape(points[-1]["date"])
    base = CHART_H - CHART_PAD
    return Markup(
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        f'aria-label="Burndown: hours remaining per day from {first} to {last}">'
        f'<line class="axis" x1="{CHART_PAD}" y1="{base}" x2="{CHART_W - CHART_PAD}" y2="{base}"/>'
        f'<line class="axis" x1="{CHART_PAD}" y1="{CHART_PAD}" x2="{CHART_PAD}" y2="{base}"/>'
        f'<polyline class="ideal" points="{ideal}"/>'
        f'<polyline class="total" points="{total}"/>'
        f'<polyline class="remaining" points="{remaining}"/>'
        f'<text x="{CHART_PAD}" y="{CHART_H - 8}">{first}</text>'
        f'<text x="{CHART_W - CHART_PAD}" y="{CHART_H - 8}" text-anchor="end">{last}</text>'
        f'<text x="{CHART_PAD + 4}" y="{CHART_PAD - 8}">{top:g} h</text>'
        "</svg>"
    )


def _panels_context() -> dict[str, Any]:
    auth = authenticated()
    with current_app.config["FLEET_POOL"].connection(timeout=5) as conn:
        summary = api_readers.read_progress_summary(conn, auth)
        ready = api_readers.ready_order(api_readers.load_tasks(conn, auth, state="ready"))
        return {
            "summary": summary,
            "agents": api_readers.read_agents(conn, auth),
            "agent_progress": {a["agent"]: a for a in api_readers.read_progress_agents(conn, auth)["agents"]},
            "ready": ready[:READY_LIMIT],
            "ready_total": len(ready),
            "queues": api_readers.read_merge_queue(conn, auth),
            "evidence": api_readers.read_evidence(conn, auth, {"per_page": EVIDENCE_LIMIT})["items"],
            "burndown_svg": burndown_svg,
            "percent": _percent,
            "authenticated": auth,
        }


def _percent(done: float, total: float) -> int:
    return round(100 * done / total) if total else 0


@bp.get("/")
def index() -> Response:
    """The root of the site is the dashboard."""
    return redirect("/dashboard", code=302)


@bp.get("/dashboard")
def dashboard() -> str:
    """The whole page."""
    return render_template("dashboard.html", **_panels_context(), generated=datetime.now().astimezone())


@bp.get("/dashboard/panels")
def panels() -> str:
    """Just the panels, for the live refresh."""
    return render_template("dashboard_panels.html", **_panels_context())

