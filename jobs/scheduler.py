"""``fleet scheduler``: the periodic safety nets and timers.

Each task runs on its own period; a Redis lock makes sure only one scheduler acts even if two
are started by mistake. Tasks enqueue RQ jobs or do small bounded work themselves.
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from app import runtime

log = logging.getLogger("fleet.scheduler")


@dataclass
class Periodic:
    name: str
    every: float
    run: Callable[[], object]
    last: float = 0.0


def periodic_tasks() -> list[Periodic]:
    from jobs.leases import enqueue_lease_check
    from jobs.merge_queue import poll_queues
    from jobs.outbox import sweep_held_writes
    from jobs.redeliver import redeliver_failed
    from jobs.retention import purge_old_rows
    from jobs.status import refresh_all, snapshot_progress
    from jobs.sweeper import sweep_deliveries
    from jobs.sync import reconcile_all

    settings = runtime.settings()
    return [
        Periodic("sweep-deliveries", settings.sweep_interval, sweep_deliveries),
        Periodic("redeliver-failed", 120, redeliver_failed),
        # Held replies are scheduled when held; this catches a schedule Redis refused.
        Periodic("held-writes", 30, sweep_held_writes),
        # Leases as short as 30 s are legitimate; a 10 s tick acts on expiry well within a minute.
        Periodic("leases", 10, enqueue_lease_check),
        # Relative times in the status issue drift; refresh writes only on a real change.
        Periodic("status-refresh", 300, refresh_all),
        Periodic("progress-snapshots", 900, snapshot_progress),
        Periodic("reconcile", 3600, reconcile_all),
        # Bounded batches each run: a backlog drains over a few runs, never in one long statement.
        Periodic("retention", 300, purge_old_rows),
        # Steps every active merge queue (CI timeouts, retries, lost webhooks, crashed workers) and
        # re-evaluates fleet/gates that never published or have waited too long.
        Periodic("merge-queue-poll", 60, poll_queues),
    ]


def run_once(tasks: list[Periodic], now: float | None = None, force: bool = False) -> list[str]:
    """Run the tasks that are due; returns their names. Errors are logged, never fatal."""
    now = time.monotonic() if now is None else now
    ran = []
    for task in tasks:
        if not force and now - task.last < task.every:
            continue
        task.last = now
        try:
            task.run()
            ran.append(task.name)
        except Exception:
            log.exception("periodic task failed", extra={"task": task.name})
    return ran


def run_scheduler(once: bool = False) -> None:
    tasks = periodic_tasks()
    if once:
        run_once(tasks, force=True)
        return
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lock_key = f"{runtime.settings().queue_name}:scheduler-lock"
    while not stopping:
        if _hold_lock(lock_key):
            run_once(tasks)
        time.sleep(1.0)


def _hold_lock(key: str, ttl: int = 15) -> bool:
    """True while this process is the one scheduler (lock renewed every tick)."""
    import os

    me = f"{os.uname().nodename}:{os.getpid()}"
    try:
        client = runtime.redis_client()
        if client.set(key, me, nx=True, ex=ttl):
            return True
        if (client.get(key) or b"").decode() == me:
            client.expire(key, ttl)
            return True
        return False
    except redis.RedisError:
        # Without Redis the sweeper cannot enqueue anyway; keep trying.
        return False
