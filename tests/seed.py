"""A small, known Fleet state in Postgres for the API, dashboard and metrics tests.

``octo/widgets`` is public, ``octo/secret`` private. In widgets: #1 done, #2 ready, #3 blocked
by #2, #4 claimed by ``bot-a``, #5 in review (PR #10, checks green), #6 queued (PR #11 in flight,
PR #12 waiting), #7 blocked by the private ``octo/secret#1``, which ``ghost`` holds.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.types.json import Jsonb

NOW = datetime.now(timezone.utc).replace(microsecond=0)  # refreshed by seed(): see there
WIDGETS, SECRET = 101, 102


def insert(conn: psycopg.Connection, table: str, **row) -> None:
    """Insert one row; columns not given take the schema's defaults."""
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    values = [Jsonb(v) if isinstance(v, dict) else v for v in row.values()]
    conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)


def task(conn: psycopg.Connection, number: int, title: str, repo_id: int = WIDGETS, **fields) -> None:
    insert(conn, "tasks", repo_id=repo_id, number=number, title=title,
           gh_updated_at=NOW - timedelta(hours=number), **fields)


def seed(conn: psycopg.Connection) -> None:
    global NOW
    # Taken now, not at import: a long suite must not age the seeded rows out of time windows.
    NOW = datetime.now(timezone.utc).replace(microsecond=0)
    """The state described in the module docstring."""
    insert(conn, "installations", id=1, account_login="octo", account_type="Organization")
    insert(conn, "repositories", id=WIDGETS, installation_id=1, full_name="octo/widgets")
    insert(conn, "repositories", id=SECRET, installation_id=1, full_name="octo/secret", private=True)
    insert(conn, "milestones", repo_id=WIDGETS, number=1, title="Foundation")

    task(conn, 1, "Set up CI", state="closed", estimate_hours=3, milestone_number=1, closed_at=NOW - timedelta(days=1))
    task(conn, 2, "Parser", estimate_hours=5, milestone_number=1, labels=["area:parser"], priority=1)
    task(conn, 3, "Renderer", estimate_hours=8, milestone_number=1)
    task(conn, 4, "Claimed work", estimate_hours=2)
    task(conn, 5, "Reviewed work", estimate_hours=1)
    task(conn, 6, "Queued work", estimate_hours=1)
    task(conn, 7, "Needs the secret", estimate_hours=1)
    task(conn, 1, "Secret plan", repo_id=SECRET, estimate_hours=4)
    for number, dep_repo, dep in ((2, "octo/widgets", 1), (3, "octo/widgets", 2), (7, "octo/secret", 1)):
        insert(conn, "dependencies", repo_id=WIDGETS, number=number, dep_full_name=dep_repo, dep_number=dep,
               source="body")

    for agent in ("bot-a", "bot-b", "ghost"):
        insert(conn, "agents", id=agent, login=agent, first_seen_at=NOW - timedelta(days=3))
    insert(conn, "claims", repo_id=WIDGETS, number=4, agent_id="bot-a", login="bot-a", claimed_by="bot-a",
           claimed_at=NOW - timedelta(hours=2), lease_expires_at=NOW + timedelta(hours=2),
           last_activity_at=NOW - timedelta(minutes=10), branch="fleet/4-claimed", progress=40)
    insert(conn, "claims", repo_id=WIDGETS, number=1, agent_id="bot-b", login="bot-b",
           claimed_at=NOW - timedelta(days=2), lease_expires_at=NOW - timedelta(days=1),
           last_activity_at=NOW - timedelta(days=1), released_at=NOW - timedelta(days=1), release_reason="completed")
    insert(conn, "claims", repo_id=WIDGETS, number=2, agent_id="bot-b", login="bot-b",
           claimed_at=NOW - timedelta(days=3), lease_expires_at=NOW - timedelta(days=2),
           last_activity_at=NOW - timedelta(days=2), released_at=NOW - timedelta(days=2), release_reason="expired")
    insert(conn, "claims", repo_id=SECRET, number=1, agent_id="ghost", login="ghost",
           claimed_at=NOW - timedelta(hours=1), lease_expires_at=NOW + timedelta(hours=3))
    insert(conn, "branches", repo_id=WIDGETS, name="fleet/4-claimed", head_sha="d" * 40, task_number=4,
           agent_id="bot-a", pushed_at=NOW - timedelta(minutes=20))

    for number, title, linked, sha in ((10, "Reviewed work", [5], "a" * 40), (11, "Queued work", [6], "b" * 40),
                                       (12, "Another", [], "c" * 40)):
        insert(conn, "pull_requests", repo_id=WIDGETS, number=number, title=title, author="bot-a", head_ref=f"b{number}",
               head_sha=sha, base_ref="main", linked_tasks=linked, mergeable=True, mergeable_state="clean")
    insert(conn, "check_runs", id=900, repo_id=WIDGETS, head_sha="a" * 40, name="ci", status="completed",
           conclusion="success", app_slug="sim-ci", completed_at=NOW - timedelta(minutes=5))
    insert(conn, "commit_statuses", repo_id=WIDGETS, sha="a" * 40, context="lint", state="success")
    insert(conn, "reviews", id=700, repo_id=WIDGETS, pr_number=10, reviewer="alice", state="APPROVED",
           submitted_at=NOW - timedelta(minutes=3))
    insert(conn, "queue_entries", repo_id=WIDGETS, base_ref="main", pr_number=12, priority=1, state="queued",
           queued_at=NOW - timedelta(minutes=30))
    insert(conn, "queue_entries", repo_id=WIDGETS, base_ref="main", pr_number=11, priority=1, state="waiting_checks",
           queued_at=NOW - timedelta(minutes=20), started_at=NOW - timedelta(minutes=15), head_sha="b" * 40)
    insert(conn, "queue_entries", repo_id=WIDGETS, base_ref="main", pr_number=9, state="merged",
           queued_at=NOW - timedelta(days=1), finished_at=NOW - timedelta(hours=20), outcome="merged")
    insert(conn, "queue_entries", repo_id=SECRET, base_ref="main", pr_number=3, state="queued")

    insert(conn, "deliveries", id="d-widgets-1", event="issues", action="opened", repo_id=WIDGETS,
           repo_full_name="octo/widgets", payload={}, status="processed", received_at=NOW - timedelta(minutes=9),
           started_at=NOW - timedelta(minutes=9) + timedelta(seconds=1),
           processed_at=NOW - timedelta(minutes=9) + timedelta(seconds=3))
    insert(conn, "deliveries", id="d-secret-1", event="issues", action="opened", repo_id=SECRET,
           repo_full_name="octo/secret", payload={}, status="failed", last_error="boom",
           received_at=NOW - timedelta(minutes=8))
    insert(conn, "evidence", at=NOW - timedelta(minutes=8), repo_id=WIDGETS, repo_full_name="octo/widgets",
           delivery_id="d-widgets-1", action="comment", target="#4", outcome="ok", status_code=201,
           detail={"kind": "claim"})
    insert(conn, "evidence", at=NOW - timedelta(minutes=7), repo_id=SECRET, repo_full_name="octo/secret",
           action="comment", target="#1", outcome="ok", status_code=201)

    # Three days of snapshots: 0, 0 and 3 hours done of 21 (the whole repository), one per day.
    for days, done in ((3, 0), (2, 0), (1, 3)):
        insert(conn, "progress_snapshots", repo_id=WIDGETS, taken_at=NOW - timedelta(days=days), epic="",
               tasks_total=7, tasks_done=1 if done else 0, hours_total=21, hours_done=done)
        insert(conn, "progress_snapshots", repo_id=WIDGETS, taken_at=NOW - timedelta(days=days), epic="m1",
               tasks_total=3, tasks_done=1 if done else 0, hours_total=16, hours_done=done)
