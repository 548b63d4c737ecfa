"""Pull request endpoints: list/create/get/update, files, reviews, merge, update-branch."""
from __future__ import annotations

from flask import Blueprint, request

from . import ops_pulls as ops
from .errors import ApiError
from .http import actor, body, locked, paginate, require, respond, sim, world
from .ops_repo import get_repo
from .render import review_json
from .render_git import pr_files_json, pr_json

bp = Blueprint("sim_pulls", __name__)
REPO = "/repos/<owner>/<repo>"
PULL = REPO + "/pulls/<int:pull_number>"


def _repo(owner, repo, role="read"):
    r = get_repo(world(), owner, repo)
    require(r, role)
    return r


@bp.get(REPO + "/pulls")
@locked
def list_pulls(owner, repo):
    """GET pulls (``state``, ``head``, ``base``, ``sort``, ``direction``)."""
    r = _repo(owner, repo)
    args = request.args
    state = args.get("state", "open")
    items = [i for i in r.issues.values() if i.pull and (state == "all" or i.state == state)]
    if args.get("head"):
        items = [i for i in items if i.pull.head_ref == args["head"].split(":", 1)[-1]]
    if args.get("base"):
        items = [i for i in items if i.pull.base_ref == args["base"]]
    key = (lambda i: i.updated_at) if args.get("sort") in ("updated", "popularity", "long-running") \
        else (lambda i: i.created_at)
    items.sort(key=key, reverse=args.get("direction", "desc") != "asc")
    return paginate(items, lambda i: pr_json(world(), r, i, full=False))


@bp.post(REPO + "/pulls")
@locked
def create_pull(owner, repo):
    """POST pulls."""
    r = _repo(owner, repo)
    b = body()
    i = ops.create_pull(world(), r, actor(), b.get("title"), b.get("head", ""), b.get("base", ""),
                        b.get("body"), b.get("draft", False))
    return respond(ops.pr_rest_json(world(), r, i, sim().mergeable_null_once), 201)


@bp.get(PULL)
@locked
def get_pull(owner, repo, pull_number):
    """GET a pull request (``mergeable`` may be null right after a move, see Simulator)."""
    r = _repo(owner, repo)
    return respond(ops.pr_rest_json(world(), r, ops.get_pull(r, pull_number), sim().mergeable_null_once))


@bp.patch(PULL)
@locked
def update_pull(owner, repo, pull_number):
    """PATCH a pull request (title, body, state, base)."""
    r = _repo(owner, repo)
    i = ops.get_pull(r, pull_number)
    who = actor()
    if who is not i.user:
        require(r, "triage")
    ops.update_pull(world(), r, i, who, body())
    return respond(ops.pr_rest_json(world(), r, i, False))


@bp.get(PULL + "/files")
@locked
def pull_files(owner, repo, pull_number):
    """GET the files a pull request changes."""
    r = _repo(owner, repo)
    i = ops.get_pull(r, pull_number)
    return paginate(pr_files_json(world(), r, i))


@bp.get(PULL + "/reviews")
@locked
def list_reviews(owner, repo, pull_number):
    """GET reviews (oldest first)."""
    r = _repo(owner, repo)
    i = ops.get_pull(r, pull_number)
    return paginate(list(i.pull.reviews), lambda rv: review_json(world(), r, i.number, rv))


@bp.post(PULL + "/reviews")
@locked
def create_review(owner, repo, pull_number):
    """POST a review (APPROVE / REQUEST_CHANGES / COMMENT, or pending without ``event``)."""
    r = _repo(owner, repo)
    i = ops.get_pull(r, pull_number)
    b = body()
    rv = ops.create_review(world(), r, i, actor(), b.get("event"), b.get("body"), b.get("commit_id"))
    return respond(review_json(world(), r, i.number, rv))


@bp.get(PULL + "/merge")
@locked
def check_merged(owner, repo, pull_number):
    """GET .../merge: 204 when merged, 404 otherwise."""
    r = _repo(owner, repo)
    if ops.get_pull(r, pull_number).pull.merged:
        return respond(None, 204)
    raise ApiError(404, "Not Found")


@bp.put(PULL + "/merge")
@locked
def merge(owner, repo, pull_number):
    """PUT .../merge: 200 merged, 405 not mergeable, 409 head moved, 422 invalid method."""
    r = _repo(owner, repo, "write")
    i = ops.get_pull(r, pull_number)
    b = body()
    sha = ops.merge_pull(world(), r, i, actor(), b.get("sha"), b.get("merge_method") or "merge",
                         b.get("commit_title"), b.get("commit_message"))
    return respond({"sha": sha, "merged": True, "message": "Pull Request successfully merged"})


@bp.put(PULL + "/update-branch")
@locked
def update_branch(owner, repo, pull_number):
    """PUT .../update-branch: merge base into head (done synchronously), 202."""
    r = _repo(owner, repo, "write")
    i = ops.get_pull(r, pull_number)
    ops.update_branch(world(), r, i, actor(), body().get("expected_head_sha"))
    return respond({"message": "Updating pull request branch.",
                    "url": f"{world().html_url}/{r.full_name}/pull/{i.number}"}, 202)
