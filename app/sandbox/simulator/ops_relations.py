"""Issue relations: dependencies (blocked by), sub-issues and pinning."""
from __future__ import annotations

from . import events
from .errors import ApiError, validation
from .ops_issues import emit_issue, get_issue
from .render import issue_json, repo_json
from .state import Issue, Repo, User, World

MAX_PINNED = 3


def add_blocked_by(world: World, r: Repo, number: int, blocker: int, sender: User) -> None:
    """Record that issue ``number`` is blocked by ``blocker``; emits issue_dependencies.blocked_by_added."""
    _relate(world, r, number, blocker, sender, r.blocked_by, "blocked_by_added")


def remove_blocked_by(world: World, r: Repo, number: int, blocker: int, sender: User) -> None:
    """Drop the dependency; emits issue_dependencies.blocked_by_removed."""
    _unrelate(world, r, number, blocker, sender, r.blocked_by, "blocked_by_removed")


def _relate(world, r, number, other, sender, table, action):
    issue, blocker = get_issue(r, number), get_issue(r, other)
    if number == other:
        raise validation("IssueDependency", "issue_id", "invalid", "an issue cannot block itself")
    if other in table.setdefault(number, []):
        return
    table[number].append(other)
    _emit_dependency(world, r, issue, blocker, sender, action)


def _unrelate(world, r, number, other, sender, table, action):
    issue, blocker = get_issue(r, number), get_issue(r, other)
    if other not in table.get(number, []):
        raise ApiError(404, "Not Found")
    table[number].remove(other)
    _emit_dependency(world, r, issue, blocker, sender, action)


def _emit_dependency(world, r, blocked: Issue, blocking: Issue, sender, action):
    events.emit(world, r, "issue_dependencies", {
        "action": action, "blocked_issue_id": blocked.id, "blocked_issue": issue_json(world, r, blocked),
        "blocking_issue_id": blocking.id, "blocking_issue": issue_json(world, r, blocking),
        "blocking_issue_repo": repo_json(world, r)}, sender, with_org=True)


def add_sub_issue(world: World, r: Repo, parent: int, child: int, sender: User) -> None:
    """Make ``child`` a sub-issue of ``parent``; emits sub_issues.sub_issue_added."""
    p, c = get_issue(r, parent), get_issue(r, child)
    for kids in r.sub_issues.values():
        if child in kids:
            raise validation("SubIssue", "sub_issue_id", "invalid", "issue already has a parent")
    r.sub_issues.setdefault(parent, []).append(child)
    _emit_sub(world, r, p, c, sender, "sub_issue_added")


def remove_sub_issue(world: World, r: Repo, parent: int, child: int, sender: User) -> None:
    """Detach a sub-issue; emits sub_issues.sub_issue_removed."""
    p, c = get_issue(r, parent), get_issue(r, child)
    if child not in r.sub_issues.get(parent, []):
        raise ApiError(404, "Not Found")
    r.sub_issues[parent].remove(child)
    _emit_sub(world, r, p, c, sender, "sub_issue_removed")


def _emit_sub(world, r, parent, child, sender, action):
    events.emit(world, r, "sub_issues", {
        "action": action, "sub_issue_id": child.id, "sub_issue": issue_json(world, r, child),
        "sub_issue_repo": repo_json(world, r), "parent_issue_id": parent.id,
        "parent_issue": issue_json(world, r, parent), "parent_issue_repo": repo_json(world, r)}, sender)


def pin_issue(world: World, r: Repo, i: Issue, sender: User) -> None:
    """Pin an issue (max 3 per repo); emits issues.pinned."""
    if i.number in r.pinned:
        return
    if len(r.pinned) >= MAX_PINNED:
        raise ApiError(422, "Repository already has 3 pinned issues")
    r.pinned.append(i.number)
    emit_issue(world, r, i, "pinned", sender)


def unpin_issue(world: World, r: Repo, i: Issue, sender: User) -> None:
    """Unpin an issue; emits issues.unpinned."""
    if i.number in r.pinned:
        r.pinned.remove(i.number)
        emit_issue(world, r, i, "unpinned", sender)
