"""Payloads are stored as the JSON text GitHub sent (migration 0017; issue 16): what ingest
refuses because no text could hold it, what it keeps exactly, and a database migrated from
jsonb whose deliveries still drain."""
from __future__ import annotations

import json
import uuid

from app import db, deliveries
from tests.conftest import PG_BASE, RUN_ID
from webhooks.ingest import _refuse_lone_surrogates


def test_a_surrogate_pair_is_one_character_and_is_kept_as_sent(settings, db_conn):
    text = '{"action": "opened", "issue": {"title": "ship it \\ud83d\\ude80"}, "repository": {"id": 77}}'
    payload = json.loads(text)
    _refuse_lone_surrogates(text, payload)  # a whole pair: nothing to refuse
    assert deliveries.store(db_conn, deliveries.describe("issues", "pair-1", payload), text)
    stored = db_conn.execute("SELECT payload FROM deliveries WHERE id = 'pair-1'").fetchone()["payload"]
    assert stored == text  # the text as sent, not re-encoded
    (due,) = deliveries.due_in_lane(db_conn, 77, 10, 0)
    assert due.delivery.payload["issue"]["title"] == "ship it \N{ROCKET}"


def test_half_a_pair_is_refused_in_one_line():
    for text in ('{"title": "\\ud800"}', '{"title": "\\uDC00 alone"}', '{"a": ["\\ud83d x"]}'):
        try:
            _refuse_lone_surrogates(text, json.loads(text))
        except ValueError as exc:
            assert str(exc) == "a string holds half of a UTF-16 surrogate pair"
        else:
            raise AssertionError(f"{text} was accepted")


def test_an_escaped_backslash_before_u_is_not_an_escape():
    text = '{"path": "C:\\\\ud800"}'  # the characters C, :, \, u, d, 8, 0, 0
    payload = json.loads(text)
    assert payload["path"] == "C:\\ud800"
    _refuse_lone_surrogates(text, payload)


def test_nul_escapes_are_stored_as_the_replacement_character(settings, db_conn):
    text = '{"body": "a\\u0000b", "repository": {"id": 78}}'
    assert deliveries.store(db_conn, deliveries.describe("issue_comment", "nul-1", json.loads(text)), text)
    (due,) = deliveries.due_in_lane(db_conn, 78, 10, 0)
    assert due.delivery.payload["body"] == "a\N{REPLACEMENT CHARACTER}b"


def test_a_database_migrated_from_jsonb_keeps_its_deliveries_drainable():
    url = f"{PG_BASE}/fleet_test_{RUN_ID}_m17"
    db.ensure_database(url)
    try:
        migrations = db.load_migrations()
        before = [m for m in migrations if m.version < 17]
        assert [m.version for m in migrations if m.version >= 17][0] == 17
        with db.connect(url) as conn:
            db.migrate(conn, before)
            assert _payload_type(conn) == "jsonb"
            payload = {"action": "labeled", "repository": {"id": 79}, "label": {"name": "prio: high ✓"}}
            conn.execute("INSERT INTO deliveries (id, event, action, repo_id, payload) VALUES (%s, 'issues', "
                         "'labeled', 79, %s::jsonb)", (str(uuid.uuid4()), json.dumps(payload)))
            conn.commit()
            assert [m.version for m in db.migrate(conn)][0] == 17
            assert _payload_type(conn) == "text"
            (due,) = deliveries.due_in_lane(conn, 79, 10, 0)
            assert due.delivery.payload == payload
    finally:
        db.drop_database(url)


def _payload_type(conn) -> str:
    return conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'deliveries' "
                        "AND column_name = 'payload'").fetchone()["data_type"]
