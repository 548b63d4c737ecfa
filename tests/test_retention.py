"""Retention (security review: "no retention"): finished deliveries, evidence and progress
snapshots older than FLEET_RETENTION_DAYS go, in bounded batches; recent rows, unfinished
deliveries and the snapshots the ETA reads stay."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from psycopg.types.json import Jsonb

from app import runtime
from app.settings import SettingsError, load_settings
from app.status.snapshot import PROGRESS_HISTORY
from jobs.retention import purge_old_rows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def delivery(conn, guid, status, age):
    conn.execute(
        "INSERT INTO deliveries (id, event, payload, status, received_at) VALUES (%s, 'issues', %s, %s, %s)",
        (guid, Jsonb({"private": "payload"}), status, NOW - age))


def evidence(conn, age, n=1):
    conn.execute(
        "INSERT INTO evidence (at, action, outcome) SELECT %s, 'comment', 'ok' FROM generate_series(1, %s)",
        (NOW - age, n))


def snapshot(conn, age):
    conn.execute(
        "INSERT INTO progress_snapshots (repo_id, taken_at, tasks_total, tasks_done, hours_total, hours_done)"
        " VALUES (1, %s, 1, 0, 1, 0)", (NOW - age,))


def ids(conn, table, column="id"):
    return sorted(r[column] for r in conn.execute(f"SELECT {column} FROM {table}").fetchall())


def count(conn, table):
    return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def test_old_finished_rows_go_recent_and_unfinished_stay(settings, db_conn):
    old, recent = timedelta(days=31), timedelta(days=29)
    for status in ("processed", "ignored"):
        delivery(db_conn, f"old-{status}", status, old)
        delivery(db_conn, f"new-{status}", status, recent)
    for status in ("received", "queued", "processing", "failed"):  # may still be processed or redelivered
        delivery(db_conn, f"old-{status}", status, timedelta(days=365))
    evidence(db_conn, old)
    evidence(db_conn, recent)
    db_conn.execute("INSERT INTO installations (id, account_login) VALUES (1, 'octo')")
    db_conn.execute("INSERT INTO repositories (id, installation_id, full_name) VALUES (1, 1, 'octo/widgets')")
    snapshot(db_conn, PROGRESS_HISTORY + timedelta(days=1))
    snapshot(db_conn, PROGRESS_HISTORY - timedelta(days=1))  # older than 30 days, but the ETA reads it

    assert purge_old_rows(NOW) == {"deliveries": 2, "evidence": 1, "progress_snapshots": 1}
    assert ids(db_conn, "deliveries") == [
        "new-ignored", "new-processed", "old-failed", "old-processing", "old-queued", "old-received"]
    assert [r["at"] for r in db_conn.execute("SELECT at FROM evidence").fetchall()] == [NOW - recent]
    assert [r["taken_at"] for r in db_conn.execute("SELECT taken_at FROM progress_snapshots").fetchall()] == [
        NOW - PROGRESS_HISTORY + timedelta(days=1)]
    assert purge_old_rows(NOW) == {"deliveries": 0, "evidence": 0, "progress_snapshots": 0}


def test_batches_are_bounded_and_a_backlog_drains_over_runs(settings, db_conn):
    evidence(db_conn, timedelta(days=40), n=25)
    evidence(db_conn, timedelta(days=1), n=3)
    assert purge_old_rows(NOW, batch=4, batches=3)["evidence"] == 12
    assert count(db_conn, "evidence") == 16
    assert purge_old_rows(NOW, batch=4, batches=3)["evidence"] == 12
    assert purge_old_rows(NOW, batch=4, batches=3)["evidence"] == 1
    assert count(db_conn, "evidence") == 3


def test_retention_days_is_configurable(settings, db_conn):
    runtime.configure(replace(settings, retention_days=7))
    evidence(db_conn, timedelta(days=8))
    evidence(db_conn, timedelta(days=6))
    assert purge_old_rows(NOW)["evidence"] == 1
    assert count(db_conn, "evidence") == 1


def test_retention_setting_default_and_validation():
    assert load_settings({}).retention_days == 30
    assert load_settings({"FLEET_RETENTION_DAYS": "90"}).retention_days == 90
    for bad in ("0", "6", "-1", "30d"):
        with pytest.raises(SettingsError, match="FLEET_RETENTION_DAYS"):
            load_settings({"FLEET_RETENTION_DAYS": bad})


def test_evidence_count_is_bounded_and_next_stays_exact(client, settings, db_conn, monkeypatch):
    from app.api import readers

    monkeypatch.setattr(readers, "EVIDENCE_COUNT_CAP", 5)
    evidence(db_conn, timedelta(hours=1), n=12)
    first = client.get("/api/evidence?per_page=4").get_json()
    assert first["total"] == 5 and first["next"].endswith("page=2")
    third = client.get("/api/evidence?per_page=4&page=3").get_json()
    assert len(third["items"]) == 4 and third["total"] == 12 and third["next"] is None
    assert client.get("/api/evidence?per_page=4&page=9").get_json()["total"] == 5
    monkeypatch.setattr(readers, "EVIDENCE_COUNT_CAP", 100)
    assert client.get("/api/evidence?per_page=4&page=9").get_json()["total"] == 12
