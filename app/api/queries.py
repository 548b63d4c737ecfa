"""The read API's SQL, one named query per question, and the functions that run them.

Every query takes ``%(auth)s``: when false (an unauthenticated loopback client), rows of private
repositories are left out, so private data never reaches an unauthenticated caller.

Epics are milestones. In ``progress_snapshots`` (written by ``app/status/snapshot.py``) milestone
N's rows have epic ``mN`` and the whole repository's ``''``.
"""
from __future__ import annotations

from typing import Any

import psycopg

from app.claims.store import DEP_REPO_JOIN

VISIBLE_REPO = "r.removed_at IS NULL AND (%(auth)s OR NOT r.private)"

REPOS = f"""
SELECT r.id, r.full_name, r.private, r.default_branch, r.installation_id, i.account_login,
       r.config_error, r.config IS NOT NULL AS has_config, r.synced_at,
       count(t.number) FILTER (WHERE t.is_task AND t.deleted_at IS NULL) AS tasks_total,
       count(t.number) FILTER (WHERE t.is_task AND t.deleted_at IS NULL AND t.state = 'closed') AS tasks_done
FROM repositories r
LEFT JOIN installations i ON i.id = r.installation_id
LEFT JOIN tasks t ON t.repo_id = r.id
WHERE {VISIBLE_REPO} AND (%(repo)s::text IS NULL OR lower(r.full_name) = lower(%(repo)s))
GROUP BY r.id, i.account_login
ORDER BY lower(r.full_name)
"""

# Task rows with everything task_state() needs; filters that SQL can apply are applied here,
# the state filter (a rule in app/tasks/readiness.py) is applied by the caller.
TASKS = f"""
SELECT r.full_name AS repo, r.id AS repo_id, t.number, t.title, t.state, t.labels, t.assignees, t.priority,
       t.estimate_hours, t.is_task, t.milestone_number, m.title AS milestone_title, t.progress,
       t.gh_created_at, t.gh_updated_at, t.closed_at,
       c.agent_id AS holder,
       coalesce((SELECT array_agg(p.number ORDER BY p.number) FROM pull_requests p
                 WHERE p.repo_id = t.repo_id AND p.state = 'open' AND t.number = ANY(p.linked_tasks)), '{{}}') AS open_prs,
       EXISTS (SELECT 1 FROM queue_entries q JOIN pull_requests p ON p.repo_id = q.repo_id AND p.number = q.pr_number
               WHERE q.repo_id = t.repo_id AND q.finished_at IS NULL AND t.number = ANY(p.linked_tasks)) AS queued
FROM tasks t
JOIN repositories r ON r.id = t.repo_id
LEFT JOIN milestones m ON m.repo_id = t.repo_id AND m.number = t.milestone_number
LEFT JOIN claims c ON c.repo_id = t.repo_id AND c.number = t.number AND c.released_at IS NULL
WHERE {VISIBLE_REPO} AND t.is_task AND t.deleted_at IS NULL
  AND (%(repo)s::text IS NULL OR lower(r.full_name) = lower(%(repo)s))
  AND (%(number)s::int IS NULL OR t.number = %(number)s)
  AND (%(epic)s::text IS NULL OR lower(m.title) = lower(%(epic)s) OR t.milestone_number::text = %(epic)s)
  AND (%(label)s::text IS NULL OR lower(%(label)s) = ANY(SELECT lower(x) FROM unnest(t.labels) x))
  AND (%(holder)s::text IS NULL OR lower(c.agent_id) = lower(%(holder)s) OR lower(c.login) = lower(%(holder)s))
ORDER BY lower(r.full_name), t.number
"""

# Dependencies of the given tasks with the dependency's issue state when the reference resolves
# inside the tenant (DEP_REPO_JOIN) and Fleet knows the issue (NULL otherwise). ``visible`` says
# whether the caller may see the dependency's details; the state still feeds the task's own
# state, which reveals no more than the task's labels on GitHub do.
DEPENDENCIES = f"""
SELECT d.repo_id, d.number, d.dep_full_name, d.dep_number, d.source,
       dt.state AS dep_state, dt.title AS dep_title, r.full_name AS dep_resolved_repo,
       (%(auth)s OR NOT coalesce(r.private, false)) AS visible
FROM dependencies d
JOIN repositories src ON src.id = d.repo_id
{DEP_REPO_JOIN.format(src="src", ref="d.dep_full_name", alias="r")}
LEFT JOIN tasks dt ON dt.repo_id = r.id AND dt.number = d.dep_number AND dt.deleted_at IS NULL
WHERE d.repo_id = ANY(%(repo_ids)s) AND (%(numbers)s::int[] IS NULL OR d.number = ANY(%(numbers)s))
ORDER BY d.repo_id, d.number, lower(d.dep_full_name), d.dep_number, d.source
"""

DEPENDENTS = f"""
SELECT DISTINCT r.full_name AS repo, t.number, t.title, t.state
FROM dependencies d
JOIN tasks t ON t.repo_id = d.repo_id AND t.number = d.number AND t.deleted_at IS NULL
JOIN repositories r ON r.id = d.repo_id
{DEP_REPO_JOIN.format(src="r", ref="d.dep_full_name", alias="dr")}
WHERE {VISIBLE_REPO} AND lower(dr.full_name) = lower(%(repo)s) AND d.dep_number = %(number)s
ORDER BY r.full_name, t.number
"""

CLAIM_HISTORY = """
SELECT c.agent_id, c.login, c.claimed_by, c.claimed_at, c.last_activity_at, c.lease_expires_at, c.warned_at,
       c.released_at, c.release_reason, c.branch, c.head_sha, c.pr_number, c.progress, c.progress_note
FROM claims c
WHERE c.repo_id = %(repo_id)s AND c.number = %(number)s
ORDER BY c.claimed_at DESC, c.id DESC
"""

BRANCHES = """
SELECT b.name, b.head_sha, b.agent_id, b.pushed_by, b.pushed_at, b.deleted_at
FROM branches b
WHERE b.repo_id = %(repo_id)s AND b.task_number = %(number)s
ORDER BY b.pushed_at DESC NULLS LAST, b.name
"""

PULLS_FOR_TASK = """
SELECT p.number, p.title, p.state, p.draft, p.merged, p.merged_at, p.author, p.head_ref, p.head_sha, p.base_ref,
       p.mergeable, p.mergeable_state, p.gh_created_at, p.gh_updated_at, p.closed_at
FROM pull_requests p
WHERE p.repo_id = %(repo_id)s AND %(number)s = ANY(p.linked_tasks)
ORDER BY p.number
"""

CHECKS_FOR_SHAS = """
SELECT cr.head_sha, cr.name, cr.status, cr.conclusion, cr.app_slug, cr.url, cr.started_at, cr.completed_at
FROM check_runs cr
WHERE cr.repo_id = %(repo_id)s AND cr.head_sha = ANY(%(shas)s)
ORDER BY cr.head_sha, cr.name, cr.id
"""

STATUSES_FOR_SHAS = """
SELECT s.sha, s.context, s.state, s.target_url, s.gh_updated_at
FROM commit_statuses s
WHERE s.repo_id = %(repo_id)s AND s.sha = ANY(%(shas)s)
ORDER BY s.sha, s.context
"""

REVIEWS_FOR_PULLS = """
SELECT rv.pr_number, rv.reviewer, rv.state, rv.commit_id, rv.submitted_at
FROM reviews rv
WHERE rv.repo_id = %(repo_id)s AND rv.pr_number = ANY(%(numbers)s)
ORDER BY rv.pr_number, rv.submitted_at NULLS LAST, rv.id
"""

# Evidence rows name their target as "#N" (an issue or a pull request).
EVIDENCE_FOR_TARGETS = """
SELECT e.id, e.at, e.delivery_id, e.job_id, e.action, e.target, e.outcome, e.status_code, e.detail
FROM evidence e
WHERE (e.repo_id = %(repo_id)s OR (e.repo_id IS NULL AND lower(e.repo_full_name) = lower(%(repo)s)))
  AND e.target = ANY(%(targets)s)
ORDER BY e.at DESC, e.id DESC
LIMIT 100
"""

AGENTS = f"""
SELECT a.id, a.login, a.name, a.user_type, a.first_seen_at, a.last_seen_at,
       max(c.last_activity_at) AS last_activity_at,
       count(c.id) AS claims_total,
       count(c.id) FILTER (WHERE c.release_reason = 'completed') AS claims_completed
FROM agents a
JOIN claims c ON c.agent_id = a.id
JOIN repositories r ON r.id = c.repo_id
WHERE {VISIBLE_REPO}
GROUP BY a.id
ORDER BY lower(a.id)
"""

OPEN_CLAIMS = f"""
SELECT c.agent_id, r.full_name AS repo, c.number, t.title, c.claimed_at, c.last_activity_at, c.lease_expires_at,
       c.warned_at, c.branch, c.pr_number, c.progress, c.progress_note
FROM claims c
JOIN repositories r ON r.id = c.repo_id
JOIN tasks t ON t.repo_id = c.repo_id AND t.number = c.number
WHERE {VISIBLE_REPO} AND c.released_at IS NULL
ORDER BY c.agent_id, c.lease_expires_at
"""

# Each task an agent completed (its claim ended with the task closed), for per-agent velocity.
AGENT_COMPLETIONS = f"""
SELECT c.agent_id, c.released_at, coalesce(t.estimate_hours, 0) AS hours
FROM claims c
JOIN repositories r ON r.id = c.repo_id
JOIN tasks t ON t.repo_id = c.repo_id AND t.number = c.number
WHERE {VISIBLE_REPO} AND c.release_reason = 'completed' AND t.state = 'closed'
ORDER BY c.agent_id, c.released_at
"""

SNAPSHOTS = """
SELECT s.repo_id, s.taken_at, s.epic, s.tasks_total, s.tasks_done, s.hours_total, s.hours_done
FROM progress_snapshots s
WHERE s.repo_id = ANY(%(repo_ids)s) AND s.taken_at >= %(since)s
ORDER BY s.repo_id, s.taken_at
"""

MERGE_QUEUE = f"""
SELECT r.full_name AS repo, q.base_ref, q.pr_number, q.priority, q.state, q.queued_by, q.queued_at, q.started_at,
       q.head_sha, q.attempts, p.title, p.author, p.linked_tasks
FROM queue_entries q
JOIN repositories r ON r.id = q.repo_id
LEFT JOIN pull_requests p ON p.repo_id = q.repo_id AND p.number = q.pr_number
WHERE {VISIBLE_REPO} AND q.finished_at IS NULL
  AND (%(repo)s::text IS NULL OR lower(r.full_name) = lower(%(repo)s))
ORDER BY lower(r.full_name), q.base_ref, (q.state = 'queued'), q.priority,
         CASE WHEN q.state = 'queued' THEN q.queued_at ELSE coalesce(q.started_at, q.queued_at) END, q.pr_number
"""

# A private repository's rows are hidden whether the row names it by id or only by name.
_HIDE_PRIVATE = """(%(auth)s OR NOT EXISTS (
    SELECT 1 FROM repositories pr WHERE pr.private
    AND (pr.id = {t}.repo_id OR lower(pr.full_name) = lower({t}.repo_full_name))))"""

# One feed of what happened: webhook deliveries received and actions Fleet took on GitHub.
_EVIDENCE_FEED = f"""
SELECT 'action' AS kind, e.at, e.repo_full_name AS repo, e.id::text AS id, NULL::text AS event, e.action,
       e.target, e.outcome, e.status_code, e.delivery_id, e.job_id, e.detail,
       NULL::int AS attempts, NULL::text AS error, NULL::timestamptz AS started_at, NULL::timestamptz AS processed_at
FROM evidence e
WHERE {_HIDE_PRIVATE.format(t="e")} AND %(kind)s::text IS DISTINCT FROM 'delivery'
  AND (%(repo)s::text IS NULL OR lower(e.repo_full_name) = lower(%(repo)s))
UNION ALL
SELECT 'delivery', d.received_at, d.repo_full_name, d.id, d.event, d.action,
       NULL, d.status, NULL, d.id, NULL, NULL,
       d.attempts, d.last_error, d.started_at, d.processed_at
FROM deliveries d
WHERE {_HIDE_PRIVATE.format(t="d")} AND %(kind)s::text IS DISTINCT FROM 'action'
  AND (%(repo)s::text IS NULL OR lower(d.repo_full_name) = lower(%(repo)s))
"""

EVIDENCE = f"""
SELECT * FROM ({_EVIDENCE_FEED}) feed
ORDER BY at DESC, kind, id DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

# Counted only up to %(cap)s rows: a request never scans both whole tables to say how many.
EVIDENCE_COUNT = f"SELECT count(*) AS n FROM (SELECT 1 FROM ({_EVIDENCE_FEED}) feed LIMIT %(cap)s) capped"

# Stored deliveries by status (``status=parked``: the ones Fleet gave up on), newest first.
_DELIVERIES_MATCHING = f"""
FROM deliveries d
WHERE {_HIDE_PRIVATE.format(t="d")}
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
  AND (%(repo)s::text IS NULL OR lower(d.repo_full_name) = lower(%(repo)s))
"""

DELIVERIES = f"""
SELECT d.id, d.repo_full_name AS repo, d.event, d.action, d.status, d.attempts, d.last_error AS error,
       d.received_at, d.started_at, d.processed_at, d.parked_at
{_DELIVERIES_MATCHING}
ORDER BY coalesce(d.parked_at, d.received_at) DESC, d.id DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

DELIVERIES_COUNT = f"SELECT count(*) AS n {_DELIVERIES_MATCHING}"

PRIVATE_REPO_NAMES = "SELECT lower(full_name) AS name FROM repositories WHERE private"


def rows(conn: psycopg.Connection, query: str, **params: Any) -> list[dict[str, Any]]:
    """Run one of the named queries above; missing optional filters default to None."""
    defaults = {"repo": None, "number": None, "epic": None, "label": None, "holder": None, "kind": None}
    return conn.execute(query, {**defaults, **params}).fetchall()
