"""``/_sim/...`` control endpoints: the Python API over HTTP, for demos and other processes.

Unauthenticated and unvalidated on purpose: they stand in for the GitHub web UI,
``git push`` and CI, which have no REST equivalent.
"""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, request

from .errors import ApiError
from .http import body, respond, sim
from .render import repo_json

bp = Blueprint("sim_control", __name__, url_prefix="/_sim")
REPO = "/repos/<owner>/<repo>"


def _need(b: dict, *keys):
    missing = [k for k in keys if b.get(k) in (None, "")]
    if missing:
        raise ApiError(422, "missing " + ", ".join(missing))


def _call(fn, *args, **kwargs):
    """Run a Simulator method, mapping lookup errors to 404."""
    try:
        return fn(*args, **kwargs)
    except KeyError as exc:
        raise ApiError(404, f"not found: {exc}")


@bp.get("/")
def info():
    """Basic facts: URL, app id/slug, webhook URL, counts."""
    s = sim()
    w = s.world
    return respond({"url": s.url, "app_id": w.app.id, "app_slug": w.app.slug, "webhook_url": s.webhook_url,
                    "repos": sorted(r.full_name for r in w.repos.values()),
                    "installations": sorted(w.installations), "pending_webhooks": s.outbox.pending(),
                    "requests": len(s.requests), "violations": len(s.violations)})


@bp.post("/repos")
def create_repo():
    """{full_name, default_branch?, private?} -> repository JSON."""
    b = body()
    _need(b, "full_name")
    r = sim().create_repo(b["full_name"], b.get("default_branch", "main"), bool(b.get("private", False)))
    with sim().world.lock:
        return respond(repo_json(sim().world, r), 201)


@bp.post("/orgs")
def create_org():
    """{login}: declare an organization."""
    b = body()
    _need(b, "login")
    sim().add_org(b["login"])
    return respond({"login": b["login"]}, 201)


@bp.post("/installations")
def install():
    """{repos: [full_name], installation_id?} -> {id}."""
    b = body()
    _need(b, "repos")
    return respond({"id": _call(sim().install, b["repos"], b.get("installation_id"))}, 201)


@bp.delete("/installations/<int:installation_id>")
def uninstall(installation_id):
    """Delete an installation."""
    _call(sim().uninstall, installation_id)
    return respond(None, 204)


@bp.post("/users")
def add_user():
    """{login, permission?, type?, repo?} -> {login, token}."""
    b = body()
    _need(b, "login")
    _call(sim().add_user, b["login"], b.get("permission", "write"), b.get("type", "User"), b.get("repo"))
    return respond({"login": b["login"], "token": sim().user_token(b["login"])}, 201)


@bp.get("/users")
def list_users():
    """People and bots (not organizations): [{login, type, permission, repos: {full_name: permission}}]."""
    w = sim().world
    with w.lock:
        grants = {}
        for r in w.repos.values():
            for login, permission in r.collaborators.items():
                grants.setdefault(login.lower(), {})[r.full_name] = permission
        return respond([{"login": u.login, "type": u.type, "permission": u.permission,
                         "repos": grants.get(u.login.lower(), {})}
                        for u in sorted(w.users.values(), key=lambda u: u.login.lower())
                        if u.type != "Organization"])


@bp.post("/users/<login>/token")
def user_token(login):
    """A fresh user token for ``login``."""
    return respond({"token": sim().user_token(login)}, 201)


@bp.post(REPO + "/push")
def push(owner, repo):
    """{branch, files: {path: content|null}, author?, message?} -> {sha}."""
    b = body()
    _need(b, "branch", "files")
    sha = _call(sim().push, f"{owner}/{repo}", b["branch"], b["files"], b.get("author"),
                b.get("message") or "Update files")
    return respond({"sha": sha}, 201)


@bp.delete(REPO + "/branches/<path:branch>")
def delete_branch(owner, repo, branch):
    """Delete a branch."""
    _call(sim().delete_branch, f"{owner}/{repo}", branch, request.args.get("sender"))
    return respond(None, 204)


@bp.post(REPO + "/ci")
def ci(owner, repo):
    """{sha, name, status?, conclusion?, details_url?, output?, app?} -> {id}; ``app`` is the
    reporting App's slug (default GitHub Actions)."""
    b = body()
    _need(b, "sha", "name")
    run_id = _call(sim().ci, f"{owner}/{repo}", b["sha"], b["name"], b.get("status", "completed"),
                   b.get("conclusion", "success"), b.get("details_url"), b.get("output"), b.get("app"))
    return respond({"id": run_id}, 201)


@bp.post(REPO + "/statuses")
def status(owner, repo):
    """{sha, context, state, description?, target_url?, creator?} -> {id}."""
    b = body()
    _need(b, "sha", "context", "state")
    sid = _call(sim().set_status, f"{owner}/{repo}", b["sha"], b["context"], b["state"], b.get("description"),
                b.get("target_url"), b.get("creator"))
    return respond({"id": sid}, 201)


@bp.post(REPO + "/issues")
def open_issue(owner, repo):
    """{title, body?, author?, labels?, assignees?} -> {number} (as a person in the UI)."""
    b = body()
    _need(b, "title")
    n = _call(sim().open_issue, f"{owner}/{repo}", b["title"], b.get("body"), b.get("author"),
              b.get("labels") or (), b.get("assignees") or ())
    return respond({"number": n}, 201)


@bp.post(REPO + "/issues/<int:number>/comments")
def comment(owner, repo, number):
    """{body, author?} -> {id}."""
    b = body()
    _need(b, "body")
    return respond({"id": _call(sim().comment, f"{owner}/{repo}", number, b["body"], b.get("author"))}, 201)


@bp.post(REPO + "/issues/<int:number>/blocked_by")
def blocked_by(owner, repo, number):
    """{blocker, sender?}: add a dependency."""
    b = body()
    _need(b, "blocker")
    _call(sim().add_blocked_by, f"{owner}/{repo}", number, int(b["blocker"]), b.get("sender"))
    return respond(None, 204)


@bp.post(REPO + "/issues/<int:number>/sub_issues")
def sub_issue(owner, repo, number):
    """{child, sender?}: add a sub-issue."""
    b = body()
    _need(b, "child")
    _call(sim().add_sub_issue, f"{owner}/{repo}", number, int(b["child"]), b.get("sender"))
    return respond(None, 204)


@bp.post(REPO + "/pulls")
def open_pr(owner, repo):
    """{head, title, base?, body?, author?, draft?} -> {number}."""
    b = body()
    _need(b, "head", "title")
    n = _call(sim().open_pr, f"{owner}/{repo}", b["head"], b["title"], b.get("base"), b.get("body"),
              b.get("author"), bool(b.get("draft", False)))
    return respond({"number": n}, 201)


@bp.post(REPO + "/pulls/<int:number>/draft")
def draft(owner, repo, number):
    """{draft: bool, sender?}."""
    b = body()
    _call(sim().set_draft, f"{owner}/{repo}", number, bool(b.get("draft", True)), b.get("sender"))
    return respond(None, 204)


@bp.post(REPO + "/pulls/<int:number>/merge")
def merge(owner, repo, number):
    """{method?, by?} -> {sha}: merge as a person."""
    b = body()
    sha = _call(sim().merge_pr, f"{owner}/{repo}", number, b.get("method", "merge"), b.get("by"))
    return respond({"sha": sha}, 201)


@bp.post(REPO + "/pulls/<int:number>/reviews")
def review(owner, repo, number):
    """{reviewer, event?, body?} -> {id}."""
    b = body()
    _need(b, "reviewer")
    rid = _call(sim().review, f"{owner}/{repo}", number, b["reviewer"], b.get("event", "APPROVE"), b.get("body"))
    return respond({"id": rid}, 201)


@bp.put("/webhook_url")
def set_webhook_url():
    """{url|null}: where webhooks go."""
    sim().webhook_url = body().get("url")
    return respond({"url": sim().webhook_url})


@bp.post("/webhooks/pause")
def pause():
    """Hold deliveries."""
    sim().pause_deliveries()
    return respond(None, 204)


@bp.post("/webhooks/resume")
def resume():
    """Release held deliveries."""
    sim().resume_deliveries()
    return respond(None, 204)


@bp.post("/wait_idle")
def wait_idle():
    """Block until the outbox is empty: {idle: bool}."""
    return respond({"idle": sim().wait_idle(float(body().get("timeout", 10)))})


@bp.get("/deliveries")
def deliveries():
    """All delivery attempts, oldest first."""
    return respond([d.item_json() for d in sim().deliveries])


@bp.get("/requests")
def requests_log():
    """All recorded REST requests."""
    return respond([asdict(q) for q in list(sim().requests)])


@bp.get("/violations")
def violations():
    """OpenAPI violations of requests (and of our responses when response checking is on)."""
    s = sim()
    return respond({"requests": [asdict(v) for v in s.violations],
                    "responses": [asdict(v) for v in s.response_violations]})


FAULTS = {"fail": "fail_next", "rate_limit": "rate_limit_next", "delay": "delay_next",
          "drop_webhooks": "drop_next_webhooks", "duplicate_webhooks": "duplicate_next_webhooks",
          "shuffle_webhooks": "shuffle_webhooks"}


@bp.post("/faults")
def add_fault():
    """{kind: fail|rate_limit|delay|drop_webhooks|duplicate_webhooks|shuffle_webhooks, ...arguments}."""
    b = dict(body())
    kind = b.pop("kind", None)
    if kind not in FAULTS:
        raise ApiError(422, "kind must be one of " + ", ".join(FAULTS))
    try:
        getattr(sim().faults, FAULTS[kind])(**b)
    except TypeError as exc:
        raise ApiError(422, str(exc))
    return respond(None, 204)


@bp.delete("/faults")
def clear_faults():
    """Forget pending faults."""
    sim().faults.clear()
    return respond(None, 204)
