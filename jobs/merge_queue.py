"""RQ jobs for the gates and the merge queue.

Enqueueing them (one waiting job per key) lives in ``app/enqueue.py``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from rq import get_current_job

from app.gates import store as gate_store
from app import db, runtime
from app.gates import service as gate_service
from app.queue import service as queue_service
from app.queue.group_service import groups_mode
from app.queue import store as queue_store
from app.repos import registry as repositories
from app.github.evidence import EvidenceRecorder
from app.gates.rules import GateVerdict
from app.github.gateway import RepoGateway
from app.enqueue import enqueue_evaluation, enqueue_step
from jobs.deferral import deferral_time, run_at

log = logging.getLogger("fleet.jobs.queue")

STALE_GATES_AFTER = 300.0  # seconds a "waiting" fleet/gates may sit before the poll re-evaluates it
# GitHub computes ``mergeable`` in the background after a push or a base move: an evaluation that
# reads it as null runs again after these delays (scheduled, the worker goes on; it used to sleep
# 0.1-1.4 s in the job). After the last, the conflict gate is published as waiting and the
# stale-gates poll takes over.
MERGEABLE_RECHECKS = (timedelta(seconds=1), timedelta(seconds=3), timedelta(seconds=10))


# --- jobs --------------------------------------------------------------------------------------

def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def evaluate_gates(repo_id: int, pr_number: int, force: bool = False, fresh: bool = False,
                   recheck: int = 0) -> str | None:
    """Evaluate and publish a PR's gates; step its queue when it is queued (or auto-queue it).
    Returns the conclusion, "deferred" when the write budget is spent (the evaluation runs again
    once a slot frees), "mergeable_pending" when GitHub was still computing mergeability (it runs
    again after ``MERGEABLE_RECHECKS[recheck]``), or None when the PR is not open or still waits by
    its recorded state."""
    try:
        return _evaluate_gates(repo_id, pr_number, force, fresh, recheck)
    except Exception as exc:
        if (retry_at := deferral_time(exc)) is None:
            raise
        enqueue_evaluation(repo_id, pr_number, None, force, delay=_delay_until(retry_at), fresh=fresh)
        log.info("gate evaluation deferred: %s", exc)
        return "deferred"


def _delay_until(retry_at: float) -> timedelta:
    return run_at(retry_at) - datetime.now(timezone.utc)


def _evaluate_gates(repo_id: int, pr_number: int, force: bool, fresh: bool, recheck: int) -> str | None:
    settings = runtime.settings()
    with db.pooled(settings.database_url) as conn:
        repo = repositories.get(conn, repo_id)
        if repo is None or repo.installation_id is None:
            return None
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo.id, repo_full_name=repo.full_name,
                                    job_id=_job_id())
        try:
            gh = runtime.repo_gateway(repo.installation_id, repo.full_name, evidence)
            place = queue_store.queue_place(conn, repo.id, repo.full_name, pr_number)
            found = queue_store.active_entry(conn, repo.id, pr_number)
            pr, verdict, pending = gate_service.evaluate(
                conn, gh, repo, pr_number, force=force, fresh=fresh, queue_place=place,
                mergeable_pending_ok=recheck < len(MERGEABLE_RECHECKS),
                quiet_success=found is not None and groups_mode(conn, repo, found[0]))
            if pending:
                enqueue_evaluation(repo.id, pr_number, pr.head_sha, delay=MERGEABLE_RECHECKS[recheck], fresh=True,
                                   recheck=recheck + 1)
                return "mergeable_pending"
            if pr is None or verdict is None:
                return None
            _after_verdict(conn, gh, repo, pr, verdict, found)
            return verdict.conclusion
        finally:
            evidence.close()


def _after_verdict(conn, gh: RepoGateway, repo, pr, verdict: GateVerdict, found) -> None:
    """``found``: the PR's active queue entry (base, entry), read before the evaluation."""
    if found is not None:
        enqueue_step(repo.id, found[0])
    elif repo.config.queue.auto and verdict.is_green_for(pr.head_sha):
        if queue_service.auto_queue(conn, gh, repo, pr):
            enqueue_step(repo.id, pr.base_ref)


def step_queue(repo_id: int, base_ref: str) -> list[str]:
    """Move the (repo, base) merge queue forward; safe to run concurrently and to re-run. When the
    write budget is spent the step runs again once a slot frees (decisions already saved stay)."""
    try:
        return queue_service.step(repo_id, base_ref, job_id=_job_id())
    except Exception as exc:
        if (retry_at := deferral_time(exc)) is None:
            raise
        enqueue_step(repo_id, base_ref, delay=_delay_until(retry_at))
        log.info("merge queue step deferred: %s", exc)
        return ["Deferred"]


# --- the safety-net poll ---------------------------------------------------------------------

def poll_queues() -> dict[str, int]:
    """Step every active queue and re-evaluate gates that never published or wait too long.

    Webhooks drive everything; this catches what a lost webhook, a crashed worker or a CI
    timeout (nothing arrives at all) would otherwise leave waiting.
    """
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        queues = queue_store.active_queues(conn)
        stale = gate_store.stale_gates(conn, STALE_GATES_AFTER)
    for repo_id, base_ref in queues:
        enqueue_step(repo_id, base_ref)
    for repo_id, number, sha in stale:  # silent past STALE_GATES_AFTER: ask GitHub, not the record
        enqueue_evaluation(repo_id, number, sha, fresh=True)
    return {"queues": len(queues), "gates": len(stale)}
