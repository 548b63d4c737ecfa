"""Every official example payload (@octokit/webhooks-examples, vendored) for the events Fleet
handles goes through ingest and processing: no 5xx, no crash, each stored.

GitHub itself is unreachable here (the examples name repositories nobody serves), so handlers
that need GitHub fail cleanly with a recorded error; what must never happen is a Python error
that shows a handler misreading a real payload shape.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app import runtime
from app.github.client import RetryPolicy
from tests.conftest import drain
from tests.test_ingest import post

EXAMPLES = Path(__file__).parent / "fixtures" / "webhook_examples"
# Errors that mean "GitHub (or the payload's own fields) said no", not "Fleet misread a payload".
EXPECTED_ERRORS = ("RequestError", "RequestFailed", "RequestTimeout", "ConnectError", "not usable", "GitHubRefused",
                   "names no repository or installation")


def examples():
    for path in sorted(EXAMPLES.glob("*.json")):
        for index, payload in enumerate(json.loads(path.read_text())):
            yield pytest.param(path.stem, payload, id=f"{path.stem}-{payload.get('action', 'none')}-{index}")


@pytest.fixture(scope="module")
def app_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def offline_app(settings, fleet_app, app_key):
    """Fleet configured as an App whose GitHub never answers, failing fast."""
    pem = app_key
    runtime.configure(replace(settings, app_id=1, private_key=pem, bot_login="fleet[bot]"))
    runtime.github_clients().retry = RetryPolicy(attempts=0)
    yield fleet_app.test_client()
    runtime.configure(settings)


@pytest.mark.parametrize("event, payload", list(examples()))
def test_official_example_is_stored_and_processed_without_crashing(offline_app, db_conn, event, payload):
    guid = str(uuid.uuid4())
    resp = post(offline_app, event, payload, guid=guid)
    assert resp.status_code == 202, resp.get_json()
    drain()
    row = db_conn.execute("SELECT status, last_error FROM deliveries WHERE id = %s", (guid,)).fetchone()
    assert row is not None
    if row["status"] in ("failed", "parked"):  # parked: a payload retrying cannot fix
        assert any(marker in (row["last_error"] or "") for marker in EXPECTED_ERRORS), row["last_error"]
    else:
        assert row["status"] in ("processed", "ignored")
