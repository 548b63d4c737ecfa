"""Retention: the scheduler deletes what Fleet no longer needs, in bounded batches.

Finished deliveries (their payloads can be private and up to 25 MB), evidence rows and progress
snapshots older than ``FLEET_RETENTION_DAYS`` go. An unfinished delivery (received, queued,
processing or failed: it may still be processed or redelivered) is never deleted, and progress
snapshots are kept at least as far back as the ETA and burndown read them.

Each statement deletes at most ``BATCH`` rows, and one run at most ``BATCHES_PER_RUN`` batches a
table, so no run holds locks or fills the WAL for long; a backlog drains over a few runs.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from app import db, runtime
from app.status.snapshot import PROGRESS_HISTORY

log = logging.getLogger("fleet.retention")

BATCH = 1000
BATCHES_PER_RUN = 5

# Statuses after which a delivery is only history ('parked': given up on, kept for inspection).
FINISHED_DELIVERY_STATUSES = ("processed", "ignored", "parked")

DELETE_OLD_DELIVERIES = """
DELETE FROM deliveries WHERE id IN (
    SELECT id FROM deliveries WHERE status = ANY(%(statuses)s) AND received_at < %(cutoff)s LIMIT %(batch)s)
"""
DELETE_OLD_EVIDENCE = """
DELETE FROM evidence WHERE id IN (SELECT id FROM evidence WHERE at < %(cutoff)s LIMIT %(batch)s)
"""
DELETE_OLD_SNAPSHOTS = """
DELETE FROM progress_snapshots WHERE (repo_id, taken_at, epic) IN (
    SELECT repo_id, taken_at, epic FROM progress_snapshots WHERE taken_at < %(cutoff)s LIMIT %(batch)s)
"""


def cutoffs(now: datetime, retention_days: int) -> dict[str, datetime]:
    """Per table, the time before which rows go."""
    keep = timedelta(days=retention_days)
    return {
        "deliveries": now - keep,
        "evidence": now - keep,
        "progress_snapshots": now - max(keep, PROGRESS_HISTORY),
    }


def purge_old_rows(now: datetime | None = None, batch: int = BATCH, batches: int = BATCHES_PER_RUN) -> dict[str, int]:
    """One bounded retention pass (scheduler task); returns rows deleted per table."""
    settings = runtime.settings()
    limits = cutoffs(now or datetime.now(timezone.utc), settings.retention_days)
    statements = {
        "deliveries": DELETE_OLD_DELIVERIES,
        "evidence": DELETE_OLD_EVIDENCE,
        "progress_snapshots": DELETE_OLD_SNAPSHOTS,
    }
    deleted = dict.fromkeys(statements, 0)
    with db.connect(settings.database_url, autocommit=True) as conn:
        for table, statement in statements.items():
            params = {"cutoff": limits[table], "batch": batch, "statuses": list(FINISHED_DELIVERY_STATUSES)}
            for _ in range(batches):
                count = conn.execute(statement, params).rowcount
                deleted[table] += count
                if count < batch:
                    break
    if any(deleted.values()):
        log.info("old rows deleted", extra=deleted)
    return deleted
