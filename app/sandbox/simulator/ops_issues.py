"""Issues, comments, labels, milestones, assignees and reactions (with their webhooks)."""
from __future__ import annotations

import re

from . import events
from .errors import ApiError, not_found, validation
from .render import comment_json, issue_json, label_json, milestone_json, user_json
from .state import Comment, Issue, IssueEvent, Label, Milestone, Reaction, Repo, User, World

MAX_BODY = 65536
MAX_ASSIGNEES = 10
PUSH_ROLES = ("write", "maintain", "admin")
TRIAGE_ROLES = ("triage",) + PUSH_ROLES


def get_issue(r: Repo, number: int) -> Issue:
    """The issue (or pull request) ``number`` or a 404."""
    i = r.issues.get(number)
    if i is None:
        if number in r.deleted_issues:
            # GitHub keeps the number and answers 410 Gone for it, for reads and writes alike.
            raise ApiError(410, "This issue was deleted")
        raise not_found()
    return i


def emit_issue(world: World, r: Repo, i: Issue, action: str, sender: User, **extra) -> None:
    """Emit ``issues.<action>``, or ``pull_request.<action>`` when ``i`` is a pull request."""
    if i.pull is not None:
        from .ops_pulls import pr_webhook_json
        events.emit(world, r, "pull_request", {"action": action, "number": i.number,
                                                 "pull_request": pr_webhook_json(world, r, i), **extra}, sender)
    else:
        events.emit(world, r, "issues", {"action": action, "issue": issue_json(world, r, i), **extra}, sender)


def _check_body(body, resource="Issue"):
    if body is not None and len(body) > MAX_BODY:
        raise validation(resource, "body", "custom", "body is too long (maximum is 65536 characters)")


def can_push(world: World, r: Repo, login: str) -> bool:
    """Whether ``login`` has push access."""
    return world.permission(r, login) in PUSH_ROLES


def assignable(world: World, r: Repo, login: str, issue: Issue | None = None) -> bool:
    """GitHub's rule: push access, or (for a given issue) having commented on it."""
    if login.lower() not in world.users:
        return False
    if can_push(world, r, login) and not login.endswith("[bot]"):
        return True
    return issue is not None and any(c.user.login.lower() == login.lower() for c in issue.comments)


def create_issue(world: World, r: Repo, actor: User, title: str, body: str | None = None,
                 labels=(), assignees=(), milestone: int | None = None, pull=None) -> Issue:
    """Open an issue (or the issue half of a PR); emits opened, then labeled/assigned/milestoned."""
    if not title or not str(title).strip():
        raise validation("Issue", "title", "missing_field")
    _check_body(body)
    now = world.now()
    i = Issue(id=world.new_id(), number=r.next_number, title=str(title), user=actor, created_at=now,
              updated_at=now, body=body, pull=pull, app=_app_of(world, actor))
    r.next_number += 1
    r.issues[i.number] = i
    triager = world.permission(r, actor.login) in TRIAGE_ROLES
    if milestone is not None and triager:
        _require_milestone(r, milestone)
        i.milestone = milestone
    emit_issue(world, r, i, "opened", actor)
    if triager:
        for name in labels:
            add_label(world, r, i, name, actor)
        _assign(world, r, i, [str(a) for a in assignees], actor)
        if i.milestone is not None:
            emit_issue(world, r, i, "milestoned", actor, milestone=milestone_json(world, r, r.milestones[milestone]))
    return i


def _app_of(world: World, actor: User):
    return next((a for a in world.apps.values() if a.bot is actor), None)


def _require_milestone(r: Repo, number):
    if number not in r.milestones:
        raise validation("Issue", "milestone", "invalid")


def update_issue(world: World, r: Repo, i: Issue, actor: User, fields: dict) -> Issue:
    """PATCH an issue: title/body (edited), state, labels, assignees, milestone."""
    changes = {}
    for key in ("title", "body"):
        if key in fields and fields[key] != getattr(i, key):
            if key == "title" and not fields[key]:
                raise validation("Issue", "title", "missing_field")
            if key == "body":
                _check_body(fields[key])
            changes[key] = {"from": getattr(i, key) or ""}
            setattr(i, key, fields[key])
    if "milestone" in fields and fields["milestone"] is not None:
        _require_milestone(r, int(fields["milestone"]))
    if changes:
        touch(world, i)
        emit_issue(world, r, i, "edited", actor, changes=changes)
    if "state" in fields or "state_reason" in fields:
        set_state(world, r, i, actor, fields.get("state", i.state), fields.get("state_reason"))
    if "labels" in fields and fields["labels"] is not None:
        set_labels(world, r, i, [_label_name(x) for x in fields["labels"]], actor)
    if "assignees" in fields or "assignee" in fields:
        wanted = fields.get("assignees")
        if wanted is None:
            wanted = [fields["assignee"]] if fields.get("assignee") else []
        set_assignees(world, r, i, wanted, actor)
    if "milestone" in fields:
        set_milestone(world, r, i, fields["milestone"], actor)
    return i


def _label_name(x) -> str:
    return x["name"] if isinstance(x, dict) else str(x)


def touch(world: World, i: Issue) -> None:
    """Bump ``updated_at`` (strictly increasing, so clients can order updates)."""
    i.updated_at = max(world.now(), i.updated_at + 1e-3)


def set_state(world: World, r: Repo, i: Issue, actor: User, state: str, reason: str | None = None) -> None:
    """Close or reopen; emits closed / reopened."""
    if state == i.state:
        if reason and state == "closed" and reason != i.state_reason:
            i.state_reason = reason
            touch(world, i)
        return
    now = world.now()
    i.state = state
    if state == "closed":
        i.state_reason = reason or "completed"
        i.closed_at, i.closed_by = now, actor
    else:
        i.state_reason = "reopened"
        i.closed_at = None
    touch(world, i)
    emit_issue(world, r, i, "closed" if state == "closed" else "reopened", actor)


# -- labels -------------------------------------------------------------------
def create_label(world: World, r: Repo, actor: User, name: str, color: str = "ededed",
                 description: str | None = None) -> Label:
    """Create a repository label; 422 already_exists; emits label.created."""
    if not name:
        raise validation("Label", "name", "missing_field")
    if name.lower() in r.labels:
        raise validation("Label", "name", "already_exists")
    lb = Label(world.new_id(), name, (color or "ededed").lstrip("#").lower(), description)
    r.labels[name.lower()] = lb
    events.emit(world, r, "label", {"action": "created", "label": label_json(world, r, lb)}, actor)
    return lb


def get_label(r: Repo, name: str) -> Label:
    """The label ``name`` (case-insensitive) or 404."""
    lb = r.labels.get(name.lower())
    if lb is None:
        raise not_found()
    return lb


def update_label(world: World, r: Repo, actor: User, name: str, fields: dict) -> Label:
    """Rename / recolour / redescribe a label; emits label.edited with ``changes``."""
    lb = get_label(r, name)
    changes = {}
    new_name = fields.get("new_name") or fields.get("name")
    if new_name and new_name != lb.name:
        if new_name.lower() in r.labels and new_name.lower() != lb.name.lower():
            raise validation("Label", "name", "already_exists")
        changes["name"] = {"from": lb.name}
        del r.labels[lb.name.lower()]
        for i in r.issues.values():
            i.labels = [new_name if n.lower() == lb.name.lower() else n for n in i.labels]
        lb.name = new_name
        r.labels[new_name.lower()] = lb
    if fields.get("color") and fields["color"].lstrip("#").lower() != lb.color:
        changes["color"] = {"from": lb.color}
        lb.color = fields["color"].lstrip("#").lower()
    if "description" in fields and fields["description"] != lb.description:
        changes["description"] = {"from": lb.description or ""}
        lb.description = fields["description"]
    if changes:
        events.emit(world, r, "label", {"action": "edited", "label": label_json(world, r, lb),
                                         "changes": changes}, actor)
    return lb


def delete_label(world: World, r: Repo, actor: User, name: str) -> None:
    """Delete a label and take it off every issue; emits label.deleted."""
    lb = get_label(r, name)
    del r.labels[lb.name.lower()]
    for i in r.issues.values():
        i.labels = [n for n in i.labels if n.lower() != lb.name.lower()]
    events.emit(world, r, "label", {"action": "deleted", "label": label_json(world, r, lb)}, actor)


def add_label(world: World, r: Repo, i: Issue, name: str, actor: User) -> None:
    """Put a label on an issue (creating the label if needed); emits labeled."""
    if name.lower() not in r.labels:
        create_label(world, r, actor, name)
    lb = r.labels[name.lower()]
    if any(n.lower() == lb.name.lower() for n in i.labels):
        return
    i.labels.append(lb.name)
    touch(world, i)
    emit_issue(world, r, i, "labeled", actor, label=label_json(world, r, lb))


def remove_label(world: World, r: Repo, i: Issue, name: str, actor: User) -> None:
    """Take a label off an issue; 404 "Label does not exist" if it is not on it; emits unlabeled."""
    current = next((n for n in i.labels if n.lower() == name.lower()), None)
    if current is None:
        raise ApiError(404, "Label does not exist")
    i.labels.remove(current)
    touch(world, i)
    lb = r.labels.get(current.lower())
    emit_issue(world, r, i, "unlabeled", actor, label=label_json(world, r, lb) if lb else {"name": current})


def set_labels(world: World, r: Repo, i: Issue, names: list, actor: User) -> None:
    """Replace the issue's labels (unlabeled for removed, labeled for added)."""
    wanted = {n.lower() for n in names}
    for n in list(i.labels):
        if n.lower() not in wanted:
            remove_label(world, r, i, n, actor)
    for n in names:
        add_label(world, r, i, n, actor)


# -- assignees ------------------------------------------------------------------
def _assign(world: World, r: Repo, i: Issue, logins: list, actor: User) -> None:
    for login in logins:
        if len(i.assignees) >= MAX_ASSIGNEES:
            break
        if any(u.login.lower() == login.lower() for u in i.assignees):
            continue
        if not assignable(world, r, login, i):
            continue  # GitHub silently ignores assignees it cannot assign
        u = world.users[login.lower()]
        i.assignees.append(u)
        touch(world, i)
        _record_event(world, i, "assigned", actor, u)
        emit_issue(world, r, i, "assigned", actor, assignee=user_json(world, u))


def _unassign(world: World, r: Repo, i: Issue, logins: list, actor: User) -> None:
    for login in logins:
        u = next((a for a in i.assignees if a.login.lower() == login.lower()), None)
        if u is None:
            continue
        i.assignees.remove(u)
        touch(world, i)
        _record_event(world, i, "unassigned", actor, u)
        emit_issue(world, r, i, "unassigned", actor, assignee=user_json(world, u))


def _record_event(world: World, i: Issue, kind: str, actor: User, assignee: User) -> None:
    """The issue-events entry GitHub records with the webhook (same moment, its own id)."""
    i.events.append(IssueEvent(world.new_id(), kind, actor, world.now(), assignee, _app_of(world, actor)))


def add_assignees(world: World, r: Repo, i: Issue, logins: list, actor: User) -> None:
    """POST assignees: adds the assignable ones (max 10 in total)."""
    _assign(world, r, i, [str(x) for x in logins], actor)


def remove_assignees(world: World, r: Repo, i: Issue, logins: list, actor: User) -> None:
    """DELETE assignees."""
    _unassign(world, r, i, [str(x) for x in logins], actor)


def set_assignees(world: World, r: Repo, i: Issue, logins: list, actor: User) -> None:
    """Replace assignees (PATCH issue with ``assignees``)."""
    logins = [str(x) for x in logins if x]
    wanted = {x.lower() for x in logins}
    _unassign(world, r, i, [u.login for u in i.assignees if u.login.lower() not in wanted], actor)
    _assign(world, r, i, logins, actor)


# -- milestones -----------------------------------------------------------------
def set_milestone(world: World, r: Repo, i: Issue, number, actor: User) -> None:
    """Attach / detach a milestone; emits milestoned / demilestoned."""
    number = int(number) if number is not None else None
    if number == i.milestone:
        return
    old = i.milestone
    i.milestone = number
    touch(world, i)
    if old is not None and number is None:
        emit_issue(world, r, i, "demilestoned", actor, milestone=milestone_json(world, r, r.milestones.get(old)))
    if number is not None:
        emit_issue(world, r, i, "milestoned", actor, milestone=milestone_json(world, r, r.milestones[number]))


def create_milestone(world: World, r: Repo, actor: User, title: str, state: str = "open",
                     description: str | None = None, due_on: str | None = None) -> Milestone:
    """Create a milestone; 422 on a duplicate title; emits milestone.created."""
    if not title:
        raise validation("Milestone", "title", "missing_field")
    if any(m.title == title for m in r.milestones.values()):
        raise validation("Milestone", "title", "already_exists")
    now = world.now()
    m = Milestone(world.new_id(), r.next_milestone, title, actor, now, now, description, "open", due_on)
    r.next_milestone += 1
    r.milestones[m.number] = m
    events.emit(world, r, "milestone", {"action": "created", "milestone": milestone_json(world, r, m)}, actor)
    if state == "closed":  # created-closed arrives as created (open) then closed
        update_milestone(world, r, actor, m.number, {"state": "closed"})
    return m


def get_milestone(r: Repo, number: int) -> Milestone:
    """The milestone or 404."""
    m = r.milestones.get(number)
    if m is None:
        raise not_found()
    return m


def update_milestone(world: World, r: Repo, actor: User, number: int, fields: dict) -> Milestone:
    """Edit a milestone; emits edited (with ``changes``) and/or closed / opened."""
    m = get_milestone(r, number)
    changes = {}
    for key in ("title", "description", "due_on"):
        if key in fields and fields[key] != getattr(m, key):
            changes[key] = {"from": getattr(m, key) or ""}
            setattr(m, key, fields[key])
    m.updated_at = world.now()
    if changes:
        events.emit(world, r, "milestone", {"action": "edited", "milestone": milestone_json(world, r, m),
                                             "changes": changes}, actor)
    state = fields.get("state")
    if state and state != m.state:
        m.state = state
        m.closed_at = world.now() if state == "closed" else None
        events.emit(world, r, "milestone", {"action": "closed" if state == "closed" else "opened",
                                             "milestone": milestone_json(world, r, m)}, actor)
    return m


def delete_milestone(world: World, r: Repo, actor: User, number: int) -> None:
    """Delete a milestone (issues keep no milestone); emits milestone.deleted."""
    m = get_milestone(r, number)
    payload = milestone_json(world, r, m)
    del r.milestones[number]
    for i in r.issues.values():
        if i.milestone == number:
            i.milestone = None
    events.emit(world, r, "milestone", {"action": "deleted", "milestone": payload}, actor)


# -- comments -----------------------------------------------------------------------
def find_comment(r: Repo, comment_id: int) -> Comment:
    """The issue comment ``comment_id`` of this repository or 404."""
    for i in r.issues.values():
        for c in i.comments:
            if c.id == comment_id:
                return c
    raise not_found()


def create_comment(world: World, r: Repo, i: Issue, actor: User, body: str) -> Comment:
    """Comment on an issue or PR; emits issue_comment.created."""
    if not body:
        raise validation("IssueComment", "body", "missing_field")
    _check_body(body, "IssueComment")
    now = world.now()
    c = Comment(world.new_id(), i.number, actor, body, now, now, app=_app_of(world, actor))
    i.comments.append(c)
    touch(world, i)
    _emit_comment(world, r, c, "created", actor)
    return c


def _emit_comment(world, r, c, action, actor, **extra):
    i = r.issues[c.issue_number]
    events.emit(world, r, "issue_comment", {"action": action, "issue": issue_json(world, r, i),
                                             "comment": comment_json(world, r, c), **extra}, actor)


def update_comment(world: World, r: Repo, actor: User, comment_id: int, body: str) -> Comment:
    """Edit a comment's body; emits issue_comment.edited with ``changes.body.from``."""
    c = find_comment(r, comment_id)
    if not body:
        raise validation("IssueComment", "body", "missing_field")
    _check_body(body, "IssueComment")
    old = c.body
    c.body = body
    c.updated_at = world.now()
    if old != body:
        _emit_comment(world, r, c, "edited", actor, changes={"body": {"from": old}})
    return c


def delete_comment(world: World, r: Repo, actor: User, comment_id: int) -> None:
    """Delete a comment; emits issue_comment.deleted."""
    c = find_comment(r, comment_id)
    _emit_comment(world, r, c, "deleted", actor)
    r.issues[c.issue_number].comments.remove(c)


def delete_issue(world: World, r: Repo, actor: User, number: int) -> None:
    """Delete an issue (admins only on GitHub); emits issues.deleted. Its number then answers 410."""
    i = get_issue(r, number)
    if i.pull is not None:
        raise ApiError(422, "Pull requests cannot be deleted")
    emit_issue(world, r, i, "deleted", actor)
    del r.issues[number]
    r.deleted_issues.add(number)


# -- reactions ------------------------------------------------------------------------
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")


def react(world: World, target_reactions: list, actor: User, content: str) -> tuple[Reaction, bool]:
    """Add a reaction; returns (reaction, created). GitHub sends no webhook for reactions."""
    if content not in REACTIONS:
        raise validation("Reaction", "content", "invalid")
    for x in target_reactions:
        if x.user is actor and x.content == content:
            return x, False
    x = Reaction(world.new_id(), actor, content, world.now())
    target_reactions.append(x)
    return x, True


# -- closing keywords ---------------------------------------------------------------
CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE)


def closing_refs(text: str | None) -> list[int]:
    """Issue numbers referenced with a closing keyword (Closes/Fixes/Resolves #N)."""
    return sorted({int(n) for n in CLOSING.findall(text or "")})
