"""``POST /webhooks/github``: verify, store, ask for a drain, answer. No GitHub calls here.

Deliveries arriving together are stored by one INSERT and one commit (webhooks/group_commit.py;
a 202 is sent only after the commit that holds the delivery), then one Redis round trip per batch
raises their lanes' flags (jobs/dispatch.py); only the first delivery of a burst on a repository
also enqueues the drain job. This is the hot path of a burst, so it is plain WSGI in front of the
Flask app (``WebhookIngest``): Flask's request and response objects cost more
than the rest of the work. The payload is stored as the JSON text GitHub sent, never re-encoded.

Status codes: 202 accepted (also for a duplicate GUID), 400 malformed, 401 bad signature,
405 not a POST, 413 over GitHub's 25 MB cap, 503 when Postgres cannot store the delivery (GitHub
then marks it failed and the scheduler's redelivery sweep asks for it again).
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout

from app import deliveries
from app.api.headers import SECURITY_HEADERS
from app.metrics import INGEST_SECONDS
from app.settings import Settings
from jobs.dispatch import request_drains
from webhooks.group_commit import GroupCommit
from webhooks.signature import verify

log = logging.getLogger("fleet.ingest")

PATH = "/webhooks/github"
MAX_BODY = 25 * 1024 * 1024
_HEADERS = [(name, value) for name, value in SECURITY_HEADERS.items()]
# A \uD800-\uDFFF escape; the even run of backslashes before it (escaped backslashes) is skipped,
# so ``\\ud800`` (a backslash, then the letters ud800) is not one.
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")
_HALF_A_PAIR = "a string holds half of a UTF-16 surrogate pair"
_REASONS = {202: "202 Accepted", 400: "400 Bad Request", 401: "401 Unauthorized", 405: "405 Method Not Allowed",
            413: "413 Payload Too Large", 503: "503 Service Unavailable"}


class WebhookIngest:
    """WSGI middleware answering ``POST /webhooks/github`` for the Flask app ``flask_app`` (its
    ``FLEET_SETTINGS`` and ``FLEET_POOL``); every other request goes on to ``wsgi_app``."""

    def __init__(self, flask_app, wsgi_app: Callable):
        self.config, self.app = flask_app.config, wsgi_app
        self.group = GroupCommit(lambda: self.pool.connection(timeout=3), _request_drains)

    @property
    def settings(self) -> Settings:
        return self.config["FLEET_SETTINGS"]

    @property
    def pool(self) -> ConnectionPool:
        return self.config["FLEET_POOL"]

    def __call__(self, request: dict, start_response: Callable) -> Iterable[bytes]:
        # ``request`` is the WSGI environ dict: CGI names for the request line and headers.
        if request.get("PATH_INFO") != PATH:
            return self.app(request, start_response)
        started = time.perf_counter()
        if request.get("REQUEST_METHOD") != "POST":
            status, outcome, answer = 405, "not_allowed", {"message": "webhooks are POSTed"}
        else:
            status, outcome, answer = self.receive(request)
        INGEST_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        body = json.dumps({"status": outcome, **answer}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *_HEADERS]
        if status == 405:
            headers.append(("Allow", "POST"))
        start_response(_REASONS[status], headers)
        return [body]

    def receive(self, request: dict) -> tuple[int, str, dict]:
        """(HTTP status, outcome, the rest of the answer) for one delivery."""
        body = _read_body(request)
        if body is None:
            return 413, "too_large", {"message": "body exceeds GitHub's 25 MB webhook limit"}
        if not self.settings.webhook_secret:
            log.error("webhook refused: GITHUB_WEBHOOK_SECRET is not configured")
            return 503, "not_configured", {"message": "webhook secret not configured"}
        guid = request.get("HTTP_X_GITHUB_DELIVERY", "")
        if not verify(self.settings.webhook_secret, body, request.get("HTTP_X_HUB_SIGNATURE_256")):
            log.warning("webhook refused: bad signature", extra={"delivery_id": guid})
            return 401, "bad_signature", {"message": "X-Hub-Signature-256 missing or wrong"}
        event = request.get("HTTP_X_GITHUB_EVENT", "")
        if not _header_ok(event) or not _header_ok(guid):
            return 400, "bad_headers", {
                "message": "X-GitHub-Event and X-GitHub-Delivery are required (printable, <= 100 chars)"}
        try:
            text = _payload_text(body, request.get("CONTENT_TYPE") or "application/json")
            payload = json.loads(text, parse_float=_finite, parse_constant=_not_a_number)
            if not isinstance(payload, dict):
                raise ValueError("payload must be a JSON object")
            _refuse_lone_surrogates(text)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, "bad_payload", {"message": f"malformed payload: {str(exc)[:200]}"}
        return self.store(deliveries.describe(event, guid, payload), text)

    def store(self, delivery: deliveries.Delivery, text: str) -> tuple[int, str, dict]:
        try:
            fresh, queued = self.group.store(delivery, text)
        except psycopg.errors.DataError as exc:
            # Postgres refuses the content itself (NaN, 1e999, lone surrogates): the payload is
            # bad, the database is fine; a 503 would have GitHub redeliver it for three days.
            return 400, "bad_payload", {"message": f"payload cannot be stored: {str(exc).splitlines()[0][:200]}"}
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("webhook not stored: database unavailable",
                      extra={"delivery_id": delivery.id, "error": type(exc).__name__})
            return 503, "unavailable", {"message": "database unavailable; ask GitHub to redeliver"}
        if not fresh:
            return 202, "duplicate", {"message": "delivery already stored", "delivery": delivery.id}
        return 202, "accepted", {"message": "stored" + (" and queued" if queued else "; queued later"),
                                 "delivery": delivery.id, "queued": queued}


def _read_body(request: dict) -> bytes | None:
    """The request body, None when it is over GitHub's cap (declared or actual)."""
    try:
        length = int(request.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > MAX_BODY:
        return None
    stream = request["wsgi.input"]
    body = stream.read(length) if length >= 0 else stream.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def _payload_text(body: bytes, content_type: str) -> str:
    """The JSON text of a json or form (``payload=``) delivery; ValueError when there is none."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        if "payload" not in fields:
            raise ValueError("form delivery without a payload field")
        return fields["payload"][0]
    return body.decode("utf-8")


def _finite(literal: str) -> float:
    # The text is stored as sent: a number Python reads as infinite would be read back that way.
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {literal[:40]}")
    return value


def _not_a_number(literal: str) -> float:
    raise ValueError(f"{literal} is not JSON")


def _refuse_lone_surrogates(text: str) -> None:
    """ValueError when a string holds half of a UTF-16 pair (``"\\ud800"``): Python reads it, but
    no text Fleet writes it to (Postgres, GitHub) can hold it. Reads the escapes, not the payload:
    a high half must be followed at once by a low half, and a low half preceded by a high one."""
    if "\\ud" not in text and "\\uD" not in text:
        return
    low_expected_at = None  # where the escape after a high half must start
    for escape in _SURROGATE_ESCAPE.finditer(text):
        if int(escape.group(1), 16) < 0xDC00:  # a high half
            if low_expected_at is not None:
                raise ValueError(_HALF_A_PAIR)
            low_expected_at = escape.end()
        elif escape.end() - 6 != low_expected_at:
            raise ValueError(_HALF_A_PAIR)
        else:
            low_expected_at = None
    if low_expected_at is not None:
        raise ValueError(_HALF_A_PAIR)


def _header_ok(value: str) -> bool:
    return 0 < len(value) <= 100 and value.isprintable()


def _request_drains(stored: list[deliveries.Delivery]) -> bool:
    """Have the lanes of deliveries just stored drained; when Redis is away the sweeper does it
    later."""
    try:
        request_drains({d.lane for d in stored})
    except redis.RedisError as exc:
        log.warning("deliveries stored but not queued (Redis unavailable)",
                    extra={"delivery_ids": [d.id for d in stored][:10], "error": type(exc).__name__})
        return False
    return True
