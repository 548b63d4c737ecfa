"""Safety nets run by ``fleet scheduler``: nothing stored is ever left unprocessed."""
from __future__ import annotations

import logging

import redis

from app import db, deliveries, runtime
from jobs.dispatch import enqueue_drain

log = logging.getLogger("fleet.sweeper")

def sweep_deliveries(grace: float = 10, stuck: float = 600) -> list[str]:
    """Drain the lanes of stored deliveries that were never queued (Redis was down), whose worker
    died, or that failed, with attempts left; park the ones whose worker died on every attempt (a
    payload that OOM-kills its worker is never re-queued). Returns the ids it re-queued."""
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        parked = deliveries.park_dead(conn, stuck=stuck)
        if parked:
            log.warning("sweeper parked deliveries out of attempts", extra={"count": len(parked), "ids": parked[:10]})
        found = deliveries.pending(conn, grace=grace, stuck=stuck)
        if not found:
            return []
        ids = [delivery_id for delivery_id, _ in found]
        lanes = sorted({lane for _, lane in found})
        deliveries.release_stuck(conn, ids)
    try:
        for lane in lanes:
            enqueue_drain(lane)
    except redis.RedisError:
        log.warning("sweeper cannot reach Redis; will retry")
        return []
    log.info("sweeper enqueued deliveries", extra={"count": len(ids), "lanes": len(lanes)})
    return ids
