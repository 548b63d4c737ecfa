"""Putting work on RQ. Jobs take plain ids, never live objects.

Deliveries are not enqueued one by one: storing one raises its lane's flag (one Redis round trip),
and only the delivery that finds the flag down enqueues the lane's drain job, which lowers the flag
before it reads what is due. So a burst on one repository costs one job, and nothing stored after
the drain read its batch is missed: either the flag was still up (the drain had not read yet) or
the store raised it again and enqueued another drain.
"""
from __future__ import annotations

from app import runtime

# A drain stops taking new deliveries after this long and hands its lane to a fresh job at the
# back of the queue, so one busy repository cannot hold a worker while others wait.
DRAIN_SECONDS = 10.0
# A delivery's handlers take seconds; a drain still running after this is killed (the delivery it
# was on counts an attempt), so one poison delivery holds a worker for at most MAX_ATTEMPTS
# times this.
DRAIN_TIMEOUT_SECONDS = DRAIN_SECONDS + 120
# Long enough for any queue wait; it only matters when a drain was enqueued and then lost with
# Redis, and the sweeper picks up that lane's deliveries anyway.
FLAG_SECONDS = 120


def _flag(lane: int) -> str:
    return f"{runtime.settings().queue_name}:drain-pending:{lane}"


def _drain_job_options(lane: int) -> dict:
    return dict(job_timeout=DRAIN_TIMEOUT_SECONDS, result_ttl=0, failure_ttl=86400,
                description=f"drain deliveries of lane {lane}")


def request_drain(lane: int) -> bool:
    """Make sure a drain of ``lane`` is queued; True if this call enqueued it. Raises redis
    errors to the caller (the delivery is stored: the sweeper enqueues it later)."""
    return lane in request_drains({lane})


def request_drains(lanes: set[int]) -> set[int]:
    """``request_drain`` for many lanes in one Redis round trip (plus one per drain enqueued);
    the lanes it enqueued a drain for."""
    client = runtime.redis_client()
    ordered = sorted(lanes)
    with client.pipeline(transaction=False) as pipe:
        for lane in ordered:
            pipe.set(_flag(lane), "1", nx=True, ex=FLAG_SECONDS)
        raised = pipe.execute()
    enqueued = set()
    for lane, was_down in zip(ordered, raised):
        if was_down:
            try:
                enqueue_drain(lane)
            except Exception:
                client.delete(_flag(lane))
                raise
            enqueued.add(lane)
    return enqueued


def drain_started(lane: int) -> None:
    """Lower the flag before reading the lane: a delivery stored from now on enqueues a drain."""
    runtime.redis_client().delete(_flag(lane))


def enqueue_drain(lane: int) -> str:
    """A drain of ``lane`` whatever the flag says (a drain handing on its lane, the sweeper)."""
    return runtime.queue().enqueue("jobs.process.drain_lane", lane, **_drain_job_options(lane)).id


def schedule_drain(lane: int, retry_at: float) -> str:
    """Drain ``lane`` again once its deferred or failed delivery may run (RQ's scheduled registry)."""
    from jobs.deferral import run_at

    return runtime.queue().enqueue_at(run_at(retry_at), "jobs.process.drain_lane", lane, retry_at,
                                      **_drain_job_options(lane)).id
