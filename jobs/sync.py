"""Backfill and reconciliation: rebuild a repository's state from GitHub's REST API.

Runs when the App is installed on a repository, on ``fleet sync OWNER/NAME``, and periodically,
so Fleet never depends on having seen every webhook.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app import db, runtime
from app.repos import registry as repositories
from app.github.evidence import EvidenceRecorder
from app.github.gateway import RepoGateway
from app.tasks.pulls import upsert_check_run, upsert_pull, upsert_status
from app.repos.config import CONFIG_PATH, ConfigError, parse_repo_config
from app.repos.registry import REPO_LOCK
from app.tasks.refs import TaskRef
from app.tasks.store import set_dependency, upsert_milestone, upsert_task
from jobs.deferral import deferral_time, run_at
from app.github.models import CheckRun, Issue, Milestone, PullRequest

log = logging.getLogger("fleet.sync")


def enqueue_sync(full_name: str) -> None:
    runtime.queue().enqueue("jobs.sync.sync_job", full_name, job_timeout=1800, description=f"sync {full_name}")


def sync_job(full_name: str) -> dict[str, int] | str:
    """The RQ job: ``sync_repository``, or "deferred" when GitHub's rate limit stopped the reading
    (the job is scheduled again for when GitHub allows; the worker does not wait)."""
    try:
        return sync_repository(full_name)
    except Exception as exc:
        if (retry_at := deferral_time(exc)) is None:
            raise
        runtime.queue().enqueue_at(run_at(retry_at), "jobs.sync.sync_job", full_name, job_timeout=1800,
                                   description=f"sync {full_name}")
        log.info("repository sync deferred: %s", exc)
        return "deferred"


# Live repositories of an installation; a row whose name GitHub gave to another repository (a
# "~" placeholder, see repositories.FREE_NAME) waits for its own rename or delete event instead.
RECONCILED_REPOSITORIES = """
SELECT full_name FROM repositories
WHERE removed_at IS NULL AND installation_id IS NOT NULL AND strpos(full_name, '~') = 0
"""


def reconcile_all() -> int:
    """Periodic reconciliation (scheduler): re-sync every active repository, so state never
    depends on having seen every webhook."""
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        names = [r["full_name"] for r in conn.execute(RECONCILED_REPOSITORIES).fetchall()]
    for name in names:
        enqueue_sync(name)
    return len(names)


def gateway_for(full_name: str, evidence: EvidenceRecorder) -> RepoGateway:
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        repo = repositories.by_name(conn, full_name)
    if repo is None or repo.installation_id is None:
        raise LookupError(f"{full_name} is not a repository of a known installation; install the App on it first")
    client = runtime.github_clients().installation(repo.installation_id)
    return RepoGateway(client, repo.full_name, evidence)


@dataclass
class RepoReading:
    """Everything a sync reads from GitHub, read before anything is written."""

    info: dict[str, Any]
    config: tuple[str, str] | None = None
    milestones: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    blocked_by: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read_repository(gh: RepoGateway) -> RepoReading:
    """Page through the repository on GitHub holding no lock and no transaction: a sync can take
    many minutes on a big repository, and deliveries of that repository go on meanwhile."""
    reading = RepoReading(gh.gh.rest.repos.get(gh.owner, gh.repo).json())
    reading.config = gh.file_text(CONFIG_PATH, ref=reading.info.get("default_branch"))
    reading.milestones = gh.milestones()
    for raw in gh.issues(state="open"):
        if raw.get("pull_request"):
            continue
        reading.issues.append(raw)
        if (raw.get("issue_dependencies_summary") or {}).get("blocked_by"):
            # Only issues GitHub says are blocked cost a call for their native relations.
            reading.blocked_by[raw["number"]] = gh.blocked_by(raw["number"])
    for raw in gh.pulls(state="open"):
        reading.pulls.append(raw)
        sha = raw["head"]["sha"]
        reading.check_runs[sha] = gh.check_runs(sha)
        reading.statuses[sha] = gh.combined_status(sha)
    return reading


def store_config(conn, repo: repositories.Repo, found: tuple[str, str] | None) -> None:
    """Store .github/fleet.yml as read; a broken file keeps the last good config."""
    text, sha = found if found else (None, None)
    try:
        config = parse_repo_config(text)
    except ConfigError as exc:
        repositories.store_config_error(conn, repo.id, f"{exc} (line {exc.line})" if exc.line else str(exc), sha)
        return
    repositories.store_config(conn, repo.id, config, sha)


def store_native_dependencies(conn, repo: repositories.Repo, number: int, blockers: list[dict[str, Any]]) -> None:
    refs = [TaskRef.of(b.get("repository_url", "").split("/repos/")[-1] or repo.full_name, b["number"])
            for b in blockers]
    conn.execute("DELETE FROM dependencies WHERE repo_id = %s AND number = %s AND source = 'native'", (repo.id, number))
    for ref in refs:
        set_dependency(conn, repo.id, number, ref, "native", True)


@contextmanager
def _locked_write(database_url: str, repo_id: int) -> Iterator[Any]:
    """One short transaction holding the repository lock (repositories.REPO_LOCK)."""
    with db.transaction(database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        yield conn


# A webhook processed while the sync was paging may have stored a newer version than the one read.
STORED_TASK_UPDATED = "SELECT gh_updated_at FROM tasks WHERE repo_id = %s AND number = %s"


def _stale(conn, repo_id: int, issue: Issue) -> bool:
    row = conn.execute(STORED_TASK_UPDATED, (repo_id, issue.number)).fetchone()
    return bool(row and row["gh_updated_at"] and issue.updated_at and row["gh_updated_at"] > issue.updated_at)


def write_repository(database_url: str, reading: RepoReading, counts: dict[str, int]) -> None:
    """Store a reading in short transactions, one item each, each under the repository lock."""
    info = reading.info
    with _locked_write(database_url, info["id"]) as conn:
        repositories.upsert_repository(
            conn, info["id"], info["full_name"], default_branch=info.get("default_branch"),
            private=info.get("private", False), archived=info.get("archived", False),
        )
        store_config(conn, repositories.get(conn, info["id"]), reading.config)
    with _locked_write(database_url, info["id"]) as conn:
        for raw in reading.milestones:
            upsert_milestone(conn, info["id"], Milestone.model_validate(raw))
            counts["milestones"] += 1
    for raw in reading.issues:
        issue = Issue.model_validate(raw)
        with _locked_write(database_url, info["id"]) as conn:
            repo = repositories.get(conn, info["id"])
            counts["issues"] += 1
            if _stale(conn, repo.id, issue):
                continue
            # Forced: reconciliation repairs what missed webhooks left behind, even at equal times.
            upsert_task(conn, repo.id, repo.full_name, issue, repo.config, force=True)
            if issue.number in reading.blocked_by:
                store_native_dependencies(conn, repo, issue.number, reading.blocked_by[issue.number])
    for raw in reading.pulls:
        pr = PullRequest.model_validate(raw)
        with _locked_write(database_url, info["id"]) as conn:
            repo = repositories.get(conn, info["id"])
            upsert_pull(conn, repo.id, repo.full_name, pr, repo.config)
            counts["pulls"] += 1
            for run in reading.check_runs.get(pr.head.sha, []):
                upsert_check_run(conn, repo.id, CheckRun.model_validate(run))
                counts["checks"] += 1
            for status in reading.statuses.get(pr.head.sha, []):
                upsert_status(conn, repo.id, pr.head.sha, status["context"], status["state"],
                              status.get("target_url"), status.get("id"), status.get("updated_at"))
    with db.transaction(database_url) as conn:
        repositories.mark_synced(conn, info["id"])


def sync_repository(full_name: str) -> dict[str, int]:
    """Reconcile one repository; returns counts of what was read."""
    settings = runtime.settings()
    evidence = EvidenceRecorder(settings.database_url, repo_full_name=full_name)
    gh = gateway_for(full_name, evidence)
    counts = {"issues": 0, "pulls": 0, "milestones": 0, "checks": 0}
    reading = read_repository(gh)
    write_repository(settings.database_url, reading, counts)
    evidence.close()
    log.info("repository synced", extra={"repo": full_name, **counts})
    return counts
