"""The RQ job that turns one stored delivery into task state.

HTTP -> verify -> store (webhooks/ingest.py) -> enqueue -> **process_delivery** -> handler for
``event.action`` (webhooks/routes.py) -> decision -> actions.
"""
from __future__ import annotations

import logging
import time

from rq import get_current_job

from app import db, deliveries, runtime
from app.metrics import PROCESSING_SECONDS
from app.repos.registry import REPO_LOCK
from jobs.deferral import DEFER_MARGIN, deferral_time
from webhooks.context import EventContext, MalformedPayload, bind_logger
from webhooks.routes import ignore_reason, route

log = logging.getLogger("fleet.process")

LOCK_DELIVERY = "SELECT status FROM deliveries WHERE id = %s FOR UPDATE"


def process_delivery(delivery_id: str) -> str:
    """Process one delivery; returns its final status. Safe to run twice for the same id."""
    settings = runtime.settings()
    job = get_current_job()
    job_id = job.id if job else None
    with db.pooled(settings.database_url) as conn:
        delivery = deliveries.start_processing(conn, delivery_id)
    if delivery is None:
        return "skipped"
    logger = bind_logger(log, delivery_id=delivery.id, event=delivery.key, repo=delivery.repo_full_name, job_id=job_id)
    handler = route(delivery.event, delivery.action)
    started = time.perf_counter()
    with db.pooled(settings.database_url) as conn:
        return _process(delivery, conn, settings, logger, job_id, handler, started)


def _process(delivery, conn, settings, logger, job_id, handler, started) -> str:
    delivery_id = delivery.id
    ctx = EventContext(delivery, conn, settings, logger, job_id)
    try:
        with conn.transaction():
            row = conn.execute(LOCK_DELIVERY, (delivery_id,)).fetchone()
            if row is None or row["status"] in ("processed", "ignored"):
                return "skipped"
            if delivery.repo_id is not None:
                conn.execute(REPO_LOCK, (delivery.repo_id,))
                ahead = deliveries.deferred_ahead(conn, delivery_id)
                if ahead is not None:
                    # Scheduled a margin after the older one, so RQ's scheduler starts it first.
                    raise WaitingBehind(ahead + DEFER_MARGIN)
            if handler is None:
                status = "ignored"
                deliveries.finish(conn, delivery_id, status, ignore_reason(delivery.event, delivery.action))
            else:
                status = "processed"
                handler(ctx)
                deliveries.finish(conn, delivery_id, status)
        if handler is not None:
            _run_deferred(ctx)
        _hand_on(conn, delivery, logger)
        logger.info(f"delivery {status}")
        return status
    except MalformedPayload as exc:
        # Retrying cannot fix a payload: park it with the reason.
        _record_failure(settings.database_url, delivery_id, str(exc), final=True)
        logger.warning("delivery malformed: %s", exc)
        return "failed"
    except WaitingBehind as exc:
        _defer(settings.database_url, delivery_id, exc.retry_at, deliveries.WAITING_BEHIND_REASON)
        logger.info("delivery deferred behind an older one of its repository")
        return "deferred"
    except Exception as exc:
        retry_at = deferral_time(exc)
        if retry_at is not None:
            # The transaction rolled back; GitHub writes already made are repeated safely
            # (comments carry dedupe markers, labels and assignees are set, not toggled).
            _defer(settings.database_url, delivery_id, retry_at, f"{type(exc).__name__}: {exc}")
            logger.info("delivery deferred: %s", exc)
            return "deferred"
        _record_failure(settings.database_url, delivery_id, f"{type(exc).__name__}: {exc}", final=False)
        logger.exception("delivery failed")
        raise
    finally:
        PROCESSING_SECONDS.labels(delivery.event).observe(time.perf_counter() - started)
        ctx.close()


def _run_deferred(ctx: EventContext) -> None:
    if ctx.delivery.repo_id is not None:
        from app.events_stream import publish
        from jobs.status import request_update

        # Dashboards re-read state on any change; the status issue coalesces its own updates.
        ctx.after_commit.append(lambda: publish(
            "delivery.processed", ctx.delivery.repo_full_name, {"event": ctx.delivery.key, "id": ctx.delivery.id}))
        ctx.after_commit.append(lambda: request_update(ctx.delivery.repo_id))
    for action in ctx.after_commit:
        try:
            action()
        except Exception:
            # Deferred work is an optimisation (periodic reconciliation covers it); the
            # delivery itself is processed.
            ctx.log.exception("deferred action failed")


def _hand_on(conn, delivery, logger) -> None:
    """The next delivery of the repository that only waited for the order runs now, not at its
    scheduled time: deliveries deferred behind one another were scheduled a margin apart each
    (``jobs.deferral.DEFER_MARGIN``), so a backlog of them drained at one a second. Its scheduled
    run, later, finds it done. Only a delivery that ran before (deferred) can have others waiting
    behind it: a first run costs no query. Best effort: without Redis, the schedule still holds."""
    if delivery.repo_id is None or delivery.attempts <= 1:
        return
    from jobs.dispatch import enqueue_delivery

    try:
        waiting = deliveries.next_behind(conn, delivery.repo_id)
        if waiting is not None:
            enqueue_delivery(waiting)
    except Exception:
        logger.warning("next waiting delivery not handed on; it runs at its scheduled time")


class WaitingBehind(Exception):
    """An older delivery of the same repository is deferred: this one must not overtake it."""

    def __init__(self, retry_at: float):
        super().__init__(f"an older delivery of this repository runs at {retry_at:.0f}")
        self.retry_at = retry_at


def _defer(database_url: str, delivery_id: str, retry_at: float, reason: str) -> None:
    """Hand the delivery to RQ's scheduler for ``retry_at``; the worker goes on with other work.
    If Redis refuses, the sweeper re-queues it once its time is long past."""
    from jobs.dispatch import schedule_delivery

    with db.pooled(database_url) as conn:
        deliveries.defer(conn, delivery_id, retry_at, reason)
    try:
        schedule_delivery(delivery_id, retry_at)
    except Exception:
        log.warning("deferred delivery not scheduled (Redis unavailable); the sweeper will re-queue it")


def _record_failure(database_url: str, delivery_id: str, error: str, *, final: bool) -> None:
    """A retryable failure (parked once it used the last attempt), or a final one (parked now)."""
    with db.pooled(database_url) as conn:
        if final:
            deliveries.park(conn, delivery_id, error)
        else:
            deliveries.fail(conn, delivery_id, error)
