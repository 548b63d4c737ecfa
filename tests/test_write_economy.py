"""GitHub's write budget is the fleet's limit (issue 13): a task on the happy path (claim →
branch → PR → green CI → ``/queue`` → merged → task closed) costs Fleet at most 6 writes and 20
calls, and nothing is read from GitHub while the queue waits for CI.

Counted from the simulator's own request log: every request Fleet made as its installation,
installation tokens apart (they are not content). The status issue's edits are shared by every
task of the repository and are counted apart (``status.min_interval`` coalesces them).
"""
from __future__ import annotations

import pytest

from jobs import merge_queue as queue_jobs
from tests.conftest import drain
from tests.test_e2e_merge_queue import run_ci

WRITE_LIMIT = 6
CALL_LIMIT = 20


def fleet_requests(world, since: int) -> list:
    return [q for q in list(world.sim.requests)[since:]
            if q.identity.startswith("installation:") and "/access_tokens" not in q.path]


def split(world, requests: list, status_issue: int | None) -> tuple[list, list, list]:
    """(writes, reads, status-issue edits)."""
    status_path = f"/repos/{world.repo}/issues/{status_issue}"
    edits = [q for q in requests if q.method == "PATCH" and q.path == status_path]
    writes = [q for q in requests if q.method != "GET" and q not in edits]
    return writes, [q for q in requests if q.method == "GET"], edits


def status_issue_number(world, db_conn) -> int | None:
    row = db_conn.execute("SELECT issue_number FROM status_issues").fetchone()
    return row["issue_number"] if row else None


def describe(requests: list) -> str:
    return "\n".join(f"{q.method} {q.path} -> {q.status}" for q in requests)


def happy_path(w, claim_by: str, name: str) -> tuple[int, int, list]:
    """One task from claim to merge; (task, PR, Fleet's GET requests while the queue waited for CI)."""
    sim, repo = w.sim, w.repo
    n = sim.open_issue(repo, name.title())
    w.settle()
    if claim_by == "assign":
        w.assign("alice", n)
    else:
        sim.comment(repo, n, "/claim", author="alice")
    w.settle()
    issue = sim.issue(repo, n)
    assert [a["login"] for a in issue["assignees"]] == ["alice"]
    assert "fleet:claimed" in {label["name"] for label in issue["labels"]}  # the verdict

    branch = f"alice/{n}-{name}"
    sim.push(repo, branch, {f"{name}.py": "print('done')\n"}, author="alice")
    pr = sim.open_pr(repo, branch, name.title(), body=f"Closes #{n}", author="alice")
    w.settle()
    sim.comment(repo, pr, "/queue", author="alice")
    w.settle()

    # Waiting for CI: webhooks and the safety poll read nothing from GitHub.
    waiting_from = len(sim.requests)
    for _ in range(3):
        queue_jobs.poll_queues()
        drain()
    w.settle()
    reads_while_waiting = [q for q in fleet_requests(w, waiting_from) if q.method == "GET"]

    assert run_ci(w) == 1
    w.settle()
    assert sim.pull(repo, pr)["merged"] is True
    assert sim.issue(repo, n)["state"] == "closed"
    return n, pr, reads_while_waiting


@pytest.mark.parametrize("claim_by", ["assign", "comment"])
def test_a_happy_path_task_costs_at_most_six_writes_and_twenty_calls(world, db_conn, claim_by):
    """Measured on the repository's second task: the first one also pays what a repository pays
    once (creating the `fleet:claimed` label, learning the agent's permission)."""
    world.sim.add_user("alice", "write")
    happy_path(world, claim_by, "warmup")
    start = len(world.sim.requests)
    _, _, reads_while_waiting = happy_path(world, claim_by, "parser")
    assert reads_while_waiting == [], describe(reads_while_waiting)

    made = fleet_requests(world, start)
    writes, reads, edits = split(world, made, status_issue_number(world, db_conn))
    print(f"{claim_by}: {len(writes)} writes, {len(made) - len(edits)} calls, {len(edits)} status edits\n{describe(made)}")
    assert len(writes) <= WRITE_LIMIT, f"{len(writes)} writes for one merged task:\n{describe(writes)}"
    assert len(made) - len(edits) <= CALL_LIMIT, f"{len(made)} calls for one merged task:\n{describe(made)}"
    assert len(edits) <= 1, describe(edits)
    # No success is announced in a comment: a reaction, a label or nothing.
    comments = [q for q in writes if q.method == "POST" and q.path.endswith("/comments")]
    assert comments == [], describe(comments)


def test_a_same_second_event_that_says_the_same_is_no_tie(world, db_conn):
    """Two issue events in one second are ordered only by asking GitHub, unless they agree: Fleet's
    own label write coming back as a webhook (already recorded) costs no read."""
    from app.github.models import Issue
    from app.tasks import store as task_state

    n = world.sim.open_issue(world.repo, "Same second")
    world.settle()
    repo_id = db_conn.execute("SELECT id FROM repositories WHERE full_name = %s", (world.repo,)).fetchone()["id"]
    current = Issue.model_validate(world.sim.issue(world.repo, n))
    assert task_state.is_tie(db_conn, repo_id, current) is False  # what is stored, in the same second
    relabelled = Issue.model_validate({**world.sim.issue(world.repo, n), "labels": [{"name": "bug"}]})
    assert task_state.is_tie(db_conn, repo_id, relabelled) is True  # the same second, another content
    later = Issue.model_validate({**world.sim.issue(world.repo, n), "updated_at": "2099-01-01T00:00:00Z"})
    assert task_state.is_tie(db_conn, repo_id, later) is False  # newer: applied, no question


def test_whether_an_agent_can_be_assigned_is_asked_once_but_a_no_every_time(world, db_conn):
    """`/claim` and `/next` ask GitHub whether the claimant can be assigned: a yes is remembered
    (one call per agent, not per claim), a no is not (a new collaborator can claim at once)."""
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    first, second, third = (sim.open_issue(repo, title) for title in ("One", "Two", "Three"))
    world.settle()

    def asked_since(start: int) -> int:
        return sum(1 for q in fleet_requests(world, start) if q.operation_id == "issues/check-user-can-be-assigned")

    start = len(sim.requests)
    for command, number in (("/claim", first), ("/release", first), ("/claim", second)):
        sim.comment(repo, number, command, author="alice")
        world.settle()
    assert [a["login"] for a in sim.issue(repo, second)["assignees"]] == ["alice"]
    assert asked_since(start) == 1

    start = len(sim.requests)
    for _ in range(2):
        sim.comment(repo, third, "/claim", author="mallory")  # not a collaborator: never assignable
        world.settle()
    assert sim.issue(repo, third)["assignees"] == []
    assert asked_since(start) == 2
