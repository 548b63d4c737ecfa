"""The lease clock: warn holders once at ``claims.warn_at`` of their lease, release at expiry.

Run every few seconds by ``fleet scheduler`` (so expiry is acted on well within a minute);
``now`` can be passed to move the clock in tests.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone

from app import claim_store, claims, db, repositories, runtime
from app.claim_actions import Effects, apply, sync_labels
from app.evidence import EvidenceRecorder
from app.github_gateway import RepoGateway
from jobs.process import REPO_LOCK

log = logging.getLogger("fleet.leases")


def enqueue_lease_check() -> None:
    # A fixed job id: a slow run is not stacked behind by the next tick.
    runtime.queue().enqueue("jobs.leases.check_leases", job_id=f"{runtime.settings().queue_name}-leases",
                            job_timeout=300, result_ttl=0, description="lease check")


def check_leases(now: str | None = None) -> dict[str, int]:
    """Warn and release every due claim; returns counts by outcome."""
    at = datetime.fromisoformat(now) if now else datetime.now(timezone.utc)
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        due = claim_store.due_claims(conn, at)
    by_repo: dict[tuple[int, int | None], list[int]] = defaultdict(list)
    for claim, repo_id, installation_id in due:
        by_repo[(repo_id, installation_id)].append(claim.task.number)
    counts = {"warned": 0, "released": 0}
    for (repo_id, installation_id), numbers in by_repo.items():
        if installation_id is None:
            continue
        for outcome in _check_repo(repo_id, installation_id, numbers, at):
            counts[outcome] += 1
    if any(counts.values()):
        log.info("leases checked", extra=counts)
    return counts


def _check_repo(repo_id: int, installation_id: int, numbers: list[int], now: datetime) -> list[str]:
    settings = runtime.settings()
    outcomes = []
    with db.transaction(settings.database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        repo = repositories.get(conn, repo_id)
        if repo is None:
            return []
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo_id, repo_full_name=repo.full_name)
        gh = RepoGateway(runtime.github_clients().installation(installation_id), repo.full_name, evidence)
        released = []
        for number in numbers:
            claim = claim_store.open_claim(conn, repo_id, number)  # fresh: activity may have renewed it
            if claim is None:
                continue
            actions = claims.decide_lease(claim, now, repo.config.claims)
            if not actions:
                continue
            releasing = any(isinstance(a, claims.ReleaseClaim) for a in actions)
            # Stable per lease period and step, so a retried run finds its own comment instead of
            # repeating it.
            step = "expire" if releasing else "warn"
            key = f"lease-{step}:{number}:{claim.agent}:{int(claim.expires_at.timestamp())}"
            apply(Effects(conn, repo, gh, now, dedupe=key, retrying=True), actions)
            if releasing:
                released.append(number)
                outcomes.append("released")
            else:
                outcomes.append("warned")
        if released:
            sync_labels(Effects(conn, repo, gh, now, dedupe=f"lease-labels:{now.isoformat()}"), released)
        evidence.close()
    return outcomes
