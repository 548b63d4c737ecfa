"""Fault injection: Postgres restarts while webhooks keep arriving.

Fleet's DATABASE_URL points at a Postgres cluster of these tests' own
(tests/fault_services.py), never the machine's. While it is down ingest answers 503 (never 500),
so GitHub records those deliveries as failed; once it is back the pool reconnects and ingest
answers 202 again; nothing answered 202 is lost; and the redelivery sweep asks GitHub (the
simulator) for the failed ones, which are then stored and processed.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest

from app import db, runtime
from jobs.redeliver import redeliver_failed
from tests.conftest import TABLES
from tests.fault_services import PostgresServer, wait_until


@pytest.fixture(scope="module")
def own_pg():
    server = PostgresServer().start()
    url = server.url("fleet_faults")
    db.ensure_database(url)
    with db.connect(url) as conn:
        db.migrate(conn)
    server.fleet_url = url  # type: ignore[attr-defined]
    yield server
    server.destroy()


@pytest.fixture
def settings(settings, own_pg):
    """The run's settings with the database replaced by this module's own cluster (emptied)."""
    if not own_pg.accepting():
        own_pg.start()
    value = replace(settings, database_url=own_pg.fleet_url)
    with db.connect(value.database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    runtime.configure(value)
    yield value


def query(settings, sql: str) -> list[dict]:
    """A fresh connection per query: connections do not survive the restart (the pool's do)."""
    with db.connect(settings.database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def rows_by_id(settings) -> dict[str, dict]:
    return {r["id"]: r for r in query(settings, "SELECT id, status, attempts, last_error FROM deliveries")}


def test_postgres_restart_under_load_answers_503_then_recovers_without_losing_rows(world, own_pg, settings):
    sim, repo = world.sim, world.repo
    stop = threading.Event()
    opened: list[int] = []
    errors: list[BaseException] = []

    def load() -> None:
        """GitHub-side traffic: a new issue (one webhook each) every 50 ms until told to stop, at
        most 30 (the outbox delivers one at a time, so a backlog forms while answers take 3 s)."""
        i = 0
        while not stop.is_set() and i < 30:
            try:
                opened.append(sim.open_issue(repo, f"Load {i}"))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                return
            i += 1
            time.sleep(0.05)

    def answered(code: int) -> int:
        return sum(1 for d in sim.deliveries if d.status_code == code)

    start = len(sim.deliveries)
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_until(lambda: answered(202) >= start + 5, 15, what="deliveries before the outage")
        # The outbox delivers one at a time: all but the last attempt listed here are answered.
        before_stop = len(sim.deliveries) - 1
        own_pg.stop(mode="immediate")
        wait_until(lambda: answered(503) >= 1, 20, what="a 503 answer while Postgres is down")
        own_pg.start()
        up_from = len(sim.deliveries)
        wait_until(lambda: sum(1 for d in sim.deliveries[up_from:] if d.status_code == 202) >= 3, 30,
                   what="202 answers after Postgres is back")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert errors == []
    assert sim.wait_idle(timeout=30)

    codes = Counter(d.status_code for d in sim.deliveries)
    assert set(codes) <= {202, 503}, codes  # never a 500, never a timeout
    assert codes[503] >= 1
    assert all(d.status_code == 202 for d in sim.deliveries[:before_stop])
    failed = {d.event.guid for d in sim.deliveries if d.status_code == 503}
    ok = {d.event.guid for d in sim.deliveries if d.status_code == 202}
    rows = rows_by_id(settings)
    assert ok <= set(rows), f"answered 202 but not stored: {sorted(ok - set(rows))}"
    assert not (failed & set(rows))  # a 503 means it was not stored

    world.settle()
    requested = redeliver_failed()
    assert sorted(requested) == sorted(failed)
    world.settle()
    assert redeliver_failed() == []  # everything failed is now stored: nothing asked twice

    rows = rows_by_id(settings)
    every = {ev.guid for ev in sim.events}
    assert set(rows) == every
    for row in rows.values():
        assert row["status"] in ("processed", "ignored"), row
        assert row["attempts"] == 1, row
    stored_tasks = {r["number"] for r in query(settings, "SELECT number FROM tasks")}
    assert set(opened) <= stored_tasks


def test_readyz_and_ingest_while_postgres_is_down(settings, own_pg):
    """Ingest answers 503 within GitHub's 10 s; /readyz names Postgres; both heal on restart."""
    import hashlib
    import hmac
    import json
    import uuid

    from app.wsgi import create_app

    app = create_app(settings)
    client = app.test_client()

    def post() -> tuple[int, float]:
        body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
        sig = "sha256=" + hmac.new(settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        started = time.monotonic()
        resp = client.post("/webhooks/github", data=body, headers={
            "X-GitHub-Event": "ping", "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sig,
            "Content-Type": "application/json"})
        return resp.status_code, time.monotonic() - started

    try:
        assert post()[0] == 202
        own_pg.stop(mode="immediate")
        code, took = post()
        assert code == 503 and took < 8, (code, took)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["postgres"].startswith("unavailable")
        own_pg.start()
        wait_until(lambda: post()[0] == 202, 15, interval=0.2, what="ingest to recover")
        assert client.get("/readyz").status_code == 200
    finally:
        if not own_pg.accepting():
            own_pg.start()
        app.config["FLEET_POOL"].close()
