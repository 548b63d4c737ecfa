"""Deliveries drained per lane (issue 16): a burst on a repository is one RQ job working through
its deliveries in order; a second drain of a busy lane does no work of its own; a failing delivery
neither holds up its lane nor is lost; concurrent ingest requests share one INSERT and commit."""
from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import psycopg
import pytest
from rq.registry import ScheduledJobRegistry

from app import db, deliveries, runtime
from jobs import process
from jobs.dispatch import request_drain
from jobs.process import drain_lane
from tests.conftest import drain
from webhooks.group_commit import GroupCommit, _Waiting

REPO = {"id": 5151, "full_name": "acme/busy"}
OTHER = {"id": 5252, "full_name": "acme/quiet"}


def arrive(db_conn, guid: str, repo: dict = REPO) -> bool:
    """What ingest does for one delivery: store it, then ask for its lane's drain."""
    delivery = deliveries.describe("watch", guid, {"action": "started", "repository": repo})
    assert deliveries.store(db_conn, delivery)
    return request_drain(delivery.lane)


def rows(db_conn, repo: dict = REPO) -> list[dict]:
    return db_conn.execute("SELECT id, status, attempts, not_before, processed_at FROM deliveries "
                           "WHERE repo_id = %s ORDER BY received_at, id", (repo["id"],)).fetchall()


def test_a_burst_on_one_repository_is_one_drain_job_that_keeps_the_order(settings, db_conn):
    enqueued = [arrive(db_conn, f"burst-{i:02d}") for i in range(30)]
    enqueued.append(arrive(db_conn, "other-1", OTHER))
    assert enqueued == [True] + [False] * 29 + [True]  # one job per lane, whatever the burst
    assert runtime.queue().count == 2
    drain()
    done = rows(db_conn)
    assert [r["status"] for r in done] == ["ignored"] * 30  # `watch` has no handler
    assert [r["attempts"] for r in done] == [1] * 30
    stamps = [r["processed_at"] for r in done]
    assert stamps == sorted(stamps)
    assert [r["status"] for r in rows(db_conn, OTHER)] == ["ignored"]
    # The drain lowered the flag before reading: the next delivery asks for a drain again.
    assert arrive(db_conn, "burst-late") is True


def test_a_second_drain_of_a_lane_in_use_does_nothing_and_loses_nothing(settings, db_conn, database_url):
    for i in range(3):
        arrive(db_conn, f"held-{i}")
    lane = REPO["id"]
    with db.connect(database_url, autocommit=True) as other:
        other.execute(process.HOLD_LANE, (lane,))  # another drain is working through the lane
        assert drain_lane(lane) == {}
        assert {r["status"] for r in rows(db_conn)} == {"received"}
        other.execute(process.LET_GO_LANE, (lane,))
    assert drain_lane(lane) == {"ignored": 3}
    assert drain_lane(lane) == {}  # nothing twice


def test_a_failing_delivery_does_not_hold_up_its_lane_and_runs_again_after_its_back_off(
        settings, db_conn, monkeypatch):
    for i in range(3):
        arrive(db_conn, f"mixed-{i}")

    def handler_for(event, action):
        def handle(ctx):
            if ctx.delivery.id == "mixed-1":
                raise RuntimeError("GitHub answered 502")
        return handle

    monkeypatch.setattr(process, "route", handler_for)
    before = time.time()
    drain()
    first, failed, third = rows(db_conn)
    assert (first["status"], failed["status"], third["status"]) == ("processed", "failed", "processed")
    assert failed["attempts"] == 1
    back_off = failed["not_before"].timestamp() - before
    assert deliveries.RETRY_AFTER_SECONDS[0] - 1 <= back_off <= deliveries.RETRY_AFTER_SECONDS[0] + 5
    registry = ScheduledJobRegistry(queue=runtime.queue())
    [job_id] = registry.get_job_ids()
    job = runtime.queue().fetch_job(job_id)
    assert job.func_name == "jobs.process.drain_lane" and job.args[0] == REPO["id"]

    assert drain_lane(REPO["id"]) == {}  # before its time it is not run
    monkeypatch.undo()
    # Its scheduled drain, at that time, runs it.
    assert drain_lane(REPO["id"], resume_at=failed["not_before"].timestamp()) == {"ignored": 1}
    assert [r["status"] for r in rows(db_conn)] == ["processed", "ignored", "processed"]


@pytest.mark.parametrize("max_batch", [64, 2])
def test_concurrent_deliveries_are_each_stored_once_and_a_duplicate_is_not_new(settings, db_conn, database_url,
                                                                               monkeypatch, max_batch):
    """With small batches too: a writer whose own delivery did not fit writes on."""
    monkeypatch.setattr("webhooks.group_commit.MAX_BATCH", max_batch)
    queued: list[list[str]] = []
    pool = db._pool(database_url)
    group = GroupCommit(lambda: pool.connection(timeout=3),
                        lambda stored: queued.append([d.id for d in stored]) or True)
    results: dict[int, tuple[bool, bool]] = {}

    def send(i: int) -> None:
        guid = "same" if i >= 20 else f"c-{i}"
        delivery = deliveries.describe("watch", guid, {"action": "started", "repository": REPO})
        results[i] = group.store(delivery, '{"action": "started", "repository": {"id": 5151}}')

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 24
    assert all(results[i] == (True, True) for i in range(20))
    assert sorted(results[i][0] for i in range(20, 24)) == [False, False, False, True]  # GitHub sent it 4 times
    assert sorted(g for batch in queued for g in batch) == sorted([f"c-{i}" for i in range(20)] + ["same"])
    assert db_conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"] == 21


def test_a_payload_postgres_refuses_fails_alone_in_its_batch(settings, db_conn, database_url):
    pool = db._pool(database_url)
    group = GroupCommit(lambda: pool.connection(timeout=3), lambda stored: True)
    good = _Waiting(deliveries.describe("watch", "good-1", {}), '{"a": 1}')
    bad = _Waiting(deliveries.describe("watch", "bad-1", {}), '{"a": "\x00"}')  # no Postgres text holds NUL
    group._queue(group._insert([good, bad]))
    assert good.fresh and good.error is None and good.queued
    assert isinstance(bad.error, psycopg.errors.DataError) and not bad.fresh
    assert [r["id"] for r in db_conn.execute("SELECT id FROM deliveries").fetchall()] == ["good-1"]


def test_a_failure_after_the_commit_leaves_the_delivery_stored_and_nobody_waiting(settings, db_conn, database_url):
    pool = db._pool(database_url)

    def broken_queue(stored):
        raise RuntimeError("a bug in queueing")

    group = GroupCommit(lambda: pool.connection(timeout=3), broken_queue)
    done: list[tuple[bool, bool]] = []
    threads = [threading.Thread(target=lambda i=i: done.append(group.store(
        deliveries.describe("watch", f"after-{i}", {}), "{}"))) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert done == [(True, False)] * 6  # stored, not queued: the sweeper queues them
    assert db_conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"] == 6


def test_when_postgres_is_away_the_request_hears_it(settings):
    def broken():
        raise psycopg.OperationalError("connection refused")

    group = GroupCommit(broken, lambda stored: True)
    with pytest.raises(psycopg.OperationalError):
        group.store(deliveries.describe("watch", "lost-1", {}), "{}")


def test_the_drain_commits_asynchronously_and_hands_its_connection_back_synchronous(settings, db_conn, monkeypatch):
    arrive(db_conn, "async-0")
    seen = []

    def handler_for(event, action):
        def handle(ctx):
            seen.append(ctx.conn.execute("SELECT current_setting('synchronous_commit') AS s, "
                                         "pg_backend_pid() AS pid").fetchone())
        return handle

    monkeypatch.setattr(process, "route", handler_for)
    drain()
    [during] = seen
    assert during["s"] == "off"
    assert [r["status"] for r in rows(db_conn)] == ["processed"]
    with ExitStack() as lent:  # find the drain's connection among those in the pool
        settings_by_pid = {}
        for _ in range(db.POOL_SIZE):
            conn = lent.enter_context(db.pooled(settings.database_url))
            row = conn.execute("SELECT current_setting('synchronous_commit') AS s, pg_backend_pid() AS pid").fetchone()
            settings_by_pid[row["pid"]] = row["s"]
            if row["pid"] == during["pid"]:
                break
    assert settings_by_pid[during["pid"]] == "on"


def test_asynchronous_commit_is_reset_after_an_error_and_a_connection_it_cannot_reset_is_closed(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        with pytest.raises(RuntimeError), db.asynchronous_commit(conn):
            assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "off"
            raise RuntimeError("handler failed")
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    with db.connect(database_url, autocommit=True) as conn, db.connect(database_url, autocommit=True) as admin:
        with db.asynchronous_commit(conn):
            pid = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # Postgres drops the session
        assert conn.closed


def test_a_delivery_runs_holding_its_repository_lock(settings, db_conn, database_url, monkeypatch):
    """Jobs about the repository (gates, the queue, the status issue) wait while a delivery runs."""
    arrive(db_conn, "locked-0")
    taken_by_other = []

    def handler_for(event, action):
        def handle(ctx):
            with db.connect(database_url, autocommit=True) as other:
                taken_by_other.append(other.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended('fleet-repo:' || %s::text, 0)) AS ok",
                    (REPO["id"],)).fetchone()["ok"])
        return handle

    monkeypatch.setattr(process, "route", handler_for)
    drain()
    assert taken_by_other == [False]
    assert [r["status"] for r in rows(db_conn)] == ["processed"]


def test_the_status_issue_hears_of_a_burst_once_it_is_drained_not_after_each_batch(settings, db_conn, monkeypatch):
    for i in range(5):
        arrive(db_conn, f"status-{i}")
    asked_mid_burst = []

    def status_requested() -> bool:
        return any(job.func_name == "jobs.status.update_status" for job in runtime.queue().jobs)

    def handler_for(event, action):
        def handle(ctx):
            asked_mid_burst.append(status_requested())
        return handle

    monkeypatch.setattr(process, "DRAIN_BATCH", 2)  # three batches
    monkeypatch.setattr(process, "route", handler_for)
    assert drain_lane(REPO["id"]) == {"processed": 5}
    assert asked_mid_burst == [False] * 5
    assert status_requested()  # once the lane was drained


def test_the_next_batch_is_written_while_the_last_one_raises_its_flags(settings, db_conn, database_url):
    """The writer hands its turn on as soon as its batch is committed: a slow Redis round trip
    for one batch does not hold up the next batch's INSERT (before, it did)."""
    pool = db._pool(database_url)
    second_queued = threading.Event()
    first_saw_second: list[bool] = []

    def queue(stored):
        if stored[0].id == "first":
            threading.Thread(target=send, args=("second",)).start()  # arrives while Redis is slow
            first_saw_second.append(second_queued.wait(timeout=5))
        else:
            second_queued.set()
        return True

    group = GroupCommit(lambda: pool.connection(timeout=3), queue)
    answers: dict[str, tuple[bool, bool]] = {}

    def send(guid: str) -> None:
        answers[guid] = group.store(deliveries.describe("watch", guid, {}), "{}")

    send("first")
    assert first_saw_second == [True]
    assert answers["first"] == (True, True)
    wait = time.monotonic() + 5
    while "second" not in answers and time.monotonic() < wait:
        time.sleep(0.01)
    assert answers["second"] == (True, True)
    assert db_conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"] == 2
