"""Backfill and reconciliation: rebuild a repository's state from GitHub's REST API.

Runs when the App is installed on a repository, on ``fleet sync OWNER/NAME``, and periodically,
so Fleet never depends on having seen every webhook.
"""
from __future__ import annotations

import logging

from app import db, repositories, runtime
from app.evidence import EvidenceRecorder
from app.github_gateway import RepoGateway
from app.pull_state import upsert_check_run, upsert_pull, upsert_status
from app.repo_config import CONFIG_PATH, ConfigError, parse_repo_config
from app.task_refs import TaskRef
from app.task_state import set_dependency, upsert_milestone, upsert_task
from webhooks.models import CheckRun, Issue, Milestone, PullRequest

log = logging.getLogger("fleet.sync")


def enqueue_sync(full_name: str) -> None:
    runtime.queue().enqueue("jobs.sync.sync_repository", full_name, job_timeout=1800, description=f"sync {full_name}")


def reconcile_all() -> int:
    """Periodic reconciliation (scheduler): re-sync every active repository, so state never
    depends on having seen every webhook."""
    settings = runtime.settings()
    with db.connect(settings.database_url, autocommit=True) as conn:
        names = [r["full_name"] for r in conn.execute(
            "SELECT full_name FROM repositories WHERE removed_at IS NULL AND installation_id IS NOT NULL"
        ).fetchall()]
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


def load_config(conn, gh: RepoGateway, repo: repositories.Repo) -> None:
    """Read .github/fleet.yml from the default branch; a broken file keeps the last good config."""
    found = gh.file_text(CONFIG_PATH, ref=repo.default_branch)
    text, sha = found if found else (None, None)
    try:
        config = parse_repo_config(text)
    except ConfigError as exc:
        repositories.store_config_error(conn, repo.id, f"{exc} (line {exc.line})" if exc.line else str(exc), sha)
        return
    repositories.store_config(conn, repo.id, config, sha)


def sync_native_dependencies(conn, gh: RepoGateway, repo: repositories.Repo, number: int) -> None:
    refs = [TaskRef.of(b.get("repository_url", "").split("/repos/")[-1] or repo.full_name, b["number"])
            for b in gh.blocked_by(number)]
    conn.execute("DELETE FROM dependencies WHERE repo_id = %s AND number = %s AND source = 'native'", (repo.id, number))
    for ref in refs:
        set_dependency(conn, repo.id, number, ref, "native", True)


def sync_repository(full_name: str) -> dict[str, int]:
    """Reconcile one repository; returns counts of what was read."""
    settings = runtime.settings()
    evidence = EvidenceRecorder(settings.database_url, repo_full_name=full_name)
    gh = gateway_for(full_name, evidence)
    counts = {"issues": 0, "pulls": 0, "milestones": 0, "checks": 0}
    info = gh.gh.rest.repos.get(gh.owner, gh.repo).json()
    with db.transaction(settings.database_url) as conn:
        repositories.upsert_repository(
            conn, info["id"], info["full_name"], default_branch=info.get("default_branch"), private=info.get("private", False)
        )
        repo = repositories.get(conn, info["id"])
        load_config(conn, gh, repo)
        repo = repositories.get(conn, info["id"])
        for raw in gh.milestones():
            upsert_milestone(conn, repo.id, Milestone.model_validate(raw))
            counts["milestones"] += 1
        for raw in gh.issues(state="open"):
            issue = Issue.model_validate(raw)
            if issue.is_pull_request:
                continue
            upsert_task(conn, repo.id, repo.full_name, issue, repo.config, force=True)
            counts["issues"] += 1
            if (raw.get("issue_dependencies_summary") or {}).get("blocked_by"):
                # Only issues GitHub says are blocked cost a call for their native relations.
                sync_native_dependencies(conn, gh, repo, issue.number)
        for raw in gh.pulls(state="open"):
            pr = PullRequest.model_validate(raw)
            upsert_pull(conn, repo.id, repo.full_name, pr, repo.config)
            counts["pulls"] += 1
            for run in gh.check_runs(pr.head.sha):
                upsert_check_run(conn, repo.id, CheckRun.model_validate(run))
                counts["checks"] += 1
            for status in gh.combined_status(pr.head.sha):
                upsert_status(conn, repo.id, pr.head.sha, status["context"], status["state"],
                              status.get("target_url"), status.get("id"), status.get("updated_at"))
        repositories.mark_synced(conn, repo.id)
    evidence.close()
    log.info("repository synced", extra={"repo": full_name, **counts})
    return counts
