"""The merge queue and the gates in Postgres: ``queue_entries`` rows as ``merge_queue.QueueEntry``,
``gate_runs`` (Fleet's ``fleet/gates`` check run per head), and ``PullSnapshot`` from the
recorded PR, review, check-run and commit-status rows.

Plain SQL in named functions; no GitHub calls and no decisions here.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from app import db
from app.gates.rules import CheckResult, PullSnapshot, Review
from app.queue.rules import PRIORITY_RANK, QueueEntry, QueueSnapshot

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

PULL = "SELECT * FROM pull_requests WHERE repo_id = %s AND number = %s"
REVIEWS = "SELECT reviewer, state, commit_id, submitted_at FROM reviews WHERE repo_id = %s AND pr_number = %s ORDER BY submitted_at NULLS FIRST, id"
CHECK_RUNS = """
SELECT id, name, status, conclusion, head_sha, url, app_slug, started_at FROM check_runs
WHERE repo_id = %s AND head_sha = %s ORDER BY id
"""
STATUSES = "SELECT context, state, sha, target_url, status_id, gh_updated_at FROM commit_statuses WHERE repo_id = %s AND sha = %s"

GATE_RUN = "SELECT check_run_id, digest, conclusion, pr_number FROM gate_runs WHERE repo_id = %s AND head_sha = %s"
UPSERT_GATE_RUN = """
INSERT INTO gate_runs (repo_id, head_sha, pr_number, check_run_id, digest, conclusion, evaluated_at)
VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (repo_id, head_sha) DO UPDATE SET pr_number = EXCLUDED.pr_number,
    check_run_id = coalesce(EXCLUDED.check_run_id, gate_runs.check_run_id),
    digest = EXCLUDED.digest, conclusion = EXCLUDED.conclusion, evaluated_at = now()
"""
# Open PRs whose gates were never published on their head, or still wait after `older_than` s.
STALE_GATES = """
SELECT p.repo_id, p.number, p.head_sha FROM pull_requests p
JOIN repositories r ON r.id = p.repo_id AND r.removed_at IS NULL
LEFT JOIN gate_runs g ON g.repo_id = p.repo_id AND g.head_sha = p.head_sha
WHERE p.state = 'open' AND p.head_sha IS NOT NULL
  AND (g.head_sha IS NULL OR (g.conclusion = 'waiting' AND g.evaluated_at < now() - make_interval(secs => %s)))
ORDER BY g.evaluated_at NULLS FIRST
LIMIT %s
"""


LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


@contextmanager
def advisory_lock(database_url: str, key: str, lock_timeout_s: float = 120) -> Iterator[None]:
    """Hold ``pg_advisory_xact_lock(key)`` for the block, in a transaction on a connection of its
    own, so the block may commit its work in several steps while keeping the lock. A worker
    that dies drops its connection and Postgres releases the lock at once."""
    conn = db.connect(database_url)
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            conn.execute(LOCK, (key,))
            yield
    finally:
        conn.close()


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
    """Close the entry (merged, failed or dequeued); False when it was already finished."""
    row = conn.execute(FINISH_ENTRY, {
        "repo_id": repo_id, "pr_number": entry.pr_number, "state": entry.state, "now": now,
        "outcome": outcome, "detail": detail, "merge_commit_sha": merge_commit_sha,
    }).fetchone()
    return row is not None


def active_queues(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(repo_id, base_ref) of every queue with unfinished entries."""
    return [(r["repo_id"], r["base_ref"]) for r in conn.execute(ACTIVE_QUEUES).fetchall()]


def left_queue_on_head(conn: psycopg.Connection, repo_id: int, pr_number: int, head_sha: str) -> bool:
    """True when the PR already left the queue without merging on this head (``queue.auto``
    must not put it straight back)."""
    return conn.execute(FINISHED_ON_HEAD, (repo_id, pr_number, head_sha, head_sha)).fetchone() is not None


# --- pull request snapshots ------------------------------------------------------------------

def check_results(conn: psycopg.Connection, repo_id: int, sha: str) -> tuple[CheckResult, ...]:
    """Recorded check runs and commit statuses on exactly ``sha``."""
    runs = [
        CheckResult(r["name"], "check_run", r["status"], r["conclusion"], r["head_sha"], r["url"], r["app_slug"],
                    r["started_at"], r["id"])
        for r in conn.execute(CHECK_RUNS, (repo_id, sha)).fetchall()
    ]
    statuses = [
        CheckResult.from_status(s["context"], s["state"], s["sha"], s["target_url"], updated_at=s["gh_updated_at"],
                                id=s["status_id"])
        for s in conn.execute(STATUSES, (repo_id, sha)).fetchall()
    ]
    return tuple(runs + statuses)


def reviews(conn: psycopg.Connection, repo_id: int, pr_number: int) -> tuple[Review, ...]:
    return tuple(
        Review(r["reviewer"], r["state"], r["commit_id"], r["submitted_at"])
        for r in conn.execute(REVIEWS, (repo_id, pr_number)).fetchall()
    )


def pull_snapshot(conn: psycopg.Connection, repo_id: int, full_name: str, number: int,
                  checks: tuple[CheckResult, ...] | None = None) -> PullSnapshot | None:
    """The PR as recorded, with its reviews and the checks on its head (``checks`` overrides
    the recorded ones, e.g. with a fresh list from GitHub)."""
    row = conn.execute(PULL, (repo_id, number)).fetchone()
    if row is None or not row["head_sha"]:
        return None
    head = row["head_sha"]
    return PullSnapshot(
        repo=full_name, number=number, head_sha=head, base_ref=row["base_ref"] or "", head_ref=row["head_ref"] or "",
        author=row["author"] or "", title=row["title"], body=row["body"], draft=row["draft"],
        state="open" if row["state"] == "open" else "closed", merged=row["merged"], mergeable=row["mergeable"],
        mergeable_state=row["mergeable_state"] or "unknown", labels=tuple(row["labels"]),
        linked_tasks=tuple(row["linked_tasks"]), changed_files=row["changed_files"] or 0,
        additions=row["additions"] or 0, deletions=row["deletions"] or 0,
        reviews=reviews(conn, repo_id, number),
        checks=check_results(conn, repo_id, head) if checks is None else checks,
        merge_commit_sha=row["merge_commit_sha"],
    )


# --- gate runs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateRun:
    check_run_id: int | None
    digest: str | None
    conclusion: str
    pr_number: int


def gate_run(conn: psycopg.Connection, repo_id: int, head_sha: str) -> GateRun | None:
    row = conn.execute(GATE_RUN, (repo_id, head_sha)).fetchone()
    return GateRun(row["check_run_id"], row["digest"], row["conclusion"], row["pr_number"]) if row else None


def store_gate_run(conn: psycopg.Connection, repo_id: int, head_sha: str, pr_number: int,
                   check_run_id: int | None, digest: str | None, conclusion: str) -> None:
    conn.execute(UPSERT_GATE_RUN, (repo_id, head_sha, pr_number, check_run_id, digest, conclusion))


def stale_gates(conn: psycopg.Connection, older_than: float, limit: int = 50) -> list[tuple[int, int, str]]:
    """(repo_id, number, head_sha) of open PRs whose gates should be evaluated again."""
    return [(r["repo_id"], r["number"], r["head_sha"]) for r in conn.execute(STALE_GATES, (older_than, limit)).fetchall()]
