"""The lease clock: warn holders once at ``claims.warn_at`` of their lease, release at expiry.

Run every few seconds by ``fleet scheduler`` (so expiry is acted on well within a minute);
``now`` can be passed to move the clock in tests.

Every tenant's claims go through one job, so one repository must never stop the clock for the
others: each repository is checked in its own transaction, a failure there is logged with the
repository and backs that repository off (``lease_backoff``), and claims that can no longer be
served -- the task deleted or transferred, the repository archived or removed, the installation
suspended or deleted -- are ended with a recorded reason instead of failing every tick.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import psycopg
from githubkit.exception import RateLimitExceeded, RequestFailed

from app import db, runtime
from app.claims import store as claim_store
from app.claims import rules as claims
from app.claims import leases as claims_leases
from app.claims import waiting
from app.repos import registry as repositories
from app.tasks import store as task_state
from app.claims.apply import Effects, apply, sync_labels
from app.github.evidence import EvidenceRecorder
from app.github.gateway import GitHubRefused, RepoGateway, github_message
from app.repos.registry import REPO_LOCK
from jobs.deferral import deferral_time, run_at

log = logging.getLogger("fleet.leases")

# A failing repository waits BACKOFF_BASE, doubling per consecutive failure, at most BACKOFF_MAX:
# it neither hammers GitHub every 10 s nor goes first in every tick.
BACKOFF_BASE = timedelta(seconds=20)
BACKOFF_MAX = timedelta(minutes=30)

# Open claims Fleet can no longer act on through GitHub, with what makes them so.
UNSERVABLE_CLAIMS = f"""
SELECT {claim_store.CLAIM_COLUMNS}, c.repo_id,
       r.removed_at IS NOT NULL AS repo_removed, r.archived AS repo_archived,
       r.installation_id IS NULL OR i.deleted_at IS NOT NULL AS installation_deleted,
       i.suspended_at IS NOT NULL AS installation_suspended, t.deleted_at IS NOT NULL AS task_deleted
FROM claims c
JOIN repositories r ON r.id = c.repo_id
JOIN tasks t ON t.repo_id = c.repo_id AND t.number = c.number
LEFT JOIN installations i ON i.id = r.installation_id
WHERE c.released_at IS NULL
  AND (r.removed_at IS NOT NULL OR r.archived OR r.installation_id IS NULL OR i.deleted_at IS NOT NULL
       OR i.suspended_at IS NOT NULL OR t.deleted_at IS NOT NULL)
ORDER BY c.repo_id, c.number
"""

BACKOFFS = "SELECT repo_id, retry_at FROM lease_backoff"

RECORD_FAILURE = """
INSERT INTO lease_backoff AS b (repo_id, failures, retry_at, last_error)
VALUES (%(repo_id)s, 1, %(retry_at)s, %(error)s)
ON CONFLICT (repo_id) DO UPDATE SET failures = b.failures + 1, retry_at = %(retry_at)s, last_error = %(error)s
"""
FAILURES = "SELECT failures FROM lease_backoff WHERE repo_id = %s"
# The write budget is spent: wait exactly until a slot frees, without counting a failure.
RECORD_DEFERRAL = """
INSERT INTO lease_backoff AS b (repo_id, failures, retry_at, last_error)
VALUES (%(repo_id)s, 0, %(retry_at)s, %(error)s)
ON CONFLICT (repo_id) DO UPDATE SET retry_at = %(retry_at)s, last_error = %(error)s
"""
CLEAR_FAILURES = "DELETE FROM lease_backoff WHERE repo_id = %s"


def enqueue_lease_check() -> None:
    # A fixed job id: a slow run is not stacked behind by the next tick.
    runtime.queue().enqueue("jobs.leases.check_leases", job_id=f"{runtime.settings().queue_name}-leases",
                            job_timeout=300, result_ttl=0, description="lease check")


# --- decisions (pure) ----------------------------------------------------------------------------


def unservable_reason(row: dict) -> str | None:
    """Why Fleet can no longer serve this claim, from what Postgres knows (None: it can); the
    most specific fact first."""
    if row["task_deleted"]:
        return "task-deleted"
    if row["repo_removed"]:
        return "repository-removed"
    if row["repo_archived"]:
        return "repository-archived"
    if row["installation_deleted"]:
        return "installation-deleted"
    if row["installation_suspended"]:
        return "installation-suspended"
    return None


def refusal_reason(status: int, message: str) -> str | None:
    """The end reason when GitHub refuses to act on a claim's task, or None for a failure that
    may pass (5xx, rate limits, permissions being changed): those are retried with backoff."""
    if status == 410:
        return "task-deleted"
    if status == 404:  # deleted, transferred away, or no longer visible to the installation
        return "task-unreachable"
    if status == 403 and "archived" in message.lower():
        return "repository-archived"
    return None


def decide_end(claim: claims.Claim, reason: str) -> list[claims.Action]:
    """End a claim GitHub can no longer serve: recorded, with no unassign and no comment (GitHub
    would refuse both, or they would land in a repository that is no longer the tenant's)."""
    return [claims.ReleaseClaim(claim, reason)]


def backoff_delay(failures: int, retry_after: timedelta | None = None) -> timedelta:
    """How long a repository waits after ``failures`` consecutive failed checks."""
    delay = min(BACKOFF_BASE * 2 ** min(max(failures - 1, 0), 20), BACKOFF_MAX)
    return max(delay, retry_after) if retry_after else delay


# --- the job -------------------------------------------------------------------------------------


def check_leases(now: str | None = None) -> dict[str, int]:
    """Warn and release every due claim; returns counts by outcome."""
    at = datetime.fromisoformat(now) if now else datetime.now(timezone.utc)
    settings = runtime.settings()
    counts = {"warned": 0, "released": 0, "ended": 0, "failed": 0, "waits_answered": 0}
    counts["ended"] = end_unservable_claims(settings.database_url, at)
    counts["waits_answered"] = answer_expired_waits(settings.database_url, at)
    with db.connect(settings.database_url, autocommit=True) as conn:
        due = claim_store.due_claims(conn, at)
        backoffs = {r["repo_id"]: r["retry_at"] for r in conn.execute(BACKOFFS).fetchall()}
    waiting = {repo_id for repo_id, retry_at in backoffs.items() if retry_at > at}
    by_repo: dict[tuple[int, int | None], list[int]] = defaultdict(list)
    names = {}
    for claim, repo_id, installation_id in due:
        if repo_id not in waiting and installation_id is not None:
            by_repo[(repo_id, installation_id)].append(claim.task.number)
            names[repo_id] = claim.task.repo_full_name
    for (repo_id, installation_id), numbers in by_repo.items():
        try:
            outcomes = _check_repo(repo_id, installation_id, numbers, at)
        except Exception as exc:  # one repository never stops the clock for the others
            if (retry_at := deferral_time(exc)) is not None:
                # The lease clock may be moved (tests); the wait is GitHub's, from now.
                wait = run_at(retry_at) - datetime.now(timezone.utc)
                _record_deferral(settings.database_url, repo_id, names[repo_id], at + wait, exc)
                continue
            counts["failed"] += 1
            _record_failure(settings.database_url, repo_id, names[repo_id], at, exc)
            continue
        if repo_id in backoffs:
            _clear_failures(settings.database_url, repo_id)
        for outcome in outcomes:
            counts[outcome] += 1
    if any(counts.values()):
        log.info("leases checked", extra=counts)
    return counts


def end_unservable_claims(database_url: str, at: datetime) -> int:
    """End, without calling GitHub, the claims of removed or archived repositories, of suspended
    or deleted installations and of deleted tasks; returns how many."""
    with db.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(UNSERVABLE_CLAIMS).fetchall()
    by_repo: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_repo[row["repo_id"]].append(row)
    ended = 0
    for repo_id, repo_rows in by_repo.items():
        with db.transaction(database_url) as conn:
            conn.execute(REPO_LOCK, (repo_id,))
            repo = repositories.get(conn, repo_id)
            for row in repo_rows:
                claim = claim_store.open_claim(conn, repo_id, row["number"])
                if claim is None:
                    continue
                reason = unservable_reason(row)
                _end(conn, repo, claim, reason, at)
                ended += 1
    return ended


def answer_expired_waits(database_url: str, at: datetime) -> int:
    """Answer every ``/next`` that waited in line past ``claims.next_wait`` with nothing found
    (``app.claims.waiting``); returns how many. A repository that fails keeps its requests in
    line for the next tick, and never stops the others."""
    with db.connect(database_url, autocommit=True) as conn:
        due = waiting.expired(conn, at)
    by_repo: dict[tuple[int, int | None], list[waiting.Waiter]] = defaultdict(list)
    for repo_id, installation_id, waiter in due:
        by_repo[(repo_id, installation_id)].append(waiter)
    answered = 0
    for (repo_id, installation_id), waiters in by_repo.items():
        try:
            answered += _answer_waits(database_url, repo_id, installation_id, waiters, at)
        except Exception:
            log.warning("expired /next requests not answered yet", exc_info=True, extra={"repo_id": repo_id})
    return answered


def _answer_waits(database_url: str, repo_id: int, installation_id: int | None, waiters: list, at: datetime) -> int:
    with db.transaction(database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        repo = repositories.get(conn, repo_id)
        gh = None
        if repo is not None and installation_id is not None and not repo.archived:
            gh = runtime.repo_gateway(installation_id, repo.full_name,
                                      EvidenceRecorder(database_url, repo_id=repo_id, repo_full_name=repo.full_name))
        for waiter in waiters:
            if gh is None:  # removed, archived or uninstalled: nobody to answer there
                waiting.forget(conn, repo_id, waiter)
                continue
            effects = Effects(conn, repo, gh, at, dedupe=f"next-wait:{waiter.comment_id}:{waiter.agent}", retrying=True)
            waiting.expire(effects, waiter)
    return len(waiters)


OPEN_CLAIM_NUMBERS = "SELECT number FROM claims WHERE repo_id = %s AND released_at IS NULL ORDER BY number"


def end_repository_claims(conn: psycopg.Connection, repo: repositories.Repo, reason: str, at: datetime) -> int:
    """End every open claim of a repository Fleet can no longer serve (the caller holds its lock);
    returns how many."""
    numbers = [r["number"] for r in conn.execute(OPEN_CLAIM_NUMBERS, (repo.id,)).fetchall()]
    return len(_end_all(conn, repo, numbers, reason, at))


def _end(conn: psycopg.Connection, repo: repositories.Repo, claim: claims.Claim, reason: str, at: datetime) -> None:
    apply(Effects(conn, repo, None, at, dedupe=f"lease-end:{claim.task.number}"), decide_end(claim, reason))
    log.info("claim ended", extra={"repo": repo.full_name, "number": claim.task.number, "agent": str(claim.agent),
                                   "reason": reason})


def _check_repo(repo_id: int, installation_id: int, numbers: list[int], now: datetime) -> list[str]:
    settings = runtime.settings()
    outcomes = []
    with db.transaction(settings.database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        repo = repositories.get(conn, repo_id)
        if repo is None:
            return []
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo_id, repo_full_name=repo.full_name)
        gh = runtime.repo_gateway(installation_id, repo.full_name, evidence)
        released = []
        for index, number in enumerate(numbers):
            outcome, reason = _check_claim(conn, repo, gh, number, now)
            if outcome:
                outcomes.append(outcome)
            if outcome == "released":
                released.append(number)
            if reason == "repository-archived":
                # Read-only from now on: end the rest here, and write no labels.
                outcomes += _end_all(conn, repo, numbers[index + 1:], reason, now)
                released = []
                break
        if released:
            sync_labels(Effects(conn, repo, gh, now, dedupe=f"lease-labels:{now.isoformat()}"), released)
    return outcomes


def _end_all(conn: psycopg.Connection, repo: repositories.Repo, numbers: list[int], reason: str,
             now: datetime) -> list[str]:
    outcomes = []
    for number in numbers:
        claim = claim_store.open_claim(conn, repo.id, number)
        if claim is not None:
            _end(conn, repo, claim, reason, now)
            outcomes.append("ended")
    return outcomes


def _check_claim(conn: psycopg.Connection, repo: repositories.Repo, gh: RepoGateway, number: int,
                 now: datetime) -> tuple[str | None, str | None]:
    """Warn or release one claim; a task GitHub refuses for good ends it. Returns the outcome
    and, for an ended claim, the reason."""
    claim = claim_store.open_claim(conn, repo.id, number)  # fresh: activity may have renewed it
    if claim is None:
        return None, None
    actions = claims_leases.decide_lease(claim, now, repo.config.claims)
    if not actions:
        return None, None
    releasing = any(isinstance(a, claims.ReleaseClaim) for a in actions)
    if releasing and _activity_pending(conn, repo.id, claim.expires_at):
        # A push or comment that arrived before the deadline may still be waiting (deferred for
        # the write budget, or queued): it renews the lease, so the claim is not released under
        # an agent that kept working. The next tick decides again once it is processed.
        return None, None
    # Stable per lease period and step, so a retried run finds its own comment instead of
    # repeating it.
    step = "expire" if releasing else "warn"
    key = f"lease-{step}:{number}:{claim.agent}:{int(claim.expires_at.timestamp())}"
    try:
        with conn.transaction():  # a savepoint: a refused claim leaves no half-applied rows
            apply(Effects(conn, repo, gh, now, dedupe=key, retrying=True), actions)
    except (GitHubRefused, RequestFailed) as exc:
        reason = refusal_reason(*_refusal(exc))
        if reason is None:
            raise
        if reason == "task-deleted":
            task_state.mark_deleted(conn, repo.id, number)
        if reason == "repository-archived":
            repositories.set_archived(conn, repo.id, True)
        _end(conn, repo, claim, reason, now)
        return "ended", reason
    return ("released" if releasing else "warned"), None


# Deliveries of the repository received before the lease's deadline that are not state yet.
PENDING_ACTIVITY = """
SELECT 1 FROM deliveries
WHERE repo_id = %s AND status IN ('received', 'queued', 'processing', 'deferred', 'failed') AND received_at <= %s
LIMIT 1
"""


def _activity_pending(conn: psycopg.Connection, repo_id: int, deadline: datetime) -> bool:
    return conn.execute(PENDING_ACTIVITY, (repo_id, deadline)).fetchone() is not None


def _refusal(exc: GitHubRefused | RequestFailed) -> tuple[int, str]:
    if isinstance(exc, GitHubRefused):
        return exc.status, exc.message
    return exc.response.status_code, github_message(exc)


def _retry_after(exc: BaseException) -> timedelta | None:
    """GitHub's own wait for a rate limit, wherever githubkit put it in the exception chain."""
    while exc is not None:
        if isinstance(exc, RateLimitExceeded):
            return exc.retry_after
        exc = exc.__cause__
    return None


def _record_failure(database_url: str, repo_id: int, full_name: str, at: datetime, exc: Exception) -> None:
    with db.connect(database_url, autocommit=True) as conn:
        row = conn.execute(FAILURES, (repo_id,)).fetchone()
        failures = (row["failures"] if row else 0) + 1
        retry_at = at + backoff_delay(failures, _retry_after(exc))
        error = f"{type(exc).__name__}: {exc}"[:500]
        conn.execute(RECORD_FAILURE, {"repo_id": repo_id, "retry_at": retry_at, "error": error})
    log.warning("lease check failed for a repository; backing off", exc_info=exc,
                extra={"repo": full_name, "repo_id": repo_id, "failures": failures, "retry_at": retry_at.isoformat()})


def _record_deferral(database_url: str, repo_id: int, full_name: str, retry_at: datetime, exc: Exception) -> None:
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(RECORD_DEFERRAL, {"repo_id": repo_id, "retry_at": retry_at, "error": str(exc)[:500]})
    log.info("lease check deferred until the write budget has a slot",
             extra={"repo": full_name, "repo_id": repo_id, "retry_at": retry_at.isoformat()})


def _clear_failures(database_url: str, repo_id: int) -> None:
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(CLEAR_FAILURES, (repo_id,))
