"""Repository endpoints: repo, permissions, contents, branches, refs, commits, merges, checks, statuses."""
from __future__ import annotations

from flask import Blueprint, g, request

from . import ops_checks, ops_commits, ops_refs
from .errors import ApiError, not_found, validation
from .http import actor, body, locked, page_of, paginate, require, respond, world
from .ops_repo import get_repo, merge_refs
from .render import check_run_json, content_json, permissions_json, repo_json, status_json, user_json
from .render_git import (branch_json, branch_short_json, combined_status_json, git_commit_json,
                         git_data_commit_json, ref_json)

bp = Blueprint("sim_repo", __name__)
REPO = "/repos/<owner>/<repo>"


def _repo(owner, repo, role="read"):
    r = get_repo(world(), owner, repo)
    require(r, role)
    return r


@bp.get(REPO)
@locked
def get_repository(owner, repo):
    """GET a repository (with the caller's ``permissions``)."""
    r = _repo(owner, repo)
    ident = g.identity
    perm = "write" if ident.kind == "installation" else \
        world().permission(r, ident.user.login) if ident.user else "read"
    return respond(repo_json(world(), r, perm))


@bp.get(REPO + "/collaborators/<username>/permission")
@locked
def collaborator_permission(owner, repo, username):
    """GET a user's permission: admin/write/read/none plus the finer ``role_name``."""
    r = _repo(owner, repo)
    u = world().users.get(username.lower())
    if u is None:
        raise not_found()
    role = world().permission(r, u.login)
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    out = {"permission": legacy, "role_name": role, "user": user_json(world(), u)}
    out["user"]["permissions"] = permissions_json(role)
    out["user"]["role_name"] = role
    return respond(out)


@bp.get("/orgs/<org>/teams/<team_slug>/memberships/<username>")
@locked
def team_membership(org, team_slug, username):
    """GET a user's membership of a team: ``role`` and ``state``; 404 when not a member."""
    members = world().team_members.get(f"{org}/{team_slug}".lower(), {})
    state = members.get(username.lower())
    if state is None:
        raise not_found()
    url = f"{world().api_url}/organizations/{org}/team/{team_slug}/memberships/{username}"
    return respond({"url": url, "role": "member", "state": state})


@bp.get(REPO + "/contents/", defaults={"path": ""})
@bp.get(REPO + "/contents/<path:path>")
@locked
def get_contents(owner, repo, path):
    """GET contents: a base64 file, a directory listing, or 404."""
    r = _repo(owner, repo)
    ref = request.args.get("ref") or r.default_branch
    sha = r.git.resolve(ref)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    tree = r.git.tree(sha)
    path = path.strip("/")
    if path in tree:
        return respond(content_json(world(), r, path, tree[path], ref))
    prefix = path + "/" if path else ""
    names = sorted({p[len(prefix):].split("/", 1)[0] for p in tree if p.startswith(prefix)})
    if not names:
        raise not_found()
    return respond([_dir_entry(r, tree, prefix + n, ref) for n in names])


def _dir_entry(r, tree, path, ref):
    if path in tree:
        out = content_json(world(), r, path, tree[path], ref)
        out.pop("content")
        out.pop("encoding")
        return out
    api = f"{world().api_url}/repos/{r.full_name}/contents/{path}?ref={ref}"
    html = f"{world().html_url}/{r.full_name}/tree/{ref}/{path}"
    return {"type": "dir", "size": 0, "name": path.rsplit("/", 1)[-1], "path": path, "sha": "0" * 40,
            "url": api, "git_url": None, "html_url": html, "download_url": None,
            "_links": {"self": api, "git": None, "html": html}}


@bp.get(REPO + "/branches")
@locked
def list_branches(owner, repo):
    """GET branches (sorted by name)."""
    r = _repo(owner, repo)
    return paginate(sorted(r.git.branches), lambda b: branch_short_json(world(), r, b))


@bp.get(REPO + "/branches/<path:branch>")
@locked
def get_branch(owner, repo, branch):
    """GET one branch."""
    r = _repo(owner, repo)
    if branch not in r.git.branches:
        raise ApiError(404, "Branch not found")
    return respond(branch_json(world(), r, branch))


@bp.get(REPO + "/git/ref/<path:ref>")
@locked
def get_ref(owner, repo, ref):
    """GET git/ref/heads/{branch}."""
    r = _repo(owner, repo)
    name = ref.removeprefix("refs/").removeprefix("heads/")
    if not ref.removeprefix("refs/").startswith("heads/") or name not in r.git.branches:
        raise not_found()
    return respond(ref_json(world(), r, name))


def _by_app() -> bool:
    """True when an installation calls: branch protection is enforced on the App's pushes only."""
    return g.identity.kind == "installation"


@bp.post(REPO + "/git/refs")
@locked
def create_ref(owner, repo):
    """POST git/refs: create a branch; 201, or 422 when it exists or the name or sha is bad."""
    r = _repo(owner, repo, "write")
    b = body()
    name = ops_refs.create_ref(world(), r, b.get("ref", ""), b.get("sha", ""), actor())
    out = ref_json(world(), r, name)
    return respond(out, 201, {"Location": out["url"]})


@bp.patch(REPO + "/git/refs/<path:ref>")
@locked
def update_ref(owner, repo, ref):
    """PATCH git/refs/heads/{branch}: 200; 422 when missing, not a fast-forward, or protected."""
    r = _repo(owner, repo, "write")
    b = body()
    name = ops_refs.update_ref(world(), r, ref, b.get("sha", ""), bool(b.get("force", False)), actor(), _by_app())
    return respond(ref_json(world(), r, name))


@bp.delete(REPO + "/git/refs/<path:ref>")
@locked
def delete_ref(owner, repo, ref):
    """DELETE git/refs/heads/{branch}: 204; 422 when missing, the default branch, or protected."""
    r = _repo(owner, repo, "write")
    ops_refs.delete_ref(world(), r, ref, actor(), _by_app())
    return respond(None, 204)


@bp.get(REPO + "/git/commits/<sha>")
@locked
def get_commit(owner, repo, sha):
    """GET git/commits/{sha}: the ``git-commit``; 404 for anything that is not a commit here."""
    r = _repo(owner, repo, "read")
    c = r.git.commits.get(sha)
    if c is None:
        raise not_found()
    return respond(git_data_commit_json(world(), r, c))


@bp.post(REPO + "/git/commits")
@locked
def create_commit(owner, repo):
    """POST git/commits: 201 with the ``git-commit``; 422 for a bad or unknown tree or parent.

    Moves no ref and so emits nothing."""
    r = _repo(owner, repo, "write")
    c = ops_commits.create_commit(world(), r, body(), actor(), _by_app())
    out = git_data_commit_json(world(), r, c)
    return respond(out, 201, {"Location": out["url"]})


@bp.post(REPO + "/merges")
@locked
def merge_branches(owner, repo):
    """POST merges: 201 merge commit, 204 nothing to merge, 409 conflict, 404 missing base/head."""
    r = _repo(owner, repo, "write")
    b = body()
    sha = merge_refs(world(), r, b.get("base", ""), b.get("head", ""), actor(), b.get("commit_message"),
                     by_app=_by_app())
    if sha is None:
        return respond(None, 204)
    return respond(git_commit_json(world(), r, r.git.commits[sha]), 201)


# -- checks and statuses ------------------------------------------------------------------------
def _calling_app():
    ident = g.identity
    if ident.kind != "installation":
        raise ApiError(403, "You must authenticate via a GitHub App.")
    return ident.installation.app


@bp.post(REPO + "/check-runs")
@locked
def create_check_run(owner, repo):
    """POST check-runs (GitHub App installations only)."""
    r = _repo(owner, repo, "write")
    b = body()
    if not b.get("name"):
        raise validation("CheckRun", "name", "missing_field")
    run = ops_checks.create_check_run(world(), r, _calling_app(), b["name"], b.get("head_sha", ""), b)
    return respond(check_run_json(world(), r, run), 201)


@bp.patch(REPO + "/check-runs/<int:check_run_id>")
@locked
def update_check_run(owner, repo, check_run_id):
    """PATCH a check run (only by the App that created it)."""
    r = _repo(owner, repo, "write")
    run = ops_checks.get_check_run(r, check_run_id)
    if run.app is not _calling_app():
        raise ApiError(403, "Invalid app_id `%s` - check run can only be modified by its creator" % run.app.id)
    ops_checks.update_check_run(world(), r, run, body())
    return respond(check_run_json(world(), r, run))


def _sha_for(r, ref):
    sha = r.git.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}")
    return sha


@bp.get(REPO + "/commits/<path:ref>/check-runs")
@locked
def list_check_runs(owner, repo, ref):
    """GET check runs for a sha or branch (``check_name``, ``status``, ``filter``, ``app_id``)."""
    r = _repo(owner, repo)
    a = request.args
    runs = ops_checks.runs_for(r, _sha_for(r, ref), a.get("check_name"), a.get("status"),
                               int(a["app_id"]) if a.get("app_id") else None, a.get("filter", "latest") != "all")
    runs.sort(key=lambda c: c.id, reverse=True)
    chunk, headers = page_of(runs)
    return respond({"total_count": len(runs), "check_runs": [check_run_json(world(), r, c) for c in chunk]},
                   200, headers)


@bp.get(REPO + "/commits/<path:ref>/status")
@locked
def combined_status(owner, repo, ref):
    """GET the combined status for a sha or branch."""
    r = _repo(owner, repo)
    return respond(combined_status_json(world(), r, _sha_for(r, ref)))


@bp.post(REPO + "/statuses/<sha>")
@locked
def create_status(owner, repo, sha):
    """POST statuses/{sha}."""
    r = _repo(owner, repo, "write")
    b = body()
    s = ops_checks.set_status(world(), r, sha, actor(), b.get("state"), b.get("context") or "default",
                              b.get("description"), b.get("target_url"))
    return respond(status_json(world(), r, s), 201)
