"""App-level endpoints: /app, installations, access tokens, webhook deliveries."""
from __future__ import annotations

from flask import Blueprint, g, request

from .auth import issue_installation_token
from .errors import ApiError, not_found
from .http import int_arg, locked, page_of, paginate, respond, sim, url_with, world
from .render import app_json, installation_json, repo_json
from .state import iso

bp = Blueprint("sim_app", __name__)


@bp.get("/app")
@locked
def get_app():
    """GET /app."""
    w = world()
    out = app_json(w, w.app)
    out["installations_count"] = sum(1 for i in w.installations.values() if i.app is w.app)
    return respond(out)


@bp.get("/app/installations")
@locked
def list_installations():
    """GET /app/installations."""
    w = world()
    insts = sorted((i for i in w.installations.values() if i.app is w.app), key=lambda i: i.id)
    return paginate(insts, lambda i: installation_json(w, i))


def _installation(installation_id: int):
    inst = world().installations.get(installation_id)
    if inst is None or inst.app is not world().app:
        raise not_found()
    return inst


@bp.get("/app/installations/<int:installation_id>")
@locked
def get_installation(installation_id):
    """GET /app/installations/{installation_id}."""
    return respond(installation_json(world(), _installation(installation_id)))


@bp.post("/app/installations/<int:installation_id>/access_tokens")
@locked
def create_token(installation_id):
    """POST /app/installations/{id}/access_tokens: a 1-hour token for the installation's repos."""
    w = world()
    inst = _installation(installation_id)
    tok = issue_installation_token(w, inst)
    repos = [w.repo(n) for n in inst.repos]
    return respond({"token": tok.token, "expires_at": iso(tok.expires_at),
                    "permissions": dict(inst.app.permissions), "repository_selection": "selected",
                    "repositories": [repo_json(w, r) for r in repos if r]}, 201)


@bp.get("/installation/repositories")
@locked
def installation_repos():
    """GET /installation/repositories (installation token only), paginated."""
    w = world()
    inst = g.identity.installation
    if inst is None:
        raise ApiError(403, "This endpoint requires an installation access token")
    repos = [w.repo(n) for n in inst.repos if w.repo(n)]
    chunk, headers = page_of(repos)
    return respond({"total_count": len(repos), "repository_selection": "selected",
                    "repositories": [repo_json(w, r, "write") for r in chunk]}, 200, headers)


@bp.get("/app/hook/deliveries")
def list_deliveries():
    """GET /app/hook/deliveries: newest first, paginated by ``per_page`` and ``cursor``."""
    outbox = sim().outbox
    per_page = max(1, min(int_arg("per_page", 30), 100))
    cursor = request.args.get("cursor")
    items = [d for d in reversed(list(outbox.deliveries)) if d.status != "pending"]
    if cursor:
        try:
            before = int(cursor.removeprefix("v1_"))
        except ValueError:
            raise ApiError(422, "Invalid cursor")
        items = [d for d in items if d.id < before]
    page = items[:per_page]
    headers = {}
    if len(items) > per_page:
        headers["Link"] = f'<{url_with(cursor=f"v1_{page[-1].id}", per_page=per_page)}>; rel="next"'
    return respond([d.item_json() for d in page], 200, headers)


def _delivery(delivery_id: int):
    d = next((x for x in sim().outbox.deliveries if x.id == delivery_id), None)
    if d is None:
        raise not_found()
    return d


@bp.get("/app/hook/deliveries/<int:delivery_id>")
def get_delivery(delivery_id):
    """GET /app/hook/deliveries/{delivery_id}."""
    return respond(_delivery(delivery_id).full_json())


@bp.post("/app/hook/deliveries/<int:delivery_id>/attempts")
def redeliver(delivery_id):
    """POST /app/hook/deliveries/{delivery_id}/attempts: queue a redelivery (same GUID), 202."""
    _delivery(delivery_id)
    sim().outbox.redeliver(delivery_id)
    return respond({}, 202)
