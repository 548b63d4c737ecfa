"""``fleet worker``: an RQ worker. On SIGTERM RQ performs a warm shutdown: the current job
finishes, then the process exits; a job killed harder is picked up again by the sweeper
because its delivery is still marked unfinished in Postgres."""
from __future__ import annotations

from rq import Worker

from app import runtime


def run_worker(burst: bool = False) -> int:
    worker = Worker([runtime.queue()], connection=runtime.redis_client())
    worker.work(burst=burst, with_scheduler=True, logging_level=runtime.settings().log_level)
    return 0
