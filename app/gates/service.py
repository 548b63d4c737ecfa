"""Gates, I/O side: read a PR's exact state from GitHub, evaluate the gates, publish ``fleet/gates``.

Webhook handlers only *schedule* an evaluation (``app/queue/scheduling.py``: an RQ job, enqueued
after the delivery commits, at most one waiting per (repo, PR, head SHA)); ``evaluate`` runs in
that job. The merge queue reads the same snapshot through ``read_snapshot`` right before it merges.
"""
from __future__ import annotations

from dataclasses import replace

import psycopg
from githubkit.exception import RequestFailed

from app.gates import store as gate_store
from app import db, runtime
from app.github import permissions
from app.tasks import pulls as pull_state
from app.tasks.agents import AgentId
from app.gates.rules import CheckResult, GateVerdict, LinkedTask, PullSnapshot, evaluate_gates, latest_reviews
from app.gates.check_run import CheckRunFields, render_check_run
from app.github.gateway import RepoGateway
from app.repos.registry import Repo
from app.tasks.refs import branch_task
from app.github.write_budget import WriteClass, writing
from app.github.models import CheckRun, PullRequest

# --- reading a snapshot from GitHub ----------------------------------------------------------

def read_pull(gh: RepoGateway, number: int) -> dict | None:
    """The PR as GitHub has it now; None when it does not exist. ``mergeable`` may be null while
    GitHub computes it: nothing here waits for it (a worker that sleeps holds up every delivery
    behind it); ``evaluate`` leaves such a head to be evaluated again shortly."""
    try:
        return gh.pull(number)
    except RequestFailed as exc:
        if exc.response.status_code in (404, 410):
            return None
        raise


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
                  merge_base: bool = False, stop_if_mergeable_pending: bool = False,
                  ) -> tuple[PullSnapshot | None, str | None]:
    """(snapshot, base tip) of the PR read from GitHub now; the base tip and the snapshot's
    ``merge_base_sha`` come from the compare API when ``merge_base`` (the queue needs them).

    The queue (``merge_base``) does not need ``mergeable`` (GitHub recomputes it for every open
    PR after each merge, so the first read after one is usually null): a head that contains the
    base tip cannot conflict, and a head behind it is updated first, where GitHub answers 422 on
    a conflict."""
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
    if stop_if_mergeable_pending and snapshot.mergeable is None:
        return snapshot, None  # to be read again shortly: checks and statuses then, not twice
    snapshot = with_linked_tasks(conn, repo, snapshot)
    snapshot = replace(snapshot, checks=read_checks(conn, gh, repo, snapshot.head_sha),
                       reviewer_permissions=reviewer_permissions(conn, gh, repo, snapshot))
    if not merge_base:
        return snapshot, None
    comparison = gh.compare(snapshot.base_ref, snapshot.head_sha)
    base_tip = (comparison.get("base_commit") or {}).get("sha")
    merge_base_sha = (comparison.get("merge_base_commit") or {}).get("sha")
    mergeable = True if snapshot.mergeable is None else snapshot.mergeable
    return replace(snapshot, merge_base_sha=merge_base_sha, mergeable=mergeable), base_tip


# --- publishing fleet/gates ------------------------------------------------------------------

QUIET = "quiet:"


def needs_writing(known: gate_store.GateRun | None, verdict: GateVerdict, fields: CheckRunFields, *,
                  force: bool = False, quiet_success: bool = False) -> bool:
    """Whether ``fleet/gates`` must be written: one run per head, created once the verdict is
    conclusive, or once every check on the head has finished and the gates still wait (a required
    check that never came says so); while CI runs the PR already shows it. Updated only when
    what a reader sees changes (``CheckRunFields.digest``); a writer's ``/gates`` always writes."""
    if force:
        return True
    if known is not None and known.check_run_id is None and known.digest == QUIET + fields.digest:
        return not quiet_success  # recorded, not written (``publish``): written once no longer queued
    if known is None or known.check_run_id is None:
        ci_finished = bool(verdict.checks) and all(c.state != "waiting" for c in verdict.checks)
        return fields.status == "completed" or ci_finished
    return known.digest != fields.digest


@writing(WriteClass.QUEUE)
def publish(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, pr: PullSnapshot, verdict: GateVerdict, *,
            force: bool = False, queue_place: tuple[int | None, int] | None = None,
            quiet_success: bool = False) -> None:
    """Create or update ``fleet/gates`` on the head as ``needs_writing`` says; no request at all
    otherwise. ``queue_place``: the PR's (position, queue length) when it is queued, shown in the
    summary whenever the run is written (a move in the queue alone is not worth a write).
    ``quiet_success``: a PR queued in merge groups, where its group's checks decide and its own
    green run would only be an echo costing a write per task: a first run that would say success
    is recorded, not written (failures and waits still are; ``/gates`` always writes).

    Serialised per (repo, head SHA) so two evaluations never create two runs.
    """
    position, length = queue_place or (None, None)
    fields = render_check_run(verdict, queue_position=position, queue_length=length)
    with db.advisory_lock(runtime.settings().database_url, f"fleet-gates:{repo.id}:{verdict.head_sha}"):
        known = gate_store.gate_run(conn, repo.id, verdict.head_sha)
        run_id, digest = (known.check_run_id, known.digest) if known is not None else (None, None)
        quiet = quiet_success and not force and run_id is None and verdict.conclusion == "success"
        if quiet:
            digest = QUIET + fields.digest
        elif needs_writing(known, verdict, fields, force=force):
            if run_id is not None:
                gh.update_check_run(run_id, fields.update_payload())
            else:
                run_id = gh.create_check_run(fields.create_payload())
            digest = fields.digest
        gate_store.store_gate_run(conn, repo.id, verdict.head_sha, pr.number, run_id, digest, verdict.conclusion)


def recorded_verdict(conn: psycopg.Connection, gh: RepoGateway, repo: Repo,
                     number: int) -> tuple[PullSnapshot | None, GateVerdict | None]:
    """The gates evaluated on what webhooks recorded, without reading the PR from GitHub.

    Optimistic where the record can lag: ``mergeable`` (null in most payloads) counts as no
    conflict, and a check run still in progress is not recorded at all. So a waiting verdict
    here is certain to be waiting, and anything else is only a reason to read GitHub."""
    pr = gate_store.pull_snapshot(conn, repo.id, repo.full_name, number)
    if pr is None or pr.state != "open" or pr.merged:
        return pr, None
    pr = with_linked_tasks(conn, repo, replace(pr, mergeable=True if pr.mergeable is None else pr.mergeable))
    pr = replace(pr, reviewer_permissions=reviewer_permissions(conn, gh, repo, pr))
    return pr, evaluate_gates(pr, repo.config.gates)


def _worth_reading(conn: psycopg.Connection, repo: Repo, verdict: GateVerdict, quiet_success: bool) -> bool:
    """A recorded verdict is worth confirming on GitHub only when it could lead to a write."""
    known = gate_store.gate_run(conn, repo.id, verdict.head_sha)
    return needs_writing(known, verdict, render_check_run(verdict), quiet_success=quiet_success)


def evaluate(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, number: int, *,
             force: bool = False, fresh: bool = False, queue_place: tuple[int | None, int] | None = None,
             mergeable_pending_ok: bool = True, quiet_success: bool = False,
             ) -> tuple[PullSnapshot | None, GateVerdict | None, bool]:
    """Evaluate the PR's gates and publish them; returns (PR, verdict, mergeability pending).
    Decided first on what webhooks recorded (no GitHub call): when that is still waiting, or
    would publish nothing new, it ends there. Otherwise (and always when ``force`` or ``fresh``)
    the PR is read from GitHub and the gates evaluated and published on exactly the head just read.

    When GitHub is still computing ``mergeable`` for that head, nothing is decided or published
    (the verdict would only be "waiting", a write to be corrected seconds later) and the third
    value is True: the caller evaluates again shortly. ``mergeable_pending_ok`` False (the last
    of those tries, or a forced run) evaluates anyway, with the conflict gate waiting."""
    if not (force or fresh):
        recorded, verdict = recorded_verdict(conn, gh, repo, number)
        if recorded is not None and verdict is not None and not _worth_reading(conn, repo, verdict, quiet_success):
            gate_store.note_waiting(conn, repo.id, verdict.head_sha, number)
            return recorded, None, False
    wait_for_mergeable = mergeable_pending_ok and not force
    pr, _ = read_snapshot(conn, gh, repo, number, stop_if_mergeable_pending=wait_for_mergeable)
    if pr is None or pr.state != "open" or pr.merged:
        return pr, None, False
    if pr.mergeable is None and wait_for_mergeable:
        return pr, None, True
    verdict = evaluate_gates(pr, repo.config.gates)
    publish(conn, gh, repo, pr, verdict, force=force, queue_place=queue_place, quiet_success=quiet_success)
    return pr, verdict, False
