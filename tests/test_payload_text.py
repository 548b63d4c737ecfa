"""Payloads are stored as the JSON text GitHub sent (migration 0017; issue 16): what ingest
refuses because no text could hold it, what it keeps exactly, and a database migrated from
jsonb whose deliveries still drain."""
from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from app import db, deliveries
from tests.conftest import PG_BASE, RUN_ID
from webhooks.ingest import _refuse_lone_surrogates


def test_a_surrogate_pair_is_one_character_and_is_kept_as_sent(settings, db_conn):
    text = '{"action": "opened", "issue": {"title": "ship it \\ud83d\\ude80"}, "repository": {"id": 77}}'
    payload = json.loads(text)
    _refuse_lone_surrogates(text)  # a whole pair: nothing to refuse
    assert deliveries.store(db_conn, deliveries.describe("issues", "pair-1", payload), text)
    stored = db_conn.execute("SELECT payload FROM deliveries WHERE id = 'pair-1'").fetchone()["payload"]
    assert stored == text  # the text as sent, not re-encoded
    (due,) = deliveries.due_in_lane(db_conn, 77, 10, 0)
    assert due.delivery.payload["issue"]["title"] == "ship it \N{ROCKET}"


HALVES = [
    '{"title": "\\ud800"}',  # a high half alone
    '{"title": "\\uDC00 alone"}',  # a low half alone
    '{"a": ["\\ud83d x"]}',  # a high half followed by something else
    '{"a": ["\\ud83d", "\\ude80"]}',  # the two halves in two strings
    '{"a": "\\ud83d\\ud83d\\ude80"}',  # two high halves, then one low
    '{"a": "\\\\ud83d\\ude80"}',  # a backslash and the letters ud83d, then a real low half
    '{"a": "\\ud83d\\\\\\ude80"}',  # a real high half, a backslash, a real low half
]


def test_half_a_pair_is_refused_in_one_line():
    for text in HALVES:
        assert any(ord(c) in range(0xD800, 0xE000) for s in _strings(json.loads(text)) for c in s), text
        try:
            _refuse_lone_surrogates(text)
        except ValueError as exc:
            assert str(exc) == "a string holds half of a UTF-16 surrogate pair"
        else:
            raise AssertionError(f"{text} was accepted")


def test_whole_pairs_and_lookalikes_are_accepted():
    for text in ('{"a": "\\ud83d\\ude80\\uD83D\\uDE80 x \\u00e9"}', '{"a": "\\\\ud800 is how you write it"}',
                 '{"a": ["\\ud83d\\ude80", "\\\\\\ud83d\\ude80"]}'):
        assert not any(ord(c) in range(0xD800, 0xE000) for s in _strings(json.loads(text)) for c in s), text
        _refuse_lone_surrogates(text)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_an_escaped_backslash_before_u_is_not_an_escape():
    text = '{"path": "C:\\\\ud800"}'  # the characters C, :, \, u, d, 8, 0, 0
    assert json.loads(text)["path"] == "C:\\ud800"
    _refuse_lone_surrogates(text)


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


_TRICKY = st.sampled_from(["\\", "u", "d", "8", "3", "D", "c", "\ud83d", "\ude80", "\udc00", "\U0001f680", "é", "x", '"'])


@given(st.lists(st.text(_TRICKY, max_size=12), max_size=4))
def test_the_escape_reader_agrees_with_the_parsed_strings(strings):
    text = json.dumps({"strings": strings})  # ASCII: surrogates escaped, backslashes doubled
    halves = any(ord(c) in range(0xD800, 0xE000) for s in json.loads(text)["strings"] for c in s)
    try:
        _refuse_lone_surrogates(text)
    except ValueError:
        assert halves, text
    else:
        assert not halves, text
