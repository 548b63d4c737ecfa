"""The merge queue in Postgres: ``queue_entries`` rows as ``queue.rules.QueueEntry``.

Plain SQL in named functions; no GitHub calls and no decisions here.
"""
from __future__ import annotations

from datetime import datetime

import psycopg

from app.github import held_writes
from app.queue.state import PRIORITY_RANK, QueueEntry, QueueSnapshot, positions

PRIORITY_NAME = {rank: name for name, rank in PRIORITY_RANK.items()}

_ENTRY_COLUMNS = """pr_number, queued_at, queued_by, priority, state, head_sha, started_at, attempts,
    expected_head_sha, sha_changed_at, update_requested_at, update_attempts, reevaluations, step_failures"""

ACTIVE_ENTRIES = f"""
SELECT {_ENTRY_COLUMNS} FROM queue_entries
WHERE repo_id = %s AND base_ref = %s AND finished_at IS NULL
ORDER BY id
"""
ACTIVE_ENTRY_OF_PR = f"""
SELECT base_ref, {_ENTRY_COLUMNS} FROM queue_entries
WHERE repo_id = %s AND pr_number = %s AND finished_at IS NULL
"""
# At most one active entry per PR (queue_one_active_per_pr): a second /queue is a no-op.
INSERT_ENTRY = """
INSERT INTO queue_entries (repo_id, base_ref, pr_number, priority, state, queued_by, queued_at)
VALUES (%s, %s, %s, %s, 'queued', %s, %s)
ON CONFLICT (repo_id, pr_number) WHERE finished_at IS NULL DO NOTHING
RETURNING id
"""
SAVE_ENTRY = """
UPDATE queue_entries SET priority = %(priority)s, state = %(state)s, head_sha = %(head_sha)s,
    started_at = %(started_at)s, attempts = %(attempts)s, expected_head_sha = %(expected_head_sha)s,
    sha_changed_at = %(head_changed_at)s, update_requested_at = %(update_requested_at)s,
    update_attempts = %(update_attempts)s, reevaluations = %(reevaluations)s, step_failures = %(step_failures)s,
    wake_at = %(wake_at)s,
    updated_at = now()
WHERE repo_id = %(repo_id)s AND pr_number = %(pr_number)s AND finished_at IS NULL
RETURNING id
"""
FINISH_ENTRY = """
UPDATE queue_entries SET state = %(state)s, finished_at = %(now)s, outcome = %(outcome)s, detail = %(detail)s,
    merge_commit_sha = %(merge_commit_sha)s, wake_at = NULL, updated_at = now()
WHERE repo_id = %(repo_id)s AND pr_number = %(pr_number)s AND finished_at IS NULL
RETURNING id
"""
ACTIVE_QUEUES = """
SELECT DISTINCT q.repo_id, q.base_ref FROM queue_entries q JOIN repositories r ON r.id = q.repo_id
WHERE q.finished_at IS NULL AND r.removed_at IS NULL
ORDER BY q.repo_id, q.base_ref
"""
FINISHED_ON_HEAD = """
SELECT 1 FROM queue_entries
WHERE repo_id = %s AND pr_number = %s AND finished_at IS NOT NULL AND outcome <> 'merged'
  AND (head_sha = %s OR expected_head_sha = %s)
LIMIT 1
"""

def queue_lock_key(repo_id: int, base_ref: str) -> str:
    return f"fleet-queue:{repo_id}:{base_ref}"


# --- queue entries ---------------------------------------------------------------------------

def _entry(row: dict) -> QueueEntry:
    return QueueEntry(
        pr_number=row["pr_number"], queued_at=row["queued_at"], queued_by=row["queued_by"] or "",
        priority=PRIORITY_NAME.get(row["priority"], "normal"),  # type: ignore[arg-type]
        state=row["state"], head_sha_at_start=row["head_sha"], started_at=row["started_at"],
        attempts=row["attempts"], expected_head_sha=row["expected_head_sha"],
        head_changed_at=row["sha_changed_at"], update_requested_at=row["update_requested_at"],
        update_attempts=row["update_attempts"], reevaluations=row["reevaluations"],
        step_failures=row["step_failures"],
    )


def load_queue(conn: psycopg.Connection, repo_id: int, full_name: str, base_ref: str) -> QueueSnapshot:
    """The active entries of one queue."""
    rows = conn.execute(ACTIVE_ENTRIES, (repo_id, base_ref)).fetchall()
    return QueueSnapshot(full_name, base_ref, tuple(_entry(r) for r in rows))


def active_entry(conn: psycopg.Connection, repo_id: int, pr_number: int) -> tuple[str, QueueEntry] | None:
    """(base_ref, entry) of the PR's unfinished entry, if it is queued anywhere."""
    row = conn.execute(ACTIVE_ENTRY_OF_PR, (repo_id, pr_number)).fetchone()
    return (row["base_ref"], _entry(row)) if row else None


def queue_place(conn: psycopg.Connection, repo_id: int, full_name: str, pr_number: int) -> tuple[int | None, int] | None:
    """(position, queue length) of the PR in its active queue, for the ``fleet/gates`` summary."""
    found = active_entry(conn, repo_id, pr_number)
    if found is None:
        return None
    queue = load_queue(conn, repo_id, full_name, found[0])
    return positions(queue).get(pr_number), len(queue.ordered())


def insert_entry(conn: psycopg.Connection, repo_id: int, base_ref: str, entry: QueueEntry) -> bool:
    """Add a queued entry; False when the PR already has an active one."""
    row = conn.execute(
        INSERT_ENTRY,
        (repo_id, base_ref, entry.pr_number, PRIORITY_RANK[entry.priority], entry.queued_by, entry.queued_at),
    ).fetchone()
    return row is not None


def save_entry(conn: psycopg.Connection, repo_id: int, entry: QueueEntry, wake_at: datetime | None = None) -> bool:
    """Persist the entry's row as ``transition`` returned it; False when it is no longer active
    (a person dequeued it meanwhile)."""
    row = conn.execute(SAVE_ENTRY, {
        "repo_id": repo_id, "pr_number": entry.pr_number, "priority": PRIORITY_RANK[entry.priority],
        "state": entry.state, "head_sha": entry.head_sha_at_start, "started_at": entry.started_at,
        "attempts": entry.attempts, "expected_head_sha": entry.expected_head_sha,
        "head_changed_at": entry.head_changed_at, "update_requested_at": entry.update_requested_at,
        "update_attempts": entry.update_attempts, "reevaluations": entry.reevaluations,
        "step_failures": entry.step_failures, "wake_at": wake_at,
    }).fetchone()
    return row is not None


def finish_entry(conn: psycopg.Connection, repo_id: int, entry: QueueEntry, now: datetime, outcome: str,
                 detail: str | None = None, merge_commit_sha: str | None = None) -> bool:
    """Close the entry (merged, failed or dequeued); False when it was already finished. A `/queue`
    acknowledgement not written yet is dropped: leaving the queue is the answer."""
    row = conn.execute(FINISH_ENTRY, {
        "repo_id": repo_id, "pr_number": entry.pr_number, "state": entry.state, "now": now,
        "outcome": outcome, "detail": detail, "merge_commit_sha": merge_commit_sha,
    }).fetchone()
    if row is not None:
        held_writes.drop_later_reactions(conn, repo_id, entry.pr_number)
    return row is not None


def active_queues(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(repo_id, base_ref) of every queue with unfinished entries."""
    return [(r["repo_id"], r["base_ref"]) for r in conn.execute(ACTIVE_QUEUES).fetchall()]


def left_queue_on_head(conn: psycopg.Connection, repo_id: int, pr_number: int, head_sha: str) -> bool:
    """True when the PR already left the queue without merging on this head (``queue.auto``
    must not put it straight back)."""
    return conn.execute(FINISHED_ON_HEAD, (repo_id, pr_number, head_sha, head_sha)).fetchone() is not None
