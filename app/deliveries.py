"""Stored webhook deliveries: the durable inbox between ingest and the workers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

INSERT_DELIVERY = """
INSERT INTO deliveries (id, event, action, installation_id, repo_id, repo_full_name, payload)
VALUES (%(id)s, %(event)s, %(action)s, %(installation_id)s, %(repo_id)s, %(repo_full_name)s, %(payload)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

MARK_QUEUED = """
UPDATE deliveries SET status = 'queued', enqueued_at = now()
WHERE id = %s AND status IN ('received', 'failed')
"""

START_PROCESSING = """
UPDATE deliveries SET status = 'processing', attempts = attempts + 1, started_at = now()
WHERE id = %s AND status <> 'processed' AND status <> 'ignored'
RETURNING id, event, action, installation_id, repo_id, repo_full_name, payload, attempts
"""

FINISH = """
UPDATE deliveries SET status = %s, processed_at = now(), last_error = %s WHERE id = %s
"""

FAIL = """
UPDATE deliveries SET status = 'failed', last_error = %s WHERE id = %s
"""

# Deliveries the sweeper must (re-)enqueue: never enqueued (Redis was down), or enqueued /
# started long ago without finishing (a worker died), or failed with attempts left.
PENDING = """
SELECT id FROM deliveries
WHERE (status = 'received' AND received_at < now() - make_interval(secs => %(grace)s))
   OR (status IN ('queued', 'processing')
       AND coalesce(started_at, enqueued_at, received_at) < now() - make_interval(secs => %(stuck)s))
   OR (status = 'failed' AND attempts < %(max_attempts)s
       AND coalesce(started_at, received_at) < now() - make_interval(secs => %(grace)s))
ORDER BY received_at
LIMIT %(limit)s
"""

KNOWN_IDS = "SELECT id FROM deliveries WHERE id = ANY(%s)"

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Delivery:
    id: str
    event: str
    action: str | None
    installation_id: int | None
    repo_id: int | None
    repo_full_name: str | None
    payload: dict[str, Any]
    attempts: int = 0

    @property
    def key(self) -> str:
        """The routing key, ``event.action`` (or just ``event`` for action-less events)."""
        return f"{self.event}.{self.action}" if self.action else self.event


def describe(event: str, delivery_id: str, payload: dict[str, Any]) -> Delivery:
    """Pull the indexing fields out of a verified payload without trusting its shape."""
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    installation = payload.get("installation") if isinstance(payload.get("installation"), dict) else {}
    repo = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
    inst_id = installation.get("id") if isinstance(installation.get("id"), int) else None
    repo_id = repo.get("id") if isinstance(repo.get("id"), int) else None
    full_name = repo.get("full_name") if isinstance(repo.get("full_name"), str) else None
    return Delivery(delivery_id, event, action, inst_id, repo_id, full_name, payload)


def store(conn: psycopg.Connection, delivery: Delivery) -> bool:
    """Insert the delivery; False when this GUID was stored before (a redelivery or duplicate)."""
    row = conn.execute(
        INSERT_DELIVERY,
        {
            "id": delivery.id,
            "event": delivery.event,
            "action": delivery.action,
            "installation_id": delivery.installation_id,
            "repo_id": delivery.repo_id,
            "repo_full_name": delivery.repo_full_name,
            "payload": Jsonb(delivery.payload, dumps=_dumps),
        },
    ).fetchone()
    return row is not None


def _dumps(value: Any) -> str:
    # Postgres jsonb rejects \u0000; GitHub payloads can carry it in user text.
    return json.dumps(value).replace("\\u0000", "\\ufffd")


def mark_queued(conn: psycopg.Connection, delivery_id: str) -> None:
    conn.execute(MARK_QUEUED, (delivery_id,))


def start_processing(conn: psycopg.Connection, delivery_id: str) -> Delivery | None:
    """Mark the delivery as being processed; None if it is unknown or already finished."""
    row = conn.execute(START_PROCESSING, (delivery_id,)).fetchone()
    if row is None:
        return None
    return Delivery(
        row["id"], row["event"], row["action"], row["installation_id"], row["repo_id"],
        row["repo_full_name"], row["payload"], row["attempts"],
    )


def finish(conn: psycopg.Connection, delivery_id: str, status: str, note: str | None = None) -> None:
    conn.execute(FINISH, (status, note, delivery_id))


def fail(conn: psycopg.Connection, delivery_id: str, error: str) -> None:
    conn.execute(FAIL, (error[:4000], delivery_id))


def pending(conn: psycopg.Connection, *, grace: float = 10, stuck: float = 600, limit: int = 500) -> list[str]:
    rows = conn.execute(
        PENDING, {"grace": grace, "stuck": stuck, "max_attempts": MAX_ATTEMPTS, "limit": limit}
    ).fetchall()
    return [r["id"] for r in rows]


def known(conn: psycopg.Connection, guids: list[str]) -> set[str]:
    return {r["id"] for r in conn.execute(KNOWN_IDS, (guids,)).fetchall()}
