"""The pools: the checkout check (``db.check_pooled``): a live connection costs no round trip, a
connection the server closed is found out and replaced; evidence comes from the pool that commits
asynchronously."""
from __future__ import annotations

import time
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from app import db


@pytest.fixture
def pool(database_url):
    pool = ConnectionPool(database_url, min_size=1, max_size=1, open=True, check=db.check_pooled,
                          kwargs={"autocommit": True, "row_factory": dict_row}, reconnect_timeout=0)
    yield pool
    pool.close()


def _pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def _terminate(database_url: str, pid: int) -> None:
    with db.connect(database_url, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s) AS done", (pid,)).fetchone()["done"]


def test_a_live_connection_is_lent_without_a_query(pool, monkeypatch):
    sent = []
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda conn: sent.append(conn)))
    for _ in range(3):
        with pool.connection() as conn:
            conn.execute("SELECT 1")
    assert sent == []


def test_a_connection_the_server_closed_fails_the_check(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        db.check_pooled(conn)  # alive
        _terminate(database_url, _pid(conn))
        deadline = time.monotonic() + 5
        with pytest.raises(psycopg.OperationalError):
            while time.monotonic() < deadline:  # the FATAL notice arrives on its own time
                db.check_pooled(conn)
                time.sleep(0.02)


def test_the_pool_replaces_a_connection_terminated_while_idle(pool, database_url):
    with pool.connection() as conn:
        first = _pid(conn)
    _terminate(database_url, first)
    time.sleep(0.2)  # the server has closed the socket
    with pool.connection() as conn:
        assert _pid(conn) != first
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1


def test_a_closed_connection_fails_the_check(database_url):
    conn = db.connect(database_url, autocommit=True)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        db.check_pooled(conn)


def test_evidence_commits_without_waiting_for_the_disk_and_is_seen_at_once(settings, db_conn, monkeypatch):
    """Evidence rows come from the pool whose sessions commit asynchronously; the durable pool
    is untouched, and another session sees the row as soon as ``record`` returns."""
    from app.github.evidence import EvidenceRecorder

    settings_seen = []
    real_pooled = db.pooled

    def spying(url, timeout=10, *, durable=True):
        with real_pooled(url, timeout, durable=durable) as conn:
            settings_seen.append((durable, conn.execute("SELECT current_setting('synchronous_commit') AS s")
                                  .fetchone()["s"]))
            yield conn

    monkeypatch.setattr(db, "pooled", contextmanager(spying))
    EvidenceRecorder(settings.database_url, repo_id=1, repo_full_name="acme/x").record("issues.comment", "#1", "ok", 201)
    assert settings_seen == [(False, "off")]
    assert db_conn.execute("SELECT outcome FROM evidence WHERE target = '#1'").fetchone()["outcome"] == "ok"
    with db.pooled(settings.database_url) as durable:
        assert durable.execute("SELECT current_setting('synchronous_commit') AS s").fetchone()["s"] == "on"
