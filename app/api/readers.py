"""The read API's response bodies, built from a connection: the ``read_*`` functions, shared
with the dashboard, and the JSON formatting of times, numbers and links.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
from flask import current_app

from app.api import queries as q
from app.tasks.agents import AgentId
from app.github.client import github_web_url
from app.tasks.readiness import Dependency, TaskSnapshot, task_state
from app.status.sections import burndown_series
from app.tasks.refs import TaskRef
from app.status.velocity import DEFAULT_WINDOW, Forecast, ProgressPoint, forecast
from app.api.params import TASK_STATES, ApiError, page_window, paginate
from app.queue.store import PRIORITY_NAME


# /api/evidence counts its feed only this far per request (the tables grow with every delivery).
EVIDENCE_COUNT_CAP = 10_000
BURNDOWN_DAYS = 30


# --- formatting ----------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` (second precision), or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def num(value: Decimal | float | int | None) -> float | None:
    return None if value is None else round(float(value), 2)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _issue_url(repo: str, number: int) -> str:
    return f"{github_web_url(current_app.config['FLEET_SETTINGS'].github_api_url)}/{repo}/issues/{number}"


def _pull_url(repo: str, number: int) -> str:
    return f"{github_web_url(current_app.config['FLEET_SETTINGS'].github_api_url)}/{repo}/pull/{number}"


# --- readers (shared with the dashboard) ---------------------------------------------------------


def read_repos(conn: psycopg.Connection, auth: bool) -> list[dict[str, Any]]:
    return [
        {
            "full_name": r["full_name"],
            "private": r["private"],
            "default_branch": r["default_branch"],
            "installation_id": r["installation_id"],
            "account": r["account_login"],
            "config": "error" if r["config_error"] else ("ok" if r["has_config"] else "default"),
            "config_error": r["config_error"],
            "tasks_total": r["tasks_total"],
            "tasks_done": r["tasks_done"],
            "synced_at": iso(r["synced_at"]),
        }
        for r in q.rows(conn, q.REPOS, auth=auth)
    ]


def require_repo(conn: psycopg.Connection, auth: bool, repo: str) -> str:
    """The repository's stored spelling, or a 404 (also for a private one the caller may not see)."""
    found = q.rows(conn, q.REPOS, auth=auth, repo=repo)
    if not found:
        raise ApiError(404, "not_found", f"no repository {repo} is known to Fleet")
    return found[0]["full_name"]


def _snapshot(row: dict[str, Any], deps: list[dict[str, Any]]) -> TaskSnapshot:
    return TaskSnapshot(
        repo=row["repo"], number=row["number"], title=row["title"], state=row["state"],
        labels=tuple(row["labels"]), assignees=tuple(row["assignees"]),
        holder=AgentId.parse(row["holder"]) if row["holder"] else None,
        dependencies=tuple(
            Dependency(TaskRef.of(d["dep_full_name"], d["dep_number"]),
                       d["dep_state"] if d["dep_state"] in ("open", "closed") else "unknown")
            for d in deps
        ),
        open_prs=tuple(row["open_prs"]), queued=row["queued"], priority=row["priority"],
        estimate_hours=num(row["estimate_hours"]), is_task=row["is_task"],
    )


def _blocker_ref(dep: dict[str, Any], repo: str) -> str:
    return TaskRef.of(dep["dep_full_name"], dep["dep_number"]).short(repo) if dep["visible"] else "(private)"


def load_tasks(conn: psycopg.Connection, auth: bool, **filters: Any) -> list[dict[str, Any]]:
    """Tasks as API objects, with their computed state; ``state`` filters on it."""
    state_filter = filters.pop("state", None)
    rows = q.rows(conn, q.TASKS, auth=auth, **filters)
    if not rows:
        return []
    deps_by_task: dict[tuple[int, int], list[dict[str, Any]]] = {}
    numbers = [r["number"] for r in rows] if filters.get("number") is not None else None
    for d in q.rows(conn, q.DEPENDENCIES, auth=auth, repo_ids=sorted({r["repo_id"] for r in rows}),
                    numbers=numbers):
        deps_by_task.setdefault((d["repo_id"], d["number"]), []).append(d)
    out = []
    for row in rows:
        deps = deps_by_task.get((row["repo_id"], row["number"]), [])
        snap = _snapshot(row, deps)
        state = task_state(snap)
        if state_filter is not None and state != state_filter:
            continue
        open_deps = [d for d in deps if d["dep_state"] != "closed"
                     and not (d["dep_full_name"].lower() == row["repo"].lower() and d["dep_number"] == row["number"])]
        out.append({
            "repo": row["repo"],
            "number": row["number"],
            "title": row["title"],
            "state": state,
            "issue_state": row["state"],
            "url": _issue_url(row["repo"], row["number"]),
            "labels": list(row["labels"]),
            "assignees": list(row["assignees"]),
            "holder": row["holder"],
            "epic": ({"number": row["milestone_number"], "title": row["milestone_title"]}
                     if row["milestone_number"] is not None else None),
            "estimate_hours": num(row["estimate_hours"]),
            "priority": row["priority"],
            "progress": row["progress"],
            "blocked_by": sorted({_blocker_ref(d, row["repo"]) for d in open_deps}),
            "pull_requests": list(row["open_prs"]),
            "created_at": iso(row["gh_created_at"]),
            "updated_at": iso(row["gh_updated_at"]),
            "closed_at": iso(row["closed_at"]),
        })
    return out


def ready_order(tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order ``/next`` hands ready work out: most urgent priority first, then repository and number."""
    return sorted(tasks, key=lambda t: (t["priority"], t["repo"].lower(), t["number"]))


def read_task_detail(conn: psycopg.Connection, auth: bool, repo: str, number: int) -> dict[str, Any]:
    repo = require_repo(conn, auth, repo)
    found = load_tasks(conn, auth, repo=repo, number=number)
    if not found:
        raise ApiError(404, "not_found", f"no task {repo}#{number} is known to Fleet")
    task = found[0]
    repo_id = q.rows(conn, q.TASKS, auth=auth, repo=repo, number=number)[0]["repo_id"]
    ids = {"repo_id": repo_id, "number": number}

    deps = q.rows(conn, q.DEPENDENCIES, auth=auth, repo_ids=[repo_id], numbers=[number])
    dep_states: dict[tuple[str, int], str] = {}
    for d in deps:
        if d["visible"] and d["dep_state"] is not None:
            # The repository the reference resolved to (a former name resolves to its new one).
            sub = load_tasks(conn, auth, repo=d["dep_resolved_repo"], number=d["dep_number"])
            if sub:
                dep_states[(d["dep_full_name"].lower(), d["dep_number"])] = sub[0]["state"]
    task["dependencies"] = [
        {
            "ref": _blocker_ref(d, repo),
            "repo": d["dep_full_name"] if d["visible"] else None,
            "number": d["dep_number"] if d["visible"] else None,
            "title": d["dep_title"] if d["visible"] else None,
            "issue_state": (d["dep_state"] or "unknown") if d["visible"] else "unknown",
            "state": dep_states.get((d["dep_full_name"].lower(), d["dep_number"])),
            "source": d["source"],
        }
        for d in deps
    ]
    task["dependents"] = [
        {"ref": TaskRef.of(r["repo"], r["number"]).short(repo), "repo": r["repo"], "number": r["number"],
         "title": r["title"], "issue_state": r["state"]}
        for r in q.rows(conn, q.DEPENDENTS, auth=auth, repo=repo, number=number)
    ]
    task["claims"] = [
        {
            "agent": c["agent_id"], "login": c["login"], "claimed_by": c["claimed_by"],
            "open": c["released_at"] is None,
            "claimed_at": iso(c["claimed_at"]), "last_activity_at": iso(c["last_activity_at"]),
            "lease_expires_at": iso(c["lease_expires_at"]), "warned_at": iso(c["warned_at"]),
            "released_at": iso(c["released_at"]), "release_reason": c["release_reason"],
            "branch": c["branch"], "head_sha": c["head_sha"], "pr_number": c["pr_number"],
            "progress": c["progress"], "progress_note": c["progress_note"],
        }
        for c in q.rows(conn, q.CLAIM_HISTORY, **ids)
    ]
    task["branches"] = [
        {"name": b["name"], "head_sha": b["head_sha"], "agent": b["agent_id"], "pushed_by": b["pushed_by"],
         "pushed_at": iso(b["pushed_at"]), "deleted": b["deleted_at"] is not None}
        for b in q.rows(conn, q.BRANCHES, **ids)
    ]
    pulls = q.rows(conn, q.PULLS_FOR_TASK, **ids)
    shas = sorted({p["head_sha"] for p in pulls if p["head_sha"]})
    checks: dict[str, list[dict[str, Any]]] = {}
    for c in q.rows(conn, q.CHECKS_FOR_SHAS, repo_id=repo_id, shas=shas):
        checks.setdefault(c["head_sha"], []).append({
            "name": c["name"], "status": c["status"], "conclusion": c["conclusion"], "app": c["app_slug"],
            "url": c["url"], "started_at": iso(c["started_at"]), "completed_at": iso(c["completed_at"]),
        })
    statuses: dict[str, list[dict[str, Any]]] = {}
    for s in q.rows(conn, q.STATUSES_FOR_SHAS, repo_id=repo_id, shas=shas):
        statuses.setdefault(s["sha"], []).append({
            "context": s["context"], "state": s["state"], "target_url": s["target_url"],
            "updated_at": iso(s["gh_updated_at"]),
        })
    reviews: dict[int, list[dict[str, Any]]] = {}
    for r in q.rows(conn, q.REVIEWS_FOR_PULLS, repo_id=repo_id, numbers=[p["number"] for p in pulls]):
        reviews.setdefault(r["pr_number"], []).append({
            "reviewer": r["reviewer"], "state": r["state"], "commit_id": r["commit_id"],
            "submitted_at": iso(r["submitted_at"]),
        })
    task["pull_requests"] = [
        {
            "number": p["number"], "title": p["title"], "url": _pull_url(repo, p["number"]),
            "state": p["state"], "draft": p["draft"], "merged": p["merged"], "merged_at": iso(p["merged_at"]),
            "author": p["author"], "head_ref": p["head_ref"], "head_sha": p["head_sha"], "base_ref": p["base_ref"],
            "mergeable": p["mergeable"], "mergeable_state": p["mergeable_state"],
            "checks": checks.get(p["head_sha"] or "", []), "statuses": statuses.get(p["head_sha"] or "", []),
            "reviews": reviews.get(p["number"], []),
            "created_at": iso(p["gh_created_at"]), "updated_at": iso(p["gh_updated_at"]),
            "closed_at": iso(p["closed_at"]),
        }
        for p in pulls
    ]
    targets = [f"#{number}", *(f"#{p['number']}" for p in pulls)]
    task["evidence"] = [
        _action_json({**e, "repo": repo})
        for e in q.rows(conn, q.EVIDENCE_FOR_TARGETS, repo_id=repo_id, repo=repo, targets=targets)
    ]
    return task


def _action_json(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "action", "id": str(e["id"]), "at": iso(e["at"]), "repo": e["repo"], "action": e["action"],
        "target": e["target"], "outcome": e["outcome"], "status_code": e["status_code"],
        "delivery_id": e["delivery_id"], "job_id": e["job_id"], "detail": e["detail"] or {},
    }


def _delivery_json(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "delivery", "id": d["id"], "at": iso(d["at"]), "repo": d["repo"], "event": d["event"],
        "action": d["action"], "outcome": d["outcome"], "attempts": d["attempts"], "error": d["error"],
        "started_at": iso(d["started_at"]), "processed_at": iso(d["processed_at"]),
    }


def read_evidence(conn: psycopg.Connection, auth: bool, params: dict[str, Any]) -> dict[str, Any]:
    """One page of the feed. ``total`` is counted up to EVIDENCE_COUNT_CAP (a bigger feed says at
    least that many); ``next`` is exact either way: one row more than the page is read."""
    limit, offset = page_window(params)
    filters = {"repo": params.get("repo"), "kind": params.get("kind")}
    total = q.rows(conn, q.EVIDENCE_COUNT, auth=auth, cap=EVIDENCE_COUNT_CAP, **filters)[0]["n"]
    rows = q.rows(conn, q.EVIDENCE, auth=auth, limit=limit + 1, offset=offset, **filters)
    items = [_action_json(r) if r["kind"] == "action" else _delivery_json(r) for r in rows[:limit]]
    # Past the cap the rows read show how many there are at least (never more than exist).
    return paginate(items, params, total=max(total, offset + len(rows)) if rows else total)


def read_deliveries(conn: psycopg.Connection, auth: bool, params: dict[str, Any]) -> dict[str, Any]:
    """Stored webhook deliveries, optionally of one status and repository, newest first."""
    limit, offset = page_window(params)
    filters = {"repo": params.get("repo"), "status": params.get("status")}
    total = q.rows(conn, q.DELIVERIES_COUNT, auth=auth, **filters)[0]["n"]
    items = [
        {
            "id": d["id"], "repo": d["repo"], "event": d["event"], "action": d["action"], "status": d["status"],
            "attempts": d["attempts"], "error": d["error"], "received_at": iso(d["received_at"]),
            "started_at": iso(d["started_at"]), "processed_at": iso(d["processed_at"]),
            "parked_at": iso(d["parked_at"]),
        }
        for d in q.rows(conn, q.DELIVERIES, auth=auth, limit=limit, offset=offset, **filters)
    ]
    return paginate(items, params, total=total)


def read_agents(conn: psycopg.Connection, auth: bool) -> list[dict[str, Any]]:
    claims: dict[str, list[dict[str, Any]]] = {}
    for c in q.rows(conn, q.OPEN_CLAIMS, auth=auth):
        claims.setdefault(c["agent_id"], []).append({
            "repo": c["repo"], "number": c["number"], "title": c["title"], "url": _issue_url(c["repo"], c["number"]),
            "claimed_at": iso(c["claimed_at"]), "last_activity_at": iso(c["last_activity_at"]),
            "lease_expires_at": iso(c["lease_expires_at"]), "warned": c["warned_at"] is not None,
            "branch": c["branch"], "pr_number": c["pr_number"], "progress": c["progress"],
            "progress_note": c["progress_note"],
        })
    return [
        {
            "id": a["id"], "login": a["login"], "name": a["name"], "type": a["user_type"],
            "first_seen_at": iso(a["first_seen_at"]), "last_seen_at": iso(a["last_seen_at"]),
            "last_activity_at": iso(a["last_activity_at"]),
            "claims_total": a["claims_total"], "claims_completed": a["claims_completed"],
            "open_claims": claims.get(a["id"], []),
        }
        for a in q.rows(conn, q.AGENTS, auth=auth)
    ]


def _velocity_json(fc: Forecast) -> dict[str, Any]:
    v = fc.velocity
    return {
        "hours_per_day": round(v.hours_per_day, 2),
        "ok": v.ok,
        "basis": v.basis,
        "snapshots": v.snapshots,
        "from": iso(v.start.at) if v.start else None,
        "to": iso(v.end.at) if v.end else None,
    }


def _forecast_json(fc: Forecast) -> dict[str, Any]:
    return {
        "hours_remaining": round(fc.remaining_hours, 2),
        "velocity": _velocity_json(fc),
        "eta": iso(fc.eta),
        "days_left": round(fc.days_left, 2) if fc.days_left is not None else None,
        "eta_reason": fc.reason,
    }


def _totals(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    hours_total = sum(t["estimate_hours"] or 0 for t in tasks)
    hours_done = sum(t["estimate_hours"] or 0 for t in tasks if t["state"] == "done")
    by_state = Counter(t["state"] for t in tasks)
    return {
        "tasks_total": len(tasks),
        "tasks_done": by_state["done"],
        "hours_total": round(hours_total, 2),
        "hours_done": round(hours_done, 2),
        "by_state": {s: by_state[s] for s in TASK_STATES},
    }


def read_progress_summary(conn: psycopg.Connection, auth: bool, repo: str | None = None,
                          now: datetime | None = None) -> dict[str, Any]:
    """Hours done/total per repository and epic, with velocity and ETA from progress snapshots."""
    now = now or now_utc()
    repos = read_repos(conn, auth)
    if repo is not None:
        repos = [r for r in repos if r["full_name"].lower() == repo.lower()]
    tasks = load_tasks(conn, auth, repo=repo)
    repo_ids = {r["full_name"]: rid for r, rid in _repo_ids(conn, auth, repos)}
    since = now - max(DEFAULT_WINDOW, timedelta(days=BURNDOWN_DAYS)) - timedelta(days=1)
    points: dict[int, list[ProgressPoint]] = {}
    for s in q.rows(conn, q.SNAPSHOTS, repo_ids=list(repo_ids.values()), since=since):
        points.setdefault(s["repo_id"], []).append(
            ProgressPoint(s["taken_at"], float(s["hours_done"]), float(s["hours_total"]), s["epic"] or None))
    out = []
    for r in repos:
        mine = [t for t in tasks if t["repo"] == r["full_name"]]
        pts = points.get(repo_ids[r["full_name"]], [])
        totals = _totals(mine)
        overall = forecast([p for p in pts if p.epic is None], totals["hours_total"] - totals["hours_done"], now)
        epics: dict[int, list[dict[str, Any]]] = {}
        titles: dict[int, str] = {}
        for t in mine:
            if t["epic"] is not None:
                epics.setdefault(t["epic"]["number"], []).append(t)
                titles[t["epic"]["number"]] = t["epic"]["title"] or f"Milestone {t['epic']['number']}"
        epic_rows = []
        for number in sorted(epics):
            et = _totals(epics[number])
            fc = forecast([p for p in pts if p.epic == f"m{number}"], et["hours_total"] - et["hours_done"], now)
            epic_rows.append({"number": number, "title": titles[number], **et, **_forecast_json(fc)})
        burndown = [
            {"date": day.isoformat(), "hours_done": round(done, 2), "hours_total": round(total, 2),
             "hours_remaining": round(max(0.0, total - done), 2)}
            for day, done, total in burndown_series(pts, now.date(), BURNDOWN_DAYS)
        ]
        out.append({"repo": r["full_name"], **totals, **_forecast_json(overall), "epics": epic_rows,
                    "burndown": burndown})
    return {"generated_at": iso(now), "totals": _totals(tasks), "repos": out}


def _repo_ids(conn: psycopg.Connection, auth: bool, repos: list[dict[str, Any]]) -> list[tuple[dict, int]]:
    ids = {row["full_name"]: row["id"] for row in q.rows(conn, q.REPOS, auth=auth)}
    return [(r, ids[r["full_name"]]) for r in repos if r["full_name"] in ids]


def read_progress_agents(conn: psycopg.Connection, auth: bool, now: datetime | None = None) -> dict[str, Any]:
    """Per agent: hours done, hours held, velocity over the last week and the ETA for what it holds.

    Velocity uses ``app/status/velocity.py`` over the agent's cumulative completed hours (one point per
    completion, one at its first claim and one now, so idle time counts).
    """
    now = now or now_utc()
    agents = read_agents(conn, auth)
    completions: dict[str, list[dict[str, Any]]] = {}
    for c in q.rows(conn, q.AGENT_COMPLETIONS, auth=auth):
        completions.setdefault(c["agent_id"], []).append(c)
    held_hours: dict[tuple[str, int], float] = {
        (t["repo"], t["number"]): t["estimate_hours"] or 0.0 for t in load_tasks(conn, auth) if t["holder"]
    }
    out = []
    for a in agents:
        done = completions.get(a["id"], [])
        first = min([_parse_iso(a["first_seen_at"])] + [c["released_at"] for c in done if c["released_at"]])
        cumulative, pts = 0.0, [ProgressPoint(first, 0.0, 0.0)]
        for c in done:
            cumulative += float(c["hours"])
            pts.append(ProgressPoint(c["released_at"], cumulative, cumulative))
        pts.append(ProgressPoint(now, cumulative, cumulative))
        in_progress = sum(held_hours.get((c["repo"], c["number"]), 0.0) for c in a["open_claims"])
        fc = forecast(pts, in_progress, now)
        out.append({
            "agent": a["id"], "login": a["login"], "name": a["name"],
            "tasks_done": len(done), "hours_done": round(cumulative, 2),
            "open_claims": len(a["open_claims"]), "hours_in_progress": round(in_progress, 2),
            "last_activity_at": a["last_activity_at"], **_forecast_json(fc),
        })
    return {"generated_at": iso(now), "agents": out}


def _parse_iso(value: str | None) -> datetime:
    if value is None:
        return now_utc()
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def read_merge_queue(conn: psycopg.Connection, auth: bool, repo: str | None = None, base: str | None = None,
                     now: datetime | None = None) -> list[dict[str, Any]]:
    """Active entries per (repository, base branch), in merge order (the in-flight entry first)."""
    now = now or now_utc()
    queues: dict[tuple[str, str], dict[str, Any]] = {}
    for e in q.rows(conn, q.MERGE_QUEUE, auth=auth, repo=repo):
        if base is not None and e["base_ref"] != base:
            continue
        key = (e["repo"], e["base_ref"])
        queue = queues.setdefault(key, {"repo": e["repo"], "base": e["base_ref"], "in_flight": None, "entries": []})
        in_flight = e["state"] != "queued"
        if in_flight and queue["in_flight"] is None:
            queue["in_flight"] = e["pr_number"]
        queue["entries"].append({
            "position": len(queue["entries"]) + 1,
            "pr": e["pr_number"], "title": e["title"], "author": e["author"],
            "url": _pull_url(e["repo"], e["pr_number"]),
            "tasks": list(e["linked_tasks"] or []),
            "state": e["state"], "in_flight": in_flight,
            "priority": PRIORITY_NAME.get(e["priority"], str(e["priority"])),
            "queued_by": e["queued_by"], "queued_at": iso(e["queued_at"]), "started_at": iso(e["started_at"]),
            "head_sha": e["head_sha"], "attempts": e["attempts"],
            "wait_seconds": max(0, int((now - e["queued_at"]).total_seconds())),
        })
    return list(queues.values())
