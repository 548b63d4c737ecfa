"""Stored webhook deliveries: the durable inbox between ingest and the workers."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import psycopg

# received_at per row (clock_timestamp, not the statement's now()), so the drain's order within a
# batch is the order the deliveries arrived in.
INSERT_MANY = """
INSERT INTO deliveries (id, event, action, installation_id, repo_id, repo_full_name, payload, received_at)
VALUES {rows}
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

# Deliveries are processed in lanes: one per repository (lane 0: deliveries about no repository,
# e.g. installation events). One drain job at a time works through a lane in order
# (jobs/process.py), so a busy repository costs one job, not one per delivery.
LANE = "coalesce(repo_id, 0)"

# A lane's runnable deliveries, oldest first: waiting, deferred (the drain stops at one whose time
# has not come: later ones wait behind it), or failed with attempts left and its back-off over.
DUE_IN_LANE = f"""
SELECT id, event, action, installation_id, repo_id, repo_full_name, payload, status,
       extract(epoch FROM not_before) AS not_before
FROM deliveries
WHERE {LANE} = %(lane)s
  AND attempts < %(max_attempts)s
  AND (status IN ('received', 'queued', 'deferred')
       OR (status = 'failed' AND coalesce(not_before, received_at) <= to_timestamp(%(now)s)))
ORDER BY received_at, id
LIMIT %(limit)s
"""

# The sweeper found these queued or started long ago and never finished (their worker died):
# waiting again, so their lane's drain picks them up.
RELEASE_STUCK = """
UPDATE deliveries SET status = 'received' WHERE id = ANY(%s) AND status IN ('queued', 'processing')
"""

# Every run of a delivery counts, whoever started it (RQ's retry, the sweeper, a redelivery):
# one with no attempt left is not started again, so a delivery that kills its worker (OOM, the
# job timeout) cannot loop forever.
_START = """
UPDATE deliveries SET status = 'processing', attempts = attempts + 1, started_at = now()
WHERE id = %(id)s AND status NOT IN ('processed', 'ignored', 'parked') AND attempts < %(max_attempts)s
RETURNING {returning}
"""
START_PROCESSING = _START.format(
    returning="id, event, action, installation_id, repo_id, repo_full_name, payload, attempts + deferrals AS runs")
# The same, for a delivery the drain already read.
START_RUN = _START.format(returning="attempts + deferrals AS runs")

FINISH = """
UPDATE deliveries SET status = %s, processed_at = now(), last_error = %s WHERE id = %s
"""

# A failure with attempts left is retried after a back-off (RETRY_AFTER_SECONDS, by attempt);
# the one that used the last attempt parks it.
FAIL = """
UPDATE deliveries
SET status = CASE WHEN attempts >= %(max_attempts)s THEN 'parked' ELSE 'failed' END,
    parked_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END,
    not_before = now() + make_interval(secs => (%(backoff)s::float8[])[least(greatest(attempts, 1), %(steps)s)]),
    last_error = %(error)s
WHERE id = %(id)s AND status NOT IN ('processed', 'ignored', 'parked')
RETURNING status, extract(epoch FROM not_before) AS not_before
"""

PARK = """
UPDATE deliveries SET status = 'parked', parked_at = now(), last_error = %(error)s
WHERE id = %(id)s AND status NOT IN ('processed', 'ignored', 'parked')
"""

# Started (or queued) long ago, never finished, and no attempt left: the worker died on it every
# time. The reason keeps the last error it did record, if any.
PARK_DEAD = """
UPDATE deliveries
SET status = 'parked', parked_at = now(),
    last_error = CASE WHEN last_error IS NULL THEN format('worker died %%s times', attempts)
                      ELSE format('worker died on attempt %%s; before that: %%s', attempts, last_error) END
WHERE status IN ('queued', 'processing') AND attempts >= %(max_attempts)s
  AND coalesce(started_at, enqueued_at, received_at) < now() - make_interval(secs => %(stuck)s)
RETURNING id
"""

# Deliveries the sweeper must (re-)enqueue: never enqueued (Redis was down), or enqueued /
# started long ago without finishing (a worker died), or failed, with attempts left, or deferred
# and long past their time (the scheduled job was lost); never a deferred one before its time.
PENDING = f"""
SELECT id, {LANE} AS lane FROM deliveries
WHERE (status = 'received' AND received_at < now() - make_interval(secs => %(grace)s))
   OR (status = 'deferred' AND not_before < now() - make_interval(secs => %(stuck)s))
   OR (status IN ('queued', 'processing') AND attempts < %(max_attempts)s
       AND coalesce(started_at, enqueued_at, received_at) < now() - make_interval(secs => %(stuck)s))
   OR (status = 'failed' AND attempts < %(max_attempts)s
       AND coalesce(not_before, started_at, received_at) < now() - make_interval(secs => %(grace)s))
ORDER BY received_at
LIMIT %(limit)s
"""

# `fleet replay`: re-run on purpose, parked or not. A delivery out of attempts gets one more
# (its count stays above 1, so handlers still dedupe what an earlier run may have done).
REQUEUE_FOR_REPLAY = """
UPDATE deliveries SET status = 'queued', attempts = least(attempts, %(max_attempts)s - 1),
       last_error = NULL, parked_at = NULL
WHERE id = %(id)s RETURNING id
"""

# Parked deliveries per repository (for `fleet doctor`): how many, and the newest few.
PARKED_BY_REPO = """
SELECT repo_full_name, parked, id, event, action, attempts, last_error, parked_at
FROM (SELECT repo_full_name, id, event, action, attempts, last_error, parked_at,
             count(*) OVER (PARTITION BY repo_full_name) AS parked,
             row_number() OVER (PARTITION BY repo_full_name ORDER BY parked_at DESC, id) AS rank
      FROM deliveries WHERE status = 'parked') d
WHERE rank <= %(newest)s
ORDER BY repo_full_name NULLS FIRST, parked_at DESC, id
"""

KNOWN_IDS = "SELECT id FROM deliveries WHERE id = ANY(%s)"

# Waiting for the write budget: the run did not count as an attempt (it gets its attempt back).
DEFER = """
UPDATE deliveries SET status = 'deferred', not_before = to_timestamp(%(not_before)s),
       attempts = greatest(attempts - 1, 0), deferrals = deferrals + 1, last_error = %(reason)s
WHERE id = %(id)s AND status = 'processing'
"""

# The latest time an older deferred delivery of the same repository runs again: a later one
# waits behind it so per-repository order holds across deferrals.
DEFERRED_AHEAD = """
SELECT extract(epoch FROM max(d.not_before)) AS not_before FROM deliveries d, deliveries me
WHERE me.id = %(id)s AND d.repo_id = me.repo_id AND d.status = 'deferred'
  AND (d.received_at, d.id) < (me.received_at, me.id)
"""

WAITING_BEHIND_REASON = "waiting behind an older deferred delivery"

# Runs of one delivery, counting the ones a dying worker never finished; then it is parked.
MAX_ATTEMPTS = 5
# Seconds before a failed delivery is tried again, after its first, second, third... failure.
RETRY_AFTER_SECONDS = (2.0, 10.0, 60.0, 60.0)
MAX_ERROR_CHARS = 4000
STATUSES = ("received", "queued", "processing", "processed", "ignored", "failed", "parked", "deferred")


@dataclass(frozen=True)
class Delivery:
    id: str
    event: str
    action: str | None
    installation_id: int | None
    repo_id: int | None
    repo_full_name: str | None
    payload: dict[str, Any]
    # Runs so far, deferred ones included: above 1, an earlier run may already have written to
    # GitHub, so handlers look for their dedupe markers before posting.
    attempts: int = 0

    @property
    def lane(self) -> int:
        """The drain lane: the repository id, 0 for deliveries about no repository."""
        return self.repo_id or 0

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


def store(conn: psycopg.Connection, delivery: Delivery, text: str | None = None) -> bool:
    """Insert the delivery; False when this GUID was stored before (a redelivery or duplicate).
    ``text``: the payload's JSON as received (saves encoding it again)."""
    return bool(store_many(conn, [(delivery, json.dumps(delivery.payload) if text is None else text)]))


_ROW = "(%s, %s, %s, %s, %s, %s, %s, clock_timestamp())"


def store_many(conn: psycopg.Connection, items: list[tuple[Delivery, str]]) -> set[str]:
    """Insert deliveries (with their payloads' JSON text) in one statement; the ids that were new.
    One bad payload fails them all (``psycopg.errors.DataError``): store those one by one."""
    sql = INSERT_MANY.format(rows=", ".join([_ROW] * len(items)))
    params = [value for delivery, text in items for value in (
        delivery.id, delivery.event, delivery.action, delivery.installation_id, delivery.repo_id,
        delivery.repo_full_name, _storable(text))]
    return {row["id"] for row in conn.execute(sql, params).fetchall()}


def _storable(text: str) -> str:
    # GitHub payloads can carry \u0000 in user text; no Postgres text column Fleet writes it to
    # could hold the NUL it decodes to.
    return text.replace("\\u0000", "\\ufffd")


@dataclass(frozen=True)
class Due:
    """A delivery a lane's drain may run, with what decides whether it runs now."""

    delivery: Delivery
    status: str
    not_before: float | None

    def waits(self, now: float) -> bool:
        """A deferred delivery whose time has not come: the lane waits behind it."""
        return self.status == "deferred" and (self.not_before or 0) > now


def due_in_lane(conn: psycopg.Connection, lane: int, limit: int, now: float) -> list[Due]:
    """Up to ``limit`` runnable deliveries of ``lane`` at ``now`` (epoch seconds), oldest first."""
    rows = conn.execute(DUE_IN_LANE, {"lane": lane, "limit": limit, "max_attempts": MAX_ATTEMPTS,
                                      "now": now}).fetchall()
    return [Due(Delivery(r["id"], r["event"], r["action"], r["installation_id"], r["repo_id"], r["repo_full_name"],
                         json.loads(r["payload"])), r["status"], float(r["not_before"]) if r["not_before"] is not None else None)
            for r in rows]


def start_run(conn: psycopg.Connection, delivery: Delivery) -> Delivery | None:
    """Count a run of a delivery the drain already read; None when it may not run (finished,
    parked or out of attempts)."""
    row = conn.execute(START_RUN, {"id": delivery.id, "max_attempts": MAX_ATTEMPTS}).fetchone()
    return None if row is None else replace(delivery, attempts=row["runs"])


def release_stuck(conn: psycopg.Connection, delivery_ids: list[str]) -> None:
    conn.execute(RELEASE_STUCK, (delivery_ids,))


def start_processing(conn: psycopg.Connection, delivery_id: str) -> Delivery | None:
    """Mark the delivery as being processed; None if it is unknown, finished, parked or out of
    attempts (the sweeper parks it)."""
    row = conn.execute(START_PROCESSING, {"id": delivery_id, "max_attempts": MAX_ATTEMPTS}).fetchone()
    if row is None:
        return None
    return Delivery(
        row["id"], row["event"], row["action"], row["installation_id"], row["repo_id"],
        row["repo_full_name"], json.loads(row["payload"]), row["runs"],
    )


def finish(conn: psycopg.Connection, delivery_id: str, status: str, note: str | None = None) -> None:
    conn.execute(FINISH, (status, note, delivery_id))


def fail(conn: psycopg.Connection, delivery_id: str, error: str) -> float | None:
    """Record a failed run: retried later while attempts are left, parked by the last one.
    Returns when it may run again (epoch seconds), None when parked or finished."""
    row = conn.execute(FAIL, {"error": error[:MAX_ERROR_CHARS], "id": delivery_id, "max_attempts": MAX_ATTEMPTS,
                              "backoff": list(RETRY_AFTER_SECONDS), "steps": len(RETRY_AFTER_SECONDS)}).fetchone()
    return float(row["not_before"]) if row is not None and row["status"] == "failed" else None


def defer(conn: psycopg.Connection, delivery_id: str, not_before: float, reason: str) -> None:
    """Mark a started delivery as waiting until ``not_before`` (epoch seconds) without using an attempt."""
    conn.execute(DEFER, {"id": delivery_id, "not_before": not_before, "reason": reason[:MAX_ERROR_CHARS]})


def deferred_ahead(conn: psycopg.Connection, delivery_id: str) -> float | None:
    """When the last older deferred delivery of this one's repository runs again, if any."""
    row = conn.execute(DEFERRED_AHEAD, {"id": delivery_id}).fetchone()
    return float(row["not_before"]) if row and row["not_before"] is not None else None


def park(conn: psycopg.Connection, delivery_id: str, reason: str) -> None:
    """Stop retrying a delivery that cannot succeed (e.g. a malformed payload)."""
    conn.execute(PARK, {"error": reason[:MAX_ERROR_CHARS], "id": delivery_id})


def park_dead(conn: psycopg.Connection, *, stuck: float = 600) -> list[str]:
    """Park deliveries whose worker died on each of their MAX_ATTEMPTS runs; their ids."""
    rows = conn.execute(PARK_DEAD, {"stuck": stuck, "max_attempts": MAX_ATTEMPTS}).fetchall()
    return [r["id"] for r in rows]


def pending(conn: psycopg.Connection, *, grace: float = 10, stuck: float = 600,
            limit: int = 500) -> list[tuple[str, int]]:
    """(id, lane) of the deliveries the sweeper must see drained."""
    rows = conn.execute(
        PENDING, {"grace": grace, "stuck": stuck, "max_attempts": MAX_ATTEMPTS, "limit": limit}
    ).fetchall()
    return [(r["id"], r["lane"]) for r in rows]


def requeue_for_replay(conn: psycopg.Connection, delivery_id: str) -> bool:
    """Make a stored delivery runnable again (one more attempt if it had none left); False if unknown."""
    return conn.execute(REQUEUE_FOR_REPLAY, {"id": delivery_id, "max_attempts": MAX_ATTEMPTS}).fetchone() is not None


@dataclass(frozen=True)
class ParkedRepo:
    """Parked deliveries of one repository (None: deliveries not about a repository)."""

    repo_full_name: str | None
    count: int
    newest: tuple[dict[str, Any], ...]


def parked_by_repo(conn: psycopg.Connection, newest: int = 3) -> list[ParkedRepo]:
    """How many deliveries each repository has parked, with the ``newest`` few."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in conn.execute(PARKED_BY_REPO, {"newest": newest}).fetchall():
        groups.setdefault(row["repo_full_name"], []).append(row)
    return [ParkedRepo(name, rows[0]["parked"], tuple(rows)) for name, rows in groups.items()]


def known(conn: psycopg.Connection, guids: list[str]) -> set[str]:
    return {r["id"] for r in conn.execute(KNOWN_IDS, (guids,)).fetchall()}
