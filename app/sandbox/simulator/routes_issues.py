"""Issue endpoints: issues, comments, assignees, labels, milestones, reactions, relations."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, g, request

from . import ops_issues as ops
from .errors import ApiError, validation
from .http import actor, body, locked, paginate, require, respond, world
from .ops_repo import get_repo
from .render import comment_json, issue_event_json, issue_json, label_json, milestone_json, reaction_json

bp = Blueprint("sim_issues", __name__)
REPO = "/repos/<owner>/<repo>"
ISSUE = REPO + "/issues/<int:issue_number>"


def _repo(owner, repo, role="read"):
    r = get_repo(world(), owner, repo)
    require(r, role)
    return r


def _role(r) -> str:
    ident = g.identity
    if ident.kind == "installation":
        return "write"
    return world().permission(r, ident.user.login) if ident.user else "none"


def _parse_time(raw: str) -> float:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise validation("Issue", "since", "invalid")


def _filter_issues(r, args) -> list:
    state = args.get("state", "open")
    items = [i for i in r.issues.values() if state == "all" or i.state == state]
    if args.get("labels"):
        wanted = {x.strip().lower() for x in args["labels"].split(",") if x.strip()}
        items = [i for i in items if wanted <= {n.lower() for n in i.labels}]
    assignee = args.get("assignee")
    if assignee == "none":
        items = [i for i in items if not i.assignees]
    elif assignee == "*":
        items = [i for i in items if i.assignees]
    elif assignee:
        items = [i for i in items if any(u.login.lower() == assignee.lower() for u in i.assignees)]
    if args.get("creator"):
        items = [i for i in items if i.user.login.lower() == args["creator"].lower()]
    ms = args.get("milestone")
    if ms == "none":
        items = [i for i in items if i.milestone is None]
    elif ms == "*":
        items = [i for i in items if i.milestone is not None]
    elif ms:
        items = [i for i in items if str(i.milestone) == ms]
    if args.get("since"):
        since = _parse_time(args["since"])
        items = [i for i in items if i.updated_at >= since]
    key = {"created": lambda i: (i.created_at, i.number), "updated": lambda i: (i.updated_at, i.number),
           "comments": lambda i: (len(i.comments), i.number)}.get(args.get("sort", "created"))
    if key is None:
        raise validation("Issue", "sort", "invalid")
    return sorted(items, key=key, reverse=args.get("direction", "desc") != "asc")


@bp.get(REPO + "/issues")
@locked
def list_issues(owner, repo):
    """GET issues (pull requests included, with a ``pull_request`` key)."""
    r = _repo(owner, repo)
    return paginate(_filter_issues(r, request.args), lambda i: issue_json(world(), r, i))


@bp.post(REPO + "/issues")
@locked
def create_issue(owner, repo):
    """POST issues."""
    r = _repo(owner, repo)
    b = body()
    assignees = list(b.get("assignees") or [])
    if b.get("assignee"):
        assignees.insert(0, b["assignee"])
    labels = [ops._label_name(x) for x in b.get("labels") or []]
    i = ops.create_issue(world(), r, actor(), b.get("title"), b.get("body"), labels, assignees,
                         b.get("milestone"))
    return respond(issue_json(world(), r, i), 201)


@bp.get(ISSUE)
@locked
def get_issue(owner, repo, issue_number):
    """GET one issue."""
    r = _repo(owner, repo)
    return respond(issue_json(world(), r, ops.get_issue(r, issue_number)))


@bp.patch(ISSUE)
@locked
def update_issue(owner, repo, issue_number):
    """PATCH an issue. Without triage rights only the author's title/body/state edits apply."""
    r = _repo(owner, repo)
    i = ops.get_issue(r, issue_number)
    who, fields = actor(), body()
    if _role(r) not in ops.TRIAGE_ROLES:
        if who is not i.user:
            raise ApiError(403, "Must have admin rights to Repository.")
        fields = {k: v for k, v in fields.items() if k in ("title", "body", "state", "state_reason")}
    if i.pull is not None:
        from .ops_pulls import update_pull
        core = {k: fields.pop(k) for k in ("title", "body", "state") if k in fields}
        update_pull(world(), r, i, who, core)
        fields.pop("state_reason", None)
    ops.update_issue(world(), r, i, who, fields)
    return respond(issue_json(world(), r, i))


@bp.post(ISSUE + "/assignees")
@locked
def add_assignees(owner, repo, issue_number):
    """POST assignees: unassignable users are silently ignored (GitHub behaviour)."""
    r = _repo(owner, repo, "triage")
    i = ops.get_issue(r, issue_number)
    ops.add_assignees(world(), r, i, body().get("assignees") or [], actor())
    return respond(issue_json(world(), r, i), 201)


@bp.delete(ISSUE + "/assignees")
@locked
def remove_assignees(owner, repo, issue_number):
    """DELETE assignees."""
    r = _repo(owner, repo, "triage")
    i = ops.get_issue(r, issue_number)
    ops.remove_assignees(world(), r, i, body().get("assignees") or [], actor())
    return respond(issue_json(world(), r, i))


@bp.get(REPO + "/assignees/<assignee>")
@locked
def check_assignee(owner, repo, assignee):
    """GET assignees/{assignee}: 204 if assignable, 404 if not."""
    r = _repo(owner, repo)
    return respond(None, 204) if ops.assignable(world(), r, assignee) else respond(
        {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}, 404)


# -- events ---------------------------------------------------------------------------
@bp.get(ISSUE + "/events")
@locked
def list_events(owner, repo, issue_number):
    """GET an issue's events (oldest first), paginated: ``assigned`` and ``unassigned`` so far."""
    r = _repo(owner, repo)
    return paginate(list(ops.get_issue(r, issue_number).events), lambda e: issue_event_json(world(), r, e))


# -- comments -------------------------------------------------------------------------
@bp.get(ISSUE + "/comments")
@locked
def list_comments(owner, repo, issue_number):
    """GET an issue's comments (oldest first), ``since`` filter, paginated."""
    r = _repo(owner, repo)
    items = list(ops.get_issue(r, issue_number).comments)
    if request.args.get("since"):
        since = _parse_time(request.args["since"])
        items = [c for c in items if c.updated_at >= since]
    return paginate(items, lambda c: comment_json(world(), r, c))


@bp.post(ISSUE + "/comments")
@locked
def create_comment(owner, repo, issue_number):
    """POST a comment."""
    r = _repo(owner, repo)
    c = ops.create_comment(world(), r, ops.get_issue(r, issue_number), actor(), body().get("body"))
    return respond(comment_json(world(), r, c), 201)


COMMENT = REPO + "/issues/comments/<int:comment_id>"


@bp.get(COMMENT)
@locked
def get_comment(owner, repo, comment_id):
    """GET a comment."""
    r = _repo(owner, repo)
    return respond(comment_json(world(), r, ops.find_comment(r, comment_id)))


def _own_or_push(r, comment_id):
    c = ops.find_comment(r, comment_id)
    if c.user is not actor() and _role(r) not in ops.PUSH_ROLES:
        raise ApiError(403, "Must have push access to repository")
    return c


@bp.patch(COMMENT)
@locked
def update_comment(owner, repo, comment_id):
    """PATCH a comment (author or push access)."""
    r = _repo(owner, repo)
    _own_or_push(r, comment_id)
    c = ops.update_comment(world(), r, actor(), comment_id, body().get("body"))
    return respond(comment_json(world(), r, c))


@bp.delete(COMMENT)
@locked
def delete_comment(owner, repo, comment_id):
    """DELETE a comment (author or push access)."""
    r = _repo(owner, repo)
    _own_or_push(r, comment_id)
    ops.delete_comment(world(), r, actor(), comment_id)
    return respond(None, 204)


@bp.post(COMMENT + "/reactions")
@locked
def react_comment(owner, repo, comment_id):
    """POST a reaction to a comment: 201 new, 200 when it already existed."""
    r = _repo(owner, repo)
    x, created = ops.react(world(), ops.find_comment(r, comment_id).reactions, actor(), body().get("content"))
    return respond(reaction_json(world(), x), 201 if created else 200)


@bp.post(ISSUE + "/reactions")
@locked
def react_issue(owner, repo, issue_number):
    """POST a reaction to an issue: 201 new, 200 existing."""
    r = _repo(owner, repo)
    x, created = ops.react(world(), ops.get_issue(r, issue_number).reactions, actor(), body().get("content"))
    return respond(reaction_json(world(), x), 201 if created else 200)


# -- relations -------------------------------------------------------------------------
@bp.get(ISSUE + "/dependencies/blocked_by")
@locked
def blocked_by(owner, repo, issue_number):
    """GET the issues blocking this one."""
    r = _repo(owner, repo)
    ops.get_issue(r, issue_number)
    items = [r.issues[n] for n in r.blocked_by.get(issue_number, []) if n in r.issues]
    return paginate(items, lambda i: issue_json(world(), r, i))


@bp.get(ISSUE + "/sub_issues")
@locked
def sub_issues(owner, repo, issue_number):
    """GET this issue's sub-issues."""
    r = _repo(owner, repo)
    ops.get_issue(r, issue_number)
    items = [r.issues[n] for n in r.sub_issues.get(issue_number, []) if n in r.issues]
    return paginate(items, lambda i: issue_json(world(), r, i))


# -- labels --------------------------------------------------------------------------------
@bp.get(REPO + "/labels")
@locked
def list_labels(owner, repo):
    """GET labels."""
    r = _repo(owner, repo)
    return paginate(list(r.labels.values()), lambda lb: label_json(world(), r, lb))


@bp.post(REPO + "/labels")
@locked
def create_label(owner, repo):
    """POST labels: 422 already_exists on a duplicate name."""
    r = _repo(owner, repo, "write")
    b = body()
    lb = ops.create_label(world(), r, actor(), b.get("name"), b.get("color") or "ededed", b.get("description"))
    return respond(label_json(world(), r, lb), 201)


@bp.get(REPO + "/labels/<path:name>")
@locked
def get_label(owner, repo, name):
    """GET one label."""
    r = _repo(owner, repo)
    return respond(label_json(world(), r, ops.get_label(r, name)))


@bp.patch(REPO + "/labels/<path:name>")
@locked
def update_label(owner, repo, name):
    """PATCH a label (``new_name``, ``color``, ``description``)."""
    r = _repo(owner, repo, "write")
    lb = ops.update_label(world(), r, actor(), name, body())
    return respond(label_json(world(), r, lb))


def _label_names(b) -> list:
    raw = b if isinstance(b, list) else b.get("labels") or []
    return [ops._label_name(x) for x in raw]


@bp.post(ISSUE + "/labels")
@locked
def add_labels(owner, repo, issue_number):
    """POST labels to an issue; returns all its labels."""
    r = _repo(owner, repo, "triage")
    i = ops.get_issue(r, issue_number)
    for name in _label_names(body()):
        ops.add_label(world(), r, i, name, actor())
    return respond([label_json(world(), r, r.labels[n.lower()]) for n in i.labels])


@bp.put(ISSUE + "/labels")
@locked
def set_labels(owner, repo, issue_number):
    """PUT labels: replace an issue's labels."""
    r = _repo(owner, repo, "triage")
    i = ops.get_issue(r, issue_number)
    ops.set_labels(world(), r, i, _label_names(body()), actor())
    return respond([label_json(world(), r, r.labels[n.lower()]) for n in i.labels])


@bp.delete(ISSUE + "/labels/<path:name>")
@locked
def remove_label(owner, repo, issue_number, name):
    """DELETE a label from an issue; 404 when it is not on the issue."""
    r = _repo(owner, repo, "triage")
    i = ops.get_issue(r, issue_number)
    ops.remove_label(world(), r, i, name, actor())
    return respond([label_json(world(), r, r.labels[n.lower()]) for n in i.labels])


# -- milestones --------------------------------------------------------------------------------
@bp.get(REPO + "/milestones")
@locked
def list_milestones(owner, repo):
    """GET milestones (``state`` open/closed/all, sorted by due_on or completeness)."""
    r = _repo(owner, repo)
    state = request.args.get("state", "open")
    items = [m for m in r.milestones.values() if state == "all" or m.state == state]
    items.sort(key=lambda m: (m.due_on or "9999", m.number), reverse=request.args.get("direction") == "desc")
    return paginate(items, lambda m: milestone_json(world(), r, m))


@bp.post(REPO + "/milestones")
@locked
def create_milestone(owner, repo):
    """POST milestones."""
    r = _repo(owner, repo, "write")
    b = body()
    m = ops.create_milestone(world(), r, actor(), b.get("title"), b.get("state", "open"), b.get("description"),
                             b.get("due_on"))
    return respond(milestone_json(world(), r, m), 201)


@bp.get(REPO + "/milestones/<int:milestone_number>")
@locked
def get_milestone(owner, repo, milestone_number):
    """GET one milestone."""
    r = _repo(owner, repo)
    return respond(milestone_json(world(), r, ops.get_milestone(r, milestone_number)))


@bp.patch(REPO + "/milestones/<int:milestone_number>")
@locked
def update_milestone(owner, repo, milestone_number):
    """PATCH a milestone."""
    r = _repo(owner, repo, "write")
    m = ops.update_milestone(world(), r, actor(), milestone_number, body())
    return respond(milestone_json(world(), r, m))
