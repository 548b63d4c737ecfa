"""Putting work on RQ. Jobs take plain ids, never live objects."""
from __future__ import annotations

from rq import Retry

from app import runtime

DELIVERY_RETRY = Retry(max=3, interval=[2, 10, 60])


def enqueue_delivery(delivery_id: str) -> str:
    """Enqueue processing of a stored delivery; raises redis errors to the caller."""
    job = runtime.queue().enqueue(
        "jobs.process.process_delivery",
        delivery_id,
        retry=DELIVERY_RETRY,
        job_timeout=300,
        result_ttl=600,
        failure_ttl=86400,
        description=f"delivery {delivery_id}",
    )
    return job.id
