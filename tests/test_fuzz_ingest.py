"""Fuzzing the webhook path with hypothesis: payloads mutated from GitHub's official examples
(keys dropped, types changed, huge strings, unicode, nested garbage), correctly signed, POSTed to
``/webhooks/github`` of a Fleet wired to the simulator, then processed by the worker.

Ingest never answers 5xx; processing never crashes the worker; every delivery ends processed,
ignored, or failed with a ``last_error`` that names a bad payload or a GitHub refusal — never a
programming error (TypeError, KeyError, …) escaping a handler.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from werkzeug.test import Client

from jobs.process import process_delivery

# Huge generated strings make hypothesis warn about the size of its own example reprs.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

EXAMPLES_DIR = Path(__file__).resolve().parent / "fixtures" / "webhook_examples"
EXAMPLES = [
    (path.stem, payload)
    for path in sorted(EXAMPLES_DIR.glob("*.json"))
    for payload in json.loads(path.read_text())
]

# A handler that trips over a payload must say so (MalformedPayload, recorded as final with a
# message naming the event) or fail on GitHub's answer; these mean it crashed instead.
CRASHES = ("TypeError", "AttributeError", "KeyError", "IndexError", "NameError", "UnboundLocalError",
           "AssertionError", "ZeroDivisionError", "RecursionError", "UnicodeEncodeError", "OverflowError",
           "ValidationError", "DataError", "NumericValueOutOfRange", "ProgrammingError",
           "InvalidTextRepresentation", "UntranslatableCharacter", "CharacterNotInRepertoire")

FUZZ = hsettings(max_examples=120, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
            max_size=20),
    st.sampled_from(["", "\x00", "null", "0", "-1", "9" * 40, "#1", "/claim", "a" * 70_000, "🚀" * 1000,
                     "\u202e", "../../etc/passwd", "closed", "open", "main", "refs/heads/main"]),
)
garbage = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


def paths(value, prefix=()):
    """Every path to a value inside nested dicts and lists."""
    out = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append(prefix + (key,))
            out.extend(paths(child, prefix + (key,)))
    elif isinstance(value, list):
        for i, child in enumerate(value[:5]):
            out.append(prefix + (i,))
            out.extend(paths(child, prefix + (i,)))
    return out


def parent_of(root, path):
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_deliveries(draw):
    event, original = draw(st.sampled_from(EXAMPLES))
    payload = copy.deepcopy(original)
    candidates = paths(payload)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        try:
            parent = parent_of(payload, path)
            key = path[-1]
            parent[key]  # still there (an earlier mutation may have replaced an ancestor)
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["drop", "replace", "replace", "stringify", "wrap"]))
        if op == "drop":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == "replace":
            parent[key] = draw(garbage)
        elif op == "stringify":
            parent[key] = json.dumps(parent[key])[:200]
        else:
            parent[key] = [parent[key]]
    return event, payload


def retarget(world, payload: dict) -> dict:
    """Point the payload at the simulator's repository and installation (when it names any), so
    handlers really run and really call GitHub."""
    repo = world.sim.world.repo(world.repo)
    if isinstance(payload.get("repository"), dict):
        payload["repository"].update({"id": repo.id, "full_name": world.repo, "name": world.repo.split("/")[1]})
    if isinstance(payload.get("installation"), dict) or "repository" in payload:
        payload["installation"] = {"id": world.installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    return payload


def post(world, event: str, body: bytes):
    """POST a signed delivery to Fleet's WSGI app (in process: the fuzzing is about what Fleet
    does with the bytes, and skipping TCP keeps hundreds of examples fast)."""
    guid = str(uuid.uuid4())
    secret = world.settings.webhook_secret
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    client = Client(world.fleet.server.app)
    return guid, client.post("/webhooks/github", data=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": guid,
        "X-Hub-Signature-256": signature, "User-Agent": "GitHub-Hookshot/fuzz"})


def process(guid: str) -> None:
    """Run the delivery's job body now, as the worker would; an exception escaping it is what
    RQ would record as a failed job, so it is checked through the delivery row instead."""
    try:
        process_delivery(guid)
    except Exception:  # noqa: BLE001 - judged by assert_no_crash from the recorded last_error
        pass


@pytest.fixture
def fuzz_world(world):
    world.sim.add_user("Codertocat", "write")
    for number in range(1, 4):
        world.sim.open_issue(world.repo, f"Fuzz target {number}")
    world.settle()
    return world


def test_unmodified_examples_are_accepted_and_never_crash(fuzz_world, db_conn):
    """Every official example, retargeted at the simulator, is stored and handled cleanly."""
    w = fuzz_world
    for event, payload in EXAMPLES:
        body = json.dumps(retarget(w, copy.deepcopy(payload))).encode()
        _, resp = post(w, event, body)
        assert resp.status_code == 202, (event, payload.get("action"), resp.get_data(as_text=True))
    fuzz_world.settle()
    assert_no_crash(db_conn)


def assert_no_crash(db_conn, guid: str | None = None) -> list[dict]:
    """The delivery ``guid`` (default: every delivery) ended processed, ignored, or failed (parked,
    for a payload retrying cannot fix) with a reason that is not a crash."""
    sql = "SELECT id, event, action, status, attempts, last_error FROM deliveries"
    rows = db_conn.execute(sql + (" WHERE id = %s" if guid else ""), (guid,) if guid else None).fetchall()
    for row in rows:
        assert row["status"] in ("processed", "ignored", "failed", "parked"), row
        if row["status"] in ("failed", "parked"):
            assert row["last_error"], row
            kind = row["last_error"].split(":", 1)[0]
            assert kind not in CRASHES, f"{row['event']}.{row['action']} crashed a handler: {row['last_error'][:600]}"
    return rows


@FUZZ
@given(delivery=mutated_deliveries())
def test_mutated_payloads_never_5xx_and_never_crash_a_handler(fuzz_world, db_conn, delivery):
    w = fuzz_world
    event, payload = delivery
    payload = retarget(w, payload) if isinstance(payload, dict) else payload
    body = json.dumps(payload).encode()
    guid, resp = post(w, event, body)
    assert resp.status_code in (202, 400), (resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.status_code == 202:
        process(guid)
        assert_no_crash(db_conn, guid)


@hsettings(FUZZ, max_examples=60)
@given(event=st.sampled_from([e for e, _ in EXAMPLES] + ["", "x" * 101, "ünïcode", "issues\t"]),
       body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      garbage.map(lambda v: json.dumps(v).encode())))
def test_arbitrary_signed_bodies_are_refused_or_accepted_never_5xx(fuzz_world, db_conn, event, body):
    """Not JSON, not an object, not UTF-8, odd event names: 4xx or 202, never 5xx."""
    guid, resp = post(fuzz_world, event, body)
    assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.status_code == 202:
        process(guid)
        assert_no_crash(db_conn, guid)


def test_follow_up_jobs_of_fuzzed_deliveries_do_not_crash(fuzz_world, db_conn):
    """One more mutated batch, this time through the real RQ queue (and whatever jobs the
    handlers enqueue), drained by the worker."""
    import random

    rng = random.Random(7)
    for event, original in rng.sample(EXAMPLES, 20):
        payload = retarget(fuzz_world, copy.deepcopy(original))
        for key in rng.sample(sorted(payload), k=min(2, len(payload))):
            if key not in ("repository", "installation"):
                payload[key] = rng.choice([None, 0, "", [], {}, "x" * 5000])
        post(fuzz_world, event, json.dumps(payload).encode())
    fuzz_world.settle()
    assert_no_crash(db_conn)


@pytest.mark.parametrize("event, body", [
    ("ping", b'{"zen": NaN, "hook_id": 1}'),
    ("ping", b'{"zen": "Infinity", "size": 1e999}'),
    ("ping", b'{"zen": "lone surrogate \\ud800"}'),
    ("issues\x00", b'{}'),
], ids=["NaN", "overflowing-float", "lone-surrogate", "NUL-in-event-header"])
def test_payload_postgres_cannot_store_is_refused_as_malformed(client, settings, event, body):
    signature = "sha256=" + hmac.new(settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    resp = client.post("/webhooks/github", data=body, headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature,
        "Content-Type": "application/json"})
    assert resp.status_code == 400, (resp.status_code, resp.get_json())
