"""Claims in Postgres, as ``claims.Claim`` values, and the task snapshots the rules read.

Callers hold the repository's advisory lock (see jobs/process.py), so reading a task's claim
state and writing the decision is atomic with respect to every other worker; the partial unique
index ``claims_one_open_per_task`` is the backstop.
"""
from __future__ import annotations

from datetime import datetime

import psycopg

from app.claims.rules import Claim
from app.tasks.agents import AgentId
from app.tasks.readiness import Dependency, TaskSnapshot
from app.tasks.refs import TaskRef

CLAIM_COLUMNS = """c.id, c.number, c.agent_id, c.login, c.claimed_at, c.last_activity_at, c.lease_expires_at,
    c.warned_at, c.order_key, c.branch, c.head_sha, c.pr_number, c.progress, c.progress_note, r.full_name"""

OPEN_CLAIM = f"""
SELECT {CLAIM_COLUMNS} FROM claims c JOIN repositories r ON r.id = c.repo_id
WHERE c.repo_id = %s AND c.number = %s AND c.released_at IS NULL
"""

# The account's open claims that count towards the WIP limit of a claim in repository
# %(repo_id)s: that repository's, or with %(installation)s every live repository of the same
# installation. Never another installation's: its repositories are another tenant's business.
OPEN_CLAIMS_FOR_WIP = f"""
SELECT {CLAIM_COLUMNS} FROM claims c JOIN repositories r ON r.id = c.repo_id
WHERE lower(c.login) = lower(%(login)s) AND c.released_at IS NULL
  AND (c.repo_id = %(repo_id)s
       OR (%(installation)s AND r.removed_at IS NULL
           AND r.installation_id = (SELECT installation_id FROM repositories WHERE id = %(repo_id)s)))
ORDER BY r.full_name, c.number
"""

DUE_CLAIMS = f"""
SELECT {CLAIM_COLUMNS}, c.repo_id, r.installation_id FROM claims c JOIN repositories r ON r.id = c.repo_id
WHERE c.released_at IS NULL AND r.removed_at IS NULL
  AND (c.lease_expires_at <= %(now)s
       OR (c.warned_at IS NULL
           AND c.last_activity_at + (c.lease_expires_at - c.last_activity_at)
               * coalesce((r.config -> 'claims' ->> 'warn_at')::float, 0.75) <= %(now)s))
ORDER BY c.lease_expires_at
"""

UPSERT_AGENT = """
INSERT INTO agents (id, login, name) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
"""

INSERT_CLAIM = """
INSERT INTO claims (repo_id, number, agent_id, login, claimed_by, claimed_at, lease_expires_at, last_activity_at, order_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

UPDATE_CLAIM = """
UPDATE claims SET last_activity_at = %s, lease_expires_at = %s, warned_at = %s, branch = %s, head_sha = %s,
    pr_number = %s, progress = %s, progress_note = %s
WHERE repo_id = %s AND number = %s AND agent_id = %s AND released_at IS NULL
"""

END_CLAIM = """
UPDATE claims SET released_at = %s, release_reason = %s
WHERE repo_id = %s AND number = %s AND agent_id = %s AND released_at IS NULL
"""

# One pass over the repository's open or queued pull requests' links, joined to the tasks: a
# correlated subquery per task was tasks x PRs (360 ms for 500 tasks and 100 PRs before ANALYZE).
TASK_ROWS = """
WITH links AS (
    SELECT task, p.number AS pr, p.state = 'open' AS open, q.pr_number IS NOT NULL AS queued
    FROM pull_requests p
    CROSS JOIN LATERAL unnest(p.linked_tasks) AS task
    LEFT JOIN queue_entries q ON q.repo_id = p.repo_id AND q.pr_number = p.number AND q.finished_at IS NULL
    WHERE p.repo_id = %(repo_id)s AND (p.state = 'open' OR q.pr_number IS NOT NULL)
      AND (%(numbers)s::int[] IS NULL OR p.linked_tasks && %(numbers)s::int[])
), by_task AS (
    SELECT task, array_agg(DISTINCT pr) FILTER (WHERE open) AS prs, bool_or(queued) AS queued
    FROM links GROUP BY task
)
SELECT t.number, t.title, t.state, t.labels, t.assignees, t.priority, t.estimate_hours, t.is_task,
       c.agent_id AS holder, coalesce(l.prs, '{}') AS open_prs, coalesce(l.queued, false) AS queued
FROM tasks t
LEFT JOIN claims c ON c.repo_id = t.repo_id AND c.number = t.number AND c.released_at IS NULL
LEFT JOIN by_task l ON l.task = t.number
WHERE t.repo_id = %(repo_id)s AND t.deleted_at IS NULL AND (%(numbers)s::int[] IS NULL OR t.number = ANY(%(numbers)s))
"""

# The repository a dependency reference ``{ref}`` names, seen from the dependent's repository
# ``{src}``, joined as ``{alias}`` (NULL when it names none). It may resolve only to the dependent's
# own repository or another live repository of the same installation -- and never from a public
# repository into a private one, whose issue state would otherwise show through the public task's
# fleet:ready/blocked label. An unresolved reference is "unknown", exactly like a repository Fleet
# has never seen, so it reveals nothing. A former name still resolves (GitHub redirects a renamed
# repository's old name, and issue bodies keep it), but a repository that holds the name now wins.
# (Two index lookups per reference: by current name, and by former name through a GIN index.)
DEP_REPO_JOIN = """LEFT JOIN LATERAL (
    SELECT named.id, named.full_name, named.private FROM (
        SELECT cand.*, 0 AS former FROM repositories cand WHERE lower(cand.full_name) = lower({ref})
        UNION ALL
        SELECT cand.*, 1 FROM repositories cand WHERE cand.former_names @> ARRAY[lower({ref})]) named
    WHERE named.id = {src}.id OR (named.removed_at IS NULL AND named.installation_id = {src}.installation_id
                                  AND ({src}.private OR NOT named.private))
    ORDER BY named.former, named.updated_at DESC
    LIMIT 1) {alias} ON true"""

TASK_DEPS = f"""
SELECT d.number, d.dep_full_name, d.dep_number, dt.state AS dep_state
FROM dependencies d
JOIN repositories r ON r.id = d.repo_id
{DEP_REPO_JOIN.format(src="r", ref="d.dep_full_name", alias="dr")}
LEFT JOIN tasks dt ON dt.repo_id = dr.id AND dt.number = d.dep_number
WHERE d.repo_id = %(repo_id)s AND (%(numbers)s::int[] IS NULL OR d.number = ANY(%(numbers)s))
"""

# The edges find_cycles walks: a live task's dependencies as written (cycles close within them).
DEPENDENCY_EDGES = """
SELECT d.number, d.dep_full_name, d.dep_number FROM dependencies d
JOIN tasks t ON t.repo_id = d.repo_id AND t.number = d.number AND t.deleted_at IS NULL
WHERE d.repo_id = %s
"""

# Resolved by the same rule, so a reference written with a former name counts too.
DEPENDENTS = f"""
SELECT DISTINCT d.number FROM dependencies d
JOIN repositories r ON r.id = d.repo_id
{DEP_REPO_JOIN.format(src="r", ref="d.dep_full_name", alias="dr")}
WHERE d.repo_id = %(repo_id)s AND d.dep_number = %(number)s AND lower(dr.full_name) = lower(%(full_name)s)
"""


def _claim(row: dict) -> Claim:
    return Claim(
        task=TaskRef.of(row["full_name"], row["number"]),
        agent=AgentId.parse(row["agent_id"]),
        claimed_at=row["claimed_at"],
        renewed_at=row["last_activity_at"],
        expires_at=row["lease_expires_at"],
        order_key=tuple(row["order_key"]) if row["order_key"] else None,
        warned=row["warned_at"] is not None,
        branch=row["branch"],
        head_sha=row["head_sha"],
        pr_number=row["pr_number"],
        progress=row["progress"],
        progress_note=row["progress_note"],
    )


def open_claim(conn: psycopg.Connection, repo_id: int, number: int) -> Claim | None:
    row = conn.execute(OPEN_CLAIM, (repo_id, number)).fetchone()
    return _claim(row) if row else None


def open_claims_for_wip(conn: psycopg.Connection, login: str, repo_id: int, scope: str) -> list[Claim]:
    """The open claims of account ``login`` that count towards a WIP limit in ``repo_id``, for
    ``claims.wip_scope`` ``scope`` (``repository`` or ``installation``)."""
    params = {"login": login, "repo_id": repo_id, "installation": scope == "installation"}
    return [_claim(r) for r in conn.execute(OPEN_CLAIMS_FOR_WIP, params).fetchall()]


def due_claims(conn: psycopg.Connection, now: datetime) -> list[tuple[Claim, int, int | None]]:
    """Open claims whose lease has expired or that are due their warning: (claim, repo_id, installation)."""
    rows = conn.execute(DUE_CLAIMS, {"now": now}).fetchall()
    return [(_claim(r), r["repo_id"], r["installation_id"]) for r in rows]


def create(conn: psycopg.Connection, repo_id: int, claim: Claim, claimed_by: str | None) -> None:
    """Record a new claim. An agent that gets a task, however it claimed it, is no longer waiting
    in line for ``/next`` (``app.claims.waiting``): it is not handed a second task unasked."""
    conn.execute(UPSERT_AGENT, (str(claim.agent), claim.agent.login, claim.agent.name))
    conn.execute(
        INSERT_CLAIM,
        (repo_id, claim.task.number, str(claim.agent), claim.agent.login, claimed_by, claim.claimed_at,
         claim.expires_at, claim.renewed_at, list(claim.order_key) if claim.order_key else None),
    )
    leave_line(conn, repo_id, claim.agent)


LEAVE_LINE = "DELETE FROM next_waiters WHERE repo_id = %s AND lower(login) = lower(%s) AND agent_name = %s"


def leave_line(conn: psycopg.Connection, repo_id: int, agent: AgentId) -> None:
    """Take ``agent`` out of the ``/next`` line (``app.claims.waiting``)."""
    conn.execute(LEAVE_LINE, (repo_id, agent.login, agent.name or ""))


def update(conn: psycopg.Connection, repo_id: int, claim: Claim, warned_at: datetime | None) -> None:
    conn.execute(
        UPDATE_CLAIM,
        (claim.renewed_at, claim.expires_at, warned_at if claim.warned else None, claim.branch, claim.head_sha,
         claim.pr_number, claim.progress, claim.progress_note, repo_id, claim.task.number, str(claim.agent)),
    )


def end(conn: psycopg.Connection, repo_id: int, claim: Claim, reason: str, at: datetime) -> None:
    conn.execute(END_CLAIM, (at, reason, repo_id, claim.task.number, str(claim.agent)))


def snapshots(conn: psycopg.Connection, repo_id: int, full_name: str, numbers: list[int] | None = None) -> list[TaskSnapshot]:
    """Task snapshots (with dependency states) for the readiness rules; all tasks when ``numbers`` is None."""
    params = {"repo_id": repo_id, "numbers": numbers}
    deps: dict[int, list[Dependency]] = {}
    for row in conn.execute(TASK_DEPS, params).fetchall():
        state = row["dep_state"] if row["dep_state"] in ("open", "closed") else "unknown"
        deps.setdefault(row["number"], []).append(Dependency(TaskRef.of(row["dep_full_name"], row["dep_number"]), state))
    result = []
    for row in conn.execute(TASK_ROWS, params).fetchall():
        result.append(TaskSnapshot(
            repo=full_name, number=row["number"], title=row["title"], state=row["state"],
            labels=tuple(row["labels"]), assignees=tuple(row["assignees"]),
            holder=AgentId.parse(row["holder"]) if row["holder"] else None,
            dependencies=tuple(deps.get(row["number"], ())), open_prs=tuple(row["open_prs"]),
            queued=row["queued"], priority=row["priority"],
            estimate_hours=float(row["estimate_hours"]) if row["estimate_hours"] is not None else None,
            is_task=row["is_task"],
        ))
    return result


def dependency_graph(conn: psycopg.Connection, repo_id: int, full_name: str) -> dict[TaskRef, list[TaskRef]]:
    """Task -> the tasks it depends on, for ``readiness.find_cycles``: only tasks that have any."""
    graph: dict[TaskRef, list[TaskRef]] = {}
    for row in conn.execute(DEPENDENCY_EDGES, (repo_id,)).fetchall():
        graph.setdefault(TaskRef.of(full_name, row["number"]), []).append(TaskRef.of(row["dep_full_name"], row["dep_number"]))
    return graph


def dependents(conn: psycopg.Connection, repo_id: int, full_name: str, number: int) -> list[int]:
    """Tasks in ``repo_id`` that depend on ``full_name#number``."""
    params = {"repo_id": repo_id, "full_name": full_name, "number": number}
    return [r["number"] for r in conn.execute(DEPENDENTS, params).fetchall()]
