"""Safety nets run by ``fleet scheduler``: nothing stored is ever left unprocessed."""
from __future__ import annotations

import logging

import redis

from app import db, deliveries, runtime
from jobs.dispatch import enqueue_delivery

log = logging.getLogger("fleet.sweeper")


def sweep_deliveries(grace: float = 10, stuck: float = 600) -> list[str]:
    """Enqueue stored deliveries that were never queued (Redis was down), whose worker died,
    or that failed, with attempts left; park the ones whose worker died on every attempt (a
    payload that OOM-kills its worker is never re-queued). Returns the ids enqueued."""
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        parked = deliveries.park_dead(conn, stuck=stuck)
        if parked:
            log.warning("sweeper parked deliveries out of attempts", extra={"count": len(parked), "ids": parked[:10]})
        ids = deliveries.pending(conn, grace=grace, stuck=stuck)
        done = []
        for delivery_id in ids:
            try:
                enqueue_delivery(delivery_id)
            except redis.RedisError:
                log.warning("sweeper cannot reach Redis; will retry")
                break
            deliveries.mark_queued(conn, delivery_id)
            done.append(delivery_id)
    if done:
        log.info("sweeper enqueued deliveries", extra={"count": len(done)})
    return done
