"""A Redis namespace of Fleet's: the RQ queue ``name`` (and its siblings ``name-*``, such as the
demo's ``-setup`` or the tests' ``-mq``) with their jobs, and Fleet's own keys under the prefix
(write budget, ETags). Sandboxes, demos, benchmarks and test runs each use one and delete it."""
from __future__ import annotations

QUEUES = "rq:queues"
QUEUE_KEY_PREFIX = "rq:queue:"


def delete_namespace(redis_url: str, name: str) -> int:
    """Delete every key of the namespace ``name``: its queues' jobs in any state (queued,
    scheduled, running, deferred, finished, failed, cancelled) with their executions and results,
    which are keyed by job id and would otherwise outlive the run (a failed job's for a year),
    the queues' registries, and every key naming ``name``. Returns how many keys went."""
    import redis
    from rq import Queue

    client = redis.Redis.from_url(redis_url)
    try:
        known = {member.decode().removeprefix(QUEUE_KEY_PREFIX) for member in client.smembers(QUEUES)}
        names = {name} | {q for q in known if q.startswith(name + "-")}
        job_ids: set[str] = set()
        for queue_name in names:
            q = Queue(queue_name, connection=client)
            registries = (q.scheduled_job_registry, q.deferred_job_registry, q.started_job_registry,
                          q.finished_job_registry, q.failed_job_registry, q.canceled_job_registry)
            job_ids.update(q.get_job_ids(), *(r.get_job_ids() for r in registries))
        patterns = [f"*{name}*"] + [f"rq:*{job_id}*" for job_id in job_ids]
        keys = {key for pattern in patterns for key in client.scan_iter(pattern, count=1000)}
        if keys:
            client.delete(*keys)
        client.srem(QUEUES, *(QUEUE_KEY_PREFIX + q for q in names))
        return len(keys)
    finally:
        client.close()
