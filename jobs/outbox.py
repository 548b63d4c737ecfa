"""Sending held writes (``app/github/held_writes.py``): a repository's replies and reactions that found
their write class's budget spent, in the order they were held, once the class has a slot again.

One row at a time, each step in its own short transaction, under a per-repository lock of its
own (never the delivery lock: deliveries go on while replies wait for budget).
"""
from __future__ import annotations

import logging

import psycopg

from app import db, runtime
from app.github import held_writes
from app.repos import registry as repositories
from app.github.evidence import EvidenceRecorder
from app.github.gateway import GitHubRefused, RepoGateway
from app.github.write_budget import BudgetSpent

log = logging.getLogger("fleet.outbox")

OUTBOX_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('fleet-held-writes:' || %s::text, 0))"


def flush_held_writes(repo_id: int) -> int:
    """Send the repository's held writes; returns how many were sent (or dropped). When the
    budget is spent again the job schedules itself for the next slot and stops."""
    settings = runtime.settings()
    done = 0
    with db.pooled(settings.database_url) as conn:
        repo = repositories.get(conn, repo_id)
        if repo is None or repo.installation_id is None:
            return 0
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo_id, repo_full_name=repo.full_name)
        gh = runtime.repo_gateway(repo.installation_id, repo.full_name, evidence)
        while (outcome := _send_oldest(conn, gh, repo_id)) not in (None, "waiting"):
            done += 1
    return done


def _send_oldest(conn: psycopg.Connection, gh: RepoGateway, repo_id: int) -> str | None:
    """Send the oldest held write: "sent", "dropped", "waiting" (no budget), None (none left)."""
    with conn.transaction():
        conn.execute(OUTBOX_LOCK, (repo_id,))
        found = held_writes.oldest(conn, repo_id)
        if found is None:
            return None
        held = held_writes.HeldWrite.of(conn.execute(held_writes.BEGIN_ATTEMPT, (found.id,)).fetchone())
    try:
        held_writes.send(gh, held)
    except BudgetSpent as exc:
        conn.execute(held_writes.NOT_ATTEMPTED, (held.id,))
        held_writes.schedule_flush(repo_id, exc.retry_at)
        return "waiting"
    except GitHubRefused as exc:
        # 4xx (the issue was deleted or locked, the comment removed): retrying cannot help.
        log.warning("held write dropped: GitHub refused it", extra={
            "repo_id": repo_id, "number": held.number, "kind": held.kind, "status": exc.status})
        conn.execute(held_writes.SENT, (held.id,))
        return "dropped"
    except Exception as exc:
        if held.attempts < held_writes.MAX_SEND_ATTEMPTS:
            conn.execute(held_writes.FAILED, (f"{type(exc).__name__}: {exc}"[:500], held.id))
            raise  # RQ records the failure; the scheduler's sweep schedules the repository again
        log.error("held write dropped after %s attempts: %s", held.attempts, exc, extra={
            "repo_id": repo_id, "number": held.number, "kind": held.kind})
        conn.execute(held_writes.SENT, (held.id,))
        return "dropped"
    conn.execute(held_writes.SENT, (held.id,))
    return "sent"


def sweep_held_writes() -> list[int]:
    """The scheduler's safety net: schedule a flush for every repository with held writes (a
    flush whose schedule Redis refused, or that ran before the hold committed)."""
    with db.connect(runtime.settings().database_url, autocommit=True) as conn:
        repos = held_writes.repos_holding(conn)
    for repo_id in repos:
        held_writes.schedule_flush(repo_id, None)
    return repos
