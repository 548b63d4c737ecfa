"""Webhook ingest: every bad input is refused with its own status code and nothing is lost."""
from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
import redis

from app import runtime
from webhooks.signature import sign, verify

from tests.conftest import drain

SECRET = "test-webhook-secret"


def post(client, event: str, payload, *, guid: str | None = None, secret: str = SECRET, form: bool = False,
         signature: str | None = None, body: bytes | None = None):
    if body is None:
        text = json.dumps(payload)
        body = urlencode({"payload": text}).encode() if form else text.encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature if signature is not None else sign(secret, body),
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
    }
    return client.post("/webhooks/github", data=body, headers=headers)


def ping_payload():
    return {"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "App", "id": 1}}


def stored(db_conn):
    return db_conn.execute("SELECT id, event, action, status, attempts FROM deliveries ORDER BY received_at").fetchall()


def test_signature_matches_githubs_test_vector():
    """The documented vector from GitHub's docs must verify (and a tampered one must not)."""
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign("It's a Secret to Everybody", b"Hello, World!") == expected
    assert verify("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not verify("It's a Secret to Everybody", b"Hello, World?", expected)
    assert not verify("It's a Secret to Everybody", b"Hello, World!", "sha1=" + expected[7:])


def test_valid_delivery_is_stored_queued_and_processed(client, db_conn):
    resp = post(client, "ping", ping_payload(), guid="g-1")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["status"] == "accepted"
    assert [(r["id"], r["status"]) for r in stored(db_conn)] == [("g-1", "received")]
    assert drain() == 1  # its lane's drain
    assert stored(db_conn)[0]["status"] == "processed"


def test_form_encoded_delivery_is_accepted(client, db_conn):
    resp = post(client, "ping", ping_payload(), form=True)
    assert resp.status_code == 202
    assert stored(db_conn)[0]["event"] == "ping"


@pytest.mark.parametrize("signature", [
    "", "sha256=" + "0" * 64, "sha1=abc", "garbage",
    # Non-ASCII (a TypeError and a 500 before) and other malformed values are all 401.
    "sha256=" + "\u00e9" * 64, "sha256=\u00ff", "\u00e9sha256=", "sha256=", "sha256=" + "0" * 64 + "\u00a0x",
    "sha256=" + "Z" * 64,
])
def test_bad_or_missing_signature_is_401_and_nothing_stored(client, db_conn, signature):
    resp = post(client, "ping", ping_payload(), signature=signature)
    assert resp.status_code == 401
    assert resp.get_json()["status"] == "bad_signature"
    assert stored(db_conn) == []


def test_signature_with_another_secret_is_refused(client, db_conn):
    assert post(client, "ping", ping_payload(), secret="not-the-secret").status_code == 401
    assert stored(db_conn) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_json_is_400(client, db_conn, body):
    resp = post(client, "ping", None, body=body)
    assert resp.status_code == 400
    assert "malformed" in resp.get_json()["message"]
    assert stored(db_conn) == []


def test_form_without_payload_field_is_400(client, db_conn):
    resp = post(client, "ping", None, body=b"other=1", form=True)
    assert resp.status_code == 400


def test_missing_event_headers_is_400(client, db_conn):
    body = b"{}"
    resp = client.post("/webhooks/github", data=body, headers={
        "X-Hub-Signature-256": sign(SECRET, body), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert stored(db_conn) == []


def test_body_over_25_mb_is_413(client, db_conn):
    body = b'{"x": "' + b"a" * (25 * 1024 * 1024) + b'"}'
    resp = post(client, "ping", None, body=body)
    assert resp.status_code == 413
    assert stored(db_conn) == []


def test_duplicate_guid_is_acknowledged_and_processed_once(client, db_conn):
    first = post(client, "ping", ping_payload(), guid="dup-1")
    second = post(client, "ping", ping_payload(), guid="dup-1")
    assert first.status_code == second.status_code == 202
    assert second.get_json()["status"] == "duplicate"
    assert drain() == 1
    rows = stored(db_conn)
    assert len(rows) == 1 and rows[0]["attempts"] == 1 and rows[0]["status"] == "processed"


def test_redis_down_still_stores_and_sweeper_enqueues_later(client, db_conn, settings, monkeypatch):
    """With Redis away the delivery is stored and answered 202; the sweeper queues it later."""
    from jobs import sweeper

    def broken_enqueue(*_a, **_k):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr("webhooks.ingest.request_drains", broken_enqueue)
    resp = post(client, "ping", ping_payload(), guid="r-1")
    assert resp.status_code == 202 and resp.get_json()["queued"] is False
    assert stored(db_conn)[0]["status"] == "received"
    monkeypatch.undo()
    assert sweeper.sweep_deliveries(grace=0) == ["r-1"]
    assert drain() == 1
    assert stored(db_conn)[0]["status"] == "processed"


def test_postgres_down_answers_503(client, fleet_app, db_conn):
    """When the delivery cannot be stored, GitHub must see a failure (and redeliver later)."""
    from app.wsgi import make_pool

    broken = make_pool("postgresql://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    broken.open(wait=False)
    original = fleet_app.config["FLEET_POOL"]
    fleet_app.config["FLEET_POOL"] = broken
    try:
        resp = post(client, "ping", ping_payload(), guid="pg-1")
    finally:
        fleet_app.config["FLEET_POOL"] = original
        broken.close()
    assert resp.status_code == 503
    assert resp.get_json()["status"] == "unavailable"
    assert stored(db_conn) == []


def test_unknown_event_is_stored_and_ignored(client, db_conn):
    post(client, "sponsorship", {"action": "created", "sender": {"login": "x"}}, guid="u-1")
    drain()
    row = db_conn.execute("SELECT status, last_error FROM deliveries WHERE id = 'u-1'").fetchone()
    assert row["status"] == "ignored"
    assert "no handler" in row["last_error"]


def test_malformed_payload_for_known_event_fails_cleanly(client, db_conn):
    """A payload missing what the handler needs is parked with the reason (retrying cannot fix
    it); no crash."""
    post(client, "issues", {"action": "opened", "repository": {"id": 1, "full_name": "o/r"}}, guid="m-1")
    drain()
    row = db_conn.execute("SELECT status, last_error FROM deliveries WHERE id = 'm-1'").fetchone()
    assert row["status"] == "parked"
    assert "not usable" in row["last_error"]


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["checks"] == {"postgres": "ok", "redis": "ok"}


def test_security_headers_present(client):
    resp = client.get("/healthz")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_unconfigured_secret_refuses(settings, db_conn):
    from dataclasses import replace

    from app.wsgi import create_app

    app = create_app(replace(settings, webhook_secret=None))
    try:
        resp = post(app.test_client(), "ping", ping_payload())
        assert resp.status_code == 503
    finally:
        app.config["FLEET_POOL"].close()
        runtime.configure(settings)
    assert stored(db_conn) == []
