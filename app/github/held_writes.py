"""Writes that can wait: replies, reactions and queue labels below the verdicts' write class.

A reply Fleet owes (``/queue`` accepted, a dequeue notice, a PR for a task someone else holds)
is worth a write, but not worth holding up the repository. When its write class finds the
installation's budget spent, the reply is *held*: stored in ``held_writes`` in the same
transaction as the state change that caused it (so it is lost only if that change is), and the
delivery or job goes on. ``jobs/outbox.py`` sends held writes in order once the class has a slot.
Before this, such a delivery was deferred, and every later delivery of its repository (claim
verdicts among them) waited a minute behind one comment.

Claim verdicts (``WriteClass.VERDICT``) are never held: an agent waits for them, so a spent
budget defers the delivery instead (``jobs/process.py``). While a repository has held writes,
new ones of it are held behind them, so replies keep their order.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import redis

from app.github.gateway import RepoGateway
from app.github.write_budget import BudgetSpent, WriteClass, current_class, writing

log = logging.getLogger("fleet.outbox")

HOLD = """
INSERT INTO held_writes (repo_id, write_class, kind, number, comment_id, body, marker, not_before)
VALUES (%(repo_id)s, %(write_class)s, %(kind)s, %(number)s, %(comment_id)s, %(body)s, %(marker)s,
        %(not_before)s)
"""
# Writes due later (``not_before``) order nothing: only writes held for budget hold others back.
ANY_HELD = "SELECT EXISTS (SELECT 1 FROM held_writes WHERE repo_id = %s AND not_before IS NULL) AS held"
OLDEST = """
SELECT * FROM held_writes WHERE repo_id = %s AND (not_before IS NULL OR not_before <= now()) ORDER BY id LIMIT 1
"""
DROP_LATER_REACTIONS = """
DELETE FROM held_writes WHERE repo_id = %s AND number = %s AND kind = 'reaction' AND not_before IS NOT NULL
"""
# Counted before the send and committed, so a send a crash interrupted is known to have maybe
# happened: the next attempt looks for the comment's marker before posting again.
BEGIN_ATTEMPT = "UPDATE held_writes SET attempts = attempts + 1 WHERE id = %s RETURNING *"
# The budget said no: the write was never made, so it was no attempt.
NOT_ATTEMPTED = "UPDATE held_writes SET attempts = attempts - 1 WHERE id = %s"
FAILED = "UPDATE held_writes SET last_error = %s WHERE id = %s"
SENT = "DELETE FROM held_writes WHERE id = %s"
REPOS_HOLDING = """
SELECT DISTINCT repo_id FROM held_writes WHERE not_before IS NULL OR not_before <= now() ORDER BY repo_id
"""
# Due writes only, aged from when they became due: a `/queue` 👍 waiting for its time is not stuck.
COUNT_HELD = """
SELECT count(*) AS held, min(coalesce(not_before, held_at)) AS oldest FROM held_writes
WHERE not_before IS NULL OR not_before <= now()
"""

# A held write that failed this many times (5xx, timeouts) is dropped with an error in the log:
# a reply is not worth blocking the replies behind it for ever.
MAX_SEND_ATTEMPTS = 5


@dataclass(frozen=True)
class HeldWrite:
    id: int
    repo_id: int
    write_class: WriteClass
    kind: str  # "comment" | "reaction" | "add_label" | "remove_label"
    number: int
    comment_id: int | None
    body: str  # the comment's body, the reaction's content or the label's name
    marker: str | None
    attempts: int

    @classmethod
    def of(cls, row: dict) -> HeldWrite:
        return cls(row["id"], row["repo_id"], WriteClass[row["write_class"]], row["kind"], row["number"],
                   row["comment_id"], row["body"], row["marker"], row["attempts"])


def comment(conn: psycopg.Connection, gh: RepoGateway, repo_id: int, number: int, body: str, *,
            marker: str | None = None, look_first: bool = False) -> None:
    """Post a comment now, or hold it when its class has no budget (never for verdicts).
    ``marker`` (a dedupe marker inside ``body``) lets a retry find a comment already posted;
    ``look_first`` looks for it before posting (a previous run may have posted it)."""
    _write(conn, gh, dict(repo_id=repo_id, kind="comment", number=number, comment_id=None, body=body, marker=marker),
           lambda: gh.comment(number, body, dedupe_marker=marker if look_first else None))


def react(conn: psycopg.Connection, gh: RepoGateway, repo_id: int, number: int, comment_id: int,
          content: str = "+1") -> None:
    """React to a comment now, or hold the reaction (GitHub answers a repeated reaction with the
    existing one, so a retry never doubles it)."""
    _write(conn, gh, dict(repo_id=repo_id, kind="reaction", number=number, comment_id=comment_id, body=content,
                          marker=None),
           lambda: gh.react(comment_id, content))


def react_later(conn: psycopg.Connection, repo_id: int, number: int, comment_id: int, delay: timedelta,
                content: str = "+1") -> None:
    """React to a comment ``delay`` from now, as the current write class, unless
    ``drop_later_reactions`` takes it back first: an acknowledgement that an answer arriving
    sooner makes unnecessary (``/queue``: the merge or the dequeue reply)."""
    row = dict(repo_id=repo_id, write_class=current_class().name, kind="reaction", number=number,
               comment_id=comment_id, body=content, marker=None, not_before=datetime.now(timezone.utc) + delay)
    conn.execute(HOLD, row)
    schedule_flush(repo_id, row["not_before"].timestamp())


def drop_later_reactions(conn: psycopg.Connection, repo_id: int, number: int) -> int:
    """Take back the reactions on issue or PR ``number`` that are not written yet; how many."""
    return conn.execute(DROP_LATER_REACTIONS, (repo_id, number)).rowcount


def add_label(conn: psycopg.Connection, gh: RepoGateway, repo_id: int, number: int, label: str) -> None:
    """Add a label now, or hold it (adding a label twice is harmless)."""
    _write(conn, gh, dict(repo_id=repo_id, kind="add_label", number=number, comment_id=None, body=label, marker=None),
           lambda: gh.add_labels(number, [label]))


def remove_label(conn: psycopg.Connection, gh: RepoGateway, repo_id: int, number: int, label: str) -> None:
    """Take a label off now, or hold it (a label already gone is the goal reached)."""
    _write(conn, gh, dict(repo_id=repo_id, kind="remove_label", number=number, comment_id=None, body=label,
                          marker=None),
           lambda: gh.remove_label(number, label))


def _write(conn: psycopg.Connection, gh: RepoGateway, row: dict, send) -> None:
    write_class = current_class()
    if write_class is WriteClass.VERDICT:
        send()  # a spent budget defers the caller: an agent is waiting for exactly this write
        return
    row["write_class"] = write_class.name
    row["not_before"] = None
    if conn.execute(ANY_HELD, (row["repo_id"],)).fetchone()["held"]:
        _hold(conn, gh, row, "behind earlier held writes")  # their flush sends this one too
        return
    try:
        send()
    except BudgetSpent as exc:
        _hold(conn, gh, row, str(exc))
        schedule_flush(row["repo_id"], exc.retry_at)


def _hold(conn: psycopg.Connection, gh: RepoGateway, row: dict, why: str) -> None:
    conn.execute(HOLD, row)
    gh.evidence.record(f"hold_{row['kind']}", f"#{row['number']}", "held", None, write_class=row["write_class"],
                       reason=why[:200])


def schedule_flush(repo_id: int, retry_at: float | None) -> None:
    """Send the repository's held writes at ``retry_at`` (epoch seconds; soon when None). The
    scheduler's sweep (``jobs/outbox.py``) is the safety net when Redis refuses, or when a flush
    ran just before a hold behind it committed."""
    from app import runtime

    try:
        runtime.schedule_catch_up("jobs.outbox.flush_held_writes", repo_id, "held-writes", retry_at)
    except redis.RedisError:
        log.warning("held writes of repository %s not scheduled (Redis unavailable); the sweep will", repo_id)


def oldest(conn: psycopg.Connection, repo_id: int) -> HeldWrite | None:
    row = conn.execute(OLDEST, (repo_id,)).fetchone()
    return HeldWrite.of(row) if row else None


def send(gh: RepoGateway, held: HeldWrite) -> None:
    """Make one held write, as its class (raises BudgetSpent when the class still has no slot)."""
    with writing(held.write_class):
        if held.kind == "comment":
            gh.comment(held.number, held.body, dedupe_marker=held.marker if held.attempts > 1 else None)
        elif held.kind == "reaction":
            gh.react(held.comment_id, held.body)
        elif held.kind == "add_label":
            gh.add_labels(held.number, [held.body])
        elif held.kind == "remove_label":
            gh.remove_label(held.number, held.body)
        else:  # pragma: no cover - a kind without a sender is a programming error
            raise TypeError(f"no sender for held write {held.kind!r}")


def repos_holding(conn: psycopg.Connection) -> list[int]:
    return [row["repo_id"] for row in conn.execute(REPOS_HOLDING).fetchall()]
