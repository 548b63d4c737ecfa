"""``fleet worker``: an RQ worker. On SIGTERM RQ performs a warm shutdown: the current job
finishes, then the process exits; a job killed harder is picked up again by the sweeper
because its delivery is still marked unfinished in Postgres.

By default jobs run in the worker process itself (RQ's SimpleWorker): Fleet's jobs are short
and share a connection pool and GitHub tokens, which a fork per job would throw away each time.
``--fork`` restores RQ's work horse per job, for isolation at the cost of throughput."""
from __future__ import annotations

import importlib

from rq import SimpleWorker, Worker

from app import runtime

# RQ forks a work horse per job. Importing the job modules here, once, lets every fork inherit
# them; otherwise each job re-imports the handlers, models and githubkit (~0.4 s per job).
JOB_MODULES = ("jobs.process", "jobs.merge_queue", "jobs.status", "jobs.leases", "jobs.sync", "app.events_stream")
# githubkit loads each REST namespace and response model lazily, on first use in a process.
REST_NAMESPACES = ("issues", "pulls", "checks", "repos", "reactions", "apps", "git")


def preload_job_modules() -> None:
    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional module; the job imports (and reports) it itself
            pass
    from githubkit import GitHub

    client = GitHub("preload", base_url="http://127.0.0.1:9/")
    for namespace in REST_NAMESPACES:
        getattr(client.rest, namespace)


def run_worker(burst: bool = False, fork: bool = False) -> int:
    preload_job_modules()
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class([runtime.queue()], connection=runtime.redis_client())
    # RQ's scheduler moves deferred jobs (write budget spent, jobs/deferral.py) back onto the queue
    # at their time; without it they would wait for the sweeper. Workers share it via a Redis lock.
    worker.work(burst=burst, with_scheduler=True, logging_level=runtime.settings().log_level)
    return 0
