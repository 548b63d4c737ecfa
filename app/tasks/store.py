"""Tasks (one per issue), milestones (epics) and dependencies in Postgres.

Webhooks can arrive late and out of order: an issue update only applies when its GitHub
``updated_at`` is not older than what is stored.
"""
from __future__ import annotations


import psycopg

from app.repos.config import RepoConfig
from app.tasks.refs import TaskRef, is_task, parse_dependencies, parse_estimate, parse_priority
from app.github.models import Issue, Milestone, labels_of, logins_of

UPSERT_TASK = """
INSERT INTO tasks (repo_id, number, issue_id, node_id, title, body, state, state_reason, author, labels,
                   assignees, milestone_number, estimate_hours, priority, is_task, gh_created_at,
                   gh_updated_at, closed_at)
VALUES (%(repo_id)s, %(number)s, %(issue_id)s, %(node_id)s, %(title)s, %(body)s, %(state)s, %(state_reason)s,
        %(author)s, %(labels)s, %(assignees)s, %(milestone_number)s, %(estimate)s, %(priority)s,
        %(is_task)s, %(created_at)s, %(updated_at)s, %(closed_at)s)
ON CONFLICT (repo_id, number) DO UPDATE SET
    issue_id = EXCLUDED.issue_id, node_id = EXCLUDED.node_id, title = EXCLUDED.title, body = EXCLUDED.body,
    state = EXCLUDED.state, state_reason = EXCLUDED.state_reason, author = EXCLUDED.author,
    labels = EXCLUDED.labels, assignees = EXCLUDED.assignees, milestone_number = EXCLUDED.milestone_number,
    estimate_hours = EXCLUDED.estimate_hours, priority = EXCLUDED.priority, is_task = EXCLUDED.is_task,
    gh_created_at = EXCLUDED.gh_created_at, gh_updated_at = EXCLUDED.gh_updated_at,
    closed_at = EXCLUDED.closed_at, deleted_at = NULL, updated_at = now()
WHERE %(force)s OR tasks.gh_updated_at IS NULL OR EXCLUDED.gh_updated_at IS NULL
   OR EXCLUDED.gh_updated_at > tasks.gh_updated_at
RETURNING number
"""

DELETE_BODY_DEPS = "DELETE FROM dependencies WHERE repo_id = %s AND number = %s AND source = 'body'"
INSERT_DEP = """
INSERT INTO dependencies (repo_id, number, dep_full_name, dep_number, source)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
DELETE_DEP = """
DELETE FROM dependencies WHERE repo_id = %s AND number = %s AND lower(dep_full_name) = lower(%s)
  AND dep_number = %s AND source = %s
"""
MARK_DELETED = "UPDATE tasks SET deleted_at = now(), state = 'closed', updated_at = now() WHERE repo_id = %s AND number = %s"
SET_PARENT = "UPDATE tasks SET parent_number = %s, updated_at = now() WHERE repo_id = %s AND number = %s"

UPSERT_MILESTONE = """
INSERT INTO milestones (repo_id, number, title, description, state, due_on)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (repo_id, number) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description,
    state = EXCLUDED.state, due_on = EXCLUDED.due_on, updated_at = now()
"""
DELETE_MILESTONE = "DELETE FROM milestones WHERE repo_id = %s AND number = %s"

GET_TASK = "SELECT * FROM tasks WHERE repo_id = %s AND number = %s"


def upsert_milestone(conn: psycopg.Connection, repo_id: int, milestone: Milestone) -> None:
    conn.execute(
        UPSERT_MILESTONE,
        (repo_id, milestone.number, milestone.title, milestone.description, milestone.state, milestone.due_on),
    )


def delete_milestone(conn: psycopg.Connection, repo_id: int, number: int) -> None:
    conn.execute(DELETE_MILESTONE, (repo_id, number))


def upsert_task(conn: psycopg.Connection, repo_id: int, full_name: str, issue: Issue, config: RepoConfig,
                *, force: bool = False) -> bool:
    """Record the issue as a task; False when the stored row is as new or newer (a late event
    or a tie within GitHub's one-second ``updated_at``: see ``is_tie``). ``force`` applies anyway.

    The body's ``Depends on`` lines are re-derived on every applied update.
    """
    labels = labels_of(issue.labels)
    if issue.milestone is not None:
        upsert_milestone(conn, repo_id, issue.milestone)
    row = conn.execute(
        UPSERT_TASK,
        {
            "repo_id": repo_id,
            "number": issue.number,
            "issue_id": issue.id,
            "node_id": issue.node_id,
            "title": issue.title,
            "body": issue.body or "",
            "state": issue.state,
            "state_reason": issue.state_reason,
            "author": issue.user.login if issue.user else None,
            "labels": labels,
            "assignees": logins_of(issue.assignees),
            "milestone_number": issue.milestone.number if issue.milestone else None,
            "estimate": parse_estimate(labels, issue.body),
            "priority": parse_priority(labels),
            "is_task": is_task(labels, config.tasks),
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "force": force,
        },
    ).fetchone()
    if row is None:
        return False
    replace_body_dependencies(conn, repo_id, issue.number, parse_dependencies(issue.body, full_name), full_name)
    return True


def is_tie(conn: psycopg.Connection, repo_id: int, issue: Issue) -> bool:
    """The stored row has exactly this ``updated_at`` but says something else: the order of the
    two is unknown. (The same content in the same second is no conflict: often Fleet's own label
    write, already recorded, coming back as a webhook.)"""
    row = conn.execute(GET_TASK, (repo_id, issue.number)).fetchone()
    if row is None or issue.updated_at is None or row["gh_updated_at"] != issue.updated_at:
        return False
    return _content(row["title"], row["body"], row["state"], row["labels"], row["assignees"],
                    row["milestone_number"]) != _content(
        issue.title, issue.body or "", issue.state, labels_of(issue.labels), logins_of(issue.assignees),
        issue.milestone.number if issue.milestone else None)


def _content(title, body, state, labels, assignees, milestone) -> tuple:
    return (title, body, state, sorted(label.lower() for label in labels),
            sorted(login.lower() for login in assignees), milestone)


def replace_body_dependencies(
    conn: psycopg.Connection, repo_id: int, number: int, refs: list[TaskRef], full_name: str
) -> None:
    conn.execute(DELETE_BODY_DEPS, (repo_id, number))
    for ref in refs:
        if ref.repo_full_name.lower() == full_name.lower() and ref.number == number:
            continue  # "Depends on #self" is noise, not a cycle worth reporting
        conn.execute(INSERT_DEP, (repo_id, number, ref.repo_full_name, ref.number, "body"))


def set_dependency(
    conn: psycopg.Connection, repo_id: int, number: int, dep: TaskRef, source: str, present: bool
) -> None:
    """Add or remove one dependency edge (native GitHub relations and /block commands)."""
    if present:
        conn.execute(INSERT_DEP, (repo_id, number, dep.repo_full_name, dep.number, source))
    else:
        conn.execute(DELETE_DEP, (repo_id, number, dep.repo_full_name, dep.number, source))


def mark_deleted(conn: psycopg.Connection, repo_id: int, number: int) -> None:
    conn.execute(MARK_DELETED, (repo_id, number))


def set_parent(conn: psycopg.Connection, repo_id: int, number: int, parent: int | None) -> None:
    conn.execute(SET_PARENT, (parent, repo_id, number))


def get_task(conn: psycopg.Connection, repo_id: int, number: int) -> dict | None:
    return conn.execute(GET_TASK, (repo_id, number)).fetchone()


