"""Gates, I/O side: read a PR's exact state from GitHub, evaluate the gates, publish ``fleet/gates``.

Webhook handlers only *schedule* an evaluation (``app/queue/scheduling.py``: an RQ job, enqueued
after the delivery commits, at most one waiting per (repo, PR, head SHA)); ``evaluate`` runs in
that job. The merge queue reads the same snapshot through ``read_snapshot`` right before it merges.
"""
from __future__ import annotations

import time
from dataclasses import replace

import psycopg
from githubkit.exception import RequestFailed

from app.gates import store as gate_store
from app import db, runtime
from app.github import permissions
from app.tasks import pulls as pull_state
from app.tasks.agents import AgentId
from app.gates.rules import CheckResult, GateVerdict, LinkedTask, PullSnapshot, evaluate_gates, latest_reviews
from app.gates.check_run import render_check_run
from app.github.gateway import RepoGateway
from app.repos.registry import Repo
from app.tasks.refs import branch_task
from app.github.write_budget import WriteClass, writing
from app.github.models import CheckRun, PullRequest

# GitHub answers ``mergeable: null`` while it computes mergeability in the background: ask again
# after these pauses before treating the conflict gate as still waiting.
MERGEABLE_PAUSES = (0.1, 0.3, 1.0)
# --- reading a snapshot from GitHub ----------------------------------------------------------

def read_pull(gh: RepoGateway, number: int) -> dict | None:
    """The PR as GitHub has it now, waiting briefly while ``mergeable`` is still being computed;
    None when it does not exist."""
    for pause in (*MERGEABLE_PAUSES, None):
        try:
            raw = gh.pull(number)
        except RequestFailed as exc:
            if exc.response.status_code in (404, 410):
                return None
            raise
        if raw.get("state") != "open" or raw.get("merged") or raw.get("mergeable") is not None or pause is None:
            return raw
        time.sleep(pause)
    return raw  # pragma: no cover - the loop always returns


def read_checks(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, sha: str) -> tuple[CheckResult, ...]:
    """Every check run and commit status on ``sha``, from GitHub (a run that is still in progress
    is never seen by webhooks Fleet records, so the recorded rows alone could look green too
    early). The rows are recorded on the way."""
    results = []
    for raw in gh.check_runs(sha):
        run = CheckRun.model_validate(raw)
        pull_state.upsert_check_run(conn, repo.id, run)
        results.append(CheckResult(
            run.name, "check_run", run.status, run.conclusion, run.head_sha, run.html_url or run.details_url,
            run.app.slug if run.app else None, run.started_at, run.id,
        ))
    for status in gh.combined_status(sha):
        pull_state.upsert_status(conn, repo.id, sha, status["context"], status["state"], status.get("target_url"),
                                 status.get("id"), status.get("updated_at"))
        creator = (status.get("creator") or {}).get("login")
        results.append(CheckResult.from_status(
            status["context"], status["state"], sha, status.get("target_url"), id=status.get("id"), creator=creator,
        ))
    return tuple(results)


def reviewer_permissions(conn: psycopg.Connection, gh: RepoGateway, repo: Repo,
                         pr: PullSnapshot) -> tuple[tuple[str, str], ...]:
    """(login, permission) of every reviewer whose standing review the gates weigh: one cached
    lookup per distinct reviewer, none without reviews."""
    return tuple((login, permissions.permission(conn, gh, repo.id, login)) for login in sorted(latest_reviews(pr)))


# The linked tasks' state and open claim, from Fleet's own rows (no GitHub call).
LINKED_TASKS = """
SELECT t.number, t.state, c.agent_id, c.branch
FROM tasks t LEFT JOIN claims c ON c.repo_id = t.repo_id AND c.number = t.number AND c.released_at IS NULL
WHERE t.repo_id = %s AND t.number = ANY(%s)
ORDER BY t.number
"""


def _linked_task(row: dict) -> LinkedTask:
    holder = AgentId.parse(row["agent_id"]) if row["agent_id"] else None
    return LinkedTask(row["number"], "closed" if row["state"] == "closed" else "open",
                      holder.login if holder else None, holder.name if holder else None, row["branch"])


def with_linked_tasks(conn: psycopg.Connection, repo: Repo, pr: PullSnapshot) -> PullSnapshot:
    """``pr`` with its linked tasks' state and holders and the agent its head branch names."""
    if not pr.linked_tasks:
        return pr
    rows = conn.execute(LINKED_TASKS, (repo.id, list(pr.linked_tasks))).fetchall()
    states = tuple(_linked_task(row) for row in rows)
    link = branch_task(pr.head_ref, repo.config.tasks.branch_patterns)
    return replace(pr, task_states=states, branch_agent=link.agent if link else None)


def read_snapshot(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, number: int, *,
                  merge_base: bool = False) -> tuple[PullSnapshot | None, str | None]:
    """(snapshot, base tip) of the PR read from GitHub now; the base tip and the snapshot's
    ``merge_base_sha`` come from the compare API when ``merge_base`` (the queue needs them)."""
    raw = read_pull(gh, number)
    if raw is None:
        return None, None
    model = PullRequest.model_validate(raw)
    pull_state.upsert_pull(conn, repo.id, repo.full_name, model, repo.config)
    snapshot = PullSnapshot(
        repo=repo.full_name, number=model.number, head_sha=model.head.sha, base_ref=model.base.ref,
        head_ref=model.head.ref, author=model.user.login if model.user else "", title=model.title, body=model.body,
        draft=model.draft, state="open" if model.state == "open" else "closed",
        merged=bool(model.merged or model.merged_at), mergeable=model.mergeable,
        mergeable_state=model.mergeable_state or "unknown", labels=tuple(label.name for label in model.labels),
        linked_tasks=tuple(pull_state.linked_tasks(model, repo.full_name, repo.config)),
        changed_files=model.changed_files or 0, additions=model.additions or 0, deletions=model.deletions or 0,
        reviews=gate_store.reviews(conn, repo.id, number), merge_commit_sha=model.merge_commit_sha,
    )
    if snapshot.state != "open" or snapshot.merged:
        return snapshot, None
    snapshot = with_linked_tasks(conn, repo, snapshot)
    snapshot = replace(snapshot, checks=read_checks(conn, gh, repo, snapshot.head_sha),
                       reviewer_permissions=reviewer_permissions(conn, gh, repo, snapshot))
    if not merge_base:
        return snapshot, None
    comparison = gh.compare(snapshot.base_ref, snapshot.head_sha)
    base_tip = (comparison.get("base_commit") or {}).get("sha")
    merge_base_sha = (comparison.get("merge_base_commit") or {}).get("sha")
    return replace(snapshot, merge_base_sha=merge_base_sha), base_tip


# --- publishing fleet/gates ------------------------------------------------------------------

@writing(WriteClass.QUEUE)
def publish(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, pr: PullSnapshot, verdict: GateVerdict, *,
            force: bool = False, queue_place: tuple[int | None, int] | None = None) -> None:
    """Create or update ``fleet/gates`` on the head; no request at all when nothing changed.
    ``queue_place``: the PR's (position, queue length) when it is queued, shown in the summary.

    Serialised per (repo, head SHA) so two evaluations never create two runs.
    """
    position, length = queue_place or (None, None)
    fields = render_check_run(verdict, queue_position=position, queue_length=length)
    with db.advisory_lock(runtime.settings().database_url, f"fleet-gates:{repo.id}:{verdict.head_sha}"):
        known = gate_store.gate_run(conn, repo.id, verdict.head_sha)
        if known is not None and known.check_run_id is not None:
            if known.digest != fields.digest or force:
                gh.update_check_run(known.check_run_id, fields.update_payload())
            run_id = known.check_run_id
        else:
            run_id = gh.create_check_run(fields.create_payload())
        gate_store.store_gate_run(conn, repo.id, verdict.head_sha, pr.number, run_id, fields.digest,
                                   verdict.conclusion)


def evaluate(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, number: int, *,
             force: bool = False, queue_place: tuple[int | None, int] | None = None,
             ) -> tuple[PullSnapshot | None, GateVerdict | None]:
    """Read the PR, evaluate its gates on exactly its head and publish them."""
    pr, _ = read_snapshot(conn, gh, repo, number)
    if pr is None or pr.state != "open" or pr.merged:
        return pr, None
    verdict = evaluate_gates(pr, repo.config.gates)
    publish(conn, gh, repo, pr, verdict, force=force, queue_place=queue_place)
    return pr, verdict
