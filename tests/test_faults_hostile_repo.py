"""Fault injection: a hostile repository cannot stall another installation.

Installation A's repository sends everything the security review found could stall a worker: a
PR body of ``"Closes" + 60,000 spaces + "x"`` (84.5 s in the closing-keyword pattern, several
times per event), a branch matching the backtracking pattern its own config sets
(``^(?P<number>(\\d+)+)x$``: 2.3 s on 26 characters, ×4 per two more), and an alias-bomb
``.github/fleet.yml``. Right behind them, an agent claims a task in installation B's repository.
With one worker, B's claim verdict must be applied within a generous bound (it took over 80 s
before the fix), and A's repository must end in a sane state.
"""
from __future__ import annotations

import time

from app.repos import registry as repositories
from app.repos.config import parse_repo_config
from tests.conftest import drain

HOSTILE_REPO = "evil-corp/stall"
BACKTRACKING = r"^(?P<number>(\d+)+)x$"
HOSTILE_BODY = "Closes" + " " * 60000 + "x"
ALIAS_BOMB = "tasks:\n  exclude_labels: [&s " + "x" * 8000 + ", " + ", ".join(["*s"] * 2000) + "]\n"
VERDICT_BOUND_SECONDS = 10


def claim_holder(db_conn, repo_full_name: str, number: int) -> str | None:
    row = db_conn.execute(
        "SELECT c.agent_id FROM claims c JOIN repositories r ON r.id = c.repo_id "
        "WHERE lower(r.full_name) = lower(%s) AND c.number = %s AND c.released_at IS NULL",
        (repo_full_name, number)).fetchone()
    return row["agent_id"] if row else None


def test_a_hostile_repository_cannot_delay_another_installations_claim(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.add_user("mallory", "write")
    sim.create_repo(HOSTILE_REPO)
    sim.install([HOSTILE_REPO])
    sim.set_file(HOSTILE_REPO, ".github/fleet.yml", f"tasks:\n  branch_patterns: ['{BACKTRACKING}']\n")
    task = sim.open_issue(world.repo, "B's task")
    world.settle()

    # Installation A: the hostile events, queued ahead of B's claim and not processed yet.
    branch = "1" * 26
    sim.push(HOSTILE_REPO, branch, {"src/a.txt": "a"}, author="mallory")
    sim.open_pr(HOSTILE_REPO, branch, "Hostile", body=HOSTILE_BODY, author="mallory")
    sim.set_file(HOSTILE_REPO, ".github/fleet.yml", ALIAS_BOMB, author="mallory")
    assert sim.wait_idle(timeout=30)

    # Installation B: an agent claims a task; one worker works through the queue in order.
    started = time.monotonic()
    world.assign("alice", task)
    assert sim.wait_idle(timeout=30)
    while claim_holder(db_conn, world.repo, task) is None:
        assert drain(max_jobs=1) == 1, "the queue ran dry before B's claim was decided"
        assert time.monotonic() - started < 120
    latency = time.monotonic() - started
    print(f"\nB's claim verdict applied {latency:.2f} s after the assignment (one worker)")
    assert latency < VERDICT_BOUND_SECONDS
    world.settle()

    assert claim_holder(db_conn, world.repo, task) == "alice"
    assert [a["login"] for a in sim.issue(world.repo, task)["assignees"]] == ["alice"]
    # A keeps its last good config (the RE2-safe pattern) and is told why the bomb was refused.
    hostile = repositories.by_name(db_conn, HOSTILE_REPO)
    assert hostile.config.tasks.branch_patterns == (BACKTRACKING,)
    assert hostile.config_error == ".github/fleet.yml: aliases are not allowed (line 2)"
    assert hostile.config == parse_repo_config(f"tasks:\n  branch_patterns: ['{BACKTRACKING}']\n")
    # Nothing was stuck, failed or parked: the hostile input is simply handled.
    statuses = {r["status"] for r in db_conn.execute("SELECT status FROM deliveries").fetchall()}
    assert statuses <= {"processed", "ignored"}, statuses
