"""``POST /webhooks/github``: verify, store, enqueue, answer. No GitHub calls here.

Status codes: 202 accepted (also for a duplicate GUID), 400 malformed, 401 bad signature,
413 over GitHub's 25 MB cap, 503 when Postgres cannot store the delivery (GitHub then marks it
failed and the scheduler's redelivery sweep asks for it again).
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

import psycopg
import redis
from flask import Blueprint, Response, current_app, jsonify, request

from app import deliveries
from app.metrics import INGEST_SECONDS
from jobs.dispatch import enqueue_delivery
from webhooks.signature import verify

log = logging.getLogger("fleet.ingest")
bp = Blueprint("webhooks", __name__)

MAX_BODY = 25 * 1024 * 1024


def _answer(status: int, outcome: str, message: str, started: float, **extra: object) -> tuple[Response, int]:
    INGEST_SECONDS.labels(outcome).observe(time.perf_counter() - started)
    return jsonify({"status": outcome, "message": message, **extra}), status


def _parse_body(body: bytes, content_type: str) -> dict:
    """The JSON payload from a json or form (``payload=``) delivery; ValueError when malformed."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        if "payload" not in fields:
            raise ValueError("form delivery without a payload field")
        text = fields["payload"][0]
    else:
        text = body.decode("utf-8")
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError("payload must be a JSON object")
    return payload


@bp.post("/webhooks/github")
def receive() -> tuple[Response, int]:
    """Accept one GitHub webhook delivery."""
    started = time.perf_counter()
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return _answer(413, "too_large", "body exceeds GitHub's 25 MB webhook limit", started)
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        return _answer(413, "too_large", "body exceeds GitHub's 25 MB webhook limit", started)
    settings = current_app.config["FLEET_SETTINGS"]
    if not settings.webhook_secret:
        log.error("webhook refused: GITHUB_WEBHOOK_SECRET is not configured")
        return _answer(503, "not_configured", "webhook secret not configured", started)
    if not verify(settings.webhook_secret, body, request.headers.get("X-Hub-Signature-256")):
        log.warning("webhook refused: bad signature", extra={"delivery_id": request.headers.get("X-GitHub-Delivery")})
        return _answer(401, "bad_signature", "X-Hub-Signature-256 missing or wrong", started)
    event = request.headers.get("X-GitHub-Event", "")
    guid = request.headers.get("X-GitHub-Delivery", "")
    if not _header_ok(event) or not _header_ok(guid):
        return _answer(400, "bad_headers", "X-GitHub-Event and X-GitHub-Delivery are required (printable, <= 100 chars)",
                       started)
    try:
        payload = _parse_body(body, request.content_type or "application/json")
    except (ValueError, UnicodeDecodeError) as exc:
        return _answer(400, "bad_payload", f"malformed payload: {str(exc)[:200]}", started)
    delivery = deliveries.describe(event, guid, payload)
    try:
        with current_app.config["FLEET_POOL"].connection(timeout=3) as conn:
            fresh = deliveries.store(conn, delivery)
    except psycopg.errors.DataError as exc:
        # Postgres refuses the content itself (NaN, 1e999, lone surrogates): the payload is bad,
        # the database is fine; a 503 would have GitHub redeliver it for three days.
        return _answer(400, "bad_payload", f"payload cannot be stored: {str(exc).splitlines()[0][:200]}", started)
    except Exception as exc:  # pool timeouts are not psycopg.Error
        if not _is_db_error(exc):
            raise
        log.error("webhook not stored: database unavailable", extra={"delivery_id": guid, "error": type(exc).__name__})
        return _answer(503, "unavailable", "database unavailable; ask GitHub to redeliver", started)
    if not fresh:
        return _answer(202, "duplicate", "delivery already stored", started, delivery=guid)
    queued = _enqueue(guid)
    return _answer(202, "accepted", "stored" + (" and queued" if queued else "; queued later"), started,
                   delivery=guid, queued=queued)


def _header_ok(value: str) -> bool:
    return 0 < len(value) <= 100 and value.isprintable()


def _is_db_error(exc: BaseException) -> bool:
    from psycopg_pool import PoolTimeout

    return isinstance(exc, (psycopg.Error, PoolTimeout))


def _enqueue(guid: str) -> bool:
    """Enqueue and mark queued; when Redis is away the sweeper enqueues it later."""
    try:
        enqueue_delivery(guid)
    except redis.RedisError as exc:
        log.warning("delivery stored but not queued (Redis unavailable)", extra={"delivery_id": guid, "error": type(exc).__name__})
        return False
    try:
        with current_app.config["FLEET_POOL"].connection(timeout=3) as conn:
            deliveries.mark_queued(conn, guid)
    except Exception as exc:
        if not _is_db_error(exc):
            raise
    return True
