"""The scheduler: due tasks run on their period, a failing task never stops the others, and only
one scheduler acts at a time."""
from __future__ import annotations

from jobs.scheduler import Periodic, _hold_lock, periodic_tasks, run_once


def test_due_tasks_run_and_failures_do_not_stop_the_rest():
    ran = []

    def boom():
        raise RuntimeError("boom")

    tasks = [Periodic("a", 10, lambda: ran.append("a")), Periodic("b", 10, boom), Periodic("c", 5, lambda: ran.append("c"))]
    assert run_once(tasks, now=100.0) == ["a", "c"]
    assert run_once(tasks, now=103.0) == []
    assert run_once(tasks, now=106.0) == ["c"]
    assert ran == ["a", "c", "c"]


def test_every_safety_net_is_scheduled(settings):
    names = {t.name for t in periodic_tasks()}
    assert {"sweep-deliveries", "redeliver-failed", "leases", "status-refresh", "progress-snapshots", "reconcile",
            "retention", "held-writes", "merge-queue-poll"} <= names


def test_only_one_scheduler_holds_the_lock(settings):
    from app import runtime

    key = f"{settings.queue_name}:scheduler-lock-test"
    assert _hold_lock(key) is True
    assert _hold_lock(key) is True  # renewing our own lock
    runtime.redis_client().set(key, "other-host:1")
    assert _hold_lock(key) is False
    runtime.redis_client().delete(key)
