"""Poison deliveries: every delivery has an attempt cap, counted whoever re-runs it (RQ's retry,
the sweeper after a worker died), and one that used it up is parked, never re-queued, and shown
by ``fleet doctor`` and ``GET /api/deliveries?status=parked``. ``fleet replay`` still re-runs it."""
from __future__ import annotations

import pytest

from app import deliveries
from app.cli.doctor import run_checks
from jobs import process
from jobs.process import process_delivery
from jobs.sweeper import sweep_deliveries
from tests.test_doctor import env_for

REPO = {"id": 4242, "full_name": "acme/poison"}


def store(db_conn, guid: str, repo: dict | None = None) -> None:
    payload = {"action": "opened", **({"repository": repo} if repo else {})}
    assert deliveries.store(db_conn, deliveries.describe("issues", guid, payload))


def row(db_conn, guid: str) -> dict:
    return db_conn.execute("SELECT status, attempts, last_error, parked_at FROM deliveries WHERE id = %s",
                           (guid,)).fetchone()


@pytest.fixture
def failing_handler(monkeypatch):
    def boom(ctx):
        raise RuntimeError("boom: the handler cannot cope")

    monkeypatch.setattr(process, "route", lambda event, action: boom)


def test_a_delivery_that_kills_its_worker_every_time_is_parked_not_requeued_forever(settings, db_conn):
    """The review's loop: an OOM-killed job stays `processing` and the sweeper re-queued it with
    no cap. Now the sweeper re-queues it MAX_ATTEMPTS - 1 times, then parks it with the reason."""
    store(db_conn, "oom-1")
    requeued = 0
    for _ in range(3 * deliveries.MAX_ATTEMPTS):
        if "oom-1" not in sweep_deliveries(grace=0, stuck=0):
            break
        requeued += 1
        # A worker takes the job and is killed mid-way: the run counted, nothing finished.
        assert deliveries.start_processing(db_conn, "oom-1") is not None
    assert requeued == deliveries.MAX_ATTEMPTS
    parked = row(db_conn, "oom-1")
    assert (parked["status"], parked["attempts"]) == ("parked", deliveries.MAX_ATTEMPTS)
    assert parked["last_error"] == f"worker died {deliveries.MAX_ATTEMPTS} times"
    assert parked["parked_at"] is not None
    assert sweep_deliveries(grace=0, stuck=0) == []


def test_no_run_starts_once_the_attempts_are_used(settings, db_conn):
    """RQ's own retry of a killed job cannot bypass the cap: the run is skipped."""
    store(db_conn, "cap-1")
    db_conn.execute("UPDATE deliveries SET status = 'processing', attempts = %s WHERE id = 'cap-1'",
                    (deliveries.MAX_ATTEMPTS,))
    assert process_delivery("cap-1") == "skipped"
    assert row(db_conn, "cap-1")["attempts"] == deliveries.MAX_ATTEMPTS


def test_a_delivery_failing_every_time_is_parked_with_its_last_error(settings, db_conn, failing_handler):
    store(db_conn, "fail-1")
    for attempt in range(1, deliveries.MAX_ATTEMPTS + 1):
        with pytest.raises(RuntimeError):
            process_delivery("fail-1")
        expected = "parked" if attempt == deliveries.MAX_ATTEMPTS else "failed"
        assert row(db_conn, "fail-1")["status"] == expected
    assert row(db_conn, "fail-1")["last_error"] == "RuntimeError: boom: the handler cannot cope"
    assert process_delivery("fail-1") == "skipped"  # a late RQ retry
    assert sweep_deliveries(grace=0, stuck=0) == []


def test_a_worker_death_after_recorded_errors_keeps_the_last_error(settings, db_conn):
    store(db_conn, "mixed-1")
    db_conn.execute("UPDATE deliveries SET status = 'processing', attempts = %s, last_error = 'TimeoutError: x',"
                    " started_at = now() - interval '1 hour' WHERE id = 'mixed-1'", (deliveries.MAX_ATTEMPTS,))
    assert sweep_deliveries(grace=0) == []
    assert row(db_conn, "mixed-1")["last_error"] == (
        f"worker died on attempt {deliveries.MAX_ATTEMPTS}; before that: TimeoutError: x")


def test_a_running_last_attempt_is_not_parked(settings, db_conn):
    """Only deliveries stuck past the threshold are parked, not one running its last attempt."""
    store(db_conn, "run-1")
    db_conn.execute("UPDATE deliveries SET status = 'processing', attempts = %s, started_at = now() WHERE id = 'run-1'",
                    (deliveries.MAX_ATTEMPTS,))
    assert sweep_deliveries(grace=0) == []
    assert row(db_conn, "run-1")["status"] == "processing"


def test_replay_re_runs_a_parked_delivery_on_purpose(settings, db_conn, failing_handler, monkeypatch):
    store(db_conn, "replay-1")
    for _ in range(deliveries.MAX_ATTEMPTS):
        with pytest.raises(RuntimeError):
            process_delivery("replay-1")
    assert row(db_conn, "replay-1")["status"] == "parked"
    monkeypatch.setattr(process, "route", lambda event, action: lambda ctx: None)  # the cause is fixed
    assert deliveries.requeue_for_replay(db_conn, "replay-1")
    assert process_delivery("replay-1") == "processed"
    done = row(db_conn, "replay-1")
    assert (done["status"], done["last_error"], done["parked_at"]) == ("processed", None, None)
    assert not deliveries.requeue_for_replay(db_conn, "no-such-delivery")


def park(db_conn, guid: str, repo: dict | None, reason: str) -> None:
    store(db_conn, guid, repo)
    deliveries.park(db_conn, guid, reason)


def test_the_api_lists_parked_deliveries(client, db_conn):
    from app.repos import registry as repositories

    repositories.upsert_repository(db_conn, REPO["id"], REPO["full_name"])
    park(db_conn, "p-1", REPO, "worker died 5 times")
    park(db_conn, "p-2", None, "payload not usable")
    store(db_conn, "ok-1", REPO)
    body = client.get("/api/deliveries?status=parked&per_page=1").get_json()
    assert body["total"] == 2 and len(body["items"]) == 1 and body["next"]
    every = client.get("/api/deliveries?status=parked").get_json()["items"]
    assert {(d["id"], d["status"], d["error"]) for d in every} == {
        ("p-1", "parked", "worker died 5 times"), ("p-2", "parked", "payload not usable")}
    assert all(d["parked_at"] for d in every)
    only_repo = client.get("/api/deliveries?status=parked&repo=acme/poison").get_json()["items"]
    assert [d["id"] for d in only_repo] == ["p-1"]
    assert client.get("/api/deliveries?status=stuck").status_code == 400
    assert {d["id"] for d in client.get("/api/deliveries").get_json()["items"]} == {"p-1", "p-2", "ok-1"}


def test_doctor_reports_parked_deliveries_per_repository(settings, database_url, db_conn):
    for i in range(5):
        park(db_conn, f"p-{i}", REPO, f"RuntimeError: attempt {i}")
    park(db_conn, "other", None, "payload not usable")
    checks = {c.name: c for c in run_checks(env_for(database_url))}
    poison = checks["parked deliveries (acme/poison)"]
    assert poison.level == "warn"
    assert poison.message.startswith("5 parked, newest: ")
    assert poison.message.count("issues.opened") == 3  # the newest few, not all
    assert "fleet replay" in poison.fix
    assert checks["parked deliveries (no repository)"].message.startswith("1 parked")


def test_doctor_says_none_are_parked(settings, database_url, db_conn):
    checks = {c.name: c for c in run_checks(env_for(database_url))}
    assert (checks["parked deliveries"].level, checks["parked deliveries"].message) == ("ok", "none")
