"""Loading the status issue's snapshot from Postgres (the pure renderer is status_table.py)."""
from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from app.claims import store as claim_store
from app.tasks import readiness
from app.gates.rules import config_warnings
from app.github.client import github_web_url
from app.repos.registry import Repo
from app.status.rows import AgentRow, ClaimRow, EpicRow, MergeQueue, QueueEntry, StatusSnapshot, TaskRow
from app.status.velocity import ProgressPoint

TASK_DETAILS = """
SELECT number, milestone_number, parent_number, closed_at
FROM tasks WHERE repo_id = %s AND is_task AND deleted_at IS NULL
"""
MILESTONES = "SELECT number, title FROM milestones WHERE repo_id = %s ORDER BY number"
AGENTS = """
SELECT a.id,
       max(c.last_activity_at) AS last_activity_at,
       count(*) FILTER (WHERE c.release_reason = 'completed') AS tasks_done,
       coalesce(sum(t.estimate_hours) FILTER (WHERE c.release_reason = 'completed'), 0) AS hours_done
FROM claims c JOIN agents a ON a.id = c.agent_id
LEFT JOIN tasks t ON t.repo_id = c.repo_id AND t.number = c.number
WHERE c.repo_id = %s
GROUP BY a.id
"""
OPEN_CLAIMS = """
SELECT agent_id, number, lease_expires_at FROM claims WHERE repo_id = %s AND released_at IS NULL ORDER BY number
"""
COMPLETED_BY = """
SELECT DISTINCT ON (number) number, agent_id FROM claims
WHERE repo_id = %s AND release_reason = 'completed' ORDER BY number, released_at DESC
"""
QUEUE = """
SELECT q.base_ref, q.pr_number, q.state, q.queued_at, q.priority, p.title, p.author
FROM queue_entries q LEFT JOIN pull_requests p ON p.repo_id = q.repo_id AND p.number = q.pr_number
WHERE q.repo_id = %s AND q.finished_at IS NULL
ORDER BY q.base_ref, (q.state <> 'queued') DESC, q.priority, q.queued_at, q.pr_number
"""
QUEUE_FALLBACKS = "SELECT base_ref, reason FROM queue_serial_fallbacks WHERE repo_id = %s"
IN_GROUPS = "SELECT DISTINCT unnest(prs) AS pr FROM queue_groups WHERE repo_id = %s AND ended_at IS NULL"
# How far back the status issue's ETA and burndown read snapshots; retention keeps at least this.
PROGRESS_HISTORY = timedelta(days=45)

PROGRESS = """
SELECT taken_at, epic, hours_done, hours_total FROM progress_snapshots
WHERE repo_id = %s AND taken_at >= %s ORDER BY taken_at
"""


def web_url(api_url: str, repo: str) -> str:
    """The repository's web address for links."""
    return f"{github_web_url(api_url)}/{repo}"


def _epic_of(row: dict) -> str | None:
    if row["milestone_number"] is not None:
        return f"m{row['milestone_number']}"
    if row["parent_number"] is not None:
        return f"i{row['parent_number']}"
    return None


def load(conn: psycopg.Connection, repo: Repo, api_url: str, now: datetime) -> StatusSnapshot:
    """Everything the status body shows, read in one go."""
    base = web_url(api_url, repo.full_name)
    details = {r["number"]: r for r in conn.execute(TASK_DETAILS, (repo.id,)).fetchall()}
    completed_by = {r["number"]: r["agent_id"] for r in conn.execute(COMPLETED_BY, (repo.id,)).fetchall()}
    tasks = []
    parents = set()
    for snap in claim_store.snapshots(conn, repo.id, repo.full_name):
        detail = details.get(snap.number)
        if detail is None:
            continue
        state = readiness.task_state(snap)
        holder = str(snap.holder) if snap.holder else completed_by.get(snap.number)
        epic = _epic_of(detail)
        if epic and epic.startswith("i"):
            parents.add(int(epic[1:]))
        tasks.append(TaskRow(
            number=snap.number, title=snap.title, state=state, url=f"{base}/issues/{snap.number}", epic=epic,
            estimate_hours=snap.estimate_hours, priority=snap.priority, holder=holder,
            closed_at=detail["closed_at"], blocked_by=tuple(r.number for r in snap.open_blockers),
        ))
    epics = [EpicRow(f"m{r['number']}", r["title"], f"{base}/milestone/{r['number']}")
             for r in conn.execute(MILESTONES, (repo.id,)).fetchall()]
    titles = {t.number: t.title for t in tasks}
    epics += [EpicRow(f"i{n}", titles.get(n, f"#{n}"), f"{base}/issues/{n}") for n in sorted(parents)]
    return StatusSnapshot(
        repo=repo.full_name, generated_at=now, tasks=tasks, epics=epics,
        agents=_agents(conn, repo.id), queues=_queues(conn, repo, base),
        progress=_progress(conn, repo.id, now), warnings=config_warnings(repo.config.gates),
    )


def _agents(conn: psycopg.Connection, repo_id: int) -> list[AgentRow]:
    claims_by_agent: dict[str, list[ClaimRow]] = {}
    for row in conn.execute(OPEN_CLAIMS, (repo_id,)).fetchall():
        claims_by_agent.setdefault(row["agent_id"], []).append(ClaimRow(row["number"], row["lease_expires_at"]))
    return [
        AgentRow(r["id"], tuple(claims_by_agent.get(r["id"], ())), r["last_activity_at"], r["tasks_done"],
                 float(r["hours_done"]))
        for r in conn.execute(AGENTS, (repo_id,)).fetchall()
    ]


QUEUE_STATES = {"queued": "queued", "updating": "updating", "waiting_checks": "waiting_checks",
                "merging": "merging", "failed": "failed"}


def _queues(conn: psycopg.Connection, repo, base: str) -> list[MergeQueue]:
    by_base: dict[str, list[QueueEntry]] = {}
    grouped = {r["pr"] for r in conn.execute(IN_GROUPS, (repo.id,)).fetchall()}
    for row in conn.execute(QUEUE, (repo.id,)).fetchall():
        entries = by_base.setdefault(row["base_ref"], [])
        state = "in_group" if row["pr_number"] in grouped else QUEUE_STATES.get(row["state"], "queued")
        entries.append(QueueEntry(
            position=len(entries) + 1, pr=row["pr_number"], title=row["title"] or "", author=row["author"] or "",
            state=state, queued_at=row["queued_at"], url=f"{base}/pull/{row['pr_number']}",
        ))
    config = repo.config.queue
    fallbacks = {r["base_ref"]: r["reason"] for r in conn.execute(QUEUE_FALLBACKS, (repo.id,)).fetchall()}
    return [MergeQueue(b, tuple(e), config.mode_text(fallbacks.get(b)) if config.mode == "groups" else "")
            for b, e in sorted(by_base.items())]


def _progress(conn: psycopg.Connection, repo_id: int, now: datetime) -> list[ProgressPoint]:
    rows = conn.execute(PROGRESS, (repo_id, now - PROGRESS_HISTORY)).fetchall()
    return [ProgressPoint(r["taken_at"], float(r["hours_done"]), float(r["hours_total"]), r["epic"] or None)
            for r in rows]


SNAPSHOT_TOTALS = """
SELECT coalesce(CASE WHEN milestone_number IS NOT NULL THEN 'm' || milestone_number
                     WHEN parent_number IS NOT NULL THEN 'i' || parent_number END, '') AS epic,
       count(*) AS tasks_total, count(*) FILTER (WHERE state = 'closed') AS tasks_done,
       coalesce(sum(estimate_hours), 0) AS hours_total,
       coalesce(sum(estimate_hours) FILTER (WHERE state = 'closed'), 0) AS hours_done
FROM tasks WHERE repo_id = %s AND is_task AND deleted_at IS NULL
GROUP BY ROLLUP (1)
"""
INSERT_SNAPSHOT = """
INSERT INTO progress_snapshots (repo_id, taken_at, epic, tasks_total, tasks_done, hours_total, hours_done)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""


def take_progress_snapshot(conn: psycopg.Connection, repo_id: int, at: datetime) -> int:
    """Record totals overall (epic '') and per epic: the history velocity and burndown come from."""
    count = 0
    for row in conn.execute(SNAPSHOT_TOTALS, (repo_id,)).fetchall():
        # ROLLUP's grand total (epic NULL) is stored as epic ''; the group of tasks without an
        # epic (also '') is part of that total and not stored on its own.
        if row["epic"] == "":
            continue
        conn.execute(INSERT_SNAPSHOT, (repo_id, at, row["epic"] or "", row["tasks_total"], row["tasks_done"],
                                       row["hours_total"], row["hours_done"]))
        count += 1
    return count
