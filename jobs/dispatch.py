"""Putting work on RQ. Jobs take plain ids, never live objects."""
from __future__ import annotations

from rq import Retry

from app import runtime

# RQ's retries and the sweeper's re-queues all count against deliveries.MAX_ATTEMPTS (checked
# when a run starts), so together they never run a delivery more than that many times.
DELIVERY_RETRY = Retry(max=3, interval=[2, 10, 60])
# A delivery's handlers take seconds; a job still running after this is killed (and counts as an
# attempt), so one poison delivery holds a worker for at most MAX_ATTEMPTS times this.
DELIVERY_TIMEOUT_SECONDS = 120


def _delivery_job_options(delivery_id: str) -> dict:
    return dict(retry=DELIVERY_RETRY, job_timeout=DELIVERY_TIMEOUT_SECONDS, result_ttl=600, failure_ttl=86400,
                description=f"delivery {delivery_id}")


def enqueue_delivery(delivery_id: str) -> str:
    """Enqueue processing of a stored delivery; raises redis errors to the caller."""
    job = runtime.queue().enqueue("jobs.process.process_delivery", delivery_id, **_delivery_job_options(delivery_id))
    return job.id


def schedule_delivery(delivery_id: str, retry_at: float) -> str:
    """Process a deferred delivery once the write budget has a slot (RQ's scheduled registry)."""
    from jobs.deferral import run_at

    job = runtime.queue().enqueue_at(run_at(retry_at), "jobs.process.process_delivery", delivery_id,
                                     **_delivery_job_options(delivery_id))
    return job.id
