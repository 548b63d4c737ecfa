"""Enqueueing jobs by name (never by importing ``jobs``), at most one waiting per key.

Job ids are deterministic per (repo, PR, head SHA) and per (repo, base): while one such job is
still waiting in the queue, enqueueing it again does nothing (it will read the newest state when
it runs), so a burst of 50 check-run webhooks costs one evaluation, not 50. The jobs themselves
live in ``jobs/merge_queue.py``; services enqueue them through here, never by importing ``jobs``.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from rq.job import Job, JobStatus

from app import runtime

SLOTS = 3  # ids per key: one waiting, the others may be running
WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
RUNNING = {JobStatus.STARTED}


# --- enqueueing ------------------------------------------------------------------------------

def _key(*parts: object) -> str:
    # RQ ids allow letters, digits, "-" and "_" only; branch names may hold anything.
    namespace = re.sub(r"[^A-Za-z0-9_-]", "_", runtime.settings().queue_name)
    digest = hashlib.sha1("\x00".join(str(p) for p in parts).encode()).hexdigest()[:16]
    return f"{namespace}-{parts[0]}-{digest}"


def enqueue_unique(func: str, args: tuple, key: str, *, delay: timedelta | None = None,
                   description: str = "") -> str | None:
    """Enqueue ``func(*args)`` unless a job with this key is already waiting; returns the id used."""
    queue = runtime.queue()
    ids = [f"{key}-{slot}" for slot in range(SLOTS)]
    statuses = _statuses(queue.connection, ids)
    if any(status in WAITING for status in statuses):
        return None
    slot = next((i for i, status in enumerate(statuses) if status not in RUNNING), None)
    if slot is None:
        return None  # every slot is running; the last of them reads the newest state
    free = ids[slot]
    if statuses[slot] is None:
        queue.remove(free)  # a job whose data expired may still be listed: never list it twice
    options = dict(job_id=free, job_timeout=600, result_ttl=300, failure_ttl=86400, description=description)
    if delay is not None and delay > timedelta(0):
        queue.enqueue_in(delay, func, *args, **options)
    else:
        queue.enqueue(func, *args, **options)
    return free


def _statuses(connection, job_ids: list[str]) -> list[JobStatus | None]:
    """Each job's status (None: no such job), read in one round trip: a handler schedules a job
    for every event that touches a PR, and most find one already waiting."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")  # what Job.get_status reads
        raw = pipe.execute()
    return [JobStatus(value.decode() if isinstance(value, bytes) else value) if value else None for value in raw]


def enqueue_evaluation(repo_id: int, pr_number: int, head_sha: str | None, force: bool = False,
                       delay: timedelta | None = None, fresh: bool = False, recheck: int = 0) -> str | None:
    """``fresh``: read the PR from GitHub even when the recorded state says it is still waiting;
    ``recheck``: how many times GitHub was found still computing mergeability for this head."""
    return enqueue_unique(
        "jobs.merge_queue.evaluate_gates", (repo_id, pr_number, force, fresh, recheck),
        _key("gates", repo_id, pr_number, head_sha or "", force, delay is not None, fresh), delay=delay,
        description=f"gates {repo_id}#{pr_number}",
    )


def enqueue_step(repo_id: int, base_ref: str, delay: timedelta | None = None) -> str | None:
    return enqueue_unique(
        "jobs.merge_queue.step_queue", (repo_id, base_ref), _key("step", repo_id, base_ref, delay is not None),
        delay=delay, description=f"merge queue {repo_id}:{base_ref}",
    )
