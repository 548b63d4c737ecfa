"""Pull requests, reviews, check runs, commit statuses and branches in Postgres."""
from __future__ import annotations

import psycopg

from app.repos.config import RepoConfig
from app.tasks.refs import branch_task, closing_numbers
from app.github.models import CheckRun, PullRequest, Review, labels_of

UPSERT_PR = """
INSERT INTO pull_requests (repo_id, number, pr_id, node_id, title, body, state, draft, merged, merged_at,
    merge_commit_sha, author, head_ref, head_sha, head_repo, base_ref, base_sha, mergeable, mergeable_state,
    labels, linked_tasks, additions, deletions, changed_files, gh_created_at, gh_updated_at, closed_at)
VALUES (%(repo_id)s, %(number)s, %(pr_id)s, %(node_id)s, %(title)s, %(body)s, %(state)s, %(draft)s,
    %(merged)s, %(merged_at)s, %(merge_commit_sha)s, %(author)s, %(head_ref)s, %(head_sha)s, %(head_repo)s,
    %(base_ref)s, %(base_sha)s, %(mergeable)s, %(mergeable_state)s, %(labels)s, %(linked)s, %(additions)s,
    %(deletions)s, %(changed_files)s, %(created_at)s, %(updated_at)s, %(closed_at)s)
ON CONFLICT (repo_id, number) DO UPDATE SET
    pr_id = EXCLUDED.pr_id, node_id = EXCLUDED.node_id, title = EXCLUDED.title, body = EXCLUDED.body,
    state = EXCLUDED.state, draft = EXCLUDED.draft,
    merged = pull_requests.merged OR EXCLUDED.merged,
    merged_at = coalesce(EXCLUDED.merged_at, pull_requests.merged_at),
    merge_commit_sha = coalesce(EXCLUDED.merge_commit_sha, pull_requests.merge_commit_sha),
    author = EXCLUDED.author, head_ref = EXCLUDED.head_ref, head_sha = EXCLUDED.head_sha,
    head_repo = EXCLUDED.head_repo, base_ref = EXCLUDED.base_ref, base_sha = EXCLUDED.base_sha,
    mergeable = EXCLUDED.mergeable, mergeable_state = EXCLUDED.mergeable_state, labels = EXCLUDED.labels,
    linked_tasks = EXCLUDED.linked_tasks,
    additions = coalesce(EXCLUDED.additions, pull_requests.additions),
    deletions = coalesce(EXCLUDED.deletions, pull_requests.deletions),
    changed_files = coalesce(EXCLUDED.changed_files, pull_requests.changed_files),
    gh_created_at = EXCLUDED.gh_created_at, gh_updated_at = EXCLUDED.gh_updated_at,
    closed_at = EXCLUDED.closed_at, updated_at = now()
WHERE pull_requests.gh_updated_at IS NULL OR EXCLUDED.gh_updated_at IS NULL
   OR EXCLUDED.gh_updated_at >= pull_requests.gh_updated_at
RETURNING number
"""

UPSERT_REVIEW = """
INSERT INTO reviews (id, repo_id, pr_number, reviewer, state, commit_id, submitted_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, commit_id = EXCLUDED.commit_id,
    submitted_at = EXCLUDED.submitted_at
"""

# A completed run never goes back to in_progress because of a late "created" event.
UPSERT_CHECK_RUN = """
INSERT INTO check_runs (id, repo_id, head_sha, name, status, conclusion, app_slug, url, started_at, completed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, conclusion = EXCLUDED.conclusion,
    url = EXCLUDED.url, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, updated_at = now()
WHERE check_runs.status <> 'completed' OR EXCLUDED.status = 'completed'
"""

UPSERT_STATUS = """
INSERT INTO commit_statuses (repo_id, sha, context, state, target_url, status_id, gh_updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (repo_id, sha, context) DO UPDATE SET state = EXCLUDED.state, target_url = EXCLUDED.target_url,
    status_id = EXCLUDED.status_id, gh_updated_at = EXCLUDED.gh_updated_at
WHERE commit_statuses.gh_updated_at IS NULL OR EXCLUDED.gh_updated_at IS NULL
   OR EXCLUDED.gh_updated_at >= commit_statuses.gh_updated_at
"""

UPSERT_BRANCH = """
INSERT INTO branches (repo_id, name, head_sha, task_number, agent_id, pushed_by, pushed_at)
VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (repo_id, name) DO UPDATE SET head_sha = coalesce(EXCLUDED.head_sha, branches.head_sha),
    task_number = EXCLUDED.task_number, agent_id = coalesce(EXCLUDED.agent_id, branches.agent_id),
    pushed_by = coalesce(EXCLUDED.pushed_by, branches.pushed_by), pushed_at = now(), deleted_at = NULL
"""
DELETE_BRANCH = "UPDATE branches SET deleted_at = now() WHERE repo_id = %s AND name = %s"

PRS_FOR_SHA = "SELECT number FROM pull_requests WHERE repo_id = %s AND head_sha = %s AND state = 'open'"


def linked_tasks(pr: PullRequest, full_name: str, config: RepoConfig) -> list[int]:
    """Task numbers in this repository that the PR works on: closing keywords and branch name."""
    numbers = closing_numbers(pr.body, full_name)
    link = branch_task(pr.head.ref, config.tasks.branch_patterns)
    if link is not None:
        numbers.add(link.number)
    numbers.discard(pr.number)
    return sorted(numbers)


def upsert_pull(conn: psycopg.Connection, repo_id: int, full_name: str, pr: PullRequest, config: RepoConfig) -> bool:
    """Record the PR; False when the stored row is newer."""
    row = conn.execute(
        UPSERT_PR,
        {
            "repo_id": repo_id, "number": pr.number, "pr_id": pr.id, "node_id": pr.node_id,
            "title": pr.title, "body": pr.body or "", "state": pr.state, "draft": pr.draft,
            "merged": bool(pr.merged or pr.merged_at), "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha if pr.merged_at else None,
            "author": pr.user.login if pr.user else None, "head_ref": pr.head.ref, "head_sha": pr.head.sha,
            "head_repo": pr.head.repo.full_name if pr.head.repo else None, "base_ref": pr.base.ref,
            "base_sha": pr.base.sha, "mergeable": pr.mergeable, "mergeable_state": pr.mergeable_state,
            "labels": labels_of(pr.labels), "linked": linked_tasks(pr, full_name, config),
            "additions": pr.additions, "deletions": pr.deletions, "changed_files": pr.changed_files,
            "created_at": pr.created_at, "updated_at": pr.updated_at, "closed_at": pr.closed_at,
        },
    ).fetchone()
    return row is not None


def upsert_review(conn: psycopg.Connection, repo_id: int, pr_number: int, review: Review) -> None:
    conn.execute(
        UPSERT_REVIEW,
        (review.id, repo_id, pr_number, review.user.login if review.user else "ghost", review.state.upper(),
         review.commit_id, review.submitted_at),
    )


def upsert_check_run(conn: psycopg.Connection, repo_id: int, run: CheckRun) -> None:
    conn.execute(
        UPSERT_CHECK_RUN,
        (run.id, repo_id, run.head_sha, run.name, run.status, run.conclusion,
         run.app.slug if run.app else None, run.html_url or run.details_url, run.started_at, run.completed_at),
    )


def upsert_status(conn: psycopg.Connection, repo_id: int, sha: str, context: str, state: str,
                  target_url: str | None, status_id: int | None, updated_at) -> None:
    conn.execute(UPSERT_STATUS, (repo_id, sha, context, state, target_url, status_id, updated_at))


def upsert_branch(conn: psycopg.Connection, repo_id: int, name: str, head_sha: str | None,
                  config: RepoConfig, pushed_by: str | None) -> int | None:
    """Record a branch and its task link; returns the linked task number, if any."""
    link = branch_task(name, config.tasks.branch_patterns)
    named = link is not None and link.agent and pushed_by and link.agent.lower() != pushed_by.lower()
    agent = f"{pushed_by}:{link.agent}" if named else pushed_by
    conn.execute(UPSERT_BRANCH, (repo_id, name, head_sha, link.number if link else None, agent, pushed_by))
    return link.number if link else None


def delete_branch(conn: psycopg.Connection, repo_id: int, name: str) -> None:
    conn.execute(DELETE_BRANCH, (repo_id, name))


def prs_for_sha(conn: psycopg.Connection, repo_id: int, sha: str) -> list[int]:
    return [r["number"] for r in conn.execute(PRS_FOR_SHA, (repo_id, sha)).fetchall()]
