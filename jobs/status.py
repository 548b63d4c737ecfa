"""Status issue jobs: coalesced body updates and periodic progress snapshots.

After each drain of a repository's deliveries (not after each delivery or batch of them: a
render in the middle of a burst shows half of it) ``request_update`` marks the repository dirty
and enqueues one update (a Redis flag keeps a burst from enqueuing hundreds). The update job
clears the flag before it reads state, so an event arriving mid-render triggers another run;
when the last edit is too recent it re-schedules itself for the moment the interval allows. A
body whose only change is relative times ("5m ago") is not scheduled at all: holding the flag for
that long wait would hide real changes behind it; the periodic refresh rewrites the clocks.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import redis

from app import db, runtime
from app.repos import registry as repositories
from app.status import service as status_service
from app.github.evidence import EvidenceRecorder
from app.repos.registry import REPO_LOCK
from app.status.snapshot import take_progress_snapshot
from jobs.deferral import deferral_time, run_at

log = logging.getLogger("fleet.status")


def _flag(repo_id: int) -> str:
    return f"{runtime.settings().queue_name}:status-pending:{repo_id}"


def request_update(repo_id: int) -> None:
    """Ask for a status update of this repository; cheap and safe to call after every event."""
    try:
        client = runtime.redis_client()
        if client.set(_flag(repo_id), "1", nx=True, ex=600):
            runtime.queue().enqueue("jobs.status.update_status", repo_id, job_timeout=120, result_ttl=0,
                                    description=f"status update repo {repo_id}")
    except redis.RedisError:
        log.warning("status update not requested (Redis unavailable); the periodic refresh will catch up")


def update_status(repo_id: int, now: str | None = None) -> str:
    """Render and (maybe) write the status issue; returns the outcome ("deferred" when the write
    budget is spent: the update runs again once a STATUS slot frees)."""
    try:
        return _update_status(repo_id, now)
    except Exception as exc:
        if (retry_at := deferral_time(exc)) is None:
            raise
        _schedule_retry(repo_id, run_at(retry_at) - datetime.now(timezone.utc))
        log.info("status update deferred: %s", exc)
        return "deferred"


def _update_status(repo_id: int, now: str | None) -> str:
    at = datetime.fromisoformat(now) if now else datetime.now(timezone.utc)
    settings = runtime.settings()
    try:
        runtime.redis_client().delete(_flag(repo_id))
    except redis.RedisError:
        pass
    with db.transaction(settings.database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        repo = repositories.get(conn, repo_id)
        if repo is None or repo.installation_id is None:
            return "unknown-repo"
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo.id, repo_full_name=repo.full_name)
        gh = runtime.repo_gateway(repo.installation_id, repo.full_name, evidence)
        outcome = status_service.update(conn, gh, repo, settings.github_api_url, at)
        evidence.close()
    if outcome.result == "wait" and outcome.wait is not None:
        _schedule_retry(repo_id, outcome.wait)
    return outcome.result


def _schedule_retry(repo_id: int, wait: timedelta) -> None:
    try:
        client = runtime.redis_client()
        if client.set(_flag(repo_id), "1", nx=True, ex=int(wait.total_seconds()) + 600):
            runtime.queue().enqueue_in(wait, "jobs.status.update_status", repo_id, job_timeout=120, result_ttl=0,
                                       description=f"status update repo {repo_id}")
    except redis.RedisError:
        log.warning("status retry not scheduled (Redis unavailable)")


ACTIVE_REPOS = """
SELECT id FROM repositories WHERE removed_at IS NULL AND installation_id IS NOT NULL
"""


def refresh_all() -> int:
    """Safety net (scheduler): request an update of every active repository; the update itself
    writes only when something changed, so this costs no GitHub writes when all is current."""
    with db.connect(runtime.settings().database_url, autocommit=True) as conn:
        ids = [r["id"] for r in conn.execute(ACTIVE_REPOS).fetchall()]
    for repo_id in ids:
        request_update(repo_id)
    return len(ids)


def snapshot_progress(now: str | None = None) -> int:
    """Record every active repository's totals (the history velocity and burndown are read from)."""
    at = datetime.fromisoformat(now) if now else datetime.now(timezone.utc)
    with db.connect(runtime.settings().database_url, autocommit=True) as conn:
        ids = [r["id"] for r in conn.execute(ACTIVE_REPOS).fetchall()]
        return sum(take_progress_snapshot(conn, repo_id, at) for repo_id in ids)
