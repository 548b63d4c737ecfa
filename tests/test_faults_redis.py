"""Fault injection: Redis stops while webhooks arrive, then comes back.

Fleet points at a redis-server of these tests' own (tests/fault_services.py), never the
machine's. Ingest keeps answering 202 (stored, ``queued: false``) while Redis is away; once it is
back the sweeper enqueues what was stored, and every delivery is processed exactly once.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from app import runtime
from jobs.sweeper import sweep_deliveries
from tests.conftest import drain
from tests.fault_services import RedisServer


@pytest.fixture(scope="module")
def own_redis():
    with RedisServer() as server:
        yield server


@pytest.fixture
def settings(settings, own_redis):
    """The run's settings, with Redis replaced by this module's own server (started)."""
    own_redis.start()
    value = replace(settings, redis_url=own_redis.url)
    runtime.configure(value)
    runtime.queue().empty()
    yield value
    own_redis.start()  # a test that failed half-way may have left it stopped


def delivery_rows(conn) -> dict[str, dict]:
    rows = conn.execute("SELECT id, event, action, status, attempts, last_error FROM deliveries").fetchall()
    return {r["id"]: r for r in rows}


def accepted_guids(sim) -> set[str]:
    return {d.event.guid for d in sim.deliveries if d.ok}


def test_webhooks_during_a_redis_outage_are_stored_then_processed_once(world, db_conn, own_redis):
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    world.use_state_labels()  # the tasks' labels show that each delivery was processed
    before = sim.open_issue(repo, "Opened while Redis is up")
    world.settle()

    own_redis.stop()
    answers_from = len(sim.deliveries)
    during = [sim.open_issue(repo, f"Opened while Redis is down {i}") for i in range(3)]
    sim.comment(repo, during[0], "just a note", author="alice")
    assert sim.wait_idle(timeout=30)
    outage = sim.deliveries[answers_from:]
    assert outage and all(d.status_code == 202 for d in outage), [(d.status, d.status_code) for d in outage]
    assert all(json.loads(d.response_body)["queued"] is False for d in outage)
    rows = delivery_rows(db_conn)
    assert {d.event.guid for d in outage} <= set(rows)
    assert {rows[d.event.guid]["status"] for d in outage} == {"received"}
    # The sweeper cannot reach Redis either: it gives up quietly and leaves them for later.
    assert sweep_deliveries(grace=0) == []

    own_redis.start()
    after = sim.open_issue(repo, "Opened after Redis is back")
    assert sim.wait_idle(timeout=10)
    swept = sweep_deliveries(grace=0)
    # With no grace, the one stored after the outage (its drain requested) is swept too: harmless.
    assert {d.event.guid for d in outage} <= set(swept)
    world.settle()
    assert sweep_deliveries(grace=0) == []  # nothing left over

    rows = delivery_rows(db_conn)
    assert set(rows) == accepted_guids(sim)
    for row in rows.values():
        assert row["status"] in ("processed", "ignored"), row
        assert row["attempts"] == 1, row
    for number in (before, *during, after):
        labels = [label["name"] for label in sim.issue(repo, number)["labels"]]
        assert labels == ["fleet:ready"], (number, labels)


def test_jobs_lost_with_a_redis_restart_are_recovered_once(world, db_conn, own_redis):
    """Redis without persistence loses queued jobs when it restarts: the deliveries stay
    ``received`` in Postgres and the sweeper brings their lane back once they are older than its
    grace, each processed once even when a drain for it survived as well."""
    sim, repo = world.sim, world.repo
    world.use_state_labels()  # the tasks' labels show that each delivery was processed
    first = sim.open_issue(repo, "Queued, then Redis restarts")
    second = sim.open_issue(repo, "Queued too")
    assert sim.wait_idle(timeout=10)
    rows = delivery_rows(db_conn)
    lost = [g for g, r in rows.items() if r["status"] == "received"]
    assert len(lost) >= 2
    own_redis.restart()  # the queue is gone
    assert runtime.queue().count == 0
    assert sweep_deliveries() == []  # younger than the sweeper's grace: their drain may be on its way
    recovered = sweep_deliveries(grace=0)
    assert sorted(recovered) == sorted(lost)
    # Sweeping again at once enqueues a second drain of the lane: it must be a no-op.
    assert sorted(sweep_deliveries(grace=0)) == sorted(lost)
    world.settle()
    rows = delivery_rows(db_conn)
    for guid in lost:
        assert rows[guid]["status"] in ("processed", "ignored"), rows[guid]
        assert rows[guid]["attempts"] == 1, rows[guid]
    for number in (first, second):
        assert [label["name"] for label in sim.issue(repo, number)["labels"]] == ["fleet:ready"]


def test_ingest_answers_fast_and_readyz_reports_redis_while_it_is_down(settings, own_redis):
    """Connection refused costs nothing; /readyz says which dependency is missing."""
    import hashlib
    import hmac
    import time

    from app.wsgi import create_app

    app = create_app(settings)
    try:
        client = app.test_client()
        own_redis.stop()
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        sig = "sha256=" + hmac.new(settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        started = time.monotonic()
        guid = str(uuid.uuid4())
        resp = client.post("/webhooks/github", data=body, headers={
            "X-GitHub-Event": "ping", "X-GitHub-Delivery": guid, "X-Hub-Signature-256": sig,
            "Content-Type": "application/json"})
        assert resp.status_code == 202 and resp.get_json()["queued"] is False
        assert time.monotonic() - started < 3
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["postgres"] == "ok"
        assert ready.get_json()["checks"]["redis"].startswith("unavailable")
        own_redis.start()
        assert sweep_deliveries(grace=0) == [guid]
        assert drain() == 1
        assert client.get("/readyz").status_code == 200
    finally:
        app.config["FLEET_POOL"].close()
