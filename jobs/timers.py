"""Periodic timers read by ``fleet scheduler`` (jobs/scheduler.py): ``(name, every_seconds, callable)``.

Each callable does small bounded work or enqueues RQ jobs; webhooks drive the real work and these
are the safety nets.
"""
from __future__ import annotations

from jobs.merge_queue import poll_queues

TIMERS = [
    # Steps every active merge queue (CI timeouts, retries, lost webhooks, crashed workers) and
    # re-evaluates fleet/gates that never published or have waited too long.
    ("merge-queue-poll", 60, poll_queues),
]
