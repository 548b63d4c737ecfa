"""A run's Redis namespace goes completely: jobs of every state in the queue and its suffixed
siblings, their results and executions (keyed by job id, a failed job's kept for a year)."""
from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue, SimpleWorker

from app.rq_namespace import delete_namespace
from tests.conftest import REDIS_URL, RUN_ID


def _fails() -> None:
    raise RuntimeError("on purpose")


def test_every_key_of_the_namespace_and_its_jobs_goes():
    client = redis.Redis.from_url(REDIS_URL)
    name = f"ns-{RUN_ID}"
    main, sibling, other = (Queue(n, connection=client) for n in (name, f"{name}-setup", f"{name}x"))
    failed = sibling.enqueue(_fails)
    SimpleWorker([sibling], connection=client).work(burst=True)
    scheduled = main.enqueue_in(timedelta(hours=1), "jobs.leases.check_leases")
    waiting = main.enqueue("jobs.leases.check_leases")
    client.set(f"{name}:writes:1:minute", 3)
    kept = other.enqueue("jobs.leases.check_leases")  # another namespace that only starts alike
    ids = [failed.id, scheduled.id, waiting.id]
    assert any(client.ttl(key) == -1 for key in client.scan_iter(f"rq:*{failed.id}*"))  # would outlive the run
    try:
        assert delete_namespace(REDIS_URL, name) > 0
        assert [key for job_id in ids for key in client.scan_iter(f"rq:*{job_id}*")] == []
        assert list(client.scan_iter(f"*{name}:*")) == [] and list(client.scan_iter(f"*{name}-setup*")) == []
        members = {m.decode() for m in client.smembers("rq:queues")}
        assert f"rq:queue:{name}" not in members and f"rq:queue:{name}-setup" not in members
        assert client.exists(f"rq:job:{kept.id}") and f"rq:queue:{name}x" in members
    finally:
        delete_namespace(REDIS_URL, f"{name}x")
        client.close()
