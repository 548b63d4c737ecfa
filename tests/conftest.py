"""Shared fixtures: a private Postgres database and Redis namespace per test run, real HTTP
servers for Fleet and the GitHub simulator, and a way to drain the job queue."""
from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from hypothesis import settings as hypothesis_settings
from rq import SimpleWorker
from rq.job import Job
from werkzeug.serving import make_server

from app import db, runtime
from app.rq_namespace import delete_namespace
from app.settings import Settings

PG_BASE = os.environ.get("FLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"

# A failing Hypothesis test must be reproducible from its log alone: the falsifying example is
# printed (always, by Hypothesis), with it the ``@reproduce_failure`` blob (print_blob), and the
# run's seed is fixed up front and shown in the header (``--hypothesis-seed=N`` replays the run).
hypothesis_settings.register_profile("fleet", print_blob=True)
hypothesis_settings.load_profile("fleet")


def pytest_configure(config: pytest.Config) -> None:
    """Pick the run's Hypothesis seed unless one was given (runs before Hypothesis's plugin reads it).
    A pytest-xdist worker takes the seed its controller picked (and shows in the header)."""
    if getattr(config.option, "hypothesis_seed", "absent") is None:
        workerinput = getattr(config, "workerinput", {})
        config.option.hypothesis_seed = workerinput.get("hypothesis_seed", secrets.randbelow(2**32))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist (controller side): hand every worker the run's one Hypothesis seed."""
    node.workerinput["hypothesis_seed"] = node.config.option.hypothesis_seed


def _seed_line(config: pytest.Config) -> str:
    seed = getattr(config.option, "hypothesis_seed", None)
    return f"hypothesis seed: {seed} (replay with --hypothesis-seed={seed})"


def pytest_report_header(config: pytest.Config) -> str:
    return _seed_line(config)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed Hypothesis test's report names the seed even under -q (no header shown)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        report.sections.append(("Hypothesis", _seed_line(item.config)))

TABLES = (
    "evidence, deliveries, permissions_cache, progress_snapshots, status_issues, queue_entries, "
    "commit_statuses, check_runs, reviews, pull_requests, branches, claims, agents, dependencies, "
    "tasks, milestones, repositories, installations"
)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this test run's own, migrated, dropped at the end."""
    url = f"{PG_BASE}/fleet_test_{RUN_ID}"
    db.ensure_database(url)
    with db.connect(url) as conn:
        db.migrate(conn)
    yield url
    db.drop_database(url)


@pytest.fixture(scope="session")
def queue_namespace() -> Iterator[str]:
    """An RQ queue name (and Redis key prefix) nobody else uses; its keys are removed at the end."""
    name = f"fleet-test-{RUN_ID}"
    yield name
    delete_namespace(REDIS_URL, name)  # "-mq" and the other suffixed queues too


# Every table TRUNCATE ... CASCADE would empty: TABLES and, transitively, the tables referencing them.
_CLEANED_TABLES = """
WITH RECURSIVE cleaned(rel) AS (
    SELECT unnest(%s::regclass[])
    UNION
    SELECT c.conrelid FROM pg_constraint c JOIN cleaned ON c.confrelid = cleaned.rel WHERE c.contype = 'f'
)
SELECT rel::regclass::text AS rel,
       ARRAY(SELECT DISTINCT c.confrelid::regclass::text FROM pg_constraint c
             WHERE c.contype = 'f' AND c.conrelid = cleaned.rel AND c.confrelid <> cleaned.rel) AS parents,
       ARRAY(SELECT format('setval(%%L, %%s, false)', s.seqrelid::regclass::text, s.seqstart)
             FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = cleaned.rel AND d.deptype IN ('a', 'i')) AS restarts
FROM cleaned
"""


def empty_tables(conn) -> None:
    """``TRUNCATE {TABLES} RESTART IDENTITY CASCADE`` in effect, in milliseconds instead of 150-300
    (TRUNCATE makes new files for every table and index): the same tables are emptied with DELETE,
    children before parents, and their own sequences restart. Falls back to TRUNCATE itself when the
    foreign keys form a cycle."""
    rows = conn.execute(_CLEANED_TABLES, ([t.strip() for t in TABLES.split(",")],)).fetchall()
    parents = {row["rel"]: set(row["parents"]) for row in rows}
    order: list[str] = []
    while parents:
        # a table no remaining table references may go now
        ready = sorted(rel for rel in parents if not any(rel in ps for ps in parents.values()))
        if not ready:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            return
        for rel in ready:
            order.append(rel)
            del parents[rel]
    restarts = [call for row in rows for call in row["restarts"]]
    script = "".join(f"DELETE FROM {rel};" for rel in order)
    if restarts:
        script += "SELECT " + ", ".join(restarts) + ";"
    with conn.transaction():
        conn.execute(script)  # one round trip (no parameters: several statements may go at once)


@pytest.fixture
def db_conn(database_url: str):
    """A clean database (all rows removed) and an autocommit connection to it."""
    with db.connect(database_url, autocommit=True) as conn:
        empty_tables(conn)
        yield conn


@pytest.fixture
def settings(database_url: str, queue_namespace: str, db_conn) -> Iterator[Settings]:
    """Settings for a test, installed as the process settings; the job queue starts empty."""
    value = Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        queue_name=queue_namespace,
        webhook_secret="test-webhook-secret",
        github_api_url="http://127.0.0.1:9",  # nothing listens: tests that call GitHub use the simulator
        log_format="console",
    )
    runtime.configure(value)
    _empty_queue()
    yield value
    _empty_queue()


def _empty_queue() -> None:
    """No job of an earlier test (queued or scheduled for later) leaks into the next one."""
    queue = runtime.queue()
    queue.empty()
    drop_scheduled_jobs(queue)
    # A lane's flag says its drain is queued: with the queue emptied, nothing would lower it.
    client = runtime.redis_client()
    for key in client.scan_iter(f"{queue.name}:drain-pending:*"):
        client.delete(key)


def drop_scheduled_jobs(queue) -> None:
    """Remove every job scheduled for later on ``queue``, with its keys."""
    from rq.registry import ScheduledJobRegistry

    scheduled = ScheduledJobRegistry(queue=queue)
    for job_id in scheduled.get_job_ids():
        try:
            scheduled.remove(job_id, delete_job=True)
        except ValueError:
            # RQ 2 lists a job's executions and fetches each; one whose hash already expired
            # raises "Execution ... not found in Redis" (rq/executions.py). Drop the job's keys.
            scheduled.remove(job_id, delete_job=False)
            keys = list(queue.connection.scan_iter(f"rq:*{job_id}*", count=1000))
            if keys:
                queue.connection.delete(*keys)


@pytest.fixture
def fleet_app(settings: Settings):
    from app.wsgi import create_app

    app = create_app(settings)
    yield app
    app.config["FLEET_POOL"].close()


@pytest.fixture
def client(fleet_app):
    return fleet_app.test_client()


class CountingWorker(SimpleWorker):
    """RQ's in-process worker, counting the jobs it ran.

    It does not listen for RQ's remote commands (shutdown, kill the work horse): a drain is over
    in milliseconds, and tearing the listener down joined its thread for up to a second per drain
    (42 % of ``bench_queue``'s main thread, measured with py-spy), which the merge-queue figures
    then counted as Fleet's latency."""

    ran = 0

    def subscribe(self):
        pass

    def unsubscribe(self):
        pass

    def perform_job(self, job, queue):
        self.ran += 1
        return super().perform_job(job, queue)


def release_scheduled(wanted: Callable[[Job], bool] = lambda job: True) -> int:
    """Move the scheduled jobs ``wanted`` picks to the queue now, as if their time had come;
    returns how many (``drain`` then runs them)."""
    from rq.registry import ScheduledJobRegistry

    queue = runtime.queue()
    registry = ScheduledJobRegistry(queue=queue)
    moved = 0
    for job_id in registry.get_job_ids():
        job = queue.fetch_job(job_id)
        if job is None or not wanted(job):
            continue
        registry.remove(job_id)
        queue.enqueue_job(job)
        moved += 1
    return moved


def drain(max_jobs: int = 10_000) -> int:
    """Run every queued job in this process (RQ's SimpleWorker in burst mode); returns how many."""
    worker = CountingWorker([runtime.queue()], connection=runtime.redis_client())
    worker.work(burst=True, max_jobs=max_jobs, logging_level="WARNING")
    return worker.ran


class ServedApp:
    """A WSGI app served over real HTTP on 127.0.0.1 in a background thread."""

    def __init__(self, wsgi_app):
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval keeps stop() fast: with the default (0.5 s) each stop waited ~0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def fleet_http(fleet_app) -> Iterator[ServedApp]:
    served = ServedApp(fleet_app)
    yield served
    served.stop()


__all__ = ["drain", "ServedApp", "replace"]


@pytest.fixture
def world(settings: Settings):
    """The simulator, Fleet over HTTP, the App installed on ``octo/widgets``, all settled."""
    from app.wsgi import create_app
    from tests.github_env import start_world

    built = []

    def factory(s):
        app = create_app(s)
        built.append(app)
        return app

    env = start_world(settings, factory)
    yield env
    env.fleet.stop()
    env.sim.stop()
    for app in built:
        app.config["FLEET_POOL"].close()
    assert env.sim.violations == [], f"requests that broke GitHub's OpenAPI description: {env.sim.violations}"
