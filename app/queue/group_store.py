"""Merge groups in Postgres: ``queue_groups`` rows as ``queue.groups.QueueGroup``, the split
batch limits on ``queue_entries`` and the serial fallback of a queue.

Plain SQL in named functions; no GitHub calls and no decisions here.
"""
from __future__ import annotations

from datetime import datetime

import psycopg

from app.queue.groups import GROUP_BRANCH_PREFIX, LandedPull, QueueGroup

_GROUP_COLUMNS = "id, state, prs, pr_heads, parent_sha, head_sha, tested_since, broken, built_count, carriers, trees, squashed"
ACTIVE_GROUPS = f"""
SELECT {_GROUP_COLUMNS} FROM queue_groups
WHERE repo_id = %s AND base_ref = %s AND ended_at IS NULL ORDER BY id
"""
LEFT_BRANCHES = """
SELECT id FROM queue_groups
WHERE repo_id = %s AND base_ref = %s AND ended_at IS NOT NULL AND branch_deleted_at IS NULL ORDER BY id
"""
INSERT_GROUP = """
INSERT INTO queue_groups (repo_id, base_ref, state, prs, pr_heads, parent_sha, squashed)
VALUES (%s, %s, 'building', %s, %s, %s, %s)
RETURNING id
"""
NOTE_BUILT = """
UPDATE queue_groups SET prs = %s, pr_heads = %s, head_sha = %s, built_count = %s, carriers = %s, trees = %s
WHERE id = %s AND ended_at IS NULL
"""
# Queued PRs whose group landed (the entry is finished once GitHub was told what it must be).
LANDED_PULLS = """
SELECT DISTINCT ON (q.pr_number) q.pr_number, g.id, g.squashed, g.prs, g.pr_heads, g.carriers
FROM queue_entries q
JOIN queue_groups g ON g.repo_id = q.repo_id AND g.base_ref = q.base_ref AND g.outcome = 'landed'
    AND q.pr_number = ANY(g.prs) AND g.created_at >= q.queued_at
WHERE q.repo_id = %s AND q.base_ref = %s AND q.finished_at IS NULL
ORDER BY q.pr_number, g.id DESC
"""
MARK_BUILT = """
UPDATE queue_groups SET state = 'testing', prs = %s, pr_heads = %s, carriers = %s, head_sha = %s, tested_since = %s
WHERE id = %s AND ended_at IS NULL
"""
MARK_LANDING = "UPDATE queue_groups SET state = 'landing' WHERE id = %s AND ended_at IS NULL"
END_GROUPS = """
UPDATE queue_groups SET ended_at = %s, outcome = %s, detail = %s
WHERE id = ANY(%s) AND ended_at IS NULL
"""
BRANCH_DELETED = "UPDATE queue_groups SET branch_deleted_at = now() WHERE id = %s"
BREAK_GROUP = """
UPDATE queue_groups SET broken = %s WHERE repo_id = %s AND id = %s AND ended_at IS NULL RETURNING base_ref
"""
BASES_OF_HEAD = """
SELECT DISTINCT base_ref FROM queue_groups WHERE repo_id = %s AND head_sha = %s AND ended_at IS NULL
"""
SET_BATCH_LIMIT = """
UPDATE queue_entries SET batch_limit = %s
WHERE repo_id = %s AND pr_number = ANY(%s) AND finished_at IS NULL
"""
COUNT_RETRY = """
UPDATE queue_entries SET group_retries = group_retries + 1
WHERE repo_id = %s AND pr_number = ANY(%s) AND finished_at IS NULL
"""
ENTRY_MARKS = """
SELECT pr_number, batch_limit, group_retries FROM queue_entries
WHERE repo_id = %s AND base_ref = %s AND finished_at IS NULL AND (batch_limit IS NOT NULL OR group_retries > 0)
"""
FALLBACK = "SELECT reason, since FROM queue_serial_fallbacks WHERE repo_id = %s AND base_ref = %s"
FALL_BACK = """
INSERT INTO queue_serial_fallbacks (repo_id, base_ref, reason) VALUES (%s, %s, %s)
ON CONFLICT (repo_id, base_ref) DO UPDATE SET reason = EXCLUDED.reason, since = now()
"""
CLEAR_FALLBACKS = "DELETE FROM queue_serial_fallbacks WHERE repo_id = %s"


def _group(row: dict) -> QueueGroup:
    return QueueGroup(row["id"], tuple(row["prs"]), tuple(row["pr_heads"]), row["state"], row["parent_sha"],
                      row["head_sha"], row["tested_since"], row["broken"], row["built_count"],
                      tuple(row["carriers"]), tuple(row["trees"]), row["squashed"])


def active_groups(conn: psycopg.Connection, repo_id: int, base_ref: str) -> tuple[QueueGroup, ...]:
    """The queue's active groups, first (the next to land) to last."""
    return tuple(_group(r) for r in conn.execute(ACTIVE_GROUPS, (repo_id, base_ref)).fetchall())


def left_branches(conn: psycopg.Connection, repo_id: int, base_ref: str) -> tuple[int, ...]:
    """Ended groups whose branch Fleet has not deleted yet."""
    return tuple(r["id"] for r in conn.execute(LEFT_BRANCHES, (repo_id, base_ref)).fetchall())


def insert_group(conn: psycopg.Connection, repo_id: int, base_ref: str, prs: tuple[int, ...],
                 heads: tuple[str, ...], parent_sha: str, squashed: bool = False) -> int:
    """Record a group about to be built on ``parent_sha`` (its id names its branch)."""
    return conn.execute(INSERT_GROUP, (repo_id, base_ref, list(prs), list(heads), parent_sha, squashed)).fetchone()["id"]


def note_built(conn: psycopg.Connection, group: QueueGroup) -> None:
    """Progress while building: the first ``built_count`` of ``prs`` are merged into the branch,
    which is at ``head_sha`` (a PR dequeued for a conflict is dropped from ``prs``)."""
    conn.execute(NOTE_BUILT, (list(group.prs), list(group.pr_heads), group.head_sha, group.built_count,
                              list(group.carriers), list(group.trees), group.id))


def mark_built(conn: psycopg.Connection, group: QueueGroup, now: datetime) -> None:
    """Built: CI is to run on ``head_sha``; ``carriers`` name each PR's commit on the group."""
    conn.execute(MARK_BUILT, (list(group.prs), list(group.pr_heads), list(group.carriers), group.head_sha, now,
                              group.id))


def landed_pulls(conn: psycopg.Connection, repo_id: int, base_ref: str) -> dict[int, LandedPull]:
    """Queued PRs whose group landed, not finished yet."""
    found = {}
    for row in conn.execute(LANDED_PULLS, (repo_id, base_ref)).fetchall():
        i = list(row["prs"]).index(row["pr_number"])
        carriers = list(row["carriers"])
        found[row["pr_number"]] = LandedPull(row["pr_number"], row["pr_heads"][i],
                                             carriers[i] if i < len(carriers) else "", row["id"], row["squashed"])
    return found


def mark_landing(conn: psycopg.Connection, group_id: int) -> None:
    conn.execute(MARK_LANDING, (group_id,))


def end_groups(conn: psycopg.Connection, group_ids: tuple[int, ...], outcome: str, detail: str,
               now: datetime) -> None:
    conn.execute(END_GROUPS, (now, outcome, detail[:500], list(group_ids)))


def branch_deleted(conn: psycopg.Connection, group_id: int) -> None:
    conn.execute(BRANCH_DELETED, (group_id,))


def group_id_of_branch(branch: str) -> int | None:
    """The group a ``fleet/queue/<base>/<id>`` branch belongs to."""
    if not branch.startswith(GROUP_BRANCH_PREFIX):
        return None
    tail = branch.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def break_group(conn: psycopg.Connection, repo_id: int, group_id: int, reason: str) -> str | None:
    """Mark an active group as unable to land; returns its base, or None when it is not active."""
    row = conn.execute(BREAK_GROUP, (reason, repo_id, group_id)).fetchone()
    return row["base_ref"] if row else None


def bases_with_group_head(conn: psycopg.Connection, repo_id: int, sha: str) -> list[str]:
    """The queues with an active group whose head is ``sha`` (its CI results step them)."""
    return [r["base_ref"] for r in conn.execute(BASES_OF_HEAD, (repo_id, sha)).fetchall()]


def set_batch_limit(conn: psycopg.Connection, repo_id: int, prs: tuple[int, ...], limit: int | None) -> None:
    """Cap the groups these PRs go in (None: ``queue.batch_size`` again)."""
    conn.execute(SET_BATCH_LIMIT, (limit, repo_id, list(prs)))


def count_retry(conn: psycopg.Connection, repo_id: int, prs: tuple[int, ...]) -> None:
    conn.execute(COUNT_RETRY, (repo_id, list(prs)))


def entry_marks(conn: psycopg.Connection, repo_id: int, base_ref: str) -> tuple[dict[int, int], dict[int, int]]:
    """(batch limit, group retries used) of the queue's entries that have one."""
    rows = conn.execute(ENTRY_MARKS, (repo_id, base_ref)).fetchall()
    return ({r["pr_number"]: r["batch_limit"] for r in rows if r["batch_limit"] is not None},
            {r["pr_number"]: r["group_retries"] for r in rows if r["group_retries"]})


def serial_fallback(conn: psycopg.Connection, repo_id: int, base_ref: str) -> tuple[str, datetime] | None:
    """(reason, since) when this queue fell back to serial; None when it has not."""
    row = conn.execute(FALLBACK, (repo_id, base_ref)).fetchone()
    return (row["reason"], row["since"]) if row else None


def fall_back(conn: psycopg.Connection, repo_id: int, base_ref: str, reason: str) -> None:
    conn.execute(FALL_BACK, (repo_id, base_ref, reason))


def clear_fallbacks(conn: psycopg.Connection, repo_id: int) -> None:
    """A new config: try groups again."""
    conn.execute(CLEAR_FALLBACKS, (repo_id,))
