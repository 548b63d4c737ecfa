"""The RQ job that turns stored deliveries into task state.

HTTP -> verify -> store (webhooks/ingest.py) -> request_drain (jobs/dispatch.py) -> **drain_lane**
-> each due delivery of the lane, oldest first -> handler for ``event.action`` (webhooks/routes.py)
-> decision -> actions.

One drain job works through a lane (a repository) in order while it holds the lane, one
transaction per delivery: a burst on a repository costs one RQ job and one lock, not one each per
delivery. ``process_delivery`` runs a single delivery the same way (``fleet replay``).
"""
from __future__ import annotations

import logging
import time
from collections import Counter

from rq import get_current_job
from rq.timeouts import BaseTimeoutException

from app import db, deliveries, runtime
from app.deliveries import Delivery
from app.metrics import PROCESSING_SECONDS
from app.repos.registry import REPO_LOCK_TAKEN
from jobs.deferral import DEFER_MARGIN, deferral_time
from jobs.dispatch import DRAIN_SECONDS, drain_started, enqueue_drain, schedule_drain
from webhooks.context import EventContext, MalformedPayload, bind_logger
from webhooks.routes import ignore_reason, route

log = logging.getLogger("fleet.process")

# The delivery's row and its repository's lock (REPO_LOCK's) in one round trip. The lock is
# taken as the row is read, before the row lock is waited for; every run of a delivery takes the
# two in this order, so two runs of one delivery (a drain and ``fleet replay``) cannot deadlock.
LOCK_DELIVERY = f"""
SELECT status, CASE WHEN repo_id IS NOT NULL THEN {REPO_LOCK_TAKEN.format(repo_id="repo_id")}::text END AS locked
FROM deliveries WHERE id = %s FOR UPDATE
"""
# Held by the one drain working through a lane, for the session (a worker that dies lets go).
HOLD_LANE = "SELECT pg_try_advisory_lock(hashtextextended('fleet-lane:' || %s::text, 0)) AS held"
LET_GO_LANE = "SELECT pg_advisory_unlock(hashtextextended('fleet-lane:' || %s::text, 0))"
# Deliveries read per query while draining.
DRAIN_BATCH = 50


def drain_lane(lane: int, resume_at: float | None = None) -> dict[str, int]:
    """Run the lane's due deliveries in order until none is left, a deferred one bars the way, or
    DRAIN_SECONDS have passed (a fresh job then takes the lane over). Another drain of the same
    lane running at the time does the work instead; returns the outcomes counted.

    ``resume_at``: the time a deferred or failed delivery of the lane was scheduled to run again;
    RQ's scheduler starts this job then, and a deferred delivery due by then runs."""
    settings = runtime.settings()
    drain_started(lane)
    job = get_current_job()
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + DRAIN_SECONDS
    # The drain's commits are asynchronous: everything it writes is derived from deliveries that
    # ingest committed durably, and a delivery whose result a Postgres crash lost is simply run
    # again, as after a worker that died mid-delivery. Waiting for the disk was a third of the
    # delivery path's cost (bench_processing: ~800 -> ~1,200 deliveries/s without handlers).
    with db.pooled(settings.database_url) as conn, db.asynchronous_commit(conn):
        # Whoever holds the lane re-checks it after letting go, so a delivery stored while this
        # drain was being turned away is never left behind.
        while conn.execute(HOLD_LANE, (lane,)).fetchone()["held"]:
            try:
                # The scheduler starts this job a margin after that time (jobs.deferral.run_at).
                now = max(time.time(), (resume_at or 0.0) + DEFER_MARGIN)
                ended = _drain_held(conn, lane, settings, job.id if job else None, outcomes, deadline, now)
            finally:
                conn.execute(LET_GO_LANE, (lane,))
            if ended == "time":
                enqueue_drain(lane)
                break
            if ended == "blocked" or not _runnable(deliveries.due_in_lane(conn, lane, 1, now), now):
                break
    if lane and outcomes["processed"]:
        # Once per drain, not per batch: a status issue rendered in the middle of a burst (a plan
        # import) shows half of it, and its next edit waits ``status.min_interval``.
        _request_status(lane)
    return dict(outcomes)


def _drain_held(conn, lane: int, settings, job_id: str | None, outcomes: Counter, deadline: float,
                now: float) -> str:
    """Drain while holding the lane: "empty", "blocked" (a deferred delivery waits for its time;
    its scheduled drain resumes the lane) or "time"."""
    while True:
        batch = deliveries.due_in_lane(conn, lane, DRAIN_BATCH, now)
        if not batch:
            return "empty"
        ran: list[Delivery] = []
        try:
            for due in batch:
                if due.waits(now):
                    return "blocked"
                started = deliveries.start_run(conn, due.delivery)
                outcome = "skipped" if started is None else _run_in_drain(started, conn, settings, job_id)
                outcomes[outcome] += 1
                ran.append(due.delivery)
                if outcome == "deferred":
                    return "blocked"
                if time.monotonic() >= deadline:
                    return "time"
        finally:
            _announce(ran)


def _runnable(oldest: list[deliveries.Due], now: float) -> bool:
    """Whether a drain would run the lane's oldest due delivery now."""
    return bool(oldest) and not oldest[0].waits(now)


def _run_in_drain(delivery: Delivery, conn, settings, job_id: str | None) -> str:
    try:
        return _process(delivery, conn, settings, job_id, ordered=True)
    except BaseTimeoutException:
        raise  # the job's time is up: the delivery counted its attempt and is retried later
    except Exception:
        return "failed"  # recorded, logged and scheduled for a retry by _process


def process_delivery(delivery_id: str) -> str:
    """Process one delivery now; returns its final status. Safe to run twice for the same id.
    It waits (deferred) behind an older deferred delivery of its repository."""
    settings = runtime.settings()
    job = get_current_job()
    with db.pooled(settings.database_url) as conn:
        delivery = deliveries.start_processing(conn, delivery_id)
        if delivery is None:
            return "skipped"
        outcome = _process(delivery, conn, settings, job.id if job else None, ordered=False)
    if delivery.repo_id is not None and outcome in ("processed", "ignored"):
        _announce([delivery])
        _request_status(delivery.repo_id)
    return outcome


def _process(delivery: Delivery, conn, settings, job_id: str | None, *, ordered: bool) -> str:
    """One run of a started delivery in its own transaction. ``ordered``: the caller runs its
    lane in order, so no older delivery of the repository can be waiting."""
    logger = bind_logger(log, delivery_id=delivery.id, event=delivery.key, repo=delivery.repo_full_name, job_id=job_id)
    handler = route(delivery.event, delivery.action)
    started = time.perf_counter()
    ctx = EventContext(delivery, conn, settings, logger, job_id)
    try:
        with conn.transaction():
            row = conn.execute(LOCK_DELIVERY, (delivery.id,)).fetchone()
            if row is None or row["status"] in ("processed", "ignored"):
                return "skipped"
            if delivery.repo_id is not None:
                ahead = None if ordered else deliveries.deferred_ahead(conn, delivery.id)
                if ahead is not None:
                    # A margin after the older one, so it runs first.
                    raise WaitingBehind(ahead + DEFER_MARGIN)
            if handler is None:
                status = "ignored"
                deliveries.finish(conn, delivery.id, status, ignore_reason(delivery.event, delivery.action))
            else:
                status = "processed"
                handler(ctx)
                deliveries.finish(conn, delivery.id, status)
        _run_after_commit(ctx)
        logger.info(f"delivery {status}")
        return status
    except MalformedPayload as exc:
        # Retrying cannot fix a payload: park it with the reason.
        _record_failure(settings.database_url, delivery, str(exc), final=True)
        logger.warning("delivery malformed: %s", exc)
        return "failed"
    except WaitingBehind as exc:
        _defer(settings.database_url, delivery, exc.retry_at, deliveries.WAITING_BEHIND_REASON)
        logger.info("delivery deferred behind an older one of its repository")
        return "deferred"
    except Exception as exc:
        retry_at = deferral_time(exc)
        if retry_at is not None:
            # The transaction rolled back; GitHub writes already made are repeated safely
            # (comments carry dedupe markers, labels and assignees are set, not toggled).
            _defer(settings.database_url, delivery, retry_at, f"{type(exc).__name__}: {exc}")
            logger.info("delivery deferred: %s", exc)
            return "deferred"
        _record_failure(settings.database_url, delivery, f"{type(exc).__name__}: {exc}", final=False)
        logger.exception("delivery failed")
        raise
    finally:
        PROCESSING_SECONDS.labels(delivery.event).observe(time.perf_counter() - started)
        ctx.close()


def _run_after_commit(ctx: EventContext) -> None:
    for action in ctx.after_commit:
        try:
            action()
        except Exception:
            # Deferred work is an optimisation (periodic reconciliation covers it); the
            # delivery itself is processed.
            ctx.log.exception("deferred action failed")


def _announce(ran: list[Delivery]) -> None:
    """Once per batch of a repository: dashboards re-read state on any change."""
    done = [d for d in ran if d.repo_id is not None]
    if not done:
        return
    from app.events_stream import publish

    last = done[-1]
    try:
        publish("delivery.processed", last.repo_full_name, {"event": last.key, "id": last.id, "count": len(done)})
    except Exception:
        log.exception("dashboards not told; they re-read state periodically")


def _request_status(repo_id: int) -> None:
    """The status issue coalesces its own updates (jobs/status.py)."""
    from jobs.status import request_update

    try:
        request_update(repo_id)
    except Exception:
        log.exception("the status issue not told; the periodic refresh catches up")


class WaitingBehind(Exception):
    """An older delivery of the same repository is deferred: this one must not overtake it."""

    def __init__(self, retry_at: float):
        super().__init__(f"an older delivery of this repository runs at {retry_at:.0f}")
        self.retry_at = retry_at


def _defer(database_url: str, delivery: Delivery, retry_at: float, reason: str) -> None:
    """Park the delivery until ``retry_at`` and have RQ's scheduler drain its lane then; the
    worker goes on with other lanes. If Redis refuses, the sweeper re-queues it once its time is
    long past."""
    with db.pooled(database_url) as conn:
        deliveries.defer(conn, delivery.id, retry_at, reason)
    _schedule(delivery, retry_at)


def _record_failure(database_url: str, delivery: Delivery, error: str, *, final: bool) -> None:
    """A retryable failure (retried after a back-off; parked once it used the last attempt), or
    a final one (parked now)."""
    with db.pooled(database_url) as conn:
        if final:
            deliveries.park(conn, delivery.id, error)
            return
        retry_at = deliveries.fail(conn, delivery.id, error)
    if retry_at is not None:
        _schedule(delivery, retry_at)


def _schedule(delivery: Delivery, retry_at: float) -> None:
    try:
        schedule_drain(delivery.lane, retry_at)
    except Exception:
        log.warning("lane drain not scheduled (Redis unavailable); the sweeper will re-queue it",
                    extra={"delivery_id": delivery.id})
